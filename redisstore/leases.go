package redisstore

import (
	"context"
	"errors"
	"time"

	"github.com/bsm/redislock"

	"github.com/flashsale/flashsale/service"
)

// Leases are service.Leases on this Redis (bsm/redislock: a key with a random
// token, set NX with a TTL). A lease lives on one primary: a failover may lose
// it, which the lease's users tolerate (see package service).
type Leases struct{ locker *redislock.Client }

// Leases returns the lease store on this Redis.
func (s *Store) Leases() *Leases { return &Leases{locker: redislock.New(s.rdb)} }

// Obtain implements service.Leases.
func (l *Leases) Obtain(ctx context.Context, key string, ttl time.Duration) (service.Lease, error) {
	lock, err := l.locker.Obtain(ctx, key, ttl, nil)
	if errors.Is(err, redislock.ErrNotObtained) {
		return nil, service.ErrNotObtained
	}
	if err != nil {
		return nil, err
	}
	return lease{lock}, nil
}

type lease struct{ lock *redislock.Lock }

// Refresh implements service.Lease: a lock no longer held is
// service.ErrLeaseLost.
func (l lease) Refresh(ctx context.Context, ttl time.Duration) error {
	err := l.lock.Refresh(ctx, ttl, nil)
	if errors.Is(err, redislock.ErrNotObtained) {
		return service.ErrLeaseLost
	}
	return err
}

// Release gives the lease up; one already lost (it ran out, another holder
// may have it) is not an error, and the other holder keeps it.
func (l lease) Release(ctx context.Context) error {
	if err := l.lock.Release(ctx); err != nil && !errors.Is(err, redislock.ErrLockNotHeld) {
		return err
	}
	return nil
}
