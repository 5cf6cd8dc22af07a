package ingress

import (
	"context"
	"net/http"

	"github.com/gin-gonic/gin"

	"github.com/flashsale/flashsale"
)

// Lifecycle moves orders through their statuses.
type Lifecycle interface {
	// Cancel cancels the user's unpaid order and gives its units back;
	// cancelling a cancelled order returns it unchanged. Errors wrap
	// flashsale.ErrNotFound (also for another user's order) or
	// flashsale.ErrAlreadyPaid.
	Cancel(ctx context.Context, ref flashsale.OrderRef) (*flashsale.Order, error)
	// Return gives units of a paid order back on sale; created is false for a
	// return id applied before with the same order and items. Errors wrap
	// flashsale.ErrNotFound, flashsale.ErrNotPaid, flashsale.ErrConflict or
	// invalid_quantity.
	Return(ctx context.Context, r flashsale.ReturnRequest) (o *flashsale.Order, created bool, err error)
}

// getOrder answers an unpaid order from its ticket's fast copy when the copy
// has it (flashsale.Ticket.Unpaid: the read a buyer makes before paying), and
// every other order from MySQL: one paid, expired or cancelled, one whose
// copy is missing, unreadable or from before copies kept the order, and an
// unpaid one past its pay_by (MySQL decides whether it expired, as for the
// ticket: flashsale.Ticket.Overdue). A copy says pending_payment until the
// order's next status is written to it, before that transition is answered
// (cancel, payment), as the ticket's status does.
func (s *Server) getOrder(c *gin.Context) {
	ctx, ref := c.Request.Context(), flashsale.OrderRef{User: userOf(c), Order: c.Param("id")}
	if t, err := s.cfg.Stock.GetTicket(ctx, ref.Order); err == nil && t.Unpaid != nil && t.UserID == ref.User &&
		t.Status == flashsale.TicketPendingPayment && !t.Overdue(s.cfg.Now()) {
		c.JSON(http.StatusOK, t.Unpaid)
		return
	}
	o, err := s.cfg.Orders.GetOrder(ctx, ref)
	if err != nil {
		s.WriteError(c, err)
		return
	}
	c.JSON(http.StatusOK, o)
}

func (s *Server) cancelOrder(c *gin.Context) {
	o, err := s.cfg.Lifecycle.Cancel(c.Request.Context(), flashsale.OrderRef{User: userOf(c), Order: c.Param("id")})
	if err != nil {
		s.WriteError(c, err)
		return
	}
	c.JSON(http.StatusOK, o)
}

type returnInput struct {
	ReturnID string `json:"return_id"`
	Items    []struct {
		SaleID   string `json:"sale_id"`
		Quantity int    `json:"quantity"`
	} `json:"items"`
}

// maxReturnID bounds a return id's length (it is the caller's idempotency key).
const maxReturnID = 128

// returnOrder is POST /orders/{id}/returns (admin): 201 with the order, 200 for
// the same return again.
func (s *Server) returnOrder(c *gin.Context) {
	var in returnInput
	if err := BindJSON(c, &in); err != nil {
		s.WriteError(c, err)
		return
	}
	if in.ReturnID == "" || len(in.ReturnID) > maxReturnID {
		s.WriteError(c, flashsale.Errorf(flashsale.CodeInvalid, "return_id: 1 to %d characters", maxReturnID))
		return
	}
	if len(in.Items) < 1 || len(in.Items) > flashsale.MaxLines {
		s.WriteError(c, flashsale.Errorf(flashsale.CodeInvalid, "items: 1 to %d sales", flashsale.MaxLines))
		return
	}
	lines := make([]flashsale.Line, len(in.Items))
	seen := map[string]bool{}
	for i, it := range in.Items {
		switch {
		case !flashsale.ValidID(it.SaleID):
			s.WriteError(c, flashsale.Errorf(flashsale.CodeInvalid, "items: sale_id must be 1 to 64 characters of [A-Za-z0-9_-]"))
			return
		case seen[it.SaleID]:
			s.WriteError(c, flashsale.Errorf(flashsale.CodeInvalid, "items: sale %q appears twice", it.SaleID))
			return
		case it.Quantity < 1:
			s.WriteError(c, flashsale.Errorf(flashsale.CodeInvalidQuantity, "items: quantity of sale %q must be at least 1", it.SaleID))
			return
		}
		seen[it.SaleID] = true
		lines[i] = flashsale.Line{SaleID: it.SaleID, Quantity: it.Quantity}
	}
	o, created, err := s.cfg.Lifecycle.Return(c.Request.Context(), flashsale.ReturnRequest{ID: in.ReturnID, OrderID: c.Param("id"), Lines: lines})
	if err != nil {
		s.WriteError(c, err)
		return
	}
	code := http.StatusOK
	if created {
		code = http.StatusCreated
	}
	c.JSON(code, o)
}
