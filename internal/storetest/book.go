package storetest

import (
	"errors"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/flashsale/flashsale"
	"github.com/flashsale/flashsale/ingress"
	"github.com/flashsale/flashsale/lifecycle"
	"github.com/flashsale/flashsale/worker"
)

// Book is the book of record as the roles use it: the worker's orders and
// decisions, the lifecycle's transitions, the ingress's reads.
type Book interface {
	worker.Orders
	lifecycle.Book
	ingress.Orders
}

// NewBook returns an empty book of record of the test's own that knows sales
// (their stock is the stock cap, their per_user_limit the limit).
type NewBook func(t *testing.T, sales ...*flashsale.Sale) Book

// RunBook runs the book of record's suite: each case on a book of its own.
func RunBook(t *testing.T, newBook NewBook) {
	t.Helper()
	run(t, newBook, []testCase[NewBook]{
		{"CreateIsIdempotentPerTicket", bookCreateIsIdempotentPerTicket},
		{"TwoRowsOfOneTicketInOneBatch", bookTwoRowsOfOneTicketInOneBatch},
		{"OneLiveOrderPerUserAndSale", bookOneLiveOrderPerUserAndSale},
		{"PerUserLimit", bookPerUserLimit},
		{"StockCap", bookStockCap},
		{"DecisionsStand", bookDecisionsStand},
		{"ExpireOnlyWhenDue", bookExpireOnlyWhenDue},
		{"Payments", bookPayments},
		{"PaymentNotices", bookPaymentNotices},
		{"LatePaymentWithinCapAndLimit", bookLatePaymentWithinCapAndLimit},
		{"Returns", bookReturns},
	})
}

// outcomeNames name the create outcomes in messages.
var outcomeNames = map[flashsale.CreateOutcome]string{flashsale.CreateNew: "new", flashsale.CreateExisted: "existed",
	flashsale.CreateLiveConflict: "live_conflict", flashsale.CreateDecided: "decided",
	flashsale.CreateSoldOut: "sold_out", flashsale.CreateOverLimit: "over_limit"}

// book is one case's book with helpers that fail the test.
type book struct {
	t *testing.T
	Book
}

// order is a new unpaid order of user, created now and payable for window
// (negative: due already), of q units of each sale given, at 100 cents a unit.
func order(user string, window time.Duration, lines ...flashsale.Line) *flashsale.Order {
	now := time.Now().UTC().Truncate(time.Microsecond)
	o := &flashsale.Order{ID: uuid.NewString(), UserID: user, Status: flashsale.OrderPendingPayment, CreatedAt: now, PayBy: now.Add(window)}
	items := make([]flashsale.OrderItem, len(lines))
	for i, l := range lines {
		items[i] = flashsale.OrderItem{SaleID: l.SaleID, Quantity: l.Quantity, AmountCents: 100 * int64(l.Quantity)}
	}
	o.SetItems(items)
	return o
}

func line(saleID string, q int) flashsale.Line { return flashsale.Line{SaleID: saleID, Quantity: q} }

// create creates orders (all of one user's shard) in one call and checks the
// outcomes.
func (b book) create(orders []*flashsale.Order, want ...flashsale.CreateOutcome) []flashsale.OrderResult {
	b.t.Helper()
	res, err := b.CreateOrders(ctx, b.ShardOf(orders[0].UserID), orders)
	must(b.t, "create orders", err)
	if len(res) != len(want) {
		b.t.Fatalf("create orders: %d results, want %d", len(res), len(want))
	}
	for i, r := range res {
		if r.Outcome != want[i] {
			got := make([]string, len(res))
			for j, r := range res {
				got[j] = outcomeNames[r.Outcome]
			}
			wantNames := make([]string, len(want))
			for j, w := range want {
				wantNames[j] = outcomeNames[w]
			}
			b.t.Fatalf("create orders: outcomes %v, want %v", got, wantNames)
		}
	}
	return res
}

// newOrder creates a new order of user and returns its ref.
func (b book) newOrder(user string, window time.Duration, lines ...flashsale.Line) flashsale.OrderRef {
	b.t.Helper()
	o := order(user, window, lines...)
	b.create([]*flashsale.Order{o}, flashsale.CreateNew)
	return o.Ref()
}

// status checks the order's stored status.
func (b book) status(ref flashsale.OrderRef, want flashsale.OrderStatus) *flashsale.Order {
	b.t.Helper()
	o, err := b.GetOrder(ctx, ref)
	must(b.t, "get order", err)
	if o.Status != want {
		b.t.Fatalf("order %s is %s, want %s", ref.Order, o.Status, want)
	}
	return o
}

// pay pays the order in full with a fresh payment id and checks the outcome.
func (b book) pay(ref flashsale.OrderRef, revive bool, want flashsale.PayOutcome) {
	b.t.Helper()
	o, err := b.GetOrder(ctx, ref)
	must(b.t, "get order", err)
	out, _, err := b.Pay(ctx, ref, uuid.NewString(), o.AmountCents, revive, time.Now())
	must(b.t, "pay", err)
	if out != want {
		b.t.Fatalf("pay (revive %v): %s, want %s", revive, out, want)
	}
}

// expire expires a due order.
func (b book) expire(ref flashsale.OrderRef) {
	b.t.Helper()
	if o, changed, err := b.Expire(ctx, ref, time.Now()); err != nil || !changed || o.Status != flashsale.OrderExpired {
		b.t.Fatalf("expire: %+v changed %v, %v; want expired now", o, changed, err)
	}
}

// A redelivered order is the one order its ticket makes; its ticket and
// order are read by their user only.
func bookCreateIsIdempotentPerTicket(t *testing.T, newBook NewBook) {
	b := book{t, newBook(t, saleOf("a", 10, 2))}
	o := order("u1", time.Hour, line("a", 1))
	res := b.create([]*flashsale.Order{o}, flashsale.CreateNew)
	if res[0].Current == nil || res[0].Current.ID != o.ID {
		t.Fatalf("created order %+v, want %s", res[0].Current, o.ID)
	}
	again := order("u1", time.Hour, line("a", 1))
	again.ID = o.ID
	res = b.create([]*flashsale.Order{again}, flashsale.CreateExisted)
	if res[0].Current == nil || res[0].Current.Status != flashsale.OrderPendingPayment {
		t.Fatalf("redelivery: current %+v, want the pending order", res[0].Current)
	}
	got := b.status(o.Ref(), flashsale.OrderPendingPayment)
	if ls := got.Lines(); len(ls) != 1 || ls[0] != line("a", 1) || got.AmountCents != 100 {
		t.Fatalf("order lines %v, %d cents; want one unit of a, 100", ls, got.AmountCents)
	}
	_, err := b.GetOrder(ctx, flashsale.OrderRef{User: "u2", Order: o.ID})
	wantCode(t, "another user's order", err, flashsale.CodeNotFound)
	found, err := b.FindOrder(ctx, o.ID)
	if err != nil || found.UserID != "u1" {
		t.Fatalf("find order: %+v, %v; want u1's", found, err)
	}
	_, err = b.FindOrder(ctx, uuid.NewString())
	wantCode(t, "find an unknown order", err, flashsale.CodeNotFound)
	tk, err := b.GetTicket(ctx, flashsale.TicketRef{User: "u1", Ticket: o.ID})
	if err != nil || tk.Status != flashsale.TicketPendingPayment || tk.OrderID != o.ID || tk.PayBy == nil {
		t.Fatalf("ticket of the order: %+v, %v; want pending_payment with its order and pay_by", tk, err)
	}
	_, err = b.GetTicket(ctx, flashsale.TicketRef{User: "u2", Ticket: o.ID})
	wantCode(t, "another user's ticket", err, flashsale.CodeNotFound)
	_, err = b.GetTicket(ctx, flashsale.TicketRef{User: "u1", Ticket: uuid.NewString()})
	wantCode(t, "an unknown ticket", err, flashsale.CodeNotFound)
}

// Two rows of one ticket in one batch (a ticket queued twice) make one order:
// MySQL's order transaction refuses the second as a live conflict, since the
// first is the user's unpaid order of the sale by then. The worker sends a
// ticket once per batch (worker.TestTwoMessagesOfOneTicketInABatchMakeOneOrder).
func bookTwoRowsOfOneTicketInOneBatch(t *testing.T, newBook NewBook) {
	b := book{t, newBook(t, saleOf("a", 10, 2))}
	o := order("u1", time.Hour, line("a", 1))
	twin := *o
	twin.Items = append([]flashsale.OrderItem(nil), o.Items...)
	b.create([]*flashsale.Order{o, &twin}, flashsale.CreateNew, flashsale.CreateLiveConflict)
	b.status(o.Ref(), flashsale.OrderPendingPayment)
}

// A user has at most one unpaid order per sale; paid, cancelled and expired
// orders do not block a new one.
func bookOneLiveOrderPerUserAndSale(t *testing.T, newBook NewBook) {
	b := book{t, newBook(t, saleOf("a", 10, 3), saleOf("b", 10, 3))}
	first := b.newOrder("u1", time.Hour, line("a", 1))
	b.create([]*flashsale.Order{order("u1", time.Hour, line("a", 1))}, flashsale.CreateLiveConflict)
	b.create([]*flashsale.Order{order("u1", time.Hour, line("b", 1), line("a", 1))}, flashsale.CreateLiveConflict)
	b.newOrder("u2", time.Hour, line("a", 1))
	b.newOrder("u1", time.Hour, line("b", 1))
	if _, changed, err := b.Cancel(ctx, first, time.Now()); err != nil || !changed {
		t.Fatalf("cancel: changed %v, %v", changed, err)
	}
	second := b.newOrder("u1", time.Hour, line("a", 1))
	b.pay(second, false, flashsale.PayPaid)
	b.newOrder("u1", time.Hour, line("a", 1))
}

// A user's pending and paid units of a sale, less those returned, stay within
// its per_user_limit; expired orders do not count.
func bookPerUserLimit(t *testing.T, newBook NewBook) {
	b := book{t, newBook(t, saleOf("a", 10, 2))}
	b.create([]*flashsale.Order{order("u1", time.Hour, line("a", 3))}, flashsale.CreateOverLimit)
	paid := b.newOrder("u1", time.Hour, line("a", 2))
	b.pay(paid, false, flashsale.PayPaid)
	b.create([]*flashsale.Order{order("u1", time.Hour, line("a", 1))}, flashsale.CreateOverLimit)
	if _, _, err := b.Return(ctx, flashsale.ReturnRequest{ID: uuid.NewString(), OrderID: paid.Order, Lines: []flashsale.Line{line("a", 1)}}, time.Now()); err != nil {
		t.Fatalf("return: %v", err)
	}
	b.newOrder("u1", time.Hour, line("a", 1))
	due := b.newOrder("u2", -time.Second, line("a", 2))
	b.expire(due)
	b.newOrder("u2", time.Hour, line("a", 2))
}

// Orders never take more units than the sale's stock; a bundle takes all of
// its items or none, and a cancelled order gives its units back.
func bookStockCap(t *testing.T, newBook NewBook) {
	b := book{t, newBook(t, saleOf("a", 2, 2), saleOf("b", 1, 2))}
	big := b.newOrder("u1", time.Hour, line("a", 2))
	late := order("u2", time.Hour, line("a", 1))
	b.create([]*flashsale.Order{late}, flashsale.CreateSoldOut)
	_, err := b.GetTicket(ctx, flashsale.TicketRef{User: "u2", Ticket: late.ID})
	wantCode(t, "the ticket of an order refused sold out (nothing written)", err, flashsale.CodeNotFound)
	if _, changed, err := b.Cancel(ctx, big, time.Now()); err != nil || !changed {
		t.Fatalf("cancel: changed %v, %v", changed, err)
	}
	b.newOrder("u2", time.Hour, line("a", 1))
	b.create([]*flashsale.Order{order("u3", time.Hour, line("a", 1), line("b", 2))}, flashsale.CreateSoldOut)
	b.newOrder("u4", time.Hour, line("a", 1))
	b.create([]*flashsale.Order{order("u5", time.Hour, line("a", 1))}, flashsale.CreateSoldOut)
	b.newOrder("u5", time.Hour, line("b", 1))
}

// A ticket's first decision stands: a later one does not replace it, an order
// of a decided ticket is refused, and a ticket that made its order keeps it.
// A decided ticket is read by its user only.
func bookDecisionsStand(t *testing.T, newBook NewBook) {
	b := book{t, newBook(t, saleOf("a", 10, 2))}
	lost := &flashsale.Ticket{ID: uuid.NewString(), UserID: "u1", Status: flashsale.TicketSoldOut}
	lost.SetLines([]flashsale.Line{line("a", 2)})
	stand, err := b.RecordOutcomes(ctx, b.ShardOf("u1"), []*flashsale.Ticket{lost})
	if err != nil || len(stand) != 0 {
		t.Fatalf("record a decision: %v, %v; want it recorded as given", stand, err)
	}
	failed := *lost
	failed.Status = flashsale.TicketFailed
	stand, err = b.RecordOutcomes(ctx, b.ShardOf("u1"), []*flashsale.Ticket{&failed})
	if err != nil || stand[lost.ID] != flashsale.TicketSoldOut {
		t.Fatalf("record another decision: %v, %v; want the first (sold_out) to stand", stand, err)
	}
	tk, err := b.GetTicket(ctx, flashsale.TicketRef{User: "u1", Ticket: lost.ID})
	if err != nil || tk.Status != flashsale.TicketSoldOut || tk.OrderID != "" || len(tk.Lines()) != 1 || tk.Lines()[0] != line("a", 2) {
		t.Fatalf("decided ticket: %+v, %v; want sold_out, 2 units of a, no order", tk, err)
	}
	_, err = b.GetTicket(ctx, flashsale.TicketRef{User: "u2", Ticket: lost.ID})
	wantCode(t, "another user's decided ticket", err, flashsale.CodeNotFound)
	o := order("u1", time.Hour, line("a", 2))
	o.ID = lost.ID
	res := b.create([]*flashsale.Order{o}, flashsale.CreateDecided)
	if res[0].Decision != flashsale.TicketSoldOut {
		t.Fatalf("order of a decided ticket: decision %q, want sold_out", res[0].Decision)
	}

	ordered := b.newOrder("u2", time.Hour, line("a", 1))
	give := &flashsale.Ticket{ID: ordered.Order, UserID: "u2", Status: flashsale.TicketFailed}
	give.SetLines([]flashsale.Line{line("a", 1)})
	if yes, err := b.GiveUp(ctx, give); err != nil || !yes {
		t.Fatalf("give up an ordered ticket: ordered %v, %v; want its order to stand", yes, err)
	}
	b.status(ordered, flashsale.OrderPendingPayment)
	stand, err = b.RecordOutcomes(ctx, b.ShardOf("u2"), []*flashsale.Ticket{give})
	if err != nil || stand[give.ID] != flashsale.TicketPendingPayment {
		t.Fatalf("record a decision of an ordered ticket: %v, %v; want pending_payment to stand", stand, err)
	}

	fresh := &flashsale.Ticket{ID: uuid.NewString(), UserID: "u3", Status: flashsale.TicketFailed}
	fresh.SetLines([]flashsale.Line{line("a", 1)})
	if yes, err := b.GiveUp(ctx, fresh); err != nil || yes {
		t.Fatalf("give up a fresh ticket: ordered %v, %v; want given up", yes, err)
	}
	late := order("u3", time.Hour, line("a", 1))
	late.ID = fresh.ID
	if res := b.create([]*flashsale.Order{late}, flashsale.CreateDecided); res[0].Decision != flashsale.TicketFailed {
		t.Fatalf("a late order of a given-up ticket: decision %q, want failed", res[0].Decision)
	}
}

// Expire changes an unpaid order once it is due, cancel an unpaid order at
// any time; each happens once, and neither touches a closed order.
func bookExpireOnlyWhenDue(t *testing.T, newBook NewBook) {
	b := book{t, newBook(t, saleOf("a", 10, 2))}
	later := b.newOrder("u1", time.Hour, line("a", 1))
	if o, changed, err := b.Expire(ctx, later, time.Now()); err != nil || changed || o.Status != flashsale.OrderPendingPayment {
		t.Fatalf("expire before pay_by: %+v changed %v, %v; want it unchanged", o, changed, err)
	}
	due := b.newOrder("u2", -time.Second, line("a", 1))
	b.expire(due)
	if o, changed, err := b.Expire(ctx, due, time.Now()); err != nil || changed || o.Status != flashsale.OrderExpired {
		t.Fatalf("expire again: %+v changed %v, %v; want expired, unchanged", o, changed, err)
	}
	if o, changed, err := b.Cancel(ctx, due, time.Now()); err != nil || changed || o.Status != flashsale.OrderExpired {
		t.Fatalf("cancel an expired order: %+v changed %v, %v; want expired, unchanged", o, changed, err)
	}
	if o, changed, err := b.Cancel(ctx, later, time.Now()); err != nil || !changed || o.Status != flashsale.OrderCancelled {
		t.Fatalf("cancel: %+v changed %v, %v; want cancelled now", o, changed, err)
	}
	if o, changed, err := b.Cancel(ctx, later, time.Now()); err != nil || changed || o.Status != flashsale.OrderCancelled {
		t.Fatalf("cancel again: %+v changed %v, %v; want cancelled, unchanged", o, changed, err)
	}
	_, _, err := b.Expire(ctx, flashsale.OrderRef{User: "u3", Order: due.Order}, time.Now())
	wantCode(t, "expire another user's order", err, flashsale.CodeNotFound)
	_, _, err = b.Cancel(ctx, flashsale.OrderRef{User: "u3", Order: later.Order}, time.Now())
	wantCode(t, "cancel another user's order", err, flashsale.CodeNotFound)
}

// A payment id pays one order once: its first outcome stands, it is bound to
// that order, and a payment of a closed or paid order is refund_required.
func bookPayments(t *testing.T, newBook NewBook) {
	b := book{t, newBook(t, saleOf("a", 10, 2))}
	o := b.newOrder("u1", time.Hour, line("a", 1))
	other := b.newOrder("u2", time.Hour, line("a", 1))
	must(t, "bind", b.BindPayment(ctx, o, "p1"))
	must(t, "bind again", b.BindPayment(ctx, o, "p1"))
	wantCode(t, "bind to another order", b.BindPayment(ctx, other, "p1"), flashsale.CodeConflict)
	_, _, err := b.Pay(ctx, o, "p1", 99, false, time.Now())
	wantCode(t, "pay another amount", err, flashsale.CodeAmountMismatch)
	b.status(o, flashsale.OrderPendingPayment)
	out, paid, err := b.Pay(ctx, o, "p1", 100, false, time.Now())
	if err != nil || out != flashsale.PayPaid || paid.Status != flashsale.OrderPaid || paid.PaymentID == nil || *paid.PaymentID != "p1" || paid.PaidAt == nil {
		t.Fatalf("pay: %s %+v, %v; want paid by p1", out, paid, err)
	}
	if out, _, err := b.Pay(ctx, o, "p1", 100, false, time.Now()); err != nil || out != flashsale.PayPaid {
		t.Fatalf("the same payment again: %s, %v; want its first outcome, paid", out, err)
	}
	b.pay(o, false, flashsale.PayRefundRequired)
	if got := b.status(o, flashsale.OrderPaid); got.PaymentID == nil || *got.PaymentID != "p1" {
		t.Fatalf("paid twice: payment id %v, want p1's to stand", got.PaymentID)
	}
	if _, _, err := b.Cancel(ctx, other, time.Now()); err != nil {
		t.Fatal(err)
	}
	b.pay(other, false, flashsale.PayRefundRequired)
	b.status(other, flashsale.OrderCancelled)
	due := b.newOrder("u3", -time.Second, line("a", 1))
	b.expire(due)
	b.pay(due, false, flashsale.PayRefundRequired)
	b.status(due, flashsale.OrderExpired)
	_, _, err = b.Pay(ctx, flashsale.OrderRef{User: "u1", Order: uuid.NewString()}, "p9", 100, false, time.Now())
	wantCode(t, "pay an unknown order", err, flashsale.CodeNotFound)
}

// A payment notification (Settle) is decided on its order as the book reads
// it: an unknown order, another amount and a failed payment change nothing
// and bind nothing; a succeeded one binds its payment id (another order's is
// a conflict), pays a pending order, refunds a paid or cancelled one, and
// leaves an expired one to the caller's revival (ErrNeedsRevive with the
// order, nothing written but the binding). A payment id's first outcome
// stands.
func bookPaymentNotices(t *testing.T, newBook NewBook) {
	b := book{t, newBook(t, saleOf("a", 10, 2))}
	o := b.newOrder("u1", time.Hour, line("a", 1))
	other := b.newOrder("u2", time.Hour, line("a", 1))
	settle := func(ref flashsale.OrderRef, paymentID string, amount int64, succeeded bool) (flashsale.PayOutcome, *flashsale.Order, error) {
		return b.Settle(ctx, ref, flashsale.Payment{PaymentID: paymentID, OrderID: ref.Order, AmountCents: amount, Succeeded: succeeded}, time.Now())
	}
	_, _, err := settle(flashsale.OrderRef{User: "u1", Order: uuid.NewString()}, "p1", 100, true)
	wantCode(t, "an unknown order", err, flashsale.CodeNotFound)
	_, _, err = settle(flashsale.OrderRef{User: "u2", Order: o.Order}, "p1", 100, true)
	wantCode(t, "another user's order", err, flashsale.CodeNotFound)
	_, _, err = settle(o, "p1", 99, true)
	wantCode(t, "another amount", err, flashsale.CodeAmountMismatch)
	if out, got, err := settle(o, "p1", 100, false); err != nil || out != flashsale.PayFailed || got == nil || got.Status != flashsale.OrderPendingPayment {
		t.Fatalf("a failed payment: %s %+v, %v; want failed with the pending order", out, got, err)
	}
	must(t, "bind a payment id refused so far to another order", b.BindPayment(ctx, other, "p1"))
	_, _, err = settle(o, "p1", 100, true)
	wantCode(t, "another order's payment id", err, flashsale.CodeConflict)
	b.status(o, flashsale.OrderPendingPayment)

	out, paid, err := settle(o, "p2", 100, true)
	if err != nil || out != flashsale.PayPaid || paid.Status != flashsale.OrderPaid || paid.PaymentID == nil || *paid.PaymentID != "p2" || paid.PaidAt == nil {
		t.Fatalf("pay: %s %+v, %v; want paid by p2", out, paid, err)
	}
	wantCode(t, "bind the paying id to another order", b.BindPayment(ctx, other, "p2"), flashsale.CodeConflict)
	if out, _, err := settle(o, "p2", 100, true); err != nil || out != flashsale.PayPaid {
		t.Fatalf("the same payment again: %s, %v; want its first outcome, paid", out, err)
	}
	if out, _, err := settle(o, "p3", 100, true); err != nil || out != flashsale.PayRefundRequired {
		t.Fatalf("a second payment: %s, %v; want refund_required", out, err)
	}
	if out, got, err := settle(o, "p9", 100, false); err != nil || out != flashsale.PayFailed || got.Status != flashsale.OrderPaid {
		t.Fatalf("a failed payment of a paid order: %s %+v, %v; want failed with the paid order", out, got, err)
	}
	if got := b.status(o, flashsale.OrderPaid); got.PaymentID == nil || *got.PaymentID != "p2" {
		t.Fatalf("paid twice: payment id %v, want p2's to stand", got.PaymentID)
	}
	if _, _, err := b.Cancel(ctx, other, time.Now()); err != nil {
		t.Fatal(err)
	}
	if out, _, err := settle(other, "p1", 100, true); err != nil || out != flashsale.PayRefundRequired {
		t.Fatalf("a payment of a cancelled order: %s, %v; want refund_required", out, err)
	}
	b.status(other, flashsale.OrderCancelled)

	due := b.newOrder("u3", -time.Second, line("a", 1))
	b.expire(due)
	out, got, err := settle(due, "p4", 100, true)
	if !errors.Is(err, flashsale.ErrNeedsRevive) || out != "" || got == nil || got.ID != due.Order || got.Status != flashsale.OrderExpired {
		t.Fatalf("a payment of an expired order: %q %+v, %v; want ErrNeedsRevive with the order", out, got, err)
	}
	wantCode(t, "bind a late payment's id to another order", b.BindPayment(ctx, o, "p4"), flashsale.CodeConflict)
	b.status(due, flashsale.OrderExpired)
	if out, _, err := b.Pay(ctx, due, "p4", 100, true, time.Now()); err != nil || out != flashsale.PayPaid {
		t.Fatalf("the late payment revived: %s, %v; want paid (nothing recorded for p4 before)", out, err)
	}
}

// A late payment revives an expired order only within the sale's stock cap
// and the user's per_user_limit; otherwise it is refund_required and the
// order stays expired.
func bookLatePaymentWithinCapAndLimit(t *testing.T, newBook NewBook) {
	b := book{t, newBook(t, saleOf("a", 2, 1), saleOf("b", 10, 1))}
	first := b.newOrder("u1", -time.Second, line("a", 1))
	b.expire(first)
	b.pay(first, true, flashsale.PayPaid)
	b.status(first, flashsale.OrderPaid)

	second := b.newOrder("u2", -time.Second, line("a", 1))
	b.expire(second)
	b.newOrder("u3", time.Hour, line("a", 1)) // the last unit
	b.pay(second, true, flashsale.PayRefundRequired)
	b.status(second, flashsale.OrderExpired)

	expired := b.newOrder("u4", -time.Second, line("b", 1))
	b.expire(expired)
	b.newOrder("u4", time.Hour, line("b", 1)) // the user's limit
	b.pay(expired, true, flashsale.PayRefundRequired)
	b.status(expired, flashsale.OrderExpired)
}

// A return gives units of a paid order back once per return id; the same id
// with another order or other items is a conflict, and no item gives back
// more than it kept.
func bookReturns(t *testing.T, newBook NewBook) {
	b := book{t, newBook(t, saleOf("a", 10, 3))}
	paid := b.newOrder("u1", time.Hour, line("a", 3))
	b.pay(paid, false, flashsale.PayPaid)
	unpaid := b.newOrder("u2", time.Hour, line("a", 1))
	ret := func(id string, ref flashsale.OrderRef, q int) (*flashsale.Order, bool, error) {
		return b.Return(ctx, flashsale.ReturnRequest{ID: id, OrderID: ref.Order, Lines: []flashsale.Line{line("a", q)}}, time.Now())
	}
	o, replay, err := ret("r1", paid, 1)
	if err != nil || replay || o.Items[0].Returned != 1 {
		t.Fatalf("return: %+v replay %v, %v; want one unit returned", o, replay, err)
	}
	o, replay, err = ret("r1", paid, 1)
	if err != nil || !replay || o.Items[0].Returned != 1 {
		t.Fatalf("the same return again: %+v replay %v, %v; want a replay, one unit returned", o, replay, err)
	}
	_, _, err = ret("r1", paid, 2)
	wantCode(t, "the return id with other items", err, flashsale.CodeConflict)
	_, _, err = ret("r1", unpaid, 1)
	wantCode(t, "the return id for another order", err, flashsale.CodeConflict)
	_, _, err = ret("r2", paid, 3)
	wantCode(t, "more units than are left", err, flashsale.CodeInvalidQuantity)
	_, _, err = ret("r3", unpaid, 1)
	wantCode(t, "a return of an unpaid order", err, flashsale.CodeNotPaid)
	_, _, err = ret("r4", flashsale.OrderRef{User: "u1", Order: uuid.NewString()}, 1)
	wantCode(t, "a return of an unknown order", err, flashsale.CodeNotFound)
	if o, replay, err := ret("r3", paid, 2); err != nil || replay || o.Items[0].Returned != 3 {
		t.Fatalf("a return id refused before, for a paid order: %+v replay %v, %v; want applied", o, replay, err)
	}
}
