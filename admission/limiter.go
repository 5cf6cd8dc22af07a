package admission

import (
	"context"
	"sync"
	"time"

	"github.com/flashsale/flashsale"
)

// windowLimiter admits at most limit requests per key in each fixed window of
// this node. It is deliberately local: each ingress node sheds its own load
// without a network round trip.
type windowLimiter struct {
	limit  int
	window time.Duration
	mu     sync.Mutex
	slots  map[string]*slot
}

type slot struct {
	window int64 // index of the current window
	count  int
}

// windowHasRoom refuses (429 rate_limited) a line whose sale's window on
// this node is full.
func (a *Admission) windowHasRoom(_ context.Context, p *purchase, l *line) decision {
	if !a.limiter.Allow(l.sale.ID, p.Now) {
		return refuse(flashsale.ErrRateLimited)
	}
	return next
}

func newWindowLimiter(limit int, window time.Duration) *windowLimiter {
	return &windowLimiter{limit: limit, window: window, slots: map[string]*slot{}}
}

// Allow reports whether one more request for key fits into now's window.
// A limit <= 0 (off) admits everything.
func (l *windowLimiter) Allow(key string, now time.Time) bool {
	if l.limit <= 0 {
		return true
	}
	w := now.UnixNano() / int64(l.window)
	l.mu.Lock()
	defer l.mu.Unlock()
	s := l.slots[key]
	if s == nil {
		if len(l.slots) > 10000 {
			clear(l.slots)
		}
		s = &slot{}
		l.slots[key] = s
	}
	if w > s.window { // a request from a window already past counts against the current one
		s.window, s.count = w, 0
	}
	if s.count >= l.limit {
		return false
	}
	s.count++
	return true
}
