package ingress

import (
	"context"

	"github.com/gin-gonic/gin"

	"github.com/flashsale/flashsale"
)

// Reservations is the reservation phase of sales. (Placeholder: the reservation
// issue fills this file in.)
type Reservations interface{}

// checkQualified answers 403 not_qualified for a user who may not buy the sale.
func (s *Server) checkQualified(ctx context.Context, sale *flashsale.Sale, user string) error {
	return nil
}

// reservationCount is the sale view's reservation count (nil without a phase).
func (s *Server) reservationCount(ctx context.Context, sale *flashsale.Sale) (*int, error) {
	return nil, nil
}

func (s *Server) reserve(c *gin.Context) {
	s.WriteError(c, flashsale.Errorf(flashsale.CodeNoReservation, "reservations are not available"))
}

func (s *Server) myReservation(c *gin.Context) {
	s.WriteError(c, flashsale.Errorf(flashsale.CodeNotFound, "no reservation"))
}
