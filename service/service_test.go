package service

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// memLeases is an in-memory lease store: one holder per key until its TTL runs
// out; lose makes every refresh fail (the store lost the key).
type memLeases struct {
	mu     sync.Mutex
	holder map[string]*memLease
	lose   atomic.Bool
}

type memLease struct {
	s       *memLeases
	key     string
	expires time.Time
}

func (s *memLeases) Obtain(_ context.Context, key string, ttl time.Duration) (Lease, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if h := s.holder[key]; h != nil && time.Now().Before(h.expires) {
		return nil, ErrNotObtained
	}
	l := &memLease{s: s, key: key, expires: time.Now().Add(ttl)}
	s.holder[key] = l
	return l, nil
}

func (l *memLease) Refresh(_ context.Context, ttl time.Duration) error {
	l.s.mu.Lock()
	defer l.s.mu.Unlock()
	if l.s.lose.Load() || l.s.holder[l.key] != l {
		return errors.New("lease lost")
	}
	l.expires = time.Now().Add(ttl)
	return nil
}

func (l *memLease) Release(context.Context) error {
	l.s.mu.Lock()
	defer l.s.mu.Unlock()
	if l.s.holder[l.key] == l {
		delete(l.s.holder, l.key)
	}
	return nil
}

// Two leaders of one key: one runs the job at a time; when its lease is lost,
// its job's context ends and the other takes over; Run returns with ctx.
func TestLeaderRunsTheJobInOneProcessAtATime(t *testing.T) {
	store := &memLeases{holder: map[string]*memLease{}}
	ctx, cancel := context.WithCancel(context.Background())
	var running, maxRunning, starts atomic.Int32
	job := func(ctx context.Context) {
		starts.Add(1)
		n := running.Add(1)
		for {
			m := maxRunning.Load()
			if n <= m || maxRunning.CompareAndSwap(m, n) {
				break
			}
		}
		<-ctx.Done()
		running.Add(-1)
	}
	var wg sync.WaitGroup
	for i := 0; i < 2; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			Leader{Leases: store, Key: "k", TTL: 30 * time.Millisecond}.Run(ctx, job)
		}()
	}
	waitFor(t, func() bool { return starts.Load() == 1 })
	store.lose.Store(true) // the holder's next refresh fails; its job must end
	waitFor(t, func() bool { return running.Load() == 0 })
	store.lose.Store(false)
	waitFor(t, func() bool { return starts.Load() >= 2 && running.Load() == 1 })
	cancel()
	wg.Wait()
	if maxRunning.Load() != 1 {
		t.Errorf("%d jobs ran at once, want 1", maxRunning.Load())
	}
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met within 5 s")
		}
		Sleep(context.Background(), time.Millisecond)
	}
}

func TestSleepEndsWithItsContext(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if Sleep(ctx, time.Hour) {
		t.Fatal("Sleep of an ended context reported the whole wait")
	}
	if !Sleep(context.Background(), time.Millisecond) {
		t.Fatal("Sleep of 1 ms did not report the whole wait")
	}
}
