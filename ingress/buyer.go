package ingress

import (
	"embed"
	"errors"
	"fmt"
	"html/template"
	"io/fs"
	"net/http"

	"github.com/gin-gonic/gin"

	"github.com/flashsale/flashsale"
)

// The buyer's page: GET /try/{sale} serves one sale's page, on which a person
// presses "buy" and watches their ticket through its event stream (its place
// falling, then the order and its pay_by). The HTML, script and styles are
// embedded (web/), nothing is fetched from elsewhere, and the page only
// talks to this server's API: GET /sales/{id}, POST /sales/{id}/purchase,
// and an EventSource on GET /tickets/{id}/events.
//
// The page identifies nobody: its API calls carry what the gateway in front
// of the ingress adds (header mode: X-User-ID, on every request, the
// EventSource's included). A browser's EventSource cannot send an
// Authorization header, so in jwt mode the gateway (or a cookie it turns into
// the bearer) has to supply it too.
//
//	GET /try/{sale}            the page (404 for a sale that does not exist)
//	GET /try/static/{file}     its script and styles

//go:embed web
var buyerFS embed.FS

// buyerPage serves the page and its static files.
type buyerPage struct {
	page   *template.Template
	static http.Handler
}

func newBuyerPage() (*buyerPage, error) {
	page, err := template.ParseFS(buyerFS, "web/try.html")
	if err != nil {
		return nil, fmt.Errorf("ingress: buyer's page: %w", err)
	}
	static, err := fs.Sub(buyerFS, "web/static")
	if err != nil {
		return nil, fmt.Errorf("ingress: buyer's page: %w", err)
	}
	return &buyerPage{page: page, static: http.StripPrefix("/try/static/", http.FileServer(http.FS(static)))}, nil
}

// register adds the page's routes.
func (b *buyerPage) register(s *Server, r gin.IRouter) {
	r.GET("/try/:sale", func(c *gin.Context) { b.serve(s, c) })
	r.GET("/try/static/*file", func(c *gin.Context) {
		c.Header("Cache-Control", "public, max-age=3600")
		c.Header("X-Content-Type-Options", "nosniff")
		b.static.ServeHTTP(c.Writer, c.Request)
	})
}

// serve renders the sale's page: the page may load and connect to nothing but
// this server.
func (b *buyerPage) serve(s *Server, c *gin.Context) {
	id := c.Param("sale")
	status, missing := http.StatusOK, false
	if _, err := s.cfg.Sales.Get(c.Request.Context(), id); err != nil {
		if !errors.Is(err, flashsale.ErrNotFound) {
			s.WriteError(c, err)
			return
		}
		status, missing = http.StatusNotFound, true
	}
	c.Header("Content-Security-Policy", "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; form-action 'none'; frame-ancestors 'none'; base-uri 'none'")
	c.Header("X-Content-Type-Options", "nosniff")
	c.Header("Referrer-Policy", "no-referrer")
	c.Header("Cache-Control", "no-store")
	c.Header("Content-Type", "text/html; charset=utf-8")
	c.Status(status)
	if err := b.page.Execute(c.Writer, map[string]any{"Sale": id, "Missing": missing}); err != nil {
		s.log.Warn("rendering the buyer's page", "sale", id, "err", err)
	}
}
