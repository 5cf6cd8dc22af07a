package queue

import (
	"context"
	"io"
	"log/slog"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/flashsale/flashsale"
	"github.com/flashsale/flashsale/internal/testenv"
	"github.com/flashsale/flashsale/mock"
)

// These tests drive the one retry rule of every consumer (Retry) with
// messages that record how they were settled, a handler that fails as told,
// and a clock that the rule's waits move: no broker, no real waiting.

// fakeTime is a clock moved by the rule's sleeps, which it records.
type fakeTime struct {
	mu    sync.Mutex
	now   time.Time
	waits []time.Duration
}

func (f *fakeTime) rule(r Retry) Retry {
	f.now = time.Unix(1000, 0)
	r.now = func() time.Time { f.mu.Lock(); defer f.mu.Unlock(); return f.now }
	r.sleep = func(d time.Duration, _, _ <-chan struct{}) bool {
		f.mu.Lock()
		defer f.mu.Unlock()
		f.waits = append(f.waits, d)
		f.now = f.now.Add(d)
		return true
	}
	if err := r.validate(); err != nil {
		panic(err)
	}
	return r
}

// failing is a handler that retries each message until it was handed over
// fails[body] times, then acks it (or dead-letters it, for bodies in dead),
// and records the bodies of each attempt.
type failing struct {
	mu       sync.Mutex
	fails    map[string]int
	dead     map[string]bool
	seen     map[string]int
	attempts [][]string
}

func (f *failing) handle(_ context.Context, msgs []flashsale.Message) {
	f.mu.Lock()
	defer f.mu.Unlock()
	var bodies []string
	for _, m := range msgs {
		b := string(m.Body())
		bodies = append(bodies, b)
		f.seen[b]++
		switch {
		case f.seen[b] <= f.fails[b]:
			m.Retry()
		case f.dead[b]:
			m.DeadLetter()
		default:
			m.Ack()
		}
	}
	f.attempts = append(f.attempts, bodies)
}

func quietLog() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// A message that fails is handed to the handler again after 100 ms, then
// 200 ms, doubling up to 2 s, alone (what succeeded was acked at once and is
// not handled again), until it succeeds: it is acked, never handed back.
func TestRetryBacksOffUpToMaxThenSucceeds(t *testing.T) {
	var clock fakeTime
	f := &failing{fails: map[string]int{"slow": 8}, seen: map[string]int{}}
	slow, quick := mock.NewMessage([]byte("slow")), mock.NewMessage([]byte("quick"))
	run := retryRun{rule: clock.rule(Retry{}), h: f.handle, queue: "q", log: quietLog()}
	run.handle(context.Background(), mock.Messages(slow, quick))

	ms := time.Millisecond
	want := []time.Duration{100 * ms, 200 * ms, 400 * ms, 800 * ms, 1600 * ms, 2000 * ms, 2000 * ms, 2000 * ms}
	if !slices.Equal(clock.waits, want) {
		t.Errorf("waits %v, want %v", clock.waits, want)
	}
	if slow.Settled() != "ack" || quick.Settled() != "ack" {
		t.Errorf("settled slow %q quick %q, want both ack", slow.Settled(), quick.Settled())
	}
	if f.seen["quick"] != 1 || f.seen["slow"] != 9 || len(f.attempts) != 9 {
		t.Errorf("quick handled %d times, slow %d, %d attempts; want 1, 9, 9", f.seen["quick"], f.seen["slow"], len(f.attempts))
	}
	for i, a := range f.attempts[1:] {
		if !slices.Equal(a, []string{"slow"}) {
			t.Errorf("attempt %d handled %v, want only the failing message", i+2, a)
		}
	}
}

// A message that keeps failing is handed back to the queue (its Retry) once
// the budget is spent since the batch's first attempt, and only then.
func TestRetryHandsBackAfterTheBudget(t *testing.T) {
	var clock fakeTime
	f := &failing{fails: map[string]int{"away": 1 << 30}, seen: map[string]int{}}
	away := mock.NewMessage([]byte("away"))
	run := retryRun{rule: clock.rule(Retry{Min: time.Second, Max: 4 * time.Second, Budget: 20 * time.Second}),
		h: f.handle, queue: "q", log: quietLog()}
	run.handle(context.Background(), mock.Messages(away))

	// Waits 1+2+4+4+4+4 = 19 s < 20 s, then 4 more: 23 s >= 20 s.
	if away.Settled() != "retry" {
		t.Fatalf("settled %q, want retry (handed back)", away.Settled())
	}
	var waited time.Duration
	for _, w := range clock.waits {
		waited += w
	}
	if waited < 20*time.Second || waited-clock.waits[len(clock.waits)-1] >= 20*time.Second {
		t.Errorf("handed back after waiting %s in %v; want the first attempt at or past the 20 s budget", waited, clock.waits)
	}
	if f.seen["away"] != len(clock.waits)+1 {
		t.Errorf("handled %d times for %d waits", f.seen["away"], len(clock.waits))
	}
}

// A dead letter or an ack on a later attempt settles the message for good;
// a message the handler did not retry is never handed back.
func TestRetrySettlesWhatALaterAttemptDecides(t *testing.T) {
	var clock fakeTime
	f := &failing{fails: map[string]int{"poison": 2}, dead: map[string]bool{"poison": true}, seen: map[string]int{}}
	poison := mock.NewMessage([]byte("poison"))
	run := retryRun{rule: clock.rule(Retry{}), h: f.handle, queue: "q", log: quietLog()}
	run.handle(context.Background(), mock.Messages(poison))
	if poison.Settled() != "dead" || f.seen["poison"] != 3 {
		t.Errorf("settled %q after %d attempts, want dead after 3", poison.Settled(), f.seen["poison"])
	}
}

// At shutdown a batch waiting to retry hands its failing messages back at
// once, whichever says so: the consumer stopping (or its connection lost), or
// the process stopping (Retry.Stopping). A batch that starts while stopping
// is handled once and what fails is handed back without a wait.
func TestRetryHandsBackAtOnceWhenStopping(t *testing.T) {
	for _, which := range []string{"consumer", "process"} {
		t.Run(which, func(t *testing.T) {
			stop, stopping := make(chan struct{}), make(chan struct{})
			f := &failing{fails: map[string]int{"away": 1 << 30}, seen: map[string]int{}}
			away := mock.NewMessage([]byte("away"))
			rule := Retry{Min: time.Hour, Max: time.Hour, Budget: 10 * time.Hour, Stopping: stopping}
			if err := rule.validate(); err != nil {
				t.Fatal(err)
			}
			run := retryRun{rule: rule, h: f.handle, stop: stop, queue: "q", log: quietLog()}
			done := make(chan struct{})
			go func() { run.handle(context.Background(), mock.Messages(away)); close(done) }()
			// The first attempt failed: the batch now waits its hour.
			testenv.Eventually(t, 10*time.Second, "the first attempt", func() bool {
				f.mu.Lock()
				defer f.mu.Unlock()
				return f.seen["away"] == 1
			})
			if which == "consumer" {
				close(stop)
			} else {
				close(stopping)
			}
			select {
			case <-done:
			case <-time.After(10 * time.Second):
				t.Fatal("the batch still waits 10 s after the stop")
			}
			if away.Settled() != "retry" || f.seen["away"] != 1 {
				t.Errorf("settled %q after %d attempts, want retry (handed back) after 1", away.Settled(), f.seen["away"])
			}

			// Stopped already: one attempt, handed back without waiting.
			again := mock.NewMessage([]byte("away"))
			start := time.Now()
			run.handle(context.Background(), mock.Messages(again))
			if again.Settled() != "retry" || f.seen["away"] != 2 || time.Since(start) > 5*time.Second {
				t.Errorf("while stopping: settled %q, %d attempts in all, took %s; want retry at once after one more attempt",
					again.Settled(), f.seen["away"], time.Since(start))
			}
		})
	}
}
