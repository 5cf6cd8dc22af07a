package mock

import (
	"context"
	"encoding/json"
	"sort"
	"sync"
	"time"

	"github.com/flashsale/flashsale"
)

// Book is an in-memory book of record (worker.Orders, lifecycle.Book,
// ingress.Orders) on one shard: orders and the decisions of tickets that made
// none, one per ticket and the first standing; payment ids bound to orders;
// returns applied once per return id. It keeps MySQL's rules, and passes the
// book of record's suite (internal/storetest.RunBook) as mysqlstore does: one
// unpaid order per user and sale (also within one batch: a second row of the
// same ticket is a live conflict), each user's pending and paid units within
// the sale's per_user_limit, all orders within the sale's stock (the stock
// cap), transitions conditional on pending_payment and due by the now they
// are given, a payment id's first outcome standing, a late payment reviving
// only within the cap and the limit. The sales are those in Sales: an order
// of a sale not there is an error, as in MySQL. Decisions are recorded in
// Steps as "decide <status>"; share the Steps of a Stock to see them in order
// with its calls.
type Book struct {
	Steps *Steps
	// Sales are the sales orders are created in (their stock and
	// per_user_limit).
	Sales Sales

	mu        sync.Mutex
	Orders    map[string]*flashsale.Order     // by id
	Decisions map[string]*flashsale.Ticket    // decided tickets without an order, by id
	Bound     map[string]string               // payment id -> order id
	Paid      map[string]flashsale.PayOutcome // payment id -> its outcome
	returns   map[string]string               // return id -> its request (order and lines)
	// CapFull: the stock cap has no room whatever the sales' stock (Redis
	// held units MySQL refuses): new orders are refused sold out and an
	// expired order is not revived by a late payment.
	CapFull bool
	// Err, when set, is what every call answers (MySQL away).
	Err error
	// Revived is the revive flag of the last Pay.
	Revived bool
}

// NewBook returns an empty Book recording into steps (a new Steps when nil).
// Set Sales before creating orders.
func NewBook(steps *Steps) *Book {
	if steps == nil {
		steps = &Steps{}
	}
	return &Book{Steps: steps, Sales: Sales{}, Orders: map[string]*flashsale.Order{}, Decisions: map[string]*flashsale.Ticket{},
		Bound: map[string]string{}, Paid: map[string]flashsale.PayOutcome{}, returns: map[string]string{}}
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
		return copyOrder(o)
	}
	return nil
}

// Decision returns the recorded decision of a ticket without an order, ""
// when there is none.
func (b *Book) Decision(ticketID string) flashsale.TicketStatus {
	b.mu.Lock()
	defer b.mu.Unlock()
	if t := b.Decisions[ticketID]; t != nil {
		return t.Status
	}
	return ""
}

func copyOrder(o *flashsale.Order) *flashsale.Order {
	c := *o
	c.Items = append([]flashsale.OrderItem(nil), o.Items...)
	return &c
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
	return copyOrder(o), nil
}

// userSale is a user's part of a sale.
type userSale struct{ sale, user string }

// holding is what the stored orders hold, as MySQL counts it for the stock
// cap and the per-user limit: each sale's units and each user's units of a
// sale in pending and paid orders (less returned), and whether the user has
// an unpaid order of the sale. The caller holds mu.
func (b *Book) holding() (used map[string]int, units map[userSale]int, live map[userSale]bool) {
	used, units, live = map[string]int{}, map[userSale]int{}, map[userSale]bool{}
	for _, o := range b.Orders {
		if o.Status != flashsale.OrderPendingPayment && o.Status != flashsale.OrderPaid {
			continue
		}
		for _, l := range o.Lines() {
			k := userSale{l.SaleID, o.UserID}
			used[l.SaleID] += l.Quantity
			units[k] += l.Quantity
			live[k] = live[k] || o.Status == flashsale.OrderPendingPayment
		}
	}
	return used, units, live
}

// sale returns the sale, or the error MySQL answers for one it does not
// know; the caller holds mu.
func (b *Book) sale(id string) (*flashsale.Sale, error) {
	if s := b.Sales[id]; s != nil {
		return s, nil
	}
	return nil, flashsale.Errorf(flashsale.CodeNotFound, "no sale %q", id)
}

// fits reports whether o's items fit in their sales' stock with used units
// taken, and within the user's per_user_limit with units taken (a nil units
// skips the limit); the caller holds mu.
func (b *Book) fits(o *flashsale.Order, used map[string]int, units map[userSale]int) (capOK, limitOK bool, err error) {
	capOK, limitOK = !b.CapFull, true
	for _, l := range o.Lines() {
		sale, err := b.sale(l.SaleID)
		if err != nil {
			return false, false, err
		}
		capOK = capOK && used[l.SaleID]+l.Quantity <= sale.Stock
		limitOK = limitOK && (units == nil || units[userSale{l.SaleID, o.UserID}]+l.Quantity <= sale.PerUserLimit)
	}
	return capOK, limitOK, nil
}

// ShardOf is 0: one shard.
func (b *Book) ShardOf(string) int { return 0 }

// CreateOrders decides each order as MySQL's order transaction does: an order
// whose ticket has one already existed, a decided ticket is refused with its
// decision, then, in batch order, a second unpaid order of the user in a
// sale is a live conflict, an order over the user's limit is over_limit, and
// an order that does not fit in the stock cap (with the batch's earlier
// orders taken) is sold out. The others are stored.
func (b *Book) CreateOrders(_ context.Context, _ int, orders []*flashsale.Order) ([]flashsale.OrderResult, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.Err != nil {
		return nil, b.Err
	}
	used, units, live := b.holding()
	out := make([]flashsale.OrderResult, len(orders))
	var fresh []int
	for i, o := range orders {
		conflict := false
		for _, l := range o.Lines() {
			conflict = conflict || live[userSale{l.SaleID, o.UserID}]
		}
		_, limitOK, err := b.fits(o, used, units)
		if err != nil {
			return nil, err
		}
		switch {
		case b.Orders[o.ID] != nil:
			out[i] = flashsale.OrderResult{Outcome: flashsale.CreateExisted, Current: copyOrder(b.Orders[o.ID])}
		case b.Decisions[o.ID] != nil:
			out[i] = flashsale.OrderResult{Outcome: flashsale.CreateDecided, Decision: b.Decisions[o.ID].Status}
		case conflict:
			out[i] = flashsale.OrderResult{Outcome: flashsale.CreateLiveConflict}
		case !limitOK:
			out[i] = flashsale.OrderResult{Outcome: flashsale.CreateOverLimit}
		default:
			fresh = append(fresh, i)
			for _, l := range o.Lines() {
				k := userSale{l.SaleID, o.UserID}
				live[k], units[k] = true, units[k]+l.Quantity
			}
		}
	}
	for _, i := range fresh {
		o := orders[i]
		if capOK, _, _ := b.fits(o, used, nil); !capOK {
			out[i] = flashsale.OrderResult{Outcome: flashsale.CreateSoldOut}
			continue
		}
		for _, l := range o.Lines() {
			used[l.SaleID] += l.Quantity
		}
		b.Orders[o.ID] = copyOrder(o)
		out[i] = flashsale.OrderResult{Outcome: flashsale.CreateNew, Current: copyOrder(o)}
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
// decision; flashsale.ErrNotFound when it has neither (also for another
// user's).
func (b *Book) GetTicket(ctx context.Context, ref flashsale.TicketRef) (*flashsale.Ticket, error) {
	if o, err := b.GetOrder(ctx, flashsale.OrderRef{User: ref.User, Order: ref.Ticket}); err == nil {
		return flashsale.TicketOf(o), nil
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.Err != nil {
		return nil, b.Err
	}
	if t := b.Decisions[ref.Ticket]; t != nil && t.UserID == ref.User {
		c := *t
		c.SetLines(append([]flashsale.Line(nil), t.Lines()...))
		return &c, nil
	}
	return nil, flashsale.Errorf(flashsale.CodeNotFound, "no ticket %q", ref.Ticket)
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
		switch d := b.Decisions[t.ID]; {
		case b.Orders[t.ID] != nil:
			stand[t.ID] = flashsale.TicketPendingPayment
		case d == nil:
			c := *t
			c.SetLines(append([]flashsale.Line(nil), t.Lines()...))
			b.Decisions[t.ID] = &c
		case d.Status != t.Status:
			stand[t.ID] = d.Status
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
	b.Orders[o.ID] = copyOrder(o)
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
	return b.bind(ref, paymentID)
}

// bind is BindPayment; b.mu is held.
func (b *Book) bind(ref flashsale.OrderRef, paymentID string) error {
	if o := b.Bound[paymentID]; o != "" && o != ref.Order {
		return flashsale.Errorf(flashsale.CodeConflict, "payment %q was used for another order", paymentID)
	}
	b.Bound[paymentID] = ref.Order
	return nil
}

// Pay applies a succeeded payment: a pending order becomes paid, and so does
// an expired one with revive when the stock cap and the user's per_user_limit
// still have room for it; any other order is refund_required. A payment id
// seen before answers its first outcome.
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
	return b.pay(o, paymentID, revive, now)
}

// Settle applies a payment notification: an unknown order is
// flashsale.ErrNotFound, another amount flashsale.ErrAmountMismatch, a failed
// payment flashsale.PayFailed; a succeeded one binds its payment id, then is
// paid as Pay pays it without revive, but an expired order is
// flashsale.ErrNeedsRevive with the order, unchanged. It does not set Revived.
func (b *Book) Settle(_ context.Context, ref flashsale.OrderRef, p flashsale.Payment, now time.Time) (flashsale.PayOutcome, *flashsale.Order, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	o, err := b.lookup(ref)
	if err != nil {
		return "", nil, err
	}
	if o.AmountCents != p.AmountCents {
		return "", nil, flashsale.Errorf(flashsale.CodeAmountMismatch, "amount %d differs from the order's %d", p.AmountCents, o.AmountCents)
	}
	if !p.Succeeded {
		return flashsale.PayFailed, o, nil
	}
	if err := b.bind(ref, p.PaymentID); err != nil {
		return "", nil, err
	}
	if o.Status == flashsale.OrderExpired {
		return "", o, flashsale.ErrNeedsRevive
	}
	return b.pay(o, p.PaymentID, false, now)
}

// pay decides a payment of o, whose amount it pays; b.mu is held.
func (b *Book) pay(o *flashsale.Order, paymentID string, revive bool, now time.Time) (flashsale.PayOutcome, *flashsale.Order, error) {
	if prior := b.Paid[paymentID]; prior != "" {
		return prior, o, nil
	}
	ok := o.Status == flashsale.OrderPendingPayment
	if o.Status == flashsale.OrderExpired && revive {
		used, units, _ := b.holding()
		capOK, limitOK, err := b.fits(o, used, units)
		if err != nil {
			return "", nil, err
		}
		ok = capOK && limitOK
	}
	outcome := flashsale.PayRefundRequired
	if ok {
		outcome = flashsale.PayPaid
		o.Status, o.PaidAt, o.PaymentID = flashsale.OrderPaid, &now, &paymentID
		b.Orders[o.ID] = copyOrder(o)
	}
	b.Paid[paymentID] = outcome
	return outcome, o, nil
}

// Return adds the request's lines to the items' returned units of a paid
// order, once per return id (replay is true for one applied before); the
// same return id with another order or other lines is flashsale.ErrConflict.
// A request refused (flashsale.ErrNotPaid, invalid_quantity) does not take
// its return id.
func (b *Book) Return(_ context.Context, r flashsale.ReturnRequest, _ time.Time) (*flashsale.Order, bool, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.Err != nil {
		return nil, false, b.Err
	}
	stored := b.Orders[r.OrderID]
	if stored == nil {
		return nil, false, flashsale.Errorf(flashsale.CodeNotFound, "no order %q", r.OrderID)
	}
	o, err := b.lookup(stored.Ref())
	if err != nil {
		return nil, false, err
	}
	lines := append([]flashsale.Line(nil), r.Lines...)
	sort.Slice(lines, func(i, j int) bool { return lines[i].SaleID < lines[j].SaleID })
	body, _ := json.Marshal(lines)
	request := r.OrderID + " " + string(body)
	switch b.returns[r.ID] {
	case request:
		return o, true, nil
	case "":
	default:
		return nil, false, flashsale.Errorf(flashsale.CodeConflict, "return %q was used with another order or other items", r.ID)
	}
	if err := o.CheckReturn(lines); err != nil {
		return nil, false, err
	}
	b.returns[r.ID] = request
	for _, l := range lines {
		for i := range o.Items {
			if o.Items[i].SaleID == l.SaleID {
				o.Items[i].Returned += l.Quantity
			}
		}
	}
	b.Orders[o.ID] = copyOrder(o)
	return o, false, nil
}
