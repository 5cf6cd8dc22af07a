package e2e

import (
	"testing"
	"time"
)

// Every wait of these tests for an asynchronous effect goes through poll:
// eventually and the await helpers are built on it, and a wait that must not
// fail the test calls it directly and reports what it found. What is left
// outside it is no poll: a select on a channel that signals the effect (a
// process's exit, a count reached) bounded by time.After; a user retrying
// with backoff; and sleeps that pace a load, a watch or an outage, or time a
// race.

// pollEvery is the pace of eventually, and of waits with no reason for
// another.
const pollEvery = 100 * time.Millisecond

// poll calls f every interval until it reports done, and reports whether it
// did within timeout. f runs at least once, and once more after the deadline
// has passed, so a timeout is only reported by a call that saw it.
func poll(timeout, interval time.Duration, f func() bool) bool {
	deadline := time.Now().Add(timeout)
	for {
		if f() {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(interval)
	}
}

// eventually polls f (every 100 ms) until it reports done; at the deadline it
// fails the test with what, and f's last status.
func eventually(t *testing.T, timeout time.Duration, what string, f func() (bool, string)) {
	t.Helper()
	var status string
	if !poll(timeout, pollEvery, func() bool {
		var ok bool
		ok, status = f()
		return ok
	}) {
		t.Fatalf("not within %s: %s: %s", timeout, what, status)
	}
}

// awaitViews polls the views of the items not yet done (read them, id names
// an item's view) until done holds for every one, every 100 ms up to timeout.
// It returns the last view of each item done and, when time ran out, the
// items left, how many of those were last seen in each status ("(no 200
// answer)" for none) and the problems of the last read.
func awaitViews[I, V any](timeout time.Duration, items []I, read func([]I) (map[string]V, []string),
	id func(I) string, done func(it I, v V, ok bool) bool, status func(V) string,
) (final map[string]V, left []I, counts map[string]int, problems []string) {
	final = make(map[string]V, len(items))
	left = items
	var views map[string]V
	if poll(timeout, pollEvery, func() bool {
		views, problems = read(left)
		var next []I
		for _, it := range left {
			if v, ok := views[id(it)]; done(it, v, ok) {
				final[id(it)] = v
			} else {
				next = append(next, it)
			}
		}
		left = next
		return len(left) == 0
	}) {
		return final, nil, nil, nil
	}
	counts = map[string]int{}
	for _, it := range left {
		if v, ok := views[id(it)]; ok {
			counts[status(v)]++
		} else {
			counts["(no 200 answer)"]++
		}
	}
	return final, left, counts, problems
}
