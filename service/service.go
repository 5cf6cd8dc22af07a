// Package service holds what every long-lived component of flashsale shares:
// one start/stop shape (Service) and the Group that runs a process's services;
// a cancellable sleep (Sleep); and leadership (Leader): running a singleton
// job (a shard's outbox relay, the expiry sweeper, the reconciler) in exactly
// one process at a time, as far as a lease can promise.
//
// # The start/stop shape
//
// Every background component of a process (a consumer, a publisher, a
// lease-holding job, a listener) is a Service, in three calls:
//
//   - Start starts it and returns without waiting for it to be ready. An
//     error means it did not start, and nothing of it runs. ctx bounds the
//     start only: the service runs until Stop, however ctx ends.
//   - Started is closed once it is ready: a listener bound, a consumer
//     connected and consuming, a publisher connected, a lease job competing
//     for its lease. A service that cannot get ready (its broker is away)
//     keeps trying in the background, and Started stays open meanwhile.
//   - Stop stops it and returns once it stopped, with its in-flight work
//     finished or handed back, or when ctx (the grace period) ends first.
//     Stop of a service that was never started returns at once.
//
// Construction starts nothing: a constructor validates its Config and
// returns; only Start starts goroutines or opens connections. A component
// that runs one blocking loop embeds Runner, which provides Started and Stop,
// and implements Start as a call to Runner.Go. Each runs once: it is not
// started again after Stop.
//
// A Group starts a process's services in order, each once the one before it
// is ready, and stops them in reverse (see Group).
//
// # Leadership
//
// A lease is no fencing token: two holders may overlap for a moment (a paused
// process whose lease ran out, a failover of the lease store). Every job run
// under one is idempotent, so an overlap costs duplicate work, never
// correctness.
package service

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"time"

	"golang.org/x/net/netutil"
)

// Service is a long-lived part of a process (see the package doc).
type Service interface {
	// Start starts the service; an error means it did not start.
	Start(ctx context.Context) error
	// Started is closed once the service is ready.
	Started() <-chan struct{}
	// Stop stops the service and returns once it has stopped, or when ctx
	// ends first.
	Stop(ctx context.Context) error
}

// Sleep waits d, or less if ctx ends first; it reports whether the whole d
// passed.
func Sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

// latch is a channel closed at most once, made on first use (Started may be
// called before Start).
type latch struct {
	mu     sync.Mutex
	ch     chan struct{}
	closed bool
}

func (l *latch) wait() <-chan struct{} {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.chLocked()
}

func (l *latch) open() {
	l.mu.Lock()
	defer l.mu.Unlock()
	if !l.closed {
		l.closed = true
		close(l.chLocked())
	}
}

func (l *latch) chLocked() chan struct{} {
	if l.ch == nil {
		l.ch = make(chan struct{})
	}
	return l.ch
}

// Runner is the start/stop state of a Service that runs one blocking
// function on a goroutine of its own. The zero Runner is ready to use; embed
// it and implement Start as a call to Go.
type Runner struct {
	ready latch

	mu     sync.Mutex
	cancel context.CancelFunc
	done   chan struct{} // closed when run returned; nil before Go
}

// Go runs run on a goroutine of its own, with a context that only Stop ends
// (it outlives ctx). run calls ready once the service is ready (further calls
// do nothing) and returns when its context ends. Go fails if the Runner ran
// already.
func (r *Runner) Go(ctx context.Context, run func(ctx context.Context, ready func())) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.done != nil {
		return errors.New("service: started twice")
	}
	rctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	done := make(chan struct{})
	r.cancel, r.done = cancel, done
	go func() {
		defer close(done)
		run(rctx, r.ready.open)
	}()
	return nil
}

// Started is closed once run called ready.
func (r *Runner) Started() <-chan struct{} { return r.ready.wait() }

// Stop ends run's context and waits for run to return, or for ctx to end.
func (r *Runner) Stop(ctx context.Context) error {
	r.mu.Lock()
	cancel, done := r.cancel, r.done
	r.mu.Unlock()
	if done == nil {
		return nil // never started
	}
	cancel()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Loop is a Service that runs Run on a goroutine of its own until Stop ends
// Run's context; it is ready as soon as Run runs. Run returning an error
// before Stop calls Fail.
type Loop struct {
	Run  func(ctx context.Context) error
	Fail func(error) // optional
	Runner
}

// Start starts Run.
func (l *Loop) Start(ctx context.Context) error {
	return l.Go(ctx, func(ctx context.Context, ready func()) {
		ready()
		if err := l.Run(ctx); err != nil && ctx.Err() == nil && l.Fail != nil {
			l.Fail(err)
		}
	})
}

// HTTP is a Service serving an http.Server on its address: Start fails when
// the address cannot be bound and is ready once it is; Stop shuts the server
// down gracefully. An error of Serve calls Fail.
type HTTP struct {
	Server *http.Server
	Fail   func(error) // optional
	Log    *slog.Logger
	// MaxConns, when > 0, caps the connections open at once
	// (netutil.LimitListener): past it a new connection is not accepted until
	// one closes, and waits in the kernel's accept queue (its client sees a
	// connect that hangs, then a refusal or a time-out once that queue is
	// full), so the memory held by connections stays bounded. Idle keep-alive
	// connections count until Server.IdleTimeout closes them.
	MaxConns int

	ready latch
	done  chan struct{}
}

// Start listens on Server.Addr and serves.
func (h *HTTP) Start(context.Context) error {
	ln, err := net.Listen("tcp", h.Server.Addr)
	if err != nil {
		return err
	}
	if h.MaxConns > 0 {
		ln = netutil.LimitListener(ln, h.MaxConns)
	}
	if h.Log != nil {
		h.Log.Info("listening", "addr", h.Server.Addr, "max_conns", h.MaxConns)
	}
	h.done = make(chan struct{})
	go func() {
		defer close(h.done)
		if err := h.Server.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) && h.Fail != nil {
			h.Fail(err)
		}
	}()
	h.ready.open()
	return nil
}

// Started is closed once the address is bound.
func (h *HTTP) Started() <-chan struct{} { return h.ready.wait() }

// Stop stops accepting and waits for the requests in flight, within ctx.
func (h *HTTP) Stop(ctx context.Context) error {
	if h.done == nil {
		return nil // never started
	}
	err := h.Server.Shutdown(ctx)
	<-h.done
	return err
}
