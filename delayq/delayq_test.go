package delayq

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/flashsale/flashsale"
	"github.com/flashsale/flashsale/mock"
)

var now = time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)

func newQueue(t *testing.T, d *mock.Delayer, e *mock.Expirer, due *mock.Due) *Queue {
	t.Helper()
	if due == nil {
		due = &mock.Due{N: 1, DueFn: func(context.Context, int, time.Time, int) ([]*flashsale.Order, error) { return nil, nil }}
	}
	q, err := New(Config{Delayer: d, Expirer: e, Due: due, Leases: mock.Leases{}, Namespace: "t", Now: func() time.Time { return now }})
	if err != nil {
		t.Fatal(err)
	}
	return q
}

// created is an order.created event: the body expiry messages had before the
// worker scheduled expiries itself (the expiry consumer still reads it).
func created(id string, occurred, payBy time.Time) flashsale.Event {
	return flashsale.Event{EventID: "ev-" + id, Type: flashsale.EventOrderCreated, OccurredAt: occurred,
		Order: flashsale.EventOrder{OrderID: id, UserID: "u", Status: flashsale.OrderPendingPayment, PayBy: payBy}}
}

func order(id string, created, payBy time.Time) *flashsale.Order {
	return &flashsale.Order{ID: id, UserID: "u", Status: flashsale.OrderPendingPayment, CreatedAt: created, PayBy: payBy}
}

// An order's expiry is delayed until its pay_by: its window's bucket when it
// is scheduled promptly, a power of two of the time left when late (a bundle
// has no one sale: only the order's pay_by counts). The orders that share a
// bucket go in one message, named by the first; a failed publish is an error.
// The messages' bodies are what the expiry consumer reads back.
func TestScheduleDelaysEachOrderUntilItsPayBy(t *testing.T) {
	d := &mock.Delayer{}
	s := NewScheduler(d, func() time.Time { return now })
	orders := []*flashsale.Order{
		order("o1", now, now.Add(900*time.Second)),
		order("o2", now.Add(-800*time.Second), now.Add(100*time.Second)),
		order("o4", now, now.Add(900*time.Second)),
	}
	if err := s.Schedule(context.Background(), orders); err != nil {
		t.Fatal(err)
	}
	want := []mock.Delayed{{MsgID: "o1", Messages: 2, Seconds: 900}, {MsgID: "o2", Messages: 1, Seconds: 64}}
	if len(d.Published) != 2 || d.Published[0] != want[0] || d.Published[1] != want[1] {
		t.Errorf("published %+v, want %+v", d.Published, want)
	}
	for i, body := range d.Bodies {
		got, ok := decode(mock.NewMessage(body))
		if !ok || got.Order.OrderID != orders[[]int{0, 2, 1}[i]].ID || got.Order.UserID != "u" {
			t.Errorf("body %d decodes as %+v, %v", i, got, ok)
		}
	}
	d.Err = errors.New("broker away")
	if err := s.Schedule(context.Background(), orders[:1]); !errors.Is(err, d.Err) {
		t.Errorf("a failed publish: %v, want it", err)
	}
}

// An expiry message expires its order; one that arrives early is delayed
// again for what is left; an unknown order is dropped; a failure is retried.
func TestHandleExpiry(t *testing.T) {
	d := &mock.Delayer{}
	orders := map[string]*flashsale.Order{
		"due":   {ID: "due", Status: flashsale.OrderExpired},
		"early": {ID: "early", Status: flashsale.OrderPendingPayment, PayBy: now.Add(10 * time.Second)},
	}
	e := &mock.Expirer{ExpireFn: func(_ context.Context, ref flashsale.OrderRef) (*flashsale.Order, error) {
		id := ref.Order
		if id == "broken" {
			return nil, errors.New("mysql away")
		}
		if o := orders[id]; o != nil {
			return o, nil
		}
		return nil, flashsale.ErrNotFound
	}}
	q := newQueue(t, d, e, nil)
	msgs := map[string]*mock.Message{}
	for _, id := range []string{"due", "early", "unknown", "broken"} {
		msgs[id] = mock.NewMessage(created(id, now, now))
	}
	q.HandleExpiry(context.Background(), mock.Messages(msgs["due"], msgs["early"], msgs["unknown"], msgs["broken"]))
	for id, want := range map[string]string{"due": "ack", "early": "ack", "unknown": "ack", "broken": "retry"} {
		if got := msgs[id].Settled(); got != want {
			t.Errorf("%s settled %q, want %q", id, got, want)
		}
	}
	if len(d.Published) != 1 || d.Published[0] != (mock.Delayed{MsgID: "early", Messages: 1, Seconds: 8}) {
		t.Errorf("re-delayed %+v, want the early one for 8 s (a power of two of the 10 s left)", d.Published)
	}
}

// The sweeper expires every overdue order of every shard, in pages, and
// counts those it expired.
func TestSweepExpiresEveryOverdueOrder(t *testing.T) {
	pages := map[int][][]*flashsale.Order{}
	for shard := 0; shard < 2; shard++ {
		var page []*flashsale.Order
		for i := 0; i < 500; i++ {
			page = append(page, &flashsale.Order{ID: "o", UserID: "u", Status: flashsale.OrderPendingPayment})
		}
		pages[shard] = [][]*flashsale.Order{page, page[:3]}
	}
	due := &mock.Due{N: 2, DueFn: func(_ context.Context, shard int, at time.Time, limit int) ([]*flashsale.Order, error) {
		if !at.Equal(now.Add(-time.Second)) || limit != 500 {
			t.Errorf("due orders asked at %v limit %d, want pay_by + 1 s grace, 500", at, limit)
		}
		if len(pages[shard]) == 0 {
			return nil, nil
		}
		p := pages[shard][0]
		pages[shard] = pages[shard][1:]
		return p, nil
	}}
	var expired atomic.Int32 // expiries run concurrently
	e := &mock.Expirer{ExpireInBookFn: func(context.Context, flashsale.OrderRef) (*flashsale.Order, error) {
		expired.Add(1)
		return &flashsale.Order{Status: flashsale.OrderExpired}, nil
	}}
	n, err := newQueue(t, &mock.Delayer{}, e, due).Sweep(context.Background())
	if err != nil || n != 1006 || expired.Load() != 1006 {
		t.Errorf("sweep = %d, %v (%d expired), want 1006", n, err, expired.Load())
	}
}

// A shard whose expiries fail (its MySQL away) does not hold back the other
// shard's: the sweep goes on to it and reports the failure. (A Redis step
// failing holds back no expiry at all: TestSweepExpiresInTheBookFirstWhileRedisHangs.)
func TestSweepGoesOnPastAFailingShard(t *testing.T) {
	due := &mock.Due{N: 2, DueFn: func(_ context.Context, shard int, _ time.Time, _ int) ([]*flashsale.Order, error) {
		return []*flashsale.Order{{ID: fmt.Sprintf("o%d", shard), UserID: "u", Status: flashsale.OrderPendingPayment}}, nil
	}}
	var expired []string
	var mu sync.Mutex
	e := &mock.Expirer{ExpireInBookFn: func(_ context.Context, ref flashsale.OrderRef) (*flashsale.Order, error) {
		if ref.Order == "o0" {
			return nil, errors.New("mysql: connection refused")
		}
		mu.Lock()
		defer mu.Unlock()
		expired = append(expired, ref.Order)
		return &flashsale.Order{Status: flashsale.OrderExpired}, nil
	}}
	n, err := newQueue(t, &mock.Delayer{}, e, due).Sweep(context.Background())
	if err == nil || n != 1 || len(expired) != 1 || expired[0] != "o1" {
		t.Errorf("sweep = %d, %v (expired %v), want shard 1's order expired and shard 0's failure reported", n, err, expired)
	}
}

// The pass over closed orders starts FollowLookback back on each shard, asks
// for orders closed FollowSettle ago at least, makes each follow in Redis, and
// moves a shard's mark only past the orders that followed: with Redis away
// at the third order of shard 0, the next pass resumes at that order, and the
// ones before it are not looked at again.
func TestFollowClosedResumesWhereRedisFailed(t *testing.T) {
	closed := map[int][]*flashsale.Order{}
	at := func(i int) time.Time { return now.Add(-time.Minute + time.Duration(i)*time.Second) }
	for shard, n := range []int{5, 2} {
		for i := 0; i < n; i++ {
			closed[shard] = append(closed[shard], &flashsale.Order{ID: fmt.Sprintf("s%d-%d", shard, i), UserID: "u", Status: flashsale.OrderExpired})
		}
	}
	var asked []string
	due := &mock.Due{N: 2, DueFn: func(context.Context, int, time.Time, int) ([]*flashsale.Order, error) { return nil, nil },
		ClosedFn: func(_ context.Context, shard int, mark flashsale.OrderMark, settle time.Duration, limit int) ([]*flashsale.Order, []flashsale.OrderMark, error) {
			asked = append(asked, fmt.Sprintf("%d after %q", shard, mark.OrderID))
			if settle != 5*time.Second {
				t.Errorf("settle %v, want the 5 s default", settle)
			}
			if mark.OrderID == "" && !mark.At.Equal(now.Add(-10*time.Minute)) {
				t.Errorf("first mark of shard %d at %v, want 10 min (the lookback) before now", shard, mark.At)
			}
			var orders []*flashsale.Order
			var marks []flashsale.OrderMark
			for i, o := range closed[shard] {
				m := flashsale.OrderMark{At: at(i), OrderID: o.ID}
				if m.At.After(mark.At) && len(orders) < limit {
					orders, marks = append(orders, o), append(marks, m)
				}
			}
			return orders, marks, nil
		}}
	var mu sync.Mutex
	followed := map[string]int{}
	redisAway := true
	e := &mock.Expirer{RefollowFn: func(_ context.Context, o *flashsale.Order) (bool, error) {
		mu.Lock()
		defer mu.Unlock()
		if o.ID == "s0-2" && redisAway {
			return false, errors.New("redis away")
		}
		followed[o.ID]++
		return o.ID != "s0-1", nil // s0-1's copy said expired already
	}}
	q := newQueue(t, &mock.Delayer{}, e, due)

	// Orders after the failed one may or may not be tried in the same pass
	// (eight run at once; the rest wait for the next pass).
	n, err := q.FollowClosed(context.Background())
	if err == nil || !strings.Contains(err.Error(), "s0-2") || n < 1 || n > 3 || followed["s0-0"] != 1 {
		t.Errorf("first pass: %d followed, %v; want s0-0 followed and s0-2's error", n, err)
	}
	redisAway = false
	if _, err = q.FollowClosed(context.Background()); err != nil {
		t.Errorf("second pass: %v", err)
	}
	for id, min := range map[string]int{"s0-0": 1, "s0-1": 1, "s0-2": 1, "s0-3": 1, "s0-4": 1, "s1-0": 1, "s1-1": 1} {
		max := min
		if id == "s0-3" || id == "s0-4" {
			max = 2 // tried in the first pass too, perhaps
		}
		if followed[id] < min || followed[id] > max {
			t.Errorf("%s refollowed %d times, want %d to %d: %v", id, followed[id], min, max, followed)
		}
	}
	// Every order but s0-1 (its copy was right) was made to follow: 6, and
	// s0-3 and s0-4 perhaps twice.
	if got := testutil.ToFloat64(q.followed); got < 6 || got > 8 {
		t.Errorf("flashsale_delayq_refollowed_total %v, want 6 to 8", got)
	}
	if want := []string{`0 after ""`, `0 after "s0-1"`, `1 after ""`}; fmt.Sprint(asked) != fmt.Sprint(want) {
		t.Errorf("asked %q, want %q", asked, want)
	}
	n, err = q.FollowClosed(context.Background())
	if err != nil || n != 0 || asked[len(asked)-2] != `0 after "s0-4"` || asked[len(asked)-1] != `1 after "s1-1"` {
		t.Errorf("third pass: %d, %v, asked %q; want nothing new, from each shard's last order", n, err, asked)
	}
}

// expiryFake is the lifecycle over a book of record and a Redis, for the
// sweeper's ordering: ExpireInBook expires a due order in the book (its
// change is marked at the book's clock, as mysqlstore marks updated_at);
// Refollow makes "Redis" follow unless it did already; Expire is both, as
// lifecycle.Service.Expire. While hang is set, a Redis step waits until its
// context ends or hang passes and fails, as a call to a frozen Redis waits
// out its read timeout; while down is set, it fails at once.
type expiryFake struct {
	mu       sync.Mutex
	orders   map[string]*flashsale.Order // the book
	closedAt map[string]time.Time
	followed map[string]int // Redis steps done, per order
	clock    time.Time      // the book's clock
	hang     time.Duration
	down     bool
	tries    atomic.Int32 // Redis steps tried
}

// newExpiryFake holds n unpaid orders, o00…, due at payBy.
func newExpiryFake(n int, payBy time.Time) *expiryFake {
	f := &expiryFake{orders: map[string]*flashsale.Order{}, closedAt: map[string]time.Time{}, followed: map[string]int{}, clock: now}
	for i := 0; i < n; i++ {
		id := fmt.Sprintf("o%02d", i)
		f.orders[id] = &flashsale.Order{ID: id, UserID: "u", Status: flashsale.OrderPendingPayment, PayBy: payBy}
	}
	return f
}

func (f *expiryFake) expireInBook(_ context.Context, ref flashsale.OrderRef) (*flashsale.Order, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	o := f.orders[ref.Order]
	if o == nil {
		return nil, flashsale.ErrNotFound
	}
	if o.Status == flashsale.OrderPendingPayment && !o.PayBy.After(f.clock) {
		o.Status = flashsale.OrderExpired
		f.closedAt[o.ID] = f.clock
	}
	c := *o
	return &c, nil
}

// redisStep makes Redis follow o, or fails (hang, down).
func (f *expiryFake) redisStep(ctx context.Context, o *flashsale.Order) error {
	f.tries.Add(1)
	f.mu.Lock()
	hang, down := f.hang, f.down
	f.mu.Unlock()
	if hang > 0 {
		select {
		case <-ctx.Done():
		case <-time.After(hang):
		}
		return errors.New("redis: i/o timeout")
	}
	if down {
		return errors.New("redis: connection refused")
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.followed[o.ID]++
	return nil
}

func (f *expiryFake) expirer() *mock.Expirer {
	return &mock.Expirer{
		ExpireInBookFn: f.expireInBook,
		ExpireFn: func(ctx context.Context, ref flashsale.OrderRef) (*flashsale.Order, error) {
			o, err := f.expireInBook(ctx, ref)
			if err != nil {
				return nil, err
			}
			return o, f.redisStep(ctx, o)
		},
		RefollowFn: func(ctx context.Context, o *flashsale.Order) (bool, error) {
			f.mu.Lock()
			did := f.followed[o.ID] > 0
			f.mu.Unlock()
			if did {
				return false, nil
			}
			if err := f.redisStep(ctx, o); err != nil {
				return false, err
			}
			return true, nil
		}}
}

// due reads the book as mysqlstore does, on one shard: unpaid orders due at
// a time, by pay_by; closed ones after a mark and settle before the book's
// clock, by (change, id).
func (f *expiryFake) due() *mock.Due {
	return &mock.Due{N: 1,
		DueFn: func(_ context.Context, _ int, at time.Time, limit int) ([]*flashsale.Order, error) {
			f.mu.Lock()
			defer f.mu.Unlock()
			var out []*flashsale.Order
			for _, o := range f.orders {
				if o.Status == flashsale.OrderPendingPayment && !o.PayBy.After(at) {
					c := *o
					out = append(out, &c)
				}
			}
			slices.SortFunc(out, func(a, b *flashsale.Order) int {
				return cmp.Or(a.PayBy.Compare(b.PayBy), cmp.Compare(a.ID, b.ID))
			})
			return out[:min(len(out), limit)], nil
		},
		ClosedFn: func(_ context.Context, _ int, mark flashsale.OrderMark, settle time.Duration, limit int) ([]*flashsale.Order, []flashsale.OrderMark, error) {
			f.mu.Lock()
			defer f.mu.Unlock()
			var marks []flashsale.OrderMark
			for id, at := range f.closedAt {
				after := at.After(mark.At) || (at.Equal(mark.At) && id > mark.OrderID)
				if after && !at.After(f.clock.Add(-settle)) {
					marks = append(marks, flashsale.OrderMark{At: at, OrderID: id})
				}
			}
			slices.SortFunc(marks, func(a, b flashsale.OrderMark) int {
				return cmp.Or(a.At.Compare(b.At), cmp.Compare(a.OrderID, b.OrderID))
			})
			marks = marks[:min(len(marks), limit)]
			orders := make([]*flashsale.Order, len(marks))
			for i, m := range marks {
				c := *f.orders[m.OrderID]
				orders[i] = &c
			}
			return orders, marks, nil
		}}
}

// expired counts the orders expired in the book.
func (f *expiryFake) expired() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.closedAt)
}

// While Redis hangs (each call waits out a 3 s timeout), a sweep still
// expires every due order in MySQL at once, and tries the Redis steps only
// until the first fails: the pass costs one timeout, not one per eight
// orders. Before, each order's Redis step followed its MySQL expiry, eight at
// a time, so 40 orders took five timeouts (15 s) to expire in MySQL.
func TestSweepExpiresInTheBookFirstWhileRedisHangs(t *testing.T) {
	const hang = 3 * time.Second
	f := newExpiryFake(40, now.Add(-time.Minute))
	f.hang = hang
	q := newQueue(t, &mock.Delayer{}, f.expirer(), f.due())
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	type result struct {
		n   int
		err error
	}
	done := make(chan result, 1)
	start := time.Now()
	go func() {
		n, err := q.Sweep(ctx)
		done <- result{n, err}
	}()
	for f.expired() < 40 && time.Since(start) < time.Second {
		time.Sleep(5 * time.Millisecond) // polling, with a deadline
	}
	if got := f.expired(); got < 40 {
		t.Errorf("%v into the sweep, %d of 40 due orders expired in the book; want all of them (a Redis step hangs %v)", time.Since(start).Round(time.Millisecond), got, hang)
	}
	select {
	case r := <-done:
		if r.n != 40 || r.err == nil || !strings.Contains(r.err.Error(), "i/o timeout") {
			t.Errorf("sweep = %d, %v; want 40 expired and Redis's timeout", r.n, r.err)
		}
	case <-time.After(2 * hang):
		t.Errorf("the sweep still runs %v after it started; want it over after one Redis timeout (%v)", time.Since(start).Round(time.Millisecond), hang)
		cancel()
		<-done
	}
	if tries := f.tries.Load(); tries > 8 {
		t.Errorf("%d Redis steps tried; want at most the eight started before the first failed", tries)
	}
}

// An order the sweeper expired whose Redis step failed is made to follow by
// a later FollowClosed once Redis answers: its change in the book comes after
// the mark (which moved past the orders closed before), and it is looked at
// once it settled.
func TestFollowClosedCompletesTheSweepersExpiries(t *testing.T) {
	f := newExpiryFake(3, now.Add(-time.Minute))
	f.orders["c"] = &flashsale.Order{ID: "c", UserID: "u", Status: flashsale.OrderCancelled}
	f.closedAt["c"] = now.Add(-time.Minute)
	f.followed["c"] = 1 // its cancel made Redis follow
	q := newQueue(t, &mock.Delayer{}, f.expirer(), f.due())
	ctx := context.Background()
	if n, err := q.FollowClosed(ctx); n != 0 || err != nil {
		t.Fatalf("first pass: %d, %v; want nothing to follow", n, err)
	}

	f.down = true
	if n, err := q.Sweep(ctx); n != 3 || err == nil {
		t.Fatalf("sweep with Redis away = %d, %v; want 3 expired and Redis's error", n, err)
	}
	// A pass right after the sweep does not look at them yet (FollowSettle);
	// the next, with Redis still away, fails and keeps its mark.
	if n, err := q.FollowClosed(ctx); n != 0 || err != nil {
		t.Errorf("pass after the sweep: %d, %v; want nothing settled yet", n, err)
	}
	f.clock = f.clock.Add(5 * time.Second)
	if n, err := q.FollowClosed(ctx); n != 0 || err == nil {
		t.Errorf("pass with Redis away: %d, %v; want Redis's error", n, err)
	}

	f.down = false
	f.clock = f.clock.Add(5 * time.Second)
	if n, err := q.Sweep(ctx); n != 0 || err != nil {
		t.Errorf("sweep with nothing due = %d, %v", n, err)
	}
	if n, err := q.FollowClosed(ctx); n != 3 || err != nil {
		t.Errorf("pass with Redis back: %d, %v; want the sweeper's 3 expiries followed", n, err)
	}
	for _, id := range []string{"o00", "o01", "o02", "c"} {
		if f.followed[id] != 1 {
			t.Errorf("%s followed %d times, want once: %v", id, f.followed[id], f.followed)
		}
	}
}

// A shard whose MySQL fails does not hold back the other shard's pass over
// closed orders: its orders are followed and the failure reported.
func TestFollowClosedGoesOnPastAFailingShard(t *testing.T) {
	due := &mock.Due{N: 2, DueFn: func(context.Context, int, time.Time, int) ([]*flashsale.Order, error) { return nil, nil },
		ClosedFn: func(_ context.Context, shard int, _ flashsale.OrderMark, _ time.Duration, _ int) ([]*flashsale.Order, []flashsale.OrderMark, error) {
			if shard == 0 {
				return nil, nil, errors.New("mysql: connection refused")
			}
			return []*flashsale.Order{{ID: "s1", UserID: "u", Status: flashsale.OrderExpired}},
				[]flashsale.OrderMark{{At: now.Add(-time.Minute), OrderID: "s1"}}, nil
		}}
	var followed atomic.Int32
	e := &mock.Expirer{RefollowFn: func(context.Context, *flashsale.Order) (bool, error) {
		followed.Add(1)
		return true, nil
	}}
	n, err := newQueue(t, &mock.Delayer{}, e, due).FollowClosed(context.Background())
	if n != 1 || followed.Load() != 1 || err == nil || !strings.Contains(err.Error(), "shard 0") {
		t.Errorf("pass = %d, %v (%d followed); want shard 1's order followed and shard 0's failure reported", n, err, followed.Load())
	}
}
