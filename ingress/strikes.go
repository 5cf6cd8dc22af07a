package ingress

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

// checkBlocked answers 403 blocked for a user with too many unpaid expiries.
// It fails open: when the strikes cannot be read the purchase goes on (the
// claim that follows needs the same Redis and answers for it).
func (s *Server) checkBlocked(ctx context.Context, user string, now time.Time) error {
	if s.cfg.Strikes == nil {
		return nil
	}
	blocked, until, err := s.cfg.Strikes.Blocked(ctx, user, now)
	if err != nil {
		s.log.Warn("cannot read unpaid strikes; not blocking", "user", user, "err", err)
		return nil
	}
	if blocked {
		return flashsale.Errorf(flashsale.CodeBlocked, "too many of your orders expired unpaid recently; you may purchase again after %s",
			until.UTC().Truncate(time.Second).Format(time.RFC3339))
	}
	return nil
}
