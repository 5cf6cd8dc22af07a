package main

import (
	"context"
	"fmt"
	"os"
)

func runBench(ctx context.Context, args []string) int {
	fmt.Fprintln(os.Stderr, "flashsale bench: not built yet")
	return 2
}
