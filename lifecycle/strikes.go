package lifecycle

import (
	"context"
	"time"

	"github.com/flashsale/flashsale"
)

// Strikes counts, per user, the orders that expired unpaid; the ingress
// blocks users with too many (FLASHSALE_UNPAID_STRIKES).
type Strikes interface {
	// Record counts the order as its user's expired unpaid at at; recording
	// the same order again counts it once.
	Record(ctx context.Context, ref flashsale.OrderRef, at time.Time) error
}

// strike records the expiry of o, which this call committed. A failure is
// logged and the strike lost: the expiry stands in MySQL, and the rule fails
// open rather than holding up the release of the order's units.
func (s *Service) strike(ctx context.Context, o *flashsale.Order) {
	if s.cfg.Strikes == nil {
		return
	}
	at := o.PayBy
	if at.IsZero() {
		at = s.cfg.Now()
	}
	if err := s.cfg.Strikes.Record(ctx, o.Ref(), at); err != nil {
		s.log.Warn("cannot record an unpaid strike; it is lost", "order", o.ID, "user", o.UserID, "err", err)
	}
}
