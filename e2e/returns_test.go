package e2e

// Issue 14, returns (POST /api/v1/orders/{id}/returns, contract sections 2-3):
// units of a paid order go back on sale, in parts, exactly once per return_id.

import (
	"context"
	"fmt"
	"net/http"
	"sync"
	"testing"
	"time"
)

const bnEvReturned = "order.returned"

// returnOutboxRows counts the order's committed order.returned transitions
// (outbox rows), the ground truth of "returns once".
func returnOutboxRows(t *testing.T, e *env, orderID string) int {
	t.Helper()
	n := 0
	for _, r := range e.outbox(t) {
		if r.OrderID == orderID && r.Type == bnEvReturned {
			n++
		}
	}
	return n
}

// TestReturns: a paid order of 3 units (per_user_limit 3) of a 5-unit sale is
// returned as 1, then 2. Each return puts its units back on sale (sold down,
// available up) and grows the item's returned; the same return_id again is
// 200 and changes nothing; the second return raced 10x at once is one 201 and
// nine 200 and returns its units once; a third return is 422
// invalid_quantity; a return_id reused with another body is 409 conflict; an
// unpaid order is 409 not_paid; an unknown order 404; no admin token 401.
// The returned units are bought again by other users, and the sale sells
// exactly its stock. One order.returned per return_id, with return_id and the
// returned items. Reconcile agrees.
func TestReturns(t *testing.T) {
	e := newEnv(t)
	sink := newBnSink(t, e)
	p := e.start("all", nil)
	c := p.client()
	const price = 1000
	id := c.createSale(t, openSale(5, 3, price))
	one := func(q int) []bnItem { return []bnItem{{id, q}} }
	w3 := bnWant{units: map[string]int{id: 3}, prices: map[string]int64{id: price}}

	_, ord := c.bnPlace(t, "ret-buyer", bnItem{id, 3})
	_, unpaid := c.bnPlace(t, "ret-unpaid", bnItem{id, 1})

	checkError(t, "return of an unpaid order", c.mustReturn(t, unpaid, returnBody{"r-unpaid", one(1)}), 409, "not_paid")
	checkError(t, "return of a paid order before it is paid", c.mustReturn(t, ord, returnBody{"r-early", one(1)}), 409, "not_paid")
	checkPayAnswer(t, "payment", c.bnPay(t, e.PaymentSecret, "pay-ret", ord, 3*price), ord, "paid")
	c.awaitStock(t, id, stockView{Total: 5, Available: 1, Held: 1, Sold: 3}, 10*time.Second)

	checkError(t, "return of an unknown order", c.mustReturn(t, "no-such-order", returnBody{"r-x", one(1)}), 404, "not_found")
	noAdmin := c.must(t, http.MethodPost, pathReturns(ord), user("ret-buyer"), returnBody{"r-user", one(1)})
	checkError(t, "return without the admin token", noAdmin, 401, "unauthorized")
	for _, bad := range []struct {
		name string
		body any
	}{
		{"malformed json", `{"return_id": "r-bad", "items": [`},
		{"items not a list", `{"return_id": "r-bad", "items": 3}`},
		{"quantity a string", `{"return_id": "r-bad", "items": [{"sale_id": "` + id + `", "quantity": "1"}]}`},
	} {
		checkError(t, "return with "+bad.name, c.mustReturn(t, ord, bad.body), 400, "bad_request")
	}
	for _, bad := range []struct {
		name string
		body any
	}{
		{"quantity 0", returnBody{"r-zero", one(0)}},
		{"no return_id", returnBody{"", one(1)}},
		{"no items", returnBody{"r-none", nil}},
		{"a sale not in the order", returnBody{"r-other", []bnItem{{"no-such-sale-zz", 1}}}},
	} {
		r := c.mustReturn(t, ord, bad.body)
		if r.Status < 400 || r.Status >= 500 || r.errCode() == "" {
			t.Errorf("return with %s: %s, want a 4xx in the error shape", bad.name, r)
		}
	}
	if s := c.sale(t, id).Stock; s != (stockView{Total: 5, Available: 1, Held: 1, Sold: 3}) {
		t.Fatalf("stock after refused returns: %+v, want untouched", s)
	}

	// First return: 1 unit.
	r1 := returnBody{"r1-" + randHex(3), one(1)}
	r := c.mustReturn(t, ord, r1)
	var ov bnOrderView
	if r.Status != http.StatusCreated || r.decode(&ov) != nil {
		t.Fatalf("first return: %s, want 201 with the order", r)
	}
	if ov.OrderID != ord || ov.Status != "paid" {
		t.Errorf("first return answers order %s status %q, want %s paid", ov.OrderID, ov.Status, ord)
	}
	for _, b := range checkOrderView("order after the first return", ov, w3, map[string]int{id: 1}) {
		t.Error(b)
	}
	c.awaitStock(t, id, stockView{Total: 5, Available: 2, Held: 1, Sold: 2}, 10*time.Second)

	// The same again: 200, nothing changes.
	r = c.mustReturn(t, ord, r1)
	if r.Status != http.StatusOK || r.decode(&ov) != nil {
		t.Errorf("the same return again: %s, want 200 with the order", r)
	} else if it, _ := ov.item(id); it.Returned != 1 {
		t.Errorf("the same return again: returned %d, want still 1", it.Returned)
	}
	// The same return_id with another body: 409 conflict, nothing changes.
	checkError(t, "return_id reused with another quantity", c.mustReturn(t, ord, returnBody{r1.ReturnID, one(2)}), 409, "conflict")
	if s := c.sale(t, id).Stock; s != (stockView{Total: 5, Available: 2, Held: 1, Sold: 2}) {
		t.Errorf("stock after a repeated and a conflicting return: %+v, want {5 2 1 2}", s)
	}

	// Second return: 2 units, the same request 10 times at once.
	r2 := returnBody{"r2-" + randHex(3), one(2)}
	ta := newTally()
	start := make(chan struct{})
	var wg sync.WaitGroup
	for range 10 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			r, err := c.returnOrder(ctx, ord, r2)
			ta.add(outcome(r, err), fmt.Sprint(r, err))
		}()
	}
	close(start)
	wg.Wait()
	t.Logf("10 concurrent identical returns: %s", ta)
	ta.only(t, "201", "200")
	if ta.get("201") != 1 || ta.get("200") != 9 {
		t.Errorf("10 concurrent identical returns answered %s, want exactly one 201 and nine 200", ta)
	}
	c.awaitStock(t, id, stockView{Total: 5, Available: 4, Held: 1, Sold: 0}, 10*time.Second)
	ov = c.bnOrder(t, ord, "ret-buyer")
	if ov.Status != "paid" {
		t.Errorf("fully returned order: status %q, want paid (the contract keeps the status)", ov.Status)
	}
	for _, b := range checkOrderView("order after both returns", ov, w3, map[string]int{id: 3}) {
		t.Error(b)
	}

	// A third return: nothing left to return.
	checkError(t, "a third return", c.mustReturn(t, ord, returnBody{"r3-" + randHex(3), one(1)}), 422, "invalid_quantity")
	// The second again, after all that: still 200.
	if r := c.mustReturn(t, ord, r2); r.Status != http.StatusOK {
		t.Errorf("the second return again: %s, want 200", r)
	}
	if s := c.sale(t, id).Stock; s != (stockView{Total: 5, Available: 4, Held: 1, Sold: 0}) {
		t.Errorf("stock after a refused third return: %+v, want {5 4 1 0}", s)
	}

	// The returned units are bought again by other users, and no more.
	var buyers []string
	for i := range 4 {
		u := fmt.Sprintf("rebuyer-%d", i)
		buyers = append(buyers, u)
		c.bnPlace(t, u, bnItem{id, 1})
	}
	c.awaitStock(t, id, stockView{Total: 5, Available: 0, Held: 5, Sold: 0}, 10*time.Second)
	r = c.must(t, http.MethodPost, pathPurchase(id), user("rebuyer-late"), map[string]int{"quantity": 1})
	switch r.Status {
	case http.StatusConflict:
		checkError(t, "a purchase once the returned units are sold again", r, 409, "sold_out")
	case http.StatusAccepted:
		tk := ticketOf(t, "late rebuyer", r, http.StatusAccepted)
		if v := c.awaitTicket(t, tk, "rebuyer-late", 30*time.Second, "final", func(v bnTicketView) bool { return finalTicket(v.Status) }); v.Status != "sold_out" {
			t.Errorf("a purchase beyond the stock: ticket %+v, want sold_out", v)
		}
	default:
		t.Errorf("a purchase once the returned units are sold again: %s, want 409 sold_out", r)
	}
	if n := bnMustLiveUnits(t, e, id); n != 5 {
		schema, _ := e.bnSchema(context.Background())
		t.Errorf("MySQL: %d live units (pending+paid less returned), want 5 (schema: %s)", n, schema)
	}

	// One order.returned per return_id, with the return_id and its items.
	evs := sink.awaitEvents(t, ord, 20*time.Second, evCreated, evPaid, bnEvReturned, bnEvReturned)
	byReturn := map[string]bnEvent{}
	for _, ev := range evs {
		if ev.Type != bnEvReturned {
			continue
		}
		if _, dup := byReturn[ev.ReturnID]; dup {
			t.Errorf("two order.returned events (distinct event ids) for return_id %q", ev.ReturnID)
		}
		byReturn[ev.ReturnID] = ev
	}
	for _, want := range []struct {
		ret      returnBody
		returned int // the item's returned after it
	}{{r1, 1}, {r2, 3}} {
		ev, ok := byReturn[want.ret.ReturnID]
		if !ok {
			t.Errorf("no order.returned with return_id %s (got %v)", want.ret.ReturnID, evTypes(evs))
			continue
		}
		if len(ev.Items) != 1 || ev.Items[0] != want.ret.Items[0] {
			t.Errorf("order.returned %s: items %+v, want the returned %+v", want.ret.ReturnID, ev.Items, want.ret.Items)
		}
		if ev.Order.Status != "paid" {
			t.Errorf("order.returned %s: order status %q, want paid", want.ret.ReturnID, ev.Order.Status)
		}
		for _, b := range checkItems("order.returned "+want.ret.ReturnID, ev.Order.Items, w3, map[string]int{id: want.returned}) {
			t.Error(b)
		}
	}
	if n := returnOutboxRows(t, e, ord); n != 2 {
		t.Errorf("%d order.returned transitions committed (outbox rows) for two return ids, want 2", n)
	}
	sink.verify(t)
	fxReconcileAgrees(t, e, id, stockView{Total: 5, Available: 0, Held: 5, Sold: 0})
}

// TestReturnsBundle: a paid bundle of 2 units of X and 1 of Y is returned in
// parts per item: 1 X (X's sold down, Y untouched), then 1 X and 1 Y in one
// return; then nothing is left (422). Reconcile agrees on both sales. Then,
// on the same deployment, distinct returns raced (returnsRaceDistinctIDs).
func TestReturnsBundle(t *testing.T) {
	e := newEnv(t)
	sink := newBnSink(t, e)
	p := e.start("all", nil)
	c := p.client()
	x := c.createSale(t, openSale(3, 2, 500))
	y := c.createSale(t, openSale(3, 1, 300))
	w := bnWant{units: map[string]int{x: 2, y: 1}, prices: map[string]int64{x: 500, y: 300}}
	_, ord := c.bnPlace(t, "bundle-returner", bnItem{x, 2}, bnItem{y, 1})
	checkPayAnswer(t, "payment", c.bnPay(t, e.PaymentSecret, "pay-bret", ord, 1300), ord, "paid")
	c.awaitStock(t, x, stockView{Total: 3, Available: 1, Sold: 2}, 10*time.Second)
	c.awaitStock(t, y, stockView{Total: 3, Available: 2, Sold: 1}, 10*time.Second)

	checkError(t, "return of more Y than bought", c.mustReturn(t, ord, returnBody{"rb-over", []bnItem{{y, 2}}}), 422, "invalid_quantity")

	r := c.mustReturn(t, ord, returnBody{"rb1", []bnItem{{x, 1}}})
	var ov bnOrderView
	if r.Status != http.StatusCreated || r.decode(&ov) != nil {
		t.Fatalf("return of 1 X: %s, want 201", r)
	}
	for _, b := range checkOrderView("after rb1", ov, w, map[string]int{x: 1}) {
		t.Error(b)
	}
	c.awaitStock(t, x, stockView{Total: 3, Available: 2, Sold: 1}, 10*time.Second)
	if s := c.sale(t, y).Stock; s != (stockView{Total: 3, Available: 2, Sold: 1}) {
		t.Errorf("Y after a return of X only: %+v, want untouched", s)
	}

	r = c.mustReturn(t, ord, returnBody{"rb2", []bnItem{{x, 1}, {y, 1}}})
	if r.Status != http.StatusCreated || r.decode(&ov) != nil {
		t.Fatalf("return of 1 X and 1 Y: %s, want 201", r)
	}
	for _, b := range checkOrderView("after rb2", ov, w, map[string]int{x: 2, y: 1}) {
		t.Error(b)
	}
	c.awaitStock(t, x, stockView{Total: 3, Available: 3}, 10*time.Second)
	c.awaitStock(t, y, stockView{Total: 3, Available: 3}, 10*time.Second)
	checkError(t, "a return with nothing left", c.mustReturn(t, ord, returnBody{"rb3", []bnItem{{x, 1}}}), 422, "invalid_quantity")

	evs := sink.awaitEvents(t, ord, 20*time.Second, evCreated, evPaid, bnEvReturned, bnEvReturned)
	checkEventItems(t, evs, w)
	for _, ev := range evs {
		if ev.Type == bnEvReturned {
			want := map[string][]bnItem{"rb1": {{x, 1}}, "rb2": {{x, 1}, {y, 1}}}[ev.ReturnID]
			got := map[string]int{}
			for _, it := range ev.Items {
				got[it.SaleID] += it.Quantity
			}
			ok := len(ev.Items) == len(want)
			for _, it := range want {
				ok = ok && got[it.SaleID] == it.Quantity
			}
			if !ok {
				t.Errorf("order.returned %q: items %+v, want %+v", ev.ReturnID, ev.Items, want)
			}
		}
	}
	sink.verify(t)
	fxReconcileAgrees(t, e, x, stockView{Total: 3, Available: 3})
	fxReconcileAgrees(t, e, y, stockView{Total: 3, Available: 3})
	t.Run("distinct_ids_raced", func(t *testing.T) { returnsRaceDistinctIDs(t, e, c) })
}

// returnsRaceDistinctIDs: a paid order of 3 units gets 6 returns of 1
// unit each, all different return_ids, all at once: exactly three are 201 and
// three 422 invalid_quantity (never more than was bought), the item's
// returned is 3, exactly 3 units come back on sale, 3 order.returned
// transitions are committed, and reconcile agrees.
func returnsRaceDistinctIDs(t *testing.T, e *env, c *client) {
	id := c.createSale(t, openSale(4, 3, 700))
	_, ord := c.bnPlace(t, "multi-returner", bnItem{id, 3})
	checkPayAnswer(t, "payment", c.bnPay(t, e.PaymentSecret, "pay-multi", ord, 2100), ord, "paid")
	c.awaitStock(t, id, stockView{Total: 4, Available: 1, Sold: 3}, 10*time.Second)

	ta := newTally()
	start := make(chan struct{})
	var wg sync.WaitGroup
	for i := range 6 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			r, err := c.returnOrder(ctx, ord, returnBody{fmt.Sprintf("rr-%d", i), []bnItem{{id, 1}}})
			ta.add(outcome(r, err), fmt.Sprint(r, err))
		}()
	}
	close(start)
	wg.Wait()
	t.Logf("6 concurrent returns of 1 unit: %s", ta)
	ta.only(t, "201", "422 invalid_quantity")
	if ta.get("201") != 3 || ta.get("422 invalid_quantity") != 3 {
		t.Errorf("6 concurrent returns of 1 of 3 units answered %s, want three 201 and three 422", ta)
	}
	c.awaitStock(t, id, stockView{Total: 4, Available: 4}, 10*time.Second)
	if it, _ := c.bnOrder(t, ord, "multi-returner").item(id); it.Returned != 3 {
		t.Errorf("item returned %d, want 3", it.Returned)
	}
	eventually(t, 10*time.Second, "3 order.returned transitions committed", func() (bool, string) {
		n := returnOutboxRows(t, e, ord)
		return n == 3, fmt.Sprintf("%d outbox rows", n)
	})
	if n := bnMustLiveUnits(t, e, id); n != 0 {
		t.Errorf("MySQL: %d live units, want 0", n)
	}
	fxReconcileAgrees(t, e, id, stockView{Total: 4, Available: 4})
}
