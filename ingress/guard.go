package ingress

import (
	"context"
	"net/http"
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
//   - Every API request runs under a deadline (see deadline), so a slow
//     dependency cannot pile requests up without bound.
const (
	negativeTTL = 10 * time.Second
	negativeMax = 10000
)

// validTicketID reports whether id has the shape of the ids tickets and
// orders get: a UUIDv7 in canonical 36-character form, not minted more than an
// hour in the future (generous, for nodes whose clocks disagree).
func validTicketID(id string, now time.Time) bool {
	if len(id) != 36 {
		return false
	}
	u, err := uuid.Parse(id)
	if err != nil || u.Version() != 7 {
		return false
	}
	sec, nsec := u.Time().UnixTime()
	return time.Unix(sec, nsec).Before(now.Add(time.Hour))
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

// knownID guards routes whose :id is a ticket or an order (after s.user).
func (s *Server) knownID(c *gin.Context) {
	id, user, now := c.Param("id"), userOf(c), time.Now()
	if !validTicketID(id, now) || s.missing.has(user, id, now) {
		s.WriteError(c, flashsale.Errorf(flashsale.CodeNotFound, "no such ticket or order %q", id))
		return
	}
	c.Next()
	if c.Writer.Status() == http.StatusNotFound && !mintedWithin(id, queuedGrace, now) {
		s.missing.add(user, id, now)
	}
}

// deadline puts every API request (a path under /api/, including the
// payment callback that other roles register on the router) under its
// deadline: Config.ReadDeadline for reads (GET), Config.PurchaseDeadline for
// purchases, Config.WriteDeadline for the rest. Every dependency takes the
// request's context, so a blocked one fails with the context's error, which
// is answered 503 unavailable (httpapi.WriteError). Other paths (health,
// metrics, the live page's event stream) are not bounded here.
func (s *Server) deadline(c *gin.Context) {
	route := c.FullPath()
	if !strings.HasPrefix(route, "/api/") {
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
