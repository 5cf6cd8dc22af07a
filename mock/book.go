package mock

import (
	"context"
	"sync"
	"time"

	"github.com/flashsale/flashsale"
)

// Book is an in-memory book of record (worker.Orders, lifecycle.Book,
// ingress.Orders) on one shard: orders and the decisions of tickets that made
// none, one per ticket and the first standing; payment ids bound to orders;
// returns applied once. Its transitions keep MySQL's rules (conditional on
// pending_payment, due by the now they are given, a payment id's first
// outcome standing) without the stock cap, which CapFull stands in for.
// Decisions are recorded in Steps as "decide <status>"; share the Steps of a
// Stock to see them in order with its calls.
type Book struct {
	Steps *Steps

	mu        sync.Mutex
	Orders    map[string]*flashsale.Order       // by id
	Decisions map[string]flashsale.TicketStatus // by ticket id
	Bound     map[string]string                 // payment id -> order id
	Paid      map[string]flashsale.PayOutcome   // payment id -> its outcome
	Returns   map[string]bool                   // return ids applied
	// CapFull: the stock cap has no room: new orders are refused sold out
	// and an expired order is not revived by a late payment.
	CapFull bool
	// Err, when set, is what every call answers (MySQL away).
	Err error
	// Revived is the revive flag of the last Pay.
	Revived bool
}

// NewBook returns an empty Book recording into steps (a new Steps when nil).
func NewBook(steps *Steps) *Book {
	if steps == nil {
		steps = &Steps{}
	}
	return &Book{Steps: steps, Orders: map[string]*flashsale.Order{}, Decisions: map[string]flashsale.TicketStatus{},
		Bound: map[string]string{}, Paid: map[string]flashsale.PayOutcome{}, Returns: map[string]bool{}}
}

// Put stores o as it is.
func (b *Book) Put(o *flashsale.Order) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.Orders[o.ID] = o
}

// Order returns a copy of the order as stored, nil when there is none.
func (b *Book) Order(id string) *flashsale.Order {
	b.mu.Lock()
	defer b.mu.Unlock()
	if o := b.Orders[id]; o != nil {
		c := *o
		return &c
	}
	return nil
}

// lookup returns the order ref names (a copy), or flashsale.ErrNotFound;
// the caller holds mu.
func (b *Book) lookup(ref flashsale.OrderRef) (*flashsale.Order, error) {
	if b.Err != nil {
		return nil, b.Err
	}
	o := b.Orders[ref.Order]
	if o == nil || o.UserID != ref.User {
		return nil, flashsale.Errorf(flashsale.CodeNotFound, "no order %q", ref.Order)
	}
	c := *o
	c.Items = append([]flashsale.OrderItem(nil), o.Items...)
	return &c, nil
}

// ShardOf is 0: one shard.
func (b *Book) ShardOf(string) int { return 0 }

// CreateOrders stores each order unless it exists or its ticket was decided.
func (b *Book) CreateOrders(_ context.Context, _ int, orders []*flashsale.Order) ([]flashsale.OrderResult, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.Err != nil {
		return nil, b.Err
	}
	out := make([]flashsale.OrderResult, len(orders))
	for i, o := range orders {
		switch {
		case b.Orders[o.ID] != nil:
			out[i] = flashsale.OrderResult{Outcome: flashsale.CreateExisted, Current: b.Orders[o.ID]}
		case b.Decisions[o.ID] != "":
			out[i] = flashsale.OrderResult{Outcome: flashsale.CreateDecided, Decision: b.Decisions[o.ID]}
		case b.CapFull:
			out[i] = flashsale.OrderResult{Outcome: flashsale.CreateSoldOut}
		default:
			b.Orders[o.ID] = o
			out[i] = flashsale.OrderResult{Outcome: flashsale.CreateNew, Current: o}
		}
	}
	return out, nil
}

// GetOrder returns the user's order, or flashsale.ErrNotFound (also for
// another user's).
func (b *Book) GetOrder(_ context.Context, ref flashsale.OrderRef) (*flashsale.Order, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.lookup(ref)
}

// FindOrder returns the order by id alone.
func (b *Book) FindOrder(_ context.Context, orderID string) (*flashsale.Order, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.Err != nil {
		return nil, b.Err
	}
	if o := b.Orders[orderID]; o != nil {
		return b.lookup(o.Ref())
	}
	return nil, flashsale.Errorf(flashsale.CodeNotFound, "no order %q", orderID)
}

// GetTicket returns the user's ticket past queued: from its order or its
// decision; flashsale.ErrNotFound when it has neither.
func (b *Book) GetTicket(ctx context.Context, ref flashsale.TicketRef) (*flashsale.Ticket, error) {
	userID, ticketID := ref.User, ref.Ticket
	if o, err := b.GetOrder(ctx, flashsale.OrderRef{User: userID, Order: ticketID}); err == nil {
		return flashsale.TicketOf(o), nil
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.Err != nil {
		return nil, b.Err
	}
	if d := b.Decisions[ticketID]; d != "" {
		return &flashsale.Ticket{ID: ticketID, UserID: userID, Status: d}, nil
	}
	return nil, flashsale.Errorf(flashsale.CodeNotFound, "no ticket %q", ticketID)
}

// RecordOutcomes records the decisions of tickets without an order; it
// returns those that stand instead.
func (b *Book) RecordOutcomes(_ context.Context, _ int, tickets []*flashsale.Ticket) (map[string]flashsale.TicketStatus, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.Err != nil {
		return nil, b.Err
	}
	stand := map[string]flashsale.TicketStatus{}
	for _, t := range tickets {
		switch {
		case b.Orders[t.ID] != nil:
			stand[t.ID] = flashsale.TicketPendingPayment
		case b.Decisions[t.ID] == "":
			b.Decisions[t.ID] = t.Status
		case b.Decisions[t.ID] != t.Status:
			stand[t.ID] = b.Decisions[t.ID]
		}
		b.Steps.Add("decide %s", t.Status)
	}
	return stand, nil
}

// GiveUp records the ticket's decision unless it made an order first.
func (b *Book) GiveUp(ctx context.Context, t *flashsale.Ticket) (bool, error) {
	stand, err := b.RecordOutcomes(ctx, 0, []*flashsale.Ticket{t})
	return stand[t.ID] == flashsale.TicketPendingPayment, err
}

// close moves an unpaid order to status to; with dueOnly, only when it is
// due at now.
func (b *Book) close(ref flashsale.OrderRef, to flashsale.OrderStatus, now time.Time, dueOnly bool) (*flashsale.Order, bool, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	o, err := b.lookup(ref)
	if err != nil {
		return nil, false, err
	}
	if o.Status != flashsale.OrderPendingPayment || (dueOnly && !o.Due(now)) {
		return o, false, nil
	}
	o.Status = to
	stored := *o
	b.Orders[o.ID] = &stored
	return o, true, nil
}

// Expire expires the order if it is unpaid and due at now.
func (b *Book) Expire(_ context.Context, ref flashsale.OrderRef, now time.Time) (*flashsale.Order, bool, error) {
	return b.close(ref, flashsale.OrderExpired, now, true)
}

// Cancel cancels the order if it is unpaid.
func (b *Book) Cancel(_ context.Context, ref flashsale.OrderRef, now time.Time) (*flashsale.Order, bool, error) {
	return b.close(ref, flashsale.OrderCancelled, now, false)
}

// BindPayment binds paymentID to the order; bound to another one it is
// flashsale.ErrConflict.
func (b *Book) BindPayment(_ context.Context, ref flashsale.OrderRef, paymentID string) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.Err != nil {
		return b.Err
	}
	if o := b.Bound[paymentID]; o != "" && o != ref.Order {
		return flashsale.Errorf(flashsale.CodeConflict, "payment %q was used for another order", paymentID)
	}
	b.Bound[paymentID] = ref.Order
	return nil
}

// Pay applies a succeeded payment: a pending order, or an expired one with
// revive unless CapFull, becomes paid; any other order is refund_required.
// A payment id seen before answers its first outcome.
func (b *Book) Pay(_ context.Context, ref flashsale.OrderRef, paymentID string, amount int64, revive bool, now time.Time) (flashsale.PayOutcome, *flashsale.Order, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.Revived = revive
	o, err := b.lookup(ref)
	if err != nil {
		return "", nil, err
	}
	if o.AmountCents != amount {
		return "", nil, flashsale.Errorf(flashsale.CodeAmountMismatch, "amount %d differs from the order's %d", amount, o.AmountCents)
	}
	if prior := b.Paid[paymentID]; prior != "" {
		return prior, o, nil
	}
	outcome := flashsale.PayRefundRequired
	if o.Status == flashsale.OrderPendingPayment || (o.Status == flashsale.OrderExpired && revive && !b.CapFull) {
		outcome = flashsale.PayPaid
		o.Status, o.PaidAt, o.PaymentID = flashsale.OrderPaid, &now, &paymentID
		stored := *o
		b.Orders[o.ID] = &stored
	}
	b.Paid[paymentID] = outcome
	return outcome, o, nil
}

// Return adds the request's lines to the items' returned units of a paid
// order, once per return id (replay is true for one applied before).
func (b *Book) Return(_ context.Context, r flashsale.ReturnRequest, _ time.Time) (*flashsale.Order, bool, error) {
	orderID, returnID, lines := r.OrderID, r.ID, r.Lines
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.Err != nil {
		return nil, false, b.Err
	}
	stored := b.Orders[orderID]
	if stored == nil {
		return nil, false, flashsale.Errorf(flashsale.CodeNotFound, "no order %q", orderID)
	}
	o, err := b.lookup(stored.Ref())
	if err != nil {
		return nil, false, err
	}
	if b.Returns[returnID] {
		return o, true, nil
	}
	if o.Status != flashsale.OrderPaid {
		return nil, false, flashsale.ErrNotPaid
	}
	b.Returns[returnID] = true
	for _, l := range lines {
		for i := range o.Items {
			if o.Items[i].SaleID == l.SaleID {
				o.Items[i].Returned += l.Quantity
			}
		}
	}
	kept := *o
	b.Orders[o.ID] = &kept
	return o, false, nil
}
