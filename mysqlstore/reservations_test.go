package mysqlstore

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/flashsale/flashsale"
	"github.com/flashsale/flashsale/internal/testenv"
)

func openTestStore(t *testing.T) *Store {
	t.Helper()
	dbs := testenv.NewDatabases(t, 1)
	cfg := Config{MetaDSN: dbs.MetaDSN(), ShardDSNs: dbs.ShardDSNs(), MaxOpenConns: 48}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := Migrate(ctx, cfg, slog.New(slog.NewTextHandler(io.Discard, nil))); err != nil {
		t.Fatal(err)
	}
	s, err := Open(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func reservationOf(saleID, userID string) *flashsale.UserReservation {
	return &flashsale.UserReservation{SaleID: saleID, UserID: userID, ReservedAt: time.Now().UTC().Truncate(time.Microsecond)}
}

func countRows(t *testing.T, s *Store, saleID string) int {
	t.Helper()
	var n int
	if err := s.meta.QueryRow(`SELECT COUNT(*) FROM reservations WHERE sale_id = ?`, saleID).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

// TestReserveCapacityIsExact: 400 users race for 60 places; exactly 60 commit,
// and the counter agrees with the rows.
func TestReserveCapacityIsExact(t *testing.T) {
	s := openTestStore(t)
	ctx := context.Background()
	const users, capacity = 400, 60
	var created, full sync.Map
	var wg sync.WaitGroup
	errs := make(chan error, users)
	for i := range users {
		wg.Add(1)
		go func() {
			defer wg.Done()
			u := fmt.Sprintf("u%04d", i)
			r, ok, err := s.Reserve(ctx, reservationOf("cap", u), capacity)
			switch {
			case flashsale.ErrorCode(err) == flashsale.CodeReservationsFull:
				full.Store(u, true)
			case err != nil:
				errs <- err
			case !ok || r.UserID != u:
				errs <- fmt.Errorf("user %s: created %v, reservation %+v", u, ok, r)
			default:
				created.Store(u, true)
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	nc, nf := 0, 0
	created.Range(func(any, any) bool { nc++; return true })
	full.Range(func(any, any) bool { nf++; return true })
	if nc != capacity || nf != users-capacity {
		t.Errorf("%d created, %d full; want %d and %d", nc, nf, capacity, users-capacity)
	}
	if n := countRows(t, s, "cap"); n != capacity {
		t.Errorf("%d reservation rows, want %d", n, capacity)
	}
	if n, err := s.ReservationCount(ctx, "cap"); err != nil || n != capacity {
		t.Errorf("count %d %v, want %d", n, err, capacity)
	}
	// A user who got a place still gets it back when the sale is full.
	var someone string
	created.Range(func(k, _ any) bool { someone = k.(string); return false })
	if r, ok, err := s.Reserve(ctx, reservationOf("cap", someone), capacity); err != nil || ok || r.UserID != someone {
		t.Errorf("existing reservation on a full sale: %+v %v %v", r, ok, err)
	}
}

// TestReserveSameUserOnce: one user's 30 simultaneous attempts make one
// reservation; every answer carries the same reserved_at.
func TestReserveSameUserOnce(t *testing.T) {
	s := openTestStore(t)
	ctx := context.Background()
	type answer struct {
		r       *flashsale.UserReservation
		created bool
		err     error
	}
	answers := make([]answer, 30)
	var wg sync.WaitGroup
	for i := range answers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r, ok, err := s.Reserve(ctx, reservationOf("same", "alice"), 0)
			answers[i] = answer{r, ok, err}
		}()
	}
	wg.Wait()
	n := 0
	var at time.Time
	for _, a := range answers {
		if a.err != nil {
			t.Fatal(a.err)
		}
		if a.created {
			n++
			at = a.r.ReservedAt
		}
	}
	if n != 1 {
		t.Fatalf("%d attempts created a reservation, want 1", n)
	}
	for _, a := range answers {
		if !a.r.ReservedAt.Equal(at) || a.r.UserID != "alice" || a.r.SaleID != "same" {
			t.Errorf("answer %+v, want reserved_at %v", a.r, at)
		}
	}
	got, err := s.GetReservation(ctx, "same", "alice")
	if err != nil || !got.ReservedAt.Equal(at) || got.ReservedAt.Location() != time.UTC {
		t.Errorf("GetReservation: %+v %v", got, err)
	}
	if n, _ := s.ReservationCount(ctx, "same"); n != 1 {
		t.Errorf("count %d, want 1", n)
	}
	if _, err := s.GetReservation(ctx, "same", "bob"); flashsale.ErrorCode(err) != flashsale.CodeNotFound {
		t.Errorf("GetReservation of a user who did not reserve: %v, want not_found", err)
	}
}

// TestReservedUsersPages: keyset pages return every user once, in order.
func TestReservedUsersPages(t *testing.T) {
	s := openTestStore(t)
	ctx := context.Background()
	want := map[string]bool{}
	for i := range 23 {
		u := fmt.Sprintf("p-%02d", i)
		want[u] = true
		if _, _, err := s.Reserve(ctx, reservationOf("pages", u), 0); err != nil {
			t.Fatal(err)
		}
	}
	s.Reserve(ctx, reservationOf("other", "p-99"), 0)
	after, seen := "", 0
	for {
		page, err := s.ReservedUsers(ctx, "pages", after, 5)
		if err != nil {
			t.Fatal(err)
		}
		for _, u := range page {
			if !want[u] || u <= after {
				t.Errorf("unexpected or out of order user %q after %q", u, after)
			}
			after = u
			seen++
		}
		if len(page) < 5 {
			break
		}
	}
	if seen != len(want) {
		t.Errorf("paged through %d users, want %d", seen, len(want))
	}
	if n, err := s.ReservationCount(ctx, "nobody"); err != nil || n != 0 {
		t.Errorf("count of a sale without reservations: %d %v", n, err)
	}
}
