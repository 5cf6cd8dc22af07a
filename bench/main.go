package bench

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	mrand "math/rand/v2"
	"os"
)

// Exit codes of Main.
const (
	exitPass  = 0 // every check passed
	exitFail  = 1 // a check failed, or the run could not complete
	exitUsage = 2 // bad flags
)

// Main runs the bench with the subcommand's arguments (flags) and returns the process exit code.
//
// It creates a sale on the deployment at --url, drives --users simulated users
// through it over HTTP, prints a summary with the invariant checks to stdout (the
// progress bar and logs go to stderr), and writes the --json and --html reports when
// asked. The exit code is 0 when the run completed and every check passed, 1 when a
// check failed or the run could not complete, 2 for bad flags.
func Main(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	cfg, err := parseConfig(args, os.Getenv, stderr)
	if errors.Is(err, flag.ErrHelp) {
		return exitPass
	}
	if err != nil {
		fmt.Fprintf(stderr, "flashsale bench: %v\n", err)
		return exitUsage
	}
	return runMain(ctx, cfg, stdout, stderr)
}

// runMain runs a validated configuration.
func runMain(ctx context.Context, cfg Config, stdout, stderr io.Writer) int {
	if cfg.Seed == 0 {
		cfg.Seed = uint64(mrand.Int64N(1<<31)) + 1 // short enough to retype, exact in JSON
	}
	level := slog.LevelInfo
	if cfg.Quiet {
		level = slog.LevelWarn
	}
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level})).With("component", "bench")

	var (
		runs []*Report
		cmp  *CompareReport
		pass bool
	)
	if cfg.Compare {
		a := cfg
		a.Inventory = inventoryRedis
		log.Info("compare: running against a redis sale")
		redis := runOnce(ctx, a, log, stderr)
		runs = append(runs, redis)
		var mysql *Report
		if ctx.Err() == nil {
			b := cfg
			b.Inventory = inventoryMySQL
			log.Info("compare: running against a mysql sale")
			mysql = runOnce(ctx, b, log, stderr)
			runs = append(runs, mysql)
		}
		cmp = newCompareReport(redis, mysql)
		for i, r := range runs {
			if i > 0 {
				fmt.Fprintln(stdout)
			}
			writeText(stdout, r)
		}
		fmt.Fprintln(stdout)
		writeCompareText(stdout, cmp)
		pass = cmp.Pass
	} else {
		rep := runOnce(ctx, cfg, log, stderr)
		runs = append(runs, rep)
		writeText(stdout, rep)
		pass = rep.Pass
	}

	if cfg.JSONPath != "" {
		var v any = runs[0]
		if cmp != nil {
			v = cmp
		}
		if err := writeJSONFile(cfg.JSONPath, v); err != nil {
			log.Error("writing the JSON report", "path", cfg.JSONPath, "err", err)
			pass = false
		}
	}
	if cfg.HTMLPath != "" {
		if err := writeHTMLFile(cfg.HTMLPath, runs, cmp); err != nil {
			log.Error("writing the HTML report", "path", cfg.HTMLPath, "err", err)
			pass = false
		}
	}
	if !pass {
		return exitFail
	}
	return exitPass
}
