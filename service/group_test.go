package service

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"
)

// recorder is a Service that logs its starts and stops.
type recorder struct {
	name     string
	log      *[]string
	mu       *sync.Mutex
	startErr error
}

func (r recorder) Start(context.Context) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	*r.log = append(*r.log, "start "+r.name)
	return r.startErr
}

func (r recorder) Stop(context.Context) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	*r.log = append(*r.log, "stop "+r.name)
	return nil
}

// Services start in order and stop in reverse when the context ends; loops
// see their context end at their own stop, after Stopping was closed.
func TestGroupStartsInOrderAndStopsInReverse(t *testing.T) {
	var log []string
	var mu sync.Mutex
	g := &Group{}
	g.Add("a", recorder{"a", &log, &mu, nil})
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
	g.Add("intake", recorder{"intake", &log, &mu, nil})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- g.Run(ctx, time.Second) }()
	waitFor(t, func() bool { mu.Lock(); defer mu.Unlock(); return len(log) == 2 })
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Run = %v, want nil after the context ended", err)
	}
	if want := "[start a start intake stop intake loop ended stop a]"; fmt.Sprint(log) != want {
		t.Errorf("steps %v, want %s", log, want)
	}
	if !loopSawStopping {
		t.Error("the loop's context ended before Stopping was closed")
	}
}

// A loop that fails stops the group, which returns the failure; a service
// that does not start stops the group before the rest starts, and only what
// started is stopped.
func TestGroupStopsOnAFailure(t *testing.T) {
	var log []string
	var mu sync.Mutex
	g := &Group{}
	g.Add("a", recorder{"a", &log, &mu, nil})
	g.Go("broken", func(context.Context) error { return errors.New("lost the broker") })
	if err := g.Run(context.Background(), time.Second); err == nil || err.Error() != "lost the broker" {
		t.Errorf("Run = %v, want the loop's failure", err)
	}

	log = nil
	g = &Group{}
	g.Add("a", recorder{"a", &log, &mu, nil})
	g.Add("b", recorder{"b", &log, &mu, errors.New("address in use")})
	g.Add("c", recorder{"c", &log, &mu, nil})
	if err := g.Run(context.Background(), time.Second); err == nil {
		t.Error("Run = nil, want b's start failure")
	}
	if want := "[start a start b stop a]"; fmt.Sprint(log) != want {
		t.Errorf("steps %v, want %s", log, want)
	}
}
