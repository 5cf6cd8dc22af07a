package e2e

// Helpers of the issue-14 tests (bundle_test.go, returns_test.go,
// latepay_test.go): multi-item purchases (POST /api/v1/purchases), the items of
// tickets, orders and events, returns, a crowd buying bundles and single
// units of two sales at once with a watch that checks the invariants at every
// poll, and the units MySQL holds per sale across order items. Names start
// with bn so that they do not collide with other tests' helpers.

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
)

const pathPurchases = "/api/v1/purchases"

func pathReturns(orderID string) string { return pathOrder(orderID) + "/returns" }

// bnItem is one item of a multi-item purchase or of a return.
type bnItem struct {
	SaleID   string `json:"sale_id"`
	Quantity int    `json:"quantity"`
}

// buyBundle sends POST /api/v1/purchases {"items": items} as the user.
func (c *client) buyBundle(ctx context.Context, userID string, items ...bnItem) (reply, error) {
	return c.send(ctx, http.MethodPost, pathPurchases, user(userID), map[string]any{"items": items})
}

// mustBuyBundle is buyBundle on the test goroutine: a transport error fails.
func (c *client) mustBuyBundle(t *testing.T, userID string, items ...bnItem) reply {
	t.Helper()
	return c.must(t, http.MethodPost, pathPurchases, user(userID), map[string]any{"items": items})
}

// returnBody is the body of POST /api/v1/orders/{id}/returns.
type returnBody struct {
	ReturnID string   `json:"return_id"`
	Items    []bnItem `json:"items"`
}

// returnOrder sends POST /orders/{id}/returns as the admin.
func (c *client) returnOrder(ctx context.Context, orderID string, body any) (reply, error) {
	return c.send(ctx, http.MethodPost, pathReturns(orderID), c.admin(), body)
}

func (c *client) mustReturn(t *testing.T, orderID string, body any) reply {
	t.Helper()
	return c.must(t, http.MethodPost, pathReturns(orderID), c.admin(), body)
}

// bnOrderItem is one entry of an order's (or event order's) items.
type bnOrderItem struct {
	SaleID      string `json:"sale_id"`
	Quantity    int    `json:"quantity"`
	AmountCents int64  `json:"amount_cents"`
	Returned    int    `json:"returned"`
}

// bnOrderView is GET /orders/{id} with items; SaleID and Quantity are
// pointers so that their absence (multi-item orders) shows.
type bnOrderView struct {
	OrderID     string        `json:"order_id"`
	SaleID      *string       `json:"sale_id"`
	UserID      string        `json:"user_id"`
	Quantity    *int          `json:"quantity"`
	AmountCents int64         `json:"amount_cents"`
	Status      string        `json:"status"`
	PayBy       *time.Time    `json:"pay_by"`
	PaidAt      *time.Time    `json:"paid_at"`
	PaymentID   *string       `json:"payment_id"`
	Items       []bnOrderItem `json:"items"`
}

func (v bnOrderView) String() string {
	q := "absent"
	if v.Quantity != nil {
		q = fmt.Sprint(*v.Quantity)
	}
	sale := "absent"
	if v.SaleID != nil {
		sale = *v.SaleID
	}
	return fmt.Sprintf("{order %s user %s sale_id %s quantity %s amount %d status %s payment %s items %+v}",
		v.OrderID, v.UserID, sale, q, v.AmountCents, v.Status, strp(v.PaymentID), v.Items)
}

func (v bnOrderView) item(saleID string) (bnOrderItem, bool) {
	for _, it := range v.Items {
		if it.SaleID == saleID {
			return it, true
		}
	}
	return bnOrderItem{}, false
}

// bnTicketView is GET /tickets/{id} with items.
type bnTicketView struct {
	TicketID string     `json:"ticket_id"`
	SaleID   *string    `json:"sale_id"`
	Quantity *int       `json:"quantity"`
	Status   string     `json:"status"`
	OrderID  string     `json:"order_id"`
	PayBy    *time.Time `json:"pay_by"`
	Items    []bnItem   `json:"items"`
}

// bnWant is what an order holds: units per sale, and the sales' prices.
type bnWant struct {
	units  map[string]int
	prices map[string]int64
}

func (w bnWant) total() int64 {
	var n int64
	for s, q := range w.units {
		n += int64(q) * w.prices[s]
	}
	return n
}

// checkItems asserts that the items hold exactly the wanted units per sale
// (no sale twice, none missing, none extra), each item's amount, and
// returned units as given (0 when absent from returned).
func checkItems(what string, items []bnOrderItem, w bnWant, returned map[string]int) []string {
	var bad []string
	seen := map[string]bool{}
	for _, it := range items {
		if seen[it.SaleID] {
			bad = append(bad, fmt.Sprintf("%s: sale %s twice in items %+v", what, it.SaleID, items))
			continue
		}
		seen[it.SaleID] = true
		q, ok := w.units[it.SaleID]
		switch {
		case !ok:
			bad = append(bad, fmt.Sprintf("%s: item of sale %q not bought (items %+v, want %v)", what, it.SaleID, items, w.units))
		case it.Quantity != q:
			bad = append(bad, fmt.Sprintf("%s: item %s quantity %d, want %d", what, it.SaleID, it.Quantity, q))
		case it.AmountCents != int64(q)*w.prices[it.SaleID]:
			bad = append(bad, fmt.Sprintf("%s: item %s amount_cents %d, want %d x %d", what, it.SaleID, it.AmountCents, q, w.prices[it.SaleID]))
		}
		if it.Returned != returned[it.SaleID] {
			bad = append(bad, fmt.Sprintf("%s: item %s returned %d, want %d", what, it.SaleID, it.Returned, returned[it.SaleID]))
		}
	}
	for s := range w.units {
		if !seen[s] {
			bad = append(bad, fmt.Sprintf("%s: no item of sale %s (items %+v): half held", what, s, items))
		}
	}
	return bad
}

// checkOrderView asserts an order's shape: items as wanted, the total, and
// sale_id/quantity present (one sale) or absent (several).
func checkOrderView(what string, v bnOrderView, w bnWant, returned map[string]int) []string {
	bad := checkItems(what, v.Items, w, returned)
	if v.AmountCents != w.total() {
		bad = append(bad, fmt.Sprintf("%s: amount_cents %d, want the total %d", what, v.AmountCents, w.total()))
	}
	if len(w.units) > 1 {
		if v.SaleID != nil || v.Quantity != nil {
			bad = append(bad, fmt.Sprintf("%s: a multi-item order with sale_id %q / quantity %v, want both absent", what, strp(v.SaleID), v.Quantity))
		}
	} else {
		for s, q := range w.units {
			if v.SaleID == nil || *v.SaleID != s || v.Quantity == nil || *v.Quantity != q {
				bad = append(bad, fmt.Sprintf("%s: a one-sale order with sale_id %q quantity %v, want %s and %d", what, strp(v.SaleID), v.Quantity, s, q))
			}
		}
	}
	return bad
}

// orderOf reads one order as its owner.
func (c *client) bnOrder(t *testing.T, orderID, owner string) bnOrderView {
	t.Helper()
	r := c.must(t, http.MethodGet, pathOrder(orderID), user(owner), nil)
	var v bnOrderView
	if r.Status != http.StatusOK || r.decode(&v) != nil {
		t.Fatalf("GET order %s as %s: %s", orderID, owner, r)
	}
	return v
}

// bnTicket reads one ticket as its owner.
func (c *client) bnTicket(t *testing.T, ticketID, owner string) bnTicketView {
	t.Helper()
	r := c.must(t, http.MethodGet, pathTicket(ticketID), user(owner), nil)
	var v bnTicketView
	if r.Status != http.StatusOK || r.decode(&v) != nil {
		t.Fatalf("GET ticket %s as %s: %s", ticketID, owner, r)
	}
	return v
}

// ticketOf decodes a 202/200 purchase answer's ticket id.
func ticketOf(t *testing.T, what string, r reply, status int) string {
	t.Helper()
	var a purchaseAnswer
	if r.Status != status || r.decode(&a) != nil || a.TicketID == "" {
		t.Fatalf("%s: %s, want %d with a ticket_id", what, r, status)
	}
	return a.TicketID
}

// awaitTicket polls one ticket until done holds.
func (c *client) awaitTicket(t *testing.T, ticketID, owner string, timeout time.Duration, what string, done func(bnTicketView) bool) bnTicketView {
	t.Helper()
	var v bnTicketView
	eventually(t, timeout, fmt.Sprintf("ticket %s of %s %s", ticketID, owner, what), func() (bool, string) {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		r, err := c.send(ctx, http.MethodGet, pathTicket(ticketID), user(owner), nil)
		if err != nil || r.Status != http.StatusOK || r.decode(&v) != nil {
			return false, fmt.Sprintf("%v %s", err, r)
		}
		return done(v), fmt.Sprintf("%+v", v)
	})
	return v
}

// awaitOrderStatus polls one order until its status is want.
func (c *client) awaitOrderStatus(t *testing.T, orderID, owner, want string, timeout time.Duration) bnOrderView {
	t.Helper()
	var v bnOrderView
	eventually(t, timeout, fmt.Sprintf("order %s of %s %s", orderID, owner, want), func() (bool, string) {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		r, err := c.send(ctx, http.MethodGet, pathOrder(orderID), user(owner), nil)
		if err != nil || r.Status != http.StatusOK || r.decode(&v) != nil {
			return false, fmt.Sprintf("%v %s", err, r)
		}
		return v.Status == want, "status " + v.Status
	})
	return v
}

// bnPay sends a signed "succeeded" notification.
func (c *client) bnPay(t *testing.T, secret, paymentID, orderID string, amount int64) reply {
	t.Helper()
	return c.mustCallback(t, notice(paymentID, orderID, amount, "succeeded").body(), secret)
}

// bnPlace buys a bundle (or one sale through /purchases' single-sale
// sibling when len(items) == 1) and waits for its order.
func (c *client) bnPlace(t *testing.T, userID string, items ...bnItem) (ticketID, orderID string) {
	t.Helper()
	var r reply
	if len(items) == 1 {
		r = c.must(t, http.MethodPost, pathPurchase(items[0].SaleID), user(userID), map[string]int{"quantity": items[0].Quantity})
	} else {
		r = c.mustBuyBundle(t, userID, items...)
	}
	ticketID = ticketOf(t, "purchase by "+userID, r, http.StatusAccepted)
	v := c.awaitTicket(t, ticketID, userID, 30*time.Second, "final", func(v bnTicketView) bool { return finalTicket(v.Status) })
	// With a 1 s payment window the order may be expired by the time it is
	// seen; it was made all the same.
	if (v.Status != "pending_payment" && v.Status != "expired") || v.OrderID == "" {
		t.Fatalf("purchase of %+v by %s: ticket ended %+v, want pending_payment with an order", items, userID, v)
	}
	return ticketID, v.OrderID
}

// ---- events ----

// bnEvent is an event body with the items of issue 14.
type bnEvent struct {
	EventID  string   `json:"event_id"`
	Type     string   `json:"type"`
	ReturnID string   `json:"return_id"`
	Items    []bnItem `json:"items"` // order.returned: the units returned
	Order    struct {
		OrderID     string        `json:"order_id"`
		SaleID      *string       `json:"sale_id"`
		UserID      string        `json:"user_id"`
		Quantity    *int          `json:"quantity"`
		AmountCents int64         `json:"amount_cents"`
		Status      string        `json:"status"`
		PaymentID   *string       `json:"payment_id"`
		Items       []bnOrderItem `json:"items"`
	} `json:"order"`
	RoutingKey string `json:"-"`
}

// bnSink keeps every distinct event of a deployment's <ns>.events exchange
// (an exclusive queue bound with "#"), de-duplicated by event_id.
type bnSink struct {
	mu       sync.Mutex
	events   []bnEvent
	seen     map[string]bool
	problems []string
}

func newBnSink(t *testing.T, e *env) *bnSink {
	t.Helper()
	conn := brokerConn(t)
	ch, err := conn.Channel()
	if err != nil {
		t.Fatalf("events: channel: %v", err)
	}
	exchange := e.NS + ".events"
	if err := ch.ExchangeDeclare(exchange, amqp.ExchangeTopic, true, false, false, false, nil); err != nil {
		t.Fatalf("events: declare %s: %v", exchange, err)
	}
	q, err := ch.QueueDeclare("", false, true, true, false, nil)
	if err != nil {
		t.Fatalf("events: queue: %v", err)
	}
	if err := ch.QueueBind(q.Name, "#", exchange, false, nil); err != nil {
		t.Fatalf("events: bind: %v", err)
	}
	ds, err := ch.Consume(q.Name, "", true, true, false, false, nil)
	if err != nil {
		t.Fatalf("events: consume: %v", err)
	}
	s := &bnSink{seen: map[string]bool{}}
	go func() {
		for d := range ds {
			var ev bnEvent
			s.mu.Lock()
			if err := json.Unmarshal(d.Body, &ev); err != nil || ev.EventID == "" {
				s.problems = append(s.problems, fmt.Sprintf("undecodable event (%v): %.200s", err, d.Body))
			} else if d.RoutingKey != ev.Type || d.MessageId != ev.EventID {
				s.problems = append(s.problems, fmt.Sprintf("event %s: routing key %q / message_id %q, want type %q / event_id", ev.EventID, d.RoutingKey, d.MessageId, ev.Type))
			}
			if ev.EventID != "" && !s.seen[ev.EventID] {
				s.seen[ev.EventID] = true
				ev.RoutingKey = d.RoutingKey
				s.events = append(s.events, ev)
			}
			s.mu.Unlock()
		}
	}()
	return s
}

// of returns the distinct events of the order, in arrival order.
func (s *bnSink) of(orderID string) []bnEvent {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []bnEvent
	for _, ev := range s.events {
		if ev.Order.OrderID == orderID {
			out = append(out, ev)
		}
	}
	return out
}

func evTypes(evs []bnEvent) []string {
	out := make([]string, len(evs))
	for i, ev := range evs {
		out[i] = ev.Type
	}
	return out
}

func countType(evs []bnEvent, typ string) int {
	n := 0
	for _, ev := range evs {
		if ev.Type == typ {
			n++
		}
	}
	return n
}

// awaitEvents waits until the order's distinct events, in arrival order, are
// at least the types want, then gives a moment's grace for stray
// duplicates-with-new-ids by re-reading; it fails the test if the types are
// not exactly want.
func (s *bnSink) awaitEvents(t *testing.T, orderID string, timeout time.Duration, want ...string) []bnEvent {
	t.Helper()
	var evs []bnEvent
	eventually(t, timeout, fmt.Sprintf("events %v of order %s", want, orderID), func() (bool, string) {
		evs = s.of(orderID)
		return len(evs) >= len(want), fmt.Sprintf("got %v", evTypes(evs))
	})
	if got := strings.Join(evTypes(evs), " "); got != strings.Join(want, " ") {
		t.Errorf("order %s: events %s, want %s", orderID, got, strings.Join(want, " "))
	}
	return evs
}

func (s *bnSink) verify(t *testing.T) {
	t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	for i, p := range s.problems {
		if i == 10 {
			t.Errorf("... %d event problems in all", len(s.problems))
			break
		}
		t.Errorf("events: %s", p)
	}
}

// checkEventItems asserts that every event of the order carries its items.
func checkEventItems(t *testing.T, evs []bnEvent, w bnWant) {
	t.Helper()
	for _, ev := range evs {
		for _, b := range checkItems(fmt.Sprintf("event %s (%s) of order %s", ev.EventID, ev.Type, ev.Order.OrderID), ev.Order.Items, w, returnedIn(ev.Order.Items)) {
			t.Error(b)
		}
		if ev.Order.AmountCents != w.total() {
			t.Errorf("event %s (%s): order amount_cents %d, want %d", ev.EventID, ev.Type, ev.Order.AmountCents, w.total())
		}
		// The event's order is the order as GET /orders/{id} shows it: a
		// multi-item order has no sale_id or quantity (contract sections 2-3).
		if len(w.units) > 1 && (ev.Order.SaleID != nil || ev.Order.Quantity != nil) {
			t.Errorf("event %s (%s) of multi-item order %s: sale_id %q quantity %v, want both absent as on the order",
				ev.EventID, ev.Type, ev.Order.OrderID, strp(ev.Order.SaleID), ev.Order.Quantity)
		}
	}
}

// returnedIn is the returned units the items themselves state (the check of
// item shapes in events does not judge the returned counts).
func returnedIn(items []bnOrderItem) map[string]int {
	out := map[string]int{}
	for _, it := range items {
		out[it.SaleID] = it.Returned
	}
	return out
}

// ---- MySQL: live units per sale across order items ----

// bnSchema is how the shards hold the units of an order: the orders table
// alone, or also a per-item table (found by its columns: order_id, sale_id,
// quantity), with returned units in a column of theirs (any column whose name
// contains "returned") or in a table of returns (one with a return_id).
type bnSchema struct {
	items, itemsReturned, ordersReturned string // "" when absent
	returns                              string
}

func (s bnSchema) String() string {
	if s.items == "" && s.returns == "" {
		return fmt.Sprintf("orders only (returned column %q)", s.ordersReturned)
	}
	return fmt.Sprintf("orders (returned column %q) + items table %q (returned column %q), returns table %q",
		s.ordersReturned, s.items, s.itemsReturned, s.returns)
}

var (
	bnSchemaMu    sync.Mutex
	bnSchemaCache = map[*env]bnSchema{}
)

func (e *env) bnSchema(ctx context.Context) (bnSchema, error) {
	bnSchemaMu.Lock()
	defer bnSchemaMu.Unlock()
	if s, ok := bnSchemaCache[e]; ok {
		return s, nil
	}
	rows, err := e.shard(0).QueryContext(ctx,
		"SELECT TABLE_NAME, COLUMN_NAME FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = ?", e.ShardDBs[0])
	if err != nil {
		return bnSchema{}, err
	}
	cols := map[string]map[string]bool{}
	for rows.Next() {
		var tb, col string
		if err := rows.Scan(&tb, &col); err != nil {
			rows.Close()
			return bnSchema{}, err
		}
		if cols[tb] == nil {
			cols[tb] = map[string]bool{}
		}
		cols[tb][strings.ToLower(col)] = true
	}
	rows.Close()
	returnedCol := func(tb string) string {
		var names []string
		for c := range cols[tb] {
			if strings.Contains(c, "returned") {
				names = append(names, c)
			}
		}
		sort.Strings(names)
		if len(names) > 0 {
			return names[0]
		}
		return ""
	}
	var s bnSchema
	s.ordersReturned = returnedCol("orders")
	var names []string
	for tb := range cols {
		names = append(names, tb)
	}
	sort.Strings(names)
	for _, tb := range names {
		c := cols[tb]
		if tb == "orders" || !c["order_id"] || !c["sale_id"] || !c["quantity"] {
			continue
		}
		if c["return_id"] {
			s.returns = tb
		} else if s.items == "" || strings.Contains(tb, "item") {
			s.items = tb
			s.itemsReturned = returnedCol(tb)
		}
	}
	bnSchemaCache[e] = s
	return s, nil
}

// bnLiveUnits returns the units of the sale in pending_payment and paid
// orders, less units returned, summed over the shards, straight from MySQL
// (the shards are read one after the other: see scLiveUnits).
func bnLiveUnits(ctx context.Context, e *env, saleID string) (int, error) {
	s, err := e.bnSchema(ctx)
	if err != nil {
		return 0, err
	}
	live := "o.status IN ('pending_payment', 'paid')"
	minus := func(col string, alias string) string {
		if col == "" {
			return ""
		}
		return " - COALESCE(" + alias + ".`" + col + "`, 0)"
	}
	var queries []string
	if s.items == "" {
		queries = append(queries, "SELECT COALESCE(SUM(o.quantity"+minus(s.ordersReturned, "o")+"), 0) FROM orders o WHERE o.sale_id = ? AND "+live)
	} else {
		queries = append(queries,
			"SELECT COALESCE(SUM(i.quantity"+minus(s.itemsReturned, "i")+"), 0) FROM `"+s.items+"` i JOIN orders o ON o.order_id = i.order_id WHERE i.sale_id = ? AND "+live,
			"SELECT COALESCE(SUM(o.quantity"+minus(s.ordersReturned, "o")+"), 0) FROM orders o WHERE o.sale_id = ? AND "+live+
				" AND NOT EXISTS (SELECT 1 FROM `"+s.items+"` i WHERE i.order_id = o.order_id)")
	}
	if s.returns != "" && s.itemsReturned == "" && s.ordersReturned == "" {
		queries = append(queries, "SELECT -COALESCE(SUM(r.quantity), 0) FROM `"+s.returns+"` r JOIN orders o ON o.order_id = r.order_id WHERE r.sale_id = ? AND "+live)
	}
	total := 0
	for i := range e.ShardDBs {
		for _, q := range queries {
			var n int
			if err := e.shard(i).QueryRowContext(ctx, q, saleID).Scan(&n); err != nil {
				return 0, fmt.Errorf("shard %d: %s: %w", i, q, err)
			}
			total += n
		}
	}
	return total, nil
}

func bnMustLiveUnits(t *testing.T, e *env, saleID string) int {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	n, err := bnLiveUnits(ctx, e, saleID)
	if err != nil {
		t.Fatalf("live units of %s in MySQL: %v", saleID, err)
	}
	return n
}

// ---- a crowd on two sales ----

// bnSale is one of the crowd's sales.
type bnSale struct {
	ID    string
	Stock int
	Price int64
}

// bnRef is an accepted ticket and what it bought: "bundle" (one unit of each
// sale), or the id of the one sale.
type bnRef struct {
	ticketRef
	Kind string
}

// bnCrowd is users buying a bundle of one unit of A and one of B, and others
// buying one unit of A or of B alone, arriving evenly over a spread of time,
// each once. Transport errors and 503 are retried for retryFor (the ingress
// keeps running in these tests, so this is rare).
type bnCrowd struct {
	t        *testing.T
	e        *env
	c        *client
	A, B     bnSale
	retryFor time.Duration

	wg       sync.WaitGroup
	buyers   int          // how many buyers start
	finished atomic.Int64 // buyers with their final answer
	mu       sync.Mutex
	refs     []bnRef
	seen     map[string]string
	ta       *tally
}

const bnBundle = "bundle"

func newBnCrowd(t *testing.T, e *env, c *client, stockA, stockB int) *bnCrowd {
	t.Helper()
	return newBnCrowdOf(t, e, c, openSale(stockA, 1, 1100), openSale(stockB, 1, 700))
}

// newBnCrowdOf creates the crowd's sales A and B as specified (a test that
// needs them in given Redis slots picks their ids).
func newBnCrowdOf(t *testing.T, e *env, c *client, sa, sb saleSpec) *bnCrowd {
	t.Helper()
	cr := &bnCrowd{t: t, e: e, c: c, retryFor: 60 * time.Second, seen: map[string]string{}, ta: newTally()}
	cr.A = bnSale{ID: c.createSale(t, sa), Stock: sa.Stock, Price: sa.PriceCents}
	cr.B = bnSale{ID: c.createSale(t, sb), Stock: sb.Stock, Price: sb.PriceCents}
	return cr
}

func (cr *bnCrowd) bundleWant() bnWant {
	return bnWant{units: map[string]int{cr.A.ID: 1, cr.B.ID: 1}, prices: map[string]int64{cr.A.ID: cr.A.Price, cr.B.ID: cr.B.Price}}
}

// start lets bundles bundle-buyers and singles buyers of each sale alone
// arrive, interleaved, over spread; it returns at once.
func (cr *bnCrowd) start(prefix string, bundles, singles int, spread time.Duration) {
	type buyer struct{ user, kind string }
	var all []buyer
	for i := 0; i < max(bundles, singles); i++ {
		if i < bundles {
			all = append(all, buyer{fmt.Sprintf("%s-b-%05d", prefix, i), bnBundle})
		}
		if i < singles {
			all = append(all, buyer{fmt.Sprintf("%s-a-%05d", prefix, i), cr.A.ID})
			all = append(all, buyer{fmt.Sprintf("%s-s-%05d", prefix, i), cr.B.ID})
		}
	}
	cr.wg.Add(len(all))
	cr.buyers += len(all)
	go func() {
		start := time.Now()
		for i, b := range all {
			if d := time.Until(start.Add(spread * time.Duration(i) / time.Duration(len(all)))); d > 0 {
				time.Sleep(d) // pacing the arrivals
			}
			go cr.buy(b.user, b.kind)
		}
	}()
}

func (cr *bnCrowd) buy(u, kind string) {
	defer cr.wg.Done()
	defer cr.finished.Add(1)
	// A user retrying with backoff (a load to drive, not a wait for an
	// effect): not through poll, whose pace is fixed.
	deadline := time.Now().Add(cr.retryFor)
	wait := 50 * time.Millisecond
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		var r reply
		var err error
		if kind == bnBundle {
			r, err = cr.c.buyBundle(ctx, u, bnItem{cr.A.ID, 1}, bnItem{cr.B.ID, 1})
		} else {
			r, err = cr.c.purchase(ctx, kind, u, 1)
		}
		cancel()
		if (err != nil || r.Status == http.StatusServiceUnavailable) && time.Now().Before(deadline) {
			time.Sleep(wait) // the user's retry pace
			wait = min(2*wait, time.Second)
			continue
		}
		k := outcome(r, err)
		if kind == bnBundle {
			k = "bundle " + k
		} else {
			k = "single " + k
		}
		cr.ta.add(k, fmt.Sprintf("%s: %s %v", u, r, err))
		if err != nil || r.Status != http.StatusAccepted {
			return
		}
		var a purchaseAnswer
		if r.decode(&a) != nil || a.TicketID == "" || a.Status != "queued" {
			cr.t.Errorf("user %s: 202 %s, want a ticket_id and status queued", u, r)
			return
		}
		cr.mu.Lock()
		if other, dup := cr.seen[a.TicketID]; dup {
			cr.t.Errorf("ticket %s given to both %s and %s", a.TicketID, other, u)
		} else {
			cr.seen[a.TicketID] = u
			cr.refs = append(cr.refs, bnRef{ticketRef{User: u, TicketID: a.TicketID}, kind})
		}
		cr.mu.Unlock()
		return
	}
}

func (cr *bnCrowd) snapshot() []bnRef {
	cr.mu.Lock()
	defer cr.mu.Unlock()
	return append([]bnRef(nil), cr.refs...)
}

func (cr *bnCrowd) accepted() int {
	cr.mu.Lock()
	defer cr.mu.Unlock()
	return len(cr.refs)
}

// view reads a sale view, or reports false.
func (cr *bnCrowd) view(id string) (saleView, bool) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	r, err := cr.c.send(ctx, http.MethodGet, pathSale(id), nil, nil)
	var v saleView
	if err != nil || r.Status != http.StatusOK || r.decode(&v) != nil {
		return v, false
	}
	return v, true
}

// bnWatch checks, every ~150 ms while the crowd buys, for each sale: the
// sale view balanced (available+held+sold == total == stock, no counter below
// zero); units in pending_payment + paid orders in MySQL within stock; and,
// a few per poll in turn, that bundle tickets with an order hold both items
// (GET /orders/{id}) and sold_out/failed ones have no order.
type bnWatch struct {
	cr    *bnCrowd
	stop  chan struct{}
	done  chan struct{}
	mu    sync.Mutex
	polls int
	bad   []string
	nBad  int
	next  int
}

func (cr *bnCrowd) watch() *bnWatch {
	w := &bnWatch{cr: cr, stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(w.done)
		for {
			w.poll()
			select {
			case <-w.stop:
				return
			case <-time.After(150 * time.Millisecond): // the watch's pace
			}
		}
	}()
	return w
}

func (w *bnWatch) breach(format string, args ...any) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.nBad++
	if len(w.bad) < 10 {
		w.bad = append(w.bad, fmt.Sprintf("poll %d: ", w.polls)+fmt.Sprintf(format, args...))
	}
}

func (w *bnWatch) poll() {
	cr := w.cr
	w.mu.Lock()
	w.polls++
	w.mu.Unlock()
	for _, s := range []bnSale{cr.A, cr.B} {
		if v, ok := cr.view(s.ID); ok {
			st := v.Stock
			if st.Available+st.Held+st.Sold != st.Total || st.Total != s.Stock || st.Available < 0 || st.Held < 0 || st.Sold < 0 {
				w.breach("sale %s view unbalanced: %+v (stock %d)", s.ID, st, s.Stock)
			}
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		n, err := bnLiveUnits(ctx, cr.e, s.ID)
		cancel()
		if err == nil && n > s.Stock {
			w.breach("oversell in MySQL: sale %s has %d units in pending_payment+paid orders, stock %d", s.ID, n, s.Stock)
		}
	}
	refs := cr.snapshot()
	var bundles []bnRef
	for _, r := range refs {
		if r.Kind == bnBundle {
			bundles = append(bundles, r)
		}
	}
	if len(bundles) == 0 {
		return
	}
	want := cr.bundleWant()
	for k := 0; k < min(8, len(bundles)); k++ {
		ref := bundles[(w.next+k)%len(bundles)]
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		r, err := cr.c.send(ctx, http.MethodGet, pathTicket(ref.TicketID), user(ref.User), nil)
		var tv bnTicketView
		if err != nil || r.Status != http.StatusOK || r.decode(&tv) != nil {
			cancel()
			continue
		}
		switch tv.Status {
		case "pending_payment", "paid":
			r, err = cr.c.send(ctx, http.MethodGet, pathOrder(tv.OrderID), user(ref.User), nil)
			var ov bnOrderView
			if err == nil && r.Status == http.StatusOK && r.decode(&ov) == nil {
				for _, b := range checkItems("bundle order "+tv.OrderID, ov.Items, want, nil) {
					w.breach("%s", b)
				}
			} else if err == nil {
				w.breach("bundle ticket %s is %s but its order %q answers %s", ref.TicketID, tv.Status, tv.OrderID, r)
			}
		case "sold_out", "failed":
			if tv.OrderID != "" {
				w.breach("bundle ticket %s is %s with order %s", ref.TicketID, tv.Status, tv.OrderID)
			}
		}
		cancel()
	}
	w.next += 8
}

// end stops the watch and fails the test on every breach it saw.
func (w *bnWatch) end(t *testing.T) {
	t.Helper()
	close(w.stop)
	<-w.done
	w.mu.Lock()
	defer w.mu.Unlock()
	t.Logf("watch: %d polls, %d breaches", w.polls, w.nBad)
	for _, b := range w.bad {
		t.Errorf("during the run: %s", b)
	}
	if w.nBad > len(w.bad) {
		t.Errorf("... %d breaches in all", w.nBad)
	}
	if w.polls < 3 {
		t.Errorf("the watch polled only %d times: the run was not watched", w.polls)
	}
}

// settle waits for every buyer and every accepted ticket to be final, then
// checks the outcome against contract section 4 and issue 14:
//   - a bundle ticket is pending_payment with one order holding one unit of
//     each sale (items, amounts, no sale_id/quantity), or sold_out/failed
//     with no order; a single ticket's order is its own;
//   - per sale, the units of the pending tickets (single + bundle) never
//     exceed stock, and once quiet the sale view is exactly
//     {available: stock - units, held: units, sold: 0}, MySQL holds the same
//     units, and `flashsale reconcile` exits 0 agreeing on it.
//
// It returns the final ticket views.
func (cr *bnCrowd) settle(timeout time.Duration) map[string]ticketView {
	t := cr.t
	t.Helper()
	cr.wg.Wait()
	refs := cr.snapshot()
	t.Logf("answers: %s", cr.ta)
	cr.ta.only(t, "bundle 202", "bundle 409 sold_out", "single 202", "single 409 sold_out")
	plain := make([]ticketRef, len(refs))
	for i, r := range refs {
		plain[i] = r.ticketRef
	}
	final := cr.c.awaitFinal(t, plain, timeout)

	var bundleRefs []ticketRef
	for _, r := range refs {
		if r.Kind == bnBundle {
			bundleRefs = append(bundleRefs, r.ticketRef)
		}
	}
	bviews, problems := readAll[ticketRef, bnTicketView](cr.c, bundleRefs, func(r ticketRef) (string, string, string, string) {
		return "ticket", r.TicketID, pathTicket(r.TicketID), r.User
	})
	if len(problems) > 0 {
		t.Errorf("reading bundle tickets: %v", problems)
	}
	var bundleOrders []placedOrder
	units := map[string]int{cr.A.ID: 0, cr.B.ID: 0}
	statuses := map[string]int{}
	pr := newProblems(t)
	for _, r := range refs {
		v := final[r.TicketID]
		statuses[r.Kind+" "+v.Status]++
		switch v.Status {
		case "pending_payment":
			if v.OrderID == "" {
				pr.errorf("ticket %s (%s) is pending_payment without an order", r.TicketID, r.Kind)
				continue
			}
			if r.Kind == bnBundle {
				units[cr.A.ID]++
				units[cr.B.ID]++
				bundleOrders = append(bundleOrders, placedOrder{User: r.User, TicketID: r.TicketID, OrderID: v.OrderID})
				if bv, ok := bviews[r.TicketID]; ok {
					if bv.SaleID != nil || bv.Quantity != nil {
						pr.errorf("bundle ticket %s carries sale_id %q / quantity %v, want both absent", r.TicketID, strp(bv.SaleID), bv.Quantity)
					}
					got := map[string]int{}
					for _, it := range bv.Items {
						got[it.SaleID] += it.Quantity
					}
					if len(bv.Items) != 2 || got[cr.A.ID] != 1 || got[cr.B.ID] != 1 {
						pr.errorf("bundle ticket %s: items %+v, want one unit of %s and one of %s", r.TicketID, bv.Items, cr.A.ID, cr.B.ID)
					}
				}
			} else {
				units[r.Kind]++
				if v.OrderID != r.TicketID {
					pr.errorf("single ticket %s has order %s, want the ticket's id", r.TicketID, v.OrderID)
				}
			}
		case "sold_out", "failed":
			if v.OrderID != "" {
				pr.errorf("ticket %s (%s) is %s with order %s", r.TicketID, r.Kind, v.Status, v.OrderID)
			}
		default:
			pr.errorf("ticket %s (%s) ended %q, want pending_payment, sold_out or failed", r.TicketID, r.Kind, v.Status)
		}
	}
	pr.done()
	t.Logf("final tickets: %v", statuses)
	if statuses["bundle pending_payment"] == 0 {
		t.Errorf("precondition: no bundle order was made")
	}
	if statuses[cr.A.ID+" pending_payment"]+statuses[cr.B.ID+" pending_payment"] == 0 {
		t.Errorf("precondition: no single order was made")
	}

	// Every bundle order holds both items.
	want := cr.bundleWant()
	orders, problems := readAll[placedOrder, bnOrderView](cr.c, bundleOrders, func(o placedOrder) (string, string, string, string) {
		return "order", o.OrderID, pathOrder(o.OrderID), o.User
	})
	if len(problems) > 0 {
		t.Errorf("reading bundle orders: %v", problems)
	}
	pr = newProblems(t)
	for _, o := range bundleOrders {
		v, ok := orders[o.OrderID]
		if !ok {
			continue
		}
		if v.Status != "pending_payment" || v.UserID != o.User {
			pr.errorf("bundle order %s: status %q user %q, want pending_payment of %s", o.OrderID, v.Status, v.UserID, o.User)
		}
		for _, b := range checkOrderView("bundle order "+o.OrderID, v, want, nil) {
			pr.errorf("%s", b)
		}
	}
	pr.done()

	for _, s := range []bnSale{cr.A, cr.B} {
		n := units[s.ID]
		if n > s.Stock {
			t.Errorf("oversell: sale %s has %d units in pending tickets' orders, stock %d", s.ID, n, s.Stock)
		}
		wantStock := stockView{Total: s.Stock, Available: s.Stock - n, Held: n}
		cr.c.awaitStock(t, s.ID, wantStock, 30*time.Second)
		if m := bnMustLiveUnits(t, cr.e, s.ID); m != n {
			schema, _ := cr.e.bnSchema(context.Background())
			t.Errorf("sale %s: MySQL holds %d units in pending_payment+paid orders (schema: %s), the tickets %d", s.ID, m, schema, n)
		}
		fxReconcileAgrees(t, cr.e, s.ID, wantStock)
	}
	return final
}

// bnReconcileExits0 asserts that `flashsale reconcile` exits 0.
func bnReconcileExits0(t *testing.T, e *env) {
	t.Helper()
	if code, out := fxReconcile(t, e); code != 0 {
		t.Errorf("flashsale reconcile exited %d, want 0:\n%s", code, tail(out, 40))
	}
}

// payAndCancelBundles pays n pending bundle orders (one callback for the
// total) and cancels n others, then checks that each sale moved exactly
// those units: held down by 2n, sold up by n, available up by n; MySQL and
// reconcile agree.
func (cr *bnCrowd) payAndCancelBundles(final map[string]ticketView, n int) {
	t := cr.t
	t.Helper()
	var pending []bnRef
	for _, r := range cr.snapshot() {
		if r.Kind == bnBundle && final[r.TicketID].Status == "pending_payment" {
			pending = append(pending, r)
		}
	}
	if len(pending) < 2*n {
		t.Fatalf("only %d pending bundle orders, want %d to pay and cancel", len(pending), 2*n)
	}
	before := map[string]stockView{cr.A.ID: cr.c.sale(t, cr.A.ID).Stock, cr.B.ID: cr.c.sale(t, cr.B.ID).Stock}
	total := cr.bundleWant().total()
	for i, r := range pending[:2*n] {
		orderID := final[r.TicketID].OrderID
		if i < n {
			checkPayAnswer(t, "payment of bundle "+orderID, cr.c.bnPay(t, cr.e.PaymentSecret, "pay-"+orderID, orderID, total), orderID, "paid")
			continue
		}
		rep := cr.c.must(t, http.MethodPost, pathOrder(orderID)+"/cancel", user(r.User), nil)
		var v bnOrderView
		if rep.Status != http.StatusOK || rep.decode(&v) != nil || v.Status != "cancelled" {
			t.Errorf("cancel bundle %s: %s", orderID, rep)
		}
	}
	for _, s := range []bnSale{cr.A, cr.B} {
		b := before[s.ID]
		want := stockView{Total: s.Stock, Available: b.Available + n, Held: b.Held - 2*n, Sold: b.Sold + n}
		cr.c.awaitStock(t, s.ID, want, 15*time.Second)
		if m := bnMustLiveUnits(t, cr.e, s.ID); m != want.Held+want.Sold {
			t.Errorf("sale %s: MySQL holds %d live units, the view %d", s.ID, m, want.Held+want.Sold)
		}
		fxReconcileAgrees(t, cr.e, s.ID, want)
	}
}
