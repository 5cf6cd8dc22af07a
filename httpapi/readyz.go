package httpapi

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/flashsale/flashsale"
)

// Check is one readiness probe; it returns an error naming what failed.
type Check func(ctx context.Context) error

// readyTimeout bounds the checks of one /readyz.
const readyTimeout = 2 * time.Second

// Readyz is the one /readyz handler (the ingress's and the operations
// listener's): 200 {"status":"ready"} when every check passes within 2 s,
// else 503 unavailable whose message names what failed, its cause logged on
// log (see WriteError).
func Readyz(log *slog.Logger, checks []Check) gin.HandlerFunc {
	return func(c *gin.Context) {
		ctx, cancel := context.WithTimeout(c.Request.Context(), readyTimeout)
		defer cancel()
		var errs []error
		for _, check := range checks {
			if err := check(ctx); err != nil {
				errs = append(errs, err)
			}
		}
		if len(errs) > 0 {
			err := errors.Join(errs...)
			WriteError(c, log, &flashsale.Error{Code: flashsale.CodeUnavailable, Message: err.Error(), Cause: err})
			return
		}
		c.JSON(http.StatusOK, gin.H{"status": "ready"})
	}
}
