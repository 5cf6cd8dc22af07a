package ingress

import (
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/flashsale/flashsale"
	"github.com/flashsale/flashsale/mock"
)

// benchServer is a Server on the handler tests' fakes: sales a and b with
// units enough for every iteration, gone sold out, the given window.
func benchServer(b *testing.B, window int) (*Server, *claimStock) {
	b.Helper()
	open := func(id string) *flashsale.Sale {
		return &flashsale.Sale{ID: id, Stock: 1 << 30, PerUserLimit: 2, PriceCents: 100, PaymentWindowSeconds: 60,
			StartsAt: time.Now().Add(-time.Hour), EndsAt: time.Now().Add(time.Hour), Inventory: flashsale.InventoryRedis}
	}
	stock := newClaimStock(map[string]int{"a": 1 << 30, "b": 1 << 30, "gone": 0})
	srv, err := New(Config{Sales: mock.Sales{"a": open("a"), "b": open("b"), "gone": open("gone")},
		Stock: stock, Orders: mock.NewBook(nil), Queue: &recQueue{}, Lifecycle: fakeLifecycle{},
		AdminToken: "admin-token-0123456789", LimitPerWindow: window, Log: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		b.Fatal(err)
	}
	return srv, stock
}

// benchPurchases sends b.N purchases of path with body, user(i) as the
// caller, and fails unless each is answered want.
func benchPurchases(b *testing.B, srv *Server, path, body string, want int, user func(i int) string) {
	b.Helper()
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if code, out := benchSend(srv, path, body, user(i)); code != want {
			b.Fatalf("purchase %d: %d %s, want %d", i, code, out, want)
		}
	}
}

// benchSend sends one purchase and returns its status and body.
func benchSend(srv *Server, path, body, user string) (int, string) {
	req := httptest.NewRequest(http.MethodPost, path, strings.NewReader(body))
	req.Header.Set("X-User-ID", user)
	rec := httptest.NewRecorder()
	srv.Handler().ServeHTTP(rec, req)
	return rec.Code, rec.Body.String()
}

// The admission path's cost per request, on fakes (no network): what the
// checks, the claim and the queuing add to gin's own handling.
func BenchmarkPurchase(b *testing.B) {
	b.Run("admitted", func(b *testing.B) {
		srv, _ := benchServer(b, -1)
		benchPurchases(b, srv, "/api/v1/sales/a/purchase", `{}`, http.StatusAccepted, func(i int) string { return fmt.Sprintf("u%d", i) })
	})
	b.Run("bundle", func(b *testing.B) {
		srv, _ := benchServer(b, -1)
		benchPurchases(b, srv, "/api/v1/purchases", `{"items":[{"sale_id":"a"},{"sale_id":"b"}]}`, http.StatusAccepted,
			func(i int) string { return fmt.Sprintf("u%d", i) })
	})
	b.Run("existing", func(b *testing.B) { // the user's live ticket again, through the claim
		srv, _ := benchServer(b, -1)
		if code, out := benchSend(srv, "/api/v1/sales/a/purchase", `{}`, "holder"); code != http.StatusAccepted {
			b.Fatalf("the first purchase: %d %s", code, out)
		}
		benchPurchases(b, srv, "/api/v1/sales/a/purchase", `{}`, http.StatusOK, func(int) string { return "holder" })
	})
	b.Run("sold_out_remembered", func(b *testing.B) {
		srv, _ := benchServer(b, -1)
		benchPurchases(b, srv, "/api/v1/sales/gone/purchase", `{}`, http.StatusConflict, func(i int) string { return fmt.Sprintf("u%d", i%1000) })
	})
	b.Run("over_budget", func(b *testing.B) { // a window of 1 per 10 ms and the default budget: nearly all 429
		srv, _ := benchServer(b, 1)
		b.ReportAllocs()
		b.ResetTimer()
		for i := 0; i < b.N; i++ {
			code, out := benchSend(srv, "/api/v1/sales/a/purchase", `{}`, fmt.Sprintf("f%d", i%100))
			if code != http.StatusTooManyRequests && code != http.StatusAccepted && code != http.StatusOK {
				b.Fatalf("purchase %d: %d %s", i, code, out)
			}
		}
	})
}
