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
	"net"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/flashsale/flashsale/httpapi"
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
	// Admin checks the token, counting and logging failures; when set it
	// takes the place of AdminToken (a process shares one with its admin
	// endpoints). Default httpapi.NewAdminAuth(AdminToken, nil, Log).
	Admin *httpapi.AdminAuth
	// SessionTTL is how long a login lasts: the server refuses a session
	// cookie issued longer ago, whatever the browser keeps. Default 12 h.
	SessionTTL time.Duration
	// InsecureCookie leaves the session cookie without Secure on every
	// listener (FLASHSALE_OPS_INSECURE_COOKIE: a page reached over plain HTTP
	// on a private network). Default false: Secure unless the request came
	// in on a loopback address.
	InsecureCookie bool
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
//	POST /ops/logout        ends every session issued so far, clears the cookie
//	GET  /ops/live/data     the samples kept, JSON (?after=<unix ms>: the newer ones; the page polls it)
//	GET  /ops/live/events   server-sent events: one sample per Interval (for scripts: curl -N)
//	GET  /ops/live/static/  the page's script, styles and uPlot (embedded)
//
// The data and events also accept "Authorization: Bearer <admin token>".
//
// A session cookie is its issue time and an HMAC of it under a key derived
// from the token (never the token): the server refuses it after SessionTTL,
// or when it was issued before the last logout on this process (a logout
// on one process does not end the sessions another process issued). Failed
// tokens are counted and logged (httpapi.AdminAuth), and a client (its TCP
// peer address) that failed loginFailures times within loginWindow is
// answered 429 without its token being checked until the window passes.
// Safe for concurrent use.
type Live struct {
	cfg    LiveConfig
	log    *slog.Logger
	key    []byte // the sessions' HMAC key: derived from the token, not the token
	page   *template.Template
	static http.Handler
	fails  loginFailures

	sessionMu sync.Mutex
	notBefore int64 // unix ms of the last logout: sessions issued up to then are refused

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
	if cfg.SessionTTL == 0 {
		cfg.SessionTTL = 12 * time.Hour
	}
	if cfg.SessionTTL < 0 {
		return nil, errors.New("ops: SessionTTL must be positive")
	}
	if cfg.Admin == nil {
		cfg.Admin = httpapi.NewAdminAuth(cfg.AdminToken, nil, cfg.Log)
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
		static: http.StripPrefix("/ops/live/static/", http.FileServer(http.FS(static))), fails: loginFailures{m: map[string]*failWindow{}}}
	if cfg.AdminToken != "" {
		m := hmac.New(sha256.New, []byte(cfg.AdminToken))
		m.Write([]byte("flashsale live page session"))
		l.key = m.Sum(nil)
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
	r.POST("/ops/logout", l.auth, l.logout)
	r.GET("/ops/live/data", l.auth, l.serveData)
	r.GET("/ops/live/events", l.auth, l.serveEvents)
	r.GET("/ops/live/static/*file", func(c *gin.Context) {
		c.Header("Cache-Control", "public, max-age=3600")
		l.static.ServeHTTP(c.Writer, c.Request)
	})
}

// authorized reports whether the request carries a live session cookie or
// the bearer token; ok false with limited true: the client is over its
// budget of failed tokens (see Live), nothing was checked.
func (l *Live) authorized(c *gin.Context) (ok, limited bool) {
	if ck, err := c.Request.Cookie(CookieName); err == nil && l.sessionOK(ck.Value, time.Now()) {
		return true, false
	}
	h := c.Request.Header.Get("Authorization")
	if !strings.HasPrefix(h, "Bearer ") {
		return false, false
	}
	return l.tokenOK(c, strings.TrimPrefix(h, "Bearer "))
}

// tokenOK checks a token a client offered, unless the client is over its
// budget of failures (limited).
func (l *Live) tokenOK(c *gin.Context, tok string) (ok, limited bool) {
	client := c.RemoteIP()
	if !l.fails.allowed(client, time.Now()) {
		return false, true
	}
	if l.cfg.Admin.Check(c.Request, "live", tok) {
		return true, false
	}
	l.fails.add(client, time.Now())
	return false, false
}

// session is a cookie value issued at (unix ms).
func (l *Live) session(at int64) string {
	m := hmac.New(sha256.New, l.key)
	fmt.Fprintf(m, "session %d", at)
	return strconv.FormatInt(at, 10) + "." + hex.EncodeToString(m.Sum(nil))
}

// sessionOK reports whether v is a session this process issued, within
// SessionTTL of now and after the last logout.
func (l *Live) sessionOK(v string, now time.Time) bool {
	ms, _, ok := strings.Cut(v, ".")
	at, err := strconv.ParseInt(ms, 10, 64)
	if !ok || err != nil || subtle.ConstantTimeCompare([]byte(v), []byte(l.session(at))) != 1 {
		return false
	}
	l.sessionMu.Lock()
	notBefore := l.notBefore
	l.sessionMu.Unlock()
	age := now.Sub(time.UnixMilli(at))
	return at > notBefore && age >= -time.Minute && age < l.cfg.SessionTTL
}

func (l *Live) disabled(c *gin.Context) bool {
	if l.cfg.AdminToken != "" && l.cfg.Admin.Enabled() {
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
	switch ok, limited := l.authorized(c); {
	case limited:
		l.tooMany(c)
	case !ok:
		c.AbortWithStatusJSON(http.StatusUnauthorized, gin.H{"error": gin.H{"code": "unauthorized",
			"message": "log in at /ops/live with the admin token"}})
	}
}

// tooMany answers a client over its budget of failed tokens.
func (l *Live) tooMany(c *gin.Context) {
	c.Header("Retry-After", strconv.Itoa(int(loginWindow.Seconds())))
	c.Header("Cache-Control", "no-store")
	c.AbortWithStatusJSON(http.StatusTooManyRequests, gin.H{"error": gin.H{"code": "rate_limited",
		"message": "too many wrong admin tokens from this address; retry later"}})
}

// setCookie starts a session. The cookie is Secure unless the request came in
// on a loopback address (or InsecureCookie is set): behind a load balancer
// that ends TLS, the browser must never send it over plain HTTP.
func (l *Live) setCookie(c *gin.Context) {
	http.SetCookie(c.Writer, &http.Cookie{Name: CookieName, Value: l.session(time.Now().UnixMilli()), Path: "/ops", HttpOnly: true,
		Secure: l.secure(c.Request), SameSite: http.SameSiteStrictMode, MaxAge: int(l.cfg.SessionTTL.Seconds())})
}

func (l *Live) secure(r *http.Request) bool {
	if r.TLS != nil {
		return true
	}
	if l.cfg.InsecureCookie {
		return false
	}
	local, _ := r.Context().Value(http.LocalAddrContextKey).(net.Addr)
	tcp, _ := local.(*net.TCPAddr)
	return tcp == nil || !tcp.IP.IsLoopback()
}

// redirect sends the browser back to the page, with nothing cached (the
// address it came from may hold the token).
func redirect(c *gin.Context) {
	c.Header("Cache-Control", "no-store")
	c.Header("Referrer-Policy", "no-referrer")
	c.Redirect(http.StatusSeeOther, "/ops/live")
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
		switch ok, limited := l.tokenOK(c, tok); {
		case limited:
			l.tooMany(c)
		case !ok:
			l.render(c, http.StatusUnauthorized, true, "wrong token")
		default: // logged in: drop the token from the address bar and the history
			l.setCookie(c)
			redirect(c)
		}
		return
	}
	if ok, _ := l.authorized(c); !ok {
		l.render(c, http.StatusUnauthorized, true, "")
		return
	}
	l.render(c, http.StatusOK, false, "")
}

func (l *Live) login(c *gin.Context) {
	if l.disabled(c) {
		return
	}
	switch ok, limited := l.tokenOK(c, c.PostForm("token")); {
	case limited:
		l.tooMany(c)
	case !ok:
		l.render(c, http.StatusUnauthorized, true, "wrong token")
	default:
		l.setCookie(c)
		redirect(c)
	}
}

// logout ends every session issued so far on this process and clears the
// cookie.
func (l *Live) logout(c *gin.Context) {
	l.sessionMu.Lock()
	l.notBefore = max(l.notBefore, time.Now().UnixMilli())
	l.sessionMu.Unlock()
	http.SetCookie(c.Writer, &http.Cookie{Name: CookieName, Value: "", Path: "/ops", HttpOnly: true,
		Secure: l.secure(c.Request), SameSite: http.SameSiteStrictMode, MaxAge: -1})
	redirect(c)
}

// loginWindow and loginMax: a client that offered loginMax wrong tokens
// within loginWindow is refused (429) until the window passes.
const (
	loginWindow = time.Minute
	loginMax    = 5
	loginsKept  = 10000 // clients remembered; past it the memory starts again
)

// loginFailures counts wrong tokens per client address.
type loginFailures struct {
	mu sync.Mutex
	m  map[string]*failWindow
}

type failWindow struct {
	since time.Time
	n     int
}

func (f *loginFailures) allowed(client string, now time.Time) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	w := f.m[client]
	return w == nil || now.Sub(w.since) >= loginWindow || w.n < loginMax
}

func (f *loginFailures) add(client string, now time.Time) {
	f.mu.Lock()
	defer f.mu.Unlock()
	w := f.m[client]
	if w == nil || now.Sub(w.since) >= loginWindow {
		if len(f.m) >= loginsKept {
			clear(f.m)
		}
		w = &failWindow{since: now}
		f.m[client] = w
	}
	w.n++
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
