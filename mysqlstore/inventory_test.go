package mysqlstore

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/flashsale/flashsale"
)

func TestMySQLInventoryHoldsExactlyAndIdempotently(t *testing.T) {
	s := newStore(t)
	ctx := context.Background()
	now := time.Now().UTC().Truncate(time.Microsecond)
	sale := &flashsale.Sale{ID: "inv", SKU: "k", Name: "n", Stock: 10, PerUserLimit: 1, StartsAt: now, EndsAt: now.Add(time.Hour),
		PaymentWindowSeconds: 60, Inventory: flashsale.InventoryMySQL, CreatedAt: now}
	if err := s.CreateSale(ctx, sale); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	kinds := map[flashsale.HoldKind]int{}
	for i := 0; i < 40; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			h, err := s.HoldStock(ctx, "inv", []StockHold{{fmt.Sprintf("t%d", i), 1}})
			if err != nil {
				t.Error(err)
				return
			}
			mu.Lock()
			kinds[h[0].Kind]++
			mu.Unlock()
		}()
	}
	wg.Wait()
	if kinds[flashsale.HoldHeld] != 10 || kinds[flashsale.HoldSoldOut] != 30 {
		t.Fatalf("holds %v, want 10 held and 30 sold out", kinds)
	}
	want := func(st flashsale.StockLevel) {
		t.Helper()
		if got, err := s.StockOf(ctx, "inv"); err != nil || got != st {
			t.Fatalf("stock %+v (%v), want %+v", got, err, st)
		}
	}
	want(flashsale.StockLevel{Total: 10, Held: 10})
	var held []string
	for i := 0; i < 40 && len(held) < 2; i++ {
		if h, _ := s.HoldStock(ctx, "inv", []StockHold{{fmt.Sprintf("t%d", i), 1}}); h[0].Kind == flashsale.HoldHeld { // a redelivery
			held = append(held, fmt.Sprintf("t%d", i))
		}
	}
	want(flashsale.StockLevel{Total: 10, Held: 10})
	for i := 0; i < 2; i++ {
		s.ReleaseStock(ctx, "inv", held[0])
		s.ConfirmStock(ctx, "inv", held[1])
	}
	want(flashsale.StockLevel{Total: 10, Available: 1, Held: 8, Sold: 1})
	if h, _ := s.HoldStock(ctx, "inv", []StockHold{{held[0], 1}}); h[0].Kind != flashsale.HoldReleased {
		t.Fatalf("a released ticket held again: %+v", h)
	}
	if h, _ := s.ReleaseStock(ctx, "inv", "never-held"); h.Kind != flashsale.HoldNone {
		t.Fatalf("release of an unknown ticket returned %+v", h)
	}
	if h, _ := s.HoldStock(ctx, "inv", []StockHold{{"never-held", 1}}); h[0].Kind != flashsale.HoldReleased {
		t.Fatalf("a ticket released before its hold was held: %+v", h)
	}
	want(flashsale.StockLevel{Total: 10, Available: 1, Held: 8, Sold: 1})
	// A batch: one new ticket gets the last unit, the next is sold out, a seen one
	// keeps its state.
	h, err := s.HoldStock(ctx, "inv", []StockHold{{"b1", 1}, {"b2", 1}, {held[1], 1}})
	if err != nil || h[0].Kind != flashsale.HoldHeld || h[1].Kind != flashsale.HoldSoldOut || h[2].Kind != flashsale.HoldSold {
		t.Fatalf("batch holds %+v, %v", h, err)
	}
	want(flashsale.StockLevel{Total: 10, Available: 0, Held: 9, Sold: 1})

	// The reconciler's read: the row and every ticket's hold, which add up to it.
	inv, err := s.Inventory(ctx, "inv")
	if err != nil || inv.Stock != (flashsale.StockLevel{Total: 10, Available: 0, Held: 9, Sold: 1}) || len(inv.Holds) != 43 {
		t.Fatalf("inventory %+v with %d holds, %v; want the row and 43 tickets' holds", inv.Stock, len(inv.Holds), err)
	}
	n := map[flashsale.HoldKind]int{}
	for _, h := range inv.Holds {
		n[h.Kind] += max(h.Quantity, 1)
	}
	if n[flashsale.HoldHeld] != 9 || n[flashsale.HoldSold] != 1 || inv.Holds[held[0]].Kind != flashsale.HoldReleased || inv.Holds["b2"].Kind != flashsale.HoldSoldOut {
		t.Errorf("holds by kind %v, %s %+v, b2 %+v", n, held[0], inv.Holds[held[0]], inv.Holds["b2"])
	}
	if _, err := s.Inventory(ctx, "no-such-sale"); !errorsIs(err, flashsale.ErrNotFound) {
		t.Errorf("inventory of an unknown sale: %v, want not_found", err)
	}
}
