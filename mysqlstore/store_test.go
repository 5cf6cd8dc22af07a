package mysqlstore

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/flashsale/flashsale"
	"github.com/flashsale/flashsale/internal/storetest"
	"github.com/flashsale/flashsale/internal/testenv"
)

func newStore(t testing.TB) *Store {
	t.Helper()
	dbs := testenv.NewDatabases(t, 2)
	cfg := Config{MetaDSN: dbs.MetaDSN(), ShardDSNs: dbs.ShardDSNs()}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	for i := 0; i < 2; i++ { // idempotent
		if err := Migrate(context.Background(), cfg, log); err != nil {
			t.Fatalf("migrate #%d: %v", i+1, err)
		}
	}
	s, err := Open(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// createSale stores a sale open now with the given stock and per-user limit.
func createSale(t *testing.T, s *Store, id string, stock, limit int) *flashsale.Sale {
	t.Helper()
	now := time.Now().UTC().Truncate(time.Microsecond)
	sale := &flashsale.Sale{ID: id, SKU: "k", Name: "n", Stock: stock, PriceCents: 100, PerUserLimit: limit,
		StartsAt: now.Add(-time.Minute), EndsAt: now.Add(time.Hour), PaymentWindowSeconds: 60,
		Inventory: flashsale.InventoryRedis, CreatedAt: now}
	if err := s.CreateSale(context.Background(), sale); err != nil {
		t.Fatal(err)
	}
	return sale
}

func order(user string) *flashsale.Order {
	now := time.Now().UTC().Truncate(time.Microsecond)
	return &flashsale.Order{ID: uuid.NewString(), SaleID: "s1", UserID: user, Quantity: 1, AmountCents: 100,
		Status: flashsale.OrderPendingPayment, CreatedAt: now, PayBy: now.Add(time.Minute)}
}

func TestCreateOrdersIsIdempotentAndOneLiveOrderPerUser(t *testing.T) {
	s := newStore(t)
	ctx := context.Background()
	createSale(t, s, "s1", 10, 1)
	a := order("alice")
	shard := s.ShardOf("alice")
	b := order("bob")
	for i := 0; s.ShardOf(b.UserID) != shard; i++ { // a second user on alice's shard
		b = order(fmt.Sprintf("bob%d", i))
	}
	res, err := s.CreateOrders(ctx, shard, []*flashsale.Order{a, b})
	if err != nil || res[0].Outcome != flashsale.CreateNew || res[1].Outcome != flashsale.CreateNew {
		t.Fatalf("first create = %+v, %v", res, err)
	}
	// A redelivered batch, with a second unpaid order of alice's in it.
	second := order("alice")
	res, err = s.CreateOrders(ctx, shard, []*flashsale.Order{a, second, b})
	if err != nil {
		t.Fatal(err)
	}
	want := []flashsale.CreateOutcome{flashsale.CreateExisted, flashsale.CreateLiveConflict, flashsale.CreateExisted}
	for i, r := range res {
		if r.Outcome != want[i] {
			t.Fatalf("order %d outcome = %v, want %v", i, r.Outcome, want[i])
		}
	}
	var orders, events int
	s.shards[shard].QueryRow("SELECT COUNT(*) FROM orders").Scan(&orders)
	s.shards[shard].QueryRow("SELECT COUNT(*) FROM outbox WHERE event_type = 'order.created'").Scan(&events)
	if orders != 2 || events != 2 {
		t.Fatalf("%d orders and %d order.created events, want 2 and 2", orders, events)
	}
	got, err := s.GetOrder(ctx, flashsale.OrderRef{User: "alice", Order: a.ID})
	if err != nil || got.Status != flashsale.OrderPendingPayment || !got.PayBy.Equal(a.PayBy) {
		t.Fatalf("GetOrder = %+v, %v", got, err)
	}
	if _, err := s.GetOrder(ctx, flashsale.OrderRef{User: "mallory", Order: a.ID}); err == nil {
		t.Fatal("someone else's order was found")
	}
}

func TestTicketFallbackFromOrdersAndOutcomes(t *testing.T) {
	s := newStore(t)
	ctx := context.Background()
	createSale(t, s, "s1", 10, 1)
	o := order("dave")
	if _, err := s.CreateOrders(ctx, s.ShardOf("dave"), []*flashsale.Order{o}); err != nil {
		t.Fatal(err)
	}
	lost := &flashsale.Ticket{ID: uuid.NewString(), SaleID: "s1", UserID: "dave", Quantity: 1, Status: flashsale.TicketSoldOut}
	if stand, err := s.RecordOutcomes(ctx, s.ShardOf("dave"), []*flashsale.Ticket{lost, lost}); err != nil || len(stand) != 0 {
		t.Fatalf("record outcomes: %v %v, want recorded as given", stand, err)
	}
	// A ticket that made its order keeps it.
	late := &flashsale.Ticket{ID: o.ID, SaleID: "s1", UserID: "dave", Quantity: 1, Status: flashsale.TicketSoldOut}
	if stand, err := s.RecordOutcomes(ctx, s.ShardOf("dave"), []*flashsale.Ticket{late}); err != nil || stand[o.ID] != flashsale.TicketPendingPayment {
		t.Fatalf("record outcomes of an ordered ticket: %v %v, want its order to stand", stand, err)
	}
	if tk, err := s.GetTicket(ctx, flashsale.TicketRef{User: "dave", Ticket: o.ID}); err != nil || tk.Status != flashsale.TicketPendingPayment || tk.OrderID != o.ID {
		t.Fatalf("ticket of an order = %+v, %v", tk, err)
	}
	if tk, err := s.GetTicket(ctx, flashsale.TicketRef{User: "dave", Ticket: lost.ID}); err != nil || tk.Status != flashsale.TicketSoldOut {
		t.Fatalf("ticket of an outcome = %+v, %v", tk, err)
	}
	if _, err := s.GetTicket(ctx, flashsale.TicketRef{User: "erin", Ticket: lost.ID}); err == nil {
		t.Fatal("someone else's ticket was found")
	}
}

func TestCreateSaleConflict(t *testing.T) {
	s := newStore(t)
	ctx := context.Background()
	now := time.Now().UTC().Truncate(time.Microsecond)
	sale := &flashsale.Sale{ID: "s1", SKU: "k", Name: "n", Stock: 5, PerUserLimit: 1, StartsAt: now, EndsAt: now.Add(time.Hour),
		PaymentWindowSeconds: 60, Inventory: flashsale.InventoryRedis, CreatedAt: now,
		Reservation: &flashsale.Reservation{OpensAt: now.Add(-time.Hour), ClosesAt: now, Capacity: 3}}
	if err := s.CreateSale(ctx, sale); err != nil {
		t.Fatal(err)
	}
	if err := s.CreateSale(ctx, sale); !errorsIs(err, flashsale.ErrConflict) {
		t.Fatalf("second create = %v, want conflict", err)
	}
	got, err := s.GetSale(ctx, "s1")
	if err != nil || got.Reservation == nil || got.Reservation.Capacity != 3 || !got.StartsAt.Equal(now) {
		t.Fatalf("GetSale = %+v, %v", got, err)
	}
}

func errorsIs(err, target error) bool {
	return err != nil && flashsale.ErrorCode(err) == flashsale.ErrorCode(target)
}

func TestLeases(t *testing.T) { storetest.RunLeases(t, newStore(t).Leases()) }
