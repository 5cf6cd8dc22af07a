package httpapi

import (
	"crypto/subtle"
	"log/slog"
	"net/http"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// AdminAuth checks the admin token (FLASHSALE_ADMIN_TOKEN) for every surface
// that takes it, the admin endpoints and the live page, in constant time, and
// records every failure: flashsale_admin_auth_failures_total{surface}, and a
// WARN line naming the surface and the client's address, at most one per
// logEvery (the line says how many failures it stands for). It does not slow
// anyone down: a surface that wants to (the live page's login) does so itself.
// Safe for concurrent use.
type AdminAuth struct {
	token    string
	failures *prometheus.CounterVec
	log      *slog.Logger

	mu       sync.Mutex
	loggedAt time.Time
	unlogged int // failures since the last line
}

// logEvery is the least time between two lines about failed admin
// authentication.
const logEvery = 10 * time.Second

// NewAdminAuth returns the checker of token (empty: every check fails, and
// Enabled is false). reg receives its counter when not nil; log defaults to
// slog.Default().
func NewAdminAuth(token string, reg prometheus.Registerer, log *slog.Logger) *AdminAuth {
	if log == nil {
		log = slog.Default()
	}
	a := &AdminAuth{token: token, log: log,
		failures: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "flashsale_admin_auth_failures_total",
			Help: "Admin authentications refused (a missing or wrong admin token), by surface (api, live)."}, []string{"surface"})}
	for _, s := range []string{"api", "live"} {
		a.failures.WithLabelValues(s)
	}
	if reg != nil {
		reg.MustRegister(a.failures)
	}
	return a
}

// Enabled reports whether an admin token is set.
func (a *AdminAuth) Enabled() bool { return a.token != "" }

// Check reports whether token is the admin token. A failure is counted under
// surface and logged (see AdminAuth) with r's peer address.
func (a *AdminAuth) Check(r *http.Request, surface, token string) bool {
	if a.token != "" && subtle.ConstantTimeCompare([]byte(token), []byte(a.token)) == 1 {
		return true
	}
	a.failures.WithLabelValues(surface).Inc()
	a.mu.Lock()
	a.unlogged++
	n, now := a.unlogged, time.Now()
	due := now.Sub(a.loggedAt) >= logEvery
	if due {
		a.loggedAt, a.unlogged = now, 0
	}
	a.mu.Unlock()
	if due {
		a.log.Warn("admin authentication failed: missing or wrong admin token", "surface", surface,
			"client", r.RemoteAddr, "path", r.URL.Path, "failures_since_last_line", n)
	}
	return false
}

// Failures is the failure counter of surface (for tests and callers that
// export it elsewhere).
func (a *AdminAuth) Failures(surface string) prometheus.Counter {
	return a.failures.WithLabelValues(surface)
}
