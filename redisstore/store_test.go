package redisstore

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/flashsale/flashsale"
	"github.com/flashsale/flashsale/internal/testenv"
)

// fixedSource is the book of record for rebuild tests: what MySQL would return.
type fixedSource struct {
	sale   *flashsale.Sale
	orders []*flashsale.Order
}

func (f *fixedSource) GetSale(_ context.Context, id string) (*flashsale.Sale, error) {
	if f.sale == nil || f.sale.ID != id {
		return nil, flashsale.ErrNotFound
	}
	return f.sale, nil
}

func (f *fixedSource) HoldingOrders(context.Context, string) ([]*flashsale.Order, error) {
	return f.orders, nil
}

func newStore(t *testing.T, stock, limit int) (*Store, *flashsale.Sale, *fixedSource) {
	t.Helper()
	testenv.Require(t, testenv.RedisAddr())
	sale := &flashsale.Sale{ID: "s1", Stock: stock, PerUserLimit: limit, PriceCents: 100, PaymentWindowSeconds: 60}
	src := &fixedSource{sale: sale}
	s, err := New(Config{Addrs: []string{testenv.RedisAddr()}, Namespace: testenv.Name("rs"), Source: src})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx := context.Background()
		keys, _ := s.rdb.Keys(ctx, s.cfg.Namespace+":*").Result()
		if len(keys) > 0 {
			for _, k := range keys {
				s.rdb.Del(ctx, k)
			}
		}
		s.Close()
	})
	if err := s.InitSale(context.Background(), sale); err != nil {
		t.Fatal(err)
	}
	return s, sale, src
}

func request(user string, qty int) *flashsale.PurchaseRequest {
	return &flashsale.PurchaseRequest{TicketID: uuid.NewString(), SaleID: "s1", UserID: user, Quantity: qty, AdmittedAt: time.Now()}
}

// claimAndHold claims the user's live ticket and holds it, as ingress + worker do.
func claimAndHold(t *testing.T, s *Store, sale *flashsale.Sale, req *flashsale.PurchaseRequest) flashsale.Hold {
	t.Helper()
	ctx := context.Background()
	out, _, err := s.Claim(ctx, sale, req.UserID, req.TicketID, req.Quantity, req.AdmittedAt)
	if err != nil || out != flashsale.Claimed {
		t.Fatalf("claim: %v %v", out, err)
	}
	h, err := s.Hold(ctx, sale, req)
	if err != nil {
		t.Fatal(err)
	}
	return h
}

func wantStock(t *testing.T, s *Store, want flashsale.Stock) {
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
		h, err := s.Hold(context.Background(), sale, req)
		if err != nil || h.Kind != flashsale.HoldHeld {
			t.Fatalf("redelivered hold = %+v, %v", h, err)
		}
	}
	wantStock(t, s, flashsale.Stock{Total: 5, Available: 3, Held: 2})
}

func TestReleasedTicketIsNeverHeldAgain(t *testing.T) {
	s, sale, _ := newStore(t, 5, 1)
	ctx := context.Background()
	req := request("u1", 1)
	claimAndHold(t, s, sale, req)
	for i := 0; i < 2; i++ {
		if _, err := s.Release(ctx, "s1", req.TicketID, "u1"); err != nil {
			t.Fatal(err)
		}
	}
	wantStock(t, s, flashsale.Stock{Total: 5, Available: 5})
	h, err := s.Hold(ctx, sale, req)
	if err != nil || h.Kind != flashsale.HoldReleased {
		t.Fatalf("hold after release = %+v, %v; want released", h, err)
	}
	wantStock(t, s, flashsale.Stock{Total: 5, Available: 5})
	// The user's slot is free again: a new ticket may be claimed.
	if out, _, _ := s.Claim(ctx, sale, "u1", uuid.NewString(), 1, time.Now()); out != flashsale.Claimed {
		t.Fatalf("claim after release = %v", out)
	}
}

func TestConfirmMovesHeldToSoldOnce(t *testing.T) {
	s, sale, _ := newStore(t, 3, 1)
	req := request("u1", 1)
	claimAndHold(t, s, sale, req)
	for i := 0; i < 2; i++ {
		if _, err := s.Confirm(context.Background(), "s1", req.TicketID, "u1"); err != nil {
			t.Fatal(err)
		}
	}
	wantStock(t, s, flashsale.Stock{Total: 3, Available: 2, Sold: 1})
	// Paid is not live, but it counts towards the per-user limit.
	if out, _, _ := s.Claim(context.Background(), sale, "u1", uuid.NewString(), 1, time.Now()); out != flashsale.LimitReached {
		t.Fatalf("claim after a paid unit with limit 1 = %v, want LimitReached", out)
	}
}

func TestClaimIsOneLiveTicketPerUser(t *testing.T) {
	s, sale, _ := newStore(t, 10, 1)
	ctx := context.Background()
	first := uuid.NewString()
	if out, id, _ := s.Claim(ctx, sale, "u1", first, 1, time.Now()); out != flashsale.Claimed || id != first {
		t.Fatalf("first claim = %v %s", out, id)
	}
	if out, id, _ := s.Claim(ctx, sale, "u1", uuid.NewString(), 1, time.Now()); out != flashsale.Existing || id != first {
		t.Fatalf("second claim = %v %s, want Existing %s", out, id, first)
	}
}

func TestStaleClaimIsReplacedAndItsLateMessageRefused(t *testing.T) {
	s, sale, _ := newStore(t, 10, 1)
	ctx := context.Background()
	t0 := time.Now()
	old := &flashsale.PurchaseRequest{TicketID: uuid.NewString(), SaleID: "s1", UserID: "u1", Quantity: 1, AdmittedAt: t0}
	s.Claim(ctx, sale, "u1", old.TicketID, 1, t0) // the ingress died before publishing
	fresh := uuid.NewString()
	later := t0.Add(s.cfg.ClaimStale + time.Second)
	if out, id, _ := s.Claim(ctx, sale, "u1", fresh, 1, later); out != flashsale.Claimed || id != fresh {
		t.Fatalf("claim after a stale one = %v %s, want Claimed %s", out, id, fresh)
	}
	// Had the dead ingress's publish gone through after all, its message is refused.
	if h, _ := s.Hold(ctx, sale, old); h.Kind != flashsale.HoldRefused {
		t.Fatalf("late message of a replaced claim = %+v, want refused", h)
	}
	wantStock(t, s, flashsale.Stock{Total: 10, Available: 10})
}

func TestUnclaimedTicketIsRefused(t *testing.T) {
	s, sale, _ := newStore(t, 10, 1)
	ctx := context.Background()
	req := request("u1", 1)
	s.Claim(ctx, sale, "u1", req.TicketID, 1, req.AdmittedAt)
	s.Unclaim(ctx, "s1", "u1", req.TicketID) // publish answered 503
	if h, _ := s.Hold(ctx, sale, req); h.Kind != flashsale.HoldRefused {
		t.Fatalf("hold of an unclaimed ticket = %+v, want refused", h)
	}
	wantStock(t, s, flashsale.Stock{Total: 10, Available: 10})
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
			out, _, err := s.Claim(ctx, sale, req.UserID, req.TicketID, 1, req.AdmittedAt)
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
			h, err := s.Hold(ctx, sale, req)
			if err != nil {
				t.Error(err)
				return
			}
			mu.Lock()
			kinds[h.Kind]++
			mu.Unlock()
		}(i)
	}
	wg.Wait()
	if kinds[flashsale.HoldHeld] != 50 {
		t.Fatalf("held %d tickets of stock 50: %v", kinds[flashsale.HoldHeld], kinds)
	}
	wantStock(t, s, flashsale.Stock{Total: 50, Available: 0, Held: 50})
}

func TestLostSaleIsRebuiltFromTheBookOfRecord(t *testing.T) {
	s, sale, src := newStore(t, 10, 2)
	ctx := context.Background()
	paidID := uuid.NewString()
	src.orders = []*flashsale.Order{
		{ID: uuid.NewString(), SaleID: "s1", UserID: "u1", Quantity: 2, Status: flashsale.OrderPendingPayment},
		{ID: paidID, SaleID: "s1", UserID: "u2", Quantity: 1, Status: flashsale.OrderPaid},
	}
	k := s.keys("s1")
	s.rdb.Del(ctx, k.stock, k.holds, k.live, k.units)
	wantStock(t, s, flashsale.Stock{Total: 10, Available: 7, Held: 2, Sold: 1})
	// The rebuilt state knows the pending order's user is live and the paid one sold.
	if out, _, _ := s.Claim(ctx, sale, "u1", uuid.NewString(), 1, time.Now()); out != flashsale.Existing {
		t.Fatalf("claim by a user with a pending order after rebuild = %v, want Existing", out)
	}
	if h, _ := s.Confirm(ctx, "s1", paidID, "u2"); h.Kind != flashsale.HoldSold {
		t.Fatalf("paid order after rebuild = %+v, want sold", h)
	}
	// A message admitted before the rebuild (its claim lost with Redis) still holds.
	queued := &flashsale.PurchaseRequest{TicketID: uuid.NewString(), SaleID: "s1", UserID: "u3", Quantity: 1, AdmittedAt: time.Now().Add(-time.Second)}
	if h, _ := s.Hold(ctx, sale, queued); h.Kind != flashsale.HoldHeld {
		t.Fatalf("queued ticket after rebuild = %+v, want held", h)
	}
}

func TestReassertCountsAnOrderCommittedAfterARebuild(t *testing.T) {
	s, _, _ := newStore(t, 10, 1)
	ctx := context.Background()
	o := &flashsale.Order{ID: uuid.NewString(), SaleID: "s1", UserID: "u1", Quantity: 1, Status: flashsale.OrderPendingPayment}
	for i := 0; i < 2; i++ {
		if _, err := s.Reassert(ctx, o); err != nil {
			t.Fatal(err)
		}
	}
	wantStock(t, s, flashsale.Stock{Total: 10, Available: 9, Held: 1})
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
