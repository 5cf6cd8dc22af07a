package ingress

import (
	"context"
	"errors"
	"net/http"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/google/uuid"

	"github.com/flashsale/flashsale"
	"github.com/flashsale/flashsale/admission"
	"github.com/flashsale/flashsale/httpapi"
)

type purchaseInput struct {
	Quantity *int `json:"quantity"`
}

type bundleInput struct {
	Items []struct {
		SaleID   string `json:"sale_id"`
		Quantity *int   `json:"quantity"`
	} `json:"items"`
}

type ticketAnswer struct {
	TicketID string                 `json:"ticket_id"`
	Status   flashsale.TicketStatus `json:"status"`
}

// purchase is POST /sales/{id}/purchase: one sale.
func (s *Server) purchase(c *gin.Context) {
	var in purchaseInput
	if err := BindJSON(c, &in); err != nil {
		s.WriteError(c, err)
		return
	}
	s.purchaseLines(c, []flashsale.Line{{SaleID: c.Param("id"), Quantity: quantityOr1(in.Quantity)}})
}

// purchaseBundle is POST /purchases: 2 to flashsale.MaxLines sales, all or
// nothing, under one ticket.
func (s *Server) purchaseBundle(c *gin.Context) {
	var in bundleInput
	if err := BindJSON(c, &in); err != nil {
		s.WriteError(c, err)
		return
	}
	if len(in.Items) < 2 || len(in.Items) > flashsale.MaxLines {
		s.WriteError(c, flashsale.Errorf(flashsale.CodeInvalid, "items: 2 to %d sales (a single sale is bought at /sales/{id}/purchase)", flashsale.MaxLines))
		return
	}
	lines := make([]flashsale.Line, len(in.Items))
	seen := map[string]bool{}
	for i, it := range in.Items {
		if seen[it.SaleID] {
			s.WriteError(c, flashsale.Errorf(flashsale.CodeInvalid, "items: sale %q appears twice", it.SaleID))
			return
		}
		seen[it.SaleID] = true
		lines[i] = flashsale.Line{SaleID: it.SaleID, Quantity: quantityOr1(it.Quantity)}
	}
	s.purchaseLines(c, lines)
	// The bundle's one answer counts in each of its sales.
	for _, l := range lines {
		s.CountPurchase(c, l.SaleID, c.Writer.Status(), string(httpapi.CodeOf(c)))
	}
}

func quantityOr1(q *int) int {
	if q == nil {
		return 1
	}
	return *q
}

// purchaseLines answers the purchase of lines as package admission decides
// it: a fresh ticket 202, the user's live ticket 200, a refusal in the one
// error shape.
func (s *Server) purchaseLines(c *gin.Context, lines []flashsale.Line) {
	t, fresh, err := s.admission.Admit(c.Request.Context(), admission.Request{User: userOf(c), Lines: lines, Now: s.cfg.Now()})
	if err != nil {
		s.WriteError(c, err)
		return
	}
	code := http.StatusOK
	if fresh {
		code = http.StatusAccepted
	}
	c.JSON(code, ticketAnswer{TicketID: t.ID, Status: t.Status})
}

// queuedGrace is how long after its id was minted a ticket found neither in
// Redis nor in MySQL may still be queued with its fast copy lost (Redis flushed,
// restarted or failed over): such a ticket answers 503, not 404.
const queuedGrace = 10 * time.Minute

// getTicket answers from the fast copy, falling back to MySQL when it is lost
// (see lookupTicket); a queued ticket also carries its place in the sale's
// line (see placeOf).
func (s *Server) getTicket(c *gin.Context) {
	t, err := s.lookupTicket(c.Request.Context(), c, userOf(c), c.Param("id"))
	var v ticketView
	if err == nil {
		v, err = s.viewOf(c.Request.Context(), t)
	}
	if err != nil {
		s.WriteError(c, err)
		return
	}
	c.JSON(http.StatusOK, v)
}

// lookupTicket reads the user's ticket id from the fast copy, falling back to
// MySQL when it is lost. Someone else's ticket is 404, as if it did not exist.
// A ticket in neither place that may still be queued (Redis unreachable, or an
// id minted within queuedGrace) is 503: the user retries, instead of being told
// it never existed. A lookup that reached MySQL and found nothing is marked in
// c (missedKey). A copy of an unpaid order past its pay_by is read again in
// MySQL (flashsale.Ticket.Overdue). The ticket returned has its lines in
// Items, and pay_by only while pending_payment.
func (s *Server) lookupTicket(ctx context.Context, c *gin.Context, user, id string) (*flashsale.Ticket, error) {
	t, err := s.cfg.Stock.GetTicket(ctx, id)
	if err == nil && t.Overdue(s.cfg.Now()) {
		// MySQL decides an unpaid order past its pay_by (see Overdue);
		// MySQL away: the copy.
		if mt, merr := s.cfg.Orders.GetTicket(ctx, flashsale.TicketRef{User: user, Ticket: id}); merr == nil {
			t = mt
		}
	}
	if err != nil { // lost or unreachable fast copy: MySQL has every ticket past queued
		copyErr := err
		t, err = s.cfg.Orders.GetTicket(ctx, flashsale.TicketRef{User: user, Ticket: id})
		if errors.Is(err, flashsale.ErrNotFound) {
			t, err = s.lineTicket(ctx, id)
		}
		if errors.Is(err, flashsale.ErrNotFound) {
			c.Set(missedKey, true) // a miss, whatever the answer (see lookupBudget)
		}
		if errors.Is(err, flashsale.ErrNotFound) && (!errors.Is(copyErr, flashsale.ErrNotFound) || mayBeQueued(id, user, time.Now())) {
			fe := &flashsale.Error{Code: flashsale.CodeUnavailable,
				Message: "the ticket cannot be read right now (it may still be queued); retry"}
			if errors.Is(copyErr, flashsale.ErrNotFound) {
				// Both stores answered: no failure to log at WARN (any
				// fresh id a client makes up lands here).
				s.log.Debug("a ticket in neither store may still be queued; answering 503", "ticket", id)
			} else {
				fe.Cause = copyErr // Redis unreachable: logged with the 503
			}
			err = fe
		}
	}
	if err == nil && t.UserID != user {
		err = flashsale.Errorf(flashsale.CodeNotFound, "no ticket %q", id)
	}
	if err != nil {
		return nil, err
	}
	v := *t
	v.SetLines(t.Lines())
	if t.Status != flashsale.TicketPendingPayment {
		v.PayBy = nil
	}
	return &v, nil
}

// mayBeQueued reports whether id, found neither in Redis nor in MySQL, may be
// one of user's tickets still queued whose fast copy was lost: a ticket id
// minted for user (flashsale.MintedFor), or a UUIDv7 (what tickets were
// before ids were minted) minted within queuedGrace.
func mayBeQueued(id, user string, now time.Time) bool {
	return flashsale.MintedFor(id, user) || mintedWithin(id, queuedGrace, now)
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
