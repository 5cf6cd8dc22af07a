// Package api is the HTTP API's one description, openapi.yaml (OpenAPI 3.1),
// and what serves it: GET /api/v1/openapi.json (the description as JSON) and
// the reference page at /api/docs, rendered in the browser by Redoc, which is
// vendored under docs/static and embedded like the live page's uPlot (the
// page fetches nothing from anywhere but the server that serves it).
//
// The description sits at the repository's api/ because that is where Go
// projects keep their OpenAPI documents and go:embed reads only files at or
// below the embedding package: this package is the one place that owns the
// file. The generated client (api/apiclient) and the checker of exchanges
// (api/apicheck) are built from it.
//
// Serving the description checks nothing: this package imports gin, a YAML
// reader and the project's error shape only.
package api

import (
	"bytes"
	"embed"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"path"
	"sync"

	"github.com/gin-gonic/gin"
	"github.com/goccy/go-yaml"

	"github.com/flashsale/flashsale"
	"github.com/flashsale/flashsale/httpapi"
)

//go:embed openapi.yaml
var description []byte

//go:embed docs
var docsFS embed.FS

// YAML returns the description as it is kept in the repository.
func YAML() []byte { return bytes.Clone(description) }

var asJSON = sync.OnceValues(func() ([]byte, error) {
	j, err := yaml.YAMLToJSON(description) // keeps the order of keys: the reference page lists paths as written
	if err != nil {
		return nil, fmt.Errorf("api: openapi.yaml: %w", err)
	}
	var out bytes.Buffer
	if err := json.Compact(&out, j); err != nil {
		return nil, fmt.Errorf("api: openapi.yaml as JSON: %w", err)
	}
	return out.Bytes(), nil
})

// JSON returns the description as JSON, converted once; an error only if
// openapi.yaml is not YAML (a test reads it, so a build that ships never
// has one).
func JSON() ([]byte, error) {
	j, err := asJSON()
	return bytes.Clone(j), err
}

// Paths of what Register serves.
const (
	DescriptionPath = "/api/v1/openapi.json"
	ReferencePath   = "/api/docs"
	referenceStatic = "/api/docs/static/"
)

// Register serves the description and its reference page on r:
//
//	GET /api/v1/openapi.json     the description, application/json (anyone)
//	GET /api/docs                the reference page (Redoc)
//	GET /api/docs/static/{file}  Redoc's script and license
//
// An unknown file is 404 not_found in the API's error shape (logged on log,
// default slog.Default(), like every error answer). It fails only if the
// embedded description cannot be converted.
func Register(r gin.IRouter, log *slog.Logger) error {
	if log == nil {
		log = slog.Default()
	}
	j, err := JSON()
	if err != nil {
		return err
	}
	page, err := docsFS.ReadFile("docs/index.html")
	if err != nil {
		return fmt.Errorf("api: reference page: %w", err)
	}
	r.GET(DescriptionPath, func(c *gin.Context) {
		c.Header("Cache-Control", "no-cache")
		c.Data(http.StatusOK, "application/json", j)
	})
	r.GET(ReferencePath, func(c *gin.Context) {
		// Redoc styles its page with inline <style> elements and runs its
		// search in a worker made from a blob: both are allowed, nothing else
		// that is not the server's.
		c.Header("Content-Security-Policy", "default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; "+
			"img-src 'self' data:; font-src 'self' data:; connect-src 'self'; worker-src 'self' blob:; "+
			"frame-ancestors 'none'; base-uri 'none'; form-action 'none'")
		c.Header("X-Content-Type-Options", "nosniff")
		c.Header("Referrer-Policy", "no-referrer")
		c.Data(http.StatusOK, "text/html; charset=utf-8", page)
	})
	r.GET(referenceStatic+"*file", func(c *gin.Context) {
		name := path.Clean(c.Param("file"))
		data, err := docsFS.ReadFile("docs/static" + name)
		if err != nil || name == "/" {
			httpapi.WriteError(c, log, flashsale.Errorf(flashsale.CodeNotFound, "no such file"))
			return
		}
		ctype := "text/plain; charset=utf-8" // the license
		if path.Ext(name) == ".js" {
			ctype = "text/javascript; charset=utf-8" // whatever the system's mime.types says
		}
		c.Header("Cache-Control", "public, max-age=3600")
		c.Header("X-Content-Type-Options", "nosniff")
		c.Data(http.StatusOK, ctype, data)
	})
	return nil
}
