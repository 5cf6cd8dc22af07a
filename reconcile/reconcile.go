// Package reconcile compares each sale's stock in Redis with the book of record
// in MySQL, reports where they differ and repairs Redis from MySQL.
//
// What is compared, per sale (sales with inventory "mysql" are skipped: their
// stock lives in MySQL already):
//
//   - per ticket: a pending_payment order must be held in Redis (H:<q>), a paid
//     one sold (S:<q>), an expired or cancelled one must not count (released, or
//     no state at all after a rebuild). A ticket held or sold in Redis with no
//     order at all is an "unordered hold": a purchase between its hold and its
//     commit, or one whose message was lost after the hold;
//   - the counters: held and sold must be the sums of the held and sold states,
//     available = total - held - sold, and total the sale's stock;
//   - per user: units must be the sum of the user's held and sold tickets (the
//     per-user limit is checked against it).
//
// Scripts change a hold, the counters and the user's units in one step, so
// the last two never differ in flight: a mismatch there is drift, reported
// unless fixing the holds accounts for it.
//
// MySQL's own view (held = units of pending orders, sold = units of paid
// orders) is reported beside Redis's; more units in orders than stock is
// reported as "oversold", which nothing in Redis can repair.
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
// repairs of what persisted. Reconciler.Run is the background reconciler: one
// runner at a time (a service.Leader lease), a pass every Interval.
package reconcile

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/flashsale/flashsale"
	"github.com/flashsale/flashsale/service"
)

// Book is the book of record.
type Book interface {
	// ListSales returns the sales that end after since.
	ListSales(ctx context.Context, since time.Time) ([]*flashsale.Sale, error)
	// SaleOrders returns every order of the sale, whatever its status.
	SaleOrders(ctx context.Context, saleID string) ([]*flashsale.Order, error)
	// GiveUp records, before an unordered hold is released, that its ticket
	// makes no order, unless it made one first (then the hold stays).
	GiveUp(ctx context.Context, t *flashsale.Ticket) (ordered bool, err error)
	// CompleteTransfers delivers the sale's stock-cap transfers between shards
	// that a crash left in flight.
	CompleteTransfers(ctx context.Context, saleID string) (int, error)
}

// Snapshot is a sale's Redis state read at one instant.
type Snapshot struct {
	Loaded bool // false: the sale's keys are missing; it is rebuilt on first use
	Stock  flashsale.Stock
	Holds  map[string]flashsale.Hold // by ticket id
	Live   map[string]string         // user id -> live ticket id
	Units  map[string]int            // user id -> units held or bought
}

// HoldFix sets a ticket's state to To if it is still From; UserID (when known)
// keeps the user's live ticket in step.
type HoldFix struct {
	TicketID, UserID string
	From, To         flashsale.Hold
}

// UnitsFix sets a user's units to the held and sold units of Tickets if they
// are still Observed.
type UnitsFix struct {
	UserID   string
	Observed int
	Tickets  []string
}

// RepairResult says which fixes applied, by index, and the stock afterwards;
// Loaded false means the sale was not loaded and nothing changed.
type RepairResult struct {
	Loaded bool
	Holds  []bool
	Units  []bool
	Stock  flashsale.Stock
}

// Stock is the Redis side.
type Stock interface {
	Snapshot(ctx context.Context, saleID string) (Snapshot, error)
	// RepairSale applies the fixes atomically, then sets held and sold from the
	// holds, available from them and total.
	RepairSale(ctx context.Context, saleID string, total int, holds []HoldFix, units []UnitsFix) (RepairResult, error)
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
// concurrent use; Tick and Run keep the memory of the previous pass and are
// meant for one goroutine.
type Reconciler struct {
	cfg  Config
	log  *slog.Logger
	seen map[string]time.Time // signature of a difference -> when first seen, by Tick

	passes   prometheus.Counter
	diffs    prometheus.Gauge
	repaired *prometheus.CounterVec
	oversold *prometheus.GaugeVec
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
	return r, nil
}

// Kind is what a difference is about.
type Kind string

const (
	// KindHold: a ticket's Redis state does not follow its order in MySQL.
	KindHold Kind = "hold"
	// KindUnordered: a ticket is held or sold in Redis without an order.
	KindUnordered Kind = "unordered_hold"
	// KindCounters: the stock counters do not match the holds (or total the sale).
	KindCounters Kind = "counters"
	// KindUnits: a user's units do not match the user's tickets.
	KindUnits Kind = "units"
	// KindOversold: MySQL has more units in orders than the sale's stock. Not
	// repairable in Redis.
	KindOversold Kind = "oversold"
)

// Difference is one thing Redis and MySQL disagree about.
type Difference struct {
	Kind     Kind   `json:"kind"`
	TicketID string `json:"ticket_id,omitempty"`
	UserID   string `json:"user_id,omitempty"`
	// Redis is what Redis has, Want what it should have by MySQL.
	Redis    string `json:"redis"`
	Want     string `json:"want"`
	Detail   string `json:"detail,omitempty"`
	Repaired bool   `json:"repaired"`

	sig   string // identity across passes: what differs and by how much
	hold  *HoldFix
	units *UnitsFix
}

// SaleStatus sums up one sale.
type SaleStatus string

const (
	SaleAgree     SaleStatus = "agree"
	SaleDiffer    SaleStatus = "differ"
	SaleNotLoaded SaleStatus = "not_loaded"
	SaleSkipped   SaleStatus = "skipped"
)

// OrderCounts counts a sale's orders in MySQL.
type OrderCounts struct {
	Pending      int `json:"pending"`
	PendingUnits int `json:"pending_units"`
	Paid         int `json:"paid"`
	PaidUnits    int `json:"paid_units"`
	Closed       int `json:"closed"` // expired or cancelled
}

// SaleReport is one sale's comparison.
type SaleReport struct {
	SaleID string     `json:"sale_id"`
	Status SaleStatus `json:"status"`
	Note   string     `json:"note,omitempty"`
	// Redis is the stock as Redis has it; MySQL as the orders say it is.
	Redis  *flashsale.Stock `json:"redis,omitempty"`
	MySQL  *flashsale.Stock `json:"mysql,omitempty"`
	Orders OrderCounts      `json:"orders"`
	// Unordered counts tickets held or sold in Redis without an order: in a
	// live sale, mostly purchases between their hold and their commit.
	Unordered   int           `json:"unordered_holds"`
	Differences []*Difference `json:"differences"`

	sale     *flashsale.Sale
	obsUnits map[string]int      // user -> units as Redis had them
	tickets  map[string][]string // user -> the user's tickets, sorted
}

// Report is the outcome of a reconciliation.
type Report struct {
	CheckedAt time.Time     `json:"checked_at"`
	Sales     []*SaleReport `json:"sales"`
	// Differences counts those not repaired; Repaired those repaired.
	Differences int `json:"differences"`
	Repaired    int `json:"repaired"`
	// Transient counts differences seen on one of two looks only (work that was
	// in flight); they are not in Sales.
	Transient int `json:"transient"`
	// Agree: no difference remains.
	Agree bool `json:"agree"`
}

func (r *Report) recount() {
	r.Differences, r.Repaired = 0, 0
	for _, s := range r.Sales {
		open := 0
		for _, d := range s.Differences {
			if d.Repaired {
				r.Repaired++
			} else {
				open++
			}
		}
		r.Differences += open
		if s.Status == SaleAgree || s.Status == SaleDiffer {
			s.Status = SaleAgree
			if open > 0 {
				s.Status = SaleDiffer
			}
		}
	}
	r.Agree = r.Differences == 0
}

func (r *Report) each(fn func(s *SaleReport, d *Difference)) {
	for _, s := range r.Sales {
		for _, d := range s.Differences {
			fn(s, d)
		}
	}
}

// Check compares every sale that ends after since, without repairing.
func (r *Reconciler) Check(ctx context.Context, since time.Time) (*Report, error) {
	sales, err := r.cfg.Book.ListSales(ctx, since)
	if err != nil {
		return nil, err
	}
	rep := &Report{CheckedAt: r.cfg.Now().UTC()}
	for _, sale := range sales {
		s, err := r.checkSale(ctx, sale)
		if err != nil {
			return nil, fmt.Errorf("reconcile: sale %s: %w", sale.ID, err)
		}
		rep.Sales = append(rep.Sales, s)
	}
	rep.recount()
	return rep, nil
}

func counted(h flashsale.Hold) bool {
	return h.Kind == flashsale.HoldHeld || h.Kind == flashsale.HoldSold
}

func show(h flashsale.Hold) string {
	if h.Kind == flashsale.HoldNone {
		return "none"
	}
	if counted(h) {
		return fmt.Sprintf("%c:%d", h.Kind, h.Quantity)
	}
	return string(rune(h.Kind))
}

func showStock(s flashsale.Stock) string {
	return fmt.Sprintf("total %d available %d held %d sold %d", s.Total, s.Available, s.Held, s.Sold)
}

func (r *Reconciler) checkSale(ctx context.Context, sale *flashsale.Sale) (*SaleReport, error) {
	rep := &SaleReport{SaleID: sale.ID, sale: sale, Differences: []*Difference{}}
	if _, err := r.cfg.Book.CompleteTransfers(ctx, sale.ID); err != nil {
		return nil, err
	}
	if sale.Inventory == flashsale.InventoryMySQL {
		rep.Status, rep.Note = SaleSkipped, "inventory mysql: its stock is held in MySQL"
		return rep, nil
	}
	// Redis first: see the package comment.
	snap, err := r.cfg.Stock.Snapshot(ctx, sale.ID)
	if err != nil {
		return nil, err
	}
	if !snap.Loaded {
		rep.Status, rep.Note = SaleNotLoaded, "not loaded in Redis; rebuilt from MySQL on first use"
		return rep, nil
	}
	orders, err := r.cfg.Book.SaleOrders(ctx, sale.ID)
	if err != nil {
		return nil, err
	}
	rep.Status = SaleAgree
	redisStock := snap.Stock
	rep.Redis = &redisStock

	owner := make(map[string]string, len(orders)+len(snap.Live)) // ticket -> user
	for u, t := range snap.Live {
		owner[t] = u
	}
	byTicket := make(map[string]*flashsale.Order, len(orders))
	for _, o := range orders {
		byTicket[o.ID] = o
		owner[o.ID] = o.UserID
	}
	add := func(d *Difference) { rep.Differences = append(rep.Differences, d) }
	// fixed is every ticket's state once the holds follow MySQL (unordered
	// holds keep theirs: in flight, or released through their own fix).
	fixed := make(map[string]flashsale.Hold, len(snap.Holds))
	for t, h := range snap.Holds {
		fixed[t] = h
	}
	for _, o := range orders {
		cur := snap.Holds[o.ID]
		var w flashsale.Hold
		switch o.Status {
		case flashsale.OrderPendingPayment:
			rep.Orders.Pending++
			rep.Orders.PendingUnits += o.Quantity
			w = flashsale.Hold{Kind: flashsale.HoldHeld, Quantity: o.Quantity}
		case flashsale.OrderPaid:
			rep.Orders.Paid++
			rep.Orders.PaidUnits += o.Quantity
			w = flashsale.Hold{Kind: flashsale.HoldSold, Quantity: o.Quantity}
		default:
			rep.Orders.Closed++
			if !counted(cur) {
				continue
			}
			w = flashsale.Hold{Kind: flashsale.HoldReleased}
		}
		if cur == w {
			continue
		}
		fixed[o.ID] = w
		add(&Difference{Kind: KindHold, TicketID: o.ID, UserID: o.UserID, Redis: show(cur), Want: show(w),
			Detail: "order " + string(o.Status) + " in MySQL",
			hold:   &HoldFix{TicketID: o.ID, UserID: o.UserID, From: cur, To: w}})
	}
	var unordered []string
	for t, h := range snap.Holds {
		if _, ok := byTicket[t]; !ok && counted(h) {
			unordered = append(unordered, t)
		}
	}
	sort.Strings(unordered)
	rep.Unordered = len(unordered)
	for _, t := range unordered {
		h := snap.Holds[t]
		add(&Difference{Kind: KindUnordered, TicketID: t, UserID: owner[t], Redis: show(h), Want: "R",
			Detail: "no order in MySQL: a purchase between its hold and its commit, or a lost message",
			hold:   &HoldFix{TicketID: t, UserID: owner[t], From: h, To: flashsale.Hold{Kind: flashsale.HoldReleased}}})
	}

	// Counters and units. Every script changes a hold, the counters and its
	// user's units in one step, so in flight they always match the holds as
	// they are; a mismatch is drift. It is reported unless fixing the holds
	// makes them right anyway (a lost hold whose counters are still counted),
	// with what they must be once the holds are fixed. Either way a repair
	// sets the counters from the holds and recomputes the units of every user
	// whose tickets it changes.
	userTickets := map[string][]string{}
	for t, u := range owner {
		userTickets[u] = append(userTickets[u], t)
	}
	for _, ts := range userTickets {
		sort.Strings(ts)
	}
	rep.obsUnits, rep.tickets = snap.Units, userTickets
	sums := func(holds map[string]flashsale.Hold) (flashsale.Stock, map[string]int) {
		st, units := flashsale.Stock{Total: sale.Stock}, map[string]int{}
		for t, h := range holds {
			switch h.Kind {
			case flashsale.HoldHeld:
				st.Held += h.Quantity
			case flashsale.HoldSold:
				st.Sold += h.Quantity
			}
			if u, ok := owner[t]; ok && counted(h) {
				units[u] += h.Quantity
			}
		}
		st.Available = st.Total - st.Held - st.Sold
		return st, units
	}
	asIs, asIsUnits := sums(snap.Holds)
	toBe, toBeUnits := sums(fixed)
	if g := snap.Stock; g != asIs && g != toBe {
		add(&Difference{Kind: KindCounters, Redis: showStock(g), Want: showStock(toBe),
			Detail: "the counters do not match the holds",
			sig: fmt.Sprintf("%d %d %d %d", g.Total-asIs.Total, g.Available-asIs.Available,
				g.Held-asIs.Held, g.Sold-asIs.Sold)})
	}
	users := make([]string, 0, len(asIsUnits)+len(toBeUnits))
	for u := range asIsUnits {
		users = append(users, u)
	}
	for u := range toBeUnits {
		if _, ok := asIsUnits[u]; !ok {
			users = append(users, u)
		}
	}
	for u, n := range snap.Units {
		// Units without any ticket leaked: every counted ticket is mapped to
		// its user, by its order or (held without one) by the live hash.
		if _, ok := asIsUnits[u]; !ok && n != 0 {
			if _, ok := toBeUnits[u]; !ok {
				users = append(users, u)
			}
		}
	}
	sort.Strings(users)
	for _, u := range users {
		if got := snap.Units[u]; got != asIsUnits[u] && got != toBeUnits[u] {
			add(&Difference{Kind: KindUnits, UserID: u, Redis: fmt.Sprint(got), Want: fmt.Sprint(toBeUnits[u]),
				Detail: "units do not match the user's tickets",
				units:  &UnitsFix{UserID: u, Observed: got, Tickets: userTickets[u]},
				sig:    fmt.Sprintf("%d %d", got, asIsUnits[u])})
		}
	}

	mysql := flashsale.Stock{Total: sale.Stock, Held: rep.Orders.PendingUnits, Sold: rep.Orders.PaidUnits}
	mysql.Available = mysql.Total - mysql.Held - mysql.Sold
	rep.MySQL = &mysql
	if mysql.Available < 0 {
		r.oversold.WithLabelValues(sale.ID).Set(float64(-mysql.Available))
		r.log.Error("OVERSOLD: more units in orders than the sale's stock", "sale", sale.ID, "stock", sale.Stock,
			"in_orders", mysql.Held+mysql.Sold, "over", -mysql.Available)
		add(&Difference{Kind: KindOversold, Redis: "-", Want: fmt.Sprintf("at most %d units in orders", sale.Stock),
			Detail: fmt.Sprintf("%d units in pending_payment and paid orders, stock %d", mysql.Held+mysql.Sold, sale.Stock)})
	}
	for _, d := range rep.Differences {
		if d.sig == "" {
			d.sig = d.Redis + "|" + d.Want
		}
		d.sig = sale.ID + "|" + string(d.Kind) + "|" + d.TicketID + "|" + d.UserID + "|" + d.sig
	}
	return rep, nil
}

// Repair applies the fixes of the differences in rep that pick selects (all
// when pick is nil) and marks those that applied. Each sale is repaired in one
// atomic step that also sets its counters from its holds.
func (r *Reconciler) Repair(ctx context.Context, rep *Report, pick func(*Difference) bool) error {
	var errs []error
	for _, s := range rep.Sales {
		if err := r.repairSale(ctx, s, pick); err != nil {
			errs = append(errs, fmt.Errorf("reconcile: repair sale %s: %w", s.SaleID, err))
		}
	}
	rep.recount()
	return errors.Join(errs...)
}

func (r *Reconciler) repairSale(ctx context.Context, s *SaleReport, pick func(*Difference) bool) error {
	var holds []HoldFix
	var units []UnitsFix
	var holdDiffs, unitDiffs, counterDiffs []*Difference
	for _, d := range s.Differences {
		if d.Repaired || (pick != nil && !pick(d)) {
			continue
		}
		switch {
		case d.hold != nil:
			holds, holdDiffs = append(holds, *d.hold), append(holdDiffs, d)
		case d.units != nil:
			units, unitDiffs = append(units, *d.units), append(unitDiffs, d)
		case d.Kind == KindCounters:
			counterDiffs = append(counterDiffs, d)
		}
	}
	// An unordered hold is released only once its ticket's decision is
	// recorded: an order committing late then loses to it. A ticket whose order
	// was recorded first keeps its hold.
	keep := holds[:0]
	keepDiffs := holdDiffs[:0]
	for i, f := range holds {
		d := holdDiffs[i]
		if d.Kind == KindUnordered {
			if d.UserID == "" {
				continue // no owner known: its decision cannot be recorded on its shard
			}
			t := &flashsale.Ticket{ID: d.TicketID, SaleID: s.SaleID, UserID: d.UserID, Quantity: d.hold.From.Quantity, Status: flashsale.TicketFailed}
			ordered, err := r.cfg.Book.GiveUp(ctx, t)
			if err != nil {
				return err
			}
			if ordered {
				continue // its order committed meanwhile; the next look sees it
			}
		}
		keep, keepDiffs = append(keep, f), append(keepDiffs, d)
	}
	holds, holdDiffs = keep, keepDiffs
	if len(holds)+len(units)+len(counterDiffs) == 0 {
		return nil
	}
	// A user whose tickets change has its units recomputed with them.
	fixing := map[string]bool{}
	for _, f := range units {
		fixing[f.UserID] = true
	}
	for _, f := range holds {
		if f.UserID == "" || fixing[f.UserID] {
			continue
		}
		fixing[f.UserID] = true
		units = append(units, UnitsFix{UserID: f.UserID, Observed: s.obsUnits[f.UserID], Tickets: s.tickets[f.UserID]})
	}
	res, err := r.cfg.Stock.RepairSale(ctx, s.SaleID, s.sale.Stock, holds, units)
	if err != nil {
		return err
	}
	if !res.Loaded {
		return nil // lost meanwhile: rebuilt from MySQL on first use
	}
	for i, d := range holdDiffs {
		d.Repaired = res.Holds[i]
	}
	for i, d := range unitDiffs {
		d.Repaired = res.Units[i]
	}
	for _, d := range counterDiffs {
		d.Repaired = true
	}
	after := res.Stock
	s.Redis = &after
	for _, d := range append(append(holdDiffs, unitDiffs...), counterDiffs...) {
		if !d.Repaired {
			continue
		}
		r.repaired.WithLabelValues(string(d.Kind)).Inc()
		r.log.Warn("reconciler repaired a difference between Redis and MySQL", "sale", s.SaleID, "kind", d.Kind,
			"ticket", d.TicketID, "user", d.UserID, "redis", d.Redis, "want", d.Want, "stock_after", showStock(after))
		if d.Kind == KindUnordered {
			r.failTicket(ctx, s, d)
		}
	}
	return nil
}

// failTicket makes the ticket of a released unordered hold final: it made no
// order and never will (a redelivered message finds it released).
func (r *Reconciler) failTicket(ctx context.Context, s *SaleReport, d *Difference) {
	if d.UserID == "" {
		return
	}
	if t, err := r.cfg.Stock.GetTicket(ctx, d.TicketID); err == nil && t.Status != flashsale.TicketQueued {
		return
	}
	t := &flashsale.Ticket{ID: d.TicketID, SaleID: s.SaleID, UserID: d.UserID, Quantity: d.hold.From.Quantity, Status: flashsale.TicketFailed}
	if err := r.cfg.Stock.PutTickets(ctx, t); err != nil {
		r.log.Warn("reconciler: writing a released ticket failed", "ticket", d.TicketID, "err", err)
	}
}

// OnceOptions tune Once.
type OnceOptions struct {
	// Since: sales that end after it are checked. Zero: every sale.
	Since time.Time
	// Settle is the wait before the second look when the first found
	// differences. Default 2 s.
	Settle time.Duration
	// Repair fixes the differences seen in both looks, except unordered holds.
	Repair bool
	// ReleaseUnordered, with Repair, also releases unordered holds seen in both
	// looks (and marks their tickets failed). Only safe when no purchase is in
	// flight: a purchase slower than Settle between its hold and its commit
	// would commit an order without units.
	ReleaseUnordered bool
}

// Once is one reconciliation: a look at every sale; when it found differences,
// a second look after Settle, keeping only the differences seen in both (the
// others were in flight); then, with Repair, their repair and a last look to
// confirm it.
func (r *Reconciler) Once(ctx context.Context, o OnceOptions) (*Report, error) {
	if o.Since.IsZero() {
		o.Since = time.Unix(0, 0)
	}
	if o.Settle == 0 {
		o.Settle = 2 * time.Second
	}
	first, err := r.Check(ctx, o.Since)
	if err != nil || first.Agree {
		return first, err
	}
	t := time.NewTimer(o.Settle)
	select {
	case <-ctx.Done():
		t.Stop()
		return nil, ctx.Err()
	case <-t.C:
	}
	rep, err := r.Check(ctx, o.Since)
	if err != nil {
		return nil, err
	}
	seen := map[string]bool{}
	first.each(func(_ *SaleReport, d *Difference) { seen[d.sig] = true })
	kept := 0
	for _, s := range rep.Sales {
		ds := s.Differences[:0]
		for _, d := range s.Differences {
			if seen[d.sig] {
				ds = append(ds, d)
			} else {
				rep.Transient++ // new on the second look
			}
		}
		s.Differences = ds
		kept += len(ds)
	}
	rep.Transient += len(seen) - kept // gone on the second look
	rep.recount()
	if !o.Repair || rep.Agree {
		return rep, nil
	}
	err = r.Repair(ctx, rep, func(d *Difference) bool { return d.Kind != KindUnordered || o.ReleaseUnordered })
	if err != nil {
		return rep, err
	}
	// Confirm: a repaired difference that is still there was not repaired.
	after, err := r.Check(ctx, o.Since)
	if err != nil {
		return rep, err
	}
	still := map[string]bool{}
	after.each(func(_ *SaleReport, d *Difference) { still[d.sig] = true })
	rep.each(func(_ *SaleReport, d *Difference) {
		if d.Repaired && still[d.sig] {
			d.Repaired = false
		}
	})
	rep.recount()
	return rep, nil
}

// Tick is one background pass: a look at the sales that end after
// now-Lookback, and the repair of every difference the previous Tick saw
// identically (unordered holds: seen for StrayAfter too).
func (r *Reconciler) Tick(ctx context.Context) (*Report, error) {
	now := r.cfg.Now()
	rep, err := r.Check(ctx, now.Add(-r.cfg.Lookback))
	if err != nil {
		return nil, err
	}
	r.passes.Inc()
	seen := map[string]time.Time{}
	pick := map[*Difference]bool{}
	total := 0
	rep.each(func(_ *SaleReport, d *Difference) {
		total++
		first, before := r.seen[d.sig]
		if !before {
			first = now
		}
		seen[d.sig] = first
		if before && (d.Kind != KindUnordered || now.Sub(first) >= r.cfg.StrayAfter) {
			pick[d] = true
		}
	})
	r.seen = seen
	r.diffs.Set(float64(total))
	if len(pick) == 0 {
		return rep, nil
	}
	err = r.Repair(ctx, rep, func(d *Difference) bool { return pick[d] })
	rep.each(func(_ *SaleReport, d *Difference) {
		if d.Repaired {
			delete(r.seen, d.sig)
		}
	})
	return rep, err
}

// Forget drops the memory of earlier passes (the next Tick repairs nothing).
func (r *Reconciler) Forget() { r.seen = map[string]time.Time{} }

// Run runs a Tick every Interval until ctx ends, while it holds the lease
// "<Namespace>:reconciler"; a runner that loses the lease forgets what it saw,
// so a difference is repaired only after two passes of the same runner.
func (r *Reconciler) Run(ctx context.Context) {
	leader := service.Leader{Leases: r.cfg.Leases, Key: r.cfg.Namespace + ":reconciler", TTL: 10 * time.Second, Log: r.log}
	leader.Run(ctx, func(ctx context.Context) {
		// What was seen in earlier passes only counts while the lease is
		// held: another runner may have repaired meanwhile.
		defer r.Forget()
		for service.Sleep(ctx, r.cfg.Interval) {
			rep, err := r.Tick(ctx)
			if err != nil {
				if ctx.Err() == nil {
					r.log.Warn("reconciliation pass failed", "err", err)
				}
				continue
			}
			if rep.Repaired > 0 {
				r.log.Warn("reconciler repaired differences between Redis and MySQL", "repaired", rep.Repaired, "remaining", rep.Differences)
			}
		}
	})
}

// Text writes the report for people.
func (r *Report) Text() string {
	var b strings.Builder
	counts := map[SaleStatus]int{}
	for _, s := range r.Sales {
		counts[s.Status]++
		switch s.Status {
		case SaleSkipped, SaleNotLoaded:
			fmt.Fprintf(&b, "sale %s: %s (%s)\n", s.SaleID, s.Status, s.Note)
			continue
		case SaleAgree:
			if len(s.Differences) > 0 {
				fmt.Fprintf(&b, "sale %s: repaired; Redis and MySQL agree\n", s.SaleID)
			} else {
				fmt.Fprintf(&b, "sale %s: Redis and MySQL agree\n", s.SaleID)
			}
		default:
			fmt.Fprintf(&b, "sale %s: DIFFERENT\n", s.SaleID)
		}
		fmt.Fprintf(&b, "  redis: %s\n", showStock(*s.Redis)) // after the repairs, if any
		fmt.Fprintf(&b, "  mysql: %s (orders: %d pending, %d paid, %d expired or cancelled)\n",
			showStock(*s.MySQL), s.Orders.Pending, s.Orders.Paid, s.Orders.Closed)
		if s.Unordered > 0 {
			fmt.Fprintf(&b, "  %d tickets held in Redis without an order\n", s.Unordered)
		}
		for _, d := range s.Differences {
			what := ""
			if d.TicketID != "" {
				what += " ticket " + d.TicketID
			}
			if d.UserID != "" {
				what += " user " + d.UserID
			}
			state := "NOT REPAIRED"
			if d.Repaired {
				state = "repaired"
			}
			fmt.Fprintf(&b, "  - %s%s: redis %s, want %s (%s) [%s]\n", d.Kind, what, d.Redis, d.Want, d.Detail, state)
		}
	}
	fmt.Fprintf(&b, "%d sales: %d agree, %d different, %d not loaded, %d skipped; %d differences remain, %d repaired",
		len(r.Sales), counts[SaleAgree], counts[SaleDiffer], counts[SaleNotLoaded], counts[SaleSkipped], r.Differences, r.Repaired)
	if r.Transient > 0 {
		fmt.Fprintf(&b, "; %d seen on one look only (work in flight)", r.Transient)
	}
	if r.Agree {
		b.WriteString("\nRedis and MySQL agree.\n")
	} else {
		b.WriteString("\nRedis and MySQL DIFFER.\n")
	}
	return b.String()
}
