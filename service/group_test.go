package service

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"
)

// recorder is a Service that logs its starts and stops; it is ready at once,
// or when ready is closed if that is set.
type recorder struct {
	name     string
	log      *[]string
	mu       *sync.Mutex
	startErr error
	ready    chan struct{}
}

func (r recorder) Start(context.Context) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	*r.log = append(*r.log, "start "+r.name)
	return r.startErr
}

func (r recorder) Started() <-chan struct{} {
	if r.ready != nil {
		return r.ready
	}
	ready := make(chan struct{})
	close(ready)
	return ready
}

func (r recorder) Stop(context.Context) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	*r.log = append(*r.log, "stop "+r.name)
	return nil
}

// steps returns the log so far.
func steps(log *[]string, mu *sync.Mutex) string {
	mu.Lock()
	defer mu.Unlock()
	return fmt.Sprint(*log)
}

// Services start in order and stop in reverse when the context ends; loops
// see their context end at their own stop, after Stopping was closed.
func TestGroupStartsInOrderAndStopsInReverse(t *testing.T) {
	var log []string
	var mu sync.Mutex
	g := &Group{}
	g.Add("a", recorder{"a", &log, &mu, nil, nil})
	loopSawStopping := false
	g.Go("loop", func(ctx context.Context) error {
		<-ctx.Done()
		select {
		case <-g.Stopping():
			loopSawStopping = true
		default:
		}
		mu.Lock()
		log = append(log, "loop ended")
		mu.Unlock()
		return nil
	})
	g.Add("intake", recorder{"intake", &log, &mu, nil, nil})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- g.Run(ctx, time.Second) }()
	waitFor(t, func() bool { mu.Lock(); defer mu.Unlock(); return len(log) == 2 })
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Run = %v, want nil after the context ended", err)
	}
	if want := "[start a start intake stop intake loop ended stop a]"; steps(&log, &mu) != want {
		t.Errorf("steps %v, want %s", log, want)
	}
	if !loopSawStopping {
		t.Error("the loop's context ended before Stopping was closed")
	}
}

// A service starts only once the one before it is ready; when ReadyWait runs
// out, the rest start without waiting; a signal while waiting stops what
// started, and Run returns nil.
func TestGroupWaitsForEachServiceToBeReady(t *testing.T) {
	var log []string
	var mu sync.Mutex
	slow := make(chan struct{})
	g := &Group{}
	g.Add("slow", recorder{"slow", &log, &mu, nil, slow})
	g.Add("next", recorder{"next", &log, &mu, nil, nil})
	done := make(chan error)
	go func() { done <- g.Run(context.Background(), time.Second) }()
	waitFor(t, func() bool { return steps(&log, &mu) == "[start slow]" })
	if Sleep(context.Background(), 20*time.Millisecond); steps(&log, &mu) != "[start slow]" {
		t.Fatalf("steps %s: next started before slow was ready", steps(&log, &mu))
	}
	close(slow)
	waitFor(t, func() bool { return steps(&log, &mu) == "[start slow start next]" })
	g.Fail(errors.New("done"))
	<-done

	log = nil
	g = &Group{ReadyWait: 20 * time.Millisecond}
	g.Add("never", recorder{"never", &log, &mu, nil, make(chan struct{})})
	g.Add("next", recorder{"next", &log, &mu, nil, nil})
	go func() { done <- g.Run(context.Background(), time.Second) }()
	waitFor(t, func() bool { return steps(&log, &mu) == "[start never start next]" })
	g.Fail(errors.New("done"))
	<-done

	log = nil
	g = &Group{}
	g.Add("never", recorder{"never", &log, &mu, nil, make(chan struct{})})
	g.Add("next", recorder{"next", &log, &mu, nil, nil})
	ctx, cancel := context.WithCancel(context.Background())
	go func() { done <- g.Run(ctx, time.Second) }()
	waitFor(t, func() bool { return steps(&log, &mu) == "[start never]" })
	cancel()
	if err := <-done; err != nil {
		t.Errorf("Run = %v, want nil when stopped while starting", err)
	}
	if want := "[start never stop never]"; steps(&log, &mu) != want {
		t.Errorf("steps %s, want %s", steps(&log, &mu), want)
	}
}

// A loop that fails stops the group, which returns the failure; a service
// that does not start stops the group before the rest starts, and only what
// started is stopped.
func TestGroupStopsOnAFailure(t *testing.T) {
	var log []string
	var mu sync.Mutex
	g := &Group{}
	g.Add("a", recorder{"a", &log, &mu, nil, nil})
	g.Go("broken", func(context.Context) error { return errors.New("lost the broker") })
	if err := g.Run(context.Background(), time.Second); err == nil || err.Error() != "lost the broker" {
		t.Errorf("Run = %v, want the loop's failure", err)
	}

	log = nil
	g = &Group{}
	g.Add("a", recorder{"a", &log, &mu, nil, nil})
	g.Add("b", recorder{"b", &log, &mu, errors.New("address in use"), nil})
	g.Add("c", recorder{"c", &log, &mu, nil, nil})
	if err := g.Run(context.Background(), time.Second); err == nil {
		t.Error("Run = nil, want b's start failure")
	}
	if want := "[start a start b stop a]"; steps(&log, &mu) != want {
		t.Errorf("steps %v, want %s", log, want)
	}
}

// A Runner is ready when its function says so, its function's context
// outlives Start's and ends with Stop, and it runs once.
func TestRunner(t *testing.T) {
	var r Runner
	if err := r.Stop(context.Background()); err != nil {
		t.Errorf("Stop before Start = %v, want nil", err)
	}
	started := r.Started() // before Start: the same channel
	proceed, ended := make(chan struct{}), make(chan struct{})
	sctx, cancel := context.WithCancel(context.Background())
	err := r.Go(sctx, func(ctx context.Context, ready func()) {
		<-proceed
		ready()
		ready()
		<-ctx.Done()
		close(ended)
	})
	if err != nil {
		t.Fatal(err)
	}
	cancel() // Start's context: the run goes on
	select {
	case <-started:
		t.Fatal("Started closed before the run was ready")
	case <-time.After(10 * time.Millisecond):
	}
	close(proceed)
	<-started
	select {
	case <-ended:
		t.Fatal("the run's context ended with Start's")
	default:
	}
	if err := r.Stop(context.Background()); err != nil {
		t.Fatal(err)
	}
	select {
	case <-ended:
	default:
		t.Fatal("Stop returned before the run did")
	}
	if err := r.Go(context.Background(), func(context.Context, func()) {}); err == nil {
		t.Error("a second Go succeeded")
	}
}
