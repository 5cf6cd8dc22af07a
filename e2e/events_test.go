package e2e

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
)

// The contract's event types (section 3).
const (
	evCreated   = "order.created"
	evPaid      = "order.paid"
	evExpired   = "order.expired"
	evCancelled = "order.cancelled"
	evRefund    = "order.refund_required"
)

var eventTypes = map[string]bool{evCreated: true, evPaid: true, evExpired: true, evCancelled: true, evRefund: true}

// event is the contract's event body.
type event struct {
	EventID    string     `json:"event_id"`
	Type       string     `json:"type"`
	OccurredAt time.Time  `json:"occurred_at"`
	Order      eventOrder `json:"order"`
}

type eventOrder struct {
	OrderID     string  `json:"order_id"`
	SaleID      string  `json:"sale_id"`
	UserID      string  `json:"user_id"`
	Quantity    int     `json:"quantity"`
	AmountCents int64   `json:"amount_cents"`
	Status      string  `json:"status"`
	PaymentID   *string `json:"payment_id"`
}

func (o eventOrder) paymentID() string {
	if o.PaymentID == nil {
		return ""
	}
	return *o.PaymentID
}

// received is one delivery of an event, in the order the sink got it.
type received struct {
	Seq        int
	RoutingKey string
	MessageID  string
	Event      event
}

// eventSink consumes every event of a deployment: an exclusive, auto-delete
// queue of its own bound to <ns>.events with "#". Create it before the traffic
// whose events it must see. It checks every delivery against the contract
// (message_id = event_id, routing key = type, JSON, persistent, a duplicate
// carries the same event) and keeps them all, in arrival order.
type eventSink struct {
	t    *testing.T
	conn *amqp.Connection

	mu       sync.Mutex
	all      []received
	first    map[string]received // event id -> first delivery
	problems []string
	waiters  []countWaiter
	lost     error // the consumer stopped before the test ended
}

type countWaiter struct {
	n  int
	ch chan struct{}
}

// newEventSink starts consuming the events of e. The exchange is declared here
// too (topic, durable: the arguments the processes use) so that the binding
// exists before any process ran.
func newEventSink(t *testing.T, e *env) *eventSink {
	t.Helper()
	return newEventSinkAt(t, e, amqpURL())
}

// newEventSinkAt is newEventSink on the broker at url (one node of a cluster).
func newEventSinkAt(t *testing.T, e *env, url string) *eventSink {
	t.Helper()
	conn, err := amqp.DialConfig(url, amqp.Config{Dial: amqp.DefaultDial(5 * time.Second)})
	if err != nil {
		t.Fatalf("event sink: dial: %v", err)
	}
	ch, err := conn.Channel()
	if err != nil {
		conn.Close()
		t.Fatalf("event sink: channel: %v", err)
	}
	exchange := e.NS + ".events"
	if err := ch.ExchangeDeclare(exchange, amqp.ExchangeTopic, true, false, false, false, nil); err != nil {
		conn.Close()
		t.Fatalf("event sink: declare exchange %s: %v", exchange, err)
	}
	q, err := ch.QueueDeclare("", false, true, true, false, nil)
	if err != nil {
		conn.Close()
		t.Fatalf("event sink: declare queue: %v", err)
	}
	if err := ch.QueueBind(q.Name, "#", exchange, false, nil); err != nil {
		conn.Close()
		t.Fatalf("event sink: bind: %v", err)
	}
	deliveries, err := ch.Consume(q.Name, "e2e-sink", true, true, false, false, nil)
	if err != nil {
		conn.Close()
		t.Fatalf("event sink: consume: %v", err)
	}
	s := &eventSink{t: t, conn: conn, first: map[string]received{}}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for d := range deliveries {
			s.add(d)
		}
		s.mu.Lock()
		if s.lost == nil {
			s.lost = errors.New("the sink's deliveries stopped (connection or channel closed)")
		}
		s.mu.Unlock()
	}()
	t.Cleanup(func() {
		s.mu.Lock()
		if s.lost == nil {
			s.lost = errors.New("closed")
		}
		s.mu.Unlock()
		conn.Close()
		<-done
	})
	return s
}

func (s *eventSink) add(d amqp.Delivery) {
	s.mu.Lock()
	defer s.mu.Unlock()
	problem := func(format string, args ...any) {
		if len(s.problems) < 20 {
			s.problems = append(s.problems, fmt.Sprintf(format, args...))
		}
	}
	var ev event
	if err := json.Unmarshal(d.Body, &ev); err != nil {
		problem("delivery with key %q: body is not JSON: %v: %.200s", d.RoutingKey, err, d.Body)
		return
	}
	r := received{Seq: len(s.all), RoutingKey: d.RoutingKey, MessageID: d.MessageId, Event: ev}
	s.all = append(s.all, r)
	switch {
	case ev.EventID == "":
		problem("event without event_id: %.300s", d.Body)
	case d.MessageId != ev.EventID:
		problem("event %s: AMQP message_id %q, want the event_id", ev.EventID, d.MessageId)
	}
	if !eventTypes[ev.Type] {
		problem("event %s: unknown type %q", ev.EventID, ev.Type)
	}
	if d.RoutingKey != ev.Type {
		problem("event %s: routing key %q, want the type %q", ev.EventID, d.RoutingKey, ev.Type)
	}
	if d.ContentType != "application/json" {
		problem("event %s: content_type %q, want application/json", ev.EventID, d.ContentType)
	}
	if d.DeliveryMode != amqp.Persistent {
		problem("event %s: delivery mode %d, want persistent (2)", ev.EventID, d.DeliveryMode)
	}
	if ev.OccurredAt.IsZero() {
		problem("event %s: no occurred_at", ev.EventID)
	}
	o := ev.Order
	if o.OrderID == "" || o.SaleID == "" || o.UserID == "" || o.Quantity < 1 {
		problem("event %s: incomplete order %+v", ev.EventID, o)
	}
	want := map[string]string{evCreated: "pending_payment", evPaid: "paid", evExpired: "expired", evCancelled: "cancelled"}
	if w, ok := want[ev.Type]; ok && o.Status != w {
		problem("event %s (%s) of order %s: order status %q, want %q", ev.EventID, ev.Type, o.OrderID, o.Status, w)
	}
	if (ev.Type == evPaid || ev.Type == evRefund) && o.paymentID() == "" {
		problem("event %s (%s) of order %s: no payment_id", ev.EventID, ev.Type, o.OrderID)
	}
	if prev, dup := s.first[ev.EventID]; dup {
		p := prev.Event
		if p.Type != ev.Type || p.Order.OrderID != o.OrderID || p.Order.Status != o.Status || p.Order.paymentID() != o.paymentID() {
			problem("event id %s delivered twice with different contents: %+v and %+v", ev.EventID, p, ev)
		}
	} else {
		s.first[ev.EventID] = r
		n := len(s.first)
		kept := s.waiters[:0]
		for _, w := range s.waiters {
			if n >= w.n {
				close(w.ch)
			} else {
				kept = append(kept, w)
			}
		}
		s.waiters = kept
	}
}

// verify fails the test for every malformed delivery and if the consumer died.
func (s *eventSink) verify(t *testing.T) {
	t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, p := range s.problems {
		t.Errorf("event sink: %s", p)
	}
	if s.lost != nil {
		t.Errorf("event sink: %v", s.lost)
	}
}

// reached returns a channel closed once n distinct events arrived.
func (s *eventSink) reached(n int) <-chan struct{} {
	s.mu.Lock()
	defer s.mu.Unlock()
	ch := make(chan struct{})
	if len(s.first) >= n {
		close(ch)
		return ch
	}
	s.waiters = append(s.waiters, countWaiter{n: n, ch: ch})
	return ch
}

// checkOrders waits until every outbox row of the orders ids arrived, then
// checks the events against the outbox (and nothing else arrived) and the
// sink's own invariants, and logs the counts.
func (s *eventSink) checkOrders(t *testing.T, e *env, ids map[string]bool) {
	t.Helper()
	rows := s.awaitOutboxReceived(t, e, ids, time.Minute)
	s.checkEventsAgainstOutbox(t, rows, ids)
	s.verify(t)
	deliveries, distinct := s.counts()
	t.Logf("events: %d outbox rows of %d orders, %d deliveries of %d distinct events", len(rows), len(ids), deliveries, distinct)
}

// counts returns the number of deliveries and of distinct event ids.
func (s *eventSink) counts() (deliveries, distinct int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.all), len(s.first)
}

// has reports whether the event id was received.
func (s *eventSink) has(id string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	_, ok := s.first[id]
	return ok
}

// firsts returns the first delivery of every event id, in arrival order.
func (s *eventSink) firsts() []received {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]received, 0, len(s.first))
	for _, r := range s.first {
		out = append(out, r)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Seq < out[j].Seq })
	return out
}

// orderEvents is what the sink saw of one order: its distinct events in the
// order they first arrived.
type orderEvents []event

// ids returns the distinct event ids of the given type.
func (oe orderEvents) ids(typ string) []string {
	var out []string
	for _, ev := range oe {
		if ev.Type == typ {
			out = append(out, ev.EventID)
		}
	}
	return out
}

func (oe orderEvents) of(typ string) []event {
	var out []event
	for _, ev := range oe {
		if ev.Type == typ {
			out = append(out, ev)
		}
	}
	return out
}

func (oe orderEvents) String() string {
	parts := make([]string, len(oe))
	for i, ev := range oe {
		parts[i] = ev.Type + "(" + ev.EventID + ")"
	}
	return "[" + strings.Join(parts, " ") + "]"
}

// byOrder groups the distinct events by order id.
func (s *eventSink) byOrder() map[string]orderEvents {
	out := map[string]orderEvents{}
	for _, r := range s.firsts() {
		out[r.Event.Order.OrderID] = append(out[r.Event.Order.OrderID], r.Event)
	}
	return out
}

// outboxRow is one row of a shard's outbox table.
type outboxRow struct {
	Shard   int
	ID      int64
	EventID string
	OrderID string
	Type    string
	Sent    bool
}

// outbox reads every outbox row of every shard.
func (e *env) outbox(t *testing.T) []outboxRow {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var out []outboxRow
	for i := range e.ShardDBs {
		rows, err := e.shard(i).QueryContext(ctx,
			"SELECT id, event_id, order_id, event_type, sent_at IS NOT NULL FROM outbox ORDER BY id")
		if err != nil {
			t.Fatalf("query outbox of shard %d: %v", i, err)
		}
		for rows.Next() {
			r := outboxRow{Shard: i}
			if err := rows.Scan(&r.ID, &r.EventID, &r.OrderID, &r.Type, &r.Sent); err != nil {
				t.Fatalf("scan outbox of shard %d: %v", i, err)
			}
			out = append(out, r)
		}
		if err := rows.Err(); err != nil {
			t.Fatalf("outbox of shard %d: %v", i, err)
		}
		rows.Close()
	}
	return out
}

// outboxOf returns the outbox rows of the given orders, by order id.
func outboxOf(rows []outboxRow, orderIDs map[string]bool) map[string][]outboxRow {
	out := map[string][]outboxRow{}
	for _, r := range rows {
		if orderIDs[r.OrderID] {
			out[r.OrderID] = append(out[r.OrderID], r)
		}
	}
	return out
}

// awaitOutboxReceived waits until the sink received every outbox row of the
// given orders (every row when orderIDs is nil), and returns the rows. Rows are
// re-read while waiting, so that transitions committed meanwhile count too.
func (s *eventSink) awaitOutboxReceived(t *testing.T, e *env, orderIDs map[string]bool, timeout time.Duration) []outboxRow {
	t.Helper()
	var rows []outboxRow
	eventually(t, timeout, "every outbox row is received as an event", func() (bool, string) {
		rows = rows[:0]
		var missing []outboxRow
		for _, r := range e.outbox(t) {
			if orderIDs != nil && !orderIDs[r.OrderID] {
				continue
			}
			rows = append(rows, r)
			if !s.has(r.EventID) {
				missing = append(missing, r)
			}
		}
		if len(missing) == 0 {
			return true, ""
		}
		byType := map[string]int{}
		for _, r := range missing {
			byType[r.Type]++
		}
		return false, fmt.Sprintf("%d of %d outbox rows not received (%v), e.g. %+v", len(missing), len(rows), byType, missing[0])
	})
	return rows
}

// checkEventsAgainstOutbox asserts, for the given orders, that the sink's
// events and the outbox rows are the same set (nothing published that did not
// commit, nothing committed that was not published) with the same type and
// order per event id. Call it after awaitOutboxReceived.
func (s *eventSink) checkEventsAgainstOutbox(t *testing.T, rows []outboxRow, orderIDs map[string]bool) {
	t.Helper()
	inOutbox := map[string]outboxRow{}
	for _, r := range rows {
		if orderIDs[r.OrderID] {
			inOutbox[r.EventID] = r
		}
	}
	bad := 0
	for _, r := range s.firsts() {
		ev := r.Event
		if !orderIDs[ev.Order.OrderID] {
			continue
		}
		row, ok := inOutbox[ev.EventID]
		switch {
		case !ok:
			bad++
			if bad <= 5 {
				t.Errorf("event %s (%s of order %s) received but no outbox row has that event_id: published without a committed transition",
					ev.EventID, ev.Type, ev.Order.OrderID)
			}
		case row.Type != ev.Type || row.OrderID != ev.Order.OrderID:
			bad++
			if bad <= 5 {
				t.Errorf("event %s received as %s of order %s; its outbox row is %s of order %s",
					ev.EventID, ev.Type, ev.Order.OrderID, row.Type, row.OrderID)
			}
		}
	}
	if bad > 5 {
		t.Errorf("... %d events disagree with the outbox in all", bad)
	}
}

// brokerConn opens a connection for the test's own broker operations.
func brokerConn(t *testing.T) *amqp.Connection {
	t.Helper()
	conn, err := amqp.DialConfig(amqpURL(), amqp.Config{Dial: amqp.DefaultDial(5 * time.Second)})
	if err != nil {
		t.Fatalf("rabbitmq: %v", err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}

// purgeQueue purges the queue if it exists and returns how many messages it
// removed (0, false when there is no such queue). Safe for concurrent use.
func purgeQueue(conn *amqp.Connection, name string) (int, bool, error) {
	ch, err := conn.Channel()
	if err != nil {
		return 0, false, err
	}
	defer ch.Close()
	n, err := ch.QueuePurge(name, false)
	var ae *amqp.Error
	if errors.As(err, &ae) && ae.Code == amqp.NotFound {
		return 0, false, nil
	}
	if err != nil {
		return 0, false, err
	}
	return n, true, nil
}

// placedOrder is an order a test made through the API.
type placedOrder struct {
	User        string
	TicketID    string
	OrderID     string
	PayBy       time.Time
	AmountCents int64
	Quantity    int
}

// placeOrders has every user buy one unit of the sale (all at once) and
// waits for their orders. Every purchase must be accepted and make an order
// (the caller gives enough stock). With short payment windows an order may be
// expired already by the time it is read.
func (c *client) placeOrders(t *testing.T, saleID string, users []string) []placedOrder {
	t.Helper()
	res := c.burst(saleID, users, true)
	refs, ta := accepted(t, res)
	ta.only(t, "202")
	if len(refs) != len(users) {
		t.Fatalf("%d of %d purchases accepted (%s); the test needs all", len(refs), len(users), ta)
	}
	return c.ordersOf(t, saleID, refs)
}

// ordersOf waits for the tickets of the sale to be final and returns their
// orders, read through the API; every ticket must have made one.
func (c *client) ordersOf(t *testing.T, saleID string, refs []ticketRef) []placedOrder {
	t.Helper()
	final := c.awaitFinal(t, refs, 90*time.Second)
	var out []placedOrder
	for _, ref := range refs {
		v := final[ref.TicketID]
		if v.OrderID == "" || (v.Status != "pending_payment" && v.Status != "expired") {
			t.Fatalf("ticket %s of %s ended %+v, want an order (pending_payment)", ref.TicketID, ref.User, v)
		}
		out = append(out, placedOrder{User: ref.User, TicketID: ref.TicketID, OrderID: v.OrderID, Quantity: v.Quantity})
	}
	views, problems := c.orderStates(out)
	for i := range out {
		o := &out[i]
		v, ok := views[o.OrderID]
		if !ok {
			t.Fatalf("cannot read order %s of %s: %v", o.OrderID, o.User, problems)
		}
		if v.PayBy == nil {
			t.Fatalf("order %s has no pay_by: %+v", o.OrderID, v)
		}
		if v.OrderID != o.OrderID || v.UserID != o.User || v.SaleID != saleID {
			t.Fatalf("order %s read as %s: %+v", o.OrderID, o.User, v)
		}
		o.PayBy, o.AmountCents = *v.PayBy, v.AmountCents
	}
	return out
}

// orderStates reads every order once, as its owner; see readAll.
func (c *client) orderStates(orders []placedOrder) (map[string]orderView, []string) {
	return readAll[placedOrder, orderView](c, orders, func(o placedOrder) (string, string, string, string) {
		return "order", o.OrderID, pathOrder(o.OrderID), o.User
	})
}

// awaitOrders polls the orders until done holds for every one and returns
// their last views; at the deadline it fails the test with the statuses of
// those left.
func (c *client) awaitOrders(t *testing.T, orders []placedOrder, timeout time.Duration, what string, done func(orderView) bool) map[string]orderView {
	t.Helper()
	final, left, counts, problems := awaitViews(timeout, orders, c.orderStates, func(o placedOrder) string { return o.OrderID },
		func(_ placedOrder, v orderView, ok bool) bool { return ok && done(v) }, func(v orderView) string { return v.Status })
	if len(left) > 0 {
		t.Fatalf("%d of %d orders not %s after %s: %v; problems: %v; e.g. order %s (pay_by %s)",
			len(left), len(orders), what, timeout, counts, problems, left[0].OrderID, left[0].PayBy.Format(time.RFC3339Nano))
	}
	return final
}

// awaitStock polls the sale view until its stock is want.
func (c *client) awaitStock(t *testing.T, saleID string, want stockView, timeout time.Duration) {
	t.Helper()
	eventually(t, timeout, fmt.Sprintf("sale %s stock %+v", saleID, want), func() (bool, string) {
		got := c.sale(t, saleID).Stock
		return got == want, fmt.Sprintf("stock %+v", got)
	})
}

// cancelOrder sends POST /orders/{id}/cancel as the user.
func (c *client) cancelOrder(ctx context.Context, orderID, userID string) (reply, error) {
	return c.send(ctx, http.MethodPost, pathOrder(orderID)+"/cancel", user(userID), nil)
}

// idSet returns the order ids of the orders as a set.
func idSet(orders []placedOrder) map[string]bool {
	out := make(map[string]bool, len(orders))
	for _, o := range orders {
		out[o.OrderID] = true
	}
	return out
}

// latest returns the latest pay_by of the orders.
func latest(orders []placedOrder) time.Time {
	var m time.Time
	for _, o := range orders {
		if o.PayBy.After(m) {
			m = o.PayBy
		}
	}
	return m
}
