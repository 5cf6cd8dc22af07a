package e2e

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/flashsale/flashsale/api"
)

// TestAPIDescriptionServed: GET /api/v1/openapi.json (anyone) answers the
// description kept in the repository (api/openapi.yaml), OpenAPI 3.1.
func TestAPIDescriptionServed(t *testing.T) {
	e := newEnv(t)
	p := e.start("ingress", nil)
	r := p.client().must(t, http.MethodGet, api.DescriptionPath, nil, nil)
	if r.Status != http.StatusOK || !strings.HasPrefix(r.Header.Get("Content-Type"), "application/json") {
		t.Fatalf("GET %s: %s (%s)", api.DescriptionPath, r, r.Header.Get("Content-Type"))
	}
	want, err := api.JSON()
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(r.Body, want) {
		t.Errorf("the served description differs from api/openapi.yaml as JSON (%d bytes, want %d)", len(r.Body), len(want))
	}
	var doc struct {
		OpenAPI string                    `json:"openapi"`
		Paths   map[string]map[string]any `json:"paths"`
	}
	if err := json.Unmarshal(r.Body, &doc); err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(doc.OpenAPI, "3.1.") || doc.Paths["/api/v1/sales/{sale_id}/purchase"]["post"] == nil {
		t.Errorf("openapi %q, purchase operation %v: want OpenAPI 3.1.x describing POST /api/v1/sales/{sale_id}/purchase",
			doc.OpenAPI, doc.Paths["/api/v1/sales/{sale_id}/purchase"])
	}
}

// TestAPIReferenceInChromium: the reference page at /api/docs, rendered by
// the embedded Redoc in headless Chromium, lists the purchase route, and
// everything it loaded came from the server (the browser's netlog, an
// observer outside the page). Its screenshot is written to the test's
// artifact directory (kept by go test -artifacts, under -outputdir) or to
// FLASHSALE_E2E_SHOTS, and its path logged.
func TestAPIReferenceInChromium(t *testing.T) {
	chromiumPath(t)
	e := newEnv(t)
	p := e.start("ingress", nil)
	dir := os.Getenv("FLASHSALE_E2E_SHOTS")
	if dir == "" {
		dir = t.ArtifactDir() // kept with go test -artifacts
	}
	page := openHeadless(t, p.URL+api.ReferencePath, 1280, 1000)
	// As a reader would: the menu's "purchases", then its first operation.
	var text string
	for _, link := range []string{"#/purchases", "#/purchases/purchase"} {
		eventually(t, 30*time.Second, "the reference page's menu has "+link, func() (bool, string) {
			clicked := evalIn[bool](page, fmt.Sprintf(`(() => { const a = document.querySelector('a[href=%q]');
				if (a) { a.click(); } return !!a; })()`, link))
			text = evalIn[string](page, "document.body ? document.body.innerText : ''")
			return clicked, fmt.Sprintf("page text (%d chars): %.300q", len(text), text)
		})
	}
	eventually(t, 30*time.Second, "the reference page lists the purchase route", func() (bool, string) {
		text = evalIn[string](page, "document.body ? document.body.innerText : ''")
		return strings.Contains(text, "Buy units of one sale") && strings.Contains(text, "/api/v1/sales/{sale_id}/purchase"),
			fmt.Sprintf("page text (%d chars): %.300q", len(text), text)
	})
	shot := filepath.Join(dir, "api-reference.png")
	page.screenshot(shot)
	decodePNG(t, shot) // a PNG
	t.Logf("the reference page lists the purchase route; screenshot %s", shot)
	for _, want := range []string{"Buy several sales at once", "payments", "waiting room", "userHeader"} {
		if !strings.Contains(text, want) {
			t.Errorf("the reference page does not show %q", want)
		}
	}

	pageReqs, _, _ := checkPageRequests(t, page.close(), p.URL, api.ReferencePath, "/api/docs/static/redoc.standalone.js", api.DescriptionPath)
	t.Logf("netlog: %d requests of the page, all to %s", len(pageReqs), p.URL)
}
