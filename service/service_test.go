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
// out; lose makes every refresh fail with ErrLeaseLost (the store lost the
// key), away every call fail otherwise (the store not answering).
type memLeases struct {
	mu     sync.Mutex
	holder map[string]*memLease
	lose   atomic.Bool
	away   atomic.Bool
}

type memLease struct {
	s       *memLeases
	key     string
	expires time.Time
}

func (s *memLeases) Obtain(_ context.Context, key string, ttl time.Duration) (Lease, error) {
	if s.away.Load() {
		return nil, errors.New("the lease store does not answer")
	}
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
	if l.s.away.Load() {
		return errors.New("the lease store does not answer")
	}
	if l.s.lose.Load() || l.s.holder[l.key] != l {
		return ErrLeaseLost
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

// A lease store that does not answer for less than the lease's time does not
// stop the job (the lease still lasts; nobody else could take it); one that
// stays away does, before the lease's time has run out.
func TestLeaderKeepsTheJobThroughAStoreBlip(t *testing.T) {
	store := &memLeases{holder: map[string]*memLease{}}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var running, starts atomic.Int32
	var ended atomic.Int64 // when the job's context ended, unix ns
	go Leader{Leases: store, Key: "k", TTL: 2 * time.Second}.Run(ctx, func(ctx context.Context) {
		starts.Add(1)
		running.Add(1)
		<-ctx.Done()
		ended.Store(time.Now().UnixNano())
		running.Add(-1)
	})
	waitFor(t, func() bool { return running.Load() == 1 })
	store.away.Store(true)
	Sleep(context.Background(), 300*time.Millisecond) // the blip: refreshes fail meanwhile
	store.away.Store(false)
	Sleep(context.Background(), 2200*time.Millisecond) // more than the TTL: refreshed again since
	if starts.Load() != 1 || running.Load() != 1 {
		t.Fatalf("after a 300 ms blip of the lease store: %d starts, %d running; want the job kept (1, 1)", starts.Load(), running.Load())
	}
	away := time.Now()
	store.away.Store(true)
	waitFor(t, func() bool { return running.Load() == 0 })
	if took := time.Duration(ended.Load() - away.UnixNano()); took > 2*time.Second {
		t.Errorf("with the store away, the job ended %s after, want within the lease's 2 s", took)
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
