package ingress

import (
	"context"
	"net/http"

	"github.com/gin-gonic/gin"

	"github.com/flashsale/flashsale"
)

// Lifecycle moves orders through their statuses.
type Lifecycle interface {
	// Cancel cancels userID's unpaid order and gives its units back; cancelling a
	// cancelled order returns it unchanged. Errors wrap flashsale.ErrNotFound or
	// flashsale.ErrAlreadyPaid.
	Cancel(ctx context.Context, userID, orderID string) (*flashsale.Order, error)
}

func (s *Server) getOrder(c *gin.Context) {
	o, err := s.cfg.Orders.GetOrder(c.Request.Context(), userOf(c), c.Param("id"))
	if err != nil {
		s.WriteError(c, err)
		return
	}
	c.JSON(http.StatusOK, o)
}

func (s *Server) cancelOrder(c *gin.Context) {
	o, err := s.cfg.Lifecycle.Cancel(c.Request.Context(), userOf(c), c.Param("id"))
	if err != nil {
		s.WriteError(c, err)
		return
	}
	c.JSON(http.StatusOK, o)
}
