package ingress

import (
	"errors"
	"net/http"

	"github.com/gin-gonic/gin"

	"github.com/flashsale/flashsale"
)

// statusOf is the one mapping from error codes to HTTP statuses.
func statusOf(code flashsale.Code) int {
	switch code {
	case flashsale.CodeBadRequest, flashsale.CodeInvalid:
		return http.StatusBadRequest
	case flashsale.CodeUnauthorized, flashsale.CodeBadSignature:
		return http.StatusUnauthorized
	case flashsale.CodeNotQualified:
		return http.StatusForbidden
	case flashsale.CodeNotFound:
		return http.StatusNotFound
	case flashsale.CodeConflict, flashsale.CodeNotStarted, flashsale.CodeEnded, flashsale.CodeSoldOut,
		flashsale.CodeLimitReached, flashsale.CodeAlreadyPaid, flashsale.CodeReservationClosed,
		flashsale.CodeReservationsFull, flashsale.CodeNoReservation:
		return http.StatusConflict
	case flashsale.CodeInvalidQuantity, flashsale.CodeAmountMismatch:
		return http.StatusUnprocessableEntity
	case flashsale.CodeRateLimited:
		return http.StatusTooManyRequests
	case flashsale.CodeUnavailable:
		return http.StatusServiceUnavailable
	}
	return http.StatusInternalServerError
}

type errorBody struct {
	Error struct {
		Code    flashsale.Code `json:"code"`
		Message string         `json:"message"`
	} `json:"error"`
}

// WriteError answers err in the contract's one error shape. An error that is not
// a *flashsale.Error is an internal failure: logged, and answered 500 without
// details (503 when a dependency is unavailable).
func (s *Server) WriteError(c *gin.Context, err error) {
	var fe *flashsale.Error
	if !errors.As(err, &fe) {
		s.log.Error("request failed", "method", c.Request.Method, "path", c.FullPath(), "err", err)
		fe = &flashsale.Error{Code: flashsale.CodeInternal, Message: "internal error"}
	}
	var body errorBody
	body.Error.Code, body.Error.Message = fe.Code, fe.Message
	if fe.Code == flashsale.CodeRateLimited {
		c.Header("Retry-After", "1")
	}
	c.AbortWithStatusJSON(statusOf(fe.Code), body)
}
