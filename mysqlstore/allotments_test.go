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

// usersOn returns n user ids on shard (prefix makes them distinct per caller).
func usersOn(s *Store, shard, n int, prefix string) []string {
	var out []string
	for i := 0; len(out) < n; i++ {
		if u := fmt.Sprintf("%s%d", prefix, i); s.ShardOf(u) == shard {
			out = append(out, u)
		}
	}
	return out
}

func saleOrder(sale *flashsale.Sale, user string, q int) *flashsale.Order {
	o := order(user)
	o.SaleID, o.Quantity, o.AmountCents = sale.ID, q, sale.PriceCents*int64(q)
	return o
}

// checkCap asserts the cap's bookkeeping: each shard's used equals its holding
// units, Σ allotted + in flight equals the stock, and no shard is over its cap.
// It returns the units in holding orders.
func checkCap(t *testing.T, s *Store, sale *flashsale.Sale) int {
	t.Helper()
	ctx := context.Background()
	c, err := s.Cap(ctx, sale.ID)
	if err != nil {
		t.Fatal(err)
	}
	sumAllotted, units := c.InFlight, 0
	for _, a := range c.Shards {
		if a.Used != a.InOrders || a.Used > a.Allotted || a.Used < 0 {
			t.Errorf("shard %d: allotted %d used %d, %d units in its orders", a.Shard, a.Allotted, a.Used, a.InOrders)
		}
		sumAllotted += a.Allotted
		units += a.InOrders
	}
	if sumAllotted != sale.Stock {
		t.Errorf("allotments add up to %d (%d in flight), stock %d", sumAllotted, c.InFlight, sale.Stock)
	}
	if units > sale.Stock {
		t.Errorf("OVERSOLD: %d units in orders, stock %d", units, sale.Stock)
	}
	return units
}

// Many batches on both shards race for the units of one sale, as workers do
// when Redis lets through more than there is (it lost holds): exactly the stock
// is ordered, the rest is sold out, whichever shard the buyers are on.
func TestCapUnderConcurrentBatchesOnTwoShards(t *testing.T) {
	s := newStore(t)
	raceForUnits(t, s, createSale(t, s, "hot", 57, 1), func(b int) int { return b % 2 })
}

// As many buyers as units, two thirds of them on one shard, all at once: every
// one of them gets a unit (no false sold-out while units move between shards).
func TestCapExactStockSkewedShards(t *testing.T) {
	s := newStore(t)
	raceForUnits(t, s, createSale(t, s, "exact", 240, 1), func(b int) int { return min(b%3, 1) })
}

// raceForUnits runs 24 batches of 10 buyers at once, batch b on shard
// shardOf(b), and checks that min(stock, 240) orders are made, no more.
func raceForUnits(t *testing.T, s *Store, sale *flashsale.Sale, shardOf func(int) int) {
	t.Helper()
	ctx := context.Background()
	const batches, perBatch = 24, 10
	var wg sync.WaitGroup
	var mu sync.Mutex
	outcomes := map[flashsale.CreateOutcome]int{}
	for b := 0; b < batches; b++ {
		shard := shardOf(b)
		users := usersOn(s, shard, perBatch, fmt.Sprintf("b%d-", b))
		batch := make([]*flashsale.Order, perBatch)
		for i, u := range users {
			batch[i] = saleOrder(sale, u, 1)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			res, err := s.CreateOrders(ctx, shard, batch)
			if err != nil {
				t.Error(err)
				return
			}
			mu.Lock()
			defer mu.Unlock()
			for _, r := range res {
				outcomes[r.Outcome]++
			}
		}()
	}
	wg.Wait()
	if outcomes[flashsale.CreateNew] != sale.Stock || outcomes[flashsale.CreateSoldOut] != batches*perBatch-sale.Stock {
		t.Errorf("outcomes %v: want %d created and %d sold out", outcomes, sale.Stock, batches*perBatch-sale.Stock)
	}
	if units := checkCap(t, s, sale); units != sale.Stock {
		t.Errorf("%d units in orders, want all %d", units, sale.Stock)
	}
}

// Buyers all on one shard still get every unit: the dry shard borrows the other
// shard's unused allotment; a unit given back (cancel) can be bought again.
func TestDryShardBorrowsAndCancelGivesRoomBack(t *testing.T) {
	s := newStore(t)
	ctx := context.Background()
	sale := createSale(t, s, "skew", 10, 3)
	users := usersOn(s, 0, 6, "u")
	var batch []*flashsale.Order
	for _, u := range users[:5] {
		batch = append(batch, saleOrder(sale, u, 2))
	}
	res, err := s.CreateOrders(ctx, 0, batch)
	if err != nil {
		t.Fatal(err)
	}
	for i, r := range res {
		if r.Outcome != flashsale.CreateNew {
			t.Fatalf("order %d of the dry shard: outcome %v, want created (the other shard had room)", i, r.Outcome)
		}
	}
	c, _ := s.Cap(ctx, sale.ID)
	all := c.Shards
	if all[1].Allotted != 0 {
		t.Errorf("shard 1 kept %d units of allotment it does not use", all[1].Allotted)
	}
	last := saleOrder(sale, users[5], 1)
	if res, err := s.CreateOrders(ctx, 0, []*flashsale.Order{last}); err != nil || res[0].Outcome != flashsale.CreateSoldOut {
		t.Fatalf("an order over the stock: %+v, %v; want sold out", res, err)
	}
	// A buyer on the other shard gets a cancelled order's units back from shard 0.
	if _, changed, err := s.Cancel(ctx, batch[0].Ref(), time.Now()); err != nil || !changed {
		t.Fatalf("cancel: %v, %v", changed, err)
	}
	other := saleOrder(sale, usersOn(s, 1, 1, "v")[0], 2)
	if res, err := s.CreateOrders(ctx, 1, []*flashsale.Order{other}); err != nil || res[0].Outcome != flashsale.CreateNew {
		t.Fatalf("an order for cancelled units: %+v, %v; want created", res, err)
	}
	if units := checkCap(t, s, sale); units != 10 {
		t.Errorf("%d units in orders, want 10", units)
	}
}

// A borrower that dies between the donor's debit and the recipient's credit
// leaves units in flight, never on both shards; the next borrow delivers them.
func TestTransferLeftInFlightIsCompleted(t *testing.T) {
	s := newStore(t)
	ctx := context.Background()
	sale := createSale(t, s, "flight", 4, 1)
	for i := range s.shards {
		if err := s.ensureAllotment(ctx, i, sale); err != nil {
			t.Fatal(err)
		}
	}
	// Shard 0 gives its 2 units to shard 1, and the borrower dies.
	tr := transfer{id: uuid.NewString(), saleID: sale.ID, from: 0, to: 1, units: 5}
	if err := s.debit(ctx, &tr); err != nil || tr.units != 2 {
		t.Fatalf("debit of 5 from a shard with 2 free: took %d, %v; want 2", tr.units, err)
	}
	if c, _ := s.Cap(ctx, sale.ID); c.InFlight != 2 {
		t.Fatalf("%d units in flight, want 2", c.InFlight)
	}
	checkCap(t, s, sale)
	// Four buyers on shard 1: its own 2 units, then the 2 in flight.
	var batch []*flashsale.Order
	for _, u := range usersOn(s, 1, 4, "w") {
		batch = append(batch, saleOrder(sale, u, 1))
	}
	res, err := s.CreateOrders(ctx, 1, batch)
	if err != nil {
		t.Fatal(err)
	}
	for i, r := range res {
		if r.Outcome != flashsale.CreateNew {
			t.Errorf("order %d: outcome %v, want created (the units in flight are shard 1's)", i, r.Outcome)
		}
	}
	if c, _ := s.Cap(ctx, sale.ID); c.InFlight != 0 {
		t.Errorf("%d units still in flight", c.InFlight)
	}
	checkCap(t, s, sale)
}

// The per-user limit holds in MySQL: a user whose paid orders fill it gets no
// more, whatever Redis said.
func TestPerUserLimitInTheOrderTransaction(t *testing.T) {
	s := newStore(t)
	ctx := context.Background()
	sale := createSale(t, s, "lim", 10, 2)
	first := saleOrder(sale, "carol", 2)
	shard := s.ShardOf("carol")
	if res, err := s.CreateOrders(ctx, shard, []*flashsale.Order{first}); err != nil || res[0].Outcome != flashsale.CreateNew {
		t.Fatalf("first order: %+v, %v", res, err)
	}
	if outcome, _, err := s.Pay(ctx, flashsale.OrderRef{User: "carol", Order: first.ID}, "pay-1", first.AmountCents, false, time.Now()); err != nil || outcome != flashsale.PayPaid {
		t.Fatalf("pay: %v, %v", outcome, err)
	}
	again := saleOrder(sale, "carol", 1)
	if res, err := s.CreateOrders(ctx, shard, []*flashsale.Order{again}); err != nil || res[0].Outcome != flashsale.CreateOverLimit {
		t.Fatalf("an order over the limit: %+v, %v; want over limit", res, err)
	}
	checkCap(t, s, sale)
}

// A ticket given up first (a released hold) never makes an order, and a ticket
// that made its order first is not given up: the first decision stands.
func TestGiveUpAndLateCommit(t *testing.T) {
	s := newStore(t)
	ctx := context.Background()
	sale := createSale(t, s, "race", 1, 1)
	late := saleOrder(sale, "erin", 1)
	ordered, err := s.GiveUp(ctx, &flashsale.Ticket{ID: late.ID, SaleID: sale.ID, UserID: "erin", Quantity: 1, Status: flashsale.TicketFailed})
	if err != nil || ordered {
		t.Fatalf("give up: %v, %v", ordered, err)
	}
	res, err := s.CreateOrders(ctx, s.ShardOf("erin"), []*flashsale.Order{late})
	if err != nil || res[0].Outcome != flashsale.CreateDecided || res[0].Decision != flashsale.TicketFailed {
		t.Fatalf("late commit after give-up: %+v, %v; want decided failed", res, err)
	}
	if tk, err := s.GetTicket(ctx, flashsale.TicketRef{User: "erin", Ticket: late.ID}); err != nil || tk.Status != flashsale.TicketFailed {
		t.Fatalf("ticket = %+v, %v; want failed", tk, err)
	}
	first := saleOrder(sale, "frank", 1)
	if res, err := s.CreateOrders(ctx, s.ShardOf("frank"), []*flashsale.Order{first}); err != nil || res[0].Outcome != flashsale.CreateNew {
		t.Fatalf("order: %+v, %v", res, err)
	}
	ordered, err = s.GiveUp(ctx, &flashsale.Ticket{ID: first.ID, SaleID: sale.ID, UserID: "frank", Quantity: 1, Status: flashsale.TicketFailed})
	if err != nil || !ordered {
		t.Fatalf("give up after the order: %v, %v; want ordered", ordered, err)
	}
	if units := checkCap(t, s, sale); units != 1 {
		t.Errorf("%d units in orders, want 1", units)
	}
}
