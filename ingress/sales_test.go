package ingress

import (
	"fmt"
	"math"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/flashsale/flashsale"
)

// TestSalePriceBounds: a price, or a price × per_user_limit, that could
// overflow an order's amount is 400 invalid naming price_cents.
func TestSalePriceBounds(t *testing.T) {
	in := func(price int64, limit int) *saleInput {
		sku, name, stock := "S", "n", 10
		starts, ends := "2026-01-01T00:00:00Z", "2030-01-01T00:00:00Z"
		return &saleInput{SKU: &sku, Name: &name, Stock: &stock, PriceCents: &price, PerUserLimit: &limit, StartsAt: &starts, EndsAt: &ends}
	}
	for _, c := range []struct {
		price int64
		limit int
		ok    bool
	}{
		{499900, 1, true},
		{MaxPriceCents, 1000, true},
		{MaxPriceCents + 1, 1, false},
		{math.MaxInt64, 2, false},
		{MaxPriceCents, MaxStock, false},
	} {
		_, err := in(c.price, c.limit).toSale(time.Now())
		if c.ok && err != nil {
			t.Errorf("price %d limit %d: %v", c.price, c.limit, err)
		}
		if !c.ok && (flashsale.ErrorCode(err) != flashsale.CodeInvalid) {
			t.Errorf("price %d limit %d: %v, want invalid", c.price, c.limit, err)
		}
	}
}

// TestCreateSale: admin only; every field checked (400 invalid naming it);
// 201 with the sale's view; an existing id is 409 conflict.
func TestCreateSale(t *testing.T) {
	f := newHandlerFixture(t, fakeLifecycle{})
	body := func(change string) string {
		fields := map[string]string{"id": `"phone"`, "sku": `"IP15"`, "name": `"iPhone 15"`, "stock": "100", "price_cents": "499900",
			"starts_at": `"2026-01-01T00:00:00Z"`, "ends_at": `"2030-01-01T00:00:00Z"`}
		if k, v, ok := strings.Cut(change, "="); ok {
			if v == "" {
				delete(fields, k)
			} else {
				fields[k] = v
			}
		}
		var parts []string
		for k, v := range fields {
			parts = append(parts, fmt.Sprintf("%q: %s", k, v))
		}
		return "{" + strings.Join(parts, ",") + "}"
	}
	for _, c := range []struct{ user, change, want string }{
		{"", "", "401 unauthorized"},
		{"u1", "", "401 unauthorized"},
		{"token:wrong-token-0123456789", "", "401 unauthorized"},
		{"admin", "id=\"no spaces\"", "400 invalid: id"},
		{"admin", "sku=", "400 invalid: sku"},
		{"admin", "stock=0", "400 invalid: stock"},
		{"admin", "stock=-1", "400 invalid: stock"},
		{"admin", "price_cents=", "400 invalid: price_cents"},
		{"admin", "per_user_limit=0", "400 invalid: per_user_limit"},
		{"admin", "starts_at=\"tomorrow\"", "400 invalid: starts_at"},
		{"admin", "ends_at=\"2025-01-01T00:00:00Z\"", "400 invalid: ends_at"},
		{"admin", "payment_window_seconds=86401", "400 invalid: payment_window_seconds"},
		{"admin", "inventory=\"disk\"", "400 invalid: inventory"},
		{"admin", "stock=\"many\"", "400 bad_request"},
	} {
		code, out := f.do(t, "/api/v1/sales", c.user, body(c.change))
		if got := fmt.Sprintf("%d %s", code, errCode(out)); !strings.HasPrefix(got, c.want) {
			t.Errorf("%s as %q: %s, want %s", c.change, c.user, got, c.want)
		}
	}
	if len(f.sales) != 3 {
		t.Fatalf("%d sales after refused creations, want the fixture's 3", len(f.sales))
	}
	code, out := f.do(t, "/api/v1/sales", "admin", body(""))
	if code != http.StatusCreated || out["id"] != "phone" || out["price_cents"] != 499900.0 || out["per_user_limit"] != 1.0 ||
		out["payment_window_seconds"] != 900.0 || out["inventory"] != "redis" || out["state"] == nil || out["stock"] == nil {
		t.Errorf("create: %d %v, want 201 with the sale and its defaults", code, out)
	}
	if s := f.sales["phone"]; s == nil || s.Stock != 100 || !s.EndsAt.Equal(time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)) {
		t.Errorf("stored %+v", s)
	}
	if code, out := f.do(t, "/api/v1/sales", "admin", body("")); code != http.StatusConflict {
		t.Errorf("the same id again: %d %v, want 409 conflict", code, out)
	}
}
