package ingress

import (
	"context"
	"errors"
	"net"
	"net/http"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/google/uuid"

	"github.com/flashsale/flashsale"
)

type purchaseInput struct {
	Quantity *int `json:"quantity"`
}

type ticketAnswer struct {
	TicketID string                 `json:"ticket_id"`
	Status   flashsale.TicketStatus `json:"status"`
}

func (s *Server) purchase(c *gin.Context) {
	ctx := c.Request.Context()
	user := userOf(c)
	var in purchaseInput
	if err := BindJSON(c, &in); err != nil {
		s.WriteError(c, err)
		return
	}
	sale, err := s.cfg.Sales.Get(ctx, c.Param("id"))
	if err != nil {
		s.WriteError(c, err)
		return
	}
	now := s.cfg.Now()
	switch {
	case now.Before(sale.StartsAt):
		s.WriteError(c, flashsale.ErrNotStarted)
		return
	case !now.Before(sale.EndsAt):
		s.WriteError(c, flashsale.ErrEnded)
		return
	}
	qty := 1
	if in.Quantity != nil {
		qty = *in.Quantity
	}
	if qty < 1 || qty > sale.PerUserLimit {
		s.WriteError(c, flashsale.Errorf(flashsale.CodeInvalidQuantity, "quantity must be between 1 and %d", sale.PerUserLimit))
		return
	}
	if err := s.checkQualified(ctx, sale, user); err != nil {
		s.WriteError(c, err)
		return
	}
	if err := s.checkBlocked(ctx, user, now); err != nil {
		s.WriteError(c, err)
		return
	}
	if !s.budget.Allow(sale.ID, user, now) || !s.limiter.Allow(sale.ID, now) {
		s.WriteError(c, flashsale.ErrRateLimited)
		return
	}
	ticket, fresh, err := s.admit(ctx, sale, user, qty, now)
	if err != nil {
		s.WriteError(c, err)
		return
	}
	code := http.StatusOK
	if fresh {
		code = http.StatusAccepted
	}
	c.JSON(code, ticketAnswer{TicketID: ticket.ID, Status: ticket.Status})
}

// admit claims the user's live ticket and queues it. It returns the new queued
// ticket (fresh), or the user's existing live ticket with its current status.
func (s *Server) admit(ctx context.Context, sale *flashsale.Sale, user string, qty int, now time.Time) (t *flashsale.Ticket, fresh bool, err error) {
	id, err := uuid.NewV7()
	if err != nil {
		return nil, false, err
	}
	ticketID := id.String()
	ticket := &flashsale.Ticket{ID: ticketID, SaleID: sale.ID, UserID: user, Quantity: qty, Status: flashsale.TicketQueued}
	outcome, existing, err := s.cfg.Stock.Claim(ctx, sale, user, ticketID, qty, now)
	if err != nil {
		return nil, false, s.claimFailed(ctx, ticket, err)
	}
	if outcome == flashsale.Existing {
		t, err := s.cfg.Stock.GetTicket(ctx, existing)
		if err == nil {
			return t, false, nil
		}
		// No fast copy: it is being queued right now, or its publish failed
		// and its claim could not be undone then (Redis away). A ticket given
		// up like that is final in MySQL: free its claim and claim again.
		if mt, merr := s.cfg.Orders.GetTicket(ctx, user, existing); merr == nil && !mt.Status.Live() {
			if err := s.cfg.Stock.Unclaim(ctx, sale.ID, user, existing); err != nil {
				return nil, false, s.dependency(err, "the purchase could not be queued; nothing was kept, retry")
			}
			if outcome, existing, err = s.cfg.Stock.Claim(ctx, sale, user, ticketID, qty, now); err != nil {
				return nil, false, s.claimFailed(ctx, ticket, err)
			}
		} else {
			return &flashsale.Ticket{ID: existing, Status: flashsale.TicketQueued}, false, nil
		}
	}
	switch outcome {
	case flashsale.Existing:
		return &flashsale.Ticket{ID: existing, Status: flashsale.TicketQueued}, false, nil
	case flashsale.LimitReached:
		return nil, false, flashsale.ErrLimitReached
	case flashsale.SoldOut:
		return nil, false, flashsale.ErrSoldOut
	}
	// undo leaves nothing behind of a request answered 503: its decision
	// first, in MySQL (a publish that reached the broker after all then makes
	// no order; a claim that cannot be undone now because Redis is away is
	// freed by the user's next purchase, see above), then its claim and copy.
	undo := func(cause error) (stands bool) {
		if s.giveUp(ctx, ticket, cause) {
			return true // queued after all, and already ordered
		}
		bg := context.WithoutCancel(ctx)
		if err := s.cfg.Stock.Unclaim(bg, sale.ID, user, ticketID); err != nil {
			s.log.Error("cannot undo a claim; it goes stale and is replaced on retry", "ticket", ticketID, "err", err)
		}
		s.cfg.Stock.DeleteTicket(bg, ticketID)
		return false
	}
	if err := s.cfg.Stock.PutTickets(ctx, ticket); err != nil {
		undo(err)
		return nil, false, unavailable(err)
	}
	pctx, cancel := context.WithTimeout(ctx, s.cfg.PublishTimeout)
	defer cancel()
	req := &flashsale.PurchaseRequest{TicketID: ticketID, SaleID: sale.ID, UserID: user, Quantity: qty, AdmittedAt: now.UTC()}
	if err := s.cfg.Queue.PublishPurchase(pctx, req); err != nil && !undo(err) {
		return nil, false, unavailable(err)
	}
	if err := s.cfg.Stock.Published(context.WithoutCancel(ctx), sale.ID, ticketID); err != nil {
		s.log.Warn("cannot mark a claim published; the worker will", "ticket", ticketID, "err", err)
	}
	return ticket, true, nil
}

// claimFailed answers a claim of ticket t that failed on Redis. A claim that
// reached Redis may still run once Redis answers again (it was frozen, not
// gone): the ticket is recorded given up, so that such a claim is freed by the
// user's next purchase. One that could not even connect never ran, and costs
// MySQL nothing.
func (s *Server) claimFailed(ctx context.Context, t *flashsale.Ticket, err error) error {
	var ne *net.OpError
	if !errors.As(err, &ne) || ne.Op != "dial" {
		s.giveUp(ctx, t, err)
	}
	return unavailable(err)
}

// giveUp records in MySQL that ticket t, about to be answered 503, makes no
// order, and logs why; it reports whether the ticket made its order first
// (its publish reached the broker after all and a worker was quicker).
func (s *Server) giveUp(ctx context.Context, t *flashsale.Ticket, cause error) (ordered bool) {
	s.log.Warn("purchase not queued; answering 503", "ticket", t.ID, "sale", t.SaleID, "cause", cause)
	gave := *t
	gave.Status = flashsale.TicketFailed
	ordered, err := s.cfg.Orders.GiveUp(context.WithoutCancel(ctx), &gave)
	if err != nil {
		s.log.Error("cannot record a purchase that was not queued as failed", "ticket", t.ID, "err", err)
	}
	return ordered
}

// unavailable turns a dependency failure into 503 unavailable, without logging:
// the purchase paths that use it log the cause in giveUp.
func unavailable(cause error) error {
	var fe *flashsale.Error
	if errors.As(cause, &fe) {
		return cause
	}
	return &flashsale.Error{Code: flashsale.CodeUnavailable, Message: "the purchase could not be queued; nothing was kept, retry"}
}

type ticketView struct {
	TicketID string                 `json:"ticket_id"`
	SaleID   string                 `json:"sale_id"`
	Quantity int                    `json:"quantity"`
	Status   flashsale.TicketStatus `json:"status"`
	OrderID  string                 `json:"order_id,omitempty"`
	PayBy    *time.Time             `json:"pay_by,omitempty"`
}

// queuedGrace is how long after its id was minted a ticket found neither in
// Redis nor in MySQL may still be queued with its fast copy lost (Redis flushed,
// restarted or failed over): such a ticket answers 503, not 404.
const queuedGrace = 10 * time.Minute

// getTicket answers from the fast copy, falling back to MySQL when it is lost.
// Someone else's ticket is 404, as if it did not exist. A ticket in neither
// place that may still be queued (Redis unreachable, or an id minted within
// queuedGrace) is 503: the user retries, instead of being told it never existed.
func (s *Server) getTicket(c *gin.Context) {
	ctx, user, id := c.Request.Context(), userOf(c), c.Param("id")
	t, err := s.cfg.Stock.GetTicket(ctx, id)
	if err != nil { // lost or unreachable fast copy: MySQL has every ticket past queued
		copyErr := err
		t, err = s.cfg.Orders.GetTicket(ctx, user, id)
		if errors.Is(err, flashsale.ErrNotFound) && (!errors.Is(copyErr, flashsale.ErrNotFound) || mintedWithin(id, queuedGrace, time.Now())) {
			s.log.Warn("ticket not found in MySQL and its fast copy is unavailable; it may still be queued", "ticket", id, "cause", copyErr)
			err = flashsale.Errorf(flashsale.CodeUnavailable, "the ticket cannot be read right now (it may still be queued); retry")
		}
	}
	if err == nil && t.UserID != user {
		err = flashsale.Errorf(flashsale.CodeNotFound, "no ticket %q", id)
	}
	if err != nil {
		s.WriteError(c, err)
		return
	}
	v := ticketView{TicketID: t.ID, SaleID: t.SaleID, Quantity: t.Quantity, Status: t.Status, OrderID: t.OrderID}
	if t.Status == flashsale.TicketPendingPayment {
		v.PayBy = t.PayBy
	}
	c.JSON(http.StatusOK, v)
}

// mintedWithin reports whether id is a UUIDv7 (what tickets are) whose time is
// within d before now.
func mintedWithin(id string, d time.Duration, now time.Time) bool {
	u, err := uuid.Parse(id)
	if err != nil || u.Version() != 7 {
		return false
	}
	sec, nsec := u.Time().UnixTime()
	age := now.Sub(time.Unix(sec, nsec))
	return age >= -time.Minute && age <= d
}
