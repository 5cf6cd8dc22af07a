package ingress

import (
	"github.com/gin-gonic/gin"

	"github.com/flashsale/flashsale/httpapi"
)

// WriteError answers err in the API's one error shape (see httpapi.WriteError).
func (s *Server) WriteError(c *gin.Context, err error) { httpapi.WriteError(c, s.log, err) }

// BindJSON reads and decodes a request body (see httpapi.Bind).
func BindJSON(c *gin.Context, v any) error { return httpapi.Bind(c, v) }
