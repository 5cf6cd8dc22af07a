// Package ops is what the people running a sale look at: the per-sale and
// per-dependency metrics read at scrape time (Collector), the live page that
// draws them every second (Live), and the operations listener that serves
// /metrics, /readyz, /healthz, pprof and the live page on an address of its
// own (Handler).
//
// Nothing here changes the system: the collector and the page only read (the
// stock store, the broker's queue depths, two indexed counts per shard), and
// a source that fails is left out of that scrape and counted in
// flashsale_ops_collect_errors_total{source}, never failing /metrics.
package ops

import (
	"context"
	"errors"
	"log/slog"
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/flashsale/flashsale"
	"github.com/flashsale/flashsale/httpapi"
)

// SaleLister lists sales.
type SaleLister interface {
	// ListSales returns the sales that end after since.
	ListSales(ctx context.Context, since time.Time) ([]*flashsale.Sale, error)
}

// StockReader reads a sale's units where the hot path holds them.
type StockReader interface {
	Stock(ctx context.Context, saleID string) (flashsale.StockLevel, error)
}

// Book is the book of record's per-shard backlogs.
type Book interface {
	Shards() int
	// OutboxBacklog is the number of outbox rows of shard not yet confirmed by
	// the broker.
	OutboxBacklog(ctx context.Context, shard int) (int, error)
	// Overdue is the number of unpaid orders of shard past pay_by at now, and
	// how far past it the oldest is.
	Overdue(ctx context.Context, shard int, now time.Time) (int, time.Duration, error)
}

// WaitingLines counts what the waiting rooms' lines hold (mysqlstore).
type WaitingLines interface {
	// LineEntries counts the tickets waiting in the sale's line (a count
	// row, not a count of the line).
	LineEntries(ctx context.Context, saleID string) (int, error)
	// LineReleased counts the tickets released from the sale's line into the
	// pipeline (reads the released rows only).
	LineReleased(ctx context.Context, saleID string) (int, error)
}

// Check is one readiness probe (see httpapi.Readyz).
type Check = httpapi.Check

// CollectorConfig for a Collector.
type CollectorConfig struct {
	Sales SaleLister  // required
	Stock StockReader // required
	// Book gives the outbox backlog and overdue orders per shard; nil: not
	// exported.
	Book Book
	// Queues gives the queue depths; nil: not exported.
	Queues func(ctx context.Context) ([]flashsale.QueueStat, error)
	// Lines gives the waiting rooms' entries and releases; nil: not
	// exported.
	Lines WaitingLines
	// Ready are the process's readiness checks, exported as flashsale_ready
	// (1 when all pass). Empty: flashsale_ready is 1 while the process runs.
	Ready []Check
	// Role names the process's role(s) (the subcommand) in flashsale_ready{role}.
	// Default "all".
	Role string
	// Retain is how long after its end a sale keeps its flashsale_sale_units and
	// flashsale_sale_state series. Default 1 h. The label set is bounded by the
	// sales admins create in that span.
	Retain time.Duration
	// SalesTTL is how long the list of sales is reused between scrapes (a new
	// sale shows up within it). Default 2 s.
	SalesTTL time.Duration
	// Timeout bounds one collection. Default 3 s.
	Timeout time.Duration
	// Log default slog.Default(); Now default time.Now.
	Log *slog.Logger
	Now func() time.Time
}

// Collector is a prometheus.Collector that reads, at each scrape:
//
//	flashsale_sale_units{sale,state}         units available / held / sold (the sale view's stock)
//	flashsale_sale_state{sale,state}         1 for the sale's state (scheduled … ended)
//	flashsale_waiting_room_entries{sale}     tickets waiting in a waiting room's line
//	flashsale_waiting_room_admitted_total{sale} tickets released from it into the pipeline
//	flashsale_waiting_room_waitlist{sale}    the waitlist W of the sale's waiting room
//	flashsale_queue_messages{queue}          messages ready in each queue
//	flashsale_queue_consumers{queue}         consumers of each queue
//	flashsale_outbox_backlog{shard}          outbox rows not yet confirmed by the broker
//	flashsale_expiry_overdue_orders{shard}   unpaid orders past pay_by
//	flashsale_expiry_overdue_seconds{shard}  how far past pay_by the oldest of them is
//	flashsale_ready{role}                    1 when every readiness check passes
//
// Every process that runs one exports the same sale, queue and shard series:
// aggregate them with max, not sum (deploy/prometheus does). Safe for
// concurrent use.
type Collector struct {
	cfg    CollectorConfig
	log    *slog.Logger
	errors *prometheus.CounterVec

	mu      sync.Mutex
	sales   []*flashsale.Sale
	salesAt time.Time
	logged  map[string]time.Time // source -> when its last failure was logged
}

var (
	descUnits     = prometheus.NewDesc("flashsale_sale_units", "A sale's units by state (available, held: in unpaid orders or being ordered, sold), as the sale view reads them.", []string{"sale", "state"}, nil)
	descState     = prometheus.NewDesc("flashsale_sale_state", "1 for a sale's current state (scheduled, reservation_open, upcoming, open, sold_out, ended).", []string{"sale", "state"}, nil)
	descQueueMsgs = prometheus.NewDesc("flashsale_queue_messages", "Messages ready for delivery in a queue (a passive declare; unacked deliveries not included).", []string{"queue"}, nil)
	descQueueCons = prometheus.NewDesc("flashsale_queue_consumers", "Consumers of a queue.", []string{"queue"}, nil)
	descOutbox    = prometheus.NewDesc("flashsale_outbox_backlog", "Outbox rows of a shard not yet confirmed by the broker.", []string{"shard"}, nil)
	descOverdueN  = prometheus.NewDesc("flashsale_expiry_overdue_orders", "Unpaid orders of a shard past their pay_by (expiry should take them within seconds).", []string{"shard"}, nil)
	descOverdueS  = prometheus.NewDesc("flashsale_expiry_overdue_seconds", "How long past pay_by the oldest unpaid order of a shard is (0: none).", []string{"shard"}, nil)
	descReady     = prometheus.NewDesc("flashsale_ready", "1 when every readiness check of the process passes (the /readyz answer), else 0.", []string{"role"}, nil)
	descWREntries = prometheus.NewDesc("flashsale_waiting_room_entries", "Tickets waiting in a sale's waiting room line (the sale view's waiting_room.entries).", []string{"sale"}, nil)
	descWRAdmit   = prometheus.NewDesc("flashsale_waiting_room_admitted_total", "Tickets released from a sale's waiting room line into the purchase pipeline, as the line records them (the same in every process; its rate is the line's pace).", []string{"sale"}, nil)
	descWRList    = prometheus.NewDesc("flashsale_waiting_room_waitlist", "The waitlist W of a sale's waiting room: the tickets kept waiting once every unit is taken.", []string{"sale"}, nil)
)

// unitStates are the values of flashsale_sale_units' state label.
var unitStates = []string{"available", "held", "sold"}

// NewCollector returns a Collector; register it with the process's registry.
func NewCollector(cfg CollectorConfig) (*Collector, error) {
	if cfg.Sales == nil || cfg.Stock == nil {
		return nil, errors.New("ops: Sales and Stock are required")
	}
	if cfg.Role == "" {
		cfg.Role = "all"
	}
	if cfg.Retain == 0 {
		cfg.Retain = time.Hour
	}
	if cfg.SalesTTL == 0 {
		cfg.SalesTTL = 2 * time.Second
	}
	if cfg.Timeout == 0 {
		cfg.Timeout = 3 * time.Second
	}
	if cfg.Retain < 0 || cfg.SalesTTL < 0 || cfg.Timeout < 0 {
		return nil, errors.New("ops: Retain, SalesTTL and Timeout must be positive")
	}
	if cfg.Log == nil {
		cfg.Log = slog.Default()
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	c := &Collector{cfg: cfg, log: cfg.Log, logged: map[string]time.Time{},
		errors: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "flashsale_ops_collect_errors_total",
			Help: "Scrape-time reads that failed and were left out of a scrape, by source (sales, stock, queues, outbox, overdue, waiting_room)."}, []string{"source"})}
	for _, s := range []string{"sales", "stock", "queues", "outbox", "overdue", "waiting_room"} {
		c.errors.WithLabelValues(s)
	}
	return c, nil
}

// Describe implements prometheus.Collector.
func (c *Collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descUnits, descState, descQueueMsgs, descQueueCons, descOutbox, descOverdueN, descOverdueS, descReady,
		descWREntries, descWRAdmit, descWRList} {
		ch <- d
	}
	c.errors.Describe(ch)
}

// Collect implements prometheus.Collector.
func (c *Collector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), c.cfg.Timeout)
	defer cancel()
	now := c.cfg.Now()
	var wg sync.WaitGroup
	wg.Add(3)
	go func() { defer wg.Done(); c.collectSales(ctx, ch, now) }()
	go func() { defer wg.Done(); c.collectQueues(ctx, ch) }()
	go func() { defer wg.Done(); c.collectBook(ctx, ch, now) }()
	ready := 1.0
	for _, check := range c.cfg.Ready {
		if err := check(ctx); err != nil {
			ready = 0
		}
	}
	ch <- prometheus.MustNewConstMetric(descReady, prometheus.GaugeValue, ready, c.cfg.Role)
	wg.Wait()
	c.errors.Collect(ch)
}

// failed counts a failed read and logs it, at most once a minute per source
// (a scrape a second during an outage would flood the log).
func (c *Collector) failed(source string, err error) {
	c.errors.WithLabelValues(source).Inc()
	c.mu.Lock()
	last := c.logged[source]
	now := time.Now()
	quiet := now.Sub(last) < time.Minute
	if !quiet {
		c.logged[source] = now
	}
	c.mu.Unlock()
	if !quiet {
		c.log.Warn("ops: a metrics source failed; left out of scrapes while it fails (logged once a minute)", "source", source, "err", err)
	}
}

// listSales returns the sales that ended less than Retain ago, from a list
// reused for SalesTTL.
func (c *Collector) listSales(ctx context.Context, now time.Time) ([]*flashsale.Sale, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.sales != nil && now.Sub(c.salesAt) < c.cfg.SalesTTL {
		return c.sales, nil
	}
	sales, err := c.cfg.Sales.ListSales(ctx, now.Add(-c.cfg.Retain))
	if err != nil {
		return nil, err
	}
	if sales == nil {
		sales = []*flashsale.Sale{}
	}
	c.sales, c.salesAt = sales, now
	return sales, nil
}

func (c *Collector) collectSales(ctx context.Context, ch chan<- prometheus.Metric, now time.Time) {
	sales, err := c.listSales(ctx, now)
	if err != nil {
		c.failed("sales", err)
		return
	}
	for _, s := range sales {
		if !now.Before(s.EndsAt.Add(c.cfg.Retain)) {
			continue
		}
		st, err := c.cfg.Stock.Stock(ctx, s.ID)
		if err != nil {
			c.failed("stock", err)
			continue
		}
		for i, v := range []int{st.Available, st.Held, st.Sold} {
			ch <- prometheus.MustNewConstMetric(descUnits, prometheus.GaugeValue, float64(v), s.ID, unitStates[i])
		}
		ch <- prometheus.MustNewConstMetric(descState, prometheus.GaugeValue, 1, s.ID, string(s.StateAt(now, st.Available)))
		c.collectWaitingRoom(ctx, ch, s)
	}
}

// collectWaitingRoom exports the waiting room of s, if it has one: two
// indexed reads (the count row, the released rows).
func (c *Collector) collectWaitingRoom(ctx context.Context, ch chan<- prometheus.Metric, s *flashsale.Sale) {
	if s.WaitingRoom == nil || c.cfg.Lines == nil {
		return
	}
	entries, err := c.cfg.Lines.LineEntries(ctx, s.ID)
	if err != nil {
		c.failed("waiting_room", err)
		return
	}
	admitted, err := c.cfg.Lines.LineReleased(ctx, s.ID)
	if err != nil {
		c.failed("waiting_room", err)
		return
	}
	ch <- prometheus.MustNewConstMetric(descWREntries, prometheus.GaugeValue, float64(entries), s.ID)
	ch <- prometheus.MustNewConstMetric(descWRAdmit, prometheus.CounterValue, float64(admitted), s.ID)
	ch <- prometheus.MustNewConstMetric(descWRList, prometheus.GaugeValue, float64(s.WaitingRoom.Waitlist), s.ID)
}

func (c *Collector) collectQueues(ctx context.Context, ch chan<- prometheus.Metric) {
	if c.cfg.Queues == nil {
		return
	}
	stats, err := c.cfg.Queues(ctx)
	if err != nil {
		c.failed("queues", err)
	}
	for _, q := range stats {
		ch <- prometheus.MustNewConstMetric(descQueueMsgs, prometheus.GaugeValue, float64(q.Messages), q.Name)
		ch <- prometheus.MustNewConstMetric(descQueueCons, prometheus.GaugeValue, float64(q.Consumers), q.Name)
	}
}

func (c *Collector) collectBook(ctx context.Context, ch chan<- prometheus.Metric, now time.Time) {
	if c.cfg.Book == nil {
		return
	}
	for shard := 0; shard < c.cfg.Book.Shards(); shard++ {
		label := strconv.Itoa(shard)
		if n, err := c.cfg.Book.OutboxBacklog(ctx, shard); err != nil {
			c.failed("outbox", err)
		} else {
			ch <- prometheus.MustNewConstMetric(descOutbox, prometheus.GaugeValue, float64(n), label)
		}
		if n, oldest, err := c.cfg.Book.Overdue(ctx, shard, now); err != nil {
			c.failed("overdue", err)
		} else {
			ch <- prometheus.MustNewConstMetric(descOverdueN, prometheus.GaugeValue, float64(n), label)
			ch <- prometheus.MustNewConstMetric(descOverdueS, prometheus.GaugeValue, oldest.Seconds(), label)
		}
	}
}
