package e2e

import (
	"context"
	"fmt"
	"net/http"
	"strconv"
	"sync"
	"testing"
	"time"
)

func userNames(prefix string, n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf("%s-%05d", prefix, i)
	}
	return out
}

type purchaseResult struct {
	User  string
	Reply reply
	Err   error
}

// burst has every user purchase one unit of the sale, all goroutines released
// at once. With retry a 429 answer, and a 503 (the broker not ready yet: the
// contract lets the user simply retry), is retried (a few hundred times at
// most) so that each user ends with a real answer.
func (c *client) burst(saleID string, users []string, retry bool) []purchaseResult {
	res := make([]purchaseResult, len(users))
	start := make(chan struct{})
	var wg sync.WaitGroup
	for i, u := range users {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			for attempt := 0; ; attempt++ {
				ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
				r, err := c.purchase(ctx, saleID, u, 1)
				cancel()
				if err == nil && (r.Status == http.StatusTooManyRequests || r.Status == http.StatusServiceUnavailable) && retry && attempt < 300 {
					time.Sleep(20 * time.Millisecond) // back off; not waiting for an effect
					continue
				}
				res[i] = purchaseResult{User: u, Reply: r, Err: err}
				return
			}
		}()
	}
	close(start)
	wg.Wait()
	return res
}

// accepted tallies the answers of a burst and returns the 202 tickets,
// asserting each 202 body ({"ticket_id", "status":"queued"}) and that no
// ticket id is given twice.
func accepted(t *testing.T, res []purchaseResult) ([]ticketRef, *tally) {
	t.Helper()
	ta := newTally()
	var refs []ticketRef
	seen := map[string]string{}
	for _, r := range res {
		k := outcome(r.Reply, r.Err)
		ex := fmt.Sprintf("%s: %v", r.User, r.Err)
		if r.Err == nil {
			ex = fmt.Sprintf("%s: %s", r.User, r.Reply)
		}
		ta.add(k, ex)
		if r.Err != nil || r.Reply.Status != http.StatusAccepted {
			continue
		}
		var a purchaseAnswer
		if err := r.Reply.decode(&a); err != nil {
			t.Error(err)
			continue
		}
		if a.TicketID == "" || a.Status != "queued" {
			t.Errorf("user %s: 202 body %s, want a ticket_id and status queued", r.User, r.Reply)
			continue
		}
		if other, dup := seen[a.TicketID]; dup {
			t.Errorf("ticket %s given to both %s and %s", a.TicketID, other, r.User)
			continue
		}
		seen[a.TicketID] = r.User
		refs = append(refs, ticketRef{User: r.User, TicketID: a.TicketID})
	}
	return refs, ta
}

// checkErrorExample runs checkError on the first result with the given
// status, to assert the full error shape of a bulk outcome.
func checkErrorExample(t *testing.T, res []purchaseResult, status int, code string) {
	t.Helper()
	for _, r := range res {
		if r.Err == nil && r.Reply.Status == status {
			checkError(t, "purchase by "+r.User, r.Reply, status, code)
			return
		}
	}
}

// TestPurchaseRaceSellsExactlyStock: 2,000 users race for 100 units. Exactly
// 100 orders are made, one per user, on the right shards; every other
// accepted ticket ends sold_out; the sale view is conserved.
func TestPurchaseRaceSellsExactlyStock(t *testing.T) {
	e := newEnv(t)
	p := e.start("all", nil)
	c := p.client()
	const users, stock, price = 2000, 100, 1999
	saleID := c.createSale(t, openSale(stock, 1, price))

	res := c.burst(saleID, userNames("race", users), true)
	refs, ta := accepted(t, res)
	t.Logf("answers: %s", ta)
	ta.only(t, "202", "409 sold_out")
	checkErrorExample(t, res, http.StatusConflict, "sold_out")
	if len(refs) < stock {
		t.Errorf("only %d purchases accepted for %d units: sold out before the stock was held", len(refs), stock)
	}

	final := c.awaitFinal(t, refs, 90*time.Second)
	owner := map[string]string{} // order id -> user, from the tickets
	statuses := map[string]int{}
	for _, ref := range refs {
		v := final[ref.TicketID]
		statuses[v.Status]++
		switch v.Status {
		case "pending_payment":
			if v.OrderID == "" {
				t.Errorf("ticket %s is pending_payment without an order_id", ref.TicketID)
				continue
			}
			if v.PayBy == nil {
				t.Errorf("ticket %s is pending_payment without pay_by", ref.TicketID)
			}
			if v.SaleID != saleID || v.Quantity != 1 {
				t.Errorf("ticket %s: sale %q quantity %d, want %q 1", ref.TicketID, v.SaleID, v.Quantity, saleID)
			}
			if u, dup := owner[v.OrderID]; dup {
				t.Errorf("order %s is the order of two tickets (users %s and %s)", v.OrderID, u, ref.User)
			}
			owner[v.OrderID] = ref.User
		case "sold_out":
		default:
			t.Errorf("ticket %s of %s ended %q, want pending_payment or sold_out", ref.TicketID, ref.User, v.Status)
		}
	}
	t.Logf("final tickets: %v", statuses)
	if statuses["pending_payment"] != stock {
		t.Errorf("%d tickets pending_payment, want exactly %d", statuses["pending_payment"], stock)
	}

	v := c.sale(t, saleID)
	if want := (stockView{Total: stock, Available: 0, Held: stock, Sold: 0}); v.Stock != want {
		t.Errorf("sale stock %+v, want %+v", v.Stock, want)
	}
	if v.State != "sold_out" {
		t.Errorf("sale state %q, want sold_out", v.State)
	}

	rows := e.orders(t, saleID)
	live := checkOrderRows(t, rows, stock, 1)
	if len(rows) != stock || len(live) != stock {
		t.Errorf("%d order rows for %d distinct users, want %d and %d", len(rows), len(live), stock, stock)
	}
	units := 0
	for _, r := range rows {
		units += r.Quantity
		if r.Status != "pending_payment" || r.Quantity != 1 || r.AmountCents != price {
			t.Errorf("order row %+v, want pending_payment, quantity 1, amount %d", r, price)
		}
		if u, ok := owner[r.OrderID]; !ok {
			t.Errorf("order row %s is no pending ticket's order", r.OrderID)
		} else if u != r.UserID {
			t.Errorf("order %s: row user %q, ticket user %q", r.OrderID, r.UserID, u)
		}
	}
	if units != stock {
		t.Errorf("sum(quantity) = %d, want %d", units, stock)
	}

	// A few orders through the API, as their owners.
	n := 0
	for oid, u := range owner {
		if n++; n > 5 {
			break
		}
		r := c.must(t, http.MethodGet, pathOrder(oid), user(u), nil)
		var o orderView
		if r.Status != http.StatusOK || r.decode(&o) != nil {
			t.Errorf("GET order %s as %s: %s", oid, u, r)
			continue
		}
		if o.OrderID != oid || o.SaleID != saleID || o.UserID != u || o.Quantity != 1 || o.AmountCents != price || o.Status != "pending_payment" {
			t.Errorf("order %s: %s", oid, r)
		}
		if o.PayBy == nil || o.PaidAt != nil || (o.PaymentID != nil && *o.PaymentID != "") {
			t.Errorf("unpaid order %s: pay_by %v paid_at %v payment_id %v", oid, o.PayBy, o.PaidAt, o.PaymentID)
		} else if w := o.PayBy.Sub(o.CreatedAt); w < 895*time.Second || w > 905*time.Second {
			t.Errorf("order %s: pay_by - created_at = %s, want the default payment window 900s", oid, w)
		}
	}

	p.Stop()
}

// TestPurchaseSameUserConcurrentRequests: a user's 20 simultaneous purchases
// make one ticket (one 202, the rest 200 with the same ticket) and one order.
func TestPurchaseSameUserConcurrentRequests(t *testing.T) {
	e := newEnv(t)
	p := e.start("all", nil)
	c := p.client()
	saleID := c.createSale(t, openSale(10, 1, 500))
	const u = "double-clicker"

	names := make([]string, 20)
	for i := range names {
		names[i] = u
	}
	res := c.burst(saleID, names, true)
	ids := map[string]int{}
	n202 := 0
	for _, r := range res {
		if r.Err != nil {
			t.Errorf("purchase: %v", r.Err)
			continue
		}
		var a purchaseAnswer
		switch r.Reply.Status {
		case http.StatusAccepted:
			n202++
			if r.Reply.decode(&a) != nil || a.Status != "queued" {
				t.Errorf("202 body %s, want status queued", r.Reply)
			}
		case http.StatusOK:
			if r.Reply.decode(&a) != nil || (a.Status != "queued" && a.Status != "pending_payment") {
				t.Errorf("200 body %s, want the live ticket (queued or pending_payment)", r.Reply)
			}
		default:
			t.Errorf("purchase: %s, want 202 or 200", r.Reply)
			continue
		}
		ids[a.TicketID]++
	}
	if n202 != 1 {
		t.Errorf("%d answers 202, want exactly one (the rest 200)", n202)
	}
	if len(ids) != 1 {
		t.Fatalf("ticket ids %v, want one ticket for all 20 requests", ids)
	}
	var ticketID string
	for id := range ids {
		ticketID = id
	}
	if ticketID == "" {
		t.Fatal("empty ticket_id")
	}

	v := c.awaitFinal(t, []ticketRef{{User: u, TicketID: ticketID}}, 30*time.Second)[ticketID]
	if v.Status != "pending_payment" || v.OrderID == "" {
		t.Fatalf("ticket ended %+v, want pending_payment with an order", v)
	}
	rows := e.orders(t, saleID)
	checkOrderRows(t, rows, 10, 1)
	if len(rows) != 1 || rows[0].UserID != u || rows[0].OrderID != v.OrderID || rows[0].Quantity != 1 {
		t.Errorf("order rows %+v, want exactly one: order %s of %s", rows, v.OrderID, u)
	}

	// Once the order exists the ticket is still live: a retry answers 200 with it.
	r := c.must(t, http.MethodPost, pathPurchase(saleID), user(u), map[string]int{"quantity": 1})
	var a purchaseAnswer
	if r.Status != http.StatusOK || r.decode(&a) != nil || a.TicketID != ticketID || a.Status != "pending_payment" {
		t.Errorf("purchase again after the order: %s, want 200 with ticket %s pending_payment", r, ticketID)
	}
	if s := c.sale(t, saleID).Stock; s != (stockView{Total: 10, Available: 9, Held: 1}) {
		t.Errorf("sale stock %+v, want 9 available and 1 held", s)
	}
	if rows := e.orders(t, saleID); len(rows) != 1 {
		t.Errorf("%d order rows after the retry, want 1", len(rows))
	}
}

// TestPurchaseSurvivesWorkerKill: with ingress and worker as separate
// processes, the worker is SIGKILLed while tickets are queued and a new one
// started. Every accepted ticket still reaches a final status, nothing is
// oversold or doubled, and the sale view agrees with MySQL.
//
// The purchases are queued before the first worker starts, and the worker is
// killed as soon as its first holds show: a worker fast enough to drain a burst
// between two looks at the sale could otherwise never be caught mid-work.
func TestPurchaseSurvivesWorkerKill(t *testing.T) {
	e := newEnv(t)
	ing := e.start("ingress", nil)
	c := ing.client()
	const users, stock = 3000, 500
	saleID := c.createSale(t, openSale(stock, 1, 700))

	res := c.burst(saleID, userNames("wk", users), true)
	refs, ta := accepted(t, res)
	ta.only(t, "202", "409 sold_out")

	worker := e.startProc("worker", nil, false)
	var at saleView
	held := poll(90*time.Second, time.Millisecond, func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		r, err := c.send(ctx, http.MethodGet, pathSale(saleID), nil, nil)
		cancel()
		return err == nil && r.Status == http.StatusOK && r.decode(&at) == nil && at.Stock.Held+at.Stock.Sold > 0
	})
	worker.Kill()
	if !held {
		t.Fatal("the worker held no stock within 90s")
	}
	t.Logf("answers: %s; worker killed at stock %+v", ta, at.Stock)

	// The worker is dead: whatever is queued now was queued when it died.
	states, problems := c.ticketStates(refs)
	atKill := map[string]int{}
	for _, v := range states {
		atKill[v.Status]++
	}
	t.Logf("%d accepted tickets after the kill: %v %v", len(refs), atKill, problems)
	if atKill["queued"] == 0 {
		t.Fatalf("precondition: no ticket was queued once the worker was dead (%v); the kill came too late to test anything", atKill)
	}

	e.startProc("worker", nil, false)
	final := c.awaitFinal(t, refs, 2*time.Minute)

	statuses := map[string]int{}
	owner := map[string]string{}
	for _, ref := range refs {
		v := final[ref.TicketID]
		statuses[v.Status]++
		switch v.Status {
		case "pending_payment":
			if v.OrderID == "" {
				t.Errorf("ticket %s is pending_payment without an order_id", ref.TicketID)
				continue
			}
			if u, dup := owner[v.OrderID]; dup {
				t.Errorf("order %s is the order of two tickets (users %s and %s)", v.OrderID, u, ref.User)
			}
			owner[v.OrderID] = ref.User
		case "sold_out", "failed":
		default:
			t.Errorf("ticket %s ended %q, want pending_payment, sold_out or failed", ref.TicketID, v.Status)
		}
	}
	t.Logf("final tickets: %v", statuses)
	pending := statuses["pending_payment"]
	if pending > stock {
		t.Errorf("%d tickets pending_payment, stock %d", pending, stock)
	}
	if want := min(stock, len(refs)); statuses["failed"] == 0 && pending != want {
		t.Errorf("%d tickets pending_payment, want min(stock %d, accepted %d) = %d", pending, stock, len(refs), want)
	}

	rows := e.orders(t, saleID)
	live := checkOrderRows(t, rows, stock, 1)
	units := 0
	for _, r := range rows {
		units += r.Quantity
		if r.Status != "pending_payment" {
			t.Errorf("order row %+v, want pending_payment", r)
		}
		if u, ok := owner[r.OrderID]; !ok {
			t.Errorf("order row %s (user %s) is no pending ticket's order", r.OrderID, r.UserID)
		} else if u != r.UserID {
			t.Errorf("order %s: row user %q, ticket user %q", r.OrderID, r.UserID, u)
		}
	}
	if len(rows) != pending || len(live) != pending {
		t.Errorf("%d order rows of %d users, want one per pending ticket (%d)", len(rows), len(live), pending)
	}

	// Once quiet, Redis agrees with MySQL.
	want := stockView{Total: stock, Available: stock - units, Held: units, Sold: 0}
	var v saleView
	if !poll(15*time.Second, pollEvery, func() bool {
		v = c.sale(t, saleID)
		return v.Stock == want
	}) {
		t.Errorf("sale stock %+v, want %+v (MySQL holds %d units in pending orders)", v.Stock, want, units)
	}
}

// TestPurchaseBrokerOutage: with the broker unreachable a purchase answers
// 503 unavailable promptly and leaves nothing behind (a retry is 503 again,
// never 200 with a stale ticket); once the broker is back the same user gets
// 202 and an order.
func TestPurchaseBrokerOutage(t *testing.T) {
	e := newEnv(t)
	px, viaProxy := amqpProxy(t)
	p := e.start("all", map[string]string{"FLASHSALE_AMQP_URL": viaProxy})
	c := p.client()
	const stock = 10
	saleID := c.createSale(t, openSale(stock, 1, 100))
	const u = "outage-user"

	px.Down()
	// The same user retries for a while (the process keeps failing to
	// reconnect meanwhile): every answer is 503, never a ticket.
	outage := time.Now()
	for i := 0; i < 3 || time.Since(outage) < 1500*time.Millisecond; i++ {
		if i >= 3 {
			time.Sleep(250 * time.Millisecond) // pace the retries of a user
		}
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		t0 := time.Now()
		r, err := c.purchase(ctx, saleID, u, 1)
		took := time.Since(t0)
		cancel()
		if err != nil {
			t.Fatalf("purchase %d during the outage: %v after %s", i, err, took)
		}
		checkError(t, fmt.Sprintf("purchase %d during the outage", i), r, http.StatusServiceUnavailable, "unavailable")
		if took > 5*time.Second {
			t.Errorf("purchase %d during the outage took %s, want an answer within 5s", i, took)
		}
	}

	// /readyz names the broker as failing.
	var ready reply
	if !poll(15*time.Second, pollEvery, func() bool {
		ready = c.must(t, http.MethodGet, "/readyz", nil, nil)
		return ready.Status == http.StatusServiceUnavailable
	}) {
		t.Errorf("/readyz during the broker outage: %s, want 503", ready)
	}
	if s := c.sale(t, saleID).Stock; s != (stockView{Total: stock, Available: stock}) {
		t.Errorf("sale stock after refused purchases %+v, want all %d available", s, stock)
	}

	px.Up()
	var r reply
	if !poll(60*time.Second, 250*time.Millisecond, func() bool {
		r = c.must(t, http.MethodPost, pathPurchase(saleID), user(u), map[string]int{"quantity": 1})
		if r.Status != http.StatusServiceUnavailable {
			return true
		}
		if code := r.errCode(); code != "unavailable" {
			t.Errorf("503 with code %q, want unavailable", code)
		}
		return false
	}) {
		t.Fatalf("still %s 60s after the broker came back", r)
	}
	var a purchaseAnswer
	if r.Status != http.StatusAccepted || r.decode(&a) != nil || a.TicketID == "" {
		t.Fatalf("first answer after the outage: %s, want 202 with a new ticket (nothing of the refused attempts may be left)", r)
	}
	v := c.awaitFinal(t, []ticketRef{{User: u, TicketID: a.TicketID}}, 60*time.Second)[a.TicketID]
	if v.Status != "pending_payment" || v.OrderID == "" {
		t.Errorf("ticket after the outage ended %+v, want pending_payment with an order", v)
	}
	rows := e.orders(t, saleID)
	checkOrderRows(t, rows, stock, 1)
	if len(rows) != 1 || rows[0].UserID != u || rows[0].OrderID != v.OrderID {
		t.Errorf("order rows %+v, want exactly order %s of %s", rows, v.OrderID, u)
	}
	p.waitReady(30 * time.Second)
}

// TestPurchaseRateLimited: with 5 requests per 10 ms window, a burst of 300
// purchases is partly refused with 429 rate_limited and a Retry-After, and no
// more are admitted than the windows the burst spanned allow.
func TestPurchaseRateLimited(t *testing.T) {
	e := newEnv(t)
	const perWindow = 5
	p := e.start("ingress", map[string]string{"FLASHSALE_LIMIT_PER_WINDOW": strconv.Itoa(perWindow)})
	c := p.client()
	saleID := c.createSale(t, openSale(10000, 1, 100))
	const users = 300

	// Open the connections first so that the burst is dense.
	var wg sync.WaitGroup
	for range users {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			c.send(ctx, http.MethodGet, "/healthz", nil, nil)
		}()
	}
	wg.Wait()

	begin := time.Now()
	res := c.burst(saleID, userNames("lim", users), false)
	end := time.Now()
	refs, ta := accepted(t, res)
	t.Logf("answers: %s in %s", ta, end.Sub(begin))
	ta.only(t, "202", "429 rate_limited")
	checkErrorExample(t, res, http.StatusTooManyRequests, "rate_limited")

	n429 := 0
	for _, r := range res {
		if r.Err != nil || r.Reply.Status != http.StatusTooManyRequests {
			continue
		}
		n429++
		ra := r.Reply.Header.Get("Retry-After")
		if secs, err := strconv.Atoi(ra); err != nil || secs < 1 {
			t.Errorf("429 with Retry-After %q, want whole seconds >= 1", ra)
		}
	}
	if n429 == 0 {
		t.Errorf("no 429 among %d simultaneous purchases with %d per 10 ms window", users, perWindow)
	}
	if len(refs) == 0 {
		t.Errorf("no purchase admitted")
	}
	const window = int64(10 * time.Millisecond)
	windows := end.UnixNano()/window - begin.UnixNano()/window + 1
	if limit := perWindow * (windows + 1); int64(len(refs)) > limit {
		t.Errorf("%d purchases admitted over %d windows of 10 ms, want at most %d", len(refs), windows, limit)
	}
}

// TestOrdersShardedByUser: every order lives on shard fnv1a32(user_id) mod 2
// and nowhere else, and both shards get orders.
func TestOrdersShardedByUser(t *testing.T) {
	e := newEnv(t)
	p := e.start("all", nil)
	c := p.client()
	const users = 200
	saleID := c.createSale(t, openSale(1000, 1, 100))

	res := c.burst(saleID, userNames("shard", users), true)
	refs, ta := accepted(t, res)
	ta.only(t, "202")
	final := c.awaitFinal(t, refs, 60*time.Second)
	orderOf := map[string]string{} // user -> order id
	for _, ref := range refs {
		v := final[ref.TicketID]
		if v.Status != "pending_payment" || v.OrderID == "" {
			t.Errorf("ticket %s of %s ended %+v, want pending_payment with an order", ref.TicketID, ref.User, v)
		}
		orderOf[ref.User] = v.OrderID
	}

	rows := e.orders(t, saleID)
	checkOrderRows(t, rows, 1000, 1)
	perShard := [2]int{}
	for _, r := range rows {
		perShard[r.Shard]++
		if orderOf[r.UserID] != r.OrderID {
			t.Errorf("row %+v is not the order of %s's ticket (%q)", r, r.UserID, orderOf[r.UserID])
		}
	}
	if len(rows) != users {
		t.Errorf("%d order rows, want %d", len(rows), users)
	}
	if perShard[0] == 0 || perShard[1] == 0 {
		t.Errorf("orders per shard %v: both shards must hold orders", perShard)
	}
	want := [2]int{}
	for u := range orderOf {
		want[shardOf(u, 2)]++
	}
	if perShard != want {
		t.Errorf("orders per shard %v, want %v", perShard, want)
	}
	t.Logf("orders per shard: %v", perShard)
}
