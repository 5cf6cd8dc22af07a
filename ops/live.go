package ops

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"crypto/subtle"
	"embed"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"html/template"
	"io/fs"
	"log/slog"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/prometheus/client_golang/prometheus"
)

//go:embed web
var webFS embed.FS

// LiveConfig for a Live page.
type LiveConfig struct {
	// Gatherer is the process's registry, read every Interval. Required.
	Gatherer prometheus.Gatherer
	// AdminToken guards the page (FLASHSALE_ADMIN_TOKEN); empty: the page
	// answers 503, like the admin endpoints.
	AdminToken string
	// Interval between samples (and pushes to open pages). Default 1 s.
	Interval time.Duration
	// History is how much the page shows when opened. Default 10 min.
	History time.Duration
	// FinalWindow is the span of the 202→final percentiles. Default 10 s.
	FinalWindow time.Duration
	// Log default slog.Default().
	Log *slog.Logger
}

// Live is the live page: it samples the registry every Interval while Run
// runs, keeps History of samples, and serves
//
//	GET  /ops/live          the page (a login form without the cookie; ?token= logs in)
//	POST /ops/login         form field token: sets the cookie, back to the page
//	GET  /ops/live/data     the samples kept, JSON (?after=<unix ms>: the newer ones; the page polls it)
//	GET  /ops/live/events   server-sent events: one sample per Interval (for scripts: curl -N)
//	GET  /ops/live/static/  the page's script, styles and uPlot (embedded)
//
// The data and events also accept "Authorization: Bearer <admin token>".
// Safe for concurrent use.
type Live struct {
	cfg    LiveConfig
	log    *slog.Logger
	cookie string // the cookie's value: derived from the token, not the token
	page   *template.Template
	static http.Handler

	mu      sync.Mutex
	samples []Sample
	raws    []*raw // the raw gathers of the last FinalWindow
	subs    map[chan Sample]struct{}
	closed  chan struct{}
	once    sync.Once
}

// CookieName is the live page's session cookie (HttpOnly, SameSite=Strict,
// path /ops).
const CookieName = "flashsale_ops"

// NewLive returns a Live page; call Run to sample.
func NewLive(cfg LiveConfig) (*Live, error) {
	if cfg.Gatherer == nil {
		return nil, errors.New("ops: Gatherer is required")
	}
	if cfg.Interval == 0 {
		cfg.Interval = time.Second
	}
	if cfg.History == 0 {
		cfg.History = 10 * time.Minute
	}
	if cfg.FinalWindow == 0 {
		cfg.FinalWindow = 10 * time.Second
	}
	if cfg.Interval < 0 || cfg.History < cfg.Interval || cfg.FinalWindow < cfg.Interval {
		return nil, errors.New("ops: Interval must be positive, History and FinalWindow at least Interval")
	}
	if cfg.Log == nil {
		cfg.Log = slog.Default()
	}
	page, err := template.ParseFS(webFS, "web/index.html")
	if err != nil {
		return nil, fmt.Errorf("ops: page: %w", err)
	}
	static, err := fs.Sub(webFS, "web/static")
	if err != nil {
		return nil, fmt.Errorf("ops: static: %w", err)
	}
	l := &Live{cfg: cfg, log: cfg.Log, page: page, subs: map[chan Sample]struct{}{}, closed: make(chan struct{}),
		static: http.StripPrefix("/ops/live/static/", http.FileServer(http.FS(static)))}
	if cfg.AdminToken != "" {
		m := hmac.New(sha256.New, []byte(cfg.AdminToken))
		m.Write([]byte("flashsale live page session"))
		l.cookie = hex.EncodeToString(m.Sum(nil))
	}
	return l, nil
}

// Run samples every Interval until ctx ends.
func (l *Live) Run(ctx context.Context) {
	t := time.NewTicker(l.cfg.Interval)
	defer t.Stop()
	l.tick()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			l.tick()
		}
	}
}

// Close ends every open event stream (an http.Server's RegisterOnShutdown:
// otherwise a graceful shutdown waits for the pages to go away).
func (l *Live) Close() { l.once.Do(func() { close(l.closed) }) }

func (l *Live) tick() {
	mfs, err := l.cfg.Gatherer.Gather()
	if err != nil {
		// A partial gather still has the families that worked.
		l.log.Debug("ops: gather for the live page", "err", err)
	}
	cur := reduce(time.Now().UnixMilli(), mfs)
	l.mu.Lock()
	defer l.mu.Unlock()
	var prev, old *raw
	if n := len(l.raws); n > 0 {
		prev, old = l.raws[n-1], l.raws[0]
	}
	s := sample(cur, prev, old)
	l.raws = append(l.raws, cur)
	for len(l.raws) > 1 && cur.t-l.raws[0].t > l.cfg.FinalWindow.Milliseconds() {
		l.raws = l.raws[1:]
	}
	l.samples = append(l.samples, s)
	if keep := int(l.cfg.History / l.cfg.Interval); len(l.samples) > keep {
		l.samples = append(l.samples[:0:0], l.samples[len(l.samples)-keep:]...)
	}
	for ch := range l.subs {
		select {
		case ch <- s:
		default: // a slow page misses a sample; it catches up on the next
		}
	}
}

// Register adds the page's routes to r.
func (l *Live) Register(r gin.IRouter) {
	r.GET("/ops/live", l.servePage)
	r.POST("/ops/login", l.login)
	r.GET("/ops/live/data", l.auth, l.serveData)
	r.GET("/ops/live/events", l.auth, l.serveEvents)
	r.GET("/ops/live/static/*file", func(c *gin.Context) {
		c.Header("Cache-Control", "public, max-age=3600")
		l.static.ServeHTTP(c.Writer, c.Request)
	})
}

// authorized reports whether the request carries the cookie or the bearer token.
func (l *Live) authorized(r *http.Request) bool {
	if ck, err := r.Cookie(CookieName); err == nil && subtle.ConstantTimeCompare([]byte(ck.Value), []byte(l.cookie)) == 1 {
		return true
	}
	h := r.Header.Get("Authorization")
	return strings.HasPrefix(h, "Bearer ") && l.tokenOK(strings.TrimPrefix(h, "Bearer "))
}

func (l *Live) tokenOK(tok string) bool {
	return subtle.ConstantTimeCompare([]byte(tok), []byte(l.cfg.AdminToken)) == 1
}

func (l *Live) disabled(c *gin.Context) bool {
	if l.cfg.AdminToken != "" {
		return false
	}
	c.AbortWithStatusJSON(http.StatusServiceUnavailable, gin.H{"error": gin.H{"code": "unavailable",
		"message": "FLASHSALE_ADMIN_TOKEN is not set: the live page is off"}})
	return true
}

func (l *Live) auth(c *gin.Context) {
	if l.disabled(c) {
		return
	}
	if !l.authorized(c.Request) {
		c.AbortWithStatusJSON(http.StatusUnauthorized, gin.H{"error": gin.H{"code": "unauthorized",
			"message": "log in at /ops/live with the admin token"}})
	}
}

func (l *Live) setCookie(c *gin.Context) {
	http.SetCookie(c.Writer, &http.Cookie{Name: CookieName, Value: l.cookie, Path: "/ops", HttpOnly: true,
		Secure: c.Request.TLS != nil, SameSite: http.SameSiteStrictMode, MaxAge: 12 * 3600})
}

// securityHeaders: the page may load and connect to nothing but this server.
func securityHeaders(c *gin.Context) {
	c.Header("Content-Security-Policy", "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'")
	c.Header("X-Content-Type-Options", "nosniff")
	c.Header("Referrer-Policy", "no-referrer")
	c.Header("Cache-Control", "no-store")
}

func (l *Live) render(c *gin.Context, status int, login bool, msg string) {
	securityHeaders(c)
	c.Status(status)
	c.Header("Content-Type", "text/html; charset=utf-8")
	if err := l.page.Execute(c.Writer, map[string]any{"Login": login, "Message": msg}); err != nil {
		l.log.Warn("ops: render live page", "err", err)
	}
}

func (l *Live) servePage(c *gin.Context) {
	if l.disabled(c) {
		return
	}
	if tok := c.Query("token"); tok != "" {
		if !l.tokenOK(tok) {
			l.render(c, http.StatusUnauthorized, true, "wrong token")
			return
		}
		// Logged in: drop the token from the address bar and the history.
		l.setCookie(c)
		c.Redirect(http.StatusSeeOther, "/ops/live")
		return
	}
	if !l.authorized(c.Request) {
		l.render(c, http.StatusUnauthorized, true, "")
		return
	}
	l.render(c, http.StatusOK, false, "")
}

func (l *Live) login(c *gin.Context) {
	if l.disabled(c) {
		return
	}
	if !l.tokenOK(c.PostForm("token")) {
		l.render(c, http.StatusUnauthorized, true, "wrong token")
		return
	}
	l.setCookie(c)
	c.Redirect(http.StatusSeeOther, "/ops/live")
}

// Samples returns a copy of the samples kept, oldest first.
func (l *Live) Samples() []Sample {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]Sample(nil), l.samples...)
}

// serveData answers the samples kept, or with ?after=<unix ms> those taken
// after that instant (what the page polls every Interval).
func (l *Live) serveData(c *gin.Context) {
	c.Header("Cache-Control", "no-store")
	samples := l.Samples()
	if after, err := strconv.ParseInt(c.Query("after"), 10, 64); err == nil {
		i := sort.Search(len(samples), func(i int) bool { return samples[i].T > after })
		samples = samples[i:]
	}
	c.JSON(http.StatusOK, gin.H{"interval_ms": l.cfg.Interval.Milliseconds(), "samples": samples})
}

// serveEvents streams one sample per Interval as server-sent events until the
// page goes away or Close is called. Each write extends the connection's write
// deadline, so the server's WriteTimeout does not cut the stream.
func (l *Live) serveEvents(c *gin.Context) {
	ch := make(chan Sample, 4)
	l.mu.Lock()
	l.subs[ch] = struct{}{}
	l.mu.Unlock()
	defer func() {
		l.mu.Lock()
		delete(l.subs, ch)
		l.mu.Unlock()
	}()
	w := c.Writer
	rc := http.NewResponseController(w)
	w.Header().Set("Content-Type", "text/event-stream")
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)
	write := func(s string) bool {
		rc.SetWriteDeadline(time.Now().Add(10 * time.Second))
		if _, err := w.Write([]byte(s)); err != nil {
			return false
		}
		return rc.Flush() == nil
	}
	if !write(fmt.Sprintf("retry: %d\n\n", l.cfg.Interval.Milliseconds())) {
		return
	}
	for {
		select {
		case <-c.Request.Context().Done():
			return
		case <-l.closed:
			return
		case s := <-ch:
			b, err := json.Marshal(s)
			if err != nil || !write("data: "+string(b)+"\n\n") {
				return
			}
		}
	}
}
