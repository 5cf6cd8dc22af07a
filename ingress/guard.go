package ingress

import (
	"context"
	"errors"
	"math"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/google/uuid"

	"github.com/flashsale/flashsale"
)

// Cheap refusals: what costs the ingress nothing to refuse must not reach
// Redis or MySQL.
//
//   - Ticket and order ids are UUIDv7 in canonical form (the ingress mints
//     them; an order's id is its ticket's): anything else is 404 not_found
//     before any lookup. Sale ids are checked against their pattern by the
//     catalog, which also answers unknown sale ids without a query each.
//   - A ticket or order id a user was just told does not exist is remembered
//     (per user, for negativeTTL, at most negativeMax entries) and answered 404
//     again from memory. Ids minted within queuedGrace are not remembered:
//     those tickets may still be queued and appear at any moment.
//   - A well-shaped id that is new each time (a crafted UUIDv7) escapes that
//     memory, so each user also has a small budget of lookups that miss on
//     this node (lookupBudget): past it, their lookups of ids Redis does not
//     know for them are 429, not MySQL queries.
//   - Every API request runs under a deadline (see deadline), so a slow
//     dependency cannot pile requests up without bound.
const (
	negativeTTL = 10 * time.Second
	negativeMax = 10000
)

// missedKey marks in the gin context a lookup that reached MySQL and found
// nothing, whatever it was answered (a ticket that may still be queued is 503,
// not 404): it spends a token of the user's lookup budget.
const missedKey = "ingress.missed"

// defaultUnknownLookups is Config.UnknownLookups's default: a user who asks
// for ids that do not exist more than three times in 10 s is not reading
// their own purchases.
const defaultUnknownLookups = 3

// lookupBudget bounds, per user and on this node, the ticket and order
// lookups that reach MySQL and find nothing: a token bucket of limit tokens
// refilled at limit per period. A lookup takes a token before it runs and
// gives it back unless it missed, so concurrent lookups of one user cannot
// overdraw it and a user who only asks for their own tickets and orders never
// spends any. A user without tokens still gets every id that Redis knows as
// theirs (one read of its fast copy); any other is 429 rate_limited, never a
// 404 that might be wrong. Memory: one bucket per user seen; past lookupMax
// users, buckets full again are dropped (and all of them if that frees
// nothing, which lets the budgets start again: failing open).
type lookupBudget struct {
	limit  float64 // tokens and bucket size; <= 0: off
	period time.Duration

	mu sync.Mutex
	m  map[string]*bucket
}

const lookupMax = 100000

func newLookupBudget(limit int, period time.Duration) *lookupBudget {
	return &lookupBudget{limit: float64(limit), period: period, m: map[string]*bucket{}}
}

// take takes one token of user's bucket at now. With none it reports false
// and how long until one is back.
func (b *lookupBudget) take(user string, now time.Time) (bool, time.Duration) {
	if b.limit <= 0 {
		return true, 0
	}
	rate := b.limit / b.period.Seconds() // tokens per second
	b.mu.Lock()
	defer b.mu.Unlock()
	bk := b.m[user]
	if bk == nil {
		if len(b.m) >= lookupMax {
			b.prune(now)
		}
		bk = &bucket{tokens: b.limit, at: now}
		b.m[user] = bk
	}
	return bk.take(now, b.limit, rate)
}

// giveBack returns the token a lookup that found its id took.
func (b *lookupBudget) giveBack(user string) {
	if b.limit <= 0 {
		return
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if bk := b.m[user]; bk != nil {
		bk.tokens = min(b.limit, bk.tokens+1)
	}
}

// prune drops the buckets full again at now, or all of them if none is.
func (b *lookupBudget) prune(now time.Time) {
	for u, bk := range b.m {
		if now.Sub(bk.at) >= b.period {
			delete(b.m, u)
		}
	}
	if len(b.m) >= lookupMax {
		clear(b.m)
	}
}

// validTicketID reports whether id has the shape of the ids user's tickets
// and orders get: minted for user (flashsale.MintedFor: another user's id is
// 404 without a lookup; for the admin, user "", any minted id), or a UUIDv7
// in canonical 36-character form (the ids of tickets from before ids were
// minted), not minted more than an hour in the future (generous, for nodes
// whose clocks disagree).
func validTicketID(id, user string, now time.Time) bool {
	if len(id) != 36 {
		return false
	}
	if flashsale.MintedFor(id, user) || (user == "" && mintedShape(id)) {
		return true
	}
	u, err := uuid.Parse(id)
	if err != nil || u.Version() != 7 {
		return false
	}
	sec, nsec := u.Time().UnixTime()
	return time.Unix(sec, nsec).Before(now.Add(time.Hour))
}

// mintedShape reports whether id is a canonical UUID of version 8, the
// shape of minted ticket ids, whoever's.
func mintedShape(id string) bool {
	u, err := uuid.Parse(id)
	return err == nil && u.Version() == 8 && u.String() == id
}

// negativeCache remembers (user, id) pairs answered 404. Safe for concurrent use.
type negativeCache struct {
	mu sync.Mutex
	m  map[[2]string]time.Time
}

func (n *negativeCache) has(user, id string, now time.Time) bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	at, ok := n.m[[2]string{user, id}]
	return ok && now.Sub(at) < negativeTTL
}

func (n *negativeCache) add(user, id string, now time.Time) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.m == nil || len(n.m) >= negativeMax {
		n.m = map[[2]string]time.Time{}
	}
	n.m[[2]string{user, id}] = now
}

// knownID guards routes whose :id is a ticket or an order (after s.user or
// s.admin): the id's shape, the ids the user was just told do not exist, and
// the user's lookup budget (the admin's returns are not budgeted).
func (s *Server) knownID(c *gin.Context) {
	id, user, now := c.Param("id"), userOf(c), time.Now()
	if !validTicketID(id, user, now) || s.missing.has(user, id, now) {
		s.WriteError(c, flashsale.Errorf(flashsale.CodeNotFound, "no such ticket or order %q", id))
		return
	}
	budgeted := false
	if user != "" {
		ok, wait := s.lookups.take(user, now)
		switch {
		case ok:
			budgeted = true
		case !s.knownToRedis(c.Request.Context(), user, id):
			c.Header("Retry-After", strconv.Itoa(max(1, int(math.Ceil(wait.Seconds())))))
			s.WriteError(c, flashsale.Errorf(flashsale.CodeRateLimited, "too many lookups of unknown tickets or orders; retry later"))
			return
		}
	}
	c.Next()
	missed := c.Writer.Status() == http.StatusNotFound || c.GetBool(missedKey)
	if budgeted && !missed {
		s.lookups.giveBack(user)
	}
	if c.Writer.Status() == http.StatusNotFound && !mayBeQueued(id, user, now) {
		s.missing.add(user, id, now)
	}
}

// knownToRedis reports whether id is a ticket (an order's id is its
// ticket's) whose fast copy says it is user's. A read that fails (Redis away,
// not a missing copy) is yes: the budget cannot tell the user's ids from
// crafted ones then, and an outage is when a user's own lookups miss most
// (their queued tickets' copies cannot be read), so it fails open rather than
// answer 429 to a user cancelling their own order; the soak saw that.
func (s *Server) knownToRedis(ctx context.Context, user, id string) bool {
	t, err := s.cfg.Stock.GetTicket(ctx, id)
	if err != nil {
		return !errors.Is(err, flashsale.ErrNotFound)
	}
	return t.UserID == user
}

// deadline puts every API request (a path under /api/, including the
// payment callback that other roles register on the router) under its
// deadline: Config.ReadDeadline for reads (GET), Config.PurchaseDeadline for
// purchases, Config.WriteDeadline for the rest. Every dependency takes the
// request's context, so a blocked one fails with the context's error, which
// is answered 503 unavailable (httpapi.WriteError). Other paths (health,
// metrics, the live page's event stream) and the ticket event streams (each
// of their reads has the read deadline, see events.go) are not bounded here.
func (s *Server) deadline(c *gin.Context) {
	route := c.FullPath()
	if !strings.HasPrefix(route, "/api/") || route == eventsRoute {
		return
	}
	d := s.cfg.WriteDeadline
	switch {
	case c.Request.Method == http.MethodGet:
		d = s.cfg.ReadDeadline
	case route == "/api/v1/sales/:id/purchase" || route == "/api/v1/purchases":
		d = s.cfg.PurchaseDeadline
	}
	if d <= 0 {
		return
	}
	ctx, cancel := context.WithTimeout(c.Request.Context(), d)
	defer cancel()
	c.Request = c.Request.WithContext(ctx)
	c.Next()
}
