package admission

import (
	"testing"
	"time"
)

// TestUserBudget: a user gets rate requests at once, then one per 1/rate
// seconds, whatever they send; other users and other sales are untouched; an
// idle user's bucket is full again (and forgotten) after a second.
func TestUserBudget(t *testing.T) {
	budget := newUserBudget(5)
	b := struct {
		*userBudget
		Allow func(sale, user string, now time.Time) bool
	}{budget, func(sale, user string, now time.Time) bool {
		leave, _, ok := budget.Take(sale, user, now)
		if ok {
			leave()
		}
		return ok
	}}
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
	if _, _, ok := newUserBudget(0).Take("s", "u", t0); !ok {
		t.Error("a disabled budget refused")
	}
	if len(budget.flights) != 0 {
		t.Errorf("%d flights left after every request left", len(budget.flights))
	}
}

// TestUserBudgetFlights: a request over the budget is told when the user's
// requests in flight for the sale (those that had budget) are all answered.
func TestUserBudgetFlights(t *testing.T) {
	b := newUserBudget(2)
	now := time.Now()
	l1, _, ok1 := b.Take("s", "u", now)
	l2, _, ok2 := b.Take("s", "u", now)
	_, idle, ok3 := b.Take("s", "u", now)
	if !ok1 || !ok2 || ok3 || idle == nil {
		t.Fatalf("takes: %v %v %v (idle %v), want two with budget and one over it, told of the flight", ok1, ok2, ok3, idle)
	}
	if _, other, _ := b.Take("s", "other", now); other != nil {
		t.Error("another user's request is told of a flight")
	}
	l1()
	l1() // twice changes nothing
	select {
	case <-idle:
		t.Fatal("idle before the second request left")
	default:
	}
	l2()
	select {
	case <-idle:
	default:
		t.Fatal("not idle once both left")
	}
	if _, idle, _ := b.Take("s", "u", now); idle != nil {
		t.Error("a request over the budget with none in flight is told of a flight")
	}
}
