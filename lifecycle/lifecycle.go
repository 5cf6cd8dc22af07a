// Package lifecycle moves orders out of pending_payment: expiry, cancel and
// payment. Every move is a conditional update in MySQL with its outbox row, in one
// transaction (so whichever of payment, expiry or cancel commits first wins); only
// then does Redis follow the order's status, whatever it is by then: paid orders
// are confirmed (held → sold), expired and cancelled ones released. Following is
// idempotent, so a retry, a redelivery or a second caller that lost the race
// completes what a crash between the commit and Redis left undone.
package lifecycle

import (
	"context"
	"errors"
	"log/slog"
	"time"

	"github.com/flashsale/flashsale"
)

// Book is the book of record's order transitions.
type Book interface {
	// Expire and Cancel return the order as it stands afterwards and whether the
	// call changed it; errors wrap flashsale.ErrNotFound for an unknown order.
	Expire(ctx context.Context, ref flashsale.OrderRef, now time.Time) (*flashsale.Order, bool, error)
	Cancel(ctx context.Context, ref flashsale.OrderRef, now time.Time) (*flashsale.Order, bool, error)
	// Pay applies a succeeded payment; with revive, an expired order whose
	// units the caller took again in the stock store is paid if MySQL's stock
	// cap and per-user limit allow. Errors wrap flashsale.ErrNotFound or
	// flashsale.ErrAmountMismatch.
	Pay(ctx context.Context, ref flashsale.OrderRef, paymentID string, amount int64, revive bool, now time.Time) (flashsale.PayOutcome, *flashsale.Order, error)
	// Settle applies payment notification p to ref's order, deciding on the
	// order as it reads it once, under lock: unknown, flashsale.ErrNotFound;
	// another amount, flashsale.ErrAmountMismatch; a failed payment,
	// flashsale.PayFailed with the order (nothing bound or written). A
	// succeeded one binds its payment id first (BindPayment) and is then
	// applied as Pay without revive applies it, except on an expired order:
	// that is flashsale.ErrNeedsRevive with the order, nothing written (the
	// caller takes the units again and calls Pay).
	Settle(ctx context.Context, ref flashsale.OrderRef, p flashsale.Payment, now time.Time) (flashsale.PayOutcome, *flashsale.Order, error)
	// BindPayment binds a payment id to the order it pays, across shards; one
	// bound to another order is flashsale.ErrConflict.
	BindPayment(ctx context.Context, ref flashsale.OrderRef, paymentID string) error
	// Return gives units of a paid order back (see mysqlstore.Store.Return);
	// replay reports a return id applied before.
	Return(ctx context.Context, r flashsale.ReturnRequest, now time.Time) (o *flashsale.Order, replay bool, err error)
	// FindOrder finds an order by id alone (on every shard); GetOrder reads
	// ref's order on its user's shard. Both: flashsale.ErrNotFound.
	FindOrder(ctx context.Context, orderID string) (*flashsale.Order, error)
	GetOrder(ctx context.Context, ref flashsale.OrderRef) (*flashsale.Order, error)
}

// Stock is the stock store that follows MySQL.
type Stock interface {
	Release(ctx context.Context, p flashsale.Part) (flashsale.Hold, error)
	Confirm(ctx context.Context, p flashsale.Part) (flashsale.Hold, error)
	// Retake holds a released ticket's p.Quantity units again if all are
	// available.
	Retake(ctx context.Context, p flashsale.Part) (flashsale.Hold, bool, error)
	// Return lowers a paid ticket's units in a sale to p.Quantity, once.
	Return(ctx context.Context, p flashsale.Part) (flashsale.Hold, error)
	PutTickets(ctx context.Context, tickets ...*flashsale.Ticket) error
	// GetTicket reads a ticket's fast copy; flashsale.ErrNotFound when there
	// is none.
	GetTicket(ctx context.Context, ticketID string) (*flashsale.Ticket, error)
}

// Config for a Service.
type Config struct {
	Book  Book  // required
	Stock Stock // required
	// Strikes counts orders that expired unpaid (see strikes.go); nil: none.
	Strikes Strikes
	// Log default slog.Default().
	Log *slog.Logger
	// Now is the clock; default time.Now.
	Now func() time.Time
}

// Service applies order transitions. Safe for concurrent use.
type Service struct {
	cfg Config
	log *slog.Logger
}

// New returns a Service.
func New(cfg Config) (*Service, error) {
	if cfg.Book == nil || cfg.Stock == nil {
		return nil, errors.New("lifecycle: Book and Stock are required")
	}
	if cfg.Log == nil {
		cfg.Log = slog.Default()
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	return &Service{cfg: cfg, log: cfg.Log}, nil
}

// Follow makes Redis and the ticket copy agree with the order's status in MySQL.
// It is idempotent.
func (s *Service) Follow(ctx context.Context, o *flashsale.Order) error {
	for i, p := range o.Parts() {
		var err error
		switch o.Status {
		case flashsale.OrderPaid:
			_, err = s.cfg.Stock.Confirm(ctx, p)
			if err == nil && o.Items[i].Returned > 0 {
				_, err = s.cfg.Stock.Return(ctx, p)
			}
		case flashsale.OrderExpired, flashsale.OrderCancelled:
			_, err = s.cfg.Stock.Release(ctx, p)
		}
		if err != nil {
			return err
		}
	}
	return s.cfg.Stock.PutTickets(ctx, flashsale.TicketOf(o))
}

// Refollow makes the stock store and the ticket copy follow the order's
// status (Follow) unless its ticket copy says that status already, and
// reports whether it had to. Follow writes the copy last, once the stock
// store followed, so a copy that says the order's status means its units
// followed too; a copy that is missing or says another status (pending_payment
// after an expiry whose release failed) is followed again. Errors are the
// stock store's: Redis away, try again later.
func (s *Service) Refollow(ctx context.Context, o *flashsale.Order) (bool, error) {
	t, err := s.cfg.Stock.GetTicket(ctx, o.ID)
	switch {
	case err == nil && t.Status == flashsale.TicketOf(o).Status:
		return false, nil
	case err != nil && !errors.Is(err, flashsale.ErrNotFound):
		return false, err
	}
	if err := s.Follow(ctx, o); err != nil {
		return false, err
	}
	return true, nil
}

// Expire expires the order if it is unpaid and due (see flashsale's
// expiry.go), and gives its units back: ExpireInBook, then Follow. It returns
// the order as it stands: still pending_payment when it is not due yet. An
// error after the order expired in MySQL (Redis away) leaves the release to a
// retry, which completes it.
func (s *Service) Expire(ctx context.Context, ref flashsale.OrderRef) (*flashsale.Order, error) {
	o, err := s.ExpireInBook(ctx, ref)
	if err != nil {
		return nil, err
	}
	return o, s.Follow(ctx, o)
}

// ExpireInBook is the MySQL part of Expire: the order is expired in the book
// of record if it is unpaid and due, and its user's unpaid strike is counted
// when this call expired it. The stock store and the ticket copy are not
// touched: the order's units stay held in Redis until Follow or Refollow makes
// Redis follow (until then admission sees the ticket live, and no one else can
// take its units). It returns the order as it stands, like Expire; its errors
// are the book's (flashsale.ErrNotFound for an unknown order), never Redis's.
func (s *Service) ExpireInBook(ctx context.Context, ref flashsale.OrderRef) (*flashsale.Order, error) {
	o, changed, err := s.cfg.Book.Expire(ctx, ref, s.cfg.Now())
	if err != nil {
		return nil, err
	}
	if changed {
		s.log.Debug("order expired", "order", ref.Order, "sale", o.SaleID)
		s.strike(ctx, o)
	}
	return o, nil
}

// Cancel cancels the user's unpaid order and gives its units back; a
// cancelled order is returned unchanged. A paid order is
// flashsale.ErrAlreadyPaid; an expired one is returned as it is (its units
// went back already).
func (s *Service) Cancel(ctx context.Context, ref flashsale.OrderRef) (*flashsale.Order, error) {
	o, _, err := s.cfg.Book.Cancel(ctx, ref, s.cfg.Now())
	if err != nil {
		return nil, err
	}
	// Redis away: the cancel is committed, the caller is answered 503 and its
	// retry (idempotent) completes the release.
	if err := s.Follow(ctx, o); err != nil {
		return nil, err
	}
	if o.Status == flashsale.OrderPaid {
		return nil, flashsale.ErrAlreadyPaid
	}
	return o, nil
}

// Pay applies a payment notification. A failed payment changes nothing (the
// order stays payable until it expires): flashsale.PayFailed. Errors wrap
// flashsale.ErrNotFound, flashsale.ErrAmountMismatch or flashsale.ErrConflict.
//
// The order is not read before: Book.Settle decides on it as it locks it.
// Only a late payment (an expired order) comes back to take the order's
// units again, first where admission looks (the stock store: all of them or
// none), then in MySQL (Book.Pay with revive), which has the last word.
func (s *Service) Pay(ctx context.Context, p flashsale.Payment) (flashsale.PayOutcome, *flashsale.Order, error) {
	now := s.cfg.Now()
	outcome, o, err := s.settle(ctx, p, now)
	if errors.Is(err, flashsale.ErrNeedsRevive) {
		return s.payLate(ctx, o, p, now)
	}
	if err != nil {
		return "", nil, err
	}
	if outcome == flashsale.PayPaid {
		// Also on a repeat: it completes a confirm a crash (or Redis away,
		// answered 503 so the provider retries) left undone.
		if err := s.Follow(ctx, o); err != nil {
			return "", nil, err
		}
	}
	return outcome, o, nil
}

// settle applies p with Book.Settle on the order's shard. The provider does
// not know the order's user, whose shard holds it: the ticket's copy in the
// stock store names the user (an order's id is its ticket's, and a ticket's
// user never changes), so the payment goes to that one shard. Without a copy
// that leads to the order (none, the stock store away, a copy naming no user
// or another user: not found there), the order is looked up on every shard
// first, as before.
func (s *Service) settle(ctx context.Context, p flashsale.Payment, now time.Time) (flashsale.PayOutcome, *flashsale.Order, error) {
	if t, err := s.cfg.Stock.GetTicket(ctx, p.OrderID); err == nil && t.UserID != "" {
		outcome, o, err := s.cfg.Book.Settle(ctx, flashsale.OrderRef{User: t.UserID, Order: p.OrderID}, p, now)
		if !errors.Is(err, flashsale.ErrNotFound) {
			return outcome, o, err
		}
	}
	o, err := s.cfg.Book.FindOrder(ctx, p.OrderID)
	if err != nil {
		return "", nil, err
	}
	return s.cfg.Book.Settle(ctx, o.Ref(), p, now)
}

// payLate applies succeeded payment p of expired order o, whose payment id
// Book.Settle bound: it takes the units again in the stock store, then pays
// with revive when all were there (refund_required otherwise, or when MySQL
// refuses), and gives back what MySQL did not revive.
func (s *Service) payLate(ctx context.Context, o *flashsale.Order, p flashsale.Payment, now time.Time) (flashsale.PayOutcome, *flashsale.Order, error) {
	revive, err := s.retake(ctx, o)
	if err != nil {
		return "", nil, err
	}
	outcome, cur, err := s.cfg.Book.Pay(ctx, o.Ref(), p.PaymentID, p.AmountCents, revive, now)
	if err != nil {
		if revive {
			s.giveBack(ctx, o)
		}
		return "", nil, err
	}
	o = cur
	if revive && o.Status != flashsale.OrderPaid {
		if err := s.giveBack(ctx, o); err != nil {
			return "", nil, err
		}
	}
	if outcome == flashsale.PayPaid {
		if err := s.Follow(ctx, o); err != nil {
			return "", nil, err
		}
	}
	return outcome, o, nil
}

// retake holds every item of expired order o again in the stock store, or
// none: it reports whether all were available.
func (s *Service) retake(ctx context.Context, o *flashsale.Order) (bool, error) {
	for i, p := range o.Parts() {
		_, ok, err := s.cfg.Stock.Retake(ctx, p)
		if err == nil && ok {
			continue
		}
		// Undo the items taken so far (release is idempotent).
		for _, q := range o.Parts()[:i] {
			if _, rerr := s.cfg.Stock.Release(ctx, q); rerr != nil && err == nil {
				err = rerr
			}
		}
		return false, err
	}
	return true, nil
}

// giveBack releases the units retake took for an order MySQL did not revive.
func (s *Service) giveBack(ctx context.Context, o *flashsale.Order) error {
	for _, p := range o.Parts() {
		if _, err := s.cfg.Stock.Release(ctx, p); err != nil {
			s.log.Warn("cannot give back units taken for a late payment; the reconciler will", "order", o.ID, "sale", p.SaleID, "err", err)
			return err
		}
	}
	return nil
}

// Return gives units of a paid order back on sale: MySQL first (the return is
// recorded with its order.returned event), then the stock store follows. The
// same return id again changes nothing and completes what a crash left undone.
// created is false for such a repeat. Errors: flashsale.ErrNotFound,
// flashsale.ErrNotPaid, flashsale.ErrConflict, invalid_quantity.
func (s *Service) Return(ctx context.Context, r flashsale.ReturnRequest) (o *flashsale.Order, created bool, err error) {
	o, replay, err := s.cfg.Book.Return(ctx, r, s.cfg.Now())
	if err != nil {
		return nil, false, err
	}
	// Redis away: the return is committed, the caller is answered 503 and its
	// retry completes it.
	if err := s.Follow(ctx, o); err != nil {
		return nil, false, err
	}
	return o, !replay, nil
}
