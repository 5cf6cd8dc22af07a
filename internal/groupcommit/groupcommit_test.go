package groupcommit

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/flashsale/flashsale/internal/testenv"
)

// While one batch runs, the calls that arrive wait and then run together as
// the next batch, each getting its own result; an idle call runs at once.
func TestCallsArrivingDuringARunShareTheNextBatch(t *testing.T) {
	release := make(chan struct{})
	var mu sync.Mutex
	var batches [][]int
	g := &Group[int, int]{Run: func(_ context.Context, ins []int) ([]Result[int], error) {
		mu.Lock()
		batches = append(batches, append([]int(nil), ins...))
		first := len(batches) == 1
		mu.Unlock()
		if first {
			<-release
		}
		out := make([]Result[int], len(ins))
		for i, in := range ins {
			out[i] = Result[int]{Out: in * 10}
		}
		return out, nil
	}}
	ctx := context.Background()
	first := make(chan int)
	go func() { v, _ := g.Do(ctx, 1); first <- v }()
	testenv.Eventually(t, 5*time.Second, "the batch state", func() bool { mu.Lock(); defer mu.Unlock(); return len(batches) == 1 })
	var wg sync.WaitGroup
	got := make([]int, 5)
	for i := range 5 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			v, err := g.Do(ctx, i+2)
			if err != nil {
				t.Error(err)
			}
			got[i] = v
		}()
	}
	testenv.Eventually(t, 5*time.Second, "the batch state", func() bool { g.mu.Lock(); defer g.mu.Unlock(); return len(g.queue) == 5 })
	close(release)
	wg.Wait()
	if v := <-first; v != 10 {
		t.Errorf("the first call got %d, want 10", v)
	}
	for i, v := range got {
		if v != (i+2)*10 {
			t.Errorf("call %d got %d, want %d", i+2, v, (i+2)*10)
		}
	}
	if len(batches) != 2 || len(batches[0]) != 1 || len(batches[1]) != 5 {
		t.Errorf("batches %v, want [1] then the five that arrived meanwhile", batches)
	}
	if v, err := g.Do(ctx, 7); v != 70 || err != nil || len(batches) != 3 {
		t.Errorf("an idle call: %d, %v after %d batches; want 70 in a third batch", v, err, len(batches))
	}
}

// A batch's error reaches each of its callers; a per-input error only its
// own; Max bounds a batch.
func TestErrorsAndMax(t *testing.T) {
	boom := errors.New("boom")
	odd := errors.New("odd")
	release := make(chan struct{})
	var sizes []int
	g := &Group[int, int]{Max: 2, Run: func(_ context.Context, ins []int) ([]Result[int], error) {
		sizes = append(sizes, len(ins))
		if ins[0] == 0 {
			<-release
			return nil, boom
		}
		out := make([]Result[int], len(ins))
		for i, in := range ins {
			if in%2 == 1 {
				out[i].Err = odd
			}
		}
		return out, nil
	}}
	ctx := context.Background()
	errs := make(chan error, 1)
	go func() { _, err := g.Do(ctx, 0); errs <- err }()
	testenv.Eventually(t, 5*time.Second, "the batch state", func() bool { g.mu.Lock(); defer g.mu.Unlock(); return g.running && len(g.queue) == 0 })
	results := make([]error, 4)
	var wg sync.WaitGroup
	for i := range 4 {
		wg.Add(1)
		go func() { defer wg.Done(); _, results[i] = g.Do(ctx, i+1) }()
	}
	testenv.Eventually(t, 5*time.Second, "the batch state", func() bool { g.mu.Lock(); defer g.mu.Unlock(); return len(g.queue) == 4 })
	close(release)
	wg.Wait()
	if err := <-errs; !errors.Is(err, boom) {
		t.Errorf("the failed batch's caller got %v, want boom", err)
	}
	for i, err := range results {
		if want := map[bool]error{true: odd, false: nil}[(i+1)%2 == 1]; !errors.Is(err, want) {
			t.Errorf("input %d: %v, want %v", i+1, err, want)
		}
	}
	if len(sizes) != 3 || sizes[1] != 2 || sizes[2] != 2 {
		t.Errorf("batch sizes %v, want 1 then 2 and 2 (Max 2)", sizes)
	}
}

// A caller whose context ended before its batch ran is left out of it; the
// batch runs with the earliest deadline of its callers, uncut by their
// cancellation.
func TestCancelledCallersAreLeftOutAndTheEarliestDeadlineHolds(t *testing.T) {
	release := make(chan struct{})
	var ran [][]int
	var deadlines []time.Time
	g := &Group[int, int]{Run: func(ctx context.Context, ins []int) ([]Result[int], error) {
		ran = append(ran, ins)
		d, _ := ctx.Deadline()
		deadlines = append(deadlines, d)
		if ins[0] == 0 {
			<-release
		}
		return make([]Result[int], len(ins)), nil
	}}
	go g.Do(context.Background(), 0)
	testenv.Eventually(t, 5*time.Second, "the batch state", func() bool { g.mu.Lock(); defer g.mu.Unlock(); return g.running && len(g.queue) == 0 })
	gone, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { _, err := g.Do(gone, 1); done <- err }()
	soon := time.Now().Add(time.Hour)
	early, cancelEarly := context.WithDeadline(context.Background(), soon)
	defer cancelEarly()
	late, cancelLate := context.WithDeadline(context.Background(), soon.Add(time.Hour))
	defer cancelLate()
	var wg sync.WaitGroup
	for i, ctx := range []context.Context{late, early} {
		wg.Add(1)
		go func() { defer wg.Done(); g.Do(ctx, i+2) }()
		testenv.Eventually(t, 5*time.Second, "the batch state", func() bool { g.mu.Lock(); defer g.mu.Unlock(); return len(g.queue) == i+2 })
	}
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Errorf("the cancelled caller got %v, want context.Canceled", err)
	}
	close(release)
	wg.Wait()
	if len(ran) != 2 || len(ran[1]) != 2 || ran[1][0] != 2 || ran[1][1] != 3 {
		t.Errorf("batches %v, want the cancelled call left out of the second", ran)
	}
	if !deadlines[1].Equal(soon) {
		t.Errorf("the second batch's deadline %v, want the earliest caller's %v", deadlines[1], soon)
	}
}
