package worker

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/flashsale/flashsale"
	"github.com/flashsale/flashsale/mock"
)

// These tests drive the worker's saga with in-memory fakes of its small
// interfaces: what it holds, orders, records and releases, and in which order.
// The stores' own behaviour is tested against real Redis and MySQL in their
// packages and end to end.

// newFakes returns a stock store with available units per sale and a book
// of record, recording their steps in one list ("hold a", "decide sold_out",
// "release a"), so the tests see the order of effects across both.
func newFakes(avail map[string]int) (*mock.Stock, *mock.Book) {
	steps := &mock.Steps{}
	return mock.NewStock(avail, steps), mock.NewBook(steps)
}

// newTestWorker returns a worker over the fakes and sales, which the book
// learns too (their stock caps and per-user limits).
func newTestWorker(t *testing.T, stock *mock.Stock, orders *mock.Book, sales mock.Sales) *Worker {
	t.Helper()
	orders.Sales = sales
	w, err := New(Config{Sales: sales, Stock: stock, Orders: orders, Expiries: &mock.Expiries{}})
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
	stock, orders := newFakes(map[string]int{"a": 5, "b": 1})
	w := newTestWorker(t, stock, orders, twoSales())
	m := mock.NewMessage(bundle("t1", "u1", 2, 1))
	w.HandlePurchases(context.Background(), mock.Messages(m))
	if m.Settled() != "ack" {
		t.Fatalf("message settled %q, want ack", m.Settled())
	}
	o := orders.Orders["t1"]
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
	stock, orders := newFakes(map[string]int{"a": 5, "b": 0})
	w := newTestWorker(t, stock, orders, twoSales())
	m := mock.NewMessage(bundle("t1", "u1", 1, 1))
	w.HandlePurchases(context.Background(), mock.Messages(m))
	if m.Settled() != "ack" || orders.Orders["t1"] != nil || orders.Decision("t1") != flashsale.TicketSoldOut {
		t.Fatalf("settled %q, order %v, decision %q; want ack, none, sold_out", m.Settled(), orders.Orders["t1"], orders.Decision("t1"))
	}
	if stock.Available["a"] != 5 {
		t.Errorf("sale a has %d available, want its 5 back", stock.Available["a"])
	}
	want := []string{"hold a", "hold b", "decide sold_out", "release a"}
	if stock.Steps.String() != fmt.Sprint(want) {
		t.Errorf("steps %v, want %v", stock.Steps, want)
	}
}

// The compensation fails once (Redis away): the message is settled with Retry,
// and when the consumer's retry rule hands it over again it finds the holds
// and the decision as they were, and completes the release; the ticket never
// makes an order.
func TestBundleCompensationCompletedByTheRetry(t *testing.T) {
	stock, orders := newFakes(map[string]int{"a": 5, "b": 0})
	stock.Fail("release a", 1)
	w := newTestWorker(t, stock, orders, twoSales())
	m := mock.NewMessage(bundle("t1", "u1", 1, 1))
	w.HandlePurchases(context.Background(), mock.Messages(m))
	if m.Settled() != "retry" || stock.Available["a"] != 4 {
		t.Fatalf("first attempt: settled %q, a available %d; want retry, 4 (the release failed)", m.Settled(), stock.Available["a"])
	}
	w.HandlePurchases(context.Background(), mock.Messages(m))
	if m.Settled() != "ack" || orders.Orders["t1"] != nil || stock.Available["a"] != 5 {
		t.Fatalf("settled %q, order %v, a available %d; want ack, no order, 5", m.Settled(), orders.Orders["t1"], stock.Available["a"])
	}
	if h := stock.Holds[[2]string{"a", "t1"}]; h.Kind != flashsale.HoldReleased {
		t.Errorf("line a: %+v, want released", h)
	}
}

// MySQL's stock cap refuses a bundle Redis held: every line is released after
// the sold_out decision, and both sales are rebuilt in Redis.
func TestBundleRefusedByTheCapReleasesEveryLineAndResyncs(t *testing.T) {
	stock, orders := newFakes(map[string]int{"a": 5, "b": 1})
	orders.CapFull = true
	w := newTestWorker(t, stock, orders, twoSales())
	m := mock.NewMessage(bundle("t1", "u1", 1, 1))
	w.HandlePurchases(context.Background(), mock.Messages(m))
	want := []string{"hold a", "hold b", "decide sold_out", "release a", "release b", "resync a", "resync b"}
	if stock.Steps.String() != fmt.Sprint(want) {
		t.Errorf("steps %v, want %v", stock.Steps, want)
	}
	if m.Settled() != "ack" || orders.Decision("t1") != flashsale.TicketSoldOut {
		t.Errorf("settled %q decision %q, want ack and sold_out", m.Settled(), orders.Decision("t1"))
	}
}

// A redelivered bundle whose order exists acks without a second order.
func TestBundleRedeliveryAfterTheOrder(t *testing.T) {
	stock, orders := newFakes(map[string]int{"a": 5, "b": 1})
	w := newTestWorker(t, stock, orders, twoSales())
	req := bundle("t1", "u1", 1, 1)
	for i := 0; i < 2; i++ {
		m := mock.NewMessage(req)
		w.HandlePurchases(context.Background(), mock.Messages(m))
		if m.Settled() != "ack" {
			t.Fatalf("delivery %d settled %q", i, m.Settled())
		}
	}
	if len(orders.Orders) != 1 || stock.Available["a"] != 4 || stock.Available["b"] != 0 {
		t.Errorf("%d orders, available a=%d b=%d; want one order holding one of each", len(orders.Orders), stock.Available["a"], stock.Available["b"])
	}
}

// Every delivery whose ticket ends pending_payment has its order's expiry
// scheduled before it is acked: the first, and a redelivery that finds the
// order made (the first may have crashed before scheduling). When scheduling
// fails the delivery is retried, not acked, and its retry schedules; a ticket
// that made no order schedules nothing.
func TestAnUnpaidOrdersExpiryIsScheduledBeforeTheAck(t *testing.T) {
	stock, orders := newFakes(map[string]int{"a": 1})
	w := newTestWorker(t, stock, orders, twoSales())
	exp := w.cfg.Expiries.(*mock.Expiries)
	first := buyA("t1", "u1")
	w.HandlePurchases(context.Background(), mock.Messages(first))
	if first.Settled() != "ack" || fmt.Sprint(exp.Scheduled()) != "[t1]" {
		t.Fatalf("settled %q, scheduled %v; want ack after t1 scheduled", first.Settled(), exp.Scheduled())
	}
	exp.Err = errors.New("broker away")
	again := buyA("t1", "u1")
	w.HandlePurchases(context.Background(), mock.Messages(again))
	if again.Settled() != "retry" {
		t.Errorf("a redelivery whose scheduling failed settled %q, want retry", again.Settled())
	}
	exp.Err = nil
	retried := buyA("t1", "u1")
	w.HandlePurchases(context.Background(), mock.Messages(retried))
	if retried.Settled() != "ack" || fmt.Sprint(exp.Scheduled()) != "[t1 t1]" {
		t.Errorf("the retry settled %q, scheduled %v; want ack and t1 scheduled again", retried.Settled(), exp.Scheduled())
	}
	soldOut := buyA("t2", "u2")
	w.HandlePurchases(context.Background(), mock.Messages(soldOut))
	if soldOut.Settled() != "ack" || fmt.Sprint(exp.Scheduled()) != "[t1 t1]" {
		t.Errorf("a sold-out ticket settled %q, scheduled %v; want ack and nothing more", soldOut.Settled(), exp.Scheduled())
	}
	if len(orders.Orders) != 1 {
		t.Errorf("%d orders, want 1", len(orders.Orders))
	}
	// A dead letter whose ticket made its order after all: the order stands
	// and its expiry is scheduled too.
	dead := buyA("t1", "u1")
	w.HandleDeadLetters(context.Background(), mock.Messages(dead))
	if dead.Settled() != "ack" || fmt.Sprint(exp.Scheduled()) != "[t1 t1 t1]" {
		t.Errorf("the ordered dead letter settled %q, scheduled %v; want ack and t1 scheduled", dead.Settled(), exp.Scheduled())
	}
}

// A dead-lettered bundle records its failure first, then releases every line.
func TestDeadLetteredBundleReleasesEveryLine(t *testing.T) {
	stock, orders := newFakes(map[string]int{"a": 5, "b": 1})
	w := newTestWorker(t, stock, orders, twoSales())
	req := bundle("t1", "u1", 1, 1)
	stock.Hold(context.Background(), []*flashsale.Sale{twoSales()["a"]}, []*flashsale.PurchaseRequest{req.LineRequest(0)})
	stock.Steps.Reset()
	m := mock.NewMessage(req)
	w.HandleDeadLetters(context.Background(), mock.Messages(m))
	want := []string{"decide failed", "release a", "release b"}
	if m.Settled() != "ack" || stock.Steps.String() != fmt.Sprint(want) {
		t.Errorf("settled %q steps %v, want ack and %v", m.Settled(), stock.Steps, want)
	}
	if stock.Available["a"] != 5 {
		t.Errorf("sale a has %d available, want 5", stock.Available["a"])
	}
}

// Malformed messages and bundles naming an unknown sale are dead-lettered.
func TestMalformedPurchasesAreDeadLettered(t *testing.T) {
	stock, orders := newFakes(map[string]int{"a": 5, "b": 1})
	w := newTestWorker(t, stock, orders, twoSales())
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
	stock, orders := newFakes(map[string]int{"a": 0})
	req := &flashsale.PurchaseRequest{TicketID: "t1", SaleID: "a", UserID: "u1", Quantity: 1, AdmittedAt: time.Now()}
	o := &flashsale.Order{ID: "t1", UserID: "u1", Status: flashsale.OrderPendingPayment}
	o.SetItems([]flashsale.OrderItem{{SaleID: "a", Quantity: 1, AmountCents: 100}})
	orders.Orders["t1"] = o // committed by an earlier attempt
	reasserted := 0
	stock.OnReassert = func(parts []flashsale.Part) { reasserted += len(parts) }
	w := newTestWorker(t, stock, orders, twoSales())
	m := mock.NewMessage(req)
	var written *flashsale.Ticket
	stock.OnPut = func(ts []*flashsale.Ticket) { written = ts[0] }
	w.HandlePurchases(context.Background(), mock.Messages(m))
	if m.Settled() != "ack" || written == nil || written.Status != flashsale.TicketPendingPayment || written.OrderID != "t1" {
		t.Fatalf("settled %q, ticket %+v; want ack and the order's pending ticket", m.Settled(), written)
	}
	if reasserted != 1 {
		t.Errorf("%d parts re-asserted, want 1", reasserted)
	}
}

// A ticket queued twice (its purchase retried after Redis lost the claim:
// the retry is the same ticket) whose two messages share a batch makes one
// order, holds once, and both messages are acked with it.
func TestTwoMessagesOfOneTicketInABatchMakeOneOrder(t *testing.T) {
	stock, orders := newFakes(map[string]int{"a": 5})
	w := newTestWorker(t, stock, orders, twoSales())
	req := &flashsale.PurchaseRequest{TicketID: "t1", SaleID: "a", UserID: "u1", Quantity: 1, AdmittedAt: time.Now()}
	first, again := mock.NewMessage(req), mock.NewMessage(req)
	w.HandlePurchases(context.Background(), mock.Messages(first, again))
	if first.Settled() != "ack" || again.Settled() != "ack" {
		t.Fatalf("messages settled %q and %q, want both ack", first.Settled(), again.Settled())
	}
	o := orders.Orders["t1"]
	if o == nil || o.Status != flashsale.OrderPendingPayment {
		t.Fatalf("order %+v, want t1 pending_payment", o)
	}
	if got := stock.Available["a"]; got != 4 {
		t.Errorf("%d units of a available, want 4 (held once)", got)
	}
	holds := 0
	for _, s := range stock.Steps.List() {
		if s == "hold a" {
			holds++
		}
	}
	if holds != 1 {
		t.Errorf("steps %v: the ticket went through the batch %d times, want once (MySQL refuses a second row of one ticket in one order transaction as a live conflict)", stock.Steps, holds)
	}
}

// shardHeld is the book with user "u-late" on shard 1, whose order
// transaction waits until release is closed (a lock held in MySQL).
type shardHeld struct {
	*mock.Book
	release chan struct{}
}

func (h *shardHeld) ShardOf(user string) int {
	if user == "u-late" {
		return 1
	}
	return 0
}

func (h *shardHeld) CreateOrders(ctx context.Context, shard int, orders []*flashsale.Order) ([]flashsale.OrderResult, error) {
	if shard == 1 {
		<-h.release
	}
	return h.Book.CreateOrders(ctx, shard, orders)
}

// A shard's orders have their ticket copies written (and so announced to
// their streams) as soon as the shard committed, while another shard's order
// transaction of the same batch still waits: a pending_payment reaches its
// stream within 1 s of its order's created_at (contract §2).
func TestOrderedTicketsWrittenWhileAnotherShardWaits(t *testing.T) {
	stock, book := newFakes(map[string]int{"a": 5, "b": 1})
	book.Sales = twoSales()
	held := &shardHeld{Book: book, release: make(chan struct{})}
	w, err := New(Config{Sales: twoSales(), Stock: stock, Orders: held, Expiries: &mock.Expiries{}})
	if err != nil {
		t.Fatal(err)
	}
	fast, late := buyA("t-fast", "u-fast"), buyA("t-late", "u-late")
	done := make(chan struct{})
	go func() {
		defer close(done)
		w.HandlePurchases(context.Background(), mock.Messages(fast, late))
	}()
	ctx := context.Background()
	for deadline := time.Now().Add(5 * time.Second); ; {
		if tk, err := stock.GetTicket(ctx, "t-fast"); err == nil && tk.Status == flashsale.TicketPendingPayment {
			break
		}
		if time.Now().After(deadline) {
			close(held.release)
			t.Fatal("shard 0's ticket not written within 5 s while shard 1's order transaction waits")
		}
		time.Sleep(time.Millisecond) // polling the fake's state
	}
	if _, err := stock.GetTicket(ctx, "t-late"); err == nil {
		t.Error("shard 1's ticket written before its order transaction committed")
	}
	close(held.release)
	<-done
	for _, m := range []*mock.Message{fast, late} {
		if m.Settled() != "ack" {
			t.Errorf("message settled %q, want ack", m.Settled())
		}
	}
	if tk, err := stock.GetTicket(ctx, "t-late"); err != nil || tk.Status != flashsale.TicketPendingPayment {
		t.Errorf("shard 1's ticket after its commit: %+v, %v; want pending_payment", tk, err)
	}
}

// gatedBook is the book whose first order transaction waits until release is
// closed (the shard's allotment row locked by it), recording the size of
// every CreateOrders call.
type gatedBook struct {
	*mock.Book
	release chan struct{}
	mu      sync.Mutex
	calls   []int
}

func (g *gatedBook) CreateOrders(ctx context.Context, shard int, orders []*flashsale.Order) ([]flashsale.OrderResult, error) {
	g.mu.Lock()
	first := len(g.calls) == 0
	g.calls = append(g.calls, len(orders))
	g.mu.Unlock()
	if first {
		<-g.release
	}
	return g.Book.CreateOrders(ctx, shard, orders)
}

// newGatedWorker returns a worker over the fakes (5 units of sale a) whose
// book's first order transaction waits until gated.release is closed.
func newGatedWorker(t *testing.T) (*Worker, *mock.Stock, *mock.Book, *gatedBook) {
	t.Helper()
	stock, book := newFakes(map[string]int{"a": 5})
	book.Sales = twoSales()
	gated := &gatedBook{Book: book, release: make(chan struct{})}
	w, err := New(Config{Sales: twoSales(), Stock: stock, Orders: gated, Expiries: &mock.Expiries{}})
	if err != nil {
		t.Fatal(err)
	}
	return w, stock, book, gated
}

// buyA is a purchase of one unit of sale a.
func buyA(ticket, user string) *mock.Message {
	return mock.NewMessage(&flashsale.PurchaseRequest{TicketID: ticket, UserID: user, SaleID: "a", Quantity: 1, AdmittedAt: time.Now()})
}

// The batches of handlers that reach a shard while its order transaction
// runs share the next one, instead of each waiting for the allotment row in
// a transaction of its own; each handler still gets its own orders' results.
func TestBatchesOfAShardShareAnOrderTransaction(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		w, _, book, gated := newGatedWorker(t)
		msgs := make([]*mock.Message, 4)
		for i := range msgs {
			msgs[i] = buyA(fmt.Sprintf("t%d", i), fmt.Sprintf("u%d", i))
		}
		var wg sync.WaitGroup
		wg.Go(func() { w.HandlePurchases(context.Background(), mock.Messages(msgs[0])) })
		synctest.Wait() // the first transaction holds the row
		for _, m := range msgs[1:] {
			wg.Go(func() { w.HandlePurchases(context.Background(), mock.Messages(m)) })
		}
		synctest.Wait() // the three others wait for it
		close(gated.release)
		wg.Wait()
		if fmt.Sprint(gated.calls) != "[1 3]" {
			t.Errorf("order transactions of %v orders, want [1 3]: the three batches that waited share one", gated.calls)
		}
		for i, m := range msgs {
			if m.Settled() != "ack" {
				t.Errorf("message %d settled %q, want ack", i, m.Settled())
			}
			if o := book.Orders[fmt.Sprintf("t%d", i)]; o == nil || o.Status != flashsale.OrderPendingPayment {
				t.Errorf("order of t%d: %+v, want pending_payment", i, o)
			}
		}
	})
}

// Two deliveries of one ticket (a purchase retried: the retry is the same
// ticket) taken by two handlers whose batches share an order transaction make
// one order: the second is answered as the first, not refused as the user's
// second live order, so nothing it held is released and the ticket ends
// pending_payment for both deliveries.
func TestOneTicketInTwoSharedBatchesMakesOneOrder(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		w, stock, book, gated := newGatedWorker(t)
		first, again := buyA("t-dup", "u-dup"), buyA("t-dup", "u-dup")
		var wg sync.WaitGroup
		wg.Go(func() { w.HandlePurchases(context.Background(), mock.Messages(buyA("t0", "u0"))) })
		synctest.Wait() // the first transaction holds the row
		wg.Go(func() { w.HandlePurchases(context.Background(), mock.Messages(first)) })
		wg.Go(func() { w.HandlePurchases(context.Background(), mock.Messages(again)) })
		synctest.Wait() // both deliveries wait for it
		close(gated.release)
		wg.Wait()
		if fmt.Sprint(gated.calls) != "[1 1]" {
			t.Fatalf("order transactions of %v orders, want [1 1]: the two deliveries share one, with the ticket's order once", gated.calls)
		}
		for _, m := range []*mock.Message{first, again} {
			if m.Settled() != "ack" {
				t.Errorf("delivery settled %q, want ack", m.Settled())
			}
		}
		if o := book.Orders["t-dup"]; o == nil || o.Status != flashsale.OrderPendingPayment {
			t.Errorf("order of t-dup: %+v, want pending_payment", o)
		}
		if tk, err := stock.GetTicket(context.Background(), "t-dup"); err != nil || tk.Status != flashsale.TicketPendingPayment {
			t.Errorf("ticket t-dup: %+v, %v; want pending_payment", tk, err)
		}
		for _, s := range stock.Steps.List() {
			if strings.HasPrefix(s, "release") {
				t.Errorf("steps %v: a hold of the ordered ticket was released", stock.Steps.List())
				break
			}
		}
		if got := stock.Available["a"]; got != 3 {
			t.Errorf("%d units of a available, want 3 (t0 and t-dup hold one each)", got)
		}
	})
}
