package redisstore

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/google/uuid"
	"github.com/redis/go-redis/v9"

	"github.com/flashsale/flashsale"
	"github.com/flashsale/flashsale/internal/testenv"
)

func TestKeySlotIsRedisClusters(t *testing.T) {
	// Values CLUSTER KEYSLOT answers (the second is the example of the
	// cluster specification; 12739 is CRC16/XMODEM's check value 0x31C3).
	for tag, want := range map[string]int{"123456789": 12739, "somekey": 11058, "": 0} {
		if got := keySlot(tag); got != want {
			t.Errorf("keySlot(%q) = %d, want %d", tag, got, want)
		}
	}
}

func TestSegmentsLandInDifferentThirdsOfTheSlots(t *testing.T) {
	s, _, _ := newStoreN(t, 10, 1, 3)
	for _, id := range []string{"s1", "a-sale", uuid.NewString()} {
		for j, tag := range s.segmentTags(id) {
			if sl := keySlot(tag); sl < j*16384/3 || sl >= (j+1)*16384/3 {
				t.Errorf("sale %s: segment %d's tag %q is in slot %d, outside its third", id, j, tag, sl)
			}
		}
		for _, u := range []string{"u1", "u2", "u3", "u4"} {
			if got, want := StockKey(s.cfg.Namespace, id, u, 3), s.keys(id, u).stock; got != want {
				t.Errorf("StockKey(%s, %s) = %s, the store uses %s", id, u, got, want)
			}
		}
	}
}

// One sale in four segments and a crowd of buyers: every unit is held, never
// one more, although each user's segment has only its share at first (units
// move from the others when a segment runs dry), and the sale's figures add up
// at every read on the way.
func TestSegmentedSaleSellsEveryUnitAndAddsUpAtEveryRead(t *testing.T) {
	const stock, users = 97, 400
	s, sale, _ := newStoreN(t, stock, 1, 4)
	ctx := context.Background()
	var reads atomic.Int64
	stop := make(chan struct{})
	var readers sync.WaitGroup
	readers.Add(1)
	go func() {
		defer readers.Done()
		for {
			select {
			case <-stop:
				return
			default:
			}
			st, err := s.Stock(ctx, sale.ID)
			if err != nil {
				t.Error(err)
				return
			}
			reads.Add(1)
			if st.Total != stock || st.Available+st.Held+st.Sold != stock || st.Available < 0 || st.Held > stock {
				t.Errorf("a read of the sale: %+v", st)
			}
		}
	}()
	var wg sync.WaitGroup
	var mu sync.Mutex
	held := map[string]*flashsale.PurchaseRequest{}
	outcomes := map[string]int{}
	buy := func(i int) {
		req := request(fmt.Sprintf("u%d", i), 1)
		out, _, load, err := s.Claim(ctx, sale, req.UserID, flashsale.TicketClaim{ID: req.TicketID}, 1)
		if err != nil {
			t.Error(err)
			return
		}
		what := "claim refused"
		if out == flashsale.Claimed {
			req.Loads = []int64{load}
			h, errs := s.Hold(ctx, []*flashsale.Sale{sale}, []*flashsale.PurchaseRequest{req})
			if errs[0] != nil {
				t.Error(errs[0])
				return
			}
			what = string(h[0].Kind)
			if h[0].Kind == flashsale.HoldHeld {
				mu.Lock()
				held[req.UserID] = req
				mu.Unlock()
			}
		}
		mu.Lock()
		outcomes[what]++
		mu.Unlock()
	}
	var next atomic.Int64
	for range 16 { // buyers, a few at a time, so that the reads fall among them
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := int(next.Add(1)); i <= users; i = int(next.Add(1)) {
				buy(i)
			}
		}()
	}
	wg.Wait()
	if n := reads.Load(); n < 3 {
		t.Errorf("precondition: only %d reads of the sale during the crowd", n)
	}
	if len(held) != stock {
		t.Fatalf("%d tickets held of %d units: %v", len(held), stock, outcomes)
	}
	wantStock(t, s, flashsale.StockLevel{Total: stock, Held: stock})
	t.Logf("outcomes %v; %d reads of the sale during the crowd", outcomes, reads.Load())

	// Ten holders give their units back; ten new users, whatever their
	// segments, get them, and no eleventh.
	n := 0
	for u, req := range held {
		if n == 10 {
			break
		}
		if _, err := s.Release(ctx, flashsale.Part{SaleID: sale.ID, TicketID: req.TicketID, UserID: u}); err != nil {
			t.Fatal(err)
		}
		n++
	}
	wantStock(t, s, flashsale.StockLevel{Total: stock, Available: 10, Held: stock - 10})
	got := 0
	for i := range 40 {
		req := request(fmt.Sprintf("late%d", i), 1)
		if out, _, load, err := s.Claim(ctx, sale, req.UserID, flashsale.TicketClaim{ID: req.TicketID}, 1); err != nil || out != flashsale.Claimed {
			if out == flashsale.SoldOut {
				continue
			}
			t.Fatalf("late claim: %v %v", out, err)
		} else {
			req.Loads = []int64{load}
		}
		if h := holdOne(t, s, sale, req); h.Kind == flashsale.HoldHeld {
			got++
		}
	}
	if got != 10 {
		t.Errorf("%d late buyers got a unit, want the 10 given back", got)
	}
	close(stop)
	readers.Wait()
	wantStock(t, s, flashsale.StockLevel{Total: stock, Held: stock})
	snap, err := s.Snapshot(ctx, sale.ID)
	if err != nil {
		t.Fatal(err)
	}
	nheld := 0
	for _, h := range snap.Holds {
		if h.Kind == flashsale.HoldHeld {
			nheld += h.Quantity
		}
	}
	if snap.Stock != (flashsale.StockLevel{Total: stock, Held: stock}) || nheld != stock {
		t.Errorf("snapshot: %+v with %d units in held states, want every unit held", snap.Stock, nheld)
	}
}

// A grant whose second step never ran (the process died between the home and
// the segment) is counted as available meanwhile, and the next refill
// delivers it.
func TestALostGrantIsDeliveredByTheNextRefill(t *testing.T) {
	s, sale, _ := newStoreN(t, 6, 1, 3)
	ctx := context.Background()
	h, err := s.homeState(ctx, sale.ID)
	if err != nil {
		t.Fatal(err)
	}
	// Take every segment's units back into the pool, then grant 2 to segment
	// 0 at the home only.
	if _, err := s.refill(ctx, sale.ID, 0, 100); err != nil {
		t.Fatal(err)
	}
	if err := grantScript.Run(ctx, s.rdb, []string{s.homeKey(sale.ID)}, 1, 0, 0, h.gen).Err(); err != nil {
		t.Fatal(err)
	}
	h, _ = s.homeState(ctx, sale.ID)
	snap, err := s.Snapshot(ctx, sale.ID)
	if err != nil {
		t.Fatal(err)
	}
	if snap.Stock != (flashsale.StockLevel{Total: 6, Available: 6}) {
		t.Fatalf("snapshot with units on the way: %+v (home %+v)", snap.Stock, h)
	}
	// Six buyers of any segment get all six units.
	got := 0
	for i := 0; got < 6 && i < 200; i++ {
		req := request(fmt.Sprintf("b%d", i), 1)
		out, _, load, err := s.Claim(ctx, sale, req.UserID, flashsale.TicketClaim{ID: req.TicketID}, 1)
		if err != nil {
			t.Fatal(err)
		}
		if out != flashsale.Claimed {
			t.Fatalf("claim %d with %d units sold: %v", i, got, out)
		}
		req.Loads = []int64{load}
		if hold := holdOne(t, s, sale, req); hold.Kind == flashsale.HoldHeld {
			got++
		}
	}
	wantStock(t, s, flashsale.StockLevel{Total: 6, Held: 6})
	if out, _, _, _ := s.Claim(ctx, sale, "last", flashsale.TicketClaim{ID: uuid.NewString()}, 1); out != flashsale.SoldOut {
		t.Errorf("claim after every unit is held: %v, want sold out", out)
	}
}

// BenchmarkClaimAndHold: one sale, each op a new user's claim and then its
// hold (what one admission and its order ask of Redis), many at a time, with
// the sale in one slot and in three segments. Against a cluster, set
// FLASHSALE_BENCH_REDIS_ADDRS to its nodes (e.g. make cluster-up, then
// 127.0.0.1:7001,...,127.0.0.1:7006); it defaults to the test Redis.
func BenchmarkClaimAndHold(b *testing.B) {
	addrs := strings.Split(testenv.Env("FLASHSALE_BENCH_REDIS_ADDRS", testenv.RedisAddr()), ",")
	for _, n := range []int{1, 3} {
		b.Run(fmt.Sprintf("segments=%d", n), func(b *testing.B) {
			s, sale, _ := newStoreN(b, 1<<30, 1, n, addrs...)
			ctx := context.Background()
			var users atomic.Int64
			b.SetParallelism(32)
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					req := request("b"+strconv.FormatInt(users.Add(1), 10), 1)
					out, _, load, err := s.Claim(ctx, sale, req.UserID, flashsale.TicketClaim{ID: req.TicketID}, 1)
					if err != nil || out != flashsale.Claimed {
						b.Errorf("claim: %v %v", out, err)
						return
					}
					req.Loads = []int64{load}
					if h, errs := s.Hold(ctx, []*flashsale.Sale{sale}, []*flashsale.PurchaseRequest{req}); errs[0] != nil || h[0].Kind != flashsale.HoldHeld {
						b.Errorf("hold: %+v %v", h[0], errs[0])
						return
					}
				}
			})
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "admissions/s")
		})
	}
}

// BenchmarkClaimCapacity: how many claims per second Redis itself serves for
// one sale, with the sale in one slot and in three segments: each op is a
// pipeline of 64 claim scripts of new users (as many ingress processes would
// send at once), so that the client's own cost per claim is small. Against a
// cluster, set FLASHSALE_BENCH_REDIS_ADDRS as for BenchmarkClaimAndHold.
func BenchmarkClaimCapacity(b *testing.B) {
	addrs := strings.Split(testenv.Env("FLASHSALE_BENCH_REDIS_ADDRS", testenv.RedisAddr()), ",")
	const batch = 64
	for _, n := range []int{1, 3} {
		b.Run(fmt.Sprintf("segments=%d", n), func(b *testing.B) {
			s, sale, _ := newStoreN(b, 1<<30, 1, n, addrs...)
			ctx := context.Background()
			if _, err := s.Stock(ctx, sale.ID); err != nil { // loads the scripts' sale
				b.Fatal(err)
			}
			if err := claimScript.Load(ctx, s.rdb).Err(); err != nil {
				b.Fatal(err)
			}
			if cc, ok := s.rdb.(*redis.ClusterClient); ok {
				if err := cc.ForEachMaster(ctx, func(ctx context.Context, c *redis.Client) error {
					return claimScript.Load(ctx, c).Err()
				}); err != nil {
					b.Fatal(err)
				}
			}
			var users atomic.Int64
			b.SetParallelism(8)
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				cmds := make([]*redis.Cmd, batch)
				for pb.Next() {
					_, err := s.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
						for i := range cmds {
							u := "c" + strconv.FormatInt(users.Add(1), 10)
							k := s.keys(sale.ID, u)
							cmds[i] = claimScript.EvalSha(ctx, p, []string{k.stock, k.live, k.units, k.claims},
								u, uuid.NewString(), 1, 1, 15000, "0")
						}
						return nil
					})
					if err != nil {
						b.Error(err)
						return
					}
					if r, _ := cmds[0].StringSlice(); len(r) == 0 || r[0] != "claimed" {
						b.Errorf("claim: %v", r)
						return
					}
				}
			})
			b.ReportMetric(float64(b.N*batch)/b.Elapsed().Seconds(), "claims/s")
		})
	}
}

// As many buyers as units, the sale in three segments: all claim first, then
// their holds come in concurrent batches (as workers send them). Every one
// gets a unit: a segment that runs dry refills as long as the others have
// units, however many holds of its own race for each refill.
func TestSegmentedSaleRefusesNobodyWhileUnitsRemain(t *testing.T) {
	const stock, batch = 600, 20
	s, sale, _ := newStoreN(t, stock, 1, 3)
	ctx := context.Background()
	reqs := make([]*flashsale.PurchaseRequest, stock)
	for i := range reqs {
		reqs[i] = request(fmt.Sprintf("p%d", i), 1)
		out, _, load, err := s.Claim(ctx, sale, reqs[i].UserID, flashsale.TicketClaim{ID: reqs[i].TicketID}, 1)
		if err != nil || out != flashsale.Claimed {
			t.Fatalf("claim of %s: %v %v", reqs[i].UserID, out, err)
		}
		reqs[i].Loads = []int64{load}
	}
	sales := make([]*flashsale.Sale, batch)
	for i := range sales {
		sales[i] = sale
	}
	var wg sync.WaitGroup
	var held, refused atomic.Int64
	for b := 0; b < stock; b += batch {
		wg.Add(1)
		go func() {
			defer wg.Done()
			hs, errs := s.Hold(ctx, sales, reqs[b:b+batch])
			for i, h := range hs {
				switch {
				case errs[i] != nil:
					t.Error(errs[i])
				case h.Kind == flashsale.HoldHeld:
					held.Add(1)
				default:
					refused.Add(1)
				}
			}
		}()
	}
	wg.Wait()
	if held.Load() != stock {
		t.Fatalf("%d of %d buyers held a unit (%d refused) with %d units", held.Load(), stock, refused.Load(), stock)
	}
	wantStock(t, s, flashsale.StockLevel{Total: stock, Held: stock})
}

// A unit given back in one segment and held again in another, through the
// pool, while the sale is read: the read never counts it twice (a negative
// available), because the parts are read at one instant.
func TestSegmentedReadsNeverCountAUnitTwice(t *testing.T) {
	const stock = 6
	s, sale, _ := newStoreN(t, stock, 1, 4)
	ctx := context.Background()
	var users atomic.Int64
	buy := func() *flashsale.PurchaseRequest {
		for {
			req := request(fmt.Sprintf("u%d", users.Add(1)), 1)
			out, _, load, err := s.Claim(ctx, sale, req.UserID, flashsale.TicketClaim{ID: req.TicketID}, 1)
			if err != nil {
				t.Error(err)
				return nil
			}
			if out != flashsale.Claimed {
				continue
			}
			req.Loads = []int64{load}
			h, errs := s.Hold(ctx, []*flashsale.Sale{sale}, []*flashsale.PurchaseRequest{req})
			if errs[0] != nil {
				t.Error(errs[0])
				return nil
			}
			if h[0].Kind == flashsale.HoldHeld {
				return req
			}
		}
	}
	var churn sync.WaitGroup
	var rounds atomic.Int64
	stop := make(chan struct{})
	for range stock { // each goroutine keeps one unit moving from user to user
		churn.Add(1)
		go func() {
			defer churn.Done()
			req := buy()
			for req != nil {
				select {
				case <-stop:
					return
				default:
				}
				if _, err := s.Release(ctx, flashsale.Part{SaleID: sale.ID, TicketID: req.TicketID, UserID: req.UserID}); err != nil {
					t.Error(err)
					return
				}
				req = buy()
				rounds.Add(1)
			}
		}()
	}
	for reads := 0; reads < 3000 && !t.Failed(); reads++ {
		st, err := s.Stock(ctx, sale.ID)
		if err != nil {
			t.Fatal(err)
		}
		if st.Available < 0 || st.Held+st.Sold > stock {
			t.Errorf("read %d (after %d moves): %+v", reads, rounds.Load(), st)
		}
	}
	close(stop)
	churn.Wait()
	if rounds.Load() < 100 {
		t.Errorf("precondition: only %d units moved during the reads", rounds.Load())
	}
}
