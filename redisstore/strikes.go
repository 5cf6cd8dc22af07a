package redisstore

import (
	"context"
	"fmt"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/flashsale/flashsale"
)

// Strikes counts, per user, the orders that expired unpaid ("tag users who
// order and never pay"): a sorted set per user of order ids scored by the
// moment each expired (its pay_by, in ms). An expiry is recorded once its
// transition committed in MySQL; a purchase reads the set with one command.
//
// MySQL stays the book of record of expired orders; this set is only the
// cheap view the purchase path reads. If Redis loses it (flush, failover
// without persistence), the strikes are lost and the users concerned may buy
// again: the rule fails open and is not rebuilt, since a purchase must never
// cost a MySQL query. Recording an order twice (a redelivered expiry) counts
// it once.
type Strikes struct {
	rdb    redis.UniversalClient
	ns     string
	limit  int
	window time.Duration
}

// Strikes returns the strike counter of this store's namespace: a user with
// limit expiries within window is blocked. limit 0 disables it (Record and
// Blocked do nothing).
func (s *Store) Strikes(limit int, window time.Duration) *Strikes {
	return &Strikes{rdb: s.rdb, ns: s.cfg.Namespace, limit: limit, window: window}
}

func (k *Strikes) key(userID string) string { return k.ns + ":strikes:{" + userID + "}" }

// Record counts the order as its user's expired unpaid at at, and forgets
// the user's expiries that left the window.
func (k *Strikes) Record(ctx context.Context, ref flashsale.OrderRef, at time.Time) error {
	if k.limit <= 0 {
		return nil
	}
	key := k.key(ref.User)
	_, err := k.rdb.TxPipelined(ctx, func(p redis.Pipeliner) error {
		p.ZAdd(ctx, key, redis.Z{Score: float64(at.UnixMilli()), Member: ref.Order})
		p.ZRemRangeByScore(ctx, key, "-inf", "("+strconv.FormatInt(time.Now().Add(-k.window).UnixMilli(), 10))
		p.PExpire(ctx, key, k.window+time.Minute)
		return nil
	})
	if err != nil {
		return fmt.Errorf("redisstore: record strike: %w", err)
	}
	return nil
}

// Blocked reports whether userID has limit or more expiries within the window
// ending at now, and if so until when (the moment enough of them have left the
// window).
func (k *Strikes) Blocked(ctx context.Context, userID string, now time.Time) (bool, time.Time, error) {
	if k.limit <= 0 {
		return false, time.Time{}, nil
	}
	// The limit most recent expiries within the window.
	zs, err := k.rdb.ZRevRangeByScoreWithScores(ctx, k.key(userID), &redis.ZRangeBy{
		Max: "+inf", Min: "(" + strconv.FormatInt(now.Add(-k.window).UnixMilli(), 10), Count: int64(k.limit)}).Result()
	if err != nil {
		return false, time.Time{}, fmt.Errorf("redisstore: read strikes: %w", err)
	}
	if len(zs) < k.limit {
		return false, time.Time{}, nil
	}
	return true, time.UnixMilli(int64(zs[k.limit-1].Score)).Add(k.window), nil
}
