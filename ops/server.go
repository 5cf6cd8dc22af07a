package ops

import (
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/pprof"
	"os"
	"strings"

	"github.com/gin-gonic/gin"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/flashsale/flashsale"
	"github.com/flashsale/flashsale/httpapi"
)

// HandlerConfig for the operations listener's Handler.
type HandlerConfig struct {
	// Gatherer serves /metrics. Required.
	Gatherer prometheus.Gatherer
	// Ready are the checks of /readyz (200 when all pass, else 503
	// unavailable naming what failed, as the ingress answers it).
	Ready []Check
	// Live is served under /ops/ when set.
	Live *Live
	// Pprof serves net/http/pprof under /debug/pprof/. The listener is meant for
	// a private network: profiles are not behind the admin token.
	Pprof bool
	// Cmdline is what /debug/pprof/cmdline answers (see Cmdline), with secret
	// values already redacted by the caller. Default: the program's name alone,
	// never os.Args as net/http/pprof would (a flag may carry a secret).
	Cmdline []string
	// Log receives the causes of 503 answers. Default slog.Default().
	Log *slog.Logger
}

// Handler returns the operations listener's handler: /healthz, /readyz,
// /metrics, the live page and pprof. Unknown paths answer 404 in the API's
// error shape.
func Handler(cfg HandlerConfig) (http.Handler, error) {
	if cfg.Gatherer == nil {
		return nil, errors.New("ops: Gatherer is required")
	}
	log := cfg.Log
	if log == nil {
		log = slog.Default()
	}
	gin.SetMode(gin.ReleaseMode)
	e := gin.New()
	e.Use(gin.Recovery())
	e.NoRoute(func(c *gin.Context) {
		httpapi.WriteError(c, log, flashsale.Errorf(flashsale.CodeNotFound, "no such endpoint"))
	})
	e.GET("/healthz", func(c *gin.Context) { c.JSON(http.StatusOK, gin.H{"status": "ok"}) })
	e.GET("/readyz", httpapi.Readyz(log, cfg.Ready))
	e.GET("/metrics", gin.WrapH(promhttp.HandlerFor(cfg.Gatherer, promhttp.HandlerOpts{})))
	if cfg.Live != nil {
		cfg.Live.Register(e)
	}
	if cfg.Pprof {
		e.GET("/debug/pprof/*name", func(c *gin.Context) {
			switch c.Param("name") {
			case "/cmdline":
				Cmdline(cfg.Cmdline).ServeHTTP(c.Writer, c.Request)
			case "/profile":
				pprof.Profile(c.Writer, c.Request)
			case "/symbol":
				pprof.Symbol(c.Writer, c.Request)
			case "/trace":
				pprof.Trace(c.Writer, c.Request)
			default:
				pprof.Index(c.Writer, c.Request)
			}
		})
	}
	return e, nil
}

// Cmdline answers args as net/http/pprof's /debug/pprof/cmdline answers
// os.Args (NUL-separated), or the program's name alone when args is empty:
// it stands in for pprof's, which would show secrets given as flags.
func Cmdline(args []string) http.Handler {
	if len(args) == 0 {
		args = os.Args[:1]
	}
	body := strings.Join(args, "\x00")
	return http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("X-Content-Type-Options", "nosniff")
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		io.WriteString(w, body)
	})
}
