package flashsale

import (
	"fmt"
	"testing"
)

func TestShardOfSpreadsUsersEvenly(t *testing.T) {
	for _, n := range []int{2, 3, 4, 8} {
		counts := make([]int, n)
		for i := 0; i < 10000; i++ {
			counts[ShardOf(fmt.Sprintf("user-%d", i), n)]++
		}
		for s, c := range counts {
			if c < 10000/n*8/10 || c > 10000/n*12/10 {
				t.Errorf("n=%d: shard %d got %d of 10000 users: %v", n, s, c, counts)
			}
		}
	}
	// The placement is part of the data: it must never change. Golden values:
	for _, g := range []struct {
		user     string
		of2, of8 int
	}{{"alice", 0, 6}, {"bob", 0, 6}, {"user-1", 0, 4}, {"user-2", 1, 1}, {"u42", 1, 5}} {
		if ShardOf(g.user, 2) != g.of2 || ShardOf(g.user, 8) != g.of8 {
			t.Errorf("ShardOf(%q) = %d/%d of 2/8 shards, was %d/%d: the placement of users changed",
				g.user, ShardOf(g.user, 2), ShardOf(g.user, 8), g.of2, g.of8)
		}
	}
}
