package e2e

import (
	"context"
	"fmt"
	"net/http"
	"testing"
	"time"
)

// TestUnpaidStrikesBlock: with FLASHSALE_UNPAID_STRIKES=2 and a 15 s strike
// window (FLASHSALE_UNPAID_STRIKE_HOURS takes fractions), a user whose two
// orders expired unpaid gets 403 blocked on purchase, another user does not,
// and the user buys again (202) once the older expiry (its pay_by) has left
// the window, not before.
func TestUnpaidStrikesBlock(t *testing.T) {
	e := newEnv(t)
	const window = 15 * time.Second
	p := e.start("all", map[string]string{
		"FLASHSALE_UNPAID_STRIKES":      "2",
		"FLASHSALE_UNPAID_STRIKE_HOURS": fmt.Sprint(window.Hours()),
		"FLASHSALE_SWEEP_INTERVAL":      "1",
	})
	c := p.client()
	spec := openSale(10, 1, 100)
	spec.PaymentWindowSeconds = 1
	saleID := c.createSale(t, spec)
	u := "striker-" + randHex(3)

	var payBys []time.Time
	for i := range 2 {
		o := c.placeOrders(t, saleID, []string{u})[0]
		c.awaitOrders(t, []placedOrder{o}, 30*time.Second, "expired", func(v orderView) bool { return v.Status == "expired" })
		payBys = append(payBys, o.PayBy)
		// After the first, one strike is not enough to block: the next
		// round's placeOrders asserts its purchase is 202.
		t.Logf("order %d of %s expired unpaid (pay_by %s)", i+1, u, o.PayBy.Format(time.RFC3339Nano))
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	r, err := c.purchase(ctx, saleID, u, 1)
	cancel()
	if err != nil {
		t.Fatal(err)
	}
	checkError(t, "purchase after 2 unpaid expiries", r, http.StatusForbidden, "blocked")
	if other := c.placeOrders(t, saleID, []string{"bystander-" + randHex(3)}); len(other) != 1 {
		t.Error("another user could not buy")
	}

	unblockAt := payBys[0].Add(window)
	var now time.Time
	if !poll(time.Until(unblockAt.Add(30*time.Second)), 200*time.Millisecond, func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		r, err := c.purchase(ctx, saleID, u, 1)
		cancel()
		now = time.Now()
		if err == nil && r.Status == http.StatusAccepted {
			return true
		}
		if err != nil || r.Status != http.StatusForbidden {
			t.Fatalf("purchase while waiting for the block to lift: %v %s, want 403 blocked then 202", err, r)
		}
		return false
	}) {
		t.Fatalf("still blocked at %s, the older expiry left the window at %s", now.Format(time.RFC3339Nano), unblockAt.Format(time.RFC3339Nano))
	}
	if now.Before(unblockAt.Add(-time.Second)) {
		t.Errorf("bought again at %s, before the older expiry left the window (%s)", now.Format(time.RFC3339Nano), unblockAt.Format(time.RFC3339Nano))
	}
	t.Logf("bought again %s after the older expiry left the window", now.Sub(unblockAt).Round(time.Millisecond))
}
