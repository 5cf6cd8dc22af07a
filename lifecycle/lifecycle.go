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
	Expire(ctx context.Context, userID, orderID string, now time.Time) (*flashsale.Order, bool, error)
	Cancel(ctx context.Context, userID, orderID string, now time.Time) (*flashsale.Order, bool, error)
	// Pay applies a succeeded payment; errors wrap flashsale.ErrNotFound or
	// flashsale.ErrAmountMismatch.
	Pay(ctx context.Context, userID, orderID, paymentID string, amount int64, now time.Time) (flashsale.PayOutcome, *flashsale.Order, error)
	// FindOrder finds an order by id alone.
	FindOrder(ctx context.Context, orderID string) (*flashsale.Order, error)
}

// Stock is the stock store that follows MySQL.
type Stock interface {
	Release(ctx context.Context, saleID, ticketID, userID string) (flashsale.Hold, error)
	Confirm(ctx context.Context, saleID, ticketID, userID string) (flashsale.Hold, error)
	PutTickets(ctx context.Context, tickets ...*flashsale.Ticket) error
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
	var err error
	switch o.Status {
	case flashsale.OrderPaid:
		_, err = s.cfg.Stock.Confirm(ctx, o.SaleID, o.ID, o.UserID)
	case flashsale.OrderExpired, flashsale.OrderCancelled:
		_, err = s.cfg.Stock.Release(ctx, o.SaleID, o.ID, o.UserID)
	}
	if err != nil {
		return err
	}
	return s.cfg.Stock.PutTickets(ctx, flashsale.TicketOf(o))
}

// Expire expires userID's order if it is unpaid and due, and gives its units back.
// It returns the order as it stands: still pending_payment when it is not due yet.
func (s *Service) Expire(ctx context.Context, userID, orderID string) (*flashsale.Order, error) {
	o, changed, err := s.cfg.Book.Expire(ctx, userID, orderID, s.cfg.Now())
	if err != nil {
		return nil, err
	}
	if changed {
		s.log.Debug("order expired", "order", orderID, "sale", o.SaleID)
		s.strike(ctx, o)
	}
	return o, s.Follow(ctx, o)
}

// Cancel cancels userID's unpaid order and gives its units back; a cancelled
// order is returned unchanged. A paid order is flashsale.ErrAlreadyPaid; an
// expired one is returned as it is (its units went back already).
func (s *Service) Cancel(ctx context.Context, userID, orderID string) (*flashsale.Order, error) {
	o, _, err := s.cfg.Book.Cancel(ctx, userID, orderID, s.cfg.Now())
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

// Payment is one notification of the payment provider.
type Payment struct {
	PaymentID   string
	OrderID     string
	AmountCents int64
	Succeeded   bool
}

// Pay applies a payment notification. A failed payment changes nothing (the
// order stays payable until it expires) and returns the order's status. Errors
// wrap flashsale.ErrNotFound or flashsale.ErrAmountMismatch.
func (s *Service) Pay(ctx context.Context, p Payment) (string, *flashsale.Order, error) {
	o, err := s.cfg.Book.FindOrder(ctx, p.OrderID)
	if err != nil {
		return "", nil, err
	}
	if o.AmountCents != p.AmountCents {
		return "", nil, flashsale.Errorf(flashsale.CodeAmountMismatch, "amount %d differs from the order's %d", p.AmountCents, o.AmountCents)
	}
	if !p.Succeeded {
		return string(o.Status), o, nil
	}
	outcome, o, err := s.cfg.Book.Pay(ctx, o.UserID, p.OrderID, p.PaymentID, p.AmountCents, s.cfg.Now())
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
	return string(outcome), o, nil
}
