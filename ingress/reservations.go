package ingress

import (
	"context"
	"net/http"

	"github.com/gin-gonic/gin"

	"github.com/flashsale/flashsale"
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
	// Qualified reports whether the user may buy the sale. It must not touch
	// the book of record unless the fast copy was lost: it runs on every
	// purchase.
	Qualified(ctx context.Context, sale *flashsale.Sale, userID string) (bool, error)
	// Count is how many users reserved the sale.
	Count(ctx context.Context, sale *flashsale.Sale) (int, error)
}

// checkQualified answers 403 not_qualified for a user who may not buy the sale:
// the sale has a reservation phase and the user did not reserve. Without
// Reservations every sale is open to all.
func (s *Server) checkQualified(ctx context.Context, sale *flashsale.Sale, user string) error {
	if sale.Reservation == nil || s.cfg.Reservations == nil {
		return nil
	}
	ok, err := s.cfg.Reservations.Qualified(ctx, sale, user)
	if err != nil {
		return flashsale.Unavailable(err, "cannot check the reservation now; nothing was queued, retry")
	}
	if !ok {
		return flashsale.ErrNotQualified
	}
	return nil
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
