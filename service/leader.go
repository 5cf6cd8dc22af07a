package service

import (
	"context"
	"errors"
	"log/slog"
	"time"
)

// ErrNotObtained: the lease is held by another process.
var ErrNotObtained = errors.New("service: lease held elsewhere")

// Leases hands out named leases (the Redis adapter implements it).
type Leases interface {
	// Obtain takes key for ttl, or fails with ErrNotObtained when another
	// holder has it.
	Obtain(ctx context.Context, key string, ttl time.Duration) (Lease, error)
}

// Lease is a held lease.
type Lease interface {
	// Refresh extends the lease by ttl; an error means it is lost.
	Refresh(ctx context.Context, ttl time.Duration) error
	// Release gives the lease up; a lease already lost is not an error (and
	// stays with whoever holds it now).
	Release(ctx context.Context) error
}

// Leader runs a job while it holds a lease: the one policy of every singleton.
type Leader struct {
	// Leases is where the lease lives. Required.
	Leases Leases
	// Key names the lease. Required.
	Key string
	// TTL is how long the lease lasts unrefreshed: the longest a dead holder
	// keeps the job from others. It is refreshed every TTL/3. Required.
	TTL time.Duration
	// Log receives lease losses and lease-store errors; default slog.Default().
	Log *slog.Logger
}

// Run competes for the lease until ctx ends. Whenever it holds it, it runs job
// with a context that ends when ctx does or the lease is lost (a refresh
// failed); when job returns, the lease is released and, after TTL/3, competed
// for again. Run returns when ctx ends.
func (l Leader) Run(ctx context.Context, job func(ctx context.Context)) {
	log := l.Log
	if log == nil {
		log = slog.Default()
	}
	every := l.TTL / 3
	for ctx.Err() == nil {
		lease, err := l.Leases.Obtain(ctx, l.Key, l.TTL)
		if err != nil {
			if !errors.Is(err, ErrNotObtained) && ctx.Err() == nil {
				log.Warn("cannot reach the lease store", "lease", l.Key, "err", err)
			}
			Sleep(ctx, every)
			continue
		}
		l.hold(ctx, lease, job, log)
		Sleep(ctx, every)
	}
}

// hold runs job while refreshing lease, then releases it.
func (l Leader) hold(ctx context.Context, lease Lease, job func(ctx context.Context), log *slog.Logger) {
	jctx, lost := context.WithCancel(ctx)
	defer lost()
	done := make(chan struct{})
	go func() {
		defer close(done)
		for Sleep(jctx, l.TTL/3) {
			if err := lease.Refresh(jctx, l.TTL); err != nil {
				if jctx.Err() == nil {
					log.Warn("lease lost", "lease", l.Key, "err", err)
				}
				lost()
				return
			}
		}
	}()
	job(jctx)
	lost()
	<-done
	if err := lease.Release(context.WithoutCancel(ctx)); err != nil && ctx.Err() == nil {
		log.Debug("releasing a lease failed; it runs out by itself", "lease", l.Key, "err", err)
	}
}
