// Package worker turns queued purchases into held stock and orders.
//
// For each batch of purchase messages it holds stock in the stock store (a Lua
// script, idempotent per ticket), commits the orders of each shard in one
// transaction (order + order.created outbox row), re-asserts each hold (a no-op
// unless Redis lost it meanwhile) and writes those orders' fast ticket copies
// as soon as their shard committed, records tickets that made no order, writes
// their copies, and only then acks. Any failure before the ack hands the
// message back; every step is idempotent, so a redelivery completes what a crash
// interrupted. A message that can never succeed is dead-lettered; the dead-letter
// consumer releases whatever it held and fails its ticket.
//
// MySQL has the last word: the order transaction refuses units the sale's stock
// cap does not have, and units over the user's per_user_limit, whatever Redis
// said. Such a ticket ends sold_out (or failed), and Redis, which was behind, is
// rebuilt from MySQL.
//
// A dependency that is away (Redis or MySQL restarting, a failover) does not
// fail purchases: a message whose steps failed is settled with Retry, and the
// consumer's retry rule (queue.Retry, the same for every consumer) hands it to
// the worker again with backoff, for up to its budget, before the queue's
// delivery limit counts it.
package worker

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/flashsale/flashsale"
	"github.com/flashsale/flashsale/internal/groupcommit"
)

// Stock is the stock store's hot path.
type Stock interface {
	// Hold and Reassert run one script per element in one round trip; the i-th
	// result and error belong to the i-th element.
	Hold(ctx context.Context, sales []*flashsale.Sale, reqs []*flashsale.PurchaseRequest) ([]flashsale.Hold, []error)
	Reassert(ctx context.Context, parts []flashsale.Part) ([]flashsale.Hold, []error)
	Release(ctx context.Context, p flashsale.Part) (flashsale.Hold, error)
	PutTickets(ctx context.Context, tickets ...*flashsale.Ticket) error
	// Resync rebuilds the sale's stock from the book of record: Redis said units
	// were there that MySQL refused.
	Resync(ctx context.Context, saleID string) error
}

// Orders is the book of record.
type Orders interface {
	ShardOf(userID string) int
	CreateOrders(ctx context.Context, shard int, orders []*flashsale.Order) ([]flashsale.OrderResult, error)
	GetOrder(ctx context.Context, ref flashsale.OrderRef) (*flashsale.Order, error)
	// GetTicket returns a ticket past queued: from its order or its recorded
	// decision; flashsale.ErrNotFound when it has neither.
	GetTicket(ctx context.Context, ref flashsale.TicketRef) (*flashsale.Ticket, error)
	// RecordOutcomes records the decisions of tickets that made no order and
	// returns the decisions that stand instead, where another came first
	// (TicketPendingPayment: the ticket made an order).
	RecordOutcomes(ctx context.Context, shard int, tickets []*flashsale.Ticket) (map[string]flashsale.TicketStatus, error)
	// GiveUp records that the ticket makes no order unless it made one first,
	// and reports whether it did.
	GiveUp(ctx context.Context, t *flashsale.Ticket) (ordered bool, err error)
}

// Expiries schedules the expiry of unpaid orders at their pay_by
// (delayq.Scheduler).
type Expiries interface {
	// Schedule returns nil only once every order's expiry is scheduled.
	Schedule(ctx context.Context, orders []*flashsale.Order) error
}

// Config for a Worker.
type Config struct {
	Sales    flashsale.SaleFinder // required
	Stock    Stock                // required
	Orders   Orders               // required
	Expiries Expiries             // required
	// Log default slog.Default().
	Log *slog.Logger
	// Registry receives the worker's metrics; nil registers nothing.
	Registry prometheus.Registerer
	// Now is the clock; default time.Now.
	Now func() time.Time
}

// Worker processes purchase batches. Safe for concurrent use.
type Worker struct {
	cfg      Config
	log      *slog.Logger
	outcomes *prometheus.CounterVec
	refused  *prometheus.CounterVec
	batchDur prometheus.Histogram
	stageDur *prometheus.HistogramVec

	final prometheus.Histogram // flashsale_ticket_final_seconds (metrics.go)

	// commits holds one *orderCommit per shard: the order batches of the
	// handlers that reach a shard together share its transaction.
	commits sync.Map
}

// orderCommit gathers the order batches of concurrent handlers for one shard
// into one CreateOrders call: one transaction instead of several queueing
// one after the other on the shard's allotment row (every order transaction
// of a shard updates it). A ticket in two of the batches (two deliveries of
// one purchase, taken by two handlers) goes into the transaction once and
// both get its result: twice in one transaction, the second would be refused
// as its user's second live order, and its hold released.
type orderCommit = groupcommit.Group[[]*flashsale.Order, []flashsale.OrderResult]

// maxSharedBatches bounds how many handlers' batches share a transaction.
const maxSharedBatches = 4

// orderCommitOf returns shard's orderCommit.
func (w *Worker) orderCommitOf(shard int) *orderCommit {
	if g, ok := w.commits.Load(shard); ok {
		return g.(*orderCommit)
	}
	g, _ := w.commits.LoadOrStore(shard, &orderCommit{Max: maxSharedBatches, Run: func(ctx context.Context, batches [][]*flashsale.Order) ([]groupcommit.Result[[]flashsale.OrderResult], error) {
		var all []*flashsale.Order
		at := map[string]int{} // ticket (order id) -> its place in all
		for _, b := range batches {
			for _, o := range b {
				if _, ok := at[o.ID]; !ok {
					at[o.ID] = len(all)
					all = append(all, o)
				}
			}
		}
		results, err := w.cfg.Orders.CreateOrders(ctx, shard, all)
		if err != nil {
			return nil, err
		}
		out := make([]groupcommit.Result[[]flashsale.OrderResult], len(batches))
		for i, b := range batches {
			out[i].Out = make([]flashsale.OrderResult, len(b))
			for j, o := range b {
				out[i].Out[j] = results[at[o.ID]]
			}
		}
		return out, nil
	}})
	return g.(*orderCommit)
}

// New returns a Worker.
func New(cfg Config) (*Worker, error) {
	if cfg.Sales == nil || cfg.Stock == nil || cfg.Orders == nil || cfg.Expiries == nil {
		return nil, errors.New("worker: Sales, Stock, Orders and Expiries are required")
	}
	if cfg.Log == nil {
		cfg.Log = slog.Default()
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	w := &Worker{cfg: cfg, log: cfg.Log,
		outcomes: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "flashsale_worker_messages_total",
			Help: "Purchase messages settled by the worker, by outcome."}, []string{"outcome"}),
		batchDur: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "flashsale_worker_batch_seconds",
			Help: "Time to process one batch of purchase messages.", Buckets: prometheus.DefBuckets}),
		stageDur: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "flashsale_worker_stage_seconds",
			Help:    "Time of each stage of one attempt at a purchase batch (sales, hold, orders, outcomes, tickets, expiries).",
			Buckets: prometheus.DefBuckets}, []string{"stage"}),
		refused: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "flashsale_stock_cap_refusals_total",
			Help: "Orders MySQL refused although Redis held their units, by reason (sold_out: the stock cap; over_limit: per_user_limit). Each one means Redis was behind MySQL and was rebuilt."},
			[]string{"reason"}),
	}
	if cfg.Registry != nil {
		cfg.Registry.MustRegister(w.outcomes, w.refused, w.batchDur, w.stageDur)
	}
	w.initOpsMetrics()
	return w, nil
}

// item is one message on its way through a batch. A bundle's lines are held
// one script per sale (each sale's keys live in their own Redis slot): a saga
// whose compensation is the release of the lines held, after the ticket's
// decision is recorded in MySQL. Every step is idempotent per ticket and sale,
// so a crash between any two is completed by the redelivery.
type item struct {
	msg    flashsale.Message
	req    *flashsale.PurchaseRequest
	lines  []flashsale.Line
	sales  []*flashsale.Sale   // sales[i] is the sale of lines[i]; nil until read
	held   []bool              // held[i]: lines[i] is held in the stock store
	ticket *flashsale.Ticket   // the final ticket to write, once known
	put    bool                // ticket written to the stock store (and announced)
	twins  []flashsale.Message // more messages of the same ticket in the batch: settled as msg is
	failed bool                // settle with Retry: the consumer's retry rule hands it back
	resync bool                // MySQL refused what Redis held: rebuild the sales in Redis
}

// readSales reads the item's sales that are not read yet.
func (it *item) readSales(ctx context.Context, sales flashsale.SaleFinder) error {
	for i, l := range it.lines {
		if it.sales[i] != nil {
			continue
		}
		sale, err := sales.Get(ctx, l.SaleID)
		if err != nil {
			return err
		}
		it.sales[i] = sale
	}
	return nil
}

func (w *Worker) settle(outcome string, fn func() error) {
	if err := fn(); err != nil {
		// The channel is gone; the broker redelivers it.
		w.log.Debug("settling a message failed", "err", err)
	}
	w.outcomes.WithLabelValues(outcome).Inc()
}

// HandlePurchases processes one batch and settles every message in it: acked
// once its ticket is final, Retry when a step failed (the consumer's retry
// rule hands it back after a wait), dead-lettered when it can never succeed.
// Each call is one attempt: a batch of retried messages is processed again
// from the start, every step being idempotent per ticket.
func (w *Worker) HandlePurchases(ctx context.Context, msgs []flashsale.Message) {
	ctx = flashsale.WithStage(ctx, "worker")
	start := time.Now()
	defer func() { w.batchDur.Observe(time.Since(start).Seconds()) }()
	items := make([]*item, 0, len(msgs))
	byTicket := map[string]*item{}
	for _, m := range msgs {
		var req flashsale.PurchaseRequest
		if err := json.Unmarshal(m.Body(), &req); err != nil || !req.Valid() {
			w.log.Error("dead-lettering a malformed purchase message", "err", err, "body", string(m.Body()))
			w.settle("dead_letter", m.DeadLetter)
			continue
		}
		// A ticket queued twice (its purchase retried after Redis lost its
		// claim: ticket ids are minted, so the retry is the same ticket) is
		// one order: the batch processes it once and settles both messages
		// alike, never two rows of one ticket in one order transaction.
		if first := byTicket[req.TicketID]; first != nil {
			first.twins = append(first.twins, m)
			continue
		}
		lines := req.Lines()
		it := &item{msg: m, req: &req, lines: lines, sales: make([]*flashsale.Sale, len(lines)), held: make([]bool, len(lines))}
		if err := it.readSales(ctx, w.cfg.Sales); errors.Is(err, flashsale.ErrNotFound) {
			w.log.Error("dead-lettering a purchase of an unknown sale", "ticket", req.TicketID, "err", err)
			w.settle("dead_letter", m.DeadLetter)
			continue
		}
		items = append(items, it) // sales not read: read again in process
		byTicket[req.TicketID] = it
	}
	if len(items) == 0 {
		return
	}
	w.process(ctx, items)
	for _, it := range items {
		same := append([]flashsale.Message{it.msg}, it.twins...)
		if it.failed {
			// Not counted in flashsale_worker_messages_total: the messages
			// are not settled yet (flashsale_consumer_retries_total counts them).
			for _, m := range same {
				m.Retry()
			}
			continue
		}
		for _, m := range same {
			w.settle(string(it.ticket.Status), m.Ack)
		}
		w.observeFinal(it.req, it.ticket)
	}
}

// process takes items as far as they go: each ends with its final ticket, or
// failed (to be tried again).
func (w *Worker) process(ctx context.Context, items []*item) {
	stage := time.Now()
	var todo []*item
	for _, it := range items {
		if err := it.readSales(ctx, w.cfg.Sales); err != nil {
			w.log.Warn("cannot read sale; retrying", "ticket", it.req.TicketID, "err", err)
			it.failed = true
			continue
		}
		it.ticket, it.resync, it.put = nil, false, false
		clear(it.held)
		todo = append(todo, it)
	}
	stage = w.stage("sales", stage)
	w.hold(ctx, todo)
	stage = w.stage("hold", stage)
	w.createOrders(ctx, todo)
	stage = w.stage("orders", stage)
	w.recordOutcomes(ctx, items)
	w.compensate(ctx, items)
	stage = w.stage("outcomes", stage)
	w.resync(ctx, todo)
	w.writeTickets(ctx, items)
	stage = w.stage("tickets", stage)
	w.scheduleExpiries(ctx, items)
	w.stage("expiries", stage)
}

// scheduleExpiries schedules the expiry of the order of every item whose
// ticket ends pending_payment, in one call, before its delivery is acked: the
// one rule for every way a delivery reaches an unpaid order (created now,
// found made by an earlier delivery, followed after a refusal; a dead letter
// whose order stands, too). A crash or a failure before it redelivers the
// purchase, which finds its order and schedules it again; a duplicate expiry
// changes nothing, and the sweeper expires an order whose expiry message was
// lost within a sweep of its pay_by.
func (w *Worker) scheduleExpiries(ctx context.Context, items []*item) {
	var todo []*item
	var orders []*flashsale.Order
	for _, it := range items {
		if !it.failed && it.ticket != nil && it.ticket.Status == flashsale.TicketPendingPayment && it.ticket.Unpaid != nil {
			todo = append(todo, it)
			orders = append(orders, it.ticket.Unpaid)
		}
	}
	if len(orders) == 0 {
		return
	}
	if err := w.cfg.Expiries.Schedule(ctx, orders); err != nil {
		w.log.Warn("scheduling expiries failed; retrying", "orders", len(orders), "err", err)
		for _, it := range todo {
			it.failed = true
		}
	}
}

// resync rebuilds in Redis each sale whose units MySQL refused, once the
// refusals are recorded (the rebuild reads the orders, which they are not).
func (w *Worker) resync(ctx context.Context, items []*item) {
	done := map[string]error{}
	for _, it := range items {
		if it.failed || !it.resync {
			continue
		}
		for _, sale := range it.sales {
			err, ok := done[sale.ID]
			if !ok {
				err = w.cfg.Stock.Resync(ctx, sale.ID)
				done[sale.ID] = err
				if err == nil {
					w.log.Warn("MySQL refused units Redis held; rebuilt the sale in Redis from MySQL", "sale", sale.ID)
				}
			}
			if err != nil {
				w.log.Warn("rebuilding a sale in Redis failed; retrying", "sale", sale.ID, "err", err)
				it.failed = true
			}
		}
	}
}

// stage records the time since start under name and returns now.
func (w *Worker) stage(name string, start time.Time) time.Time {
	now := time.Now()
	w.stageDur.WithLabelValues(name).Observe(now.Sub(start).Seconds())
	return now
}

// hold runs the hold script for each line of each item, all in one round trip,
// and decides the tickets of those that will make no order (or made one
// already): the first line not held decides. Lines held of a ticket decided so
// are released by compensate once the decision is recorded.
func (w *Worker) hold(ctx context.Context, items []*item) {
	type call struct {
		it   *item
		line int
	}
	var calls []call
	var sales []*flashsale.Sale
	var reqs []*flashsale.PurchaseRequest
	for _, it := range items {
		if it.failed {
			continue
		}
		for i := range it.lines {
			calls = append(calls, call{it, i})
			sales = append(sales, it.sales[i])
			reqs = append(reqs, it.req.LineRequest(i))
		}
	}
	if len(calls) == 0 {
		return
	}
	holds, errs := w.cfg.Stock.Hold(ctx, sales, reqs)
	first := map[*item]flashsale.Hold{} // the first line not held, per item
	for i, c := range calls {
		h, err := holds[i], errs[i]
		if err != nil {
			w.log.Warn("hold failed; retrying", "ticket", c.it.req.TicketID, "sale", c.it.lines[c.line].SaleID, "err", err)
			c.it.failed = true
			continue
		}
		if h.Kind == flashsale.HoldHeld {
			c.it.held[c.line] = true
		} else if _, seen := first[c.it]; !seen {
			first[c.it] = h
		}
	}
	for _, it := range items {
		h, refused := first[it]
		if it.failed || !refused {
			continue // all held: the order is created below
		}
		switch h.Kind {
		case flashsale.HoldSoldOut:
			it.ticket = it.req.Ticket(flashsale.TicketSoldOut)
		case flashsale.HoldRefused:
			it.ticket = it.req.Ticket(flashsale.TicketFailed)
		default:
			// Sold or released: the ticket went further before (its order may
			// exist, or its decision was recorded: a dead letter, a bundle
			// whose other line was refused).
			t, err := w.cfg.Orders.GetTicket(ctx, flashsale.TicketRef{User: it.req.UserID, Ticket: it.req.TicketID})
			switch {
			case err == nil:
				it.ticket = t
			case errors.Is(err, flashsale.ErrNotFound):
				it.ticket = it.req.Ticket(flashsale.TicketFailed)
			default:
				it.failed = true
			}
		}
	}
}

// compensate releases the lines held of tickets decided without an order (a
// bundle with a line refused), after the decision is recorded: a redelivery
// then finds the decision and releases again (idempotent), never orders.
func (w *Worker) compensate(ctx context.Context, items []*item) {
	for _, it := range items {
		if it.failed || it.ticket == nil || it.ticket.OrderID != "" {
			continue
		}
		for i, l := range it.lines {
			if !it.held[i] {
				continue
			}
			if _, err := w.cfg.Stock.Release(ctx, it.req.Part(l)); err != nil {
				w.log.Warn("releasing a line of a refused bundle failed; retrying", "ticket", it.req.TicketID, "sale", l.SaleID, "err", err)
				it.failed = true
				break
			}
		}
	}
}

// createOrders commits the orders of held items, one transaction per shard.
func (w *Worker) createOrders(ctx context.Context, items []*item) {
	byShard := map[int][]*item{}
	for _, it := range items {
		if !it.failed && it.ticket == nil {
			s := w.cfg.Orders.ShardOf(it.req.UserID)
			byShard[s] = append(byShard[s], it)
		}
	}
	now := w.cfg.Now().UTC().Truncate(time.Microsecond)
	// Shards commit in parallel: each transaction mostly waits for its commit.
	var wg sync.WaitGroup
	for shard, group := range byShard {
		wg.Add(1)
		go func() {
			defer wg.Done()
			w.createShardOrders(ctx, shard, group, now)
		}()
	}
	wg.Wait()
}

// createShardOrders commits one shard's orders in one transaction (shared with
// other handlers' batches for the shard, see orderCommit), then makes
// Redis follow what MySQL has. Items of group are only touched here.
func (w *Worker) createShardOrders(ctx context.Context, shard int, group []*item, now time.Time) {
	orders := make([]*flashsale.Order, len(group))
	for i, it := range group {
		orders[i] = newOrder(it, now)
	}
	results, err := w.orderCommitOf(shard).Do(ctx, orders)
	if err != nil {
		w.log.Warn("creating orders failed; retrying the batch", "shard", shard, "orders", len(orders), "err", err)
		for _, it := range group {
			it.failed = true
		}
		return
	}
	var pending []*item // one per part
	var parts []flashsale.Part
	for i, r := range results {
		if r.Current != nil && r.Current.Status == flashsale.OrderPendingPayment {
			group[i].ticket = flashsale.TicketOf(r.Current)
			for _, p := range r.Current.Parts() {
				pending = append(pending, group[i])
				parts = append(parts, p)
			}
			continue
		}
		w.settleOrder(ctx, group[i], r)
	}
	if len(pending) == 0 {
		return
	}
	_, errs := w.cfg.Stock.Reassert(ctx, parts)
	for i, err := range errs {
		if err != nil {
			w.log.Warn("re-asserting a hold after commit failed; retrying", "ticket", pending[i].req.TicketID, "sale", parts[i].SaleID, "err", err)
			pending[i].failed = true
		}
	}
	// The tickets of these orders are final: written (and announced to their
	// streams) now, not once the other shards' transactions and the batch's
	// other steps are done, so that a pending_payment reaches its stream
	// within 1 s of the order's created_at (contract §2) while another shard
	// waits for a lock. (Tickets without an order wait for their decision to
	// be recorded: recordOutcomes.)
	var ordered []*item
	for _, it := range group {
		if it.ticket != nil && it.ticket.OrderID != "" {
			ordered = append(ordered, it)
		}
	}
	w.writeTickets(ctx, ordered)
}

// newOrder is the order a held item makes at now.
func newOrder(it *item, now time.Time) *flashsale.Order {
	o := &flashsale.Order{ID: it.req.TicketID, UserID: it.req.UserID, Status: flashsale.OrderPendingPayment,
		CreatedAt: now, PayBy: flashsale.PayBy(now, it.sales...)}
	items := make([]flashsale.OrderItem, len(it.lines))
	for i, l := range it.lines {
		items[i] = flashsale.OrderItem{SaleID: l.SaleID, Quantity: l.Quantity, AmountCents: it.sales[i].PriceCents * int64(l.Quantity)}
	}
	o.SetItems(items)
	return o
}

// settleOrder makes Redis follow what MySQL decided for the item when it is not
// a pending order (those are re-asserted in one round trip by createOrders).
func (w *Worker) settleOrder(ctx context.Context, it *item, r flashsale.OrderResult) {
	release := false
	switch {
	case r.Outcome == flashsale.CreateLiveConflict:
		release, it.ticket = true, it.req.Ticket(flashsale.TicketFailed)
	case r.Outcome == flashsale.CreateDecided:
		// Given up before (a dead letter, a released hold): the decision stands
		// and whatever this delivery held goes back.
		release, it.ticket = true, it.req.Ticket(r.Decision)
	case r.Outcome == flashsale.CreateSoldOut:
		// Recorded by recordOutcomes, then released by compensate.
		w.refused.WithLabelValues("sold_out").Inc()
		it.ticket, it.resync = it.req.Ticket(flashsale.TicketSoldOut), true
	case r.Outcome == flashsale.CreateOverLimit:
		w.refused.WithLabelValues("over_limit").Inc()
		it.ticket, it.resync = it.req.Ticket(flashsale.TicketFailed), true
	case r.Current.Status == flashsale.OrderPaid:
		it.ticket = flashsale.TicketOf(r.Current)
	default:
		// Expired or cancelled before this redelivery: whatever this delivery
		// held goes back (release is idempotent).
		release, it.ticket = true, flashsale.TicketOf(r.Current)
	}
	if !release {
		return
	}
	for _, l := range it.lines {
		if _, err := w.cfg.Stock.Release(ctx, it.req.Part(l)); err != nil {
			w.log.Warn("settling a hold after commit failed; retrying", "ticket", it.req.TicketID, "sale", l.SaleID, "err", err)
			it.failed = true
			return
		}
	}
}

// recordOutcomes stores the tickets that made no order, per shard. A ticket
// whose first decision was another stays with that one: in particular one that
// made its order in an earlier attempt, whose hold Redis lost since (it was
// refused this time), follows its order and has its hold re-asserted.
func (w *Worker) recordOutcomes(ctx context.Context, items []*item) {
	byShard := map[int][]*item{}
	for _, it := range items {
		if !it.failed && it.ticket != nil && it.ticket.OrderID == "" {
			s := w.cfg.Orders.ShardOf(it.req.UserID)
			byShard[s] = append(byShard[s], it)
		}
	}
	for shard, group := range byShard {
		tickets := make([]*flashsale.Ticket, len(group))
		for i, it := range group {
			tickets[i] = it.ticket
		}
		stand, err := w.cfg.Orders.RecordOutcomes(ctx, shard, tickets)
		if err != nil {
			w.log.Warn("recording ticket outcomes failed; retrying", "shard", shard, "err", err)
			for _, it := range group {
				it.failed = true
			}
			continue
		}
		for _, it := range group {
			switch st, ok := stand[it.req.TicketID]; {
			case !ok:
			case st == flashsale.TicketPendingPayment:
				w.followOrder(ctx, it)
			default:
				it.ticket.Status = st
			}
		}
	}
}

// followOrder makes a ticket refused in this attempt follow the order it made
// in an earlier one: its ticket is the order's, and a pending order's holds are
// re-asserted in Redis.
func (w *Worker) followOrder(ctx context.Context, it *item) {
	o, err := w.cfg.Orders.GetOrder(ctx, flashsale.OrderRef{User: it.req.UserID, Order: it.req.TicketID})
	if err == nil && o.Status == flashsale.OrderPendingPayment {
		_, errs := w.cfg.Stock.Reassert(ctx, o.Parts())
		err = errors.Join(errs...)
	}
	if err != nil {
		w.log.Warn("following the order of a ticket refused after it was ordered failed; retrying", "ticket", it.req.TicketID, "err", err)
		it.failed = true
		return
	}
	it.ticket = flashsale.TicketOf(o)
}

// writeTickets writes the fast copies of the decided tickets of items not
// written yet, in one round trip.
func (w *Worker) writeTickets(ctx context.Context, items []*item) {
	var todo []*item
	var tickets []*flashsale.Ticket
	for _, it := range items {
		if !it.failed && !it.put && it.ticket != nil {
			todo = append(todo, it)
			tickets = append(tickets, it.ticket)
		}
	}
	if len(tickets) == 0 {
		return
	}
	if err := w.cfg.Stock.PutTickets(ctx, tickets...); err != nil {
		w.log.Warn("writing tickets failed; retrying", "err", err)
		for _, it := range todo {
			it.failed = true
		}
		return
	}
	for _, it := range todo {
		it.put = true
	}
}

// HandleDeadLetters settles dead-lettered purchases: whatever the ticket held is
// released (and can never be held again) and the ticket fails, unless it made an
// order after all, which then stands. A dead letter whose steps failed is
// settled with Retry (the consumer's retry rule; the dead-letter queue has no
// delivery limit, so it is tried until it is done).
func (w *Worker) HandleDeadLetters(ctx context.Context, msgs []flashsale.Message) {
	ctx = flashsale.WithStage(ctx, "worker")
	for _, m := range msgs {
		if err := w.deadLetter(ctx, m); err != nil {
			w.log.Warn("handling a dead letter failed; retrying", "err", err)
			m.Retry()
			continue
		}
		w.settle("dead_letter_settled", m.Ack)
	}
}

func (w *Worker) deadLetter(ctx context.Context, m flashsale.Message) error {
	var req flashsale.PurchaseRequest
	if err := json.Unmarshal(m.Body(), &req); err != nil || !req.Valid() {
		w.log.Error("dropping a malformed dead letter", "body", string(m.Body()))
		return nil
	}
	// The decision first: an order committing right now either made it (and
	// stands) or loses to this one; only then is the hold released.
	t := req.Ticket(flashsale.TicketFailed)
	ordered, err := w.cfg.Orders.GiveUp(ctx, t)
	if err != nil {
		return err
	}
	if ordered {
		o, err := w.cfg.Orders.GetOrder(ctx, flashsale.OrderRef{User: req.UserID, Order: req.TicketID})
		if err != nil {
			return err
		}
		if err := w.cfg.Stock.PutTickets(ctx, flashsale.TicketOf(o)); err != nil || o.Status != flashsale.OrderPendingPayment {
			return err
		}
		return w.cfg.Expiries.Schedule(ctx, []*flashsale.Order{o})
	}
	for _, l := range req.Lines() {
		if _, err := w.cfg.Sales.Get(ctx, l.SaleID); err == nil {
			if _, err := w.cfg.Stock.Release(ctx, req.Part(l)); err != nil {
				return fmt.Errorf("release: %w", err)
			}
		} else if !errors.Is(err, flashsale.ErrNotFound) {
			return err
		}
	}
	w.log.Warn("dead-lettered purchase failed its ticket", "ticket", req.TicketID)
	return w.cfg.Stock.PutTickets(ctx, t)
}
