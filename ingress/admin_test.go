package ingress

import (
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/flashsale/flashsale/mock"
)

// A wrong or missing admin token on an admin endpoint is 401 and counted in
// flashsale_admin_auth_failures_total{surface="api"}; a token without
// "Bearer " is no token.
func TestAdminFailuresCounted(t *testing.T) {
	reg := prometheus.NewRegistry()
	srv, err := New(Config{Sales: mock.Sales{}, Stock: newClaimStock(nil), Orders: mock.NewBook(nil), Queue: &recQueue{},
		Lifecycle: fakeLifecycle{}, AdminToken: "admin-token-0123456789", LimitPerWindow: -1, Registry: reg,
		Log: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	for _, auth := range []string{"", "Bearer wrong", "admin-token-0123456789"} {
		req := httptest.NewRequest(http.MethodPost, "/api/v1/sales", nil)
		if auth != "" {
			req.Header.Set("Authorization", auth)
		}
		rec := httptest.NewRecorder()
		srv.Handler().ServeHTTP(rec, req)
		if rec.Code != http.StatusUnauthorized {
			t.Errorf("Authorization %q: %d, want 401", auth, rec.Code)
		}
	}
	if n, err := testutil.GatherAndCount(reg, "flashsale_admin_auth_failures_total"); err != nil || n != 2 {
		t.Errorf("series %d (%v), want api and live", n, err)
	}
	if v := testutil.ToFloat64(srv.cfg.Admin.Failures("api")); v != 3 {
		t.Errorf("api failures %v, want 3", v)
	}
}
