package ingress

import (
	"context"
	"sync"
	"time"

	"github.com/flashsale/flashsale"
)

// soldOutMemory remembers, for a short time, the sales this node saw sold
// out (a claim answered sold_out), so that the crowd arriving after the last
// unit is answered without a claim script and without spending the sale's
// window: one read of the user's live ticket and units instead (a user with
// a live ticket still gets it, 200; one at the limit still gets
// limit_reached). Units that come back (expiry, cancel, return) are seen by
// this node at most ttl later: the memory is per node and never outlives ttl.
type soldOutMemory struct {
	ttl   time.Duration // 0: off
	mu    sync.Mutex
	until map[string]time.Time
}

func (m *soldOutMemory) remember(saleID string, now time.Time) {
	if m.ttl <= 0 {
		return
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if len(m.until) > 10000 {
		clear(m.until)
	}
	m.until[saleID] = now.Add(m.ttl)
}

func (m *soldOutMemory) known(saleID string, now time.Time) bool {
	if m.ttl <= 0 {
		return false
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	return now.Before(m.until[saleID])
}

// quickRefusal answers a purchase of a sale this node remembers sold out:
// ErrSoldOut or ErrLimitReached as the claim would, or nil when the user has a
// live ticket there (the claim answers it) or the read failed (the claim
// decides).
func (s *Server) quickRefusal(ctx context.Context, sale *flashsale.Sale, user string, qty int) error {
	live, units, err := s.cfg.Stock.Holder(ctx, sale.ID, user)
	switch {
	case err != nil || live != "":
		return nil
	case units+qty > sale.PerUserLimit:
		return flashsale.ErrLimitReached
	default:
		return flashsale.ErrSoldOut
	}
}
