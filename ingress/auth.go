package ingress

import (
	"strings"

	"github.com/gin-gonic/gin"

	"github.com/flashsale/flashsale"
	"github.com/flashsale/flashsale/identity"
)

const userKey = "flashsale.user"

// admin checks the bearer token of admin calls (see httpapi.AdminAuth, which
// counts and logs the failures).
func (s *Server) admin(c *gin.Context) {
	if !s.cfg.Admin.Enabled() {
		s.WriteError(c, flashsale.Errorf(flashsale.CodeUnavailable, "admin endpoints are disabled: FLASHSALE_ADMIN_TOKEN is not set"))
		return
	}
	h, err := identity.Single(c.Request, "Authorization")
	token, ok := strings.CutPrefix(h, "Bearer ")
	if err != nil || !ok {
		token = ""
	}
	if !s.cfg.Admin.Check(c.Request, "api", token) {
		s.WriteError(c, flashsale.Errorf(flashsale.CodeUnauthorized, "missing or wrong admin token"))
		return
	}
}

// user identifies the caller through the configured Identifier (X-User-ID set
// by the gateway, or a verified JWT); 401 unauthorized otherwise.
func (s *Server) user(c *gin.Context) {
	id, err := s.cfg.Identity.Identify(c.Request)
	if err != nil {
		s.WriteError(c, err)
		return
	}
	c.Set(userKey, id)
}

func userOf(c *gin.Context) string { return c.GetString(userKey) }
