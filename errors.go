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
	CodeBlocked           Code = "blocked"
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
	// Cause is what made a dependency fail (for CodeUnavailable): logged where
	// the error is answered, never shown to the caller.
	Cause error
}

func (e *Error) Error() string {
	if e.Cause != nil {
		return string(e.Code) + ": " + e.Message + ": " + e.Cause.Error()
	}
	return string(e.Code) + ": " + e.Message
}

// Unwrap returns the cause.
func (e *Error) Unwrap() error { return e.Cause }

// Is makes errors.Is(err, ErrSoldOut) true for any *Error with code sold_out.
func (e *Error) Is(target error) bool {
	t, ok := target.(*Error)
	return ok && t.Code == e.Code
}

// Unavailable passes a coded error on unchanged and turns any other (a
// dependency that failed) into CodeUnavailable with message for the caller,
// keeping err as its cause.
func Unavailable(err error, message string) error {
	var fe *Error
	if errors.As(err, &fe) {
		return err
	}
	return &Error{Code: CodeUnavailable, Message: message, Cause: err}
}

// Errorf returns an *Error with the given code and a formatted message.
func Errorf(code Code, format string, args ...any) error {
	return &Error{Code: code, Message: fmt.Sprintf(format, args...)}
}

// Sentinels for the expected outcomes; wrap them or use Errorf for a better message.
var (
	ErrNotFound     = &Error{Code: CodeNotFound, Message: "not found"}
	ErrConflict     = &Error{Code: CodeConflict, Message: "already exists"}
	ErrNotStarted   = &Error{Code: CodeNotStarted, Message: "the sale has not started"}
	ErrEnded        = &Error{Code: CodeEnded, Message: "the sale has ended"}
	ErrSoldOut      = &Error{Code: CodeSoldOut, Message: "nothing is available right now"}
	ErrNotQualified = &Error{Code: CodeNotQualified, Message: "this sale sells only to users who reserved"}
	ErrLimitReached = &Error{Code: CodeLimitReached, Message: "per-user limit reached for this sale"}
	ErrRateLimited  = &Error{Code: CodeRateLimited, Message: "too many requests for this sale right now"}
	ErrUnavailable  = &Error{Code: CodeUnavailable, Message: "the service cannot take the request now; retry"}
	ErrAlreadyPaid  = &Error{Code: CodeAlreadyPaid, Message: "the order is already paid"}
	ErrNotPaid      = &Error{Code: CodeNotPaid, Message: "the order is not paid"}
	ErrNotLoaded    = errors.New("sale not loaded in the stock store")
	// ErrNeedsRevive answers a succeeded payment of an expired order that the
	// book of record did not apply: a late payment takes the order's units
	// again in the stock store first (lifecycle.Service.Pay). Never an API
	// answer.
	ErrNeedsRevive = errors.New("the order expired: its units must be taken again before it is paid")
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
var ErrAmountMismatch = &Error{Code: CodeAmountMismatch, Message: "the amount differs from the order's"}
