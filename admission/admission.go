// Package admission decides a purchase: the checks a request for one sale, or
// for several at once (a bundle), goes through, the claim of the user's live
// ticket in each sale, and the publish that queues it. It knows no HTTP:
// package ingress parses the request, identifies the user and answers the
// decision (a fresh ticket 202, the user's live ticket 200, an error through
// httpapi's one code → status mapping).
//
// A purchase is decided in three steps, the same for one sale and a bundle
// (see Admit):
//
//  1. Checks. Each line (a sale and a quantity) goes through the checks in
//     order; each decides one thing: go on, the user's live ticket (answered
//     without a claim), or a refusal. The first line refused decides the
//     answer (in a bundle its message names the sale); else the first live
//     ticket found does.
//  2. Claims. Each line claims the user's live-ticket slot in its sale, one
//     atomic script of the stock store each: the user's live ticket if they
//     have one (answered with it), else the per-user limit, else availability
//     (sold_out, nothing queued). The first line's claim mints the ticket's
//     id (flashsale.TicketClaim); a line refused undoes the earlier lines'
//     claims.
//  3. Queue. The ticket is published with publisher confirms, in a group
//     (see queuer); it is fresh only once the broker confirmed it and its
//     fast copy is written. A failed publish records the ticket given up and
//     undoes its claims: nothing is left behind, the user may retry (503).
//
// The checks, in the order New lists them, and the answers they decide:
//
//	saleExists     the sale exists                          404 not_found
//	saleOpen       now in [starts_at, ends_at), by the      409 not_started, ended
//	               ingress's clock (from a waiting room's
//	               opens_at)
//	quantityFits   1 to per_user_limit units                422 invalid_quantity
//	bundleable     no inventory-mysql sale in a bundle      400 invalid
//	qualified      reserved, when the sale has a            403 not_qualified
//	               reservation phase
//	notBlocked     not too many unpaid expiries             403 blocked (fails open)
//	waitingRoom    a sale with a waiting room: the line     202 waiting, live ticket,
//	               takes the purchase (see waitingroom.go)  409 limit_reached, sold_out
//	notSoldOut     a sale this node saw sold out is         live ticket, 409 limit_reached, sold_out
//	               answered from the user's holding
//	withinBudget   the user's budget on this node           live ticket, 429 rate_limited
//	windowHasRoom  this node's 10 ms window for the sale    429 rate_limited
package admission

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/flashsale/flashsale"
)

// Stock is the stock store's part in admission: live-ticket claims and
// ticket copies.
type Stock interface {
	// Claim claims the user's live-ticket slot in the sale for the ticket
	// want names (minting its id when want.ID is empty); for Claimed, id is
	// the ticket's and load names the load of the sale it was made in, which
	// the purchase carries to its hold.
	Claim(ctx context.Context, sale *flashsale.Sale, userID string, want flashsale.TicketClaim, qty int) (outcome flashsale.ClaimOutcome, id string, load int64, err error)
	// Unclaim undoes a claim of p.TicketID (nothing held yet).
	Unclaim(ctx context.Context, p flashsale.Part) error
	// Release gives p.TicketID's held units back and ends it as its user's
	// live ticket, once (an order MySQL expired or cancelled, whose release
	// has not reached Redis yet).
	Release(ctx context.Context, p flashsale.Part) (flashsale.Hold, error)
	// Holder reads the user's live ticket in the sale ("" when none) and the
	// units they hold or bought there, in one round trip; refused: the live
	// ticket's hold refused it, final once the book of record says so.
	Holder(ctx context.Context, saleID, userID string) (live string, refused bool, units int, err error)
	// Queued writes the fast copies of tickets whose purchases are durably
	// queued and marks their claims published, in one round trip.
	Queued(ctx context.Context, tickets ...*flashsale.Ticket) error
	// GetTicket returns an error wrapping flashsale.ErrNotFound when the fast
	// copy is missing.
	GetTicket(ctx context.Context, ticketID string) (*flashsale.Ticket, error)
	// PutTickets writes the fast copies of decided tickets; a refused one
	// (sold_out, failed: recorded in MySQL first) is settled in its sales,
	// its hold marked refused and its live entry ended.
	PutTickets(ctx context.Context, tickets ...*flashsale.Ticket) error
}

// Book is the book of record's part in admission: a live ticket whose fast
// copy was lost, and a ticket given up.
type Book interface {
	GetTicket(ctx context.Context, ref flashsale.TicketRef) (*flashsale.Ticket, error)
	// GiveUp records that a ticket makes no order unless it made one first,
	// and reports whether it did.
	GiveUp(ctx context.Context, t *flashsale.Ticket) (ordered bool, err error)
}

// Queue takes purchases durably.
type Queue interface {
	// PublishPurchases queues reqs in one message; nil only once the broker
	// confirmed it.
	PublishPurchases(ctx context.Context, reqs []*flashsale.PurchaseRequest) error
}

// Qualifier tells whether a user may buy a sale with a reservation phase.
type Qualifier interface {
	// Qualified reports whether the user may buy the sale. It must not touch
	// the book of record unless the fast copy was lost: it runs on every
	// purchase.
	Qualified(ctx context.Context, sale *flashsale.Sale, userID string) (bool, error)
}

// DefaultPublishTimeout is Config.PublishTimeout's default.
const DefaultPublishTimeout = 5 * time.Second

// Config for an Admission.
type Config struct {
	Sales flashsale.SaleFinder // required
	Stock Stock                // required
	Book  Book                 // required
	Queue Queue                // required
	// Reservations qualifies buyers of sales with a reservation phase; nil:
	// every sale is open to all.
	Reservations Qualifier
	// Strikes blocks users whose orders keep expiring unpaid (see
	// strikes.go); nil: nobody is blocked.
	Strikes Strikes
	// WaitingLine takes the entries of sales with a waiting room, and Levels
	// reads their stock for the line's bound after starts_at (see
	// waitingroom.go); both or neither. nil: such sales sell like any other
	// from starts_at (tests of other things).
	WaitingLine WaitingLine
	Levels      Levels
	// LimitPerWindow is purchases admitted per sale per 10 ms on this node.
	// Default 50; negative: no limit.
	LimitPerWindow int
	// UserPurchasesPerSecond is each user's budget of purchase requests per
	// sale on this node that may reach the sale's window (see userBudget).
	// Default 5; negative: off. Off too when LimitPerWindow is off (there is
	// no window to protect).
	UserPurchasesPerSecond int
	// PublishTimeout bounds the wait for the broker's confirm, and for the
	// copy of a live ticket being queued by another request. Default
	// DefaultPublishTimeout; must stay below the stock store's stale-claim age.
	PublishTimeout time.Duration
	// PublishGroups is how many groups of purchases may await the broker's
	// confirm at once; the purchases admitted meanwhile gather into the next
	// group (see queuer). Default 4.
	PublishGroups int
	// MaxGroup is the most purchases in one message. Default 128.
	MaxGroup int
	// SoldOutMemory is how long this node answers a sale it saw sold out
	// without a claim (see soldOutMemory): the longest it may answer sold_out
	// after units came back. Default 100 ms; negative: off.
	SoldOutMemory time.Duration
	// Registry receives the queuer's histograms; optional.
	Registry prometheus.Registerer
	// Log default slog.Default().
	Log *slog.Logger
}

// Admission decides purchases (see the package doc). It is safe for
// concurrent use.
type Admission struct {
	cfg     Config
	log     *slog.Logger
	checks  []check
	limiter *windowLimiter
	budget  *userBudget
	soldOut soldOutMemory
	queuer  *queuer
}

// New returns an Admission for cfg, with its defaults filled in.
func New(cfg Config) (*Admission, error) {
	if cfg.Sales == nil || cfg.Stock == nil || cfg.Book == nil || cfg.Queue == nil {
		return nil, errors.New("admission: Sales, Stock, Book and Queue are required")
	}
	if cfg.Log == nil {
		cfg.Log = slog.Default()
	}
	if (cfg.WaitingLine == nil) != (cfg.Levels == nil) {
		return nil, errors.New("admission: WaitingLine and Levels go together")
	}
	if cfg.LimitPerWindow == 0 {
		cfg.LimitPerWindow = 50
	}
	if cfg.UserPurchasesPerSecond == 0 {
		cfg.UserPurchasesPerSecond = 5
	}
	if cfg.LimitPerWindow < 0 {
		cfg.UserPurchasesPerSecond = -1
	}
	if cfg.PublishTimeout == 0 {
		cfg.PublishTimeout = DefaultPublishTimeout
	}
	if cfg.PublishGroups == 0 {
		cfg.PublishGroups = 4
	}
	if cfg.MaxGroup == 0 {
		cfg.MaxGroup = 128
	}
	if cfg.SoldOutMemory == 0 {
		cfg.SoldOutMemory = 100 * time.Millisecond
	}
	if cfg.PublishTimeout < 0 || cfg.PublishGroups < 0 || cfg.MaxGroup < 0 {
		return nil, fmt.Errorf("admission: PublishTimeout (%s), PublishGroups (%d) and MaxGroup (%d) must be positive",
			cfg.PublishTimeout, cfg.PublishGroups, cfg.MaxGroup)
	}
	a := &Admission{cfg: cfg, log: cfg.Log, limiter: newWindowLimiter(cfg.LimitPerWindow, 10*time.Millisecond),
		budget: newUserBudget(cfg.UserPurchasesPerSecond), queuer: newQueuer(cfg),
		soldOut: soldOutMemory{ttl: cfg.SoldOutMemory, until: map[string]time.Time{}}}
	// The order of the checks is the order of the answers: a line that
	// fails several gets the first one's. The waiting room (contract
	// section 2) is the check between notBlocked and notSoldOut: the checks
	// above it apply to entering the line, those below do not (entering
	// takes no stock). From the room's opens_at (saleOpen lets such a sale
	// through from then) it answers its lines itself: the user's ticket
	// entered in the line, 202 waiting (the decision marking it fresh),
	// their live ticket 200, or a full line 409 sold_out; its lines never
	// reach the claims and the queue.
	a.checks = []check{
		a.saleExists,
		a.saleOpen,
		quantityFits,
		bundleable,
		a.qualified,
		a.notBlocked,
		a.waitingRoom,
		a.notSoldOut,
		a.withinBudget,
		a.windowHasRoom,
	}
	return a, nil
}

// Request is a purchase to decide: User's Lines (one sale, or a bundle of
// distinct sales whose count the caller checked), at Now by the ingress's
// clock (the clock of the sales' windows).
type Request struct {
	User  string
	Lines []flashsale.Line
	Now   time.Time
}

// Admit decides r (see the package doc). It returns the user's ticket, fresh
// when it is a new one, now queued, else their live ticket; or the error
// that refuses the purchase: a *flashsale.Error whose code is the answer
// (the first line refused; a bundle's message names its sale), or any other
// error, which nothing of the purchase outlives (503: the user may retry).
func (a *Admission) Admit(ctx context.Context, r Request) (t *flashsale.Ticket, fresh bool, err error) {
	ctx = flashsale.WithStage(ctx, "admission")
	p := newPurchase(r)
	defer p.leave()
	if d := a.checkLines(ctx, p); d.decided() {
		return d.ticket, d.fresh, d.err
	}
	t = &flashsale.Ticket{UserID: r.User, Status: flashsale.TicketQueued}
	t.SetLines(r.Lines)
	loads, d := a.claimLines(ctx, p, t)
	if d.decided() {
		return d.ticket, false, d.err
	}
	return a.queue(ctx, p, t, loads)
}

// decision is what one step decides for a line: go on (the zero value,
// next), the user's live ticket there (ticket), or a refusal (err: a coded
// error is its answer, any other error a 503).
type decision struct {
	ticket *flashsale.Ticket
	err    error
	// fresh: ticket is a new one (a waiting room's entry, see waitingRoom).
	fresh bool
}

// next is the decision to go on to the next check.
var next decision

func answer(t *flashsale.Ticket) decision { return decision{ticket: t} }
func refuse(err error) decision           { return decision{err: err} }

// decided reports whether d answers the purchase.
func (d decision) decided() bool { return d.ticket != nil || d.err != nil }

// check is one rule of a purchase, applied to one of its lines. It may learn
// what a later check uses (the sale, the user's holding, a flight in the
// user's budget) by writing it in l.
type check func(ctx context.Context, p *purchase, l *line) decision

// purchase is a Request being decided, with what the steps learn of each of
// its lines.
type purchase struct {
	Request
	bundle bool
	lines  []line
	one    [1]line // the lines of a one-sale purchase, allocated with it
}

// line is one line of a purchase and what the checks learned of it.
type line struct {
	flashsale.Line
	sale *flashsale.Sale // from saleExists on
	// held is the user's holding in the sale when read (see holdingOf) and
	// heldErr why it could not be; read says whether they were.
	held    holding
	heldErr error
	read    bool
	// leave ends the request's flight in the user's budget for the sale
	// (see userBudget.Take); nil when it took none.
	leave func()
}

func newPurchase(r Request) *purchase {
	p := &purchase{Request: r, bundle: len(r.Lines) > 1}
	p.lines = p.one[:]
	if len(r.Lines) != 1 {
		p.lines = make([]line, len(r.Lines))
	}
	for i, l := range r.Lines {
		p.lines[i].Line = l
	}
	return p
}

// leave ends the purchase's flights in the users' budgets, once it is
// decided (see userBudget.Take).
func (p *purchase) leave() {
	for _, l := range p.lines {
		if l.leave != nil {
			l.leave()
		}
	}
}

// checkLines runs each line through the checks, in order: the first line
// refused decides (its sale named in a bundle's message), else the first
// line answered with the user's live ticket; next when every line passed.
func (a *Admission) checkLines(ctx context.Context, p *purchase) decision {
	live := next
	for i := range p.lines {
		l := &p.lines[i]
		d := a.checkLine(ctx, p, l)
		if d.err != nil {
			return refuse(lineError(d.err, l.Line, p.bundle))
		}
		if !live.decided() {
			live = d
		}
	}
	return live
}

// checkLine is the first decision of a check on l, or next.
func (a *Admission) checkLine(ctx context.Context, p *purchase, l *line) decision {
	for _, c := range a.checks {
		if d := c(ctx, p, l); d.decided() {
			return d
		}
	}
	return next
}

// lineError names the line's sale in the message of a bundle's coded error.
func lineError(err error, l flashsale.Line, bundle bool) error {
	if !bundle {
		return err // before fe, which errors.As moves to the heap
	}
	var fe *flashsale.Error
	if !errors.As(err, &fe) {
		return err
	}
	if fe.Code == flashsale.CodeNotFound {
		return flashsale.Errorf(fe.Code, "no sale %q", l.SaleID)
	}
	return flashsale.Errorf(fe.Code, "sale %q: %s", l.SaleID, fe.Message)
}
