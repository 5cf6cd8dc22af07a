package delayq

import (
	"testing"
	"time"
)

func TestBucketFor(t *testing.T) {
	cases := []struct {
		left   time.Duration
		window int
		want   int
	}{
		{0, 900, 0},
		{-time.Second, 900, 0},
		{899950 * time.Millisecond, 900, 900}, // prompt: the sale's window
		{898 * time.Second, 900, 900},         // 2 s of lag still uses it
		{2 * time.Second, 2, 2},
		{1500 * time.Millisecond, 2, 2},
		{870 * time.Second, 900, 512}, // lagged: hop through powers of two
		{358 * time.Second, 0, 256},
		{300 * time.Millisecond, 0, 1},
	}
	for _, c := range cases {
		if got := bucketFor(c.left, c.window); got != c.want {
			t.Errorf("bucketFor(%v, %d) = %d, want %d", c.left, c.window, got, c.want)
		}
	}
	// Whatever the lag, the buckets used for one window stay few.
	seen := map[int]bool{}
	for ms := 0; ms <= 900_000; ms += 250 {
		seen[bucketFor(time.Duration(ms)*time.Millisecond, 900)] = true
	}
	if len(seen) > 12 {
		t.Errorf("%d distinct buckets for a 900 s window", len(seen))
	}
}
