package service

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"
)

// Group starts a process's services in the order they were added, each once
// the one before it is ready, and stops them in reverse: add intake (the HTTP
// listener) last, so that it starts once everything behind it is ready and
// stops first, and what it admitted during shutdown is still processed (or
// handed back to the queue). A service that fails while running stops the
// whole group.
type Group struct {
	// Log receives starts, stops and failures; default slog.Default().
	Log *slog.Logger
	// ReadyWait bounds how long Run waits, in all, for services to be ready
	// before it starts the next one; default 10 s (see Start).
	ReadyWait time.Duration

	services []named
	started  int // how many of services Start started
	failed   chan error
	stopping chan struct{}
	once     sync.Once
	stopOnce sync.Once
}

type named struct {
	name string
	s    Service
}

func (g *Group) init() {
	g.once.Do(func() {
		g.failed = make(chan error, 1)
		g.stopping = make(chan struct{})
		if g.Log == nil {
			g.Log = slog.Default()
		}
		if g.ReadyWait == 0 {
			g.ReadyWait = 10 * time.Second
		}
	})
}

// Add appends a service.
func (g *Group) Add(name string, s Service) {
	g.init()
	g.services = append(g.services, named{name, s})
}

// Go adds run as a service (see Loop) whose failure stops the group.
func (g *Group) Go(name string, run func(ctx context.Context) error) {
	g.Add(name, &Loop{Run: run, Fail: g.Fail})
}

// Fail stops the group because a service failed while running.
func (g *Group) Fail(err error) {
	g.init()
	select {
	case g.failed <- err:
	default: // the group is stopping already
	}
}

// Stopping is closed when the group begins to stop: work that waits (a retry
// backoff) may hand back what it holds instead of waiting.
func (g *Group) Stopping() <-chan struct{} {
	g.init()
	return g.stopping
}

// Start starts the services in order, waiting for each to be ready (its
// Started closed) before it starts the next, until ctx's deadline. Once the
// deadline passed, it logs which service is not ready and starts the rest
// without waiting: a service that cannot get ready yet (its broker away)
// keeps trying in the background, as it does after an outage later on. Start
// returns the first start error, a failure reported (Fail) while it waited,
// or ctx's error when ctx was cancelled; Stop then stops what started.
func (g *Group) Start(ctx context.Context) error {
	g.init()
	wait := true
	for _, n := range g.services[g.started:] {
		if err := n.s.Start(ctx); err != nil {
			return fmt.Errorf("%s: %w", n.name, err)
		}
		g.started++
		if !wait {
			continue
		}
		select {
		case <-n.s.Started():
		case err := <-g.failed:
			return err
		case <-ctx.Done():
			if !errors.Is(ctx.Err(), context.DeadlineExceeded) {
				return ctx.Err()
			}
			g.Log.Warn("a service is not ready yet; starting the rest without waiting", "service", n.name)
			wait = false
		}
	}
	return nil
}

// Stop stops what Start started, in reverse order, within ctx, after closing
// Stopping. A service that did not stop cleanly is logged.
func (g *Group) Stop(ctx context.Context) {
	g.init()
	g.stopOnce.Do(func() { close(g.stopping) })
	for i := g.started - 1; i >= 0; i-- {
		n := g.services[i]
		if err := n.s.Stop(ctx); err != nil {
			g.Log.Warn("a service did not stop cleanly", "service", n.name, "err", err)
		}
	}
	g.started = 0
}

// Run starts every service (Start, bounded by ReadyWait), then waits until
// ctx ends or one fails, and stops them in reverse order, all within grace.
// It returns why it stopped: nil when ctx ended, else the failure.
func (g *Group) Run(ctx context.Context, grace time.Duration) error {
	g.init()
	sctx, cancel := context.WithTimeout(ctx, g.ReadyWait)
	err := g.Start(sctx)
	cancel()
	if err == nil || (ctx.Err() != nil && errors.Is(err, ctx.Err())) {
		err = nil
		select {
		case <-ctx.Done():
			g.Log.Info("shutting down")
		case err = <-g.failed:
		}
	}
	gctx, cancel := context.WithTimeout(context.Background(), grace)
	defer cancel()
	g.Stop(gctx)
	if gctx.Err() != nil {
		g.Log.Warn("in-flight work did not finish within the grace period; the broker requeues it")
	}
	return err
}
