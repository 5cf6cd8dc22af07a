package admission

import (
	"context"
	"time"

	"github.com/flashsale/flashsale"
)

// Strikes tells whether a user's recent unpaid expiries block their purchases
// (FLASHSALE_UNPAID_STRIKES). One Redis read per purchase; never MySQL.
type Strikes interface {
	// Blocked reports whether userID is blocked at now, and until when.
	Blocked(ctx context.Context, userID string, now time.Time) (bool, time.Time, error)
}

// notBlocked refuses (403 blocked) a user with too many unpaid expiries.
// It fails open: when the strikes cannot be read the purchase goes on (the
// claim that follows needs the same Redis and answers for it).
func (a *Admission) notBlocked(ctx context.Context, p *purchase, _ *line) decision {
	if a.cfg.Strikes == nil {
		return next
	}
	blocked, until, err := a.cfg.Strikes.Blocked(ctx, p.User, p.Now)
	if err != nil {
		a.log.Warn("cannot read unpaid strikes; not blocking", "user", p.User, "err", err)
		return next
	}
	if blocked {
		return refuse(flashsale.Errorf(flashsale.CodeBlocked, "too many of your orders expired unpaid recently; you may purchase again after %s",
			until.UTC().Truncate(time.Second).Format(time.RFC3339)))
	}
	return next
}
