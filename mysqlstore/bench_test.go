package mysqlstore

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/flashsale/flashsale"
)

// BenchmarkCreateOrders is what the worker's order stage costs MySQL: 8
// goroutines (the worker's consumers) commit batches of 100 orders of one sale,
// alternating shards. It reports orders/s. Run with
// `go test -run - -bench CreateOrders -benchtime 200x ./mysqlstore`.
func BenchmarkCreateOrders(b *testing.B) {
	s := newStore(b)
	ctx := context.Background()
	now := time.Now().UTC().Truncate(time.Microsecond)
	sale := &flashsale.Sale{ID: "bench", SKU: "k", Name: "n", Stock: 100_000_000, PriceCents: 100, PerUserLimit: 1,
		StartsAt: now.Add(-time.Minute), EndsAt: now.Add(time.Hour), PaymentWindowSeconds: 900,
		Inventory: flashsale.InventoryRedis, CreatedAt: now}
	if err := s.CreateSale(ctx, sale); err != nil {
		b.Fatal(err)
	}
	const perBatch, workers = 100, 8
	users := [2][]string{}
	for i := 0; len(users[0]) < perBatch*b.N || len(users[1]) < perBatch*b.N; i++ {
		u := fmt.Sprintf("u%d", i)
		users[s.ShardOf(u)] = append(users[s.ShardOf(u)], u)
	}
	var next atomic.Int64
	var wg sync.WaitGroup
	b.ResetTimer()
	start := time.Now()
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				n := int(next.Add(1)) - 1
				if n >= b.N {
					return
				}
				shard := n % 2
				batch := make([]*flashsale.Order, perBatch)
				for i := range batch {
					batch[i] = &flashsale.Order{ID: uuid.NewString(), SaleID: sale.ID, UserID: users[shard][(n/2)*perBatch+i],
						Quantity: 1, AmountCents: 100, Status: flashsale.OrderPendingPayment, CreatedAt: now, PayBy: now.Add(time.Hour)}
				}
				res, err := s.CreateOrders(ctx, shard, batch)
				if err != nil {
					b.Error(err)
					return
				}
				for _, r := range res {
					if r.Outcome != flashsale.CreateNew {
						b.Errorf("outcome %v", r.Outcome)
						return
					}
				}
			}
		}()
	}
	wg.Wait()
	b.ReportMetric(float64(b.N*perBatch)/time.Since(start).Seconds(), "orders/s")
}
