package ingress

import (
	"testing"
	"time"
)

// TestUserBudget: a user gets rate requests at once, then one per 1/rate
// seconds, whatever they send; other users and other sales are untouched; an
// idle user's bucket is full again (and forgotten) after a second.
func TestUserBudget(t *testing.T) {
	b := newUserBudget(5)
	t0 := time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)
	n := 0
	for i := range 2000 { // 2,000 requests in one second
		if b.Allow("s", "flood", t0.Add(time.Duration(i)*500*time.Microsecond)) {
			n++
		}
	}
	if n < 5 || n > 10 {
		t.Errorf("2,000 requests in 1 s: %d allowed, want 5 at once plus about 5 more", n)
	}
	for _, k := range [][2]string{{"s", "other"}, {"s2", "flood"}} {
		if !b.Allow(k[0], k[1], t0.Add(time.Second)) {
			t.Errorf("%v refused: budgets are per sale and user", k)
		}
	}
	later := t0.Add(5 * time.Second)
	for i := range 5 {
		if !b.Allow("s", "flood", later) {
			t.Fatalf("request %d after 4 s idle refused, want a full bucket", i+1)
		}
	}
	if b.Allow("s", "flood", later) {
		t.Error("a 6th request in the same instant allowed")
	}
	if len(b.cur)+len(b.prev) > 3 {
		t.Errorf("%d buckets kept, want only the recent ones", len(b.cur)+len(b.prev))
	}
	if off := newUserBudget(0); !off.Allow("s", "u", t0) {
		t.Error("a disabled budget refused")
	}
}
