package api

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/gin-gonic/gin"
)

// TestJSONKeepsTheDescription: the served JSON is the YAML as written: the
// same document, its paths in the order they are written (the reference page
// lists them so).
func TestJSONKeepsTheDescription(t *testing.T) {
	j, err := JSON()
	if err != nil {
		t.Fatal(err)
	}
	var doc struct {
		OpenAPI string         `json:"openapi"`
		Paths   map[string]any `json:"paths"`
	}
	if err := json.Unmarshal(j, &doc); err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(doc.OpenAPI, "3.1.") || len(doc.Paths) < 20 {
		t.Errorf("openapi %q with %d paths", doc.OpenAPI, len(doc.Paths))
	}
	first, purchase := bytes.Index(j, []byte(`"/api/v1/sales":`)), bytes.Index(j, []byte(`"/api/v1/sales/{sale_id}/purchase":`))
	if first < 0 || purchase < first || bytes.Index(j, []byte(`"/healthz":`)) < purchase {
		t.Errorf("paths out of the written order: sales at %d, purchase at %d", first, purchase)
	}
}

// TestRegister: the description, the reference page (with its content
// security policy) and Redoc are served; an unknown file is 404 not_found.
func TestRegister(t *testing.T) {
	gin.SetMode(gin.ReleaseMode)
	e := gin.New()
	if err := Register(e, nil); err != nil {
		t.Fatal(err)
	}
	get := func(path string) *httptest.ResponseRecorder {
		w := httptest.NewRecorder()
		e.ServeHTTP(w, httptest.NewRequest(http.MethodGet, path, nil))
		return w
	}
	want, _ := JSON()
	if w := get(DescriptionPath); w.Code != 200 || !bytes.Equal(w.Body.Bytes(), want) || w.Header().Get("Content-Type") != "application/json" {
		t.Errorf("GET %s: %d %s", DescriptionPath, w.Code, w.Header().Get("Content-Type"))
	}
	if w := get(ReferencePath); w.Code != 200 || !strings.Contains(w.Body.String(), `spec-url="`+DescriptionPath+`"`) ||
		!strings.Contains(w.Header().Get("Content-Security-Policy"), "script-src 'self';") {
		t.Errorf("GET %s: %d %q, CSP %q", ReferencePath, w.Code, w.Body.String(), w.Header().Get("Content-Security-Policy"))
	}
	if w := get("/api/docs/static/redoc.standalone.js"); w.Code != 200 || w.Body.Len() < 1<<20 ||
		w.Header().Get("Content-Type") != "text/javascript; charset=utf-8" {
		t.Errorf("Redoc: %d, %d bytes, %s", w.Code, w.Body.Len(), w.Header().Get("Content-Type"))
	}
	for _, p := range []string{"/api/docs/static/nope.js", "/api/docs/static/", "/api/docs/static/../../api.go"} {
		if w := get(p); w.Code != 404 || !strings.Contains(w.Body.String(), `"code":"not_found"`) {
			t.Errorf("GET %s: %d %s", p, w.Code, w.Body.String())
		}
	}
}
