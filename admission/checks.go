package admission

import (
	"context"

	"github.com/flashsale/flashsale"
)

// The checks of a line that need no state of their own, in the order of
// Admission.checks; the stateful ones live beside their state (notBlocked in
// strikes.go, notSoldOut in soldout.go, withinBudget in fairness.go,
// windowHasRoom in limiter.go).

// saleExists finds the line's sale: not_found for an unknown one.
func (a *Admission) saleExists(ctx context.Context, _ *purchase, l *line) decision {
	sale, err := a.cfg.Sales.Get(ctx, l.SaleID)
	if err != nil {
		return refuse(err)
	}
	l.sale = sale
	return next
}

// saleOpen refuses a sale outside [starts_at, ends_at) by the ingress's
// clock (from its waiting room's opens_at for a sale with one, see
// waitingRoom): not_started, ended.
func (a *Admission) saleOpen(_ context.Context, p *purchase, l *line) decision {
	start := l.sale.StartsAt
	if w := l.sale.WaitingRoom; w != nil && a.cfg.WaitingLine != nil {
		start = w.OpensAt
	}
	switch {
	case p.Now.Before(start):
		return refuse(flashsale.ErrNotStarted)
	case !p.Now.Before(l.sale.EndsAt):
		return refuse(flashsale.ErrEnded)
	}
	return next
}

// quantityFits refuses a quantity outside 1 to the sale's per_user_limit.
func quantityFits(_ context.Context, _ *purchase, l *line) decision {
	if l.Quantity < 1 || l.Quantity > l.sale.PerUserLimit {
		return refuse(flashsale.Errorf(flashsale.CodeInvalidQuantity, "quantity must be between 1 and %d", l.sale.PerUserLimit))
	}
	return next
}

// bundleable refuses an inventory-mysql sale in a bundle. A bundle's lines
// are held under one ticket id in each sale; the mysql inventory keys its
// holds by ticket alone, so it sells one sale at a time.
func bundleable(_ context.Context, p *purchase, l *line) decision {
	if p.bundle && l.sale.Inventory == flashsale.InventoryMySQL {
		return refuse(flashsale.Errorf(flashsale.CodeInvalid, "inventory mysql sales are bought one at a time, not in a bundle"))
	}
	return next
}

// qualified refuses (403 not_qualified) a user who may not buy the sale: it
// has a reservation phase and the user did not reserve. Without
// Config.Reservations every sale is open to all.
func (a *Admission) qualified(ctx context.Context, p *purchase, l *line) decision {
	if l.sale.Reservation == nil || a.cfg.Reservations == nil {
		return next
	}
	ok, err := a.cfg.Reservations.Qualified(ctx, l.sale, p.User)
	switch {
	case err != nil:
		return refuse(flashsale.Unavailable(err, "cannot check the reservation now; nothing was queued, retry"))
	case !ok:
		return refuse(flashsale.ErrNotQualified)
	}
	return next
}
