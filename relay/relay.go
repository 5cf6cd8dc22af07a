// Package relay publishes each shard's transactional outbox to the events
// exchange, at least once and in the order the rows were written.
//
// Any number of relays may run. Each shard is published by whichever relay holds
// its lease (service.Leader: a short TTL, refreshed in the background; a batch
// in hand when it is lost is cut short): a relay that dies hands its shards over
// once the TTL runs out. The lease is no
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

	"github.com/prometheus/client_golang/prometheus"

	"github.com/flashsale/flashsale"
	"github.com/flashsale/flashsale/service"
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
	// Leases holds the shard leases. Required.
	Leases service.Leases
	// Namespace prefixes the lease keys. Required.
	Namespace string
	// Owner names this relay in logs. Default "relay".
	Owner string
	// LeaseTTL is how long a lease lasts without a refresh: the longest a dead
	// relay's shards go unpublished. Default 3 s.
	LeaseTTL time.Duration
	// Batch is the most rows published at once. Default 500.
	Batch int
	// Idle is the wait after a pass that found nothing to publish; each
	// further empty pass doubles it, up to MaxIdle. Defaults 50 ms and 1 s:
	// an idle relay reads each shard's outbox once a second, and an event
	// written by another process waits at most MaxIdle (plus Linger) to go out.
	Idle    time.Duration
	MaxIdle time.Duration
	// Linger is the wait before the next pass once the outbox was drained (a
	// pass published fewer than Batch rows) or Written woke the relay, so that
	// events written meanwhile go out in one batch, with one read and one
	// update of the outbox, instead of one pass each. Default 25 ms; negative:
	// none.
	Linger time.Duration
	// Written, when set, delivers a token after this process committed outbox
	// rows on a shard (mysqlstore.Store.OutboxWritten): an idle relay wakes at
	// once (after Linger) instead of at its next look.
	Written func(shard int) <-chan struct{}
	// Retention is how long sent rows are kept before they are deleted.
	// Default 24 h.
	Retention time.Duration
	// Log default slog.Default(); Registry optional.
	Log      *slog.Logger
	Registry prometheus.Registerer
}

// Relay publishes outboxes; one per process. It is a service.Service: Start
// starts competing for every shard's lease, Started is closed once it
// competes for each, and Stop ends publishing (a batch in hand is cut short;
// what the broker confirmed of it is marked sent).
type Relay struct {
	service.Runner
	cfg       Config
	log       *slog.Logger
	published prometheus.Counter
	owned     prometheus.Gauge
}

// New returns a Relay.
func New(cfg Config) (*Relay, error) {
	if cfg.Outbox == nil || cfg.Publisher == nil || cfg.Leases == nil || cfg.Namespace == "" {
		return nil, errors.New("relay: Outbox, Publisher, Leases and Namespace are required")
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
	if cfg.MaxIdle == 0 {
		cfg.MaxIdle = time.Second
	}
	if cfg.MaxIdle < cfg.Idle {
		cfg.MaxIdle = cfg.Idle
	}
	if cfg.Linger == 0 {
		cfg.Linger = 25 * time.Millisecond
	}
	if cfg.Retention == 0 {
		cfg.Retention = 24 * time.Hour
	}
	if cfg.Log == nil {
		cfg.Log = slog.Default()
	}
	r := &Relay{cfg: cfg, log: cfg.Log.With("relay", cfg.Owner),
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

// Start starts publishing, one goroutine per shard.
func (r *Relay) Start(ctx context.Context) error { return r.Go(ctx, r.run) }

func (r *Relay) run(ctx context.Context, ready func()) {
	var wg sync.WaitGroup
	for shard := 0; shard < r.cfg.Outbox.Shards(); shard++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r.runShard(ctx, shard)
		}()
	}
	ready()
	wg.Wait()
}

// runShard competes for the shard's lease and publishes while it holds it.
func (r *Relay) runShard(ctx context.Context, shard int) {
	leader := service.Leader{Leases: r.cfg.Leases, Key: fmt.Sprintf("%s:relay:shard:%d", r.cfg.Namespace, shard),
		TTL: r.cfg.LeaseTTL, Log: r.log}
	leader.Run(ctx, func(owned context.Context) {
		r.log.Info("publishing shard", "shard", shard)
		r.owned.Inc()
		r.publishWhileOwned(owned, shard)
		r.owned.Dec()
		if ctx.Err() == nil {
			r.log.Warn("stopped publishing shard: its lease was lost", "shard", shard)
		}
	})
}

// publishWhileOwned publishes batches until ctx ends (the lease is lost or the
// relay stops). Between passes: none while full batches come; Linger once the
// outbox is drained; while it stays empty, a wait doubling from Idle to
// MaxIdle, cut short by Written.
func (r *Relay) publishWhileOwned(ctx context.Context, shard int) {
	lastPurge := time.Time{}
	var written <-chan struct{}
	if r.cfg.Written != nil {
		written = r.cfg.Written(shard)
	}
	idle := r.cfg.Idle
	for ctx.Err() == nil {
		// A batch must finish well within the lease.
		bctx, cancel := context.WithTimeout(ctx, r.cfg.LeaseTTL*2/3)
		n, err := r.publishBatch(bctx, shard)
		cancel()
		if err != nil {
			r.log.Warn("publishing outbox failed; retrying", "shard", shard, "err", err)
			service.Sleep(ctx, r.cfg.LeaseTTL/3)
			continue
		}
		if time.Since(lastPurge) > time.Minute {
			lastPurge = time.Now()
			if _, err := r.cfg.Outbox.PurgeSent(ctx, shard, time.Now().Add(-r.cfg.Retention)); err != nil {
				r.log.Warn("purging sent outbox rows failed", "shard", shard, "err", err)
			}
		}
		switch {
		case n >= r.cfg.Batch: // more may be waiting
			idle = r.cfg.Idle
		case n > 0: // drained: let what comes next gather
			idle = r.cfg.Idle
			r.linger(ctx)
		default:
			if r.wait(ctx, idle, written) {
				idle = r.cfg.Idle
				r.linger(ctx)
			} else {
				idle = min(2*idle, r.cfg.MaxIdle)
			}
		}
	}
}

// wait waits d, or until a token on written (nil: none comes); it reports
// whether the token woke it.
func (r *Relay) wait(ctx context.Context, d time.Duration, written <-chan struct{}) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	case <-written:
		return true
	}
	return false
}

func (r *Relay) linger(ctx context.Context) {
	if r.cfg.Linger > 0 {
		service.Sleep(ctx, r.cfg.Linger)
	}
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
