package ingress

import (
	"crypto/subtle"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strings"

	"github.com/gin-gonic/gin"

	"github.com/flashsale/flashsale"
)

// MaxBody is the largest request body accepted (64 KiB); larger is 400 bad_request.
const MaxBody = 64 << 10

const userKey = "flashsale.user"

// admin checks the bearer token of admin calls.
func (s *Server) admin(c *gin.Context) {
	if s.cfg.AdminToken == "" {
		s.WriteError(c, flashsale.Errorf(flashsale.CodeUnavailable, "admin endpoints are disabled: FLASHSALE_ADMIN_TOKEN is not set"))
		return
	}
	token, ok := strings.CutPrefix(c.GetHeader("Authorization"), "Bearer ")
	if !ok || subtle.ConstantTimeCompare([]byte(token), []byte(s.cfg.AdminToken)) != 1 {
		s.WriteError(c, flashsale.Errorf(flashsale.CodeUnauthorized, "missing or wrong admin token"))
		return
	}
}

// user checks X-User-ID, set by the gateway after it authenticated the user.
func (s *Server) user(c *gin.Context) {
	id := c.GetHeader("X-User-ID")
	if !flashsale.ValidID(id) {
		s.WriteError(c, flashsale.Errorf(flashsale.CodeUnauthorized, "X-User-ID must be 1 to 64 characters of [A-Za-z0-9_-]"))
		return
	}
	c.Set(userKey, id)
}

func userOf(c *gin.Context) string { return c.GetString(userKey) }

// BindJSON decodes a JSON body of at most MaxBody bytes into v. An empty body
// leaves v as it is. Unknown fields are ignored; a known field of the wrong type,
// malformed JSON, trailing data or an oversize body is 400 bad_request.
func BindJSON(c *gin.Context, v any) error {
	body, err := io.ReadAll(http.MaxBytesReader(c.Writer, c.Request.Body, MaxBody))
	if err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			return flashsale.Errorf(flashsale.CodeBadRequest, "body larger than %d bytes", MaxBody)
		}
		return flashsale.Errorf(flashsale.CodeBadRequest, "cannot read body")
	}
	if len(strings.TrimSpace(string(body))) == 0 {
		return nil
	}
	dec := json.NewDecoder(strings.NewReader(string(body)))
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
