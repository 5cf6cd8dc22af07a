package httpapi

import (
	"bytes"
	"log/slog"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

// Every failed admin authentication is counted by surface; the log gets one
// line per 10 s at most, however many failures; the right token passes and
// counts nothing; without a token every check fails.
func TestAdminAuthCountsAndLogsFailures(t *testing.T) {
	var logged bytes.Buffer
	reg := prometheus.NewRegistry()
	a := NewAdminAuth("admin-token-0123456789", reg, slog.New(slog.NewTextHandler(&logged, nil)))
	r := httptest.NewRequest("GET", "/ops/login", nil)
	for i := 0; i < 300; i++ {
		if a.Check(r, "live", "guess") {
			t.Fatal("a wrong token passed")
		}
	}
	a.Check(r, "api", "")
	if !a.Check(r, "api", "admin-token-0123456789") {
		t.Error("the admin token did not pass")
	}
	if got := testutil.ToFloat64(a.failures.WithLabelValues("live")); got != 300 {
		t.Errorf("live failures %v, want 300", got)
	}
	if got := testutil.ToFloat64(a.failures.WithLabelValues("api")); got != 1 {
		t.Errorf("api failures %v, want 1", got)
	}
	if n := strings.Count(logged.String(), "admin authentication failed"); n != 1 || !strings.Contains(logged.String(), "level=WARN") ||
		!strings.Contains(logged.String(), "client=192.0.2.1:1234") {
		t.Errorf("%d lines, want one WARN naming the client:\n%s", n, logged.String())
	}
	if off := NewAdminAuth("", nil, slog.New(slog.DiscardHandler)); off.Enabled() || off.Check(r, "api", "") {
		t.Error("without a token: enabled, or an empty token passed")
	}
}
