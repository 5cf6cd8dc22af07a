package catalog

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/flashsale/flashsale"
)

// countingStore is a book of sales that counts its queries.
type countingStore struct {
	mu      sync.Mutex
	sales   map[string]*flashsale.Sale
	queries atomic.Int64
}

func (s *countingStore) CreateSale(_ context.Context, sale *flashsale.Sale) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.sales[sale.ID] = sale
	return nil
}

func (s *countingStore) GetSale(_ context.Context, id string) (*flashsale.Sale, error) {
	s.queries.Add(1)
	s.mu.Lock()
	defer s.mu.Unlock()
	if sale, ok := s.sales[id]; ok {
		return sale, nil
	}
	return nil, flashsale.ErrNotFound
}

func (s *countingStore) SaleIDs(context.Context) ([]string, error) {
	s.queries.Add(1)
	s.mu.Lock()
	defer s.mu.Unlock()
	var ids []string
	for id := range s.sales {
		ids = append(ids, id)
	}
	return ids, nil
}

type noStock struct{}

func (noStock) InitSale(context.Context, *flashsale.Sale) error { return nil }

// TestUnknownIDsCostNoQueryEach: a flood of distinct unknown ids costs at most
// one read of the id set per MinRefresh; a sale created elsewhere (straight in
// the store) is found by the next request; malformed ids cost nothing.
func TestUnknownIDsCostNoQueryEach(t *testing.T) {
	store := &countingStore{sales: map[string]*flashsale.Sale{"known": {ID: "known"}}}
	c, err := New(Config{Store: store, Stock: noStock{}, MinRefresh: 50 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	start := time.Now()
	var wg sync.WaitGroup
	for w := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 50 {
				if _, err := c.Get(ctx, fmt.Sprintf("nope-%d-%d", w, i)); flashsale.ErrorCode(err) != flashsale.CodeNotFound {
					t.Errorf("unknown id: %v, want not_found", err)
					return
				}
			}
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	q := store.queries.Load()
	if max := int64(elapsed/(50*time.Millisecond)) + 2; q > max {
		t.Errorf("400 unknown ids in %s cost %d queries, want at most %d", elapsed, q, max)
	}
	t.Logf("400 unknown ids in %s: %d queries", elapsed.Round(time.Millisecond), q)

	store.CreateSale(ctx, &flashsale.Sale{ID: "made-elsewhere"})
	if s, err := c.Get(ctx, "made-elsewhere"); err != nil || s.ID != "made-elsewhere" {
		t.Errorf("a sale created elsewhere: %v, %v; want found", s, err)
	}
	before := store.queries.Load()
	for _, id := range []string{"", "has space", "x{y}", string(make([]byte, 65))} {
		if _, err := c.Get(ctx, id); flashsale.ErrorCode(err) != flashsale.CodeNotFound {
			t.Errorf("malformed id %q: %v, want not_found", id, err)
		}
	}
	if n := store.queries.Load() - before; n != 0 {
		t.Errorf("malformed ids cost %d queries, want 0", n)
	}
}
