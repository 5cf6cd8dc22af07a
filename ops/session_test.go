package ops

import (
	"context"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/flashsale/flashsale/httpapi"
)

// The live page's session: the cookie is Secure unless the request came in
// on loopback, the login redirects are not cached, the server refuses a
// session older than SessionTTL and every session issued before a logout,
// and a client that offered 5 wrong tokens is refused (429) without its
// token being checked, while the failures are counted.
func TestLiveSessionHardening(t *testing.T) {
	reg := prometheus.NewRegistry()
	admin := httpapi.NewAdminAuth("s3cret-0123456789", reg, slog.New(slog.DiscardHandler))
	l, err := NewLive(LiveConfig{Gatherer: reg, AdminToken: "s3cret-0123456789", Admin: admin, SessionTTL: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	gin.SetMode(gin.ReleaseMode)
	e := gin.New()
	l.Register(e)
	do := func(method, path, client string, local net.IP, form url.Values, cookie string) *httptest.ResponseRecorder {
		return serveForm(e, method, path, form, func(req *http.Request) *http.Request {
			req.RemoteAddr = client + ":40000"
			if cookie != "" {
				req.Header.Set("Cookie", cookie)
			}
			if local != nil {
				req = req.WithContext(context.WithValue(req.Context(), http.LocalAddrContextKey, &net.TCPAddr{IP: local, Port: 9100}))
			}
			return req
		})
	}
	login := func(client string, local net.IP) (*httptest.ResponseRecorder, string) {
		w := do("POST", "/ops/login", client, local, url.Values{"token": {"s3cret-0123456789"}}, "")
		return w, strings.Split(w.Header().Get("Set-Cookie"), ";")[0]
	}

	w, ck := login("10.1.1.1", net.ParseIP("10.0.1.21"))
	if w.Code != http.StatusSeeOther || !strings.Contains(w.Header().Get("Set-Cookie"), "; Secure") || w.Header().Get("Cache-Control") != "no-store" {
		t.Errorf("login on a private address: %d, cookie %q, Cache-Control %q; want Secure and no-store", w.Code, w.Header().Get("Set-Cookie"), w.Header().Get("Cache-Control"))
	}
	if w := do("GET", "/ops/live?token=s3cret-0123456789", "10.1.1.1", nil, nil, ""); w.Code != http.StatusSeeOther || w.Header().Get("Cache-Control") != "no-store" {
		t.Errorf("?token= redirect: %d, Cache-Control %q, want no-store", w.Code, w.Header().Get("Cache-Control"))
	}
	if w, _ := login("127.0.0.1", net.ParseIP("127.0.0.1")); strings.Contains(w.Header().Get("Set-Cookie"), "Secure") {
		t.Errorf("login on loopback: cookie %q, want no Secure (plain HTTP to localhost)", w.Header().Get("Set-Cookie"))
	}
	if w := do("GET", "/ops/live/data", "10.1.1.1", nil, nil, ck); w.Code != 200 {
		t.Errorf("data with a fresh session: %d", w.Code)
	}
	old := CookieName + "=" + l.session(time.Now().Add(-2*time.Hour).UnixMilli())
	if w := do("GET", "/ops/live/data", "10.1.1.1", nil, nil, old); w.Code != 401 {
		t.Errorf("a session issued 2 h ago with a TTL of 1 h: %d, want 401", w.Code)
	}
	forged := CookieName + "=" + strings.Replace(ck[len(CookieName)+1:], ".", "1.", 1)
	if w := do("GET", "/ops/live/data", "10.1.1.1", nil, nil, forged); w.Code != 401 {
		t.Errorf("a session with its time changed: %d, want 401", w.Code)
	}

	time.Sleep(2 * time.Millisecond) // sessions are told apart by the millisecond they were issued in
	if w := do("POST", "/ops/logout", "10.1.1.1", nil, nil, ck); w.Code != http.StatusSeeOther || !strings.Contains(w.Header().Get("Set-Cookie"), "Max-Age=0") {
		t.Errorf("logout: %d, cookie %q", w.Code, w.Header().Get("Set-Cookie"))
	}
	if w := do("GET", "/ops/live/data", "10.1.1.1", nil, nil, ck); w.Code != 401 {
		t.Errorf("the session after logout: %d, want 401", w.Code)
	}
	time.Sleep(2 * time.Millisecond)
	if _, ck2 := login("10.1.1.1", nil); do("GET", "/ops/live/data", "10.1.1.1", nil, nil, ck2).Code != 200 {
		t.Error("a login after the logout does not work")
	}

	for i := 0; i < 5; i++ {
		if w := do("POST", "/ops/login", "203.0.113.9", nil, url.Values{"token": {"guess"}}, ""); w.Code != 401 {
			t.Errorf("wrong token %d: %d, want 401", i+1, w.Code)
		}
	}
	if w, _ := login("203.0.113.9", nil); w.Code != http.StatusTooManyRequests || w.Header().Get("Retry-After") == "" {
		t.Errorf("the right token after 5 wrong ones from the client: %d, want 429 with Retry-After", w.Code)
	}
	if w := do("GET", "/ops/live/data", "203.0.113.9", nil, nil, ""); w.Code != 401 {
		t.Errorf("data without credentials from the limited client: %d, want 401", w.Code)
	}
	if w, _ := login("198.51.100.7", nil); w.Code != http.StatusSeeOther {
		t.Errorf("another client: %d, want 303", w.Code)
	}
	if n := testutil.ToFloat64(admin.Failures("live")); n != 5 {
		t.Errorf("flashsale_admin_auth_failures_total{surface=live} = %v, want 5", n)
	}
}
