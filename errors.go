package flashsale

import (
	"errors"
	"fmt"
)

// Code is a stable, machine-readable error code of the HTTP API.
type Code string

// The codes of contract section 2. Each maps to exactly one HTTP status in the
// ingress (see ingress.statusOf).
const (
	CodeBadRequest        Code = "bad_request"
	CodeInvalid           Code = "invalid"
	CodeUnauthorized      Code = "unauthorized"
	CodeNotFound          Code = "not_found"
	CodeConflict          Code = "conflict"
	CodeNotStarted        Code = "not_started"
	CodeEnded             Code = "ended"
	CodeSoldOut           Code = "sold_out"
	CodeNotQualified      Code = "not_qualified"
	CodeLimitReached      Code = "limit_reached"
	CodeInvalidQuantity   Code = "invalid_quantity"
	CodeRateLimited       Code = "rate_limited"
	CodeUnavailable       Code = "unavailable"
	CodeAlreadyPaid       Code = "already_paid"
	CodeNotPaid           Code = "not_paid"
	CodeReservationClosed Code = "reservation_closed"
	CodeReservationsFull  Code = "reservations_full"
	CodeNoReservation     Code = "no_reservation"
	CodeBadSignature      Code = "bad_signature"
	CodeAmountMismatch    Code = "amount_mismatch"
	CodeInternal          Code = "internal"
)

// Error is an expected outcome with a code and a human-readable message.
// Compare with errors.Is against the sentinels below: two Errors match when their
// codes match, whatever the message.
type Error struct {
	Code    Code
	Message string
}

func (e *Error) Error() string { return string(e.Code) + ": " + e.Message }

// Is makes errors.Is(err, ErrSoldOut) true for any *Error with code sold_out.
func (e *Error) Is(target error) bool {
	t, ok := target.(*Error)
	return ok && t.Code == e.Code
}

// Errorf returns an *Error with the given code and a formatted message.
func Errorf(code Code, format string, args ...any) error {
	return &Error{Code: code, Message: fmt.Sprintf(format, args...)}
}

// Sentinels for the expected outcomes; wrap them or use Errorf for a better message.
var (
	ErrNotFound     = &Error{CodeNotFound, "not found"}
	ErrConflict     = &Error{CodeConflict, "already exists"}
	ErrNotStarted   = &Error{CodeNotStarted, "the sale has not started"}
	ErrEnded        = &Error{CodeEnded, "the sale has ended"}
	ErrSoldOut      = &Error{CodeSoldOut, "nothing is available right now"}
	ErrNotQualified = &Error{CodeNotQualified, "this sale sells only to users who reserved"}
	ErrLimitReached = &Error{CodeLimitReached, "per-user limit reached for this sale"}
	ErrRateLimited  = &Error{CodeRateLimited, "too many requests for this sale right now"}
	ErrUnavailable  = &Error{CodeUnavailable, "the service cannot take the request now; retry"}
	ErrAlreadyPaid  = &Error{CodeAlreadyPaid, "the order is already paid"}
	ErrNotPaid      = &Error{CodeNotPaid, "the order is not paid"}
	ErrNotLoaded    = errors.New("sale not loaded in the stock store")
)

// ErrorCode returns the code of err if it is (or wraps) an *Error, else CodeInternal.
func ErrorCode(err error) Code {
	var e *Error
	if errors.As(err, &e) {
		return e.Code
	}
	return CodeInternal
}

// ErrAmountMismatch: a payment's amount differs from its order's.
var ErrAmountMismatch = &Error{CodeAmountMismatch, "the amount differs from the order's"}
