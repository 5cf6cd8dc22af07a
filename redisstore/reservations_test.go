package redisstore

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/flashsale/flashsale"
)

// fillWith is a rebuild's fill that adds users, counting its runs.
func fillWith(runs *atomic.Int32, users ...string) func(context.Context, func(...string) error) error {
	return func(_ context.Context, add func(...string) error) error {
		runs.Add(1)
		return add(users...)
	}
}

func TestQualifiedNotLoadedUntilRebuilt(t *testing.T) {
	s, _, _ := newStore(t, 10, 1)
	ctx := context.Background()
	if _, err := s.Qualified(ctx, "r1", "alice"); !errors.Is(err, flashsale.ErrNotLoaded) {
		t.Fatalf("Qualified of a never loaded set: %v, want ErrNotLoaded", err)
	}
	// A reservation committed while the set is not loaded does not make it loaded.
	if err := s.AddQualified(ctx, "r1", "carol"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Qualified(ctx, "r1", "carol"); !errors.Is(err, flashsale.ErrNotLoaded) {
		t.Fatalf("Qualified after AddQualified only: %v, want ErrNotLoaded", err)
	}
	var runs atomic.Int32
	if err := s.LoadQualified(ctx, "r1", fillWith(&runs, "alice", "bob")); err != nil {
		t.Fatal(err)
	}
	for u, want := range map[string]bool{"alice": true, "bob": true, "carol": true, "mallory": false, "!loaded": true} {
		ok, err := s.Qualified(ctx, "r1", u)
		if err != nil || ok != want {
			t.Errorf("Qualified(%q) = %v %v, want %v", u, ok, err, want)
		}
	}
	// Loaded: a second load does not read the book of record again.
	if err := s.LoadQualified(ctx, "r1", fillWith(&runs, "zed")); err != nil {
		t.Fatal(err)
	}
	if runs.Load() != 1 {
		t.Errorf("fill ran %d times, want 1", runs.Load())
	}
	// Redis loses the set: not loaded again, and the rebuild restores it.
	s.rdb.Del(ctx, s.qualifiedKey("r1"))
	if _, err := s.Qualified(ctx, "r1", "alice"); !errors.Is(err, flashsale.ErrNotLoaded) {
		t.Fatalf("Qualified after loss: %v, want ErrNotLoaded", err)
	}
	if err := s.LoadQualified(ctx, "r1", fillWith(&runs, "alice", "bob", "carol")); err != nil {
		t.Fatal(err)
	}
	if ok, err := s.Qualified(ctx, "r1", "carol"); err != nil || !ok {
		t.Errorf("carol after rebuild: %v %v", ok, err)
	}
}

// TestLoadQualifiedSetLostMidway: the set is lost while a rebuild fills it;
// the rebuild notices (its token is gone) and fills it again, so the set is
// never marked loaded with users missing.
func TestLoadQualifiedSetLostMidway(t *testing.T) {
	s, _, _ := newStore(t, 10, 1)
	ctx := context.Background()
	var runs atomic.Int32
	err := s.LoadQualified(ctx, "r2", func(ctx context.Context, add func(...string) error) error {
		if err := add("u1", "u2"); err != nil {
			return err
		}
		if runs.Add(1) == 1 {
			s.rdb.Del(ctx, s.qualifiedKey("r2")) // lost between two pages
		}
		return add("u3")
	})
	if err != nil {
		t.Fatal(err)
	}
	if runs.Load() != 2 {
		t.Errorf("fill ran %d times, want 2 (once more after the loss)", runs.Load())
	}
	for _, u := range []string{"u1", "u2", "u3"} {
		if ok, err := s.Qualified(ctx, "r2", u); err != nil || !ok {
			t.Errorf("Qualified(%s) = %v %v, want true", u, ok, err)
		}
	}
	n, _ := s.rdb.SCard(ctx, s.qualifiedKey("r2")).Result()
	if n != 4 { // three users and the loaded marker: no rebuild token left behind
		t.Errorf("set has %d members, want 4", n)
	}
}

// TestLoadQualifiedConcurrent: many concurrent loads while reservations keep
// arriving; every user ends in the set, whatever the interleaving.
func TestLoadQualifiedConcurrent(t *testing.T) {
	s, _, _ := newStore(t, 10, 1)
	ctx := context.Background()
	book := make([]string, 500)
	for i := range book {
		book[i] = fmt.Sprintf("b%03d", i)
	}
	var runs atomic.Int32
	var wg sync.WaitGroup
	for i := range 20 {
		wg.Add(2)
		go func() {
			defer wg.Done()
			if err := s.LoadQualified(ctx, "r3", fillWith(&runs, book...)); err != nil {
				t.Error(err)
			}
		}()
		go func() { // reservations committed after the book was read
			defer wg.Done()
			if err := s.AddQualified(ctx, "r3", fmt.Sprintf("late%02d", i)); err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	if runs.Load() != 1 {
		t.Errorf("fill ran %d times, want 1 (the lease serialises loads, and loaded sets are not reloaded)", runs.Load())
	}
	for _, u := range append(book, "late00", "late19") {
		if ok, err := s.Qualified(ctx, "r3", u); err != nil || !ok {
			t.Fatalf("Qualified(%s) = %v %v, want true", u, ok, err)
		}
	}
}
