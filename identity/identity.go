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

// Identify returns X-User-ID if it is a valid user id.
func (Header) Identify(r *http.Request) (string, error) {
	id := r.Header.Get("X-User-ID")
	if !flashsale.ValidID(id) {
		return "", flashsale.Errorf(flashsale.CodeUnauthorized, "X-User-ID must be 1 to 64 characters of [A-Za-z0-9_-]")
	}
	return id, nil
}
