package admission

import (
	"context"
	"errors"
	"net"
	"slices"
	"time"

	"github.com/google/uuid"

	"github.com/flashsale/flashsale"
)

// claimLines claims the user's live-ticket slot in each line's sale for
// ticket t, in order, and returns the load of each sale the claims were made
// in (which the purchase carries to its holds). The first line's claim mints
// t's id (see flashsale.TicketClaim): a purchase retried while its ticket is
// still queued gets the same ticket, even after Redis lost the claim. A line
// whose claim is not Claimed decides (the user's live ticket there, or a
// refusal) and undoes the earlier lines' claims.
func (a *Admission) claimLines(ctx context.Context, p *purchase, t *flashsale.Ticket) ([]int64, decision) {
	want := flashsale.TicketClaim{Nonce: uuid.NewString(), Sales: make([]string, len(p.lines))}
	for i, l := range p.lines {
		want.Sales[i] = l.sale.ID
	}
	loads := make([]int64, len(p.lines))
	for i := range p.lines {
		want.ID = t.ID
		id, load, d := a.claim(ctx, p, &p.lines[i], want, t)
		if d.decided() {
			a.unclaim(ctx, p, t, i)
			return nil, d
		}
		t.ID, loads[i] = id, load
	}
	return loads, next
}

// claim claims the user's slot in l's sale for the ticket want names (t is
// the ticket being admitted: its id once a line minted it). Claimed: the
// ticket's id and the load of the sale. Otherwise it decides: the user's
// live ticket there (see liveTicket), limit_reached, sold_out (remembered,
// see soldOutMemory), or 503. An existing claim whose ticket is final (its
// publish failed and its claim could not be undone then, Redis away; or
// Redis has not followed its decision yet) is freed and the slot claimed
// again: a purchase is never answered with a ticket that is not live.
func (a *Admission) claim(ctx context.Context, p *purchase, l *line, want flashsale.TicketClaim, t *flashsale.Ticket) (string, int64, decision) {
	outcome, id, load, err := a.cfg.Stock.Claim(ctx, l.sale, p.User, want, l.Quantity)
	if err != nil {
		return "", 0, refuse(a.claimFailed(ctx, t, err))
	}
	if outcome == flashsale.Existing || outcome == flashsale.Refused || outcome == flashsale.Unconfirmed {
		d, final := a.liveTicket(ctx, p, outcome, id)
		if final == nil {
			return "", 0, d
		}
		if err := a.free(ctx, flashsale.Part{SaleID: l.sale.ID, TicketID: id, UserID: p.User}, final); err != nil {
			return "", 0, refuse(unavailable(err))
		}
		if outcome, id, load, err = a.cfg.Stock.Claim(ctx, l.sale, p.User, want, l.Quantity); err != nil {
			return "", 0, refuse(a.claimFailed(ctx, t, err))
		}
		if outcome == flashsale.Existing || outcome == flashsale.Refused || outcome == flashsale.Unconfirmed {
			return "", 0, answer(&flashsale.Ticket{ID: id, Status: flashsale.TicketQueued})
		}
	}
	switch outcome {
	case flashsale.Claimed:
		return id, load, next
	case flashsale.LimitReached:
		return "", 0, refuse(lineError(flashsale.ErrLimitReached, l.Line, p.bundle))
	}
	a.soldOut.remember(l.sale.ID, p.Now)
	return "", 0, refuse(lineError(flashsale.ErrSoldOut, l.Line, p.bundle))
}

// liveTicket answers the user's live ticket id that a claim found. A claim
// whose publish is not confirmed (Unconfirmed) is being queued right now (a
// double click) or was left by an ingress that died between claim and
// publish, which nobody was told of: its id is not handed out until its copy
// is written (waited for up to the publish timeout); without one the answer
// is 503, the user retries, and an orphaned claim goes stale and is replaced,
// by the same ticket id (the stock store's ClaimStale). A confirmed one is
// answered from its fast copy, else its decision in MySQL, else its id with
// the status queued (its copy was lost with Redis).
//
// A ticket its hold refused (Refused) is final once MySQL has its refusal,
// whatever its copy says (the copy is written after the refusal is recorded,
// and Redis may have been away in between); until then it is live (queued).
//
// final, when not nil, is the ticket found final: its copy says so (copies
// are written after MySQL decides), or MySQL does. A pending_payment copy
// past its pay_by is checked in MySQL, whose expiry may have committed while
// Redis was away (the release follows it within seconds of Redis answering;
// the user's purchase must not be told of a live order meanwhile).
func (a *Admission) liveTicket(ctx context.Context, p *purchase, outcome flashsale.ClaimOutcome, id string) (d decision, final *flashsale.Ticket) {
	if outcome == flashsale.Unconfirmed {
		if cp := a.awaitCopy(ctx, id); cp != nil && !cp.Status.Live() {
			return next, cp
		} else if cp != nil {
			return answer(cp), nil
		}
		return refuse(flashsale.Unavailable(errors.New("the user's live ticket is not confirmed: still being queued, or its ingress died"),
			"your previous purchase is not confirmed yet; retry")), nil
	}
	if outcome == flashsale.Refused {
		switch mt, err := a.cfg.Book.GetTicket(ctx, flashsale.TicketRef{User: p.User, Ticket: id}); {
		case err != nil: // not recorded yet (or MySQL away)
			return answer(&flashsale.Ticket{ID: id, Status: flashsale.TicketQueued}), nil
		case mt.Status.Live():
			return answer(mt), nil
		default:
			return next, mt
		}
	}
	cp, err := a.cfg.Stock.GetTicket(ctx, id)
	switch {
	case err != nil:
	case !cp.Status.Live():
		return next, cp
	case !cp.Overdue(p.Now):
		return answer(cp), nil
	}
	mt, err := a.cfg.Book.GetTicket(ctx, flashsale.TicketRef{User: p.User, Ticket: id})
	switch {
	case err != nil && cp != nil: // MySQL away: the copy is the best answer
		return answer(cp), nil
	case err != nil: // still in the queue (or MySQL away): the id is enough
		return answer(&flashsale.Ticket{ID: id, Status: flashsale.TicketQueued}), nil
	case mt.Status.Live():
		return answer(mt), nil
	}
	return next, mt
}

// free ends final ticket t as its user's live ticket in p's sale, so that
// the slot can be claimed again, by making Redis follow what MySQL decided:
// an expired or cancelled order's units go back (what its expiry or cancel
// does next, idempotent); a refusal (sold_out, failed) is settled in the
// ticket's sales as the worker settles it (its copy, and its hold marked
// refused, so its id is never minted again: the worker's own step may still
// be retrying, Redis away when it ran); any other final ticket's claim is
// undone.
func (a *Admission) free(ctx context.Context, p flashsale.Part, t *flashsale.Ticket) error {
	switch t.Status {
	case flashsale.TicketExpired, flashsale.TicketCancelled:
		_, err := a.cfg.Stock.Release(ctx, p)
		return err
	case flashsale.TicketSoldOut, flashsale.TicketFailed:
		inSale := func(l flashsale.Line) bool { return l.SaleID == p.SaleID }
		if t.OrderID == "" && t.UserID == p.UserID && slices.ContainsFunc(t.Lines(), inSale) {
			return a.cfg.Stock.PutTickets(ctx, t)
		}
	}
	return a.cfg.Stock.Unclaim(ctx, p)
}

// unclaim undoes t's claims in the first n lines' sales, whatever becomes of
// the request (a claim that cannot be undone goes stale and is replaced on
// retry).
func (a *Admission) unclaim(ctx context.Context, p *purchase, t *flashsale.Ticket, n int) {
	if n == 0 {
		return
	}
	bg := context.WithoutCancel(ctx)
	for _, l := range p.lines[:n] {
		if err := a.cfg.Stock.Unclaim(bg, flashsale.Part{SaleID: l.sale.ID, TicketID: t.ID, UserID: p.User}); err != nil {
			a.log.Error("cannot undo a claim; it goes stale and is replaced on retry", "ticket", t.ID, "sale", l.sale.ID, "err", err)
		}
	}
}

// queue publishes the claimed ticket t (see queuer) and returns it fresh. A
// publish that fails leaves nothing behind (see undo) and is 503, unless the
// ticket was ordered meanwhile (its publish reached the broker after all).
func (a *Admission) queue(ctx context.Context, p *purchase, t *flashsale.Ticket, loads []int64) (*flashsale.Ticket, bool, error) {
	req := &flashsale.PurchaseRequest{TicketID: t.ID, SaleID: t.SaleID, UserID: p.User, Quantity: t.Quantity,
		AdmittedAt: p.Now.UTC(), Loads: loads}
	if p.bundle {
		req.Items = p.Lines
	}
	if err := a.queuer.enqueue(req, t); err != nil && !a.undo(ctx, p, t) {
		return nil, false, unavailable(err)
	}
	return t, true, nil
}

// undo leaves nothing behind of a purchase answered 503: its decision first,
// in MySQL (a publish that reached the broker after all then makes no order;
// a claim that cannot be undone now because Redis is away is freed by the
// user's next purchase, see claim), then its claims. stands: the ticket was
// queued after all, and already ordered.
func (a *Admission) undo(ctx context.Context, p *purchase, t *flashsale.Ticket) (stands bool) {
	if a.giveUp(ctx, t) {
		return true
	}
	a.unclaim(ctx, p, t, len(p.lines))
	return false
}

// awaitCopy returns the fast copy of a ticket being queued by another
// request, waiting for it up to the publish timeout; nil when none comes.
func (a *Admission) awaitCopy(ctx context.Context, id string) *flashsale.Ticket {
	if cp, err := a.cfg.Stock.GetTicket(ctx, id); err == nil {
		return cp
	}
	ctx, cancel := context.WithTimeout(ctx, a.cfg.PublishTimeout)
	defer cancel()
	tick := time.NewTicker(25 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
		}
		if cp, err := a.cfg.Stock.GetTicket(ctx, id); err == nil {
			return cp
		}
	}
}

// claimFailed answers a claim of ticket t that failed on Redis. A claim that
// reached Redis may still run once Redis answers again (it was frozen, not
// gone): a ticket whose id is known (a bundle's later line) is recorded given
// up, so that such a claim is freed by the user's next purchase. A first
// line's claim that runs late leaves a claim nobody publishes, which goes
// stale and is claimed again under the same id (see claim). One that could not
// even connect never ran, and costs MySQL nothing.
func (a *Admission) claimFailed(ctx context.Context, t *flashsale.Ticket, err error) error {
	var ne *net.OpError
	if t.ID != "" && (!errors.As(err, &ne) || ne.Op != "dial") {
		a.giveUp(ctx, t)
	}
	return unavailable(err)
}

// giveUp records in MySQL that ticket t, about to be answered 503, makes no
// order (the 503 and its cause are logged where it is answered); it reports
// whether the ticket made its order first (its publish reached the broker after
// all and a worker was quicker).
func (a *Admission) giveUp(ctx context.Context, t *flashsale.Ticket) (ordered bool) {
	a.log.Info("purchase not queued; recording its ticket failed", "ticket", t.ID)
	gave := *t
	gave.Status = flashsale.TicketFailed
	ordered, err := a.cfg.Book.GiveUp(context.WithoutCancel(ctx), &gave)
	if err != nil {
		a.log.Error("cannot record a purchase that was not queued as failed", "ticket", t.ID, "err", err)
	}
	return ordered
}

// unavailable is a purchase's 503: nothing of it was kept.
func unavailable(cause error) error {
	return flashsale.Unavailable(cause, "the purchase could not be queued; nothing was kept, retry")
}
