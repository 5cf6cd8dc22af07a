package ingress

import (
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"
)

// budgetFixture is a handler fixture with a window of window purchases per
// 10 ms, the default budget (5 per second), a clock the test moves, and stock
// enough for everyone.
func budgetFixture(t *testing.T, window int) (*handlerFixture, *time.Time) {
	t.Helper()
	f := newHandlerFixture(t, fakeLifecycle{}, func(c *Config) { c.LimitPerWindow, c.UserPurchasesPerSecond = window, 5 })
	clock := time.Now().Truncate(time.Second)
	f.srv.cfg.Now = func() time.Time { return clock }
	f.stock.mu.Lock()
	f.stock.available["a"] = 100000
	f.stock.mu.Unlock()
	return f, &clock
}

func (s *claimStock) claimsBy(user string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for k, id := range s.live {
		if k[1] == user && id != "" {
			n++
		}
	}
	return n
}

// TestOverBudgetIsNeverAdmitted: a user with no live ticket who sends far more
// than their budget into windows someone else fills first is answered 429 every
// time: over the budget a request goes neither to the window nor to the claim,
// so it cannot be admitted past a full window (as it once was: the 6th quick
// request skipped the window and was claimed, 202).
func TestOverBudgetIsNeverAdmitted(t *testing.T) {
	f, clock := budgetFixture(t, 1)
	for w := range 100 { // 100 windows of 10 ms: 1 s
		*clock = clock.Add(10 * time.Millisecond)
		if code, out := f.do(t, "/api/v1/sales/a/purchase", fmt.Sprintf("other-%d", w), `{}`); code != http.StatusAccepted {
			t.Fatalf("window %d: the first buyer: %d %v, want 202", w, code, out)
		}
		for i := range 20 { // 2,000 requests per second
			code, out := f.do(t, "/api/v1/sales/a/purchase", "flooder", `{}`)
			if code != http.StatusTooManyRequests || !strings.HasPrefix(errCode(out), "rate_limited") {
				t.Fatalf("window %d, flooder's request %d: %d %s, want 429 rate_limited (the window is full, the budget spent)", w, i+1, code, errCode(out))
			}
		}
	}
	if n := f.stock.claimsBy("flooder"); n != 0 || len(f.queue.published) != 100 {
		t.Errorf("the flooder holds %d claims, %d purchases published: want none of the flooder's, the 100 others'", n, len(f.queue.published))
	}
	// Alone in a window with budget left, the flooder is admitted like anyone.
	*clock = clock.Add(time.Second)
	if code, out := f.do(t, "/api/v1/sales/a/purchase", "flooder", `{}`); code != http.StatusAccepted {
		t.Errorf("the flooder in an empty window with budget: %d %v, want 202", code, out)
	}
}

// TestOverBudgetAnswersTheLiveTicket: a user holding a live ticket who
// hammers the button at windows someone else fills first gets it (200) on
// every request over the budget, read without a claim and without a slot of
// the window; only the budget's few requests meet the full window (429).
func TestOverBudgetAnswersTheLiveTicket(t *testing.T) {
	f, clock := budgetFixture(t, 1)
	code, first := f.do(t, "/api/v1/sales/a/purchase", "holder", `{}`)
	if code != http.StatusAccepted {
		t.Fatalf("the holder's purchase: %d %v", code, first)
	}
	claims := func() int {
		f.stock.mu.Lock()
		defer f.stock.mu.Unlock()
		return f.stock.claimCalls["a"]
	}
	before := claims()
	ok, limited := 0, 0
	for w := range 50 {
		*clock = clock.Add(10 * time.Millisecond)
		if code, out := f.do(t, "/api/v1/sales/a/purchase", fmt.Sprintf("other-%d", w), `{}`); code != http.StatusAccepted {
			t.Fatalf("window %d: the first buyer: %d %v, want 202", w, code, out)
		}
		for i := range 20 {
			code, out := f.do(t, "/api/v1/sales/a/purchase", "holder", `{}`)
			switch {
			case code == http.StatusOK && out["ticket_id"] == first["ticket_id"]:
				ok++
			case code == http.StatusTooManyRequests:
				limited++
			default:
				t.Fatalf("window %d, request %d: %d %v, want 200 with the live ticket (or 429 within the budget)", w, i+1, code, out)
			}
		}
	}
	// 1,000 requests in 0.5 s: the budget's 5 at once plus 5 per second meet
	// the full window; every other one is answered the ticket.
	if limited > 8 || ok != 1000-limited {
		t.Errorf("the holder's 1,000 requests: %d answered the ticket, %d 429; want at most the budget's ~7 429s", ok, limited)
	}
	if n := claims() - before - 50; n != 0 {
		t.Errorf("the holder's requests made %d claims, want none (over the budget no claim; within it the window was full)", n)
	}
}

// TestDoubleClickBurstOverTheBudget: a user's 20 simultaneous purchases, 15
// of them over the budget, make one ticket: one 202 and 19 200s with it, never
// a 429 (the requests over the budget wait for those in flight, then read
// the ticket they made) and one purchase queued.
func TestDoubleClickBurstOverTheBudget(t *testing.T) {
	f, _ := budgetFixture(t, 50)
	f.queue.confirm = 100 * time.Millisecond // the burst arrives while the first is queued
	codes := make(chan string, 20)
	var wg sync.WaitGroup
	for range 20 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			code, out := f.do(t, "/api/v1/sales/a/purchase", "double-clicker", `{}`)
			codes <- fmt.Sprintf("%d %v", code, out["ticket_id"])
		}()
	}
	wg.Wait()
	close(codes)
	answers := map[string]int{}
	for c := range codes {
		answers[c]++
	}
	f.queue.mu.Lock()
	published := len(f.queue.published)
	f.queue.mu.Unlock()
	if len(answers) != 2 || published != 1 {
		t.Fatalf("answers %v, %d published; want one 202 and 19 200 with the same ticket, one purchase queued", answers, published)
	}
	for a, n := range answers {
		code, id, _ := strings.Cut(a, " ")
		if (code != "202" || n != 1) && (code != "200" || n != 19) || id == "<nil>" {
			t.Errorf("answers %v; want one 202 and 19 200 with the same ticket", answers)
		}
	}
}
