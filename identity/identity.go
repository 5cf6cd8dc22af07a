// Package identity tells which user an HTTP request acts for. Two ways are
// offered (contract section 2, "Identities"):
//
//   - Header trusts X-User-ID, set by a gateway in front of the service after it
//     authenticated the user. Anyone who reaches the port can claim any user, so
//     the port must be reachable only from that gateway.
//   - JWT verifies a signed token in "Authorization: Bearer <JWT>" (HS256
//     secrets, RS256/ES256/EdDSA public keys); the user id is its sub claim and
//     X-User-ID is ignored.
//
// Both answer a missing or unverifiable identity with a *flashsale.Error of code
// unauthorized, so the caller only maps it to its status.
package identity

import (
	"net/http"

	"github.com/flashsale/flashsale"
)

// Identifier finds the user a request acts for.
type Identifier interface {
	// Identify returns the request's user id, a valid flashsale.ValidID, or an
	// error wrapping flashsale.CodeUnauthorized. It reads only the request's
	// headers and is safe for concurrent use.
	Identify(r *http.Request) (string, error)
}

// Header is the Identifier of "header" mode: X-User-ID as the gateway set it.
type Header struct{}

// Identify returns X-User-ID if it is a valid user id, and the only one.
func (Header) Identify(r *http.Request) (string, error) {
	id, err := Single(r, "X-User-ID")
	if err != nil {
		return "", err
	}
	if !flashsale.ValidID(id) {
		return "", flashsale.Errorf(flashsale.CodeUnauthorized, "X-User-ID must be 1 to 64 characters of [A-Za-z0-9_-]")
	}
	return id, nil
}

// Single returns the request's header name, or an error of code unauthorized
// when it is there more than once: a gateway that appends the identity it
// checked instead of replacing the client's would otherwise let the client's
// own come first. An absent header is "".
func Single(r *http.Request, name string) (string, error) {
	vs := r.Header.Values(name)
	if len(vs) > 1 {
		return "", flashsale.Errorf(flashsale.CodeUnauthorized, "%s must be sent once, not %d times", name, len(vs))
	}
	if len(vs) == 0 {
		return "", nil
	}
	return vs[0], nil
}
