package bench

import (
	"context"
	mrand "math/rand/v2"
	"net/http"
	"testing"
	"time"
)

func TestSignPaymentKnownVector(t *testing.T) {
	body := []byte(`{"payment_id":"p1","order_id":"o1","amount_cents":19900,"status":"succeeded"}`)
	// Computed independently: printf '1700000000.<body>' | openssl dgst -sha256 -hmac whsec_test
	want := "t=1700000000,v1=5fc8fe0a1a793835c06e6f54de187240b17429036b4efcc070ff43543c164535"
	if got := SignPayment("whsec_test", 1700000000, body); got != want {
		t.Fatalf("SignPayment = %q\nwant            %q", got, want)
	}
}

func TestSignPaymentVerifies(t *testing.T) {
	body := []byte(`{"payment_id":"pay-1","order_id":"o9","amount_cents":5,"status":"succeeded"}`)
	now := time.Now()
	h := SignPayment("s3cret", now.Unix(), body)
	if !verifySignature("s3cret", h, body, now) {
		t.Fatal("a fresh signature does not verify")
	}
	if verifySignature("other", h, body, now) {
		t.Error("verifies with the wrong secret")
	}
	if verifySignature("s3cret", h, append(body, ' '), now) {
		t.Error("verifies a different body")
	}
	if verifySignature("s3cret", SignPayment("s3cret", now.Add(-301*time.Second).Unix(), body), body, now) {
		t.Error("verifies a stale timestamp")
	}
}

func TestParseRetryAfter(t *testing.T) {
	now := time.Date(2025, 1, 1, 12, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		in   string
		want time.Duration
		ok   bool
	}{
		{"1", time.Second, true},
		{"0", 0, true},
		{"0.25", 250 * time.Millisecond, true},
		{" 2 ", 2 * time.Second, true},
		{"99999", maxRetryAfter, true},
		{now.Add(3 * time.Second).Format(http.TimeFormat), 3 * time.Second, true},
		{now.Add(-3 * time.Second).Format(http.TimeFormat), 0, true},
		{"-1", 0, false},
		{"soon", 0, false},
	} {
		got, ok := parseRetryAfter(tc.in, now)
		if got != tc.want || ok != tc.ok {
			t.Errorf("parseRetryAfter(%q) = %v, %v; want %v, %v", tc.in, got, ok, tc.want, tc.ok)
		}
	}
}

func TestResponseKey(t *testing.T) {
	if k := (&apiResponse{Status: 409, Code: "sold_out"}).key(); k != "409 sold_out" {
		t.Errorf("key = %q", k)
	}
	if k := (&apiResponse{Status: 202}).key(); k != "202" {
		t.Errorf("key = %q", k)
	}
}

// takeGrants reports which waiters have been handed a slot since the last call.
func takeGrants(ws map[string]*slotWaiter) []string {
	var got []string
	for name, w := range ws {
		select {
		case <-w.ch:
			got = append(got, name)
			delete(ws, name)
		default:
		}
	}
	return got
}

func TestSlotPoolFollowUpsGoFirstWithinTheirShare(t *testing.T) {
	p := newSlotPool(4) // follow-ups go first while fewer than 2 are in flight
	for i := range 4 {
		if w := p.enqueue(false); len(takeGrants(map[string]*slotWaiter{"c": w})) != 1 {
			t.Fatalf("crowd request %d not granted a free slot", i)
		}
	}
	ws := map[string]*slotWaiter{
		"c1": p.enqueue(false), "c2": p.enqueue(false), "c3": p.enqueue(false),
		"f1": p.enqueue(true), "f2": p.enqueue(true), "f3": p.enqueue(true),
	}
	if got := takeGrants(ws); len(got) != 0 {
		t.Fatalf("granted %v with no slot free", got)
	}
	for i, step := range []struct {
		releaseFollow bool
		want          string
	}{
		{false, "f1"}, // follow-ups jump the crowd's queue ...
		{false, "f2"},
		{false, "c1"}, // ... up to their share (2 in flight): then the crowd
		{true, "f3"},  // f1 done: back under the share
		{false, "c2"}, // f2, f3 in flight: the crowd again
		{true, "c3"},  // only the crowd waits
	} {
		p.release(step.releaseFollow)
		if got := takeGrants(ws); len(got) != 1 || got[0] != step.want {
			t.Fatalf("step %d: granted %v, want [%s]", i, got, step.want)
		}
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.free != 0 || p.followIn != 1 || p.follow.Len() != 0 || p.crowd.Len() != 0 { // f2 or f3 left in flight
		t.Errorf("pool state free %d followIn %d queues %d/%d", p.free, p.followIn, p.follow.Len(), p.crowd.Len())
	}
}

func TestSlotPoolFollowUpsTakeIdleSlots(t *testing.T) {
	p := newSlotPool(4)
	for i := range 4 { // nobody else waits: follow-ups may use every slot
		if w := p.enqueue(true); len(takeGrants(map[string]*slotWaiter{"f": w})) != 1 {
			t.Fatalf("follow-up %d not granted an idle slot", i)
		}
	}
}

func TestSlotPoolCancelledWaiterGivesNothingAway(t *testing.T) {
	p := newSlotPool(1)
	if err := p.acquire(context.Background(), false); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := p.acquire(ctx, true); err == nil {
		t.Fatal("acquire on a full pool with a cancelled context succeeded")
	}
	p.release(false)
	p.mu.Lock()
	if p.free != 1 || p.followIn != 0 || p.follow.Len() != 0 {
		t.Errorf("after cancel: free %d followIn %d waiting %d, want 1 0 0", p.free, p.followIn, p.follow.Len())
	}
	p.mu.Unlock()

	// A slot granted at the moment the context ends is handed back, whichever way
	// the select goes.
	for range 200 {
		if err := p.acquire(ctx, true); err == nil {
			p.release(true)
		}
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.free != 1 || p.followIn != 0 {
		t.Errorf("slots leaked: free %d followIn %d, want 1 0", p.free, p.followIn)
	}
}

func TestRetryAfterIsHonouredWithJitter(t *testing.T) {
	rng := mrand.New(mrand.NewPCG(1, 2))
	ra := &apiResponse{Status: http.StatusTooManyRequests, RetryAfter: time.Second, HasRetryAfter: true}
	lo, hi := time.Hour, time.Duration(0)
	for range 2000 {
		d := retryAfterDelay(rng, ra, 1)
		lo, hi = min(lo, d), max(hi, d)
	}
	if lo < time.Second || hi > 1500*time.Millisecond {
		t.Errorf("delays after Retry-After: 1 span %v..%v, want within 1s..1.5s", lo, hi)
	}
	if hi-lo < 400*time.Millisecond {
		t.Errorf("delays span only %v..%v: not jittered", lo, hi)
	}
	none := &apiResponse{Status: http.StatusTooManyRequests}
	for attempt := 1; attempt <= 8; attempt++ {
		b := backoff(attempt)
		if d := retryAfterDelay(rng, none, attempt); d < b/2 || d >= b*3/2 {
			t.Errorf("attempt %d without Retry-After: %v, want in [%v, %v)", attempt, d, b/2, b*3/2)
		}
	}
}
