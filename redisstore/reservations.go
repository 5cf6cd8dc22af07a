package redisstore

import (
	"context"
	"fmt"
	"time"

	"github.com/bsm/redislock"
	"github.com/google/uuid"
	"github.com/redis/go-redis/v9"

	"github.com/flashsale/flashsale"
)

// The qualified set of a sale with a reservation phase is the purchase path's
// view of who reserved it (MySQL is the book of record):
//
//	{sale:<id>}:qualified  set: the ids of users who reserved, plus the member
//	                       "!loaded" once it holds every reservation of the book
//	                       of record, plus "!rebuild:<token>" while a rebuild runs
//
// User ids are [A-Za-z0-9_-], so no user is ever mistaken for a marker. The
// "loaded" marker is a member rather than a key of its own so that the set and
// its marker are lost together (a restart, a flush, an eviction): a set without
// the marker is incomplete, and the purchase path rebuilds it before trusting it.
//
// The set only grows. Each reservation adds its user after its MySQL commit, and
// a rebuild adds every user MySQL has, then marks the set loaded; both are
// unions, so any interleaving of reservations and rebuilds (even two rebuilds at
// once, when the rebuild lease expired) leaves every committed reservation in
// the set. A rebuild marks the set loaded only if its own token is still a
// member: if the set was lost while it ran, the members it added before the loss
// are gone too, and it starts over.
const (
	qualifiedLoaded  = "!loaded"
	qualifiedRebuild = "!rebuild:"
)

func (s *Store) qualifiedKey(saleID string) string {
	return s.cfg.Namespace + ":{sale:" + saleID + "}:qualified"
}

// finishRebuildScript marks the set loaded if the rebuild's token survived.
// KEYS qualified; ARGV token loaded. Returns 1 when marked, 0 when the set was
// lost while the rebuild ran.
var finishRebuildScript = redis.NewScript(`
if redis.call('SREM', KEYS[1], ARGV[1]) == 0 then return 0 end
redis.call('SADD', KEYS[1], ARGV[2])
return 1
`)

// Qualified reports whether userID is in the sale's qualified set. It returns
// an error wrapping flashsale.ErrNotLoaded when the set is not loaded (see
// LoadQualified). One round trip.
func (s *Store) Qualified(ctx context.Context, saleID, userID string) (bool, error) {
	found, err := s.rdb.SMIsMember(ctx, s.qualifiedKey(saleID), qualifiedLoaded, userID).Result()
	if err != nil {
		return false, fmt.Errorf("redisstore: qualified: %w", err)
	}
	if !found[0] {
		return false, fmt.Errorf("redisstore: qualified set of sale %s: %w", saleID, flashsale.ErrNotLoaded)
	}
	return found[1], nil
}

// AddQualified adds users to the sale's qualified set. Idempotent. Call it only
// after their reservations are committed in the book of record.
func (s *Store) AddQualified(ctx context.Context, saleID string, userIDs ...string) error {
	if len(userIDs) == 0 {
		return nil
	}
	members := make([]any, len(userIDs))
	for i, u := range userIDs {
		members[i] = u
	}
	if err := s.rdb.SAdd(ctx, s.qualifiedKey(saleID), members...).Err(); err != nil {
		return fmt.Errorf("redisstore: add qualified: %w", err)
	}
	return nil
}

// LoadQualified rebuilds the sale's qualified set with fill unless it is
// loaded, then marks it loaded. fill adds every user of the book of record,
// calling add as many times as it likes. A redislock lease makes one process rebuild
// while the others wait for it (up to 10 s); it is no correctness guarantee (see
// the comment on qualifiedLoaded). It returns nil once the set is loaded.
func (s *Store) LoadQualified(ctx context.Context, saleID string, fill func(ctx context.Context, add func(userIDs ...string) error) error) error {
	key := s.qualifiedKey(saleID)
	loaded := func() (bool, error) {
		ok, err := s.rdb.SIsMember(ctx, key, qualifiedLoaded).Result()
		if err != nil {
			return false, fmt.Errorf("redisstore: %w", err)
		}
		return ok, nil
	}
	lockCtx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	lock, err := s.locker.Obtain(lockCtx, key+":rebuild", 30*time.Second,
		&redislock.Options{RetryStrategy: redislock.LinearBackoff(20 * time.Millisecond)})
	if err != nil {
		// The holder may have finished just as we gave up.
		if ok, lerr := loaded(); lerr == nil && ok {
			return nil
		}
		return fmt.Errorf("redisstore: rebuild lock for the qualified set of sale %s: %w", saleID, err)
	}
	defer lock.Release(context.WithoutCancel(ctx))
	for attempt := 0; attempt < 3; attempt++ {
		if ok, err := loaded(); err != nil || ok {
			return err
		}
		token := qualifiedRebuild + uuid.NewString()
		if err := s.rdb.SAdd(ctx, key, token).Err(); err != nil {
			return fmt.Errorf("redisstore: rebuild qualified set: %w", err)
		}
		added := 0
		err := fill(ctx, func(userIDs ...string) error {
			added += len(userIDs)
			return s.AddQualified(ctx, saleID, userIDs...)
		})
		if err != nil {
			s.rdb.SRem(context.WithoutCancel(ctx), key, token)
			return fmt.Errorf("redisstore: rebuild qualified set of sale %s: %w", saleID, err)
		}
		done, err := finishRebuildScript.Run(ctx, s.rdb, []string{key}, token, qualifiedLoaded).Int()
		if err != nil {
			return fmt.Errorf("redisstore: rebuild qualified set: %w", err)
		}
		if done == 1 {
			s.log.Warn("rebuilt the qualified set from MySQL", "sale", saleID, "users", added)
			return nil
		}
		s.log.Warn("qualified set lost while it was rebuilt; rebuilding again", "sale", saleID)
	}
	return fmt.Errorf("redisstore: qualified set of sale %s keeps being lost: %w", saleID, flashsale.ErrNotLoaded)
}
