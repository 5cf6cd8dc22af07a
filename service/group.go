package service

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"time"
)

// Service is a long-lived part of a process: one start/stop shape for every
// background component (a consumer, a lease-holding job, a listener).
type Service interface {
	// Start starts the service and returns once it runs; an error means it
	// did not start (nothing of it is left running).
	Start(ctx context.Context) error
	// Stop stops the service and returns once it has stopped, or when ctx
	// (its grace period) ends first.
	Stop(ctx context.Context) error
}

// Group starts a process's services in the order they were added and stops
// them in reverse: add intake (the HTTP listener) last, so that it starts once
// everything behind it runs and stops first, and what it admitted during
// shutdown is still processed (or handed back to the queue). A service that
// fails while running stops the whole group.
type Group struct {
	// Log receives starts, stops and failures; default slog.Default().
	Log *slog.Logger

	services []named
	failed   chan error
	stopping chan struct{}
	once     sync.Once
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
	})
}

// Add appends a service.
func (g *Group) Add(name string, s Service) {
	g.init()
	g.services = append(g.services, named{name, s})
}

// Go adds run as a service (see Loop).
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

// Run starts every service, in order, then waits until ctx ends or one fails,
// and stops them in reverse order, all within grace. It returns why it
// stopped: nil when ctx ended, else the failure.
func (g *Group) Run(ctx context.Context, grace time.Duration) error {
	g.init()
	var runErr error
	started := 0
	for _, n := range g.services {
		if err := n.s.Start(ctx); err != nil {
			runErr = fmt.Errorf("%s: %w", n.name, err)
			break
		}
		started++
	}
	if runErr == nil {
		select {
		case <-ctx.Done():
			g.Log.Info("shutting down")
		case runErr = <-g.failed:
		}
	}
	close(g.stopping)
	gctx, cancel := context.WithTimeout(context.Background(), grace)
	defer cancel()
	for i := started - 1; i >= 0; i-- {
		n := g.services[i]
		if err := n.s.Stop(gctx); err != nil {
			g.Log.Warn("a service did not stop cleanly", "service", n.name, "err", err)
		}
	}
	if gctx.Err() != nil {
		g.Log.Warn("in-flight work did not finish within the grace period; the broker requeues it")
	}
	return runErr
}

// Loop is a Service that runs Run on a goroutine of its own until Stop
// cancels Run's context; Run returning an error before that calls Fail.
type Loop struct {
	Run  func(ctx context.Context) error
	Fail func(error) // optional

	cancel  context.CancelFunc
	done    chan struct{}
	started chan struct{}
}

// Start starts Run. The loop's context outlives ctx: only Stop ends it.
func (l *Loop) Start(ctx context.Context) error {
	rctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	l.cancel, l.done, l.started = cancel, make(chan struct{}), make(chan struct{})
	go func() {
		defer close(l.done)
		close(l.started)
		if err := l.Run(rctx); err != nil && rctx.Err() == nil && l.Fail != nil {
			l.Fail(err)
		}
	}()
	return nil
}

// Started is closed once Run runs.
func (l *Loop) Started() <-chan struct{} { return l.started }

// Stop cancels Run's context and waits for it to return, or for ctx to end.
func (l *Loop) Stop(ctx context.Context) error {
	l.cancel()
	select {
	case <-l.done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// HTTP is a Service serving an http.Server on its address: Start returns once
// it listens; Stop shuts it down gracefully. An error of Serve calls Fail.
type HTTP struct {
	Server *http.Server
	Fail   func(error) // optional
	Log    *slog.Logger

	done chan struct{}
}

// Start listens on Server.Addr and serves.
func (h *HTTP) Start(context.Context) error {
	ln, err := net.Listen("tcp", h.Server.Addr)
	if err != nil {
		return err
	}
	if h.Log != nil {
		h.Log.Info("listening", "addr", h.Server.Addr)
	}
	h.done = make(chan struct{})
	go func() {
		defer close(h.done)
		if err := h.Server.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) && h.Fail != nil {
			h.Fail(err)
		}
	}()
	return nil
}

// Stop stops accepting and waits for the requests in flight, within ctx.
func (h *HTTP) Stop(ctx context.Context) error {
	err := h.Server.Shutdown(ctx)
	<-h.done
	return err
}
