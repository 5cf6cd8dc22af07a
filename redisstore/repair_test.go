package redisstore

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/flashsale/flashsale"
)

func TestSnapshotReadsTheSaleInOnePiece(t *testing.T) {
	s, sale, _ := newStore(t, 10, 2)
	ctx := context.Background()
	a, b := request("u1", 2), request("u2", 1)
	claimAndHold(t, s, sale, a)
	claimAndHold(t, s, sale, b)
	if _, err := s.Confirm(ctx, flashsale.Part{SaleID: "s1", TicketID: b.TicketID, UserID: "u2"}); err != nil {
		t.Fatal(err)
	}
	snap, err := s.Snapshot(ctx, "s1")
	if err != nil {
		t.Fatal(err)
	}
	if !snap.Loaded || snap.Stock != (flashsale.StockLevel{Total: 10, Available: 7, Held: 2, Sold: 1}) {
		t.Fatalf("snapshot %+v", snap)
	}
	if h := snap.Holds[a.TicketID]; h != (flashsale.Hold{Kind: flashsale.HoldHeld, Quantity: 2}) {
		t.Errorf("hold of a = %+v", h)
	}
	if h := snap.Holds[b.TicketID]; h != (flashsale.Hold{Kind: flashsale.HoldSold, Quantity: 1}) {
		t.Errorf("hold of b = %+v", h)
	}
	if snap.Live["u1"] != a.TicketID || snap.Live["u2"] != "" || snap.Units["u1"] != 2 || snap.Units["u2"] != 1 {
		t.Errorf("live %v units %v", snap.Live, snap.Units)
	}
	if snap, err := s.Snapshot(ctx, "nope"); err != nil || snap.Loaded {
		t.Errorf("snapshot of a sale that is not loaded = %+v, %v", snap, err)
	}
}

func TestFormatHoldRoundTrips(t *testing.T) {
	for _, v := range []string{"", "H:3", "S:1", "R", "X", "F"} {
		if got := flashsale.FormatHold(parseHold(v)); got != v {
			t.Errorf("flashsale.FormatHold(parseHold(%q)) = %q", v, got)
		}
	}
}

func TestRepairSaleIsCompareAndSetAndDerivesTheCounters(t *testing.T) {
	s, sale, _ := newStore(t, 10, 1)
	ctx := context.Background()
	held := request("u1", 1)
	claimAndHold(t, s, sale, held)
	stray := request("u2", 1)
	claimAndHold(t, s, sale, stray)
	// Drift: a counter off, a hold lost, units lost.
	k := s.segKeys("s1", 0)
	s.rdb.HIncrBy(ctx, k.stock, "available", 3)
	lost := uuid.NewString()
	s.rdb.HSet(ctx, s.keys("s1", "u3").units, "u3", 0)

	H1 := flashsale.Hold{Kind: flashsale.HoldHeld, Quantity: 1}
	R := flashsale.Hold{Kind: flashsale.HoldReleased}
	res, err := s.RepairSale(ctx, "s1", 10,
		[]flashsale.HoldFix{
			{TicketID: lost, UserID: "u3", From: flashsale.Hold{}, To: H1},                        // applies
			{TicketID: stray.TicketID, UserID: "u2", From: H1, To: R},                             // applies
			{TicketID: held.TicketID, UserID: "u1", From: flashsale.Hold{}, To: flashsale.Hold{}}, // stale: skipped
		},
		[]flashsale.UnitsFix{
			{UserID: "u3", Observed: 0, Tickets: []string{lost}},           // applies: 1
			{UserID: "u2", Observed: 1, Tickets: []string{stray.TicketID}}, // applies: 0
			{UserID: "u1", Observed: 5, Tickets: []string{held.TicketID}},  // stale: skipped
		})
	if err != nil {
		t.Fatal(err)
	}
	if !res.Loaded || !res.Holds[0] || !res.Holds[1] || res.Holds[2] || !res.Units[0] || !res.Units[1] || res.Units[2] {
		t.Fatalf("result %+v", res)
	}
	want := flashsale.StockLevel{Total: 10, Available: 8, Held: 2}
	if res.Stock != want {
		t.Errorf("stock after repair %+v, want %+v", res.Stock, want)
	}
	wantStock(t, s, want)
	snap, _ := s.Snapshot(ctx, "s1")
	if snap.Live["u3"] != lost || snap.Live["u2"] != "" || snap.Units["u3"] != 1 || snap.Units["u2"] != 0 || snap.Units["u1"] != 1 {
		t.Errorf("live %v units %v", snap.Live, snap.Units)
	}
	// The released ticket is never held again by a redelivered message.
	if h := holdOne(t, s, sale, stray); h.Kind != flashsale.HoldReleased {
		t.Errorf("hold after a repair released it = %+v", h)
	}
	if res, err := s.RepairSale(ctx, "gone", 1, nil, nil); err != nil || res.Loaded {
		t.Errorf("repair of a sale that is not loaded = %+v, %v", res, err)
	}
}

func TestRepairSaleNeverLosesAConcurrentHold(t *testing.T) {
	s, sale, _ := newStore(t, 400, 1)
	ctx := context.Background()
	var wg sync.WaitGroup
	for i := 0; i < 200; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			req := request(uuid.NewString(), 1)
			if out, _, _, err := s.Claim(ctx, sale, req.UserID, flashsale.TicketClaim{ID: req.TicketID}, 1); err != nil || out != flashsale.Claimed {
				t.Errorf("claim: %v %v", out, err)
				return
			}
			holdOne(t, s, sale, req)
		}()
	}
	for i := 0; i < 50; i++ {
		if _, err := s.RepairSale(ctx, "s1", 400, nil, nil); err != nil {
			t.Fatal(err)
		}
		time.Sleep(time.Millisecond) // interleave with the holds
	}
	wg.Wait()
	wantStock(t, s, flashsale.StockLevel{Total: 400, Available: 200, Held: 200})
}

// hookSource runs during while the rebuild reads the book of record.
type hookSource struct {
	*fixedSource
	during func()
}

func (h hookSource) SaleTickets(ctx context.Context, id string) ([]*flashsale.Ticket, error) {
	h.during()
	return h.fixedSource.SaleTickets(ctx, id)
}

// TestRebuildDoesNotOverwriteASaleLoadedMeanwhile: a rebuild whose lease ran
// out during its read (another rebuilder froze the sale with its own token,
// loaded it, and a purchase held a unit there) writes nothing: the token
// fences it.
func TestRebuildDoesNotOverwriteASaleLoadedMeanwhile(t *testing.T) {
	s, sale, src := newStore(t, 10, 1)
	ctx := context.Background()
	for _, k := range s.stockKeys("s1") {
		s.rdb.Del(ctx, k)
	}
	req := request("u1", 1)
	s.cfg.Source = hookSource{src, func() {
		s.cfg.Source = src
		other := newLoadID()
		for _, k := range s.stockKeys("s1") {
			if err := freezeScript.Run(ctx, s.rdb, []string{k}, other).Err(); err != nil {
				t.Error(err)
			}
		}
		if _, err := s.mergeSegments(ctx, sale, nil, other); err != nil {
			t.Error(err)
		}
		claimAndHold(t, s, sale, req)
	}}
	if err := s.rebuild(ctx, "s1", "not_loaded"); err != nil {
		t.Fatal(err)
	}
	wantStock(t, s, flashsale.StockLevel{Total: 10, Available: 9, Held: 1})
	if snap, _ := s.Snapshot(ctx, "s1"); snap.Holds[req.TicketID].Kind != flashsale.HoldHeld {
		t.Errorf("the hold taken meanwhile was lost: %v", snap.Holds)
	}
}
