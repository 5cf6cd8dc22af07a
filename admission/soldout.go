package admission

import (
	"context"
	"sync"
	"time"

	"github.com/flashsale/flashsale"
)

// soldOutMemory remembers, for a short time, the sales this node saw sold
// out (a claim answered sold_out), so that the crowd arriving after the last
// unit is answered without a claim script and without spending the sale's
// window: the user's holding read instead (see holdingOf: a user with a live
// ticket still gets it, 200; one at the limit still gets limit_reached). Units that come back (expiry, cancel, return) are seen by
// this node at most ttl later: the memory is per node and never outlives ttl.
type soldOutMemory struct {
	ttl   time.Duration // 0: off
	mu    sync.Mutex
	until map[string]time.Time
}

func (m *soldOutMemory) remember(saleID string, now time.Time) {
	if m.ttl <= 0 {
		return
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if len(m.until) > 10000 {
		clear(m.until)
	}
	m.until[saleID] = now.Add(m.ttl)
}

func (m *soldOutMemory) known(saleID string, now time.Time) bool {
	if m.ttl <= 0 {
		return false
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	return now.Before(m.until[saleID])
}

// holding is what one cheap read tells of a user in a sale: their live
// ticket as its fast copy says it stands (nil when they have none, or its copy
// is missing or no longer live), whether they have a live claim at all, and
// the units they hold or bought there.
type holding struct {
	ticket *flashsale.Ticket
	live   bool
	units  int
}

// notSoldOut answers a line of a sale this node remembers sold out without a
// claim and without a slot of the sale's window, from the user's holding:
// their live ticket, else limit_reached or sold_out as the claim would. A
// holding that cannot be read, or a live claim without a live copy to answer
// (it is being queued, or its copy was lost), goes on: the claim decides
// (withinBudget uses the same read).
func (a *Admission) notSoldOut(ctx context.Context, p *purchase, l *line) decision {
	if !a.soldOut.known(l.sale.ID, p.Now) {
		return next
	}
	l.held, l.heldErr = a.holdingOf(ctx, l.sale.ID, p.User, p.Now)
	l.read = true
	switch {
	case l.heldErr != nil:
		return next
	case l.held.ticket != nil:
		return answer(l.held.ticket)
	case l.held.live:
		return next
	case l.held.units+l.Quantity > l.sale.PerUserLimit:
		return refuse(flashsale.ErrLimitReached)
	}
	return refuse(flashsale.ErrSoldOut)
}

// holdingOf reads the user's standing in a sale without a claim: one read of
// their live ticket and units (a sale Redis lost is rebuilt from MySQL first,
// see the stock store's Holder), and, when they have a live ticket, its fast
// copy, or MySQL's view of it when the copy is missing (lost with Redis) or
// is an unpaid order's past its pay_by (the same rule as liveTicket's). It
// answers the purchases that must not reach the claim script: those of a sale
// this node remembers sold out, and those over their user's budget (see
// userBudget). A live claim MySQL does not know yet (still queued, its copy
// lost) has no ticket here: the claim decides.
func (a *Admission) holdingOf(ctx context.Context, saleID, user string, now time.Time) (holding, error) {
	live, refused, units, err := a.cfg.Stock.Holder(ctx, saleID, user)
	if err != nil || live == "" {
		return holding{units: units}, err
	}
	ref := flashsale.TicketRef{User: user, Ticket: live}
	if refused {
		// Refused by its hold: final once MySQL has the refusal (the copy
		// may still say queued), live (queued) until then.
		switch mt, err := a.cfg.Book.GetTicket(ctx, ref); {
		case err != nil:
			return holding{live: true, units: units, ticket: &flashsale.Ticket{ID: live, Status: flashsale.TicketQueued}}, nil
		case !mt.Status.Live():
			return holding{units: units}, nil
		}
	}
	h := holding{live: true, units: units}
	cp, err := a.cfg.Stock.GetTicket(ctx, live)
	if err != nil || cp.Overdue(now) {
		// Lost with Redis, or an unpaid order past its pay_by that MySQL
		// may have expired while Redis was away (Redis follows within
		// seconds of answering; no purchase is told of it as live
		// meanwhile). MySQL away: the copy, as liveTicket answers it.
		if mt, merr := a.cfg.Book.GetTicket(ctx, ref); merr == nil || err != nil {
			cp, err = mt, merr
		}
	}
	if err == nil && cp.Status.Live() {
		h.ticket = cp
	}
	return h, nil
}
