// Package reconcile compares each sale's stock in Redis with the book of record
// in MySQL, and MySQL's stock bookkeeping with its orders, reports where they
// differ and repairs what may be repaired from MySQL's orders.
//
// What is compared, per sale:
//
//   - per ticket: a pending_payment order must be held in Redis (H:<q>), a paid
//     one sold (S:<q>), an expired or cancelled one must not count (released, or
//     no state at all after a rebuild); q is the order's units in this sale net
//     of returned units (a bundle has a part in each of its sales, held under
//     its ticket in each). A ticket held or sold in Redis with no
//     order at all is an "unordered hold": a purchase between its hold and its
//     commit, or one whose message was lost after the hold;
//   - the counters: held and sold must be the sums of the held and sold states,
//     available = total - held - sold, and total the sale's stock;
//   - per user: units must be the sum of the user's held and sold tickets (the
//     per-user limit is checked against it);
//   - the stock cap, for every sale: the shards' allotments plus the units in
//     flight between shards must be the stock, and each shard's used units
//     those of its pending_payment and paid orders (never repaired: a
//     difference is a bug to look into);
//   - for a sale with inventory "mysql", whose stock is a MySQL row: each
//     ticket's hold in the row against its order (as above), the row's
//     counters against its holds, and the Redis mirror (which admission reads)
//     against the row's holds as they will be once repaired, rather than
//     against the orders. The row is repaired with MySQL's own idempotent
//     operations (release, confirm, return), before Redis.
//
// Scripts change a hold, the counters and the user's units in one step, so
// the last two never differ in flight: a mismatch there is drift, reported
// unless fixing the holds accounts for it.
//
// MySQL's own view (held = units of pending orders, sold = units of paid
// orders) is reported beside Redis's (and the inventory row's); more units in
// orders than stock is reported as "oversold", which nothing in Redis can
// repair.
//
// Redis is read first, in one atomic read, then MySQL. Every purchase holds in
// Redis before it commits, and every other transition commits in MySQL before
// Redis follows, so a difference seen once may be work in flight. A difference
// is therefore repaired only when it was seen, identically, in two passes; an
// unordered hold is released only when it has been seen for StrayAfter as
// well, because releasing the hold of a purchase that is merely slow would let
// its order commit without its units. Repairs are compare-and-set (see
// redisstore.RepairSale): a fix whose expected state changed meanwhile is
// skipped and looked at again in the next pass.
//
// Reconciler.Once is the `flashsale reconcile` command: one look, a second
// look after a short settle time when the first found differences, and the
// repairs of what persisted. Reconciler.Start starts the background
// reconciler: one runner at a time (a service.Leader lease), a pass every
// Interval.
//
// The files follow the jobs: check.go reads both sides, diff.go compares them
// (pure functions: a sale, its snapshot and its orders' parts in, differences
// and their fixes out), repair.go applies the fixes, report.go is the report's
// JSON and text, run.go is Once, Tick and the background reconciler.
package reconcile

import (
	"context"
	"errors"
	"log/slog"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/flashsale/flashsale"
	"github.com/flashsale/flashsale/service"
)

// Book is the book of record.
type Book interface {
	// ListSales returns the sales that end after since.
	ListSales(ctx context.Context, since time.Time) ([]*flashsale.Sale, error)
	// SaleOrders returns every order of the sale, whatever its status. Only
	// an order's part in this sale counts (see partsIn): mysqlstore returns
	// one order per part, with that sale's item only.
	SaleOrders(ctx context.Context, saleID string) ([]*flashsale.Order, error)
	// GiveUp records, before an unordered hold is released, that its ticket
	// makes no order, unless it made one first (then the hold stays).
	GiveUp(ctx context.Context, t *flashsale.Ticket) (ordered bool, err error)
	// CompleteTransfers delivers the sale's stock-cap transfers between shards
	// that a crash left in flight.
	CompleteTransfers(ctx context.Context, saleID string) (int, error)
	// Cap reads the sale's stock cap: per shard its allotment, used units and
	// the units its orders have (one consistent read per shard), and the
	// units in flight between shards.
	Cap(ctx context.Context, saleID string) (flashsale.CapSnapshot, error)
	// Inventory reads a mysql-inventory sale's row and its tickets' holds in
	// one consistent read.
	Inventory(ctx context.Context, saleID string) (flashsale.InventorySnapshot, error)
	// ReleaseStock, ConfirmStock and ReturnStock move a ticket's hold in a
	// mysql-inventory sale's row (held → released, held → sold, sold down to
	// keep units), once, and return the hold as it was before: a hold that
	// is not in the state the move starts from is left alone.
	ReleaseStock(ctx context.Context, saleID, ticketID string) (flashsale.Hold, error)
	ConfirmStock(ctx context.Context, saleID, ticketID string) (flashsale.Hold, error)
	ReturnStock(ctx context.Context, saleID, ticketID string, keep int) (flashsale.Hold, error)
}

// Stock is the Redis side.
type Stock interface {
	// Snapshot reads the sale's holds, live tickets, units and counters at one
	// instant; a sale that is not loaded has Loaded false.
	Snapshot(ctx context.Context, saleID string) (flashsale.SaleSnapshot, error)
	// RepairSale applies the fixes atomically, each only if its From or
	// Observed still holds, then sets held and sold from the holds, available
	// from them and total.
	RepairSale(ctx context.Context, saleID string, total int, holds []flashsale.HoldFix, units []flashsale.UnitsFix) (flashsale.RepairResult, error)
	// GetTicket and PutTickets read and write a ticket's fast copy.
	GetTicket(ctx context.Context, ticketID string) (*flashsale.Ticket, error)
	PutTickets(ctx context.Context, tickets ...*flashsale.Ticket) error
}

// Config for a Reconciler.
type Config struct {
	Book  Book  // required
	Stock Stock // required
	// Leases holds the background runner's lease, "<Namespace>:reconciler".
	// Required.
	Leases    service.Leases
	Namespace string // required
	// Interval is the time between background passes. Default 30 s.
	Interval time.Duration
	// Lookback: background passes check the sales that end after now-Lookback.
	// Default 24 h.
	Lookback time.Duration
	// StrayAfter is how long an unordered hold must have been seen before the
	// background reconciler releases it (besides being seen in two passes). It
	// must exceed the longest a purchase may take between its hold and its
	// commit. Default 5 min.
	StrayAfter time.Duration
	// Log default slog.Default(); Registry receives the metrics (nil: none); Now
	// default time.Now.
	Log      *slog.Logger
	Registry prometheus.Registerer
	Now      func() time.Time
}

// Reconciler compares and repairs. Check, Once and Repair are safe for
// concurrent use; Tick and the background reconciler (Start) keep the memory
// of the previous pass and are meant for one goroutine.
type Reconciler struct {
	service.Runner
	cfg  Config
	log  *slog.Logger
	seen map[string]time.Time // signature of a difference -> when first seen, by Tick

	passes   prometheus.Counter
	diffs    prometheus.Gauge
	repaired *prometheus.CounterVec
	oversold *prometheus.GaugeVec
	byKind   *prometheus.GaugeVec // see metrics.go
}

// New returns a Reconciler.
func New(cfg Config) (*Reconciler, error) {
	if cfg.Book == nil || cfg.Stock == nil || cfg.Leases == nil || cfg.Namespace == "" {
		return nil, errors.New("reconcile: Book, Stock, Leases and Namespace are required")
	}
	if cfg.Interval == 0 {
		cfg.Interval = 30 * time.Second
	}
	if cfg.Lookback == 0 {
		cfg.Lookback = 24 * time.Hour
	}
	if cfg.StrayAfter == 0 {
		cfg.StrayAfter = 5 * time.Minute
	}
	if cfg.Interval < 0 || cfg.Lookback < 0 || cfg.StrayAfter < 0 {
		return nil, errors.New("reconcile: Interval, Lookback and StrayAfter must be positive")
	}
	if cfg.Log == nil {
		cfg.Log = slog.Default()
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	r := &Reconciler{cfg: cfg, log: cfg.Log, seen: map[string]time.Time{},
		passes: prometheus.NewCounter(prometheus.CounterOpts{Name: "flashsale_reconcile_passes_total",
			Help: "Background reconciliation passes run."}),
		diffs: prometheus.NewGauge(prometheus.GaugeOpts{Name: "flashsale_reconcile_differences",
			Help: "Differences between Redis and MySQL seen by the last background pass, in flight or not."}),
		repaired: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "flashsale_reconcile_repairs_total",
			Help: "Differences between Redis and MySQL the reconciler repaired, by kind."}, []string{"kind"}),
		oversold: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "flashsale_oversold_units",
			Help: "Units in pending_payment and paid orders beyond the sale's stock, as last seen by the reconciler. Must always be absent or 0."},
			[]string{"sale"}),
	}
	if cfg.Registry != nil {
		cfg.Registry.MustRegister(r.passes, r.diffs, r.repaired, r.oversold)
	}
	r.initOpsMetrics()
	return r, nil
}
