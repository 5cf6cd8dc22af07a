package mysqlstore

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/flashsale/flashsale"
)

// bundleOrder is user's order of q units of each sale.
func bundleOrder(user string, q int, sales ...*flashsale.Sale) *flashsale.Order {
	now := time.Now().UTC().Truncate(time.Microsecond)
	o := &flashsale.Order{ID: uuid.NewString(), UserID: user, Status: flashsale.OrderPendingPayment, CreatedAt: now, PayBy: now.Add(time.Minute)}
	var items []flashsale.OrderItem
	for _, s := range sales {
		items = append(items, flashsale.OrderItem{SaleID: s.ID, Quantity: q, AmountCents: s.PriceCents * int64(q)})
	}
	o.SetItems(items)
	return o
}

// Bundles of two sales race, on both shards, with buyers of the scarcer sale
// alone: every bundle order holds both items or nothing was written for it, and
// neither sale's cap is passed.
func TestBundlesAllOrNothingUnderTheCap(t *testing.T) {
	s := newStore(t)
	ctx := context.Background()
	a := createSale(t, s, "bundle-a", 30, 1)
	b := createSale(t, s, "bundle-b", 12, 1)
	var wg sync.WaitGroup
	var mu sync.Mutex
	created := map[string]*flashsale.Order{}
	for batch := 0; batch < 8; batch++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var orders []*flashsale.Order
			for i := 0; i < 6; i++ {
				u := fmt.Sprintf("bb%d-%d", batch, i)
				if i%3 == 0 {
					orders = append(orders, saleOrder(b, u, 1))
				} else {
					orders = append(orders, bundleOrder(u, 1, a, b))
				}
			}
			// One batch per shard, as the worker groups them.
			byShard := map[int][]*flashsale.Order{}
			for _, o := range orders {
				byShard[s.ShardOf(o.UserID)] = append(byShard[s.ShardOf(o.UserID)], o)
			}
			for shard, group := range byShard {
				res, err := s.CreateOrders(ctx, shard, group)
				if err != nil {
					t.Error(err)
					return
				}
				for i, r := range res {
					if r.Outcome == flashsale.CreateNew {
						mu.Lock()
						created[group[i].ID] = group[i]
						mu.Unlock()
					} else if r.Outcome != flashsale.CreateSoldOut {
						t.Errorf("order %s: outcome %d, want created or sold out", group[i].ID, r.Outcome)
					}
				}
			}
		}()
	}
	wg.Wait()
	if got := checkCap(t, s, b); got != b.Stock {
		t.Errorf("sale b: %d units ordered, want all %d (more buyers than units)", got, b.Stock)
	}
	checkCap(t, s, a)
	bundles := 0
	for id, o := range created {
		stored, err := s.GetOrder(ctx, flashsale.OrderRef{User: o.UserID, Order: id})
		if err != nil {
			t.Fatal(err)
		}
		if len(stored.Items) != len(o.Items) {
			t.Errorf("order %s stored with %d items, made with %d", id, len(stored.Items), len(o.Items))
		}
		if len(o.Items) == 2 {
			bundles++
			if stored.SaleID != "" || stored.Quantity != 0 || stored.AmountCents != a.PriceCents+b.PriceCents {
				t.Errorf("bundle order %+v: want no sale_id or quantity and the total amount", stored)
			}
		}
	}
	var aUnits int
	for _, db := range s.shards {
		var n int
		if err := db.QueryRow(`SELECT COUNT(*) FROM orders WHERE sale_id = ?`, a.ID).Scan(&n); err != nil {
			t.Fatal(err)
		}
		aUnits += n
	}
	if aUnits != bundles {
		t.Errorf("sale a has %d order rows, want one per bundle order (%d): a bundle was half written", aUnits, bundles)
	}
}

// A paid order of 3 is returned as 1 then 2: each return lowers the cap's
// `used`; the same return again changes nothing; a third is invalid_quantity; a
// return id reused with another body (or another order) is a conflict; an
// unpaid order is not_paid.
func TestReturnsOnceNeverMoreThanBought(t *testing.T) {
	s := newStore(t)
	ctx := context.Background()
	sale := createSale(t, s, "returns", 10, 3)
	paid := saleOrder(sale, "ret-buyer", 3)
	unpaid := saleOrder(sale, "ret-other", 1)
	for _, o := range []*flashsale.Order{paid, unpaid} {
		if _, err := s.CreateOrders(ctx, s.ShardOf(o.UserID), []*flashsale.Order{o}); err != nil {
			t.Fatal(err)
		}
	}
	if out, _, err := s.Pay(ctx, paid.Ref(), "pay-ret", paid.AmountCents, false, time.Now()); err != nil || out != flashsale.PayPaid {
		t.Fatalf("pay = %v, %v", out, err)
	}
	ret := func(id string, q int) (*flashsale.Order, bool, error) {
		return s.Return(ctx, flashsale.ReturnRequest{ID: id, OrderID: paid.ID, Lines: []flashsale.Line{{SaleID: sale.ID, Quantity: q}}}, time.Now())
	}
	o, replay, err := ret("r1", 1)
	if err != nil || replay || o.Items[0].Returned != 1 {
		t.Fatalf("first return: %+v replay=%v err=%v", o, replay, err)
	}
	if o, replay, err = ret("r1", 1); err != nil || !replay || o.Items[0].Returned != 1 {
		t.Fatalf("the same return again: %+v replay=%v err=%v, want unchanged", o, replay, err)
	}
	if _, _, err = ret("r1", 2); flashsale.ErrorCode(err) != flashsale.CodeConflict {
		t.Errorf("r1 with another body: %v, want conflict", err)
	}
	if _, _, err = s.Return(ctx, flashsale.ReturnRequest{ID: "r1", OrderID: unpaid.ID, Lines: []flashsale.Line{{SaleID: sale.ID, Quantity: 1}}}, time.Now()); flashsale.ErrorCode(err) != flashsale.CodeConflict {
		t.Errorf("r1 for another order: %v, want conflict", err)
	}
	if o, _, err = ret("r2", 2); err != nil || o.Items[0].Returned != 3 {
		t.Fatalf("second return: %+v %v", o, err)
	}
	if _, _, err = ret("r3", 1); flashsale.ErrorCode(err) != flashsale.CodeInvalidQuantity {
		t.Errorf("a third return: %v, want invalid_quantity", err)
	}
	if _, _, err = ret("r2", 2); err != nil {
		t.Errorf("r2 again after everything was returned: %v, want a replay", err)
	}
	if _, _, err = s.Return(ctx, flashsale.ReturnRequest{ID: "r4", OrderID: unpaid.ID, Lines: []flashsale.Line{{SaleID: sale.ID, Quantity: 1}}}, time.Now()); flashsale.ErrorCode(err) != flashsale.CodeNotPaid {
		t.Errorf("return of an unpaid order: %v, want not_paid", err)
	}
	if got := checkCap(t, s, sale); got != 1 {
		t.Errorf("%d units held or sold after returning 3 of 3, want 1 (the unpaid order)", got)
	}
	var events int
	if err := s.shards[s.ShardOf(paid.UserID)].QueryRow(`SELECT COUNT(*) FROM outbox WHERE order_id = ? AND event_type = 'order.returned'`, paid.ID).Scan(&events); err != nil || events != 2 {
		t.Errorf("order.returned events: %d (%v), want 2", events, err)
	}
}

// Expiry is decided by the database's clock: a caller whose clock runs an hour
// ahead does not expire an order that is not due.
func TestExpiryByTheDatabasesClock(t *testing.T) {
	s := newStore(t)
	ctx := context.Background()
	sale := createSale(t, s, "clock", 2, 1)
	o := saleOrder(sale, "clock-user", 1) // payable for a minute
	if res, err := s.CreateOrders(ctx, s.ShardOf(o.UserID), []*flashsale.Order{o}); err != nil || res[0].Outcome != flashsale.CreateNew {
		t.Fatalf("create: %+v %v", res, err)
	}
	if got, changed, err := s.Expire(ctx, o.Ref(), time.Now().Add(time.Hour)); err != nil || changed || got.Status != flashsale.OrderPendingPayment {
		t.Fatalf("expire by a clock an hour ahead: %+v changed=%v %v, want untouched", got, changed, err)
	}
}

// A late payment of an expired order takes its room in the cap again when
// there is some (borrowing from the other shard), and is refund_required when
// the units went to others; the cap is never passed.
func TestLatePaymentTakesRoomAgainOrRefunds(t *testing.T) {
	s := newStore(t)
	ctx := context.Background()
	sale := createSale(t, s, "late", 2, 1)
	users := usersOn(s, 0, 3, "late")
	first, second := saleOrder(sale, users[0], 1), saleOrder(sale, users[1], 1)
	for _, o := range []*flashsale.Order{first, second} {
		o.PayBy = o.CreatedAt.Add(-time.Second) // due as soon as it is made, by the database's clock
		if res, err := s.CreateOrders(ctx, 0, []*flashsale.Order{o}); err != nil || res[0].Outcome != flashsale.CreateNew {
			t.Fatalf("create: %+v %v", res, err)
		}
	}
	for _, o := range []*flashsale.Order{first, second} {
		if _, changed, err := s.Expire(ctx, o.Ref(), time.Now()); err != nil || !changed {
			t.Fatalf("expire: %v %v", changed, err)
		}
	}
	out, o, err := s.Pay(ctx, first.Ref(), "late-1", first.AmountCents, true, time.Now())
	if err != nil || out != flashsale.PayPaid || o.Status != flashsale.OrderPaid {
		t.Fatalf("late payment with room: %v %+v %v, want paid", out, o, err)
	}
	// The second order's unit goes to a new buyer; its late payment finds none.
	taker := saleOrder(sale, users[2], 1)
	if res, err := s.CreateOrders(ctx, 0, []*flashsale.Order{taker}); err != nil || res[0].Outcome != flashsale.CreateNew {
		t.Fatalf("create: %+v %v", res, err)
	}
	out, o, err = s.Pay(ctx, second.Ref(), "late-2", second.AmountCents, true, time.Now())
	if err != nil || out != flashsale.PayRefundRequired || o.Status != flashsale.OrderExpired {
		t.Fatalf("late payment without room: %v %+v %v, want refund_required and expired", out, o, err)
	}
	if got := checkCap(t, s, sale); got != 2 {
		t.Errorf("%d units held or sold, want 2", got)
	}
}
