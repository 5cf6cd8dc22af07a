package admission

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/flashsale/flashsale"
)

// queuer queues admitted purchases in groups: the purchases admitted while
// the broker confirms earlier ones go out together, as one message with one
// confirm (see queue.GroupType), and their tickets are then marked queued in
// the stock store in one round trip. Nothing waits on a timer: with few
// purchases each goes out alone at once; under a crowd, while inFlight groups
// await their confirms, the next purchases gather into the next group. Each
// caller waits for its own group's outcome, which is also every other
// member's: all queued, or none known to be.
//
// The flushers are goroutines started on demand and gone when nothing is
// pending, so there is nothing to start or stop: a server that stops serving
// (its handlers all returned) has none left.
type queuer struct {
	queue    Queue
	stock    Stock
	log      *slog.Logger
	timeout  time.Duration // a group's publish deadline (Config.PublishTimeout)
	maxGroup int           // the most purchases in one message
	inFlight int           // the most groups awaiting their confirm at once

	// publish times a group's publish and confirm; size counts its
	// purchases; wait times a purchase from enqueue to its group's outcome.
	publishDur, size, wait prometheus.Observer

	mu      sync.Mutex
	pending []*queuing
	running int // flushers running
}

// newQueuer returns a queuer; reg (optional) receives its histograms.
func newQueuer(cfg Config) *queuer {
	publishDur := prometheus.NewHistogram(prometheus.HistogramOpts{Name: "flashsale_purchase_publish_seconds",
		Help:    "Time to publish one group of purchases and have the broker confirm it.",
		Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5}})
	size := prometheus.NewHistogram(prometheus.HistogramOpts{Name: "flashsale_purchase_group_size",
		Help: "Purchases per published message.", Buckets: []float64{1, 2, 4, 8, 16, 32, 64, 128}})
	wait := prometheus.NewHistogram(prometheus.HistogramOpts{Name: "flashsale_purchase_queue_seconds",
		Help:    "Time from a purchase's enqueue to its group's outcome: waiting for a group, then its publish and confirm.",
		Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5}})
	if cfg.Registry != nil {
		cfg.Registry.MustRegister(publishDur, size, wait)
	}
	return &queuer{queue: cfg.Queue, stock: cfg.Stock, log: cfg.Log, timeout: cfg.PublishTimeout,
		maxGroup: cfg.MaxGroup, inFlight: cfg.PublishGroups, publishDur: publishDur, size: size, wait: wait}
}

// queuing is one purchase waiting for its group's outcome.
type queuing struct {
	req      *flashsale.PurchaseRequest
	ticket   *flashsale.Ticket
	deadline time.Time // the publish timeout counts from the enqueue
	done     chan struct{}
	err      error // set before done is closed
}

// errNotPublished answers a purchase whose publish timeout passed while it
// waited for a group (the broker is slow or away): it was never published.
var errNotPublished = errors.New("ingress: the broker did not take earlier purchases in time; not published")

// enqueue queues req and waits until its group is confirmed (nil) or not
// (an error: the purchase may or may not be queued, see Queue), at most about
// the publish timeout from now. ticket's fast copy is written once it is
// queued.
func (q *queuer) enqueue(req *flashsale.PurchaseRequest, ticket *flashsale.Ticket) error {
	start := time.Now()
	w := &queuing{req: req, ticket: ticket, deadline: start.Add(q.timeout), done: make(chan struct{})}
	defer func() { q.wait.Observe(time.Since(start).Seconds()) }()
	q.mu.Lock()
	q.pending = append(q.pending, w)
	if q.running < q.inFlight {
		q.running++
		go q.flush()
	}
	q.mu.Unlock()
	timer := time.NewTimer(q.timeout)
	defer timer.Stop()
	select {
	case <-w.done:
		return w.err
	case <-timer.C:
	}
	// Still waiting for a group: give up unless a flusher took it already
	// (its group's deadline is this one at the latest).
	q.mu.Lock()
	for i, p := range q.pending {
		if p == w {
			q.pending = append(q.pending[:i], q.pending[i+1:]...)
			q.mu.Unlock()
			return errNotPublished
		}
	}
	q.mu.Unlock()
	<-w.done
	return w.err
}

// flush publishes what is pending, a group at a time, until nothing is.
func (q *queuer) flush() {
	for {
		q.mu.Lock()
		if len(q.pending) == 0 {
			q.running--
			q.mu.Unlock()
			return
		}
		n := min(len(q.pending), q.maxGroup)
		group := make([]*queuing, n)
		copy(group, q.pending)
		q.pending = append(q.pending[:0], q.pending[n:]...)
		q.mu.Unlock()
		q.publish(group)
	}
}

// publish queues one group and tells its members how it went.
func (q *queuer) publish(group []*queuing) {
	deadline := group[0].deadline
	reqs := make([]*flashsale.PurchaseRequest, len(group))
	tickets := make([]*flashsale.Ticket, len(group))
	for i, w := range group {
		reqs[i], tickets[i] = w.req, w.ticket
		if w.deadline.Before(deadline) {
			deadline = w.deadline
		}
	}
	// The group's publish ends by its earliest member's deadline.
	ctx, cancel := context.WithDeadline(flashsale.WithStage(context.Background(), "admission"), deadline)
	defer cancel()
	start := time.Now()
	err := q.queue.PublishPurchases(ctx, reqs)
	q.publishDur.Observe(time.Since(start).Seconds())
	q.size.Observe(float64(len(reqs)))
	if err == nil {
		// Queued for good: a copy or a mark that cannot be written now is
		// no reason to take that back (see markQueued).
		q.markQueued(tickets)
	}
	for _, w := range group {
		w.err = err
		close(w.done)
	}
}

// markQueued writes the fast copies of tickets whose group the broker
// confirmed and marks their claims published, on a context of its own (not
// the publish's deadline, which a confirm may have nearly used up): once at
// once, and if Redis does not take it, again in the background with a
// backoff (100 ms doubling to 2 s) for up to markQueuedFor. Until then a
// purchase of the same user finds the claim unconfirmed and is answered 503;
// should the claim go stale meanwhile, the user's next purchase claims the
// same ticket id again (ids are minted, see flashsale.TicketClaim), so the
// ticket is never replaced. The worker also writes the copy when it holds.
func (q *queuer) markQueued(tickets []*flashsale.Ticket) {
	try := func() error {
		ctx, cancel := context.WithTimeout(flashsale.WithStage(context.Background(), "admission"), 2*time.Second)
		defer cancel()
		return q.stock.Queued(ctx, tickets...)
	}
	err := try()
	if err == nil {
		return
	}
	q.log.Warn("cannot write queued tickets' copies yet; retrying", "tickets", len(tickets), "err", err)
	go func() {
		deadline := time.Now().Add(markQueuedFor)
		for wait := 100 * time.Millisecond; time.Now().Before(deadline); wait = min(2*wait, 2*time.Second) {
			time.Sleep(wait) // a backoff between attempts, not a wait for an effect
			if err := try(); err == nil {
				q.log.Info("queued tickets' copies written", "tickets", len(tickets))
				return
			}
		}
		q.log.Error("gave up writing queued tickets' copies; the worker writes them when it holds", "tickets", len(tickets))
	}()
}

// markQueuedFor is how long markQueued keeps trying.
const markQueuedFor = time.Minute
