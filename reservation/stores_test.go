package reservation

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/flashsale/flashsale"
	"github.com/flashsale/flashsale/internal/testenv"
	"github.com/flashsale/flashsale/mysqlstore"
	"github.com/flashsale/flashsale/redisstore"
)

// TestWithRealStores runs the service on MySQL and Redis: 300 users race for
// 100 places, Redis then loses everything, and 300 concurrent qualification
// checks (through two services, as two processes would) rebuild the set from
// MySQL and answer exactly.
func TestWithRealStores(t *testing.T) {
	testenv.Require(t, testenv.RedisAddr())
	dbs := testenv.NewDatabases(t, 1)
	ctx := context.Background()
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	mcfg := mysqlstore.Config{MetaDSN: dbs.MetaDSN(), ShardDSNs: dbs.ShardDSNs()}
	if err := mysqlstore.Migrate(ctx, mcfg, quiet); err != nil {
		t.Fatal(err)
	}
	book, err := mysqlstore.Open(mcfg)
	if err != nil {
		t.Fatal(err)
	}
	defer book.Close()
	ns := testenv.Name("resv")
	rs, err := redisstore.New(redisstore.Config{Addrs: []string{testenv.RedisAddr()}, Namespace: ns, Source: book, Log: quiet})
	if err != nil {
		t.Fatal(err)
	}
	defer rs.Close()
	flush := func() {
		keys, err := rs.Client().Keys(ctx, ns+":*").Result()
		if err != nil {
			t.Fatal(err)
		}
		for _, k := range keys {
			rs.Client().Del(ctx, k)
		}
	}
	defer flush()

	now := time.Now().UTC()
	sale := &flashsale.Sale{ID: "real", Stock: 100, PerUserLimit: 1, PriceCents: 1, PaymentWindowSeconds: 60,
		StartsAt: now.Add(time.Hour), EndsAt: now.Add(2 * time.Hour), Inventory: flashsale.InventoryRedis,
		Reservation: &flashsale.Reservation{OpensAt: now.Add(-time.Minute), ClosesAt: now.Add(time.Hour), Capacity: 100},
		CreatedAt:   now}
	if err := book.CreateSale(ctx, sale); err != nil {
		t.Fatal(err)
	}
	services := make([]*Service, 2)
	for i := range services {
		if services[i], err = New(Config{Book: book, Cache: rs, Log: quiet, PageSize: 16}); err != nil {
			t.Fatal(err)
		}
	}

	var created, full atomic.Int32
	won := sync.Map{}
	var wg sync.WaitGroup
	for i := range 300 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			u := fmt.Sprintf("user-%03d", i)
			_, ok, err := services[i%2].Reserve(ctx, sale, u)
			switch {
			case flashsale.ErrorCode(err) == flashsale.CodeReservationsFull:
				full.Add(1)
			case err != nil:
				t.Error(err)
			case ok:
				created.Add(1)
				won.Store(u, true)
			default:
				t.Errorf("%s: not created on the first attempt", u)
			}
		}()
	}
	wg.Wait()
	if created.Load() != 100 || full.Load() != 200 {
		t.Fatalf("%d created, %d full; want 100 and 200", created.Load(), full.Load())
	}
	for _, s := range services {
		if n, err := s.Count(ctx, sale); err != nil || n != 100 {
			t.Errorf("count %d %v, want 100", n, err)
		}
	}

	flush()
	var qualified atomic.Int32
	for i := range 300 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			u := fmt.Sprintf("user-%03d", i)
			ok, err := services[i%2].Qualified(ctx, sale, u)
			if err != nil {
				t.Error(err)
				return
			}
			if _, want := won.Load(u); ok != want {
				t.Errorf("Qualified(%s) = %v, want %v", u, ok, want)
			}
			if ok {
				qualified.Add(1)
			}
		}()
	}
	wg.Wait()
	if qualified.Load() != 100 {
		t.Errorf("%d users qualified after the rebuild, want 100", qualified.Load())
	}
}
