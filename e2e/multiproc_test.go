package e2e

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// lbDialer spreads new connections over several ingress processes, as a load
// balancer in front of them would: each new connection goes to the next
// process that accepts it, so a process that died is skipped.
type lbDialer struct {
	procs []*proc
	next  atomic.Uint32
	mu    sync.Mutex
	dials map[string]int // by process address
}

func (d *lbDialer) dial(ctx context.Context, network, _ string) (net.Conn, error) {
	nd := &net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}
	start := int(d.next.Add(1))
	var last error
	for i := range d.procs {
		p := d.procs[(start+i)%len(d.procs)]
		conn, err := nd.DialContext(ctx, network, p.Addr)
		if err == nil {
			d.mu.Lock()
			d.dials[p.Addr]++
			d.mu.Unlock()
			return conn, nil
		}
		last = err
	}
	return nil, last
}

// served returns how many connections went to the process.
func (d *lbDialer) served(p *proc) int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.dials[p.Addr]
}

// lbClient is a client of the ingress processes behind one load balancer.
func lbClient(e *env, procs ...*proc) (*client, *lbDialer) {
	d := &lbDialer{procs: procs, dials: map[string]int{}}
	tr := &http.Transport{
		DialContext:         d.dial,
		MaxIdleConns:        4096,
		MaxIdleConnsPerHost: 4096,
		MaxConnsPerHost:     1024,
		IdleConnTimeout:     60 * time.Second,
	}
	return &client{base: "http://ingresses.invalid", adminToken: e.AdminToken,
		hc: &http.Client{Transport: tr, Timeout: 30 * time.Second}}, d
}

// TestTwoProcessesPerRole: two ingress, two worker, two relay and two delayq
// processes of one deployment under one sale, the crowd spread over both
// ingresses by a load balancer. Mid-sale one process of each role is
// SIGKILLed. The survivors carry the sale: no oversell at any poll, every
// accepted ticket reaches a final status, no user above the limit, stock
// conserved with Redis == MySQL once quiet and `flashsale reconcile` exiting
// 0 (fxSale.settle), every committed transition published as an event (the
// surviving relay takes the dead one's shards), and the surviving delayq
// expires unpaid orders.
//
// Known: a SIGKILLed worker can turn a few accepted tickets `failed`. Its
// unacknowledged deliveries go back to the quorum queue, and RabbitMQ before
// 4.3 counts every acquisition (also by a consumer whose channel just closed)
// toward the queue's x-delivery-limit (5); a worker has several consumers, so
// a message acquired by some of them before the kill can be dead-lettered
// although no handler failed it. Contract 4.2 forbids `failed` only for a
// dependency away < 60 s, not for a killed worker process, so this test
// asserts that failed tickets are few (at most 2% of those accepted) and logs
// their count.
func TestTwoProcessesPerRole(t *testing.T) {
	e := newEnv(t)
	sink := newEventSink(t, e)
	ingA, ingB := e.start("ingress", nil), e.start("ingress", nil)
	var workers, relays, delayqs [2]*proc
	for i := range 2 {
		workers[i] = e.startProc("worker", nil, false)
		relays[i] = e.startProc("relay", nil, false)
		delayqs[i] = e.startProc("delayq", nil, false)
	}
	c, lb := lbClient(e, ingA, ingB)
	const stock, users = 600, 2000
	s := fxStartSale(t, e, c, stock, 0, 0, 60*time.Second)
	w := scStartWatch(t, e, s)
	defer w.stop()

	w.phase("crowd through both ingresses")
	crowd := s.scCrowd("m", users, 8*time.Second)
	v := s.awaitTaken(stock/4, time.Minute)
	s.midSale(v)
	if a, b := lb.served(ingA), lb.served(ingB); a == 0 || b == 0 {
		t.Fatalf("precondition: the load balancer used one ingress only (%d and %d connections)", a, b)
	}

	w.phase("one of each role killed")
	for _, p := range []*proc{ingA, workers[0], relays[0], delayqs[0]} {
		p.Kill()
	}
	t.Logf("killed one ingress, worker, relay and delayq at %+v; connections so far: ingress A %d, B %d",
		v.Stock, lb.served(ingA), lb.served(ingB))
	crowd.Wait()
	w.phase("settle")
	out := s.settle(scSaleSettle...)
	if units := scMustLiveUnits(t, e, s.ID); units != stock {
		t.Errorf("%d units in orders once the crowd is done, want all %d (the crowd asked for more)", units, stock)
	}
	w.stop()
	failed := 0
	for _, ref := range out.refs {
		if out.final[ref.TicketID].Status == "failed" {
			failed++
		}
	}
	t.Logf("%d of %d accepted tickets ended failed after the worker was killed (the known delivery-limit effect, see the doc comment)", failed, len(out.refs))
	if failed*50 > len(out.refs) {
		t.Errorf("%d of %d accepted tickets ended failed, more than 2%%", failed, len(out.refs))
	}

	// The survivors pay and cancel (checking every guarantee again).
	w.phase("pay and cancel through the surviving ingress")
	s.payAndCancel(out, 10)

	// The surviving delayq expires unpaid orders of a sale with a 2 s window.
	short, _ := expireShortSale(t, c, "the surviving delayq")

	// Events: every outbox row of both sales arrived, and nothing else.
	ids := map[string]bool{}
	for _, r := range e.orders(t, s.ID) {
		ids[r.OrderID] = true
	}
	for _, r := range e.orders(t, short) {
		ids[r.OrderID] = true
	}
	sink.checkOrders(t, e, ids)
	for _, p := range []*proc{ingB, workers[1], relays[1], delayqs[1]} {
		p.Stop() // the survivors still stop gracefully (exit 0)
	}
}

// expireShortSale creates a sale with a 2 s payment window, buys 5 units of
// it and waits until the orders expire and the units are back on sale; it
// returns the sale and its spec. who names what expires them, for the log.
func expireShortSale(t *testing.T, c *client, who string) (string, saleSpec) {
	t.Helper()
	spec := openSale(20, 1, fxPrice)
	spec.PaymentWindowSeconds = 2
	short := c.createSale(t, spec)
	var refs []ticketRef
	for i := range 5 {
		u := fmt.Sprintf("exp-%d", i)
		r := c.must(t, http.MethodPost, pathPurchase(short), user(u), map[string]int{"quantity": 1})
		var a purchaseAnswer
		if r.Status != http.StatusAccepted || r.decode(&a) != nil {
			t.Fatalf("purchase in the short sale by %s: %s", u, r)
		}
		refs = append(refs, ticketRef{User: u, TicketID: a.TicketID})
	}
	t0 := time.Now()
	eventually(t, 60*time.Second, "the short sale's orders expire", func() (bool, string) {
		views, problems := c.ticketStates(refs)
		n := 0
		for _, ref := range refs {
			if views[ref.TicketID].Status == "expired" {
				n++
			}
		}
		return n == len(refs), fmt.Sprintf("%d of %d expired; %v", n, len(refs), problems)
	})
	t.Logf("%s expired %d orders %s after their purchase (payment window 2 s)", who, len(refs), time.Since(t0).Round(100*time.Millisecond))
	eventually(t, 30*time.Second, "the short sale's units are back on sale", func() (bool, string) {
		v := c.sale(t, short)
		return v.Stock.Available == spec.Stock, fmt.Sprintf("%+v", v.Stock)
	})
	return short, spec
}
