package e2e

// Issue 14, late payments (contract section 2, payment callback): "succeeded"
// on an expired order takes its units again when they are all available and
// the order becomes paid; otherwise refund_required, stock untouched.

import (
	"context"
	"database/sql"
	"fmt"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/flashsale/flashsale/internal/testenv"
)

// TestLatePay: late payments of expired orders, one-sale and bundles, whose
// units are still available (paid) or gone (refund_required); see
// latePayStillAvailable and latePayUnitsGone. One deployment for both.
func TestLatePay(t *testing.T) {
	e := newEnv(t)
	sink := newBnSink(t, e)
	p := e.start("all", map[string]string{"FLASHSALE_SWEEP_INTERVAL": "1"})
	c := p.client()
	t.Run("still_available", func(t *testing.T) { latePayStillAvailable(t, e, c, sink) })
	t.Run("units_gone", func(t *testing.T) { latePayUnitsGone(t, e, c, sink) })
	sink.verify(t)
}

// TestLatePayRace: late payments racing new buyers for the last unit, of a
// one-sale order and of a bundle; see latePayRaceSingle and latePayRaceBundle.
func TestLatePayRace(t *testing.T) {
	e := newEnv(t)
	p := e.start("all", map[string]string{"FLASHSALE_SWEEP_INTERVAL": "1"})
	c := p.client()
	t.Run("one_sale", func(t *testing.T) { latePayRaceSingle(t, e, c) })
	t.Run("bundle", func(t *testing.T) { latePayRaceBundle(t, e, c) })
}

// expiredOrder places an order of the items and waits until it expired and
// its units are back on sale.
func expiredOrder(t *testing.T, c *client, userID string, items ...bnItem) (ticketID, orderID string) {
	t.Helper()
	ticketID, orderID = c.bnPlace(t, userID, items...)
	c.awaitOrderStatus(t, orderID, userID, "expired", 30*time.Second)
	return ticketID, orderID
}

// latePayStillAvailable: an expired order whose units are still available
// is paid late: 200 paid, the order and its ticket become paid (payment_id,
// paid_at), the units are sold again, one order.paid; the same notification
// again changes nothing. The same for a bundle: both items taken again.
func latePayStillAvailable(t *testing.T, e *env, c *client, sink *bnSink) {
	s := openSale(3, 1, 2000)
	s.PaymentWindowSeconds = 1
	id := c.createSale(t, s)
	tk, ord := expiredOrder(t, c, "late-ok", bnItem{id, 1})
	c.awaitStock(t, id, stockView{Total: 3, Available: 3}, 10*time.Second)

	checkPayAnswer(t, "late payment", c.bnPay(t, e.PaymentSecret, "pay-late-ok", ord, 2000), ord, "paid")
	v := c.bnOrder(t, ord, "late-ok")
	if v.Status != "paid" || strp(v.PaymentID) != "pay-late-ok" || v.PaidAt == nil {
		t.Errorf("late-paid order: %+v, want paid by pay-late-ok with paid_at", v)
	}
	c.awaitStock(t, id, stockView{Total: 3, Available: 2, Sold: 1}, 10*time.Second)
	c.awaitTicket(t, tk, "late-ok", 10*time.Second, "paid", func(v bnTicketView) bool { return v.Status == "paid" })
	checkPayAnswer(t, "the same late payment again", c.bnPay(t, e.PaymentSecret, "pay-late-ok", ord, 2000), ord, "paid")
	if st := c.sale(t, id).Stock; st != (stockView{Total: 3, Available: 2, Sold: 1}) {
		t.Errorf("stock after the same payment again: %+v, want {3 2 0 1}", st)
	}
	evs := sink.awaitEvents(t, ord, 20*time.Second, evCreated, evExpired, evPaid)
	if n := countType(evs, evPaid); n != 1 {
		t.Errorf("%d order.paid events, want 1", n)
	}

	// A bundle: both items are taken again.
	x, y := openSale(2, 1, 400), openSale(2, 1, 600)
	x.PaymentWindowSeconds, y.PaymentWindowSeconds = 1, 1
	xID, yID := c.createSale(t, x), c.createSale(t, y)
	w := bnWant{units: map[string]int{xID: 1, yID: 1}, prices: map[string]int64{xID: 400, yID: 600}}
	_, bord := expiredOrder(t, c, "late-bundle", bnItem{xID, 1}, bnItem{yID, 1})
	c.awaitStock(t, xID, stockView{Total: 2, Available: 2}, 10*time.Second)
	c.awaitStock(t, yID, stockView{Total: 2, Available: 2}, 10*time.Second)
	checkPayAnswer(t, "late payment of a bundle", c.bnPay(t, e.PaymentSecret, "pay-late-bundle", bord, 1000), bord, "paid")
	c.awaitStock(t, xID, stockView{Total: 2, Available: 1, Sold: 1}, 10*time.Second)
	c.awaitStock(t, yID, stockView{Total: 2, Available: 1, Sold: 1}, 10*time.Second)
	bevs := sink.awaitEvents(t, bord, 20*time.Second, evCreated, evExpired, evPaid)
	checkEventItems(t, bevs, w)
	sink.verify(t)
	fxReconcileAgrees(t, e, id, stockView{Total: 3, Available: 2, Sold: 1})
	fxReconcileAgrees(t, e, xID, stockView{Total: 2, Available: 1, Sold: 1})
}

// latePayUnitsGone: an expired order whose unit was bought by another
// user meanwhile is paid late: 200 refund_required, the order stays expired,
// the stock is untouched, one order.refund_required and no order.paid. A
// bundle whose one item is gone is refunded too, and its other item's units
// are not taken (all or nothing).
func latePayUnitsGone(t *testing.T, e *env, c *client, sink *bnSink) {
	s := openSale(1, 1, 2500)
	s.PaymentWindowSeconds = 1
	id := c.createSale(t, s)
	_, ord := expiredOrder(t, c, "late-gone", bnItem{id, 1})
	c.awaitStock(t, id, stockView{Total: 1, Available: 1}, 10*time.Second)
	// The taker pays at once: with the sale's 1 s window an unpaid order of
	// theirs would expire and give the unit back.
	_, taken := c.bnPlace(t, "taker", bnItem{id, 1})
	checkPayAnswer(t, "the taker's payment", c.bnPay(t, e.PaymentSecret, "pay-taker", taken, 2500), taken, "paid")
	c.awaitStock(t, id, stockView{Total: 1, Sold: 1}, 10*time.Second)

	checkPayAnswer(t, "late payment, unit gone", c.bnPay(t, e.PaymentSecret, "pay-late-gone", ord, 2500), ord, "refund_required")
	if v := c.bnOrder(t, ord, "late-gone"); v.Status != "expired" || v.PaidAt != nil {
		t.Errorf("refunded late order: %+v, want expired and unpaid", v)
	}
	evs := sink.awaitEvents(t, ord, 20*time.Second, evCreated, evExpired, evRefund)
	if countType(evs, evPaid) != 0 {
		t.Errorf("order.paid for an order that could not take its units: %v", evTypes(evs))
	}
	if st := c.sale(t, id).Stock; st != (stockView{Total: 1, Sold: 1}) {
		t.Errorf("stock after a refused late payment: %+v, want untouched {1 0 0 1}", st)
	}

	// A bundle: Y's last unit is gone, so X's is not taken either.
	x, y := openSale(2, 1, 400), openSale(1, 1, 600)
	x.PaymentWindowSeconds, y.PaymentWindowSeconds = 1, 1
	xID, yID := c.createSale(t, x), c.createSale(t, y)
	_, bord := expiredOrder(t, c, "late-bundle-gone", bnItem{xID, 1}, bnItem{yID, 1})
	c.awaitStock(t, yID, stockView{Total: 1, Available: 1}, 10*time.Second)
	c.awaitStock(t, xID, stockView{Total: 2, Available: 2}, 10*time.Second)
	_, ytaken := c.bnPlace(t, "y-taker", bnItem{yID, 1})
	checkPayAnswer(t, "the Y taker's payment", c.bnPay(t, e.PaymentSecret, "pay-y-taker", ytaken, 600), ytaken, "paid")
	c.awaitStock(t, yID, stockView{Total: 1, Sold: 1}, 10*time.Second)
	checkPayAnswer(t, "late payment of a bundle, one item gone", c.bnPay(t, e.PaymentSecret, "pay-late-bgone", bord, 1000), bord, "refund_required")
	if v := c.bnOrder(t, bord, "late-bundle-gone"); v.Status != "expired" {
		t.Errorf("refunded late bundle: status %q, want expired", v.Status)
	}
	bevs := sink.awaitEvents(t, bord, 20*time.Second, evCreated, evExpired, evRefund)
	checkEventItems(t, bevs, bnWant{units: map[string]int{xID: 1, yID: 1}, prices: map[string]int64{xID: 400, yID: 600}})
	if st := c.sale(t, xID).Stock; st != (stockView{Total: 2, Available: 2}) {
		t.Errorf("X after a refused late bundle payment: %+v, want untouched {2 2 0 0} (half held)", st)
	}
	if st := c.sale(t, yID).Stock; st != (stockView{Total: 1, Sold: 1}) {
		t.Errorf("Y after a refused late bundle payment: %+v, want {1 0 0 1}", st)
	}
	sink.verify(t)
	fxReconcileAgrees(t, e, id, stockView{Total: 1, Sold: 1})
	fxReconcileAgrees(t, e, xID, stockView{Total: 2, Available: 2})
	fxReconcileAgrees(t, e, yID, stockView{Total: 1, Sold: 1})
}

type bnTicketRef struct {
	ticketRef
	OrderID string
}

// latePayRaceSingle: 10 times (10 sales of one unit, raced side by side), an
// expired order's late payment races 5 new buyers for the sale's only unit,
// all released at once. Never oversold: either the late payer is paid and
// no buyer gets an order, or the payer is refunded and exactly one buyer got
// the unit; the sale view and MySQL agree (the late payer's unit sold; or the
// buyer's order, with the sale's 1 s window too, expired and nothing held),
// and reconcile exits 0.
func latePayRaceSingle(t *testing.T, e *env, c *client) {
	const rounds, buyers = 10, 5
	type round struct {
		sale, payer, order string
		payStatus          string
		payErr             error
		mu                 sync.Mutex
		tickets            []ticketRef
		answers            []string
	}
	rs := make([]*round, rounds)
	var wg sync.WaitGroup
	for i := range rs {
		s := openSale(1, 1, 900)
		s.PaymentWindowSeconds = 1
		rs[i] = &round{sale: c.createSale(t, s), payer: fmt.Sprintf("payer-%d", i)}
	}
	for _, r := range rs {
		_, r.order = c.bnPlace(t, r.payer, bnItem{r.sale, 1})
	}
	for _, r := range rs {
		c.awaitOrderStatus(t, r.order, r.payer, "expired", 30*time.Second)
		c.awaitStock(t, r.sale, stockView{Total: 1, Available: 1}, 10*time.Second)
	}

	start := make(chan struct{})
	for i, r := range rs {
		wg.Add(1 + buyers)
		go func() {
			defer wg.Done()
			<-start
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			body := notice("pay-race-"+r.order, r.order, 900, "succeeded").body()
			ans, err := c.callback(ctx, body, sign(e.PaymentSecret, time.Now(), body))
			st, err := payOutcome(ans, err, r.order)
			r.mu.Lock()
			r.payStatus, r.payErr = st, err
			r.mu.Unlock()
		}()
		for b := range buyers {
			u := fmt.Sprintf("racer-%d-%d", i, b)
			go func() {
				defer wg.Done()
				<-start
				ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
				defer cancel()
				ans, err := c.purchase(ctx, r.sale, u, 1)
				r.mu.Lock()
				defer r.mu.Unlock()
				r.answers = append(r.answers, outcome(ans, err))
				if err == nil && ans.Status == http.StatusAccepted {
					var a purchaseAnswer
					if ans.decode(&a) == nil && a.TicketID != "" {
						r.tickets = append(r.tickets, ticketRef{User: u, TicketID: a.TicketID})
					}
				}
			}()
		}
	}
	close(start)
	wg.Wait()

	wins := map[string]int{}
	for i, r := range rs {
		if r.payErr != nil {
			t.Errorf("round %d: late payment: %v", i, r.payErr)
			continue
		}
		got := raceBuyersWithOrders(t, c, i, r.tickets)
		for _, a := range r.answers {
			if a != "202" && a != "409 sold_out" {
				t.Errorf("round %d: a buyer was answered %q, want 202 or 409 sold_out", i, a)
			}
		}
		ov := c.bnOrder(t, r.order, r.payer)
		switch r.payStatus {
		case "paid":
			wins["late payer"]++
			if len(got) != 0 {
				t.Errorf("round %d: OVERSOLD: the late payment was paid and %d buyers got an order for the only unit too (%v)", i, len(got), got)
			}
			if ov.Status != "paid" {
				t.Errorf("round %d: payment answered paid, order is %q", i, ov.Status)
			}
			c.awaitStock(t, r.sale, stockView{Total: 1, Sold: 1}, 10*time.Second)
			if n := bnMustLiveUnits(t, e, r.sale); n != 1 {
				t.Errorf("round %d: MySQL has %d units in pending_payment+paid orders of the one-unit sale, want 1 (the late payer's)", i, n)
			}
		case "refund_required":
			wins["buyer"]++
			if len(got) != 1 {
				t.Errorf("round %d: the late payment was refused and %d buyers got an order, want 1 (refused with the unit free, or oversold)", i, len(got))
			}
			if ov.Status != "expired" {
				t.Errorf("round %d: payment answered refund_required, order is %q, want expired", i, ov.Status)
			}
			// Let the buyer's order expire: then nothing is held.
			for _, g := range got {
				c.awaitOrderStatus(t, g.OrderID, g.User, "expired", 30*time.Second)
			}
			c.awaitStock(t, r.sale, stockView{Total: 1, Available: 1}, 10*time.Second)
			if n := bnMustLiveUnits(t, e, r.sale); n != 0 {
				t.Errorf("round %d: MySQL has %d units in pending_payment+paid orders, want 0 once the buyer's order expired", i, n)
			}
		default:
			t.Errorf("round %d: late payment answered %q", i, r.payStatus)
		}
	}
	t.Logf("the unit went to: %v", wins)
	bnReconcileExits0(t, e)
}

// latePayRaceBundle: 6 times side by side, an expired bundle of one unit
// of X and one of Y (each sale has one unit) is paid late while 3 buyers race
// for X alone and 3 for Y alone. The late payment takes both units or
// neither: paid, and then no buyer got an order in either sale; or
// refund_required, and then some buyer got X or Y, and no unit stays held for
// the refunded bundle (once the buyers' orders expire too, both sales are
// whole again). Never more than one unit held or sold per sale, in MySQL and
// in the sale views, and reconcile exits 0.
func latePayRaceBundle(t *testing.T, e *env, c *client) {
	const rounds, buyers = 6, 3
	type round struct {
		x, y, payer, order string
		payStatus          string
		payErr             error
		mu                 sync.Mutex
		tickets            []ticketRef
	}
	mk := func(price int64) string {
		s := openSale(1, 1, price)
		s.PaymentWindowSeconds = 1
		return c.createSale(t, s)
	}
	rs := make([]*round, rounds)
	for i := range rs {
		rs[i] = &round{x: mk(300), y: mk(500), payer: fmt.Sprintf("bpayer-%d", i)}
	}
	for _, r := range rs {
		_, r.order = c.bnPlace(t, r.payer, bnItem{r.x, 1}, bnItem{r.y, 1})
	}
	for _, r := range rs {
		c.awaitOrderStatus(t, r.order, r.payer, "expired", 30*time.Second)
		c.awaitStock(t, r.x, stockView{Total: 1, Available: 1}, 10*time.Second)
		c.awaitStock(t, r.y, stockView{Total: 1, Available: 1}, 10*time.Second)
	}
	start := make(chan struct{})
	var wg sync.WaitGroup
	for i, r := range rs {
		wg.Add(1 + 2*buyers)
		go func() {
			defer wg.Done()
			<-start
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			body := notice("pay-brace-"+r.order, r.order, 800, "succeeded").body()
			ans, err := c.callback(ctx, body, sign(e.PaymentSecret, time.Now(), body))
			st, err := payOutcome(ans, err, r.order)
			r.mu.Lock()
			r.payStatus, r.payErr = st, err
			r.mu.Unlock()
		}()
		for b := range 2 * buyers {
			sale := r.x
			if b%2 == 1 {
				sale = r.y
			}
			u := fmt.Sprintf("bracer-%d-%d", i, b)
			go func() {
				defer wg.Done()
				<-start
				ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
				defer cancel()
				ans, err := c.purchase(ctx, sale, u, 1)
				if k := outcome(ans, err); k != "202" && k != "409 sold_out" {
					t.Errorf("round %d: buyer %s answered %q, want 202 or 409 sold_out", i, u, k)
				}
				var a purchaseAnswer
				if err == nil && ans.Status == http.StatusAccepted && ans.decode(&a) == nil {
					r.mu.Lock()
					r.tickets = append(r.tickets, ticketRef{User: u, TicketID: a.TicketID})
					r.mu.Unlock()
				}
			}()
		}
	}
	close(start)
	wg.Wait()

	wins := map[string]int{}
	for i, r := range rs {
		if r.payErr != nil {
			t.Errorf("round %d: late payment: %v", i, r.payErr)
			continue
		}
		got := raceBuyersWithOrders(t, c, i, r.tickets)
		if len(got) > 2 {
			t.Errorf("round %d: OVERSOLD: %d buyers got an order for two sales of one unit each", i, len(got))
		}
		switch r.payStatus {
		case "paid":
			wins["late bundle"]++
			if len(got) != 0 {
				t.Errorf("round %d: OVERSOLD: the late bundle was paid and %d buyers got X or Y too (%v)", i, len(got), got)
			}
			c.awaitStock(t, r.x, stockView{Total: 1, Sold: 1}, 10*time.Second)
			c.awaitStock(t, r.y, stockView{Total: 1, Sold: 1}, 10*time.Second)
		case "refund_required":
			wins["buyers"]++
			if len(got) == 0 {
				t.Errorf("round %d: the late bundle was refused but no buyer got X or Y (refused with both units free)", i)
			}
			if v := c.bnOrder(t, r.order, r.payer); v.Status != "expired" {
				t.Errorf("round %d: refused late bundle is %q, want expired", i, v.Status)
			}
			for _, g := range got {
				c.awaitOrderStatus(t, g.OrderID, g.User, "expired", 30*time.Second)
			}
			// Nothing may stay held for the refused bundle (half a re-take).
			c.awaitStock(t, r.x, stockView{Total: 1, Available: 1}, 10*time.Second)
			c.awaitStock(t, r.y, stockView{Total: 1, Available: 1}, 10*time.Second)
		default:
			t.Errorf("round %d: late payment answered %q", i, r.payStatus)
		}
		for _, id := range []string{r.x, r.y} {
			if n := bnMustLiveUnits(t, e, id); n > 1 {
				t.Errorf("round %d: OVERSOLD in MySQL: sale %s of one unit has %d live units", i, id, n)
			}
		}
	}
	t.Logf("outcomes: %v", wins)
	bnReconcileExits0(t, e)
}

// raceBuyersWithOrders waits for the race's buyer tickets to be final and
// returns those that got an order. A buyer's order has the sale's 1 s window
// too: it may be expired by now; what counts is whether it got one at all.
func raceBuyersWithOrders(t *testing.T, c *client, round int, tickets []ticketRef) []bnTicketRef {
	t.Helper()
	final := c.awaitFinal(t, tickets, time.Minute)
	var got []bnTicketRef
	for _, ref := range tickets {
		switch v := final[ref.TicketID]; v.Status {
		case "pending_payment", "expired":
			got = append(got, bnTicketRef{ref, v.OrderID})
		case "sold_out":
		default:
			t.Errorf("round %d: buyer ticket %s ended %q, want pending_payment (or expired), or sold_out", round, ref.TicketID, v.Status)
		}
	}
	return got
}

// TestLatePayTwiceAtOnce: 30 users (15 on each shard) each have two expired
// orders of one sale with per_user_limit 1 and units for all of them, and
// both orders of every user are paid late at the same moment. The window in
// which two payments of one user overlap is held open: the test locks the
// sale's allotment row on each shard from its own connection, waits until
// all 60 payments are blocked in MySQL (each one there with its limit read
// done, unless something serialises the two payments of a user before that
// read), then lets them all go. Per user, exactly one payment is answered
// paid and the other refund_required (its order stays expired); no user has
// 2 paid orders in MySQL; the sale view and MySQL agree on 30 units sold and
// none held (the refused payments gave back the units they had taken again),
// and reconcile agrees.
func TestLatePayTwiceAtOnce(t *testing.T) {
	const users, price = 30, 700
	e := newEnv(t)
	p := e.start("all", map[string]string{"FLASHSALE_SWEEP_INTERVAL": "1"})
	c := p.client()
	s := openSale(100, 1, price)
	s.PaymentWindowSeconds = 1
	id := c.createSale(t, s)
	var names []string
	for i := 0; len(names) < users; i++ {
		u := fmt.Sprintf("twice-%d", i)
		if n := len(names); shardOf(u, 2) == n%2 { // alternate shards: 15 on each
			names = append(names, u)
		}
	}
	// orders[u] = [first, second]: the second bought once the first expired.
	orders := map[string]*[2]string{}
	for round := range 2 {
		for _, u := range names {
			if orders[u] == nil {
				orders[u] = &[2]string{}
			}
			_, orders[u][round] = c.bnPlace(t, u, bnItem{id, 1})
		}
		for _, u := range names {
			c.awaitOrderStatus(t, orders[u][round], u, "expired", 30*time.Second)
		}
		c.awaitStock(t, id, stockView{Total: 100, Available: 100}, 10*time.Second)
	}

	// What the stock cap updates when a payment takes units again: each
	// payment waits there with its reads done.
	shards := []*sql.DB{e.shard(0), e.shard(1)}
	release := testenv.LockRows(t, shards, `SELECT allotted FROM sale_allotments WHERE sale_id = ? FOR UPDATE`, id)
	type answer struct {
		status string
		err    error
	}
	answers := map[string]*[2]answer{}
	var mu sync.Mutex
	start := make(chan struct{})
	var wg sync.WaitGroup
	for _, u := range names {
		answers[u] = &[2]answer{}
		for k, ord := range orders[u] {
			wg.Add(1)
			go func() {
				defer wg.Done()
				<-start
				ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
				defer cancel()
				body := notice("pay-twice-"+ord, ord, price, "succeeded").body()
				ans, err := c.callback(ctx, body, sign(e.PaymentSecret, time.Now(), body))
				st, err := payOutcome(ans, err, ord)
				mu.Lock()
				answers[u][k] = answer{st, err}
				mu.Unlock()
			}()
		}
	}
	close(start)
	// The ingress gives a payment 10 s: release well before.
	blocked := testenv.AwaitWrites(e.shard(0), e.ShardDBs, 2*users, 7*time.Second)
	release()
	wg.Wait()
	if blocked < 2*users {
		t.Errorf("only %d of %d payments were blocked in MySQL at once: the window was not held open for all", blocked, 2*users)
	}
	t.Logf("%d late payments were blocked in MySQL at once, then released together", blocked)

	paidTwice := 0
	for _, u := range names {
		paid := 0
		for k, a := range answers[u] {
			ord := orders[u][k]
			switch {
			case a.err != nil:
				t.Errorf("%s: late payment of %s: %v", u, ord, a.err)
			case a.status == "paid":
				paid++
			case a.status == "refund_required":
				if v := c.bnOrder(t, ord, u); v.Status != "expired" || v.PaidAt != nil {
					t.Errorf("%s: refused late order %s is %+v, want expired and unpaid", u, ord, v)
				}
			default:
				t.Errorf("%s: late payment of %s answered %q, want paid or refund_required", u, ord, a.status)
			}
		}
		if paid != 1 {
			t.Errorf("%s: %d of 2 late payments answered paid, want 1 (the other refund_required)", u, paid)
		}
	}
	byUser := map[string]int{}
	for _, r := range e.orders(t, id) {
		if r.Status == "paid" {
			byUser[r.UserID]++
		}
	}
	for u, n := range byUser {
		if n > 1 {
			paidTwice++
			t.Errorf("%s has %d paid orders, per_user_limit 1", u, n)
		}
	}
	if paidTwice > 0 {
		t.Errorf("%d of %d users have 2 paid orders under per_user_limit 1", paidTwice, users)
	}
	t.Logf("users with 2 paid orders: %d of %d", paidTwice, users)
	want := stockView{Total: 100, Available: 100 - users, Sold: users}
	c.awaitStock(t, id, want, 10*time.Second)
	if n := bnMustLiveUnits(t, e, id); n != users {
		t.Errorf("MySQL has %d units in pending_payment+paid orders, want %d (one per user)", n, users)
	}
	fxReconcileAgrees(t, e, id, want)
}
