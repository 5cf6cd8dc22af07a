package storetest

import (
	"context"
	"reflect"
	"testing"
	"time"

	"github.com/flashsale/flashsale"
	"github.com/flashsale/flashsale/lifecycle"
	"github.com/flashsale/flashsale/worker"
)

// Stock is the stock store as the worker and the lifecycle use it, with the
// two reads the ingress makes of it (ingress.Stock's Stock and GetTicket):
// the sale's figures and a ticket's fast copy.
type Stock interface {
	worker.Stock
	lifecycle.Stock
	Stock(ctx context.Context, saleID string) (flashsale.StockLevel, error)
	GetTicket(ctx context.Context, ticketID string) (*flashsale.Ticket, error)
}

// NewStock returns a stock store of the test's own with sale loaded: its
// stock all available, nothing held.
type NewStock func(t *testing.T, sale *flashsale.Sale) Stock

// RunStock runs the stock store's suite: each case on a store of its own.
// The claims of the ingress are not in it: holds are taken without them, as
// after Redis lost a claim (a ticket with no live entry is held).
func RunStock(t *testing.T, newStock NewStock) {
	t.Helper()
	run(t, newStock, []testCase[NewStock]{
		{"HoldIsIdempotentPerTicket", stockHoldIsIdempotentPerTicket},
		{"HoldRefusedSoldOut", stockHoldRefusedSoldOut},
		{"OneLiveTicketPerUser", stockOneLiveTicketPerUser},
		{"PerUserLimit", stockPerUserLimit},
		{"ReleasedIsNeverHeldAgain", stockReleasedIsNeverHeldAgain},
		{"ConfirmMakesSold", stockConfirmMakesSold},
		{"ConfirmFollowsAPaidOrder", stockConfirmFollowsAPaidOrder},
		{"RetakeHoldsAReleasedTicketOnce", stockRetakeHoldsAReleasedTicketOnce},
		{"ReturnLowersToWhatIsKept", stockReturnLowersToWhatIsKept},
		{"ReassertCountsALostHold", stockReassertCountsALostHold},
		{"TicketCopiesNeverMoveBack", stockTicketCopiesNeverMoveBack},
		{"ResyncKeepsWhatTheBookDoesNotKnow", stockResyncKeepsWhatTheBookDoesNotKnow},
	})
}

// stock is one case's store and sale, with helpers that fail the test.
type stock struct {
	t    *testing.T
	sale *flashsale.Sale
	Stock
}

func newStockCase(t *testing.T, newStock NewStock, units, limit int) stock {
	sale := saleOf("s1", units, limit)
	return stock{t, sale, newStock(t, sale)}
}

// part is user's ticket's share of q units of the sale.
func (s stock) part(user, ticket string, q int) flashsale.Part {
	return flashsale.Part{SaleID: s.sale.ID, TicketID: ticket, UserID: user, Quantity: q}
}

// hold holds q units for user's ticket and checks the hold.
func (s stock) hold(user, ticket string, q int, want string) {
	s.t.Helper()
	req := &flashsale.PurchaseRequest{TicketID: ticket, SaleID: s.sale.ID, UserID: user, Quantity: q, AdmittedAt: time.Now()}
	holds, errs := s.Hold(ctx, []*flashsale.Sale{s.sale}, []*flashsale.PurchaseRequest{req})
	must(s.t, "hold", errs[0])
	if got := holdString(holds[0]); got != want {
		s.t.Fatalf("hold of %s by %s (%d units): %s, want %s", ticket, user, q, got, want)
	}
}

// before checks a step's answer: no error, and the state before it.
func (s stock) before(what string, h flashsale.Hold, err error, want string) {
	s.t.Helper()
	must(s.t, what, err)
	if got := holdString(h); got != want {
		s.t.Fatalf("%s: state before %s, want %s", what, got, want)
	}
}

// step runs op (Release, Confirm or Return) on q units of user's ticket and
// checks the state it answers, the one before.
func (s stock) step(what string, op func(context.Context, flashsale.Part) (flashsale.Hold, error), user, ticket string, q int, want string) {
	s.t.Helper()
	h, err := op(ctx, s.part(user, ticket, q))
	s.before(what, h, err, want)
}

// figures checks the sale's figures: they always add up to its stock.
func (s stock) figures(available, held, sold int) {
	s.t.Helper()
	st, err := s.Stock.Stock(ctx, s.sale.ID)
	must(s.t, "stock", err)
	want := flashsale.StockLevel{Total: s.sale.Stock, Available: available, Held: held, Sold: sold}
	if st != want {
		s.t.Fatalf("stock %+v, want %+v", st, want)
	}
}

// A hold is taken once per ticket: a second hold of the ticket answers the
// first.
func stockHoldIsIdempotentPerTicket(t *testing.T, newStock NewStock) {
	s := newStockCase(t, newStock, 5, 2)
	s.hold("u1", "t1", 2, "H:2")
	s.hold("u1", "t1", 2, "H:2")
	s.figures(3, 2, 0)
}

// A ticket asking for more units than are available is refused sold out, for
// good: units that come back later do not hold it.
func stockHoldRefusedSoldOut(t *testing.T, newStock NewStock) {
	s := newStockCase(t, newStock, 1, 2)
	s.hold("u1", "t1", 1, "H:1")
	s.hold("u2", "t2", 1, "X")
	s.step("release", s.Release, "u1", "t1", 1, "H:1")
	s.hold("u2", "t2", 1, "X")
	s.figures(1, 0, 0)
}

// A user holds one live ticket per sale: another ticket of theirs is refused
// (failed) until the first is sold or released.
func stockOneLiveTicketPerUser(t *testing.T, newStock NewStock) {
	s := newStockCase(t, newStock, 5, 3)
	s.hold("u1", "t1", 1, "H:1")
	s.hold("u1", "t2", 1, "F")
	s.hold("u2", "t3", 1, "H:1")
	s.step("confirm", s.Confirm, "u1", "t1", 1, "H:1")
	s.hold("u1", "t4", 1, "H:1")
	s.figures(2, 2, 1)
}

// A user's held and sold units of a sale stay within its per_user_limit;
// released units no longer count.
func stockPerUserLimit(t *testing.T, newStock NewStock) {
	s := newStockCase(t, newStock, 10, 2)
	s.hold("u1", "t1", 3, "F")
	s.hold("u1", "t2", 2, "H:2")
	s.step("release", s.Release, "u1", "t2", 2, "H:2")
	s.hold("u1", "t3", 2, "H:2")
	s.step("confirm", s.Confirm, "u1", "t3", 2, "H:2")
	s.hold("u1", "t4", 1, "F")
	s.figures(8, 0, 2)
}

// A release gives a held ticket's units back once and marks the ticket
// released: never held again, also when it was released before it was ever
// held (a dead letter that overtook its purchase). A sold ticket stays sold.
func stockReleasedIsNeverHeldAgain(t *testing.T, newStock NewStock) {
	s := newStockCase(t, newStock, 5, 2)
	s.hold("u1", "t1", 2, "H:2")
	s.step("release", s.Release, "u1", "t1", 2, "H:2")
	s.step("release again", s.Release, "u1", "t1", 2, "R")
	s.hold("u1", "t1", 2, "R")
	s.figures(5, 0, 0)
	s.step("release of a ticket never held", s.Release, "u2", "t2", 1, "none")
	s.hold("u2", "t2", 1, "R")
	s.hold("u3", "t3", 1, "H:1")
	s.step("confirm", s.Confirm, "u3", "t3", 1, "H:1")
	s.step("release of a sold ticket", s.Release, "u3", "t3", 1, "S:1")
	s.figures(4, 0, 1)
}

// A confirm makes a held ticket's units sold, once.
func stockConfirmMakesSold(t *testing.T, newStock NewStock) {
	s := newStockCase(t, newStock, 5, 2)
	s.hold("u1", "t1", 2, "H:2")
	s.step("confirm", s.Confirm, "u1", "t1", 2, "H:2")
	s.figures(3, 0, 2)
	s.step("confirm again", s.Confirm, "u1", "t1", 2, "S:2")
	s.figures(3, 0, 2)
}

// A confirm follows a paid order whatever the stock store holds: a ticket it
// released or never held takes its units as sold.
func stockConfirmFollowsAPaidOrder(t *testing.T, newStock NewStock) {
	s := newStockCase(t, newStock, 5, 2)
	s.hold("u1", "t1", 2, "H:2")
	s.step("release", s.Release, "u1", "t1", 2, "H:2")
	s.step("confirm of a released ticket", s.Confirm, "u1", "t1", 2, "R")
	s.figures(3, 0, 2)
	s.step("confirm of a ticket never held", s.Confirm, "u2", "t2", 1, "none")
	s.figures(2, 0, 3)
}

// A retake (a late payment) holds a released ticket's units again if all are
// available, and leaves a ticket held already as it is.
func stockRetakeHoldsAReleasedTicketOnce(t *testing.T, newStock NewStock) {
	s := newStockCase(t, newStock, 3, 2)
	s.hold("u1", "t1", 2, "H:2")
	s.step("release", s.Release, "u1", "t1", 2, "H:2")
	h, ok, err := s.Retake(ctx, s.part("u1", "t1", 2))
	s.before("retake", h, err, "R")
	if !ok {
		t.Fatal("retake: not taken, want the units held again")
	}
	s.figures(1, 2, 0)
	h, ok, err = s.Retake(ctx, s.part("u1", "t1", 2))
	s.before("retake again", h, err, "H:2")
	if !ok {
		t.Fatal("retake again: not ok, want the hold as it is")
	}
	s.figures(1, 2, 0)
	s.step("release", s.Release, "u1", "t1", 2, "H:2")
	s.hold("u2", "t2", 2, "H:2")
	if _, ok, err := s.Retake(ctx, s.part("u1", "t1", 2)); err != nil || ok {
		t.Fatalf("retake with 1 of 2 units available: ok %v, %v; want refused", ok, err)
	}
	s.figures(1, 2, 0)
}

// A return lowers a paid ticket's units to what its order keeps, putting the
// rest back on sale; a return to as many or more units changes nothing.
func stockReturnLowersToWhatIsKept(t *testing.T, newStock NewStock) {
	s := newStockCase(t, newStock, 5, 3)
	s.hold("u1", "t1", 3, "H:3")
	s.step("confirm", s.Confirm, "u1", "t1", 3, "H:3")
	s.step("return to 1", s.Return, "u1", "t1", 1, "S:3")
	s.figures(4, 0, 1)
	s.step("return to 2 after", s.Return, "u1", "t1", 2, "S:1")
	s.step("return to 1 again", s.Return, "u1", "t1", 1, "S:1")
	s.figures(4, 0, 1)
	s.hold("u1", "t2", 2, "H:2") // within the limit again
}

// A re-assert after an order committed counts its hold where the stock store
// lost it or refused the ticket, and changes nothing where it is counted.
func stockReassertCountsALostHold(t *testing.T, newStock NewStock) {
	s := newStockCase(t, newStock, 3, 2)
	reassert := func(p flashsale.Part, want string) {
		t.Helper()
		holds, errs := s.Reassert(ctx, []flashsale.Part{p})
		s.before("re-assert of "+p.TicketID, holds[0], errs[0], want)
	}
	s.hold("u1", "t1", 1, "H:1")
	reassert(s.part("u1", "t1", 1), "H:1")
	s.figures(2, 1, 0)
	reassert(s.part("u2", "t2", 1), "H:1")
	s.figures(1, 2, 0)
	s.hold("u3", "t3", 2, "X")
	reassert(s.part("u3", "t3", 1), "H:1")
	s.figures(0, 3, 0)
	s.hold("u2", "t4", 1, "F") // t2 is u2's live ticket now
}

// A ticket's fast copy only moves forward: queued, pending_payment, then a
// final status.
func stockTicketCopiesNeverMoveBack(t *testing.T, newStock NewStock) {
	s := newStockCase(t, newStock, 5, 2)
	copyOf := func(st flashsale.TicketStatus) *flashsale.Ticket {
		tk := &flashsale.Ticket{ID: "t1", UserID: "u1", Status: st}
		tk.SetLines([]flashsale.Line{{SaleID: s.sale.ID, Quantity: 2}})
		if st != flashsale.TicketQueued {
			tk.OrderID = "t1"
		}
		return tk
	}
	read := func(want flashsale.TicketStatus) {
		t.Helper()
		tk, err := s.GetTicket(ctx, "t1")
		if err != nil || tk.Status != want || tk.UserID != "u1" || len(tk.Lines()) != 1 || tk.Lines()[0].Quantity != 2 {
			t.Fatalf("ticket copy %+v, %v; want u1's, %s, 2 units", tk, err, want)
		}
	}
	_, err := s.GetTicket(ctx, "t1")
	wantCode(t, "the copy of a ticket never written", err, flashsale.CodeNotFound)
	// The order of a pending_payment copy comes back as it was written
	// (flashsale.Ticket.Unpaid); a copy further along has none.
	created := time.Now().UTC().Truncate(time.Microsecond)
	order := &flashsale.Order{ID: "t1", UserID: "u1", Status: flashsale.OrderPendingPayment, CreatedAt: created, PayBy: created.Add(time.Minute)}
	order.SetItems([]flashsale.OrderItem{{SaleID: s.sale.ID, Quantity: 2, AmountCents: 400}})
	unpaid := func(want *flashsale.Order) {
		t.Helper()
		tk, err := s.GetTicket(ctx, "t1")
		if err != nil || !reflect.DeepEqual(tk.Unpaid, want) {
			t.Fatalf("the order of the ticket copy: %+v, %v; want %+v", tk.Unpaid, err, want)
		}
	}
	pending := copyOf(flashsale.TicketPendingPayment)
	pending.Unpaid = order
	must(t, "put", s.PutTickets(ctx, pending))
	read(flashsale.TicketPendingPayment)
	unpaid(order)
	must(t, "put queued", s.PutTickets(ctx, copyOf(flashsale.TicketQueued)))
	read(flashsale.TicketPendingPayment)
	unpaid(order)
	must(t, "put paid", s.PutTickets(ctx, copyOf(flashsale.TicketPaid)))
	read(flashsale.TicketPaid)
	unpaid(nil)
	must(t, "put pending", s.PutTickets(ctx, pending))
	read(flashsale.TicketPaid)
	unpaid(nil)
}

// A resync (MySQL refused units the stock store held) rebuilds the sale from
// the book of record; what the book does not know yet (a hold whose order is
// not committed) survives it.
func stockResyncKeepsWhatTheBookDoesNotKnow(t *testing.T, newStock NewStock) {
	s := newStockCase(t, newStock, 5, 2)
	s.hold("u1", "t1", 2, "H:2")
	must(t, "resync", s.Resync(ctx, s.sale.ID))
	s.figures(3, 2, 0)
	s.hold("u1", "t1", 2, "H:2")
	s.hold("u1", "t2", 1, "F")
}
