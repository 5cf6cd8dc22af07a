package worker

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/flashsale/flashsale"
	"github.com/flashsale/flashsale/mock"
)

// These tests drive the worker's saga with in-memory fakes of its small
// interfaces: what it holds, orders, records and releases, and in which order.
// The stores' own behaviour is tested against real Redis and MySQL in their
// packages and end to end.

// fakeStock holds units per sale and a state per (sale, ticket), like the hold
// scripts: idempotent per ticket, a released ticket never held again.
type fakeStock struct {
	mu        sync.Mutex
	available map[string]int
	holds     map[[2]string]flashsale.Hold
	log       []string       // "hold s", "release s", "resync s"
	failNext  map[string]int // op "release s" -> failures left

	onReassert func([]flashsale.Part)    // optional: sees every re-assert
	onPut      func([]*flashsale.Ticket) // optional: sees every ticket write
}

func newFakeStock(avail map[string]int) *fakeStock {
	return &fakeStock{available: avail, holds: map[[2]string]flashsale.Hold{}, failNext: map[string]int{}}
}

func (f *fakeStock) fail(op string) error {
	if f.failNext[op] > 0 {
		f.failNext[op]--
		return errors.New("fake: " + op + " failed")
	}
	return nil
}

func (f *fakeStock) Hold(_ context.Context, sales []*flashsale.Sale, reqs []*flashsale.PurchaseRequest) ([]flashsale.Hold, []error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	holds, errs := make([]flashsale.Hold, len(reqs)), make([]error, len(reqs))
	for i, r := range reqs {
		k := [2]string{sales[i].ID, r.TicketID}
		f.log = append(f.log, "hold "+k[0])
		if h, ok := f.holds[k]; ok {
			holds[i] = h
			continue
		}
		if f.available[k[0]] < r.Quantity {
			f.holds[k] = flashsale.Hold{Kind: flashsale.HoldSoldOut}
		} else {
			f.available[k[0]] -= r.Quantity
			f.holds[k] = flashsale.Hold{Kind: flashsale.HoldHeld, Quantity: r.Quantity}
		}
		holds[i] = f.holds[k]
	}
	return holds, errs
}

func (f *fakeStock) Reassert(_ context.Context, parts []flashsale.Part) ([]flashsale.Hold, []error) {
	if f.onReassert != nil {
		f.onReassert(parts)
	}
	return make([]flashsale.Hold, len(parts)), make([]error, len(parts))
}

func (f *fakeStock) Release(_ context.Context, p flashsale.Part) (flashsale.Hold, error) {
	saleID, ticketID := p.SaleID, p.TicketID
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.fail("release " + saleID); err != nil {
		return flashsale.Hold{}, err
	}
	f.log = append(f.log, "release "+saleID)
	k := [2]string{saleID, ticketID}
	h := f.holds[k]
	if h.Kind == flashsale.HoldHeld {
		f.available[saleID] += h.Quantity
	}
	if h.Kind == flashsale.HoldHeld || h.Kind == flashsale.HoldNone {
		f.holds[k] = flashsale.Hold{Kind: flashsale.HoldReleased}
	}
	return h, nil
}

func (f *fakeStock) PutTickets(_ context.Context, tickets ...*flashsale.Ticket) error {
	if f.onPut != nil {
		f.onPut(tickets)
	}
	return nil
}

func (f *fakeStock) Resync(_ context.Context, saleID string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.log = append(f.log, "resync "+saleID)
	return nil
}

// fakeOrders is the book of record: orders and decisions, one per ticket, the
// first one standing; soldOut makes the stock cap refuse every order.
type fakeOrders struct {
	mu        sync.Mutex
	orders    map[string]*flashsale.Order
	decisions map[string]flashsale.TicketStatus
	soldOut   bool
	stock     *fakeStock // to log decisions in order with the stock's calls
}

func newFakeOrders(stock *fakeStock) *fakeOrders {
	return &fakeOrders{orders: map[string]*flashsale.Order{}, decisions: map[string]flashsale.TicketStatus{}, stock: stock}
}

func (f *fakeOrders) ShardOf(string) int { return 0 }

func (f *fakeOrders) CreateOrders(_ context.Context, _ int, orders []*flashsale.Order) ([]flashsale.OrderResult, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := make([]flashsale.OrderResult, len(orders))
	for i, o := range orders {
		switch {
		case f.orders[o.ID] != nil:
			out[i] = flashsale.OrderResult{Outcome: flashsale.CreateExisted, Current: f.orders[o.ID]}
		case f.decisions[o.ID] != "":
			out[i] = flashsale.OrderResult{Outcome: flashsale.CreateDecided, Decision: f.decisions[o.ID]}
		case f.soldOut:
			out[i] = flashsale.OrderResult{Outcome: flashsale.CreateSoldOut}
		default:
			f.orders[o.ID] = o
			out[i] = flashsale.OrderResult{Outcome: flashsale.CreateNew, Current: o}
		}
	}
	return out, nil
}

func (f *fakeOrders) GetOrder(_ context.Context, _, id string) (*flashsale.Order, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if o := f.orders[id]; o != nil {
		return o, nil
	}
	return nil, flashsale.ErrNotFound
}

func (f *fakeOrders) GetTicket(ctx context.Context, user, id string) (*flashsale.Ticket, error) {
	if o, err := f.GetOrder(ctx, user, id); err == nil {
		return flashsale.TicketOf(o), nil
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if d := f.decisions[id]; d != "" {
		return &flashsale.Ticket{ID: id, UserID: user, Status: d}, nil
	}
	return nil, flashsale.ErrNotFound
}

func (f *fakeOrders) RecordOutcomes(_ context.Context, _ int, tickets []*flashsale.Ticket) (map[string]flashsale.TicketStatus, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	stand := map[string]flashsale.TicketStatus{}
	for _, t := range tickets {
		switch {
		case f.orders[t.ID] != nil:
			stand[t.ID] = flashsale.TicketPendingPayment
		case f.decisions[t.ID] == "":
			f.decisions[t.ID] = t.Status
		case f.decisions[t.ID] != t.Status:
			stand[t.ID] = f.decisions[t.ID]
		}
		f.stock.mu.Lock()
		f.stock.log = append(f.stock.log, "decide "+string(t.Status))
		f.stock.mu.Unlock()
	}
	return stand, nil
}

func (f *fakeOrders) GiveUp(ctx context.Context, t *flashsale.Ticket) (bool, error) {
	stand, err := f.RecordOutcomes(ctx, 0, []*flashsale.Ticket{t})
	return stand[t.ID] == flashsale.TicketPendingPayment, err
}

func newTestWorker(t *testing.T, stock *fakeStock, orders *fakeOrders, sales mock.Sales) *Worker {
	t.Helper()
	w, err := New(Config{Sales: sales, Stock: stock, Orders: orders,
		RetryMin: time.Millisecond, RetryMax: time.Millisecond, RetryBudget: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	return w
}

func twoSales() mock.Sales {
	return mock.Sales{
		"a": {ID: "a", Stock: 5, PriceCents: 100, PerUserLimit: 2, PaymentWindowSeconds: 60},
		"b": {ID: "b", Stock: 1, PriceCents: 30, PerUserLimit: 2, PaymentWindowSeconds: 30},
	}
}

func bundle(ticket, user string, qa, qb int) *flashsale.PurchaseRequest {
	return &flashsale.PurchaseRequest{TicketID: ticket, UserID: user, AdmittedAt: time.Now(),
		Items: []flashsale.Line{{SaleID: "a", Quantity: qa}, {SaleID: "b", Quantity: qb}}}
}

// A bundle whose lines are all held makes one order with every item, payable
// while the shorter of its sales' windows lasts.
func TestBundleAllHeldMakesOneOrder(t *testing.T) {
	stock := newFakeStock(map[string]int{"a": 5, "b": 1})
	orders := newFakeOrders(stock)
	w := newTestWorker(t, stock, orders, twoSales())
	m := mock.NewMessage(bundle("t1", "u1", 2, 1))
	w.HandlePurchases(context.Background(), mock.Messages(m))
	if m.Settled() != "ack" {
		t.Fatalf("message settled %q, want ack", m.Settled())
	}
	o := orders.orders["t1"]
	if o == nil || len(o.Items) != 2 || o.AmountCents != 230 || o.SaleID != "" {
		t.Fatalf("order %+v, want one order of both items, 230 cents", o)
	}
	if got := o.PayBy.Sub(o.CreatedAt); got != 30*time.Second {
		t.Errorf("pay_by %v after creation, want the shorter window, 30s", got)
	}
}

// A bundle with a line sold out makes no order: its decision is recorded, and
// only then are the lines it held released (the compensation).
func TestBundleLineSoldOutReleasesTheOthersAfterTheDecision(t *testing.T) {
	stock := newFakeStock(map[string]int{"a": 5, "b": 0})
	orders := newFakeOrders(stock)
	w := newTestWorker(t, stock, orders, twoSales())
	m := mock.NewMessage(bundle("t1", "u1", 1, 1))
	w.HandlePurchases(context.Background(), mock.Messages(m))
	if m.Settled() != "ack" || orders.orders["t1"] != nil || orders.decisions["t1"] != flashsale.TicketSoldOut {
		t.Fatalf("settled %q, order %v, decision %q; want ack, none, sold_out", m.Settled(), orders.orders["t1"], orders.decisions["t1"])
	}
	if stock.available["a"] != 5 {
		t.Errorf("sale a has %d available, want its 5 back", stock.available["a"])
	}
	want := []string{"hold a", "hold b", "decide sold_out", "release a"}
	if fmt.Sprint(stock.log) != fmt.Sprint(want) {
		t.Errorf("steps %v, want %v", stock.log, want)
	}
}

// The compensation fails once (Redis away): the message is tried again, finds
// the holds and the decision as they were, and completes the release; the
// ticket never makes an order.
func TestBundleCompensationCompletedByTheRetry(t *testing.T) {
	stock := newFakeStock(map[string]int{"a": 5, "b": 0})
	stock.failNext["release a"] = 1
	orders := newFakeOrders(stock)
	w := newTestWorker(t, stock, orders, twoSales())
	m := mock.NewMessage(bundle("t1", "u1", 1, 1))
	w.HandlePurchases(context.Background(), mock.Messages(m))
	if m.Settled() != "ack" || orders.orders["t1"] != nil || stock.available["a"] != 5 {
		t.Fatalf("settled %q, order %v, a available %d; want ack, no order, 5", m.Settled(), orders.orders["t1"], stock.available["a"])
	}
	if h := stock.holds[[2]string{"a", "t1"}]; h.Kind != flashsale.HoldReleased {
		t.Errorf("line a: %+v, want released", h)
	}
}

// MySQL's stock cap refuses a bundle Redis held: every line is released after
// the sold_out decision, and both sales are rebuilt in Redis.
func TestBundleRefusedByTheCapReleasesEveryLineAndResyncs(t *testing.T) {
	stock := newFakeStock(map[string]int{"a": 5, "b": 1})
	orders := newFakeOrders(stock)
	orders.soldOut = true
	w := newTestWorker(t, stock, orders, twoSales())
	m := mock.NewMessage(bundle("t1", "u1", 1, 1))
	w.HandlePurchases(context.Background(), mock.Messages(m))
	want := []string{"hold a", "hold b", "decide sold_out", "release a", "release b", "resync a", "resync b"}
	if fmt.Sprint(stock.log) != fmt.Sprint(want) {
		t.Errorf("steps %v, want %v", stock.log, want)
	}
	if m.Settled() != "ack" || orders.decisions["t1"] != flashsale.TicketSoldOut {
		t.Errorf("settled %q decision %q, want ack and sold_out", m.Settled(), orders.decisions["t1"])
	}
}

// A redelivered bundle whose order exists acks without a second order.
func TestBundleRedeliveryAfterTheOrder(t *testing.T) {
	stock := newFakeStock(map[string]int{"a": 5, "b": 1})
	orders := newFakeOrders(stock)
	w := newTestWorker(t, stock, orders, twoSales())
	req := bundle("t1", "u1", 1, 1)
	for i := 0; i < 2; i++ {
		m := mock.NewMessage(req)
		w.HandlePurchases(context.Background(), mock.Messages(m))
		if m.Settled() != "ack" {
			t.Fatalf("delivery %d settled %q", i, m.Settled())
		}
	}
	if len(orders.orders) != 1 || stock.available["a"] != 4 || stock.available["b"] != 0 {
		t.Errorf("%d orders, available a=%d b=%d; want one order holding one of each", len(orders.orders), stock.available["a"], stock.available["b"])
	}
}

// A dead-lettered bundle records its failure first, then releases every line.
func TestDeadLetteredBundleReleasesEveryLine(t *testing.T) {
	stock := newFakeStock(map[string]int{"a": 5, "b": 1})
	orders := newFakeOrders(stock)
	w := newTestWorker(t, stock, orders, twoSales())
	req := bundle("t1", "u1", 1, 1)
	stock.Hold(context.Background(), []*flashsale.Sale{twoSales()["a"]}, []*flashsale.PurchaseRequest{req.LineRequest(0)})
	stock.log = nil
	m := mock.NewMessage(req)
	w.HandleDeadLetters(context.Background(), mock.Messages(m))
	want := []string{"decide failed", "release a", "release b"}
	if m.Settled() != "ack" || fmt.Sprint(stock.log) != fmt.Sprint(want) {
		t.Errorf("settled %q steps %v, want ack and %v", m.Settled(), stock.log, want)
	}
	if stock.available["a"] != 5 {
		t.Errorf("sale a has %d available, want 5", stock.available["a"])
	}
}

// Malformed messages and bundles naming an unknown sale are dead-lettered.
func TestMalformedPurchasesAreDeadLettered(t *testing.T) {
	stock := newFakeStock(map[string]int{"a": 5, "b": 1})
	w := newTestWorker(t, stock, newFakeOrders(stock), twoSales())
	dup := bundle("t1", "u1", 1, 1)
	dup.Items[1].SaleID = "a"
	unknown := bundle("t2", "u1", 1, 1)
	unknown.Items[1].SaleID = "nope"
	msgs := []*mock.Message{mock.NewMessage([]byte("{")), mock.NewMessage(dup), mock.NewMessage(unknown), mock.NewMessage(&flashsale.PurchaseRequest{TicketID: "t3", UserID: "u"})}
	for i, m := range msgs {
		w.HandlePurchases(context.Background(), mock.Messages(m))
		if m.Settled() != "dead" {
			t.Errorf("message %d settled %q, want dead", i, m.Settled())
		}
	}
}

// A retry refused as sold out after its order was committed (Redis lost the
// hold and the units went to others meanwhile) follows its order: the ticket
// is pending_payment, and its hold is re-asserted.
func TestRefusedRetryOfAnOrderedTicketFollowsItsOrder(t *testing.T) {
	stock := newFakeStock(map[string]int{"a": 0})
	orders := newFakeOrders(stock)
	req := &flashsale.PurchaseRequest{TicketID: "t1", SaleID: "a", UserID: "u1", Quantity: 1, AdmittedAt: time.Now()}
	o := &flashsale.Order{ID: "t1", UserID: "u1", Status: flashsale.OrderPendingPayment}
	o.SetItems([]flashsale.OrderItem{{SaleID: "a", Quantity: 1, AmountCents: 100}})
	orders.orders["t1"] = o // committed by an earlier attempt
	reasserted := 0
	stock.onReassert = func(parts []flashsale.Part) { reasserted += len(parts) }
	w := newTestWorker(t, stock, orders, twoSales())
	m := mock.NewMessage(req)
	var written *flashsale.Ticket
	stock.onPut = func(ts []*flashsale.Ticket) { written = ts[0] }
	w.HandlePurchases(context.Background(), mock.Messages(m))
	if m.Settled() != "ack" || written == nil || written.Status != flashsale.TicketPendingPayment || written.OrderID != "t1" {
		t.Fatalf("settled %q, ticket %+v; want ack and the order's pending ticket", m.Settled(), written)
	}
	if reasserted != 1 {
		t.Errorf("%d parts re-asserted, want 1", reasserted)
	}
}
