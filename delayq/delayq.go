// Package delayq expires unpaid orders when their payment window ends.
//
// The worker schedules each order's expiry as it creates it (Scheduler): it
// publishes the order into the delay bucket queue for the time left until
// pay_by (one queue per delay length, with a queue-wide TTL and no
// consumers), which dead-letters it into the expiry queue when the time is
// up. The expirer then expires the order through the lifecycle (conditional
// update + outbox row, then release in Redis); a duplicate or a late message
// changes nothing. A message whose step failed (MySQL or Redis away) is
// retried by the consumer's retry rule (queue.Retry), the same as every
// consumer's.
//
// The sweeper, one runner at a time, does two passes every SweepInterval:
//   - it expires the overdue unpaid orders that any lost message missed, so a
//     lost message only delays expiry by the sweep interval. Each page of due
//     orders is expired in MySQL first, all of it (Expirer.ExpireInBook), and
//     only then does Redis follow the orders it expired (Expirer.Refollow),
//     until the first Redis step fails: the orders after it are left to the
//     second pass. So MySQL, the book of record, expires every due order
//     within a sweep whatever Redis does, and a Redis that hangs rather than
//     refuses (each call waiting out its read timeout) costs a sweep one
//     timeout, not one per order;
//   - it re-follows closed orders: every order expired or cancelled since its
//     mark (per shard) whose ticket copy in Redis does not say so yet has its
//     units released and its copy rewritten (lifecycle's Refollow). That is
//     what completes a transition whose Redis step still failed when its
//     message ran out of retries (Redis away longer than the retry budget
//     times the delivery limit), whose caller gave up (a cancel answered
//     503 and not retried), or that the first pass expired and left to it
//     (its Redis step failed, or was not tried after another failed: the
//     expiry committed before the pass, so its change is past the mark and
//     is looked at once FollowSettle has passed). The mark moves past an
//     order only once Redis followed it, so the orders closed during an
//     outage are followed within a sweep of Redis answering again; each
//     order is looked at about once, through an index, so a pass costs a
//     read of the orders closed since the last one.
package delayq

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/flashsale/flashsale"
	"github.com/flashsale/flashsale/service"
)

// Delayer publishes messages that reach the expiry queue after seconds, in one
// broker message; the expiry consumer gets them one by one.
type Delayer interface {
	PublishDelayed(ctx context.Context, msgID string, bodies [][]byte, seconds int) error
}

// Expirer expires orders and makes Redis follow closed ones (the lifecycle).
type Expirer interface {
	// Expire expires the order in MySQL if it is due, then makes Redis
	// follow (ExpireInBook, then the Redis step). It returns the order as it
	// stands: still pending_payment when not due.
	Expire(ctx context.Context, ref flashsale.OrderRef) (*flashsale.Order, error)
	// ExpireInBook is Expire without the Redis step: only MySQL's transition
	// (and the user's unpaid strike). Its errors are MySQL's, never Redis's.
	ExpireInBook(ctx context.Context, ref flashsale.OrderRef) (*flashsale.Order, error)
	// Refollow makes the stock store and the ticket copy follow the order's
	// status unless the copy says it already, and reports whether it had to.
	Refollow(ctx context.Context, o *flashsale.Order) (bool, error)
}

// Due finds what the sweeper works on (the book of record).
type Due interface {
	Shards() int
	// DueOrders returns up to limit unpaid orders of shard past pay_by at now.
	DueOrders(ctx context.Context, shard int, now time.Time, limit int) ([]*flashsale.Order, error)
	// ClosedOrders returns up to limit orders of shard expired or cancelled
	// after mark and at least settle ago, in order, with their marks.
	ClosedOrders(ctx context.Context, shard int, mark flashsale.OrderMark, settle time.Duration, limit int) ([]*flashsale.Order, []flashsale.OrderMark, error)
}

// Config for a Queue.
type Config struct {
	Delayer Delayer // required
	Expirer Expirer // required
	Due     Due     // required
	// Leases holds the sweeper's lease. Required.
	Leases service.Leases
	// Namespace prefixes the lease key. Required.
	Namespace string
	// SweepInterval is the time between sweeps. Default 5 s.
	SweepInterval time.Duration
	// SweepGrace is how long past pay_by an order must be before the sweeper takes
	// it (the queue normally expires it first). Default 1 s.
	SweepGrace time.Duration
	// FollowSettle is how long ago an order must have closed before the
	// sweeper's pass looks at it (the transition normally makes Redis follow
	// first, and a transaction commits within it). Default 5 s.
	FollowSettle time.Duration
	// FollowLookback is how far back the pass starts when the sweeper starts
	// or takes the lease over: orders closed earlier are not looked at
	// (the reconciler still compares their holds). Default 10 min.
	FollowLookback time.Duration
	// Log default slog.Default(); Registry optional; Now default time.Now.
	Log      *slog.Logger
	Registry prometheus.Registerer
	Now      func() time.Time
}

// Queue is the delayed-expiry role: the handler of its consumer
// (HandleExpiry), and the sweeper. A Queue is the sweeper's
// service.Service: Start starts it competing for the sweeper lease (Started
// is closed then), Stop ends it.
type Queue struct {
	service.Runner
	cfg      Config
	log      *slog.Logger
	expired  *prometheus.CounterVec
	followed prometheus.Counter
	lag      prometheus.Histogram // see metrics.go

	mu    sync.Mutex
	marks map[int]flashsale.OrderMark // per shard: the pass has followed every order closed up to here
}

// New returns a Queue.
func New(cfg Config) (*Queue, error) {
	if cfg.Delayer == nil || cfg.Expirer == nil || cfg.Due == nil || cfg.Leases == nil || cfg.Namespace == "" {
		return nil, errors.New("delayq: Delayer, Expirer, Due, Leases and Namespace are required")
	}
	if cfg.SweepInterval == 0 {
		cfg.SweepInterval = 5 * time.Second
	}
	if cfg.SweepGrace == 0 {
		cfg.SweepGrace = time.Second
	}
	if cfg.FollowSettle == 0 {
		cfg.FollowSettle = 5 * time.Second
	}
	if cfg.FollowLookback == 0 {
		cfg.FollowLookback = 10 * time.Minute
	}
	if cfg.SweepInterval < 0 || cfg.SweepGrace < 0 || cfg.FollowSettle < 0 || cfg.FollowLookback < 0 {
		return nil, errors.New("delayq: SweepInterval, SweepGrace, FollowSettle and FollowLookback must be positive")
	}
	if cfg.Log == nil {
		cfg.Log = slog.Default()
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	q := &Queue{cfg: cfg, log: cfg.Log,
		expired: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "flashsale_delayq_expired_total",
			Help: "Orders expired, by the path that found them (queue or sweeper)."}, []string{"path"}),
		followed: prometheus.NewCounter(prometheus.CounterOpts{Name: "flashsale_delayq_refollowed_total",
			Help: "Expired or cancelled orders whose ticket copy in Redis did not say so when the sweeper's pass looked, made to follow by it (units released, copy rewritten)."})}
	if cfg.Registry != nil {
		cfg.Registry.MustRegister(q.expired, q.followed)
	}
	q.initOpsMetrics()
	return q, nil
}

// bucketFor is the delay bucket, in seconds, for a message due in left: 0 when it
// is due (publish straight to the expiry queue); the sale's payment window when
// left is within 2 s of it (the usual case: the event arrived promptly, and the
// order expires at most 2 s late); otherwise the largest power of two not above
// left, after which the expirer delays it again for what is left. So the number
// of bucket queues stays small (one per window length in use, plus powers of
// two), whatever the lag of the relay or delayq.
func bucketFor(left time.Duration, window int) int {
	if left <= 0 {
		return 0
	}
	secs := int(math.Ceil(left.Seconds()))
	if window > 0 && secs >= window-2 {
		return window
	}
	b := 1
	for b*2 <= secs {
		b *= 2
	}
	return b
}

// due is an expiry message's body: the order it expires. It has the shape of
// an order.created event (the body the bucket queues carried when delayq
// scheduled expiries from those events), so a message published by an older
// version decodes alike.
type due struct {
	Order flashsale.EventOrder `json:"order"`
}

func decode(m flashsale.Message) (*due, bool) {
	var d due
	if err := json.Unmarshal(m.Body(), &d); err != nil || d.Order.OrderID == "" || d.Order.UserID == "" {
		return nil, false
	}
	return &d, true
}

// Scheduler schedules the expiry of orders as they are created: the worker
// calls it for every delivery whose ticket ends pending_payment, before it
// acks the delivery (a crash in between redelivers the purchase, which finds
// its order and schedules again; a duplicate expiry message changes
// nothing). So no broker message per order is spent on scheduling: the
// orders of a call that fall into one delay bucket go in one message.
type Scheduler struct {
	delayer Delayer
	now     func() time.Time
}

// NewScheduler returns a Scheduler publishing through d; now is the clock
// (nil: time.Now).
func NewScheduler(d Delayer, now func() time.Time) *Scheduler {
	if now == nil {
		now = time.Now
	}
	return &Scheduler{delayer: d, now: now}
}

// Schedule delays the expiry of each order until its pay_by: the bucket of
// its payment window when it is scheduled promptly (pay_by, fixed at its
// creation, is within 2 s of the window ahead), a power of two of the time
// left otherwise (bucketFor). nil only once every message was confirmed.
func (s *Scheduler) Schedule(ctx context.Context, orders []*flashsale.Order) error {
	type bucket struct {
		id     string // the first order's id names the message
		bodies [][]byte
	}
	buckets := map[int]*bucket{}
	var seq []int
	now := s.now()
	for _, o := range orders {
		body, err := json.Marshal(due{Order: flashsale.SnapshotOf(o)})
		if err != nil {
			return err
		}
		window := int(math.Round(o.PayBy.Sub(o.CreatedAt).Seconds()))
		secs := bucketFor(o.PayBy.Sub(now), window)
		b := buckets[secs]
		if b == nil {
			b = &bucket{id: o.ID}
			buckets[secs] = b
			seq = append(seq, secs)
		}
		b.bodies = append(b.bodies, body)
	}
	for _, secs := range seq {
		b := buckets[secs]
		if err := s.delayer.PublishDelayed(ctx, b.id, b.bodies, secs); err != nil {
			return fmt.Errorf("delayq: scheduling %d expiries: %w", len(b.bodies), err)
		}
	}
	return nil
}

// HandleExpiry expires the order of each message when it is due; one that
// arrives early (its pay_by is ahead: the clock of whoever scheduled it ran
// behind) is delayed again for what is left.
func (q *Queue) HandleExpiry(ctx context.Context, msgs []flashsale.Message) {
	for _, m := range msgs {
		d, ok := decode(m)
		if !ok {
			q.log.Error("dropping a malformed expiry message", "body", string(m.Body()))
			m.DeadLetter()
			continue
		}
		o, err := q.cfg.Expirer.Expire(ctx, d.Order.Ref())
		switch {
		case errors.Is(err, flashsale.ErrNotFound):
			q.log.Error("dropping expiry of an unknown order", "order", d.Order.OrderID)
			m.Ack()
		case err != nil:
			q.log.Warn("expiring failed; retrying", "order", d.Order.OrderID, "err", err)
			m.Retry()
		case o.Status == flashsale.OrderPendingPayment:
			if err := q.cfg.Delayer.PublishDelayed(ctx, d.Order.OrderID, [][]byte{m.Body()}, bucketFor(o.PayBy.Sub(q.cfg.Now()), 0)); err != nil {
				m.Retry()
				continue
			}
			m.Ack()
		default:
			if o.Status == flashsale.OrderExpired {
				q.expired.WithLabelValues("queue").Inc()
				q.observeLag(o)
			}
			m.Ack()
		}
	}
}

// Start starts the sweeper: a sweep (Sweep, then FollowClosed) when it takes
// the sweeper lease and every SweepInterval while it holds it (one sweeper at
// a time; another process takes over within sweeperLease of this one's
// death).
func (q *Queue) Start(ctx context.Context) error { return q.Go(ctx, q.sweep) }

func (q *Queue) sweep(ctx context.Context, ready func()) {
	leader := service.Leader{Leases: q.cfg.Leases, Key: q.cfg.Namespace + ":sweeper", TTL: sweeperLease, Log: q.log}
	ready()
	leader.Run(ctx, func(ctx context.Context) {
		// A new holder of the lease sweeps at once (the lease may have moved
		// because the lease store, Redis, was away: work waits), and starts
		// its pass FollowLookback back.
		q.resetMarks()
		for first := true; first || service.Sleep(ctx, q.cfg.SweepInterval); first = false {
			n, err := q.Sweep(ctx)
			if err != nil && ctx.Err() == nil {
				q.log.Warn("sweep failed", "err", err)
			}
			if n > 0 {
				q.log.Info("sweeper expired overdue orders the queue missed", "orders", n)
			}
			n, err = q.FollowClosed(ctx)
			if err != nil && ctx.Err() == nil {
				q.log.Warn("following closed orders failed; the pass resumes there", "err", err)
			}
			if n > 0 {
				q.log.Warn("sweeper made Redis follow closed orders it had not followed", "orders", n)
			}
		}
	})
}

// sweeperLease is the sweeper's lease TTL.
const sweeperLease = 10 * time.Second

// duePage is how many due orders Sweep reads at once.
const duePage = 500

// Sweep expires every unpaid order past pay_by + SweepGrace once, and returns
// how many it expired. Each shard is read a page of due orders at a time; a
// page is expired in MySQL first, all of it (ExpireInBook, eight at a time),
// and then Redis follows the orders it expired (Refollow, eight at a time)
// until a Redis step fails: the pass tries no more Redis steps after that, on
// any shard, and FollowClosed makes Redis follow those orders once it answers
// (they are in MySQL's closed orders, past its marks). So a Redis away or
// hanging never holds back an expiry in MySQL, and costs a sweep one
// timeout. A shard whose MySQL fails stops there until the next sweep; the
// other shards are swept all the same. The error joins each shard's MySQL
// failure and the first Redis failure.
func (q *Queue) Sweep(ctx context.Context) (int, error) {
	total := 0
	var errs []error
	redisFailed := false
	for shard := 0; shard < q.cfg.Due.Shards(); shard++ {
		for ctx.Err() == nil {
			due, err := q.cfg.Due.DueOrders(ctx, shard, q.cfg.Now().Add(-q.cfg.SweepGrace), duePage)
			if err != nil {
				errs = append(errs, fmt.Errorf("shard %d: %w", shard, err))
				break
			}
			expired, err := q.expireInBook(ctx, due)
			total += len(expired)
			if !redisFailed {
				if _, _, ferr := q.refollowAll(ctx, expired); ferr != nil {
					redisFailed = true
					errs = append(errs, fmt.Errorf("shard %d: %w", shard, ferr))
				}
			}
			if err != nil {
				errs = append(errs, fmt.Errorf("shard %d: %w", shard, err))
				break
			}
			// A full page of which none expired is not due by the book's
			// clock yet (it decides): reading it again would find the same.
			if len(due) < duePage || len(expired) == 0 {
				break
			}
		}
	}
	return total, errors.Join(errs...)
}

// expireInBook expires orders in MySQL only, eight at a time, and returns
// those that stand expired, in their order, with the first error.
func (q *Queue) expireInBook(ctx context.Context, orders []*flashsale.Order) ([]*flashsale.Order, error) {
	got := make([]*flashsale.Order, len(orders))
	var mu sync.Mutex
	var firstErr error
	eightAtATime(orders, func(i int, o *flashsale.Order) {
		cur, err := q.cfg.Expirer.ExpireInBook(ctx, o.Ref())
		mu.Lock()
		defer mu.Unlock()
		if err != nil {
			if firstErr == nil {
				firstErr = fmt.Errorf("delayq: expire order %s: %w", o.ID, err)
			}
			return
		}
		if cur.Status == flashsale.OrderExpired {
			got[i] = cur
			q.expired.WithLabelValues("sweeper").Inc()
			q.observeLag(cur)
		}
	})
	expired := got[:0]
	for _, o := range got {
		if o != nil {
			expired = append(expired, o)
		}
	}
	return expired, firstErr
}

// eightAtATime calls fn for each order, eight at a time, and returns once
// every call returned.
func eightAtATime(orders []*flashsale.Order, fn func(i int, o *flashsale.Order)) {
	sem := make(chan struct{}, 8)
	var wg sync.WaitGroup
	for i, o := range orders {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer func() { <-sem; wg.Done() }()
			fn(i, o)
		}()
	}
	wg.Wait()
}

// resetMarks makes the next FollowClosed start FollowLookback back.
func (q *Queue) resetMarks() {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.marks = nil
}

// followPage is how many closed orders FollowClosed reads at once.
const followPage = 500

// FollowClosed is the pass over closed orders (see the package doc): on each
// shard, the orders expired or cancelled since the shard's mark and
// FollowSettle ago at least are made to follow in Redis (Expirer.Refollow),
// eight at a time, and the mark moves past each order once it followed. A
// Redis failure stops the pass at the first order that did not follow; the
// next pass resumes there. A shard whose MySQL fails keeps its mark until the
// next pass, and the other shards are followed all the same (a Sweep whose
// Redis steps failed leaves its expiries of every shard to this pass). It
// returns how many orders had not followed.
func (q *Queue) FollowClosed(ctx context.Context) (int, error) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.marks == nil {
		q.marks = map[int]flashsale.OrderMark{}
		for shard := 0; shard < q.cfg.Due.Shards(); shard++ {
			q.marks[shard] = flashsale.OrderMark{At: q.cfg.Now().Add(-q.cfg.FollowLookback)}
		}
	}
	total := 0
	var errs []error
	for shard := 0; shard < q.cfg.Due.Shards(); shard++ {
		for ctx.Err() == nil {
			orders, marks, err := q.cfg.Due.ClosedOrders(ctx, shard, q.marks[shard], q.cfg.FollowSettle, followPage)
			if err != nil {
				errs = append(errs, fmt.Errorf("shard %d: %w", shard, err))
				break
			}
			did, done, err := q.refollowAll(ctx, orders)
			for i, d := range did {
				if d {
					total++
					q.followed.Inc()
					q.log.Debug("made Redis follow a closed order", "order", orders[i].ID, "status", orders[i].Status)
				}
			}
			if done > 0 {
				q.marks[shard] = marks[done-1]
			}
			if err != nil {
				return total, errors.Join(append(errs, err)...)
			}
			if len(orders) < followPage {
				break
			}
		}
	}
	return total, errors.Join(append(errs, ctx.Err())...)
}

// refollowAll makes Redis follow orders (Expirer.Refollow), eight at a time,
// until one fails (Redis away: the orders after it are not tried, so a pass
// over many orders does not wait out a timeout for each; the ones before it
// still are, so a mark moves as far as it can). It returns which orders had
// not followed and were made to, how many of the first orders all followed
// (a mark may move past those), and the first failure's error.
func (q *Queue) refollowAll(ctx context.Context, orders []*flashsale.Order) (did []bool, done int, err error) {
	ok := make([]bool, len(orders))
	did = make([]bool, len(orders))
	var mu sync.Mutex
	var firstErr error
	failedAt := len(orders)
	eightAtATime(orders, func(i int, o *flashsale.Order) {
		mu.Lock()
		after := i > failedAt
		mu.Unlock()
		if after {
			return
		}
		d, err := q.cfg.Expirer.Refollow(ctx, o)
		mu.Lock()
		defer mu.Unlock()
		if err != nil {
			if i < failedAt {
				failedAt = i
				firstErr = fmt.Errorf("delayq: make Redis follow order %s (%s): %w", o.ID, o.Status, err)
			}
			return
		}
		ok[i], did[i] = true, d
	})
	for done < len(orders) && ok[done] {
		done++
	}
	return did, done, firstErr
}
