// Package relay publishes each shard's transactional outbox to the events
// exchange, at least once and in the order the rows were written.
//
// Any number of relays may run. Each shard is published by whichever relay holds
// its lease (a redislock lock with a short TTL, refreshed before every batch): a
// relay that dies hands its shards over once the TTL runs out. The lease is no
// correctness guarantee (it has no fencing): should two relays ever publish the
// same rows, consumers see duplicates with the same event_id, never a gap,
// because a row is marked sent only after the broker confirmed it.
package relay

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/bsm/redislock"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"

	"github.com/flashsale/flashsale"
)

// Outbox is the shards' outbox tables.
type Outbox interface {
	Shards() int
	UnsentEvents(ctx context.Context, shard, limit int) ([]flashsale.OutboxEvent, error)
	MarkSent(ctx context.Context, shard int, ids []int64, now time.Time) error
	PurgeSent(ctx context.Context, shard int, before time.Time) (int64, error)
}

// Publisher publishes events in order and reports how many from the start the
// broker confirmed.
type Publisher interface {
	PublishEvents(ctx context.Context, events []flashsale.OutboxEvent) (int, error)
}

// Config for a Relay.
type Config struct {
	Outbox    Outbox    // required
	Publisher Publisher // required
	// Redis holds the shard leases. Required.
	Redis redis.UniversalClient
	// Namespace prefixes the lease keys. Required.
	Namespace string
	// Owner names this relay in logs. Default "relay".
	Owner string
	// LeaseTTL is how long a lease lasts without a refresh: the longest a dead
	// relay's shards go unpublished. Default 3 s.
	LeaseTTL time.Duration
	// Batch is the most rows published at once. Default 500.
	Batch int
	// Idle is the wait after a pass that found nothing to publish. Default 50 ms.
	Idle time.Duration
	// Retention is how long sent rows are kept before they are deleted.
	// Default 24 h.
	Retention time.Duration
	// Log default slog.Default(); Registry optional.
	Log      *slog.Logger
	Registry prometheus.Registerer
}

// Relay publishes outboxes. Run it once per process.
type Relay struct {
	cfg       Config
	log       *slog.Logger
	locker    *redislock.Client
	published prometheus.Counter
	owned     prometheus.Gauge
}

// New returns a Relay.
func New(cfg Config) (*Relay, error) {
	if cfg.Outbox == nil || cfg.Publisher == nil || cfg.Redis == nil || cfg.Namespace == "" {
		return nil, errors.New("relay: Outbox, Publisher, Redis and Namespace are required")
	}
	if cfg.Owner == "" {
		cfg.Owner = "relay"
	}
	if cfg.LeaseTTL == 0 {
		cfg.LeaseTTL = 3 * time.Second
	}
	if cfg.Batch == 0 {
		cfg.Batch = 500
	}
	if cfg.Idle == 0 {
		cfg.Idle = 50 * time.Millisecond
	}
	if cfg.Retention == 0 {
		cfg.Retention = 24 * time.Hour
	}
	if cfg.Log == nil {
		cfg.Log = slog.Default()
	}
	r := &Relay{cfg: cfg, log: cfg.Log.With("relay", cfg.Owner), locker: redislock.New(cfg.Redis),
		published: prometheus.NewCounter(prometheus.CounterOpts{Name: "flashsale_relay_events_published_total",
			Help: "Outbox events confirmed by the broker."}),
		owned: prometheus.NewGauge(prometheus.GaugeOpts{Name: "flashsale_relay_shards_owned",
			Help: "Shards whose outbox this relay publishes now."}),
	}
	if cfg.Registry != nil {
		cfg.Registry.MustRegister(r.published, r.owned)
	}
	return r, nil
}

// Run publishes until ctx ends, one goroutine per shard.
func (r *Relay) Run(ctx context.Context) {
	var wg sync.WaitGroup
	for shard := 0; shard < r.cfg.Outbox.Shards(); shard++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r.runShard(ctx, shard)
		}()
	}
	wg.Wait()
}

func wait(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

// runShard competes for the shard's lease and publishes while it holds it.
func (r *Relay) runShard(ctx context.Context, shard int) {
	key := fmt.Sprintf("%s:relay:shard:%d", r.cfg.Namespace, shard)
	for ctx.Err() == nil {
		lock, err := r.locker.Obtain(ctx, key, r.cfg.LeaseTTL, nil)
		if err != nil {
			if !errors.Is(err, redislock.ErrNotObtained) && ctx.Err() == nil {
				r.log.Warn("cannot reach the lease store", "shard", shard, "err", err)
			}
			if !wait(ctx, r.cfg.LeaseTTL/3) {
				return
			}
			continue
		}
		r.log.Info("publishing shard", "shard", shard)
		r.owned.Inc()
		err = r.publishWhileOwned(ctx, shard, lock)
		r.owned.Dec()
		lock.Release(context.WithoutCancel(ctx))
		if ctx.Err() == nil {
			r.log.Warn("stopped publishing shard", "shard", shard, "err", err)
			wait(ctx, r.cfg.LeaseTTL/3)
		}
	}
}

// publishWhileOwned publishes batches, refreshing the lease before each one, so
// a batch is only ever published by a relay that held the lease a moment ago.
func (r *Relay) publishWhileOwned(ctx context.Context, shard int, lock *redislock.Lock) error {
	lastPurge := time.Time{}
	for ctx.Err() == nil {
		if err := lock.Refresh(ctx, r.cfg.LeaseTTL, nil); err != nil {
			return fmt.Errorf("lease lost: %w", err)
		}
		// A batch must finish well within the lease.
		bctx, cancel := context.WithTimeout(ctx, r.cfg.LeaseTTL*2/3)
		n, err := r.publishBatch(bctx, shard)
		cancel()
		if err != nil {
			r.log.Warn("publishing outbox failed; retrying", "shard", shard, "err", err)
			if !wait(ctx, r.cfg.LeaseTTL/3) {
				return nil
			}
			continue
		}
		if time.Since(lastPurge) > time.Minute {
			lastPurge = time.Now()
			if _, err := r.cfg.Outbox.PurgeSent(ctx, shard, time.Now().Add(-r.cfg.Retention)); err != nil {
				r.log.Warn("purging sent outbox rows failed", "shard", shard, "err", err)
			}
		}
		if n == 0 && !wait(ctx, r.cfg.Idle) {
			return nil
		}
	}
	return nil
}

// publishBatch publishes one batch and marks the confirmed prefix sent.
func (r *Relay) publishBatch(ctx context.Context, shard int) (int, error) {
	events, err := r.cfg.Outbox.UnsentEvents(ctx, shard, r.cfg.Batch)
	if err != nil || len(events) == 0 {
		return 0, err
	}
	confirmed, pubErr := r.cfg.Publisher.PublishEvents(ctx, events)
	ids := make([]int64, confirmed)
	for i := range ids {
		ids[i] = events[i].ID
	}
	// Marking uses a context of its own: what the broker confirmed should be
	// recorded even when the batch's time is up.
	mctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	if err := r.cfg.Outbox.MarkSent(mctx, shard, ids, time.Now()); err != nil {
		return 0, err
	}
	r.published.Add(float64(confirmed))
	return confirmed, pubErr
}
