package mysqlstore

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/flashsale/flashsale"
)

// The sweeper's pass reads a shard's closed orders in the order they closed,
// each whole (a bundle with every item), page by page from the mark of the
// last one read; unpaid and paid orders are not closed, and an order closed
// less than settle ago is left for a later pass.
func TestClosedOrdersInTheOrderTheyClosed(t *testing.T) {
	s := newStore(t)
	ctx := context.Background()
	x, y := createSale(t, s, "x", 10, 1), createSale(t, s, "y", 10, 1)
	users := usersOn(s, 0, 4, "closed")
	a, b, c := saleOrder(x, users[0], 1), saleOrder(x, users[1], 1), saleOrder(x, users[2], 1)
	d := bundleOrder(users[3], 1, x, y)
	if _, err := s.CreateOrders(ctx, 0, []*flashsale.Order{a, b, c, d}); err != nil {
		t.Fatal(err)
	}
	for _, o := range []*flashsale.Order{c, d, a} { // closed in this order; b stays unpaid
		if _, changed, err := s.Cancel(ctx, o.Ref(), time.Now()); err != nil || !changed {
			t.Fatalf("cancel %s: changed %v, %v", o.ID, changed, err)
		}
	}

	var got []string
	var mark flashsale.OrderMark
	for page := 0; page < 10; page++ {
		orders, marks, err := s.ClosedOrders(ctx, 0, mark, 0, 1)
		if err != nil {
			t.Fatal(err)
		}
		if len(orders) != len(marks) || len(orders) > 1 {
			t.Fatalf("page %d: %d orders, %d marks; want as many, at most 1", page, len(orders), len(marks))
		}
		if len(orders) == 0 {
			break
		}
		o := orders[0]
		if marks[0].OrderID != o.ID || !marks[0].At.After(mark.At) || o.Status != flashsale.OrderCancelled {
			t.Errorf("page %d: order %s %s, mark %+v after %+v", page, o.ID, o.Status, marks[0], mark)
		}
		if o.ID == d.ID && len(o.Items) != 2 {
			t.Errorf("the bundle came with %d items, want both", len(o.Items))
		}
		got = append(got, o.ID)
		mark = marks[0]
	}
	if want := []string{c.ID, d.ID, a.ID}; !slices.Equal(got, want) {
		t.Errorf("closed orders %v, want %v (in the order they closed, the unpaid one left out)", got, want)
	}
	if orders, _, err := s.ClosedOrders(ctx, 0, flashsale.OrderMark{}, time.Hour, 10); err != nil || len(orders) != 0 {
		t.Errorf("closed an hour ago at least: %d orders, %v; want none", len(orders), err)
	}
	if orders, _, err := s.ClosedOrders(ctx, 1, flashsale.OrderMark{}, 0, 10); err != nil || len(orders) != 0 {
		t.Errorf("the other shard: %d orders, %v; want none", len(orders), err)
	}
}
