package reservation

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/flashsale/flashsale"
)

// memBook is the book of record in memory, exact under concurrency like MySQL.
type memBook struct {
	mu      sync.Mutex
	rows    map[string]*flashsale.UserReservation // sale/user -> reservation
	counts  map[string]int
	reserve atomic.Int32 // calls of Reserve
	pages   atomic.Int32 // calls of ReservedUsers
}

func newMemBook() *memBook {
	return &memBook{rows: map[string]*flashsale.UserReservation{}, counts: map[string]int{}}
}

func (b *memBook) Reserve(_ context.Context, r *flashsale.UserReservation, capacity int) (*flashsale.UserReservation, bool, error) {
	b.reserve.Add(1)
	b.mu.Lock()
	defer b.mu.Unlock()
	if old, ok := b.rows[r.SaleID+"/"+r.UserID]; ok {
		return old, false, nil
	}
	if capacity > 0 && b.counts[r.SaleID] >= capacity {
		return nil, false, flashsale.Errorf(flashsale.CodeReservationsFull, "full")
	}
	c := *r
	b.rows[r.SaleID+"/"+r.UserID] = &c
	b.counts[r.SaleID]++
	return &c, true, nil
}

func (b *memBook) GetReservation(_ context.Context, saleID, userID string) (*flashsale.UserReservation, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if r, ok := b.rows[saleID+"/"+userID]; ok {
		return r, nil
	}
	return nil, flashsale.Errorf(flashsale.CodeNotFound, "none")
}

func (b *memBook) ReservedUsers(_ context.Context, saleID, after string, limit int) ([]string, error) {
	b.pages.Add(1)
	b.mu.Lock()
	defer b.mu.Unlock()
	var all []string
	for _, r := range b.rows {
		if r.SaleID == saleID && r.UserID > after {
			all = append(all, r.UserID)
		}
	}
	sort.Strings(all)
	if len(all) > limit {
		all = all[:limit]
	}
	return all, nil
}

func (b *memBook) ReservationCount(_ context.Context, saleID string) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.counts[saleID], nil
}

// memCache is the qualified sets in memory; failAdd makes AddQualified fail.
type memCache struct {
	mu      sync.Mutex
	sets    map[string]map[string]bool
	loaded  map[string]bool
	failAdd atomic.Bool
	loads   atomic.Int32
}

func newMemCache() *memCache {
	return &memCache{sets: map[string]map[string]bool{}, loaded: map[string]bool{}}
}

func (c *memCache) Qualified(_ context.Context, saleID, userID string) (bool, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.loaded[saleID] {
		return false, fmt.Errorf("mem: %w", flashsale.ErrNotLoaded)
	}
	return c.sets[saleID][userID], nil
}

func (c *memCache) AddQualified(_ context.Context, saleID string, userIDs ...string) error {
	if c.failAdd.Load() {
		return errors.New("redis is down")
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.sets[saleID] == nil {
		c.sets[saleID] = map[string]bool{}
	}
	for _, u := range userIDs {
		c.sets[saleID][u] = true
	}
	return nil
}

func (c *memCache) LoadQualified(ctx context.Context, saleID string, fill func(context.Context, func(...string) error) error) error {
	c.loads.Add(1)
	time.Sleep(20 * time.Millisecond) // a slow rebuild, so that callers pile up behind it
	if err := fill(ctx, func(u ...string) error { return c.AddQualified(ctx, saleID, u...) }); err != nil {
		return err
	}
	c.mu.Lock()
	c.loaded[saleID] = true
	c.mu.Unlock()
	return nil
}

// lose forgets the sale's set, as a Redis restart would.
func (c *memCache) lose(saleID string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	delete(c.sets, saleID)
	delete(c.loaded, saleID)
}

type clock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *clock) Now() time.Time  { c.mu.Lock(); defer c.mu.Unlock(); return c.now }
func (c *clock) Set(t time.Time) { c.mu.Lock(); defer c.mu.Unlock(); c.now = t }

var t0 = time.Date(2030, 1, 1, 12, 0, 0, 0, time.UTC)

func reservationSale(capacity int) *flashsale.Sale {
	return &flashsale.Sale{ID: "s1", Stock: 10, PerUserLimit: 1, StartsAt: t0.Add(2 * time.Hour), EndsAt: t0.Add(3 * time.Hour),
		Reservation: &flashsale.Reservation{OpensAt: t0, ClosesAt: t0.Add(time.Hour), Capacity: capacity}}
}

func newService(t *testing.T, pageSize int) (*Service, *memBook, *memCache, *clock) {
	t.Helper()
	book, cache, clk := newMemBook(), newMemCache(), &clock{now: t0.Add(time.Minute)}
	s, err := New(Config{Book: book, Cache: cache, Now: clk.Now, PageSize: pageSize})
	if err != nil {
		t.Fatal(err)
	}
	return s, book, cache, clk
}

func code(err error) flashsale.Code {
	if err == nil {
		return ""
	}
	return flashsale.ErrorCode(err)
}

func TestReserveWindowAndPhase(t *testing.T) {
	s, _, _, clk := newService(t, 0)
	ctx := context.Background()
	sale := reservationSale(0)
	for _, tc := range []struct {
		at   time.Time
		want flashsale.Code
	}{
		{t0.Add(-time.Nanosecond), flashsale.CodeReservationClosed},
		{t0, ""},
		{t0.Add(time.Hour - time.Microsecond), ""},
		{t0.Add(time.Hour), flashsale.CodeReservationClosed},
		{t0.Add(90 * time.Minute), flashsale.CodeReservationClosed},
	} {
		clk.Set(tc.at)
		_, _, err := s.Reserve(ctx, sale, "u-"+tc.at.Format("150405.000000000"))
		if code(err) != tc.want {
			t.Errorf("reserve at %s: %v, want code %q", tc.at.Sub(t0), err, tc.want)
		}
	}
	plain := reservationSale(0)
	plain.Reservation = nil
	if _, _, err := s.Reserve(ctx, plain, "u"); code(err) != flashsale.CodeNoReservation {
		t.Errorf("reserve a sale without a phase: %v, want no_reservation", err)
	}
	if ok, err := s.Qualified(ctx, plain, "anyone"); err != nil || !ok {
		t.Errorf("a sale without a phase must be open to all: %v %v", ok, err)
	}
	if _, err := s.Reservation(ctx, plain, "u"); code(err) != flashsale.CodeNotFound {
		t.Errorf("reservation of a sale without a phase: %v, want not_found", err)
	}
}

func TestReserveOnceAndQualified(t *testing.T) {
	s, book, _, _ := newService(t, 0)
	ctx := context.Background()
	sale := reservationSale(0)
	r1, created, err := s.Reserve(ctx, sale, "alice")
	if err != nil || !created || r1.UserID != "alice" || r1.SaleID != "s1" || !r1.ReservedAt.Equal(t0.Add(time.Minute)) {
		t.Fatalf("first reserve: %+v %v %v", r1, created, err)
	}
	r2, created, err := s.Reserve(ctx, sale, "alice")
	if err != nil || created || *r2 != *r1 {
		t.Fatalf("second reserve: %+v %v %v, want the same reservation, not created", r2, created, err)
	}
	if got, err := s.Reservation(ctx, sale, "alice"); err != nil || *got != *r1 {
		t.Errorf("Reservation: %+v %v", got, err)
	}
	if _, err := s.Reservation(ctx, sale, "bob"); code(err) != flashsale.CodeNotFound {
		t.Errorf("Reservation of bob: %v, want not_found", err)
	}
	if n, _ := s.Count(ctx, sale); n != 1 {
		t.Errorf("count %d, want 1", n)
	}
	for u, want := range map[string]bool{"alice": true, "bob": false} {
		if ok, err := s.Qualified(ctx, sale, u); err != nil || ok != want {
			t.Errorf("Qualified(%s) = %v %v, want %v", u, ok, err, want)
		}
	}
	if n := book.counts["s1"]; n != 1 {
		t.Errorf("book counts %d, want 1", n)
	}
}

// TestReserveFull: once full, only users who reserved get their reservation;
// the others get reservations_full without waiting on the counter.
func TestReserveFull(t *testing.T) {
	s, book, _, _ := newService(t, 0)
	ctx := context.Background()
	sale := reservationSale(2)
	for _, u := range []string{"a", "b"} {
		if _, created, err := s.Reserve(ctx, sale, u); err != nil || !created {
			t.Fatalf("reserve %s: %v %v", u, created, err)
		}
	}
	if _, _, err := s.Reserve(ctx, sale, "c"); code(err) != flashsale.CodeReservationsFull {
		t.Fatalf("third reserve: %v, want reservations_full", err)
	}
	calls := book.reserve.Load()
	if _, _, err := s.Reserve(ctx, sale, "d"); code(err) != flashsale.CodeReservationsFull {
		t.Errorf("fourth reserve: %v, want reservations_full", err)
	}
	if r, created, err := s.Reserve(ctx, sale, "a"); err != nil || created || r.UserID != "a" {
		t.Errorf("retry of a reserved user on a full sale: %+v %v %v", r, created, err)
	}
	if book.reserve.Load() != calls {
		t.Errorf("a full sale still ran %d reservation transactions", book.reserve.Load()-calls)
	}
}

// TestReserveCacheFailure: the Redis write after the commit fails; the user is
// told to retry, and the retry qualifies them without counting them twice.
func TestReserveCacheFailure(t *testing.T) {
	s, book, cache, _ := newService(t, 0)
	ctx := context.Background()
	sale := reservationSale(0)
	cache.LoadQualified(ctx, "s1", func(context.Context, func(...string) error) error { return nil })
	cache.failAdd.Store(true)
	if _, _, err := s.Reserve(ctx, sale, "alice"); err == nil || code(err) != flashsale.CodeInternal {
		t.Fatalf("reserve with Redis down: %v, want an uncoded error", err)
	}
	if ok, _ := s.Qualified(ctx, sale, "alice"); ok {
		t.Fatal("qualified although the cache write failed")
	}
	cache.failAdd.Store(false)
	if _, created, err := s.Reserve(ctx, sale, "alice"); err != nil || created {
		t.Fatalf("retry: %v %v, want the existing reservation", created, err)
	}
	if ok, err := s.Qualified(ctx, sale, "alice"); err != nil || !ok {
		t.Errorf("after the retry: %v %v, want qualified", ok, err)
	}
	if book.counts["s1"] != 1 {
		t.Errorf("count %d, want 1", book.counts["s1"])
	}
}

// TestQualifiedRebuildsOnce: the qualified set is lost; 200 concurrent checks
// share one rebuild (paged through the book), and answer exactly.
func TestQualifiedRebuildsOnce(t *testing.T) {
	s, book, cache, _ := newService(t, 7)
	ctx := context.Background()
	sale := reservationSale(0)
	for i := range 50 {
		if _, _, err := s.Reserve(ctx, sale, fmt.Sprintf("r%03d", i)); err != nil {
			t.Fatal(err)
		}
	}
	cache.lose("s1")
	var wg sync.WaitGroup
	for i := range 200 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			u := fmt.Sprintf("r%03d", i%100)
			ok, err := s.Qualified(ctx, sale, u)
			if err != nil || ok != (i%100 < 50) {
				t.Errorf("Qualified(%s) = %v %v", u, ok, err)
			}
		}()
	}
	wg.Wait()
	if n := cache.loads.Load(); n != 1 {
		t.Errorf("%d rebuilds, want 1", n)
	}
	if n := book.pages.Load(); n != 8 { // 50 users, 7 a page
		t.Errorf("%d pages read, want 8", n)
	}
}

func TestCountCached(t *testing.T) {
	book, cache := newMemBook(), newMemCache()
	clk := &clock{now: t0.Add(time.Minute)}
	s, err := New(Config{Book: book, Cache: cache, Now: clk.Now, CountTTL: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	sale := reservationSale(0)
	if n, _ := s.Count(ctx, sale); n != 0 {
		t.Fatalf("count %d", n)
	}
	book.Reserve(ctx, &flashsale.UserReservation{SaleID: "s1", UserID: "elsewhere"}, 0) // another process
	if n, _ := s.Count(ctx, sale); n != 0 {
		t.Errorf("count %d, want the cached 0", n)
	}
	s.Reserve(ctx, sale, "here") // through this process: refreshed at once
	if n, _ := s.Count(ctx, sale); n != 2 {
		t.Errorf("count %d, want 2", n)
	}
}
