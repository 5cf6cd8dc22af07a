package ingress

import (
	"crypto/subtle"
	"strings"

	"github.com/gin-gonic/gin"

	"github.com/flashsale/flashsale"
)

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
