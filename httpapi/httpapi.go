// Package httpapi holds the conventions every HTTP endpoint shares: the one
// error shape, the one mapping from error codes to HTTP statuses, strict JSON
// bodies of bounded size, and the one /readyz handler. The ingress, the
// payment webhook and the operations listener all answer through it, so a
// code means the same status everywhere.
package httpapi

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/flashsale/flashsale"
)

// MaxBody is the largest request body accepted (64 KiB); larger is 400 bad_request.
const MaxBody = 64 << 10

// StatusOf is the one mapping from error codes to HTTP statuses.
func StatusOf(code flashsale.Code) int {
	switch code {
	case flashsale.CodeBadRequest, flashsale.CodeInvalid:
		return http.StatusBadRequest
	case flashsale.CodeUnauthorized, flashsale.CodeBadSignature:
		return http.StatusUnauthorized
	case flashsale.CodeNotQualified, flashsale.CodeBlocked:
		return http.StatusForbidden
	case flashsale.CodeNotFound:
		return http.StatusNotFound
	case flashsale.CodeConflict, flashsale.CodeNotStarted, flashsale.CodeEnded, flashsale.CodeSoldOut,
		flashsale.CodeLimitReached, flashsale.CodeAlreadyPaid, flashsale.CodeNotPaid, flashsale.CodeReservationClosed,
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

// WriteError answers err in the one error shape and aborts the request. Every
// expected outcome and every bad input is a *flashsale.Error; any other error is
// a dependency that failed (Redis, MySQL, the broker away or timing out),
// answered 503 unavailable so the client retries. The cause of every 503 is
// logged here, and only here, never shown to the caller. (A panic is answered
// 500 internal by the recovery middleware.)
//
// A request whose client went away (its context cancelled, not timed out)
// while a dependency was answering is no dependency failure, whatever error
// the dependency returned: it is recorded as StatusClientClosed, logged at
// debug, and nothing is written that anyone would read.
func WriteError(c *gin.Context, log *slog.Logger, err error) {
	var fe *flashsale.Error
	if !errors.As(err, &fe) {
		fe = flashsale.Unavailable(err, "a service this request needs is not answering; retry").(*flashsale.Error)
	}
	if fe.Code == flashsale.CodeUnavailable && clientGone(c) {
		log.Debug("the client went away before the answer", "method", c.Request.Method, "path", c.FullPath(), "err", err)
		c.Set(codeKey, CodeClientClosed)
		c.AbortWithStatus(StatusClientClosed)
		return
	}
	if fe.Cause != nil {
		log.Warn("request failed on a dependency; answering 503", "method", c.Request.Method, "path", c.FullPath(),
			"answer", fe.Message, "err", fe.Cause)
	}
	var body errorBody
	body.Error.Code, body.Error.Message = fe.Code, fe.Message
	if fe.Code == flashsale.CodeRateLimited && c.Writer.Header().Get("Retry-After") == "" {
		c.Header("Retry-After", "1") // unless the handler set a longer one
	}
	c.Set(codeKey, fe.Code)
	c.AbortWithStatusJSON(StatusOf(fe.Code), body)
}

// StatusClientClosed is the status recorded (in the metrics and logs, as
// proxies do) for a request whose client went away before its answer; no
// client receives it. It is no 5xx: a client cannot fake a dependency
// failure by hanging up.
const StatusClientClosed = 499

// CodeClientClosed is what CodeOf gives for a request recorded as
// StatusClientClosed. It is not a contract code (nobody receives it); the
// purchase outcomes do not count it.
const CodeClientClosed flashsale.Code = "client_closed"

// clientGone reports whether c's client went away: the request's context was
// cancelled (net/http cancels it when the connection closes), not timed out
// (a deadline of the server's own is a dependency too slow, answered 503).
func clientGone(c *gin.Context) bool {
	return errors.Is(c.Request.Context().Err(), context.Canceled)
}

// codeKey is where WriteError leaves the answered code in the gin context.
const codeKey = "httpapi.code"

// CodeOf returns the error code WriteError answered on c, or "" when the request
// was not answered with an error (yet). Middleware reads it after c.Next(), e.g.
// to count outcomes without parsing the body.
func CodeOf(c *gin.Context) flashsale.Code {
	code, _ := c.Get(codeKey)
	fc, _ := code.(flashsale.Code)
	return fc
}

// ReadBody reads the request body, at most MaxBody bytes (else 400 bad_request).
func ReadBody(c *gin.Context) ([]byte, error) {
	body, err := io.ReadAll(http.MaxBytesReader(c.Writer, c.Request.Body, MaxBody))
	if err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			return nil, flashsale.Errorf(flashsale.CodeBadRequest, "body larger than %d bytes", MaxBody)
		}
		return nil, flashsale.Errorf(flashsale.CodeBadRequest, "cannot read body")
	}
	return body, nil
}

// Decode decodes raw into v. Empty raw leaves v as it is. Unknown fields are
// ignored; a known field of the wrong type, malformed JSON or trailing data is
// 400 bad_request.
func Decode(raw []byte, v any) error {
	if len(bytes.TrimSpace(raw)) == 0 {
		return nil
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	if err := dec.Decode(v); err != nil {
		var typeErr *json.UnmarshalTypeError
		if errors.As(err, &typeErr) {
			return flashsale.Errorf(flashsale.CodeBadRequest, "field %q has the wrong type", typeErr.Field)
		}
		return flashsale.Errorf(flashsale.CodeBadRequest, "malformed JSON: %v", err)
	}
	if dec.More() {
		return flashsale.Errorf(flashsale.CodeBadRequest, "malformed JSON: trailing data")
	}
	return nil
}

// Bind reads and decodes the request body into v (see ReadBody and Decode).
func Bind(c *gin.Context, v any) error {
	raw, err := ReadBody(c)
	if err != nil {
		return err
	}
	return Decode(raw, v)
}

// Check is one readiness probe; it returns an error saying what failed.
type Check func(ctx context.Context) error

// Named gives check the name /readyz answers when it fails ("redis",
// "mysql"...): the answer names what failed, while the check's error, which
// may hold internal addresses, goes to the log only.
func Named(name string, check Check) Check {
	return func(ctx context.Context) error {
		if err := check(ctx); err != nil {
			return &checkError{name: name, err: err}
		}
		return nil
	}
}

// checkError is a Named check's failure.
type checkError struct {
	name string
	err  error
}

func (e *checkError) Error() string { return e.name + ": " + e.err.Error() }
func (e *checkError) Unwrap() error { return e.err }

// readyTimeout bounds the checks of one /readyz.
const readyTimeout = 2 * time.Second

// Readyz is the one /readyz handler (the ingress's and the operations
// listener's): 200 {"status":"ready"} when every check passes within 2 s,
// else 503 unavailable whose message names the checks that failed (see
// Named; an unnamed one is "a dependency"), their causes logged on log (see
// WriteError) and never answered.
func Readyz(log *slog.Logger, checks []Check) gin.HandlerFunc {
	return func(c *gin.Context) {
		ctx, cancel := context.WithTimeout(c.Request.Context(), readyTimeout)
		defer cancel()
		var errs []error
		var names []string
		for _, check := range checks {
			if err := check(ctx); err != nil {
				errs = append(errs, err)
				name := "a dependency"
				var ce *checkError
				if errors.As(err, &ce) {
					name = ce.name
				}
				if !slices.Contains(names, name) {
					names = append(names, name)
				}
			}
		}
		if len(errs) > 0 {
			WriteError(c, log, &flashsale.Error{Code: flashsale.CodeUnavailable,
				Message: "not ready: " + strings.Join(names, ", ") + " not answering", Cause: errors.Join(errs...)})
			return
		}
		c.JSON(http.StatusOK, gin.H{"status": "ready"})
	}
}
