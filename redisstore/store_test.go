package redisstore

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/redis/go-redis/v9"

	"github.com/flashsale/flashsale"
	"github.com/flashsale/flashsale/internal/storetest"
	"github.com/flashsale/flashsale/internal/testenv"
	"github.com/flashsale/flashsale/service"
)

// testSegments is the Config.Segments of the stores the tests make: every
// test of the package runs twice, with a sale in one slot and in three
// segments (segments.go), which must keep the same guarantees.
var testSegments = 1

func TestMain(m *testing.M) {
	flag.Parse()
	code := m.Run()
	if code == 0 && flag.Lookup("test.bench").Value.String() == "" {
		testSegments = 3
		code = m.Run()
	}
	os.Exit(code)
}

// oneSlotOnly skips a test of what only a sale in one slot does.
func oneSlotOnly(t *testing.T, why string) {
	t.Helper()
	if testSegments > 1 {
		t.Skipf("with %d segments: %s", testSegments, why)
	}
}

// fixedSource is the book of record for rebuild tests: what MySQL would return.
type fixedSource struct {
	sale     *flashsale.Sale
	other    *flashsale.Sale // a second sale, without orders
	orders   []*flashsale.Order
	outcomes []*flashsale.Ticket // tickets refused or failed
}

func (f *fixedSource) GetSale(_ context.Context, id string) (*flashsale.Sale, error) {
	for _, s := range []*flashsale.Sale{f.sale, f.other} {
		if s != nil && s.ID == id {
			return s, nil
		}
	}
	return nil, flashsale.ErrNotFound
}

// SaleTickets lists the orders' tickets (quantity less returned) and the
// outcomes.
func (f *fixedSource) SaleTickets(context.Context, string) ([]*flashsale.Ticket, error) {
	var out []*flashsale.Ticket
	for _, o := range f.orders {
		t := &flashsale.Ticket{ID: o.ID, UserID: o.UserID, Status: flashsale.TicketStatus(o.Status)}
		q := o.Quantity
		if len(o.Items) > 0 {
			q -= o.Items[0].Returned
		}
		t.SetLines([]flashsale.Line{{SaleID: o.SaleID, Quantity: q}})
		out = append(out, t)
	}
	return append(out, f.outcomes...), nil
}

func newStore(t *testing.T, stock, limit int) (*Store, *flashsale.Sale, *fixedSource) {
	t.Helper()
	return newStoreN(t, stock, limit, testSegments)
}

// newStoreN is newStore with the sale in segments segments.
func newStoreN(t testing.TB, stock, limit, segments int, addrs ...string) (*Store, *flashsale.Sale, *fixedSource) {
	t.Helper()
	sale := &flashsale.Sale{ID: "s1", Stock: stock, PerUserLimit: limit, PriceCents: 100, PaymentWindowSeconds: 60}
	s, src := newStoreOf(t, sale, segments, addrs...)
	return s, sale, src
}

// newStoreOf is a store of its own namespace with sale loaded, in segments
// segments, on addrs (default the test Redis); its keys go at cleanup.
func newStoreOf(t testing.TB, sale *flashsale.Sale, segments int, addrs ...string) (*Store, *fixedSource) {
	t.Helper()
	if len(addrs) == 0 {
		addrs = []string{testenv.RedisAddr()}
	}
	testenv.Require(t, addrs...)
	src := &fixedSource{sale: sale}
	s, err := New(Config{Addrs: addrs, Namespace: testenv.Name("rs"), Source: src, Segments: segments,
		Log: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("(the store had %d segments per sale)", segments)
		}
		ctx := context.Background()
		del := func(ctx context.Context, c *redis.Client) error {
			keys, _ := c.Keys(ctx, s.cfg.Namespace+":*").Result()
			for _, k := range keys {
				c.Del(ctx, k)
			}
			return nil
		}
		if cc, ok := s.rdb.(*redis.ClusterClient); ok {
			cc.ForEachMaster(ctx, del)
		} else {
			del(ctx, s.rdb.(*redis.Client))
		}
		s.Close()
	})
	if err := s.InitSale(context.Background(), sale); err != nil {
		t.Fatal(err)
	}
	return s, src
}

func request(user string, qty int) *flashsale.PurchaseRequest {
	return &flashsale.PurchaseRequest{TicketID: uuid.NewString(), SaleID: "s1", UserID: user, Quantity: qty, AdmittedAt: time.Now()}
}

// claimAndHold claims the user's live ticket and holds it, as ingress + worker do.
func claimAndHold(t *testing.T, s *Store, sale *flashsale.Sale, req *flashsale.PurchaseRequest) flashsale.Hold {
	t.Helper()
	claimOne(t, s, sale, req)
	return holdOne(t, s, sale, req)
}

// claimOne claims req's ticket as the user's live one, as the ingress does,
// and records the load it was claimed in (req.Loads).
func claimOne(t *testing.T, s *Store, sale *flashsale.Sale, req *flashsale.PurchaseRequest) {
	t.Helper()
	out, _, load, err := s.Claim(context.Background(), sale, req.UserID, flashsale.TicketClaim{ID: req.TicketID}, req.Quantity)
	if err != nil || out != flashsale.Claimed || load == 0 {
		t.Fatalf("claim of %s in %s: %v load %d %v", req.UserID, sale.ID, out, load, err)
	}
	req.Loads = []int64{load}
}

// secondSale loads sale s2 (1 unit, 1 per user) beside s1 and returns it.
func secondSale(t *testing.T, s *Store, src *fixedSource) *flashsale.Sale {
	t.Helper()
	other := &flashsale.Sale{ID: "s2", Stock: 1, PerUserLimit: 1}
	src.other = other
	if err := s.InitSale(context.Background(), other); err != nil {
		t.Fatal(err)
	}
	return other
}

func holdOne(t *testing.T, s *Store, sale *flashsale.Sale, req *flashsale.PurchaseRequest) flashsale.Hold {
	t.Helper()
	h, errs := s.Hold(context.Background(), []*flashsale.Sale{sale}, []*flashsale.PurchaseRequest{req})
	if errs[0] != nil {
		t.Fatal(errs[0])
	}
	return h[0]
}

func wantStock(t *testing.T, s *Store, want flashsale.StockLevel) {
	t.Helper()
	got, err := s.Stock(context.Background(), "s1")
	if err != nil {
		t.Fatal(err)
	}
	if got != want {
		t.Fatalf("stock = %+v, want %+v", got, want)
	}
}

func TestHoldIsIdempotentPerTicket(t *testing.T) {
	s, sale, _ := newStore(t, 5, 2)
	req := request("u1", 2)
	if h := claimAndHold(t, s, sale, req); h != (flashsale.Hold{Kind: flashsale.HoldHeld, Quantity: 2}) {
		t.Fatalf("first hold = %+v", h)
	}
	for i := 0; i < 3; i++ { // redeliveries
		if h := holdOne(t, s, sale, req); h.Kind != flashsale.HoldHeld {
			t.Fatalf("redelivered hold = %+v", h)
		}
	}
	wantStock(t, s, flashsale.StockLevel{Total: 5, Available: 3, Held: 2})
}

func TestReleasedTicketIsNeverHeldAgain(t *testing.T) {
	s, sale, _ := newStore(t, 5, 1)
	ctx := context.Background()
	req := request("u1", 1)
	claimAndHold(t, s, sale, req)
	for i := 0; i < 2; i++ {
		if _, err := s.Release(ctx, flashsale.Part{SaleID: "s1", TicketID: req.TicketID, UserID: "u1"}); err != nil {
			t.Fatal(err)
		}
	}
	wantStock(t, s, flashsale.StockLevel{Total: 5, Available: 5})
	if h := holdOne(t, s, sale, req); h.Kind != flashsale.HoldReleased {
		t.Fatalf("hold after release = %+v; want released", h)
	}
	wantStock(t, s, flashsale.StockLevel{Total: 5, Available: 5})
	// The user's slot is free again: a new ticket may be claimed.
	if out, _, _, _ := s.Claim(ctx, sale, "u1", flashsale.TicketClaim{ID: uuid.NewString()}, 1); out != flashsale.Claimed {
		t.Fatalf("claim after release = %v", out)
	}
}

func TestConfirmMovesHeldToSoldOnce(t *testing.T) {
	s, sale, _ := newStore(t, 3, 1)
	req := request("u1", 1)
	claimAndHold(t, s, sale, req)
	for i := 0; i < 2; i++ {
		if _, err := s.Confirm(context.Background(), flashsale.Part{SaleID: "s1", TicketID: req.TicketID, UserID: "u1"}); err != nil {
			t.Fatal(err)
		}
	}
	wantStock(t, s, flashsale.StockLevel{Total: 3, Available: 2, Sold: 1})
	// Paid is not live, but it counts towards the per-user limit.
	if out, _, _, _ := s.Claim(context.Background(), sale, "u1", flashsale.TicketClaim{ID: uuid.NewString()}, 1); out != flashsale.LimitReached {
		t.Fatalf("claim after a paid unit with limit 1 = %v, want LimitReached", out)
	}
}

func TestClaimIsOneLiveTicketPerUser(t *testing.T) {
	s, sale, _ := newStore(t, 10, 1)
	ctx := context.Background()
	first := uuid.NewString()
	if out, id, _, _ := s.Claim(ctx, sale, "u1", flashsale.TicketClaim{ID: first}, 1); out != flashsale.Claimed || id != first {
		t.Fatalf("first claim = %v %s", out, id)
	}
	// Until its publish is confirmed (Queued), the first claim is unconfirmed:
	// its id is not handed out.
	if out, id, _, _ := s.Claim(ctx, sale, "u1", flashsale.TicketClaim{ID: uuid.NewString()}, 1); out != flashsale.Unconfirmed || id != first {
		t.Fatalf("second claim = %v %s, want Unconfirmed %s", out, id, first)
	}
	if err := s.Queued(ctx, &flashsale.Ticket{ID: first, SaleID: sale.ID, UserID: "u1", Quantity: 1, Status: flashsale.TicketQueued}); err != nil {
		t.Fatal(err)
	}
	if out, id, _, _ := s.Claim(ctx, sale, "u1", flashsale.TicketClaim{ID: uuid.NewString()}, 1); out != flashsale.Existing || id != first {
		t.Fatalf("claim after the first was queued = %v %s, want Existing %s", out, id, first)
	}
	if cp, err := s.GetTicket(ctx, first); err != nil || cp.Status != flashsale.TicketQueued {
		t.Fatalf("the queued ticket's copy: %+v, %v", cp, err)
	}
}

func TestStaleClaimIsReplacedAndItsLateMessageRefused(t *testing.T) {
	s, sale, _ := newStore(t, 10, 1)
	s.cfg.ClaimStale = 50 * time.Millisecond // stale by Redis's clock
	ctx := context.Background()
	old := &flashsale.PurchaseRequest{TicketID: uuid.NewString(), SaleID: "s1", UserID: "u1", Quantity: 1, AdmittedAt: time.Now()}
	_, _, load, _ := s.Claim(ctx, sale, "u1", flashsale.TicketClaim{ID: old.TicketID}, 1) // the ingress died before publishing
	old.Loads = []int64{load}
	fresh := uuid.NewString()
	if out, id, _, _ := s.Claim(ctx, sale, "u1", flashsale.TicketClaim{ID: fresh}, 1); out != flashsale.Unconfirmed || id != old.TicketID {
		t.Fatalf("claim while the first is fresh = %v %s, want it, unconfirmed", out, id)
	}
	var out flashsale.ClaimOutcome
	var id string
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); {
		if out, id, _, _ = s.Claim(ctx, sale, "u1", flashsale.TicketClaim{ID: fresh}, 1); out == flashsale.Claimed {
			break
		}
		service.Sleep(ctx, 10*time.Millisecond) // until the first claim is stale by Redis's clock
	}
	if out != flashsale.Claimed || id != fresh {
		t.Fatalf("claim after a stale one = %v %s, want Claimed %s", out, id, fresh)
	}
	// Had the dead ingress's publish gone through after all, its message is refused.
	if h := holdOne(t, s, sale, old); h.Kind != flashsale.HoldRefused {
		t.Fatalf("late message of a replaced claim = %+v, want refused", h)
	}
	wantStock(t, s, flashsale.StockLevel{Total: 10, Available: 10})
}

// An orphaned claim that goes stale while the sale is sold out (or, with
// segments, while the user's segment is dry and refills) is dropped: the
// user's next claim is never answered with it as their existing ticket.
func TestStaleClaimIsDroppedWhenTheSaleIsSoldOut(t *testing.T) {
	s, sale, _ := newStore(t, 1, 1)
	s.cfg.ClaimStale = 50 * time.Millisecond
	ctx := context.Background()
	orphan := &flashsale.PurchaseRequest{TicketID: uuid.NewString(), SaleID: "s1", UserID: "u1", Quantity: 1, AdmittedAt: time.Now()}
	_, _, load, _ := s.Claim(ctx, sale, "u1", flashsale.TicketClaim{ID: orphan.TicketID}, 1) // the ingress died before publishing
	orphan.Loads = []int64{load}
	other := request("u2", 1)
	claimAndHold(t, s, sale, other) // the last unit
	var out flashsale.ClaimOutcome
	var id string
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); {
		if out, id, _, _ = s.Claim(ctx, sale, "u1", flashsale.TicketClaim{ID: uuid.NewString()}, 1); out != flashsale.Unconfirmed {
			break
		}
		service.Sleep(ctx, 10*time.Millisecond) // until the orphan is stale by Redis's clock
	}
	if out != flashsale.SoldOut {
		t.Fatalf("claim once the orphan is stale, sale sold out = %v %s, want sold out", out, id)
	}
	if out, id, _, _ = s.Claim(ctx, sale, "u1", flashsale.TicketClaim{ID: uuid.NewString()}, 1); out != flashsale.SoldOut {
		t.Fatalf("claim again = %v %s, want sold out (never the orphan %s)", out, id, orphan.TicketID)
	}
	if _, err := s.Release(ctx, flashsale.Part{SaleID: "s1", TicketID: other.TicketID, UserID: "u2"}); err != nil {
		t.Fatal(err)
	}
	fresh := uuid.NewString()
	if out, id, _, _ = s.Claim(ctx, sale, "u1", flashsale.TicketClaim{ID: fresh}, 1); out != flashsale.Claimed || id != fresh {
		t.Fatalf("claim once a unit is back = %v %s, want Claimed %s", out, id, fresh)
	}
	if h := holdOne(t, s, sale, orphan); h.Kind != flashsale.HoldRefused {
		t.Fatalf("late message of the dropped orphan = %+v, want refused", h)
	}
}

func TestUnclaimedTicketIsRefused(t *testing.T) {
	s, sale, _ := newStore(t, 10, 1)
	ctx := context.Background()
	req := request("u1", 1)
	_, _, load, _ := s.Claim(ctx, sale, "u1", flashsale.TicketClaim{ID: req.TicketID}, 1)
	req.Loads = []int64{load}
	s.Unclaim(ctx, flashsale.Part{SaleID: "s1", TicketID: req.TicketID, UserID: "u1"}) // publish answered 503
	if h := holdOne(t, s, sale, req); h.Kind != flashsale.HoldRefused {
		t.Fatalf("hold of an unclaimed ticket = %+v, want refused", h)
	}
	wantStock(t, s, flashsale.StockLevel{Total: 10, Available: 10})
}

// A ticket claimed in an earlier load of the stock (Redis lost its keys and
// the sale was rebuilt) is held without its live entry, whatever the clocks:
// its admission time says nothing, only the load its claim was made in.
func TestTicketClaimedBeforeARebuildIsHeld(t *testing.T) {
	s, sale, _ := newStore(t, 10, 1)
	ctx := context.Background()
	req := request("u1", 1)
	_, _, load, _ := s.Claim(ctx, sale, "u1", flashsale.TicketClaim{ID: req.TicketID}, 1)
	req.Loads = []int64{load}
	req.AdmittedAt = time.Now().Add(time.Hour) // an ingress whose clock runs an hour ahead
	if err := s.rdb.Del(ctx, s.keys("s1", "u1").stock, s.keys("s1", "u1").live).Err(); err != nil {
		t.Fatal(err)
	}
	if h := holdOne(t, s, sale, req); h.Kind != flashsale.HoldHeld {
		t.Fatalf("hold of a ticket claimed before the rebuild = %+v, want held", h)
	}
}

func TestConcurrentHoldsNeverOversell(t *testing.T) {
	s, sale, _ := newStore(t, 50, 1)
	var wg sync.WaitGroup
	var mu sync.Mutex
	kinds := map[flashsale.HoldKind]int{}
	for i := 0; i < 300; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			req := request(fmt.Sprintf("u%d", i), 1)
			ctx := context.Background()
			out, _, _, err := s.Claim(ctx, sale, req.UserID, flashsale.TicketClaim{ID: req.TicketID}, 1)
			if err != nil {
				t.Error(err)
				return
			}
			if out != flashsale.Claimed {
				mu.Lock()
				kinds['c']++
				mu.Unlock()
				return
			}
			h, errs := s.Hold(ctx, []*flashsale.Sale{sale}, []*flashsale.PurchaseRequest{req})
			if errs[0] != nil {
				t.Error(errs[0])
				return
			}
			mu.Lock()
			kinds[h[0].Kind]++
			mu.Unlock()
		}(i)
	}
	wg.Wait()
	if kinds[flashsale.HoldHeld] != 50 {
		t.Fatalf("held %d tickets of stock 50: %v", kinds[flashsale.HoldHeld], kinds)
	}
	wantStock(t, s, flashsale.StockLevel{Total: 50, Available: 0, Held: 50})
}

func TestLostSaleIsRebuiltFromTheBookOfRecord(t *testing.T) {
	s, sale, src := newStore(t, 10, 2)
	ctx := context.Background()
	paidID := uuid.NewString()
	src.orders = []*flashsale.Order{
		{ID: uuid.NewString(), SaleID: "s1", UserID: "u1", Quantity: 2, Status: flashsale.OrderPendingPayment},
		{ID: paidID, SaleID: "s1", UserID: "u2", Quantity: 1, Status: flashsale.OrderPaid},
	}
	k := s.segKeys("s1", 0)
	s.rdb.Del(ctx, k.stock, k.holds, k.live, k.units)
	wantStock(t, s, flashsale.StockLevel{Total: 10, Available: 7, Held: 2, Sold: 1})
	// The rebuilt state knows the pending order's user is live and the paid one sold.
	if out, _, _, _ := s.Claim(ctx, sale, "u1", flashsale.TicketClaim{ID: uuid.NewString()}, 1); out != flashsale.Existing {
		t.Fatalf("claim by a user with a pending order after rebuild = %v, want Existing", out)
	}
	if h, _ := s.Confirm(ctx, flashsale.Part{SaleID: "s1", TicketID: paidID, UserID: "u2"}); h.Kind != flashsale.HoldSold {
		t.Fatalf("paid order after rebuild = %+v, want sold", h)
	}
	// A message admitted before the rebuild (its claim lost with Redis) still holds.
	queued := &flashsale.PurchaseRequest{TicketID: uuid.NewString(), SaleID: "s1", UserID: "u3", Quantity: 1, AdmittedAt: time.Now().Add(-time.Second)}
	if h := holdOne(t, s, sale, queued); h.Kind != flashsale.HoldHeld {
		t.Fatalf("queued ticket after rebuild = %+v, want held", h)
	}
}

func TestReassertCountsAnOrderCommittedAfterARebuild(t *testing.T) {
	s, _, _ := newStore(t, 10, 1)
	ctx := context.Background()
	o := &flashsale.Order{ID: uuid.NewString(), SaleID: "s1", UserID: "u1", Quantity: 1, Status: flashsale.OrderPendingPayment}
	for i := 0; i < 2; i++ {
		if _, errs := s.Reassert(ctx, []flashsale.Part{{SaleID: o.SaleID, TicketID: o.ID, UserID: o.UserID, Quantity: o.Quantity}}); errs[0] != nil {
			t.Fatal(errs[0])
		}
	}
	wantStock(t, s, flashsale.StockLevel{Total: 10, Available: 9, Held: 1})
}

func TestPipelinedHoldsAcrossSalesWithoutCachedScripts(t *testing.T) {
	s, sale, src := newStore(t, 2, 1)
	ctx := context.Background()
	other := secondSale(t, s, src)
	s.rdb.ScriptFlush(ctx) // EVALSHA must fall back to EVAL
	reqs := []*flashsale.PurchaseRequest{request("a", 1), request("b", 1), request("c", 1),
		{TicketID: uuid.NewString(), SaleID: "s2", UserID: "d", Quantity: 1, AdmittedAt: time.Now()}}
	sales := []*flashsale.Sale{sale, sale, sale, other}
	for i, r := range reqs {
		// Claims do not take units: all four succeed, and the holds decide.
		if out, _, _, err := s.Claim(ctx, sales[i], r.UserID, flashsale.TicketClaim{ID: r.TicketID}, 1); err != nil || out != flashsale.Claimed {
			t.Fatalf("claim %d: %v %v", i, out, err)
		}
	}
	holds, errs := s.Hold(ctx, sales, reqs)
	want := []flashsale.HoldKind{flashsale.HoldHeld, flashsale.HoldHeld, flashsale.HoldSoldOut, flashsale.HoldHeld}
	for i := range reqs {
		if errs[i] != nil || holds[i].Kind != want[i] {
			t.Fatalf("hold %d = %+v, %v; want %c", i, holds[i], errs[i], want[i])
		}
	}
}

// scriptRuns counts the scripts a client sends (EVALSHA and EVAL), alone or
// in a pipeline.
type scriptRuns struct{ n int }

func (h *scriptRuns) count(cmds ...redis.Cmder) {
	for _, c := range cmds {
		if name := c.Name(); name == "evalsha" || name == "eval" {
			h.n++
		}
	}
}

func (h *scriptRuns) DialHook(next redis.DialHook) redis.DialHook { return next }
func (h *scriptRuns) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, c redis.Cmder) error { h.count(c); return next(ctx, c) }
}
func (h *scriptRuns) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error { h.count(cmds...); return next(ctx, cmds) }
}

// The worker's holds and re-asserts of a batch are one script run per
// segment of a sale (forEachTicket), in the order of the batch; a run that
// finds its sale lost rebuilds it once, and then each ticket is decided as
// if it had been held alone.
func TestHoldsOfASegmentAreOneScriptRun(t *testing.T) {
	s, sale, src := newStore(t, 4, 1)
	ctx := context.Background()
	other := secondSale(t, s, src)
	var sales []*flashsale.Sale
	var reqs []*flashsale.PurchaseRequest
	segments := map[string]bool{}
	for i := range 6 {
		r := request(fmt.Sprintf("u%d", i), 1)
		claimOne(t, s, sale, r)
		sales, reqs = append(sales, sale), append(reqs, r)
		segments[fmt.Sprint("s1/", s.segmentOf(r.UserID))] = true
	}
	r := &flashsale.PurchaseRequest{TicketID: uuid.NewString(), SaleID: "s2", UserID: "v", Quantity: 1, AdmittedAt: time.Now()}
	claimOne(t, s, other, r)
	sales, reqs = append(sales, other), append(reqs, r)
	segments[fmt.Sprint("s2/", s.segmentOf(r.UserID))] = true
	if testSegments == 1 {
		// Sale s1 is lost (as by a flush) after the claims: the first run on
		// it answers "not_loaded", and its tickets are held after a rebuild
		// that reads their claims' loads as another load's.
		k := s.segKeys("s1", 0)
		s.rdb.Del(ctx, k.stock, k.holds, k.live, k.units, k.claims, k.queue)
	}

	holds, errs := s.Hold(ctx, sales, reqs)
	want := []flashsale.HoldKind{flashsale.HoldHeld, flashsale.HoldHeld, flashsale.HoldHeld, flashsale.HoldHeld, flashsale.HoldSoldOut, flashsale.HoldSoldOut, flashsale.HoldHeld}
	if testSegments > 1 {
		// Which four of s1's tickets take its units depends on the segments'
		// refills; the count does not.
		want = nil
	}
	held := 0
	for i := range reqs {
		if errs[i] != nil {
			t.Fatalf("hold %d: %v", i, errs[i])
		}
		if holds[i].Kind == flashsale.HoldHeld && i < 6 {
			held++
		}
		if want != nil && holds[i].Kind != want[i] {
			t.Fatalf("hold %d = %+v, want %c", i, holds[i], want[i])
		}
	}
	if held != 4 || holds[6].Kind != flashsale.HoldHeld {
		t.Fatalf("holds %+v: %d of sale s1 held, want 4, and the one of s2", holds, held)
	}
	wantStock(t, s, flashsale.StockLevel{Total: 4, Available: 0, Held: 4})
	// Again: every ticket is decided already, so each run answers from holds.
	runs := &scriptRuns{}
	s.rdb.AddHook(runs)
	again, errs := s.Hold(ctx, sales, reqs)
	for i := range reqs {
		if errs[i] != nil || again[i] != holds[i] {
			t.Fatalf("hold %d again = %+v, %v; want %+v", i, again[i], errs[i], holds[i])
		}
	}
	if runs.n != len(segments) {
		t.Fatalf("%d script runs for 7 holds in %d segments of sales, want one per segment", runs.n, len(segments))
	}
}

// A run takes at most maxTicketsPerRun tickets: Redis runs nothing else
// while a script runs.
func TestARunTakesAtMostAHundredTickets(t *testing.T) {
	const n = 250
	s, sale, _ := newStore(t, n, 1)
	ctx := context.Background()
	sales := make([]*flashsale.Sale, n)
	reqs := make([]*flashsale.PurchaseRequest, n)
	perSegment := map[int]int{}
	for i := range reqs {
		reqs[i], sales[i] = request(fmt.Sprintf("u%d", i), 1), sale
		claimOne(t, s, sale, reqs[i])
		perSegment[s.segmentOf(reqs[i].UserID)]++
	}
	want := 0
	for _, k := range perSegment {
		want += (k + maxTicketsPerRun - 1) / maxTicketsPerRun
	}
	runs := &scriptRuns{}
	s.rdb.AddHook(runs)
	holds, errs := s.Hold(ctx, sales, reqs)
	for i := range reqs {
		if errs[i] != nil || holds[i].Kind != flashsale.HoldHeld {
			t.Fatalf("hold %d = %+v, %v; want held", i, holds[i], errs[i])
		}
	}
	if testSegments == 1 && runs.n != want {
		// (With segments, refills add runs of their own.)
		t.Fatalf("%d script runs for %d holds, want %d", runs.n, n, want)
	}
	wantStock(t, s, flashsale.StockLevel{Total: n, Held: n})
}

func TestTicketCopies(t *testing.T) {
	s, _, _ := newStore(t, 1, 1)
	ctx := context.Background()
	payBy := time.Now().Add(time.Minute).UTC().Truncate(time.Microsecond)
	in := &flashsale.Ticket{ID: "t1", SaleID: "s1", UserID: "u1", Quantity: 1, Status: flashsale.TicketPendingPayment, OrderID: "t1", PayBy: &payBy}
	if err := s.PutTickets(ctx, in); err != nil {
		t.Fatal(err)
	}
	got, err := s.GetTicket(ctx, "t1")
	if err != nil || got.Status != in.Status || got.UserID != "u1" || got.PayBy == nil || !got.PayBy.Equal(payBy) {
		t.Fatalf("GetTicket = %+v, %v", got, err)
	}
	if _, err := s.GetTicket(ctx, "nope"); err == nil {
		t.Fatal("a missing ticket was found")
	}
}

// go-redis retries a claim whose reply was lost: the same ticket claimed again
// is still claimed (the ingress then publishes it), never "existing".
func TestClaimRetriedIsStillClaimed(t *testing.T) {
	s, sale, _ := newStore(t, 10, 1)
	ctx := context.Background()
	id := uuid.NewString()
	for i := 0; i < 2; i++ {
		if out, got, _, err := s.Claim(ctx, sale, "u1", flashsale.TicketClaim{ID: id}, 1); err != nil || out != flashsale.Claimed || got != id {
			t.Fatalf("claim #%d = %v %s %v, want Claimed %s", i+1, out, got, err, id)
		}
	}
}

// A ticket copy never moves back (a worker that read the order before it was
// paid writes pending_payment after the payment wrote paid); a copy written by
// another Redis server process (here: a forged run_id) is not trusted.
func TestTicketCopyNeverMovesBackAndAStaleCopyIsIgnored(t *testing.T) {
	s, _, _ := newStore(t, 1, 1)
	ctx := context.Background()
	paid := &flashsale.Ticket{ID: "t2", SaleID: "s1", UserID: "u1", Quantity: 1, Status: flashsale.TicketPaid, OrderID: "t2"}
	late := *paid
	late.Status = flashsale.TicketPendingPayment
	if err := s.PutTickets(ctx, paid); err != nil {
		t.Fatal(err)
	}
	if err := s.PutTickets(ctx, &late); err != nil {
		t.Fatal(err)
	}
	if got, err := s.GetTicket(ctx, "t2"); err != nil || got.Status != flashsale.TicketPaid {
		t.Fatalf("after a late pending_payment write: %+v, %v; want paid", got, err)
	}
	// An order paid late (revived after it expired): a step that read it
	// expired before (the sweeper's re-follow, a retried expiry) writes
	// expired after the paid copy; the soak saw the copy end expired.
	expired := *paid
	expired.Status = flashsale.TicketExpired
	if err := s.PutTickets(ctx, &expired); err != nil {
		t.Fatal(err)
	}
	if got, err := s.GetTicket(ctx, "t2"); err != nil || got.Status != flashsale.TicketPaid {
		t.Fatalf("after a late expired write: %+v, %v; want paid", got, err)
	}
	s.rdb.HSet(ctx, s.ticketKey("t2"), "srv", "another-server")
	if got, err := s.GetTicket(ctx, "t2"); !errors.Is(err, flashsale.ErrNotFound) {
		t.Fatalf("a copy from another server: %+v, %v; want not found", got, err)
	}
}

// A sale loaded by another Redis server process (a restart from a snapshot, a
// failover) is stale: the next script rebuilds it from the book of record,
// which decides every ticket it knows (a hold whose ticket MySQL recorded
// failed is dropped) and keeps the holds of tickets it does not know yet
// (their orders are being committed).
func TestStaleSaleIsRebuiltBeforeItAdmits(t *testing.T) {
	s, sale, src := newStore(t, 10, 1)
	ctx := context.Background()
	failed, inFlight := request("u1", 1), request("u3", 1)
	claimAndHold(t, s, sale, failed)
	claimAndHold(t, s, sale, inFlight)
	wantStock(t, s, flashsale.StockLevel{Total: 10, Available: 8, Held: 2})
	paid := &flashsale.Order{ID: uuid.NewString(), SaleID: "s1", UserID: "u2", Quantity: 3, Status: flashsale.OrderPaid}
	src.orders = []*flashsale.Order{paid}
	src.outcomes = []*flashsale.Ticket{failed.Ticket(flashsale.TicketFailed)}
	s.rdb.HSet(ctx, s.segKeys("s1", 0).stock, "srv", "another-server")
	wantStock(t, s, flashsale.StockLevel{Total: 10, Available: 6, Held: 1, Sold: 3})
	if live, _, units, err := s.Holder(ctx, "s1", "u3"); err != nil || live != inFlight.TicketID || units != 1 {
		t.Errorf("the in-flight ticket's user after the rebuild: live %q units %d (%v), want %q and 1", live, units, err, inFlight.TicketID)
	}
	if live, _, units, err := s.Holder(ctx, "s1", "u1"); err != nil || live != "" || units != 0 {
		t.Errorf("the failed ticket's user after the rebuild: live %q units %d (%v), want none", live, units, err)
	}
}

// A re-assert never takes units Redis does not have: Redis is behind MySQL
// then, and the sale is rebuilt from it (which counts the order).
func TestReassertNeverTakesUnitsRedisDoesNotHave(t *testing.T) {
	s, sale, src := newStore(t, 1, 1)
	ctx := context.Background()
	refused := request("u1", 1)
	claimAndHold(t, s, sale, refused) // Redis's only unit, to a ticket MySQL refused
	o := &flashsale.Order{ID: uuid.NewString(), SaleID: "s1", UserID: "u2", Quantity: 1, Status: flashsale.OrderPendingPayment}
	src.orders = []*flashsale.Order{o}
	src.outcomes = []*flashsale.Ticket{refused.Ticket(flashsale.TicketSoldOut)}
	holds, errs := s.Reassert(ctx, []flashsale.Part{{SaleID: o.SaleID, TicketID: o.ID, UserID: o.UserID, Quantity: o.Quantity}})
	if errs[0] != nil || holds[0].Kind != flashsale.HoldHeld {
		t.Fatalf("reassert = %+v, %v", holds[0], errs[0])
	}
	wantStock(t, s, flashsale.StockLevel{Total: 1, Available: 0, Held: 1})
}

// A return lowers a sold ticket to what MySQL keeps: units move from sold to
// available once, whatever order the returns arrive in or however often.
func TestReturnLowersASoldTicketOnce(t *testing.T) {
	s, sale, _ := newStore(t, 10, 3)
	ctx := context.Background()
	req := request("u1", 3)
	claimAndHold(t, s, sale, req)
	if _, err := s.Confirm(ctx, flashsale.Part{SaleID: sale.ID, TicketID: req.TicketID, UserID: req.UserID}); err != nil {
		t.Fatal(err)
	}
	wantStock(t, s, flashsale.StockLevel{Total: 10, Available: 7, Sold: 3})
	// The second return (keep 0) arrives before the first (keep 2), and
	// both are repeated.
	for _, keep := range []int{0, 2, 0, 2} {
		if _, err := s.Return(ctx, flashsale.Part{SaleID: sale.ID, TicketID: req.TicketID, UserID: req.UserID, Quantity: keep}); err != nil {
			t.Fatal(err)
		}
		wantStock(t, s, flashsale.StockLevel{Total: 10, Available: 10})
	}
}

// A late payment retakes a released ticket's units only when all are there.
func TestRetakeTakesAllUnitsOrNone(t *testing.T) {
	s, sale, _ := newStore(t, 3, 2)
	ctx := context.Background()
	late := request("u1", 2)
	claimAndHold(t, s, sale, late)
	if _, err := s.Release(ctx, flashsale.Part{SaleID: sale.ID, TicketID: late.TicketID, UserID: late.UserID}); err != nil {
		t.Fatal(err)
	}
	claimAndHold(t, s, sale, request("u2", 2)) // leaves one unit
	if _, ok, err := s.Retake(ctx, flashsale.Part{SaleID: sale.ID, TicketID: late.TicketID, UserID: late.UserID, Quantity: 2}); err != nil || ok {
		t.Fatalf("retake of 2 with 1 available: ok=%v err=%v, want refused", ok, err)
	}
	wantStock(t, s, flashsale.StockLevel{Total: 3, Available: 1, Held: 2})
	if _, ok, err := s.Retake(ctx, flashsale.Part{SaleID: sale.ID, TicketID: late.TicketID, UserID: late.UserID, Quantity: 1}); err != nil || !ok {
		t.Fatalf("retake of 1 with 1 available: ok=%v err=%v, want taken", ok, err)
	}
	if _, ok, err := s.Retake(ctx, flashsale.Part{SaleID: sale.ID, TicketID: late.TicketID, UserID: late.UserID, Quantity: 1}); err != nil || !ok {
		t.Fatalf("the same retake again: ok=%v err=%v, want still taken", ok, err)
	}
	wantStock(t, s, flashsale.StockLevel{Total: 3, Available: 0, Held: 3})
}

// Holder reads a user's live ticket and units in a sale without a script:
// none before a claim, the ticket once claimed, its units once held.
func TestHolderReadsLiveTicketAndUnits(t *testing.T) {
	s, sale, _ := newStore(t, 10, 2)
	ctx := context.Background()
	if live, _, units, err := s.Holder(ctx, sale.ID, "u1"); err != nil || live != "" || units != 0 {
		t.Fatalf("before any claim: %q %d %v", live, units, err)
	}
	id := uuid.NewString()
	_, _, load, _ := s.Claim(ctx, sale, "u1", flashsale.TicketClaim{ID: id}, 2)
	if live, _, units, err := s.Holder(ctx, sale.ID, "u1"); err != nil || live != id || units != 0 {
		t.Fatalf("after the claim: %q %d %v, want %s and 0 units", live, units, err, id)
	}
	req := &flashsale.PurchaseRequest{TicketID: id, SaleID: sale.ID, UserID: "u1", Quantity: 2, AdmittedAt: time.Now(), Loads: []int64{load}}
	if h := holdOne(t, s, sale, req); h.Kind != flashsale.HoldHeld {
		t.Fatalf("hold: %+v", h)
	}
	if live, _, units, err := s.Holder(ctx, sale.ID, "u1"); err != nil || live != id || units != 2 {
		t.Fatalf("after the hold: %q %d %v, want %s and 2 units", live, units, err, id)
	}
}

func TestLeases(t *testing.T) {
	s, _, _ := newStore(t, 1, 1)
	storetest.RunLeases(t, s.Leases())
}
