package ingress

import (
	"context"
	"net/http"

	"github.com/gin-gonic/gin"

	"github.com/flashsale/flashsale"
	"github.com/flashsale/flashsale/admission"
)

// Reservations is the reservation phase of sales (see package reservation).
type Reservations interface {
	// Reserve reserves the sale for the user: the reservation and created=true,
	// or the user's existing one and created=false. Errors with the codes
	// no_reservation, reservation_closed and reservations_full are answers;
	// any other error leaves the user free to retry.
	Reserve(ctx context.Context, sale *flashsale.Sale, userID string) (*flashsale.UserReservation, bool, error)
	// Reservation returns the user's reservation, or an error with code
	// not_found.
	Reservation(ctx context.Context, sale *flashsale.Sale, userID string) (*flashsale.UserReservation, error)
	// Qualified (admission.Qualifier) is asked on every purchase of a sale
	// with a reservation phase.
	admission.Qualifier
	// Count is how many users reserved the sale.
	Count(ctx context.Context, sale *flashsale.Sale) (int, error)
}

// reservationCount is the sale view's reservation count (nil without a phase).
func (s *Server) reservationCount(ctx context.Context, sale *flashsale.Sale) (*int, error) {
	if sale.Reservation == nil || s.cfg.Reservations == nil {
		return nil, nil
	}
	n, err := s.cfg.Reservations.Count(ctx, sale)
	if err != nil {
		return nil, flashsale.Unavailable(err, "cannot count the reservations now; retry")
	}
	return &n, nil
}

// reserve is POST /api/v1/sales/{id}/reservations: 201 with the new
// reservation, 200 with the user's existing one.
func (s *Server) reserve(c *gin.Context) {
	ctx, user := c.Request.Context(), userOf(c)
	var none struct{} // no body is expected; a malformed one is still 400
	if err := BindJSON(c, &none); err != nil {
		s.WriteError(c, err)
		return
	}
	sale, err := s.cfg.Sales.Get(ctx, c.Param("id"))
	if err != nil {
		s.WriteError(c, err)
		return
	}
	if s.cfg.Reservations == nil {
		s.WriteError(c, flashsale.Errorf(flashsale.CodeNoReservation, "reservations are not available"))
		return
	}
	r, created, err := s.cfg.Reservations.Reserve(ctx, sale, user)
	if err != nil {
		s.WriteError(c, flashsale.Unavailable(err, "the reservation could not be confirmed; retry (it is never counted twice)"))
		return
	}
	code := http.StatusOK
	if created {
		code = http.StatusCreated
	}
	c.JSON(code, r)
}

// myReservation is GET /api/v1/sales/{id}/reservations/me.
func (s *Server) myReservation(c *gin.Context) {
	ctx, user := c.Request.Context(), userOf(c)
	sale, err := s.cfg.Sales.Get(ctx, c.Param("id"))
	if err != nil {
		s.WriteError(c, err)
		return
	}
	if s.cfg.Reservations == nil {
		s.WriteError(c, flashsale.Errorf(flashsale.CodeNotFound, "no reservation"))
		return
	}
	r, err := s.cfg.Reservations.Reservation(ctx, sale, user)
	if err != nil {
		s.WriteError(c, flashsale.Unavailable(err, "cannot read the reservation now; retry"))
		return
	}
	c.JSON(http.StatusOK, r)
}
