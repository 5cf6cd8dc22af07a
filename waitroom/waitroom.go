// Package waitroom is the waiting rooms' releaser: it admits each drawn line
// (see flashsale.WaitingRoom) through the ordinary pipeline, in line order,
// and ends the tickets the line cannot serve.
//
// The line's truth is in MySQL (mysqlstore's waiting_line), so a Redis loss
// neither reorders nor forgets it. One process at a time releases (a lease,
// service.Leader); every step is idempotent, so a new holder after a crash
// only repeats work. Each pass over a drawn sale:
//
//  1. At ends_at, every ticket still waiting ends sold_out. Before
//     starts_at + Delay nothing is released (entries admitted just before
//     starts_at may still be committing).
//  2. The released tickets still undecided (in flight) are read: each one's
//     fast copy, else the orders' book; a ticket found in neither is still in
//     flight (never assumed decided). One without a fast copy may never have
//     been published (its releaser died before the broker's confirm), or
//     Redis lost the copy: it is published again (the worker is idempotent
//     per ticket).
//  3. left = available units − the units in flight. The line is walked in
//     order: a ticket asking at most left units is released (its claim in
//     the stock store with its own id, its row marked released, then
//     published as an ordinary purchase with publisher confirms and its fast
//     copy written queued and announced: so a ticket published is never
//     still waiting in the line, where the next pass would count it twice,
//     its units held and asked for); one asking more ends sold_out only when
//     nothing is in flight (left is then final), else the pass stops there. So every
//     released ticket finds its units, and out-of-order work in the workers
//     cannot let a later ticket take units an earlier one needed.
//  4. Once no unit is available and nothing is in flight, the first Waitlist
//     tickets still waiting keep waiting and every one behind them ends
//     sold_out. A unit given back later (expiry, cancel, return) is
//     released to the first waiting ticket by the next pass.
package waitroom

import (
	"context"
	"errors"
	"log/slog"
	"time"

	"github.com/flashsale/flashsale"
	"github.com/flashsale/flashsale/service"
)

// Line is the book of record's part: the lines.
type Line interface {
	// ReleasedTickets returns the line's tickets released and not yet seen decided.
	ReleasedTickets(ctx context.Context, saleID string) ([]*flashsale.Ticket, error)
	// NextWaiting returns the first n waiting tickets, in line order.
	NextWaiting(ctx context.Context, saleID string, n int) ([]*flashsale.Ticket, error)
	// LeaveLineAs moves waiting tickets out of the line with status (queued:
	// released; sold_out: ended).
	LeaveLineAs(ctx context.Context, saleID string, ids []string, status flashsale.TicketStatus, at time.Time) error
	// MarkAdmitted records released tickets seen decided.
	MarkAdmitted(ctx context.Context, ids []string) error
	// EndWaiting ends sold_out every waiting ticket but the first keep.
	EndWaiting(ctx context.Context, saleID string, keep int, at time.Time) (int, error)
	// LineEntries counts the waiting tickets.
	LineEntries(ctx context.Context, saleID string) (int, error)
}

// Sales lists the sales that end after since.
type Sales interface {
	ListSales(ctx context.Context, since time.Time) ([]*flashsale.Sale, error)
}

// Stock is the stock store's part: levels, the claim of a released ticket,
// its fast copy (Released writes it queued and announces it to the ticket's
// event streams, which follow it as waiting until then).
type Stock interface {
	Stock(ctx context.Context, saleID string) (flashsale.StockLevel, error)
	Claim(ctx context.Context, sale *flashsale.Sale, userID string, want flashsale.TicketClaim, qty int) (outcome flashsale.ClaimOutcome, id string, load int64, err error)
	Released(ctx context.Context, tickets ...*flashsale.Ticket) error
	GetTicket(ctx context.Context, ticketID string) (*flashsale.Ticket, error)
}

// Book finds a ticket's decision when its fast copy is gone.
type Book interface {
	GetTicket(ctx context.Context, ref flashsale.TicketRef) (*flashsale.Ticket, error)
}

// Queue takes purchases durably (nil only once the broker confirmed them).
type Queue interface {
	PublishPurchases(ctx context.Context, reqs []*flashsale.PurchaseRequest) error
}

// Config for a Releaser.
type Config struct {
	Sales  Sales          // required
	Line   Line           // required
	Stock  Stock          // required
	Book   Book           // required
	Queue  Queue          // required
	Leases service.Leases // required
	// Namespace names the lease (<namespace>:waitroom). Required.
	Namespace string
	// Interval between passes. Default 200 ms.
	Interval time.Duration
	// Delay after starts_at before the first release: longer than an
	// entry's commit may take after its admission. Default 2 s.
	Delay time.Duration
	// Batch is the most waiting tickets one pass reads per sale. Default 500.
	Batch int
	// Lookback: sales that ended up to this long ago are still passed over
	// (to end their waiting tickets). Default 1 h.
	Lookback time.Duration
	// PublishTimeout bounds the wait for the broker's confirm of released
	// tickets; past it the pass ends and the next one publishes them again.
	// Default 5 s.
	PublishTimeout time.Duration
	// Log default slog.Default(); Now default time.Now.
	Log *slog.Logger
	Now func() time.Time
}

// Releaser is the waiting rooms' releaser, a service.Service: Start starts
// it competing for its lease.
type Releaser struct {
	service.Runner
	cfg Config
	log *slog.Logger
}

// New returns a Releaser.
func New(cfg Config) (*Releaser, error) {
	if cfg.Sales == nil || cfg.Line == nil || cfg.Stock == nil || cfg.Book == nil || cfg.Queue == nil ||
		cfg.Leases == nil || cfg.Namespace == "" {
		return nil, errors.New("waitroom: Sales, Line, Stock, Book, Queue, Leases and Namespace are required")
	}
	if cfg.Interval == 0 {
		cfg.Interval = 200 * time.Millisecond
	}
	if cfg.Delay == 0 {
		cfg.Delay = 2 * time.Second
	}
	if cfg.Batch == 0 {
		cfg.Batch = 500
	}
	if cfg.Lookback == 0 {
		cfg.Lookback = time.Hour
	}
	if cfg.PublishTimeout == 0 {
		cfg.PublishTimeout = 5 * time.Second
	}
	if cfg.Log == nil {
		cfg.Log = slog.Default()
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Interval < 0 || cfg.Delay < 0 || cfg.Batch < 0 || cfg.PublishTimeout < 0 {
		return nil, errors.New("waitroom: Interval, Delay, Batch and PublishTimeout must be positive")
	}
	return &Releaser{cfg: cfg, log: cfg.Log.With("component", "waitroom")}, nil
}

// leaseTTL is the releaser's lease TTL: the longest a dead holder keeps the
// lines from moving.
const leaseTTL = 5 * time.Second

// Start starts the releaser.
func (r *Releaser) Start(ctx context.Context) error { return r.Go(ctx, r.run) }

func (r *Releaser) run(ctx context.Context, ready func()) {
	leader := service.Leader{Leases: r.cfg.Leases, Key: r.cfg.Namespace + ":waitroom", TTL: leaseTTL, Log: r.log}
	ready()
	leader.Run(ctx, func(ctx context.Context) {
		for first := true; first || service.Sleep(ctx, r.cfg.Interval); first = false {
			if err := r.Pass(ctx); err != nil && ctx.Err() == nil {
				r.log.Warn("a pass over the lines failed; the next one resumes", "err", err)
			}
		}
	})
}

// Pass passes once over every drawn sale with a waiting room (see the
// package doc).
func (r *Releaser) Pass(ctx context.Context) error {
	now := r.cfg.Now()
	sales, err := r.cfg.Sales.ListSales(ctx, now.Add(-r.cfg.Lookback))
	if err != nil {
		return err
	}
	var errs []error
	for _, s := range sales {
		if s.WaitingRoom == nil || !s.Drawn(now) {
			continue
		}
		if err := r.pass(ctx, s, now); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

func (r *Releaser) pass(ctx context.Context, s *flashsale.Sale, now time.Time) error {
	if !now.Before(s.EndsAt) {
		n, err := r.cfg.Line.EndWaiting(ctx, s.ID, 0, now)
		if n > 0 {
			r.log.Info("the sale ended: its waiting tickets end sold_out", "sale", s.ID, "tickets", n)
		}
		return err
	}
	if now.Before(s.StartsAt.Add(r.cfg.Delay)) {
		return nil
	}
	inflight, err := r.inFlight(ctx, s, now)
	if err != nil {
		return err
	}
	st, err := r.cfg.Stock.Stock(ctx, s.ID)
	if err != nil {
		return err
	}
	left := st.Available - inflight
	if left > 0 {
		next, err := r.cfg.Line.NextWaiting(ctx, s.ID, r.cfg.Batch)
		if err != nil {
			return err
		}
		var release, ended []*flashsale.Ticket
		for _, t := range next {
			if t.Quantity <= left {
				release, left = append(release, t), left-t.Quantity
				continue
			}
			if inflight > 0 || len(release) > 0 {
				break // left is not final yet: the next pass decides
			}
			ended = append(ended, t) // more than is left, and left is final
		}
		if err := r.end(ctx, s, ended, now); err != nil {
			return err
		}
		return r.release(ctx, s, release, now)
	}
	if st.Available > 0 || inflight > 0 {
		return nil
	}
	// Every unit held or sold: the waitlist keeps waiting, the rest end.
	n, err := r.cfg.Line.LineEntries(ctx, s.ID)
	if err != nil || n <= s.WaitingRoom.Waitlist {
		return err
	}
	ended, err := r.cfg.Line.EndWaiting(ctx, s.ID, s.WaitingRoom.Waitlist, now)
	if ended > 0 {
		r.log.Info("sold out: the tickets beyond the waitlist end sold_out", "sale", s.ID, "tickets", ended)
	}
	return err
}

// inFlight returns the units of the sale's released tickets not decided
// yet, marking those seen decided, and publishes again those in flight
// without a fast copy (see release).
func (r *Releaser) inFlight(ctx context.Context, s *flashsale.Sale, now time.Time) (int, error) {
	released, err := r.cfg.Line.ReleasedTickets(ctx, s.ID)
	if err != nil {
		return 0, err
	}
	units := 0
	var decided []string
	var uncopied []*flashsale.Ticket
	for _, t := range released {
		cp, err := r.cfg.Stock.GetTicket(ctx, t.ID)
		copied := err == nil
		if err != nil || cp.Status == flashsale.TicketQueued {
			cp, err = r.cfg.Book.GetTicket(ctx, flashsale.TicketRef{User: t.UserID, Ticket: t.ID})
		}
		if err == nil && cp.Status != flashsale.TicketQueued {
			decided = append(decided, t.ID)
			continue
		}
		units += t.Quantity
		if !copied {
			uncopied = append(uncopied, t)
		}
	}
	if err := r.cfg.Line.MarkAdmitted(ctx, decided); err != nil {
		return 0, err
	}
	if len(uncopied) > 0 {
		r.log.Info("released line tickets without a fast copy are published again", "sale", s.ID, "tickets", len(uncopied))
		reqs, copies, _, err := r.claim(ctx, s, uncopied, now, true)
		if err != nil {
			return 0, err
		}
		if err := r.publish(ctx, s, reqs, copies); err != nil {
			return 0, err
		}
	}
	return units, nil
}

// end ends line tickets sold_out (more units asked than will ever be left).
func (r *Releaser) end(ctx context.Context, s *flashsale.Sale, ts []*flashsale.Ticket, now time.Time) error {
	if len(ts) == 0 {
		return nil
	}
	ids := make([]string, len(ts))
	for i, t := range ts {
		ids[i] = t.ID
	}
	r.log.Info("line tickets asking more units than are left end sold_out", "sale", s.ID, "tickets", len(ids))
	return r.cfg.Line.LeaveLineAs(ctx, s.ID, ids, flashsale.TicketSoldOut, now)
}

// release claims each ticket's live-ticket slot under its own id, marks the
// claimed ones released in the line, then publishes them as ordinary
// purchases and writes their fast copies (queued). A claim found already made
// for the same ticket (a pass repeated after a crash) is published again: the
// worker is idempotent per ticket. A user holding another live ticket or at
// the limit ends sold_out.
//
// The mark comes before the publish: a ticket published is never still
// waiting in the line, where a later holder of the lease would take it for
// one still to be served (its units held already, it would be counted
// twice, and the tickets the draw put right after the winners would be cut
// from the line as the waitlist was counted from the front). A holder that
// dies between the mark and the broker's confirm leaves released tickets
// that may never have been published: those without a fast copy (written
// only after the confirm, and lost with Redis's keys) are published again by
// every pass (inFlight) until they have one.
func (r *Releaser) release(ctx context.Context, s *flashsale.Sale, ts []*flashsale.Ticket, now time.Time) error {
	reqs, copies, refused, err := r.claim(ctx, s, ts, now, false)
	if err != nil {
		return err // the claims made stay; the next pass claims the same tickets again
	}
	if err := r.cfg.Line.LeaveLineAs(ctx, s.ID, refused, flashsale.TicketSoldOut, now); err != nil {
		return err
	}
	if len(reqs) == 0 {
		return nil
	}
	ids := make([]string, len(copies))
	for i, q := range copies {
		ids[i] = q.ID
	}
	if err := r.cfg.Line.LeaveLineAs(ctx, s.ID, ids, flashsale.TicketQueued, now); err != nil {
		return err
	}
	if err := r.publish(ctx, s, reqs, copies); err != nil {
		return err // released: the next pass publishes them again (no fast copy)
	}
	r.log.Debug("released line tickets", "sale", s.ID, "tickets", len(ids))
	return nil
}

// claim claims the tickets in the stock store, in order, up to the first
// the store finds no units for, and returns the purchases and fast copies
// of the claimed ones (or claimed by an earlier pass) and the ids of those
// whose user holds another live ticket or reached the limit. With again
// (tickets released already), those are published all the same: the
// worker's hold refuses them, which decides them.
func (r *Releaser) claim(ctx context.Context, s *flashsale.Sale, ts []*flashsale.Ticket, now time.Time, again bool) (reqs []*flashsale.PurchaseRequest, copies []*flashsale.Ticket, refused []string, err error) {
	for _, t := range ts {
		want := flashsale.TicketClaim{ID: t.ID, Nonce: t.ID, Sales: []string{s.ID}}
		outcome, id, load, err := r.cfg.Stock.Claim(ctx, s, t.UserID, want, t.Quantity)
		switch {
		case err != nil:
			return nil, nil, nil, err
		case outcome == flashsale.SoldOut:
			return reqs, copies, refused, nil // the level read was stale: the next pass sees
		case outcome != flashsale.Claimed && id != t.ID && !again:
			r.log.Warn("a line ticket cannot be admitted (its user holds another live ticket or reached the limit); it ends sold_out",
				"sale", s.ID, "ticket", t.ID, "outcome", outcome)
			refused = append(refused, t.ID)
			continue
		}
		// Claimed, or claimed by an earlier pass: published (again).
		reqs = append(reqs, &flashsale.PurchaseRequest{TicketID: t.ID, SaleID: s.ID, UserID: t.UserID, Quantity: t.Quantity,
			AdmittedAt: now.UTC(), Loads: []int64{load}})
		q := &flashsale.Ticket{ID: t.ID, UserID: t.UserID, Status: flashsale.TicketQueued}
		q.SetLines(t.Lines())
		copies = append(copies, q)
	}
	return reqs, copies, refused, nil
}

// publish publishes the purchases of released tickets, with the broker's
// confirm, then writes their fast copies (queued).
func (r *Releaser) publish(ctx context.Context, s *flashsale.Sale, reqs []*flashsale.PurchaseRequest, copies []*flashsale.Ticket) error {
	if len(reqs) == 0 {
		return nil
	}
	pctx, cancel := context.WithTimeout(ctx, r.cfg.PublishTimeout)
	err := r.cfg.Queue.PublishPurchases(pctx, reqs)
	cancel()
	if err != nil {
		return err
	}
	if err := r.cfg.Stock.Released(ctx, copies...); err != nil {
		r.log.Warn("cannot write released tickets' fast copies; the next pass publishes them again", "sale", s.ID, "err", err)
	}
	return nil
}
