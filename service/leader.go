package service

import (
	"context"
	"errors"
	"log/slog"
	"time"
)

// ErrNotObtained: the lease is held by another process.
var ErrNotObtained = errors.New("service: lease held elsewhere")

// ErrLeaseLost: a refresh found the lease ended or held by another holder.
// A refresh failing with any other error (the store not answering) leaves
// the lease held until its time runs out (see Leader).
var ErrLeaseLost = errors.New("service: lease lost")

// Leases hands out named leases (the Redis adapter implements it).
type Leases interface {
	// Obtain takes key for ttl, or fails with ErrNotObtained when another
	// holder has it.
	Obtain(ctx context.Context, key string, ttl time.Duration) (Lease, error)
}

// Lease is a held lease.
type Lease interface {
	// Refresh extends the lease by ttl. An error wrapping ErrLeaseLost means
	// it is lost; any other, that the store could not be asked.
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
// with a context that ends when ctx does or the lease is lost; when job
// returns, the lease is released and, after TTL/3, competed for again. Run
// returns when ctx ends.
//
// The lease is lost when a refresh finds it ended or taken, or when it could
// not be refreshed before its time ran out: a lease store that does not
// answer for a moment (a MySQL blip of a few seconds) does not stop the job,
// which another holder could not take before then anyway. (Dropping it at the
// first failed refresh left the expiry sweeper idle for a whole TTL after a
// 5 s MySQL cut: its own ended-but-not-expired row kept it from taking the
// lease again, and the soak saw orders expired over 60 s late.)
func (l Leader) Run(ctx context.Context, job func(ctx context.Context)) {
	log := l.Log
	if log == nil {
		log = slog.Default()
	}
	every := l.TTL / 3
	for ctx.Err() == nil {
		asked := time.Now()
		lease, err := l.Leases.Obtain(ctx, l.Key, l.TTL)
		if err != nil {
			if !errors.Is(err, ErrNotObtained) && ctx.Err() == nil {
				log.Warn("cannot reach the lease store", "lease", l.Key, "err", err)
			}
			Sleep(ctx, every)
			continue
		}
		l.hold(ctx, lease, asked.Add(l.TTL), job, log)
		Sleep(ctx, every)
	}
}

// hold runs job while refreshing lease, held until at least until by this
// process's clock (asked before the store set it), then releases it.
func (l Leader) hold(ctx context.Context, lease Lease, until time.Time, job func(ctx context.Context), log *slog.Logger) {
	jctx, lost := context.WithCancel(ctx)
	defer lost()
	done := make(chan struct{})
	go func() {
		defer close(done)
		wait := l.TTL / 3
		for Sleep(jctx, wait) {
			asked := time.Now()
			err := lease.Refresh(jctx, l.TTL)
			if err == nil {
				until, wait = asked.Add(l.TTL), l.TTL/3
				continue
			}
			// Not answered: try again soon while the lease surely lasts (a
			// tenth of the TTL kept back for the store's own clock).
			wait = min(time.Second, l.TTL/10)
			if !errors.Is(err, ErrLeaseLost) && time.Now().Add(wait).Before(until.Add(-l.TTL/10)) {
				log.Debug("cannot refresh a lease; it still lasts", "lease", l.Key, "err", err)
				continue
			}
			if jctx.Err() == nil {
				log.Warn("lease lost", "lease", l.Key, "err", err)
			}
			lost()
			return
		}
	}()
	job(jctx)
	lost()
	<-done
	if err := lease.Release(context.WithoutCancel(ctx)); err != nil && ctx.Err() == nil {
		log.Debug("releasing a lease failed; it runs out by itself", "lease", l.Key, "err", err)
	}
}
