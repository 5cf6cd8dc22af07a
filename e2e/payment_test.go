package e2e

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
	"time"
)

const pathCallback = "/api/v1/payments/callback"

// payNotice is the payment provider's notification body.
type payNotice struct {
	PaymentID   string `json:"payment_id"`
	OrderID     string `json:"order_id"`
	AmountCents int64  `json:"amount_cents"`
	Status      string `json:"status"`
}

func notice(paymentID, orderID string, amountCents int64, status string) payNotice {
	return payNotice{PaymentID: paymentID, OrderID: orderID, AmountCents: amountCents, Status: status}
}

// body is the raw JSON body; the signature covers exactly these bytes.
func (n payNotice) body() []byte {
	b, err := json.Marshal(n)
	if err != nil {
		panic(err)
	}
	return b
}

// sigV1 is the contract's signature: hex HMAC-SHA256(secret, "<t>.<raw body>").
func sigV1(secret string, ts int64, body []byte) string {
	m := hmac.New(sha256.New, []byte(secret))
	fmt.Fprintf(m, "%d.", ts)
	m.Write(body)
	return hex.EncodeToString(m.Sum(nil))
}

// sigHeader builds "t=<ts>,v1=<a>,v1=<b>...".
func sigHeader(ts int64, v1s ...string) string {
	h := "t=" + strconv.FormatInt(ts, 10)
	for _, v := range v1s {
		h += ",v1=" + v
	}
	return h
}

// sign returns the X-Flashsale-Signature of body signed with secret at time at.
func sign(secret string, at time.Time, body []byte) string {
	return sigHeader(at.Unix(), sigV1(secret, at.Unix(), body))
}

// callback posts body to the payment webhook with the signature header
// (none when header is "").
func (c *client) callback(ctx context.Context, body []byte, header string) (reply, error) {
	h := hdr{}
	if header != "" {
		h["X-Flashsale-Signature"] = header
	}
	return c.send(ctx, http.MethodPost, pathCallback, h, body)
}

// mustCallback posts body signed now with secret; a transport error fails the test.
func (c *client) mustCallback(t *testing.T, body []byte, secret string) reply {
	t.Helper()
	return c.mustCallbackHeader(t, body, sign(secret, time.Now(), body))
}

func (c *client) mustCallbackHeader(t *testing.T, body []byte, header string) reply {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	r, err := c.callback(ctx, body, header)
	if err != nil {
		t.Fatalf("payment callback: %v", err)
	}
	return r
}

// pay sends a correctly signed "succeeded" notification for the order's amount.
func (c *client) pay(ctx context.Context, secret, paymentID string, o placedOrder) (reply, error) {
	body := notice(paymentID, o.OrderID, o.AmountCents, "succeeded").body()
	return c.callback(ctx, body, sign(secret, time.Now(), body))
}

type payAnswer struct {
	OrderID string `json:"order_id"`
	Status  string `json:"status"`
}

// payOutcome returns the status of a 200 answer {"order_id", "status"} for the
// order, or an error describing anything else.
func payOutcome(r reply, err error, orderID string) (string, error) {
	if err != nil {
		return "", err
	}
	var a payAnswer
	if r.Status != http.StatusOK || r.decode(&a) != nil {
		return "", fmt.Errorf("answer %s, want 200 {\"order_id\", \"status\"}", r)
	}
	if a.OrderID != orderID {
		return "", fmt.Errorf("answer %s names order %q, want %q", r, a.OrderID, orderID)
	}
	return a.Status, nil
}

// checkPayAnswer asserts 200 {"order_id": orderID, "status": status}.
func checkPayAnswer(t *testing.T, what string, r reply, orderID, status string) {
	t.Helper()
	got, err := payOutcome(r, nil, orderID)
	if err != nil {
		t.Errorf("%s: %v", what, err)
	} else if got != status {
		t.Errorf("%s: %s, want status %q", what, r, status)
	}
}

// orderNow reads one order as its owner.
func (c *client) orderNow(t *testing.T, o placedOrder) orderView {
	t.Helper()
	r := c.must(t, http.MethodGet, pathOrder(o.OrderID), user(o.User), nil)
	var v orderView
	if r.Status != http.StatusOK || r.decode(&v) != nil {
		t.Fatalf("GET order %s as %s: %s", o.OrderID, o.User, r)
	}
	return v
}

func strp(p *string) string {
	if p == nil {
		return "<nil>"
	}
	return *p
}

// TestPaymentConcurrentTriplicates: 500 orders are paid by callbacks sent
// three times each, all at once. Every answer is 200 paid; 500 orders are
// paid with their payment id; the sale view moves 500 units from held to
// sold; each order emits exactly one order.paid.
func TestPaymentConcurrentTriplicates(t *testing.T) {
	e := newEnv(t)
	sink := newEventSink(t, e)
	p := e.start("all", nil)
	c := p.client()
	const n, price = 500, 4999
	saleID := c.createSale(t, openSale(n, 1, price))
	orders := c.placeOrders(t, saleID, userNames("payer", n))
	c.awaitStock(t, saleID, stockView{Total: n, Held: n}, 10*time.Second)

	type answer struct {
		r   reply
		err error
	}
	answers := make([][3]answer, n)
	start := make(chan struct{})
	var wg sync.WaitGroup
	for i, o := range orders {
		for k := range 3 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				<-start
				ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
				defer cancel()
				r, err := c.pay(ctx, e.PaymentSecret, "pay-"+o.OrderID, o)
				answers[i][k] = answer{r, err}
			}()
		}
	}
	close(start)
	wg.Wait()

	pr := newProblems(t)
	for i, o := range orders {
		for _, a := range answers[i] {
			if st, err := payOutcome(a.r, a.err, o.OrderID); err != nil || st != "paid" {
				pr.errorf("payment of %s: %q %v, want 200 paid (a repeat of the same payment_id too)", o.OrderID, st, err)
			}
		}
	}
	pr.done()

	views, problems := c.orderStates(orders)
	pr = newProblems(t)
	for _, o := range orders {
		v, ok := views[o.OrderID]
		if !ok {
			pr.errorf("order %s: %v", o.OrderID, problems)
			continue
		}
		if v.Status != "paid" || strp(v.PaymentID) != "pay-"+o.OrderID || v.PaidAt == nil {
			pr.errorf("order %s after payment: status %q payment_id %s paid_at %v, want paid by pay-%s",
				o.OrderID, v.Status, strp(v.PaymentID), v.PaidAt, o.OrderID)
		}
	}
	pr.done()
	c.awaitStock(t, saleID, stockView{Total: n, Sold: n}, 10*time.Second)

	ids := idSet(orders)
	rows := sink.awaitOutboxReceived(t, e, ids, 20*time.Second)
	sink.checkEventsAgainstOutbox(t, rows, ids)
	byOrder, outbox := sink.byOrder(), outboxOf(rows, ids)
	pr = newProblems(t)
	paidIDs := map[string]bool{}
	for _, o := range orders {
		evs := byOrder[o.OrderID]
		checkHistory(pr, o, saleID, evs, outbox[o.OrderID], evCreated, evPaid)
		for _, ev := range evs.of(evPaid) {
			paidIDs[ev.EventID] = true
			if ev.Order.paymentID() != "pay-"+o.OrderID {
				pr.errorf("order.paid %s of %s carries payment_id %q", ev.EventID, o.OrderID, ev.Order.paymentID())
			}
		}
	}
	pr.done()
	if len(paidIDs) != n {
		t.Errorf("%d distinct order.paid event ids, want %d", len(paidIDs), n)
	}
	for _, r := range e.orders(t, saleID) {
		if r.Status != "paid" {
			t.Errorf("order row %+v, want paid", r)
		}
	}
	sink.verify(t)
}

// TestPaymentSignatureRejected: a tampered body, a wrong secret, no header, a
// t 301 s old or 301 s ahead, and malformed headers all answer 401
// bad_signature, the same body every time, and change nothing. The same notification correctly signed
// (with a t 290 s old, within tolerance) then pays the order.
func TestPaymentSignatureRejected(t *testing.T) {
	e := newEnv(t)
	sink := newEventSink(t, e)
	p := e.start("all", nil)
	c := p.client()
	const stock, price = 3, 2500
	saleID := c.createSale(t, openSale(stock, 1, price))
	o := c.placeOrders(t, saleID, []string{"signer"})[0]
	secret := e.PaymentSecret

	body := notice("pay-sig", o.OrderID, o.AmountCents, "succeeded").body()
	tampered := notice("pay-sig", o.OrderID, o.AmountCents+1, "succeeded").body()
	now := time.Now()
	ts := now.Unix()
	good := sigV1(secret, ts, body)
	cases := []struct {
		name   string
		body   []byte
		header string
	}{
		{"tampered body (amount changed after signing)", tampered, sign(secret, now, body)},
		{"wrong secret", body, sign("not-"+secret, now, body)},
		{"missing header", body, ""},
		{"t 301 s old", body, sign(secret, now.Add(-301*time.Second), body)},
		{"t 301 s in the future", body, sign(secret, now.Add(301*time.Second), body)},
		{"signature of another t", body, sigHeader(ts, sigV1(secret, ts-1, body))},
		{"no t", body, "v1=" + good},
		{"no v1", body, sigHeader(ts)},
		{"v1 not hex", body, sigHeader(ts, "zz"+good[2:])},
		{"garbage header", body, "garbage"},
		{"empty v1", body, sigHeader(ts, "")},
		{"v1 for the body with whitespace added", []byte(string(body) + " "), sigHeader(ts, good)},
	}
	// Every refusal is the same answer, so none tells how far t is from the
	// server's clock.
	first := ""
	for _, tc := range cases {
		r := c.mustCallbackHeader(t, tc.body, tc.header)
		checkError(t, tc.name, r, http.StatusUnauthorized, "bad_signature")
		if first == "" {
			first = string(r.Body)
		} else if string(r.Body) != first {
			t.Errorf("%s: answered %s, want the same answer as every other refusal: %s", tc.name, r.Body, first)
		}
	}
	if v := c.orderNow(t, o); v.Status != "pending_payment" || v.PaidAt != nil {
		t.Errorf("order after rejected callbacks: %+v, want pending_payment", v)
	}
	if s := c.sale(t, saleID).Stock; s != (stockView{Total: stock, Available: stock - 1, Held: 1}) {
		t.Errorf("stock after rejected callbacks %+v, want 1 held", s)
	}
	for _, r := range outboxOf(e.outbox(t), idSet([]placedOrder{o}))[o.OrderID] {
		if r.Type != evCreated {
			t.Errorf("outbox row %+v after rejected callbacks, want only order.created", r)
		}
	}

	// Within the tolerance the same notification is accepted.
	old := now.Add(-290 * time.Second)
	checkPayAnswer(t, "correctly signed, t 290 s old", c.mustCallbackHeader(t, body, sign(secret, old, body)), o.OrderID, "paid")
	if v := c.orderNow(t, o); v.Status != "paid" || strp(v.PaymentID) != "pay-sig" {
		t.Errorf("order after the accepted callback: %+v, want paid by pay-sig", v)
	}
	c.awaitStock(t, saleID, stockView{Total: stock, Available: stock - 1, Sold: 1}, 5*time.Second)
	ids := idSet([]placedOrder{o})
	rows := sink.awaitOutboxReceived(t, e, ids, 15*time.Second)
	pr := newProblems(t)
	checkHistory(pr, o, saleID, sink.byOrder()[o.OrderID], outboxOf(rows, ids)[o.OrderID], evCreated, evPaid)
	pr.done()
	sink.verify(t)
}

// TestPaymentRotatedSecrets: with FLASHSALE_PAYMENT_SECRET="old,new" a
// signature made with either secret is accepted, and so is a header with two
// v1 entries of which one is right (in either position). A secret not in the
// list is refused.
func TestPaymentRotatedSecrets(t *testing.T) {
	e := newEnv(t)
	oldSecret, newSecret := "old-"+randHex(8), "new-"+randHex(8)
	p := e.start("all", map[string]string{"FLASHSALE_PAYMENT_SECRET": oldSecret + "," + newSecret})
	c := p.client()
	saleID := c.createSale(t, openSale(10, 1, 1000))
	orders := c.placeOrders(t, saleID, userNames("rot", 5))

	bodyOf := func(o placedOrder) []byte {
		return notice("pay-"+o.OrderID, o.OrderID, o.AmountCents, "succeeded").body()
	}
	now := time.Now()
	ts := now.Unix()
	wrong := func(b []byte) string { return sigV1("bogus-"+randHex(4), ts, b) }

	b := bodyOf(orders[0])
	checkPayAnswer(t, "signed with the old secret", c.mustCallbackHeader(t, b, sign(oldSecret, now, b)), orders[0].OrderID, "paid")
	b = bodyOf(orders[1])
	checkPayAnswer(t, "signed with the new secret", c.mustCallbackHeader(t, b, sign(newSecret, now, b)), orders[1].OrderID, "paid")
	b = bodyOf(orders[2])
	checkPayAnswer(t, "v1=wrong,v1=right", c.mustCallbackHeader(t, b, sigHeader(ts, wrong(b), sigV1(newSecret, ts, b))), orders[2].OrderID, "paid")
	b = bodyOf(orders[3])
	checkPayAnswer(t, "v1=right,v1=wrong", c.mustCallbackHeader(t, b, sigHeader(ts, sigV1(oldSecret, ts, b), wrong(b))), orders[3].OrderID, "paid")
	b = bodyOf(orders[4])
	checkError(t, "signed with a secret not configured", c.mustCallbackHeader(t, b, sign(e.PaymentSecret, now, b)), http.StatusUnauthorized, "bad_signature")
	checkError(t, "two wrong v1 entries", c.mustCallbackHeader(t, b, sigHeader(ts, wrong(b), wrong(b))), http.StatusUnauthorized, "bad_signature")

	views, problems := c.orderStates(orders)
	for i, o := range orders {
		want := "paid"
		if i == 4 {
			want = "pending_payment"
		}
		if v, ok := views[o.OrderID]; !ok || v.Status != want {
			t.Errorf("order %d (%s): %+v %v, want %s", i, o.OrderID, v, problems, want)
		}
	}
	c.awaitStock(t, saleID, stockView{Total: 10, Available: 5, Held: 1, Sold: 4}, 5*time.Second)
}

// TestPaymentRacesExpiry: 100 orders with a 2 s window are each paid once,
// at moments spread from 300 ms before to 700 ms after their pay_by. Every
// order ends either paid (answer paid, units sold, one order.paid) or expired
// (answer refund_required, units back, one order.expired and exactly one
// order.refund_required for that payment): never both, never neither.
func TestPaymentRacesExpiry(t *testing.T) {
	e := newEnv(t)
	sink := newEventSink(t, e)
	p := e.start("all", map[string]string{"FLASHSALE_SWEEP_INTERVAL": "1"})
	c := p.client()
	const n = 100
	spec := openSale(n, 1, 1700)
	spec.PaymentWindowSeconds = 2
	saleID := c.createSale(t, spec)
	orders := c.placeOrders(t, saleID, userNames("race-pay", n))

	outcome := make([]string, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i, o := range orders {
		offset := -300*time.Millisecond + time.Duration(i%50)*20*time.Millisecond
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-time.After(time.Until(o.PayBy.Add(offset))) // the moment of the race, not an effect
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			r, err := c.pay(ctx, e.PaymentSecret, "pay-"+o.OrderID, o)
			outcome[i], errs[i] = payOutcome(r, err, o.OrderID)
		}()
	}
	wg.Wait()

	views := c.awaitOrders(t, orders, 15*time.Second, "settled", settled)
	counts := map[string]int{}
	paid := 0
	wantHistory := map[string][]string{}
	pr := newProblems(t)
	for i, o := range orders {
		v := views[o.OrderID]
		counts[outcome[i]+" -> "+v.Status]++
		switch {
		case errs[i] != nil:
			pr.errorf("payment of %s: %v", o.OrderID, errs[i])
		case outcome[i] == "paid" && v.Status == "paid":
			// Paid in time, or just after it expired: a late payment takes
			// the units again (nobody else buys in this sale).
			paid += o.Quantity
			wantHistory[o.OrderID] = nil // created, paid; or created, expired, paid: checked below
			if strp(v.PaymentID) != "pay-"+o.OrderID {
				pr.errorf("paid order %s has payment_id %s", o.OrderID, strp(v.PaymentID))
			}
		case outcome[i] == "refund_required" && v.Status == "expired":
			wantHistory[o.OrderID] = []string{evCreated, evExpired, evRefund}
		default:
			pr.errorf("order %s: payment answered %q, order ended %q; want paid/paid or refund_required/expired", o.OrderID, outcome[i], v.Status)
		}
	}
	pr.done()
	t.Logf("payment answer -> final status: %v", counts)
	c.awaitStock(t, saleID, stockView{Total: n, Available: n - paid, Sold: paid}, 10*time.Second)

	ids := idSet(orders)
	rows := sink.awaitOutboxReceived(t, e, ids, 15*time.Second)
	sink.checkEventsAgainstOutbox(t, rows, ids)
	byOrder, outbox := sink.byOrder(), outboxOf(rows, ids)
	pr = newProblems(t)
	for _, o := range orders {
		want, ok := wantHistory[o.OrderID]
		if !ok {
			continue
		}
		evs := byOrder[o.OrderID]
		if want == nil {
			want = []string{evCreated, evPaid}
			if len(evs.of(evExpired)) > 0 {
				want = []string{evCreated, evExpired, evPaid}
			}
		}
		checkHistory(pr, o, saleID, evs, outbox[o.OrderID], want...)
		for _, ev := range append(evs.of(evRefund), evs.of(evPaid)...) {
			if ev.Order.paymentID() != "pay-"+o.OrderID {
				pr.errorf("%s of %s carries payment_id %q, want pay-%s", ev.Type, o.OrderID, ev.Order.paymentID(), o.OrderID)
			}
		}
		for _, ev := range evs.of(evRefund) {
			if ev.Order.Status != "expired" {
				pr.errorf("order.refund_required of %s carries status %q, want the order's status expired", o.OrderID, ev.Order.Status)
			}
		}
	}
	pr.done()
	checkOrderRows(t, e.orders(t, saleID), n, 1)
	sink.verify(t)
}

// TestPaymentAfterExpiryOrCancel: money for an expired order whose unit was
// bought by someone else answers 200 refund_required; the order stays expired,
// the stock is untouched, and one order.refund_required is emitted; the same
// notification again changes nothing (still one), a second payment id makes a
// second refund. Money for an expired order whose unit is still on sale takes
// it again: the order is paid (one order.paid), and another payment for it is
// a refund. A cancelled order is refunded.
func TestPaymentAfterExpiryOrCancel(t *testing.T) {
	e := newEnv(t)
	sink := newEventSink(t, e)
	p := e.start("all", map[string]string{"FLASHSALE_SWEEP_INTERVAL": "1"})
	c := p.client()
	short := openSale(1, 1, 3300)
	short.PaymentWindowSeconds = 1
	shortID := c.createSale(t, short)
	spare := openSale(2, 1, 2200)
	spare.PaymentWindowSeconds = 1
	spareID := c.createSale(t, spare)
	longID := c.createSale(t, openSale(2, 1, 4400))
	late := c.placeOrders(t, shortID, []string{"late-payer"})[0]
	revived := c.placeOrders(t, spareID, []string{"revived"})[0]
	gone := c.placeOrders(t, longID, []string{"canceller"})[0]

	expired := func(v orderView) bool { return v.Status == "expired" }
	c.awaitOrders(t, []placedOrder{late, revived}, time.Until(late.PayBy.Add(15*time.Second)), "expired", expired)
	r := c.must(t, http.MethodPost, pathOrder(gone.OrderID)+"/cancel", user(gone.User), nil)
	if r.Status != http.StatusOK {
		t.Fatalf("cancel: %s", r)
	}
	c.awaitStock(t, shortID, stockView{Total: 1, Available: 1}, 10*time.Second)
	c.awaitStock(t, spareID, stockView{Total: 2, Available: 2}, 10*time.Second)
	c.awaitStock(t, longID, stockView{Total: 2, Available: 2}, 10*time.Second)
	taker := c.placeOrders(t, shortID, []string{"taker"})[0] // the late payer's unit, bought by another

	p1 := notice("pay-late-1", late.OrderID, late.AmountCents, "succeeded").body()
	checkPayAnswer(t, "payment after expiry, unit gone", c.mustCallback(t, p1, e.PaymentSecret), late.OrderID, "refund_required")
	checkPayAnswer(t, "the same payment again", c.mustCallback(t, p1, e.PaymentSecret), late.OrderID, "refund_required")
	p3 := notice("pay-gone", gone.OrderID, gone.AmountCents, "succeeded").body()
	checkPayAnswer(t, "payment after cancel", c.mustCallback(t, p3, e.PaymentSecret), gone.OrderID, "refund_required")
	pr1 := notice("pay-revive-1", revived.OrderID, revived.AmountCents, "succeeded").body()
	checkPayAnswer(t, "payment after expiry, unit still on sale", c.mustCallback(t, pr1, e.PaymentSecret), revived.OrderID, "paid")
	checkPayAnswer(t, "the same late payment again", c.mustCallback(t, pr1, e.PaymentSecret), revived.OrderID, "paid")

	ids := idSet([]placedOrder{late, gone, revived})
	rows := sink.awaitOutboxReceived(t, e, ids, 15*time.Second)
	pr := newProblems(t)
	checkHistory(pr, late, shortID, sink.byOrder()[late.OrderID], outboxOf(rows, ids)[late.OrderID], evCreated, evExpired, evRefund)
	checkHistory(pr, gone, longID, sink.byOrder()[gone.OrderID], outboxOf(rows, ids)[gone.OrderID], evCreated, evCancelled, evRefund)
	checkHistory(pr, revived, spareID, sink.byOrder()[revived.OrderID], outboxOf(rows, ids)[revived.OrderID], evCreated, evExpired, evPaid)
	pr.done()

	// A second payment for the expired order is a second refund; so is one for
	// the revived order, which another payment paid.
	p2 := notice("pay-late-2", late.OrderID, late.AmountCents, "succeeded").body()
	checkPayAnswer(t, "another payment after expiry", c.mustCallback(t, p2, e.PaymentSecret), late.OrderID, "refund_required")
	checkPayAnswer(t, "the first payment a third time", c.mustCallback(t, p1, e.PaymentSecret), late.OrderID, "refund_required")
	pr2 := notice("pay-revive-2", revived.OrderID, revived.AmountCents, "succeeded").body()
	checkPayAnswer(t, "another payment of the revived order", c.mustCallback(t, pr2, e.PaymentSecret), revived.OrderID, "refund_required")
	rows = sink.awaitOutboxReceived(t, e, ids, 15*time.Second)
	byOrder := sink.byOrder()
	pr = newProblems(t)
	checkHistory(pr, late, shortID, byOrder[late.OrderID], outboxOf(rows, ids)[late.OrderID], evCreated, evExpired, evRefund, evRefund)
	checkHistory(pr, revived, spareID, byOrder[revived.OrderID], outboxOf(rows, ids)[revived.OrderID], evCreated, evExpired, evPaid, evRefund)
	pr.done()
	refunds := map[string]int{}
	for _, ev := range byOrder[late.OrderID].of(evRefund) {
		refunds[ev.Order.paymentID()]++
		if ev.Order.Status != "expired" {
			t.Errorf("order.refund_required %s carries status %q, want expired", ev.EventID, ev.Order.Status)
		}
	}
	if refunds["pay-late-1"] != 1 || refunds["pay-late-2"] != 1 {
		t.Errorf("refund events by payment id %v, want one each for pay-late-1 and pay-late-2", refunds)
	}
	if rf := byOrder[gone.OrderID].of(evRefund); len(rf) != 1 || rf[0].Order.paymentID() != "pay-gone" || rf[0].Order.Status != "cancelled" {
		t.Errorf("refund events of the cancelled order: %+v, want one for pay-gone with status cancelled", rf)
	}
	if rf := byOrder[revived.OrderID].of(evRefund); len(rf) != 1 || rf[0].Order.paymentID() != "pay-revive-2" || rf[0].Order.Status != "paid" {
		t.Errorf("refund events of the revived order: %+v, want one for pay-revive-2 with status paid", rf)
	}

	if v := c.orderNow(t, late); v.Status != "expired" || v.PaidAt != nil {
		t.Errorf("expired order after late payments: %+v, want expired and unpaid", v)
	}
	if v := c.orderNow(t, revived); v.Status != "paid" || strp(v.PaymentID) != "pay-revive-1" {
		t.Errorf("revived order: %+v, want paid by pay-revive-1", v)
	}
	if v := c.orderNow(t, gone); v.Status != "cancelled" || v.PaidAt != nil {
		t.Errorf("cancelled order after a payment: %+v, want cancelled and unpaid", v)
	}
	if v := c.orderNow(t, taker); v.Status != "pending_payment" {
		t.Errorf("the unit's new buyer: %+v, want pending_payment", v)
	}
	if s := c.sale(t, shortID).Stock; s != (stockView{Total: 1, Held: 1}) {
		t.Errorf("stock after late payments of a unit bought by another %+v, want untouched (held by the new buyer)", s)
	}
	if s := c.sale(t, spareID).Stock; s != (stockView{Total: 2, Available: 1, Sold: 1}) {
		t.Errorf("stock after the revived order's payment %+v, want one sold", s)
	}
	if s := c.sale(t, longID).Stock; s != (stockView{Total: 2, Available: 2}) {
		t.Errorf("stock after a payment of a cancelled order %+v, want untouched", s)
	}
	sink.verify(t)
}

// TestPaymentCallbackAnswers: an unknown order is 404; a wrong amount is 422
// amount_mismatch and changes nothing; "failed" answers 200 and the order
// stays payable; "succeeded" pays it; the same payment again is 200 and
// changes nothing; another payment id for the paid order is
// refund_required, once; a signed but malformed body is 400.
func TestPaymentCallbackAnswers(t *testing.T) {
	e := newEnv(t)
	sink := newEventSink(t, e)
	p := e.start("all", nil)
	c := p.client()
	const stock, price = 4, 3100
	saleID := c.createSale(t, openSale(stock, 1, price))
	o := c.placeOrders(t, saleID, []string{"buyer"})[0]
	if o.AmountCents != price {
		t.Fatalf("order amount %d, want %d", o.AmountCents, price)
	}
	secret := e.PaymentSecret
	pending := func(what string) {
		t.Helper()
		if v := c.orderNow(t, o); v.Status != "pending_payment" || v.PaidAt != nil {
			t.Errorf("order after %s: %+v, want pending_payment", what, v)
		}
		if s := c.sale(t, saleID).Stock; s != (stockView{Total: stock, Available: stock - 1, Held: 1}) {
			t.Errorf("stock after %s: %+v, want 1 held", what, s)
		}
	}

	checkError(t, "unknown order", c.mustCallback(t, notice("pay-x", "no-such-order-"+randHex(4), price, "succeeded").body(), secret),
		http.StatusNotFound, "not_found")
	checkError(t, "amount + 1", c.mustCallback(t, notice("pay-1", o.OrderID, price+1, "succeeded").body(), secret),
		http.StatusUnprocessableEntity, "amount_mismatch")
	checkError(t, "amount 0", c.mustCallback(t, notice("pay-1", o.OrderID, 0, "succeeded").body(), secret),
		http.StatusUnprocessableEntity, "amount_mismatch")
	pending("amount mismatches")
	checkError(t, "signed malformed JSON", c.mustCallback(t, []byte(`{"payment_id": "pay-1", "order_id": `), secret),
		http.StatusBadRequest, "bad_request")

	r := c.mustCallback(t, notice("pay-f", o.OrderID, price, "failed").body(), secret)
	if _, err := payOutcome(r, nil, o.OrderID); err != nil {
		t.Errorf("failed payment: %v", err)
	}
	pending("a failed payment")

	p1 := notice("pay-1", o.OrderID, price, "succeeded").body()
	checkPayAnswer(t, "succeeded", c.mustCallback(t, p1, secret), o.OrderID, "paid")
	paid := c.orderNow(t, o)
	if paid.Status != "paid" || strp(paid.PaymentID) != "pay-1" || paid.PaidAt == nil {
		t.Fatalf("order after payment: %+v, want paid by pay-1 with paid_at", paid)
	}
	c.awaitStock(t, saleID, stockView{Total: stock, Available: stock - 1, Sold: 1}, 5*time.Second)

	checkPayAnswer(t, "the same payment again", c.mustCallback(t, p1, secret), o.OrderID, "paid")
	p2 := notice("pay-2", o.OrderID, price, "succeeded").body()
	checkPayAnswer(t, "another payment for the paid order", c.mustCallback(t, p2, secret), o.OrderID, "refund_required")
	checkPayAnswer(t, "that payment again", c.mustCallback(t, p2, secret), o.OrderID, "refund_required")
	if r := c.mustCallback(t, notice("pay-f2", o.OrderID, price, "failed").body(), secret); r.Status != http.StatusOK {
		t.Errorf("failed notification for a paid order: %s, want 200", r)
	}
	checkError(t, "amount mismatch on the paid order", c.mustCallback(t, notice("pay-3", o.OrderID, price-1, "succeeded").body(), secret),
		http.StatusUnprocessableEntity, "amount_mismatch")

	after := c.orderNow(t, o)
	if after.Status != "paid" || strp(after.PaymentID) != "pay-1" || after.PaidAt == nil || !after.PaidAt.Equal(*paid.PaidAt) {
		t.Errorf("order after repeats: %+v, want unchanged %+v", after, paid)
	}
	if s := c.sale(t, saleID).Stock; s != (stockView{Total: stock, Available: stock - 1, Sold: 1}) {
		t.Errorf("stock after repeats %+v, want 1 sold", s)
	}

	ids := idSet([]placedOrder{o})
	rows := sink.awaitOutboxReceived(t, e, ids, 15*time.Second)
	evs := sink.byOrder()[o.OrderID]
	pr := newProblems(t)
	checkHistory(pr, o, saleID, evs, outboxOf(rows, ids)[o.OrderID], evCreated, evPaid, evRefund)
	pr.done()
	if rf := evs.of(evRefund); len(rf) == 1 && (rf[0].Order.paymentID() != "pay-2" || rf[0].Order.Status != "paid") {
		t.Errorf("order.refund_required carries payment_id %q status %q, want pay-2 and the order's status paid",
			rf[0].Order.paymentID(), rf[0].Order.Status)
	}
	sink.verify(t)
}

// TestPaymentWebhookDisabled: without FLASHSALE_PAYMENT_SECRET the webhook
// answers 503 and the order stays unpaid.
func TestPaymentWebhookDisabled(t *testing.T) {
	e := newEnv(t)
	p := e.startWithout("all", "FLASHSALE_PAYMENT_SECRET")
	c := p.client()
	saleID := c.createSale(t, openSale(2, 1, 100))
	o := c.placeOrders(t, saleID, []string{"nobody-can-pay"})[0]
	body := notice("pay-1", o.OrderID, o.AmountCents, "succeeded").body()
	checkError(t, "callback without a configured secret", c.mustCallback(t, body, e.PaymentSecret), http.StatusServiceUnavailable, "unavailable")
	checkError(t, "unsigned callback without a configured secret", c.mustCallbackHeader(t, body, ""), http.StatusServiceUnavailable, "unavailable")
	if v := c.orderNow(t, o); v.Status != "pending_payment" {
		t.Errorf("order: %+v, want pending_payment", v)
	}
}

// startWithout is start with the given variables removed from the process's
// environment (not just empty).
func (e *env) startWithout(role string, unset ...string) *proc {
	t := e.t
	t.Helper()
	vars := e.Vars()
	for _, k := range unset {
		delete(vars, k)
	}
	addr := freeAddr(t)
	vars["FLASHSALE_HTTP_ADDR"] = addr
	p := &proc{
		t:       t,
		Role:    role,
		Addr:    addr,
		URL:     "http://" + addr,
		vars:    vars,
		logPath: filepath.Join(t.TempDir(), role+".log"),
		serves:  role == "all" || role == "ingress",
	}
	t.Cleanup(p.cleanup)
	p.launch()
	return p
}

// TestPaymentIDReusedForAnotherOrder: a payment_id is bound to the order it
// first paid. The same id for another order, on the same shard or another,
// is 409 conflict and changes nothing: the first order stays paid by it, the
// others stay unpaid, and no event is written for them.
func TestPaymentIDReusedForAnotherOrder(t *testing.T) {
	e := newEnv(t)
	p := e.start("all", nil)
	c := p.client()
	saleID := c.createSale(t, openSale(10, 1, 1500))
	// Three users: the payer, one on the payer's shard, one on the other.
	var users []string
	var sameShard, otherShard string
	payer := "reuse-payer"
	for i := 0; sameShard == "" || otherShard == ""; i++ {
		u := fmt.Sprintf("reuse-%d", i)
		switch {
		case shardOf(u, 2) == shardOf(payer, 2) && sameShard == "":
			sameShard = u
		case shardOf(u, 2) != shardOf(payer, 2) && otherShard == "":
			otherShard = u
		}
	}
	users = []string{payer, sameShard, otherShard}
	orders := c.placeOrders(t, saleID, users)
	byUser := map[string]placedOrder{}
	for _, o := range orders {
		byUser[o.User] = o
	}
	first := byUser[payer]
	checkPayAnswer(t, "the first payment", c.mustCallback(t, notice("pay-once", first.OrderID, first.AmountCents, "succeeded").body(), e.PaymentSecret), first.OrderID, "paid")
	for _, u := range []string{sameShard, otherShard} {
		o := byUser[u]
		r := c.mustCallback(t, notice("pay-once", o.OrderID, o.AmountCents, "succeeded").body(), e.PaymentSecret)
		checkError(t, "payment_id reused for the order of "+u, r, http.StatusConflict, "conflict")
		if v := c.orderNow(t, o); v.Status != "pending_payment" || v.PaymentID != nil {
			t.Errorf("order of %s after a reused payment_id: %+v, want pending_payment without payment", u, v)
		}
	}
	if v := c.orderNow(t, first); v.Status != "paid" || strp(v.PaymentID) != "pay-once" {
		t.Errorf("first order: %+v, want paid by pay-once", v)
	}
	// The first order's own repeat is still answered as before.
	checkPayAnswer(t, "the first payment again", c.mustCallback(t, notice("pay-once", first.OrderID, first.AmountCents, "succeeded").body(), e.PaymentSecret), first.OrderID, "paid")
	for _, u := range []string{sameShard, otherShard} {
		var n int
		o := byUser[u]
		if err := e.shard(shardOf(u, 2)).QueryRow(`SELECT COUNT(*) FROM outbox WHERE order_id = ? AND event_type <> 'order.created'`, o.OrderID).Scan(&n); err != nil || n != 0 {
			t.Errorf("events of %s's order besides order.created: %d (%v), want none", u, n, err)
		}
	}
}
