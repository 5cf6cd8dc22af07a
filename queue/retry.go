package queue

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"time"

	"github.com/flashsale/flashsale"
)

// Retry is the one retry rule of every consumer: a message its handler
// settles with Retry is not handed back to the queue at once; the consumer
// hands the batch's retried messages to the handler again, after a wait that
// starts at Min and doubles up to Max, for up to Budget from the batch's first
// attempt. What a handler acks or dead-letters is settled at once, whatever
// the rest of its batch does. Only once the budget is spent, or when the
// consumer stops (Stop, or Stopping closed) or loses its connection, are the
// messages still failing handed back to the queue, where each hand-back
// counts towards the queue's delivery limit.
//
// So a step that failed because a dependency is away (Redis or MySQL
// restarting, a failover) is tried again within seconds of it answering,
// without burning the message's delivery limit in the meantime, and the
// handler needs no retry loop of its own. While a batch waits, its handler
// slot is taken: the consumer's other deliveries wait in the prefetch
// (ConsumerConfig.Handlers bounds the batches waiting at once).
//
// The rule does not make a step succeed: a message handed back after the
// budget is delivered again (and retried by the same rule) until the queue's
// delivery limit; what still fails after that is the dead-letter queue's or
// the sweeper's (see delayq) to complete. Handlers must be idempotent per
// message, as every flashsale handler is, and settle every message they are
// given before they return.
type Retry struct {
	// Min is the wait before the first retry, doubling up to Max. Defaults
	// 100 ms and 2 s.
	Min, Max time.Duration
	// Budget is how long a batch's failing messages are tried again before
	// they are handed back to the queue. It must outlast the outages the
	// system rides out (contract: under 60 s). Default 2 min.
	Budget time.Duration
	// Stopping, when closed, makes every waiting batch hand its failing
	// messages back at once (the process is stopping: service.Group.Stopping).
	// Optional: a consumer's Stop does the same for its own batches.
	Stopping <-chan struct{}

	// sleep waits d, or until stop or stopping closes (false then); now is
	// the clock. Tests replace them; nil: the real ones.
	sleep func(d time.Duration, stop, stopping <-chan struct{}) bool
	now   func() time.Time
}

// validate sets the defaults and checks the bounds.
func (r *Retry) validate() error {
	if r.Min == 0 {
		r.Min = 100 * time.Millisecond
	}
	if r.Max == 0 {
		r.Max = 2 * time.Second
	}
	if r.Budget == 0 {
		r.Budget = 2 * time.Minute
	}
	if r.Min < 0 || r.Max < r.Min || r.Budget < 0 {
		return errors.New("queue: Retry.Min, Max and Budget must be positive, Max >= Min")
	}
	if r.sleep == nil {
		r.sleep = sleepUnless
	}
	if r.now == nil {
		r.now = time.Now
	}
	return nil
}

// sleepUnless waits d; false when stop or stopping closed first (a nil
// channel never does).
func sleepUnless(d time.Duration, stop, stopping <-chan struct{}) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-stop:
		return false
	case <-stopping:
		return false
	case <-t.C:
		return true
	}
}

// retryRun is one batch under the rule.
type retryRun struct {
	rule  Retry
	h     flashsale.Handler
	stop  <-chan struct{} // the consumer stops or lost its connection
	queue string
	log   *slog.Logger
	m     *Metrics
}

// handle runs the handler on msgs, then again on those it retried, as the
// rule says (see Retry), and hands back what still fails.
func (run retryRun) handle(ctx context.Context, msgs []flashsale.Message) {
	start := run.rule.now()
	wait := run.rule.Min
	for n := 1; ; n++ {
		batch := make([]flashsale.Message, len(msgs))
		attempts := make([]*attempt, len(msgs))
		for i, m := range msgs {
			attempts[i] = &attempt{Message: m}
			batch[i] = attempts[i]
		}
		run.h(ctx, batch)
		var again []flashsale.Message
		for _, a := range attempts {
			if a.retried() {
				again = append(again, a.Message)
			}
		}
		if len(again) == 0 {
			return
		}
		waited := run.rule.now().Sub(start)
		if waited >= run.rule.Budget || run.stopped() || !run.rule.sleep(wait, run.stop, run.rule.Stopping) {
			why := "stopping, or the connection lost"
			if waited >= run.rule.Budget {
				why = "retry budget spent"
			}
			back := 0
			for _, m := range again {
				if err := m.Retry(); err != nil {
					// The channel is gone: the broker requeued it already.
					run.log.Debug("handing a message back failed", "queue", run.queue, "err", err)
					continue
				}
				back++
			}
			run.log.Warn("handing failed messages back to the queue", "queue", run.queue, "why", why, "messages", len(again),
				"handed_back", back, "attempts", n, "waited", run.rule.now().Sub(start).Round(time.Millisecond))
			run.m.retried(run.queue, "handed_back", back)
			return
		}
		run.m.retried(run.queue, "again", len(again))
		wait = min(2*wait, run.rule.Max)
		msgs = again
	}
}

// stopped reports whether the consumer stops or lost its connection, or the
// process stops.
func (run retryRun) stopped() bool {
	select {
	case <-run.stop:
		return true
	case <-run.rule.Stopping:
		return true
	default:
		return false
	}
}

// attempt is a message as one attempt of a batch sees it: its Retry is
// recorded for the rule instead of handing the message back.
type attempt struct {
	flashsale.Message
	mu    sync.Mutex
	again bool
}

func (a *attempt) Retry() error {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.again = true
	return nil
}

func (a *attempt) retried() bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.again
}
