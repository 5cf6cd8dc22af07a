package ingress

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// The buyer's page is served for a sale that exists, with its script and
// styles from this server only; another sale's page is 404.
func TestBuyerPageServed(t *testing.T) {
	f := newHandlerFixture(t, fakeLifecycle{})
	get := func(path string) *httptest.ResponseRecorder {
		rec := httptest.NewRecorder()
		f.srv.Handler().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, path, nil))
		return rec
	}
	rec := get("/try/a")
	body := rec.Body.String()
	if rec.Code != http.StatusOK || !strings.Contains(body, `data-sale="a"`) || !strings.Contains(body, `src="/try/static/try.js"`) ||
		!strings.Contains(rec.Header().Get("Content-Security-Policy"), "default-src 'none'") {
		t.Fatalf("GET /try/a: %d %q, CSP %q", rec.Code, body, rec.Header().Get("Content-Security-Policy"))
	}
	if rec := get("/try/nope"); rec.Code != http.StatusNotFound || strings.Contains(rec.Body.String(), "try.js") {
		t.Errorf("GET /try/nope: %d, want 404 without the script", rec.Code)
	}
	for _, p := range []string{"/try/static/try.js", "/try/static/try.css"} {
		if rec := get(p); rec.Code != http.StatusOK || rec.Body.Len() == 0 {
			t.Errorf("GET %s: %d", p, rec.Code)
		}
	}
	if rec := get("/try/a%3Cscript%3E"); strings.Contains(rec.Body.String(), "<script>") {
		t.Errorf("a sale id is written into the page unescaped: %q", rec.Body.String())
	}
}
