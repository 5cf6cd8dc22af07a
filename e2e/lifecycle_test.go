package e2e

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
)

// problems caps the errors one check reports, so that a systematic failure
// over thousands of orders stays readable.
type problems struct {
	t   *testing.T
	max int
	n   int
}

func newProblems(t *testing.T) *problems { return &problems{t: t, max: 10} }

func (p *problems) errorf(format string, args ...any) {
	p.t.Helper()
	p.n++
	if p.n <= p.max {
		p.t.Errorf(format, args...)
	}
}

func (p *problems) done() {
	p.t.Helper()
	if p.n > p.max {
		p.t.Errorf("... %d problems of this kind in all (first %d shown)", p.n, p.max)
	}
}

// checkHistory asserts that the order's distinct events, in the order they
// first arrived, are exactly the types want; that its outbox rows are the same
// types in the same (commit) order; and that every event carries the order's
// data.
func checkHistory(p *problems, o placedOrder, saleID string, evs orderEvents, rows []outboxRow, want ...string) {
	p.t.Helper()
	got := make([]string, len(evs))
	for i, ev := range evs {
		got[i] = ev.Type
	}
	if strings.Join(got, " ") != strings.Join(want, " ") {
		p.errorf("order %s of %s: events %v, want the types %v in that order", o.OrderID, o.User, evs, want)
	}
	var committed []string
	for _, r := range rows {
		committed = append(committed, r.Type)
	}
	if strings.Join(committed, " ") != strings.Join(want, " ") {
		p.errorf("order %s of %s: outbox rows %v, want %v", o.OrderID, o.User, committed, want)
	}
	for _, ev := range evs {
		eo := ev.Order
		if eo.OrderID != o.OrderID || eo.SaleID != saleID || eo.UserID != o.User || eo.Quantity != o.Quantity || eo.AmountCents != o.AmountCents {
			p.errorf("event %s (%s) carries order %+v, want order %s of sale %s, user %s, quantity %d, amount %d",
				ev.EventID, ev.Type, eo, o.OrderID, saleID, o.User, o.Quantity, o.AmountCents)
		}
	}
}

// checkExpiredInTime asserts that the order's order.expired event happened
// no earlier than pay_by and at most maxLate after it (by the server's clock).
func checkExpiredInTime(p *problems, o placedOrder, evs orderEvents, maxLate time.Duration) time.Duration {
	p.t.Helper()
	exp := evs.of(evExpired)
	if len(exp) == 0 {
		return 0
	}
	late := exp[0].OccurredAt.Sub(o.PayBy)
	if late < -time.Millisecond {
		p.errorf("order %s expired at %s, %s BEFORE its pay_by %s", o.OrderID,
			exp[0].OccurredAt.Format(time.RFC3339Nano), -late, o.PayBy.Format(time.RFC3339Nano))
	}
	if late > maxLate {
		p.errorf("order %s expired %s after its pay_by, want within %s", o.OrderID, late.Round(time.Millisecond), maxLate)
	}
	return late
}

// settled: an order no longer pending_payment.
func settled(v orderView) bool { return v.Status != "pending_payment" }

// TestExpiryReturnsStock: 200 orders of a sale with a 2 s payment window are
// left unpaid. With the sweeper out of the way (one sweep an hour) the delay
// queue alone expires every one within seconds of its pay_by, never before;
// all units go back on sale; each order emits exactly one order.expired (one
// event id, the outbox's); and new buyers can buy the returned units.
func TestExpiryReturnsStock(t *testing.T) {
	e := newEnv(t)
	sink := newEventSink(t, e)
	p := e.start("all", map[string]string{"FLASHSALE_SWEEP_INTERVAL": "3600"})
	c := p.client()
	const n, price = 200, 1500
	spec := openSale(n, 1, price)
	spec.PaymentWindowSeconds = 2
	saleID := c.createSale(t, spec)

	orders := c.placeOrders(t, saleID, userNames("exp", n))
	for _, o := range orders {
		if w := o.PayBy.Sub(time.Now()); w > 3*time.Second {
			t.Fatalf("order %s: pay_by %s is %s away, want the sale's 2 s window", o.OrderID, o.PayBy, w)
		}
	}
	views := c.awaitOrders(t, orders, time.Until(latest(orders).Add(15*time.Second)), "settled", settled)
	maxLate := checkAllExpired(t, e, c, sink, saleID, n, orders, views, 6*time.Second)
	t.Logf("latest expiry: %s after pay_by", maxLate.Round(time.Millisecond))

	// The returned units sell again.
	again := c.placeOrders(t, saleID, userNames("exp-again", n))
	if len(again) != n {
		t.Errorf("%d new orders after the expiry, want %d", len(again), n)
	}
	checkOrderRows(t, e.orders(t, saleID), n, 1)
	sink.verify(t)
}

// TestExpiryWindowsIndependent: orders of a 60 s sale are made (and their
// expiry scheduled) before orders of a 2 s sale. The 2 s orders still expire
// within seconds of their pay_by (the long ones do not hold them back), while
// the 60 s ones stay pending. The sweeper is out of the way.
func TestExpiryWindowsIndependent(t *testing.T) {
	e := newEnv(t)
	sink := newEventSink(t, e)
	p := e.start("all", map[string]string{"FLASHSALE_SWEEP_INTERVAL": "3600"})
	c := p.client()
	const n = 50
	long := openSale(n, 1, 700)
	long.PaymentWindowSeconds = 60
	longID := c.createSale(t, long)
	short := openSale(n, 1, 300)
	short.PaymentWindowSeconds = 2
	shortID := c.createSale(t, short)

	longOrders := c.placeOrders(t, longID, userNames("long", n))
	// Their order.created events are out: their expiry is scheduled first.
	longIDs := idSet(longOrders)
	eventually(t, 15*time.Second, "order.created of every 60 s order received", func() (bool, string) {
		got := 0
		for id, evs := range sink.byOrder() {
			if longIDs[id] && len(evs.ids(evCreated)) > 0 {
				got++
			}
		}
		return got == n, fmt.Sprintf("%d of %d", got, n)
	})

	shortOrders := c.placeOrders(t, shortID, userNames("short", n))
	views := c.awaitOrders(t, shortOrders, time.Until(latest(shortOrders).Add(15*time.Second)), "settled", settled)
	for _, o := range shortOrders {
		if v := views[o.OrderID]; v.Status != "expired" {
			t.Errorf("unpaid 2 s order %s ended %q, want expired", o.OrderID, v.Status)
		}
	}
	c.awaitStock(t, shortID, stockView{Total: n, Available: n}, 10*time.Second)

	// The 60 s orders are still pending: their time has not come.
	if d := time.Until(earliest(longOrders)); d < 5*time.Second {
		t.Fatalf("precondition: the 60 s orders are due in %s already; the test took too long", d)
	}
	longViews, problems := c.orderStates(longOrders)
	for _, o := range longOrders {
		if v, ok := longViews[o.OrderID]; !ok || v.Status != "pending_payment" {
			t.Errorf("60 s order %s is %q before its pay_by %s (%v), want pending_payment", o.OrderID, v.Status, o.PayBy, problems)
		}
	}
	if s := c.sale(t, longID).Stock; s != (stockView{Total: n, Held: n}) {
		t.Errorf("60 s sale stock %+v, want all %d held", s, n)
	}

	ids := idSet(shortOrders)
	rows := sink.awaitOutboxReceived(t, e, ids, 15*time.Second)
	sink.checkEventsAgainstOutbox(t, rows, ids)
	byOrder, outbox := sink.byOrder(), outboxOf(rows, ids)
	pr := newProblems(t)
	var maxLate time.Duration
	for _, o := range shortOrders {
		checkHistory(pr, o, shortID, byOrder[o.OrderID], outbox[o.OrderID], evCreated, evExpired)
		maxLate = max(maxLate, checkExpiredInTime(pr, o, byOrder[o.OrderID], 6*time.Second))
	}
	pr.done()
	t.Logf("latest 2 s expiry: %s after pay_by", maxLate.Round(time.Millisecond))
	for id, evs := range byOrder {
		if longIDs[id] && len(evs.ids(evExpired)) > 0 {
			t.Errorf("60 s order %s: order.expired received before its pay_by: %v", id, evs)
		}
	}
	sink.verify(t)
}

func earliest(orders []placedOrder) time.Time {
	m := orders[0].PayBy
	for _, o := range orders {
		if o.PayBy.Before(m) {
			m = o.PayBy
		}
	}
	return m
}

// markGate is a MySQL proxy in front of a relay's shards that lets the first
// pass marks of published rows (UPDATE outbox SET sent_at) through and holds
// every later one until Cut, which drops them unexecuted (it closes the
// server's side of the connection before the statement reaches it) and lets
// everything through from then on. Holding the marks widens the window in
// which the broker has confirmed a batch and MySQL does not know it.
type markGate struct {
	*tcpProxy
	mu      sync.Mutex
	pass    int           // marks still to let through
	holding int           // marks held right now
	cut     chan struct{} // closed by Cut
}

func newMarkGate(t *testing.T, pass int) *markGate {
	t.Helper()
	base, err := mysqlBase()
	if err != nil {
		t.Fatalf("FLASHSALE_MYSQL_META_DSN: %v", err)
	}
	g := &markGate{pass: pass, cut: make(chan struct{})}
	g.tcpProxy = newProxy(t, base.Addr)
	g.tcpProxy.upstream = g.copyUp
	t.Cleanup(g.Cut)
	return g
}

func (g *markGate) copyUp(dst io.Writer, src io.Reader) {
	copyMySQLPackets(dst, src, func(pkt []byte) {
		if !strings.HasPrefix(mysqlStatement(pkt), "UPDATE outbox SET sent_at") {
			return
		}
		g.mu.Lock()
		select {
		case <-g.cut:
			g.mu.Unlock()
			return
		default:
		}
		if g.pass > 0 {
			g.pass--
			g.mu.Unlock()
			return
		}
		g.holding++
		g.mu.Unlock()
		<-g.cut
		dst.(io.Closer).Close() // the held mark never runs
	})
}

// Holding returns how many marks are held right now.
func (g *markGate) Holding() int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.holding
}

// Cut drops every held mark and lets every later one through. Idempotent.
func (g *markGate) Cut() {
	g.mu.Lock()
	defer g.mu.Unlock()
	select {
	case <-g.cut:
	default:
		close(g.cut)
	}
}

// TestRelayKilledLosesNoEvent: 3,000 orders are made with no relay running,
// so 3,000 outbox rows wait. A relay starts with its shards behind a
// markGate: its first two batches are marked sent, every later mark is held,
// so each shard stops with a batch the broker confirmed and MySQL does not
// know of. The relay is SIGKILLed there, with rows in all three states (marked
// sent, published but not marked, not published); a new relay then starts.
// Every outbox row is received as an event (by event_id): none lost; every
// received event is an outbox row; a re-published event keeps its event_id.
func TestRelayKilledLosesNoEvent(t *testing.T) {
	e := newEnv(t)
	sink := newEventSink(t, e)
	ing := e.start("ingress", nil)
	e.startProc("worker", nil, false)
	c := ing.client()
	const n = 3000
	saleID := c.createSale(t, openSale(n, 1, 100))
	orders := c.placeOrders(t, saleID, userNames("rk", n))
	ids := idSet(orders)

	before := e.outbox(t)
	if len(before) != n {
		t.Errorf("%d outbox rows for %d new orders, want one order.created each", len(before), n)
	}
	if _, got := sink.counts(); got != 0 {
		t.Logf("note: %d events arrived with no relay running", got)
	}
	// /metrics shows the backlog: every row not sent, by shard.
	unsentBy := map[int]int{}
	for _, r := range before {
		if !r.Sent {
			unsentBy[r.Shard]++
		}
	}
	m := scrapeMetrics(t, ing.URL+"/metrics")
	for i := range e.ShardDBs {
		k := series("flashsale_outbox_backlog", "shard", strconv.Itoa(i))
		if v, ok := m[k]; !ok || v != float64(unsentBy[i]) || v == 0 {
			t.Errorf("with no relay running, %s = %v (exported: %v), want the shard's %d unsent rows", k, v, ok, unsentBy[i])
		}
	}

	// Each shard holds about 1,500 rows, three batches of 500: with two marks
	// let through, every shard stops on a held mark before its last batch.
	gate := newMarkGate(t, 2)
	relay := e.startProc("relay", map[string]string{"FLASHSALE_MYSQL_SHARD_DSNS": e.shardDSNsVia(gate.Addr)}, false)
	eventually(t, 30*time.Second, "every shard's relay waits on a held mark", func() (bool, string) {
		h := gate.Holding()
		return h == len(e.ShardDBs), fmt.Sprintf("%d marks held\n%s", h, relay.LogTail(20))
	})
	relay.Kill()
	gate.Cut()
	unsent := 0
	for _, r := range e.outbox(t) {
		if !r.Sent {
			unsent++
		}
	}
	marked := n - unsent
	t.Logf("relay killed with %d of %d outbox rows marked sent", marked, n)
	if marked == 0 || unsent == 0 {
		t.Fatalf("precondition: want some rows marked sent and some not, got %d of %d marked", marked, n)
	}
	// The batches whose marks were held reach the sink although MySQL does
	// not know they went out; and some rows were never published.
	eventually(t, 15*time.Second, "the held batches' events arrive", func() (bool, string) {
		_, got := sink.counts()
		return got > marked, fmt.Sprintf("%d distinct events arrived, %d rows marked sent", got, marked)
	})
	if _, got := sink.counts(); got >= n {
		t.Fatalf("precondition: all %d events arrived before the relay was killed; the kill came too late to test anything", got)
	}

	relay.Start()
	rows := sink.awaitOutboxReceived(t, e, nil, 30*time.Second)
	sink.checkEventsAgainstOutbox(t, rows, ids)
	if len(rows) != n {
		t.Errorf("%d outbox rows, want %d (one order.created per order)", len(rows), n)
	}
	deliveries, distinct := sink.counts()
	if distinct != len(rows) {
		t.Errorf("%d distinct event ids received for %d outbox rows: a re-published event must keep its event_id", distinct, len(rows))
	}
	byOrder, outbox := sink.byOrder(), outboxOf(rows, ids)
	pr := newProblems(t)
	for _, o := range orders {
		checkHistory(pr, o, saleID, byOrder[o.OrderID], outbox[o.OrderID], evCreated)
	}
	pr.done()
	t.Logf("%d deliveries of %d distinct events (%d duplicates)", deliveries, distinct, deliveries-distinct)

	eventually(t, 15*time.Second, "every outbox row marked sent", func() (bool, string) {
		left := 0
		for _, r := range e.outbox(t) {
			if !r.Sent {
				left++
			}
		}
		return left == 0, fmt.Sprintf("%d unsent", left)
	})
	if backlog, shards := scrapeMetrics(t, ing.URL+"/metrics").sum("flashsale_outbox_backlog"); backlog != 0 || shards != len(e.ShardDBs) {
		t.Errorf("every row sent: flashsale_outbox_backlog sums to %v over %d shards, want 0 over %d", backlog, shards, len(e.ShardDBs))
	}
	sink.verify(t)
}

// TestExpiryScheduledByTheRedeliveryAfterTheWorkerDied: the worker schedules
// an order's expiry after the order committed and before it acks the
// purchase. Here it dies in between: its MySQL connections go through the
// COMMIT-holding proxy; once COMMITs of orders are held the worker is frozen
// (SIGSTOP), the COMMITs are forwarded and answered, and the frozen worker is
// killed once MySQL has the orders. So orders exist whose expiry nobody
// scheduled: the delay bucket is empty. The sweeper runs once an hour, so
// only the queue can expire them in time. A new worker takes the redelivered
// purchases, finds their orders made and schedules them: every order ends
// expired within 3 s of its pay_by (never before), its units back on sale,
// each with one order.expired, all counted by
// flashsale_delayq_expired_total{path="queue"}.
func TestExpiryScheduledByTheRedeliveryAfterTheWorkerDied(t *testing.T) {
	e := newEnv(t)
	sink := newEventSink(t, e)
	cp := newCommitProxy(t)
	c := e.start("ingress", nil).client()
	e.start("relay", nil)
	dqOps := freeAddr(t)
	e.start("delayq", map[string]string{"FLASHSALE_SWEEP_INTERVAL": "3600", "FLASHSALE_OPS_ADDR": dqOps})
	const n, window = 20, 8
	spec := openSale(n, 1, 250)
	spec.PaymentWindowSeconds = window
	saleID := c.createSale(t, spec)

	cp.HoldCommits(-1, true, time.Minute)
	wk := e.startProc("worker", map[string]string{"FLASHSALE_MYSQL_SHARD_DSNS": e.shardDSNsVia(cp.Addr)}, false)
	refs, ta := accepted(t, c.burst(saleID, userNames("unscheduled", n), true))
	ta.only(t, "202")
	if len(refs) != n {
		t.Fatalf("%d of %d purchases accepted (%s)", len(refs), n, ta)
	}
	eventually(t, 30*time.Second, "COMMITs of orders held", func() (bool, string) {
		now, _, _ := cp.Holding()
		return now > 0, fmt.Sprintf("%d held", now)
	})
	held, _, _ := cp.Holding()
	if err := syscall.Kill(wk.pid(), syscall.SIGSTOP); err != nil {
		t.Fatalf("freeze the worker: %v", err)
	}
	cp.Release()
	eventually(t, 30*time.Second, "the forwarded COMMITs answered", func() (bool, string) {
		now, _, _ := cp.Holding()
		return now == 0 && len(e.orders(t, saleID)) > 0, fmt.Sprintf("%d held, %d orders in MySQL", now, len(e.orders(t, saleID)))
	})
	wk.Kill()
	made := e.orders(t, saleID)
	inBucket, _ := brokerQueue(t, fmt.Sprintf("%s.delay.%ds", e.NS, window))
	inExpiry, _ := brokerQueue(t, e.NS+".expiry")
	scheduled := inBucket + inExpiry
	t.Logf("%d COMMITs held at the freeze; %d orders in MySQL when the worker died, %d expiry messages", held, len(made), scheduled)
	if scheduled != 0 {
		t.Fatalf("precondition: %d expiry messages were published before the worker died, want none", scheduled)
	}

	e.startProc("worker", nil, false)
	orders := c.ordersOf(t, saleID, refs)
	views := c.awaitOrders(t, orders, time.Until(latest(orders).Add(15*time.Second)), "settled", settled)
	maxLate := checkAllExpired(t, e, c, sink, saleID, n, orders, views, 3*time.Second)
	t.Logf("latest expiry %s after pay_by", maxLate.Round(time.Millisecond))
	m := scrapeMetrics(t, "http://"+dqOps+"/metrics")
	if got := m[series("flashsale_delayq_expired_total", "path", "queue")]; got != n {
		t.Errorf("flashsale_delayq_expired_total{path=queue} = %v, want %d (the sweeper runs hourly)", got, n)
	}
	sink.verify(t)
}

// TestExpiryWithoutQueueMessages: the expiry messages of a 2 s sale's orders
// are purged from the delay buckets and the expiry queue as soon as they
// appear. The sweeper (every second) still expires every order within
// seconds, the units come back, and each order emits one order.expired.
func TestExpiryWithoutQueueMessages(t *testing.T) {
	e := newEnv(t)
	sink := newEventSink(t, e)
	p := e.start("all", map[string]string{"FLASHSALE_SWEEP_INTERVAL": "1"})
	c := p.client()
	const n = 50
	spec := openSale(n, 1, 250)
	spec.PaymentWindowSeconds = 2
	saleID := c.createSale(t, spec)

	// Purge until every order is settled, from before the first order exists.
	conn := brokerConn(t)
	queues := []string{e.NS + ".delay.1s", e.NS + ".delay.2s", e.NS + ".delay.3s", e.NS + ".expiry"}
	var purged atomic.Int64
	var purgeErr atomic.Value
	stop := make(chan struct{})
	purging := make(chan struct{})
	go func() {
		defer close(purging)
		for {
			for _, q := range queues {
				if conn.IsClosed() {
					// A purge racing the queue's declaration may get a
					// connection-level INTERNAL_ERROR from RabbitMQ 3.10,
					// which closes the connection: purge on a new one.
					c, err := amqp.DialConfig(amqpURL(), amqp.Config{Dial: amqp.DefaultDial(5 * time.Second)})
					if err != nil {
						purgeErr.Store(fmt.Sprintf("reconnect to purge: %v", err))
						return
					}
					t.Cleanup(func() { c.Close() })
					conn = c
				}
				n, _, err := purgeQueue(conn, q)
				if err != nil && !conn.IsClosed() {
					purgeErr.Store(fmt.Sprintf("purge %s: %v", q, err))
				}
				purged.Add(int64(n))
			}
			select {
			case <-stop:
				return
			case <-time.After(50 * time.Millisecond): // purge interval
			}
		}
	}()
	stopPurging := func() {
		select {
		case <-stop:
		default:
			close(stop)
		}
		<-purging
	}
	defer stopPurging()

	orders := c.placeOrders(t, saleID, userNames("purge", n))
	views := c.awaitOrders(t, orders, time.Until(latest(orders).Add(15*time.Second)), "settled", settled)
	stopPurging()
	if err := purgeErr.Load(); err != nil {
		t.Fatalf("%v", err)
	}
	t.Logf("%d expiry messages purged", purged.Load())
	if purged.Load() == 0 {
		t.Errorf("precondition: no message was purged from %v: the queue path was not taken away", queues)
	}
	maxLate := checkAllExpired(t, e, c, sink, saleID, n, orders, views, 10*time.Second)
	t.Logf("latest expiry by the sweeper: %s after pay_by", maxLate.Round(time.Millisecond))
	sink.verify(t)
}

// cancelAnswer is one answer to a cancel.
type cancelAnswer struct {
	Reply reply
	Err   error
}

// TestCancelRacesExpiry: 100 orders with a 2 s window; around each order's
// pay_by (from 400 ms before to 1.2 s after) two cancels are sent at once.
// Every order ends expired or cancelled; every cancel answers 200 with that
// final status; the units come back exactly once; each order emits exactly
// one of order.expired / order.cancelled.
func TestCancelRacesExpiry(t *testing.T) {
	e := newEnv(t)
	sink := newEventSink(t, e)
	p := e.start("all", map[string]string{"FLASHSALE_SWEEP_INTERVAL": "1"})
	c := p.client()
	const n = 100
	spec := openSale(n, 1, 900)
	spec.PaymentWindowSeconds = 2
	saleID := c.createSale(t, spec)
	orders := c.placeOrders(t, saleID, userNames("cx", n))

	answers := make([][2]cancelAnswer, n)
	var wg sync.WaitGroup
	for i, o := range orders {
		offset := -400*time.Millisecond + time.Duration(i%20)*80*time.Millisecond
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-time.After(time.Until(o.PayBy.Add(offset))) // the moment of the race, not an effect
			var both sync.WaitGroup
			for k := range 2 {
				both.Add(1)
				go func() {
					defer both.Done()
					ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
					defer cancel()
					r, err := c.cancelOrder(ctx, o.OrderID, o.User)
					answers[i][k] = cancelAnswer{r, err}
				}()
			}
			both.Wait()
		}()
	}
	wg.Wait()

	views := c.awaitOrders(t, orders, 15*time.Second, "settled", settled)
	outcomes := map[string]int{}
	pr := newProblems(t)
	for i, o := range orders {
		final := views[o.OrderID].Status
		outcomes[final]++
		if final != "expired" && final != "cancelled" {
			pr.errorf("order %s ended %q, want expired or cancelled", o.OrderID, final)
		}
		for _, a := range answers[i] {
			var v orderView
			switch {
			case a.Err != nil:
				pr.errorf("cancel of %s: %v", o.OrderID, a.Err)
			case a.Reply.Status != http.StatusOK || a.Reply.decode(&v) != nil:
				pr.errorf("cancel of %s: %s, want 200 with the order", o.OrderID, a.Reply)
			case v.OrderID != o.OrderID || v.Status != final:
				pr.errorf("cancel of %s answered %s; the order ended %q", o.OrderID, a.Reply, final)
			}
		}
	}
	pr.done()
	t.Logf("outcomes: %v", outcomes)
	c.awaitStock(t, saleID, stockView{Total: n, Available: n}, 10*time.Second)

	ids := idSet(orders)
	rows := sink.awaitOutboxReceived(t, e, ids, 15*time.Second)
	sink.checkEventsAgainstOutbox(t, rows, ids)
	byOrder, outbox := sink.byOrder(), outboxOf(rows, ids)
	pr = newProblems(t)
	for _, o := range orders {
		last := evExpired
		if views[o.OrderID].Status == "cancelled" {
			last = evCancelled
		}
		checkHistory(pr, o, saleID, byOrder[o.OrderID], outbox[o.OrderID], evCreated, last)
	}
	pr.done()
	checkOrderRows(t, e.orders(t, saleID), n, 1)
	sink.verify(t)
}

// TestCancelOrder: cancelling an unpaid order answers 200 with the order
// cancelled and returns its unit; cancelling again answers 200 unchanged; a
// paid order is 409 already_paid; someone else's or an unknown order is 404;
// no user is 401. The canceller may buy again.
func TestCancelOrder(t *testing.T) {
	e := newEnv(t)
	sink := newEventSink(t, e)
	p := e.start("all", nil)
	c := p.client()
	const stock, price = 5, 999
	saleID := c.createSale(t, openSale(stock, 1, price))
	alice := c.placeOrders(t, saleID, []string{"alice"})[0]
	bob := c.placeOrders(t, saleID, []string{"bob"})[0]
	c.awaitStock(t, saleID, stockView{Total: stock, Available: 3, Held: 2}, 5*time.Second)

	cancel := func(orderID, u string) reply {
		t.Helper()
		ctx, done := context.WithTimeout(context.Background(), 20*time.Second)
		defer done()
		r, err := c.cancelOrder(ctx, orderID, u)
		if err != nil {
			t.Fatalf("cancel %s as %s: %v", orderID, u, err)
		}
		return r
	}
	checkError(t, "cancel alice's order as mallory", cancel(alice.OrderID, "mallory"), http.StatusNotFound, "not_found")
	checkError(t, "cancel an unknown order", cancel("no-such-order-"+randHex(4), "alice"), http.StatusNotFound, "not_found")
	checkError(t, "cancel without X-User-ID",
		c.must(t, http.MethodPost, pathOrder(alice.OrderID)+"/cancel", nil, nil), http.StatusUnauthorized, "unauthorized")
	if v, _ := c.orderStates([]placedOrder{alice}); v[alice.OrderID].Status != "pending_payment" {
		t.Fatalf("alice's order after refused cancels: %+v, want pending_payment", v[alice.OrderID])
	}
	// Her unpaid order is read from its ticket's copy in Redis, and the
	// answer is MySQL's to the byte: without the copy, MySQL answers it.
	fromCopy := c.must(t, http.MethodGet, pathOrder(alice.OrderID), user("alice"), nil)
	rdb, copyKey := newRedis(), e.NS+":ticket:{"+alice.OrderID+"}"
	if kept, err := rdb.HGet(context.Background(), copyKey, "unpaid").Result(); err != nil || !strings.Contains(kept, alice.OrderID) {
		t.Errorf("alice's ticket copy keeps her unpaid order as %q (%v), want its JSON", kept, err)
	}
	if err := rdb.Del(context.Background(), copyKey).Err(); err != nil {
		t.Fatal(err)
	}
	rdb.Close()
	fromMySQL := c.must(t, http.MethodGet, pathOrder(alice.OrderID), user("alice"), nil)
	if fromCopy.Status != http.StatusOK || fromMySQL.Status != http.StatusOK || !bytes.Equal(fromCopy.Body, fromMySQL.Body) {
		t.Errorf("alice's unpaid order from its copy: %s; from MySQL: %s; want the same 200", fromCopy, fromMySQL)
	}

	var first, second orderView
	r := cancel(alice.OrderID, "alice")
	if r.Status != http.StatusOK || r.decode(&first) != nil {
		t.Fatalf("cancel alice's unpaid order: %s, want 200 with the order", r)
	}
	if first.OrderID != alice.OrderID || first.Status != "cancelled" || first.UserID != "alice" || first.SaleID != saleID || first.AmountCents != price {
		t.Errorf("cancel answered %s, want alice's order %s cancelled", r, alice.OrderID)
	}
	r = cancel(alice.OrderID, "alice")
	if r.Status != http.StatusOK || r.decode(&second) != nil {
		t.Fatalf("cancel alice's order again: %s, want 200", r)
	}
	if second.OrderID != first.OrderID || second.Status != "cancelled" || second.AmountCents != first.AmountCents {
		t.Errorf("second cancel answered %s, want the order unchanged (%+v)", r, first)
	}
	c.awaitStock(t, saleID, stockView{Total: stock, Available: 4, Held: 1}, 5*time.Second)

	// Bob pays; his order cannot be cancelled any more.
	payID := "pay-" + randHex(6)
	pr := c.mustCallback(t, notice(payID, bob.OrderID, bob.AmountCents, "succeeded").body(), e.PaymentSecret)
	checkPayAnswer(t, "bob's payment", pr, bob.OrderID, "paid")
	checkError(t, "cancel bob's paid order", cancel(bob.OrderID, "bob"), http.StatusConflict, "already_paid")
	if v, _ := c.orderStates([]placedOrder{bob}); v[bob.OrderID].Status != "paid" {
		t.Errorf("bob's order after the refused cancel: %+v, want paid", v[bob.OrderID])
	}
	c.awaitStock(t, saleID, stockView{Total: stock, Available: 4, Sold: 1}, 5*time.Second)

	// Alice's ticket ended: she may buy again, with a new ticket.
	again := c.placeOrders(t, saleID, []string{"alice"})[0]
	if again.TicketID == alice.TicketID || again.OrderID == alice.OrderID {
		t.Errorf("alice's new purchase reused ticket %s / order %s", alice.TicketID, alice.OrderID)
	}

	both := []placedOrder{alice, bob}
	ids := idSet(both)
	rows := sink.awaitOutboxReceived(t, e, ids, 15*time.Second)
	sink.checkEventsAgainstOutbox(t, rows, ids)
	byOrder, outbox := sink.byOrder(), outboxOf(rows, ids)
	hp := newProblems(t)
	checkHistory(hp, alice, saleID, byOrder[alice.OrderID], outbox[alice.OrderID], evCreated, evCancelled)
	checkHistory(hp, bob, saleID, byOrder[bob.OrderID], outbox[bob.OrderID], evCreated, evPaid)
	hp.done()
	if paid := byOrder[bob.OrderID].of(evPaid); len(paid) == 1 && paid[0].Order.paymentID() != payID {
		t.Errorf("order.paid of bob's order carries payment_id %q, want %q", paid[0].Order.paymentID(), payID)
	}
	sink.verify(t)
}

// TestTwoRelays: two relays run at once (with ingress, worker and delayq as
// separate processes) while orders are created, paid, cancelled and expired;
// each relay is stopped for a while in turn, so the shards move between them.
// Every outbox row is received; nothing else is; and each order's events
// arrive in the order they were committed (created first, then its one final
// transition), which two relays publishing one shard at once would break.
func TestTwoRelays(t *testing.T) {
	e := newEnv(t)
	sink := newEventSink(t, e)
	ing := e.start("ingress", nil)
	e.startProc("worker", nil, false)
	e.startProc("delayq", map[string]string{"FLASHSALE_SWEEP_INTERVAL": "1"}, false)
	relays := []*proc{e.startProc("relay", nil, false), e.startProc("relay", nil, false)}
	c := ing.client()

	const nLong, nShort = 300, 100
	long := openSale(nLong, 1, 1200)
	longID := c.createSale(t, long)
	short := openSale(nShort, 1, 800)
	short.PaymentWindowSeconds = 2
	shortID := c.createSale(t, short)

	shortOrders := c.placeOrders(t, shortID, userNames("two-s", nShort))
	longOrders := c.placeOrders(t, longID, userNames("two-l", nLong))
	saleOf := map[string]string{}
	for _, o := range shortOrders {
		saleOf[o.OrderID] = shortID
	}
	for _, o := range longOrders {
		saleOf[o.OrderID] = longID
	}

	// A third of the long orders is paid, a third cancelled, a third left.
	// The transitions come in three rounds: with relay 0 stopped, with relay 1
	// stopped, with both running. After each round with one relay down every
	// outbox row so far is received: the other relay took over its shards.
	transition := func(idx []int) {
		t.Helper()
		var mu sync.Mutex
		var failures []string
		work := make(chan int)
		var ww sync.WaitGroup
		for range 8 {
			ww.Add(1)
			go func() {
				defer ww.Done()
				for i := range work {
					o := longOrders[i]
					ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
					var r reply
					var err error
					wantStatus := "paid"
					if i%3 == 0 {
						r, err = c.pay(ctx, e.PaymentSecret, "pay-"+o.OrderID, o)
					} else {
						r, err = c.cancelOrder(ctx, o.OrderID, o.User)
						wantStatus = "cancelled"
					}
					cancel()
					var a struct {
						Status string `json:"status"`
					}
					if err != nil || r.Status != http.StatusOK || r.decode(&a) != nil || a.Status != wantStatus {
						mu.Lock()
						failures = append(failures, fmt.Sprintf("order %s: %v %s, want 200 %s", o.OrderID, err, r, wantStatus))
						mu.Unlock()
					}
				}
			}()
		}
		for _, i := range idx {
			work <- i
		}
		close(work)
		ww.Wait()
		if len(failures) > 0 {
			t.Fatalf("%d transitions refused, e.g. %v", len(failures), failures[:min(3, len(failures))])
		}
	}
	var rounds [3][]int
	for i := range longOrders {
		if i%3 != 2 {
			rounds[i*3/nLong] = append(rounds[i*3/nLong], i)
		}
	}
	relays[0].Stop()
	transition(rounds[0])
	sink.awaitOutboxReceived(t, e, nil, 15*time.Second)
	relays[0].Start()
	relays[1].Stop()
	transition(rounds[1])
	sink.awaitOutboxReceived(t, e, nil, 15*time.Second)
	relays[1].Start()
	transition(rounds[2])

	want := map[string][]string{}
	for i, o := range longOrders {
		want[o.OrderID] = [][]string{{evCreated, evPaid}, {evCreated, evCancelled}, {evCreated}}[i%3]
	}
	c.awaitOrders(t, shortOrders, time.Until(latest(shortOrders).Add(15*time.Second)), "expired", func(v orderView) bool { return v.Status == "expired" })
	for _, o := range shortOrders {
		want[o.OrderID] = []string{evCreated, evExpired}
	}

	all := append(append([]placedOrder{}, longOrders...), shortOrders...)
	ids := idSet(all)
	rows := sink.awaitOutboxReceived(t, e, nil, 30*time.Second)
	sink.checkEventsAgainstOutbox(t, rows, ids)
	if len(rows) != 2*nLong/3+nLong+2*nShort {
		t.Errorf("%d outbox rows, want %d", len(rows), 2*nLong/3+nLong+2*nShort)
	}
	byOrder, outbox := sink.byOrder(), outboxOf(rows, ids)
	pr := newProblems(t)
	for _, o := range all {
		checkHistory(pr, o, saleOf[o.OrderID], byOrder[o.OrderID], outbox[o.OrderID], want[o.OrderID]...)
	}
	pr.done()
	deliveries, distinct := sink.counts()
	t.Logf("%d deliveries of %d distinct events; %s", deliveries, distinct, shardOrder(sink, rows))

	for i, r := range relays {
		if !r.Running() {
			t.Errorf("relay %d exited\n%s", i, r.LogTail(30))
		}
		t.Logf("relay %d: %s", i, shardClaims(r))
	}
	c.awaitStock(t, shortID, stockView{Total: nShort, Available: nShort}, 10*time.Second)
	c.awaitStock(t, longID, stockView{Total: nLong, Available: nLong / 3, Held: nLong / 3, Sold: nLong / 3}, 10*time.Second)
	sink.verify(t)
}

// shardOrder reports, per shard, how many events first arrived after an event
// of a later outbox row of that shard (informational: the contract promises
// order per order, which checkHistory asserts, not per shard).
func shardOrder(s *eventSink, rows []outboxRow) string {
	type pos struct {
		shard int
		id    int64
	}
	at := map[string]pos{}
	for _, r := range rows {
		at[r.EventID] = pos{r.Shard, r.ID}
	}
	last := map[int]int64{}
	behind := map[int]int{}
	for _, r := range s.firsts() {
		p, ok := at[r.Event.EventID]
		if !ok {
			continue
		}
		if p.id < last[p.shard] {
			behind[p.shard]++
		} else {
			last[p.shard] = p.id
		}
	}
	return fmt.Sprintf("events arriving behind a later row of their shard: %v", behind)
}

var shardClaimRE = regexp.MustCompile(`publishing shard.*shard=(\d+)`)

// shardClaims summarises which shards a relay's log says it took
// (informational: the log format is not part of the contract).
func shardClaims(p *proc) string {
	claims := shardClaimRE.FindAllStringSubmatch(p.LogTail(100000), -1)
	if len(claims) == 0 {
		return "claimed no shard (by its log)"
	}
	var s []string
	for _, c := range claims {
		s = append(s, c[1])
	}
	return "claimed shards " + strings.Join(s, ",")
}

// checkAllExpired asserts that every order ended expired, the sale of n units
// has them all back, and each order's events are exactly created then expired,
// received as in the outbox, the expiry no earlier than pay_by and at most late
// after it. It returns the latest expiry's delay after pay_by.
func checkAllExpired(t *testing.T, e *env, c *client, sink *eventSink, saleID string, n int,
	orders []placedOrder, views map[string]orderView, late time.Duration) time.Duration {
	t.Helper()
	for _, o := range orders {
		if v := views[o.OrderID]; v.Status != "expired" {
			t.Errorf("unpaid order %s ended %q, want expired", o.OrderID, v.Status)
		}
	}
	c.awaitStock(t, saleID, stockView{Total: n, Available: n}, 10*time.Second)
	ids := idSet(orders)
	rows := sink.awaitOutboxReceived(t, e, ids, 15*time.Second)
	sink.checkEventsAgainstOutbox(t, rows, ids)
	byOrder, outbox := sink.byOrder(), outboxOf(rows, ids)
	pr := newProblems(t)
	var maxLate time.Duration
	for _, o := range orders {
		checkHistory(pr, o, saleID, byOrder[o.OrderID], outbox[o.OrderID], evCreated, evExpired)
		maxLate = max(maxLate, checkExpiredInTime(pr, o, byOrder[o.OrderID], late))
	}
	pr.done()
	return maxLate
}
