package admission

import (
	"context"
	"errors"
	"time"

	"github.com/flashsale/flashsale"
)

// WaitingLine is the book of record's part in the waiting rooms' lines: a
// purchase of a sale with a waiting room enters its line (see waitingRoom).
type WaitingLine interface {
	// EnterLine records t (waiting, a fresh id) in its sale's line with key,
	// entered at `at`, unless its user already waits there: it returns the
	// user's waiting ticket and whether it is t. With max >= 0 an entry is
	// refused (flashsale.ErrSoldOut) when max tickets already wait.
	EnterLine(ctx context.Context, t *flashsale.Ticket, key string, at time.Time, max int) (*flashsale.Ticket, bool, error)
}

// Levels reads a sale's stock levels.
type Levels interface {
	Stock(ctx context.Context, saleID string) (flashsale.StockLevel, error)
}

// EntryDeadline is how long after starts_at an entry admitted before it may
// take to be recorded; it must stay below the releaser's delay (waitroom's
// Config.Delay, default 2 s) so that the release never passes a drawn entry.
const EntryDeadline = 1500 * time.Millisecond

// waitingRoom answers a line of a sale with a waiting room itself, from the
// room's opens_at to ends_at (contract section 2, "Waiting room"): entering
// takes no stock, so the checks after it (the sold-out memory, the user's
// budget, the sale's window) do not apply, and its lines never reach the
// claims and the queue: the room's releaser admits them later, in line order.
// The answer is the user's live ticket from the line (admitted, still in
// the pipeline: 200), limit_reached when they already hold per_user_limit
// units, their waiting ticket (200), or a fresh waiting ticket (202); from
// starts_at on, 409 sold_out while available + waitlist tickets wait. A sale
// with a waiting room is bought alone (400 invalid in a bundle).
func (a *Admission) waitingRoom(ctx context.Context, p *purchase, l *line) decision {
	sale := l.sale
	if sale.WaitingRoom == nil || a.cfg.WaitingLine == nil {
		return next
	}
	if p.bundle {
		return refuse(flashsale.Errorf(flashsale.CodeInvalid, "a sale with a waiting room is bought alone, not in a bundle"))
	}
	h, err := a.holdingOf(ctx, sale.ID, p.User, p.Now)
	switch {
	case err != nil:
		return refuse(unavailable(err))
	case h.ticket != nil:
		return answer(h.ticket)
	case h.live:
		return refuse(flashsale.Unavailable(errors.New("a live claim without a readable ticket"),
			"your ticket is being admitted from the line; retry"))
	case h.units+l.Quantity > sale.PerUserLimit:
		return refuse(flashsale.ErrLimitReached)
	}
	max := -1
	if !p.Now.Before(sale.StartsAt) {
		st, err := a.cfg.Levels.Stock(ctx, sale.ID)
		if err != nil {
			return refuse(unavailable(err))
		}
		max = st.Available + sale.WaitingRoom.Waitlist
	}
	t := &flashsale.Ticket{ID: flashsale.NewTicketID(p.User), UserID: p.User, Status: flashsale.TicketWaiting}
	t.SetLines([]flashsale.Line{l.Line})
	ectx := ctx
	if p.Now.Before(sale.StartsAt) {
		// An entry drawn must be recorded before the releaser's first pass
		// (waitroom's Delay, 2 s after starts_at): past EntryDeadline it is
		// abandoned (503, the user retries and joins behind the drawn).
		var cancel context.CancelFunc
		ectx, cancel = context.WithDeadline(ctx, sale.StartsAt.Add(EntryDeadline))
		defer cancel()
	}
	got, fresh, err := a.cfg.WaitingLine.EnterLine(ectx, t, sale.LineKey(p.User, t.ID, p.Now), p.Now, max)
	switch {
	case errors.Is(err, flashsale.ErrSoldOut):
		return refuse(flashsale.ErrSoldOut)
	case err != nil:
		return refuse(unavailable(err))
	}
	return decision{ticket: got, fresh: fresh}
}
