package identity

import (
	"errors"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/flashsale/flashsale"
)

// An identity header sent twice is 401 unauthorized, whichever of the two
// would be valid: a gateway that appends its header instead of replacing the
// client's must not let the client's come first.
func TestDuplicateIdentityHeadersRefused(t *testing.T) {
	j, err := NewJWT(JWTConfig{Secrets: []string{"jwt-secret-0123456789"}})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		who    Identifier
		header string
	}{{Header{}, "X-User-ID"}, {j, "Authorization"}} {
		r := httptest.NewRequest("GET", "/api/v1/tickets/x", nil)
		r.Header.Add(tc.header, "alice")
		r.Header.Add(tc.header, "bob")
		_, err := tc.who.Identify(r)
		var fe *flashsale.Error
		if !errors.As(err, &fe) || fe.Code != flashsale.CodeUnauthorized || !strings.Contains(fe.Message, "once") {
			t.Errorf("%s twice: %v, want unauthorized for the duplicate", tc.header, err)
		}
	}
	r := httptest.NewRequest("GET", "/", nil)
	r.Header.Set("X-User-ID", "alice")
	if id, err := (Header{}).Identify(r); err != nil || id != "alice" {
		t.Errorf("X-User-ID once: %q %v", id, err)
	}
}
