package ingress

import (
	"math"
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
