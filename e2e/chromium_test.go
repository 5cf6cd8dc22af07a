package e2e

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// chromiumPath returns Debian's chromium; without it the test fails when CI is
// set and skips otherwise.
func chromiumPath(t *testing.T) string {
	t.Helper()
	p, err := exec.LookPath("chromium")
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("chromium not installed (CI is set, so this fails; deploy/services.sh chromium installs it): %v", err)
		}
		t.Skipf("chromium not installed (deploy/services.sh chromium): %v", err)
	}
	return p
}

// headlessPage is one page load in a headless Chromium driven through the
// DevTools protocol (chromedp): the test reads the page's DOM, resizes its
// viewport and takes screenshots while the page keeps running, never
// reloading it. The browser resolves no host name (every name maps to
// NOTFOUND; the server is addressed by IP) and writes a netlog of everything
// its network stack did, read by close: an observer outside the page.
type headlessPage struct {
	t      *testing.T
	ctx    context.Context // the tab's chromedp context
	stop   func()
	netlog string
	closed bool
}

// openHeadless starts Chromium with a width×height viewport and navigates to
// url. The browser is closed when the test ends, if close was not called.
func openHeadless(t *testing.T, url string, width, height int) *headlessPage {
	t.Helper()
	dir := t.TempDir()
	h := &headlessPage{t: t, netlog: filepath.Join(dir, "netlog.json")}
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(chromiumPath(t)), chromedp.NoSandbox, chromedp.DisableGPU,
		chromedp.UserDataDir(filepath.Join(dir, "profile")), chromedp.WindowSize(width, height),
		chromedp.Flag("disable-quic", true), chromedp.Flag("disable-component-update", true),
		chromedp.Flag("host-resolver-rules", "MAP * ~NOTFOUND, EXCLUDE 127.0.0.1"),
		chromedp.Flag("log-net-log", h.netlog))
	// A bound on the browser's whole life, should the test hang.
	life, cancelLife := context.WithTimeout(context.Background(), 5*time.Minute)
	alloc, cancelAlloc := chromedp.NewExecAllocator(life, opts...)
	tab, cancelTab := chromedp.NewContext(alloc)
	h.ctx = tab
	h.stop = func() { cancelTab(); cancelAlloc(); cancelLife() }
	t.Cleanup(func() {
		if !h.closed {
			h.stop()
		}
	})
	// The first Run starts the browser: no timeout on its context (it would
	// end the browser with it).
	if err := chromedp.Do(tab); err != nil {
		t.Fatalf("start chromium: %v", err)
	}
	h.do("set the viewport", chromedp.EmulateViewport(int64(width), int64(height)))
	h.do("open "+url, chromedp.Navigate(url))
	return h
}

// do runs actions on the page within 30 s.
func (h *headlessPage) do(what string, actions ...chromedp.Action[chromedp.Void]) {
	h.t.Helper()
	ctx, cancel := context.WithTimeout(h.ctx, 30*time.Second)
	defer cancel()
	if err := chromedp.Do(ctx, actions...); err != nil {
		h.t.Fatalf("chromium: %s: %v", what, err)
	}
}

// eval evaluates a JavaScript expression in the page and returns its value.
func evalIn[T any](h *headlessPage, js string) T {
	h.t.Helper()
	ctx, cancel := context.WithTimeout(h.ctx, 30*time.Second)
	defer cancel()
	v, err := chromedp.Run(ctx, chromedp.Evaluate[T](js))
	if err != nil {
		h.t.Fatalf("chromium: evaluate %s: %v", js, err)
	}
	return v
}

// dom returns the page's DOM as it is now.
func (h *headlessPage) dom() string {
	h.t.Helper()
	return evalIn[string](h, "document.documentElement.outerHTML")
}

// viewport resizes the page's viewport; the page sees a resize, not a load.
func (h *headlessPage) viewport(width, height int) {
	h.t.Helper()
	h.do("resize the viewport", chromedp.EmulateViewport(int64(width), int64(height)))
}

// screenshot writes a PNG of the viewport to path.
func (h *headlessPage) screenshot(path string) {
	h.t.Helper()
	ctx, cancel := context.WithTimeout(h.ctx, 30*time.Second)
	defer cancel()
	png, err := chromedp.Run(ctx, chromedp.CaptureScreenshot())
	if err != nil {
		h.t.Fatalf("chromium: screenshot: %v", err)
	}
	if err := os.WriteFile(path, png, 0o644); err != nil {
		h.t.Fatal(err)
	}
}

// close closes the browser gracefully (so that it finishes its netlog) and
// returns the netlog's text.
func (h *headlessPage) close() string {
	h.t.Helper()
	ctx, cancel := context.WithTimeout(h.ctx, 30*time.Second)
	err := chromedp.Cancel(ctx)
	cancel()
	h.stop()
	h.closed = true
	if err != nil {
		h.t.Fatalf("chromium: close: %v", err)
	}
	b, err := os.ReadFile(h.netlog)
	if err != nil {
		h.t.Fatalf("chromium wrote no netlog: %v", err)
	}
	return string(b)
}

// netlogRequest is one URL request in a Chromium netlog.
type netlogRequest struct {
	URL       string `json:"url"`
	Initiator string `json:"initiator"` // the origin that asked; "not an origin" for a navigation or the browser itself
	// NIK is the network isolation key: the top frame's site and the
	// frame's site, "null null" for the browser's own requests.
	NIK string `json:"network_isolation_key"`
}

// netlogRequests reads the URL requests of a netlog (events
// URL_REQUEST_START_JOB). A netlog cut short (the browser killed) lacks its
// closing "]}"; it is read all the same.
func netlogRequests(netlog string) ([]netlogRequest, error) {
	var d struct {
		Constants struct {
			LogEventTypes map[string]int `json:"logEventTypes"`
		} `json:"constants"`
		Events []struct {
			Type   int             `json:"type"`
			Params json.RawMessage `json:"params"`
		} `json:"events"`
	}
	if err := json.Unmarshal([]byte(netlog), &d); err != nil {
		cut := strings.TrimRight(netlog, " \n\r\t,") + "]}"
		if err2 := json.Unmarshal([]byte(cut), &d); err2 != nil {
			return nil, fmt.Errorf("netlog: %w", err)
		}
	}
	start, ok := d.Constants.LogEventTypes["URL_REQUEST_START_JOB"]
	if !ok {
		return nil, errors.New("netlog: no URL_REQUEST_START_JOB in its constants")
	}
	var out []netlogRequest
	for _, e := range d.Events {
		if e.Type != start || len(e.Params) == 0 { // the job's end has no params
			continue
		}
		var r netlogRequest
		if err := json.Unmarshal(e.Params, &r); err != nil {
			return nil, fmt.Errorf("netlog event %s: %w", e.Params, err)
		}
		out = append(out, r)
	}
	return out, nil
}

// pageRequests splits a netlog's requests into those of a page served from
// origin (scheme://host:port) — asked by that origin, or isolated under its
// site, as every request of a tab showing that page is — and the browser's
// own (component updates, account checks: no page asked for them).
func pageRequests(reqs []netlogRequest, origin string) (page, browser []netlogRequest) {
	site := origin
	if i := strings.LastIndexByte(origin, ':'); i > strings.Index(origin, "://") {
		site = origin[:i]
	}
	for _, r := range reqs {
		top, _, _ := strings.Cut(r.NIK, " ")
		if r.Initiator == origin || top == site || strings.HasPrefix(r.URL, origin+"/") {
			page = append(page, r)
		} else {
			browser = append(browser, r)
		}
	}
	return page, browser
}

func TestNetlogPageRequests(t *testing.T) {
	const origin = "http://127.0.0.1:8080"
	// The shape of Chromium's netlog (type ids come from its constants).
	netlog := `{"constants":{"logEventTypes":{"URL_REQUEST_START_JOB":7,"SOCKET_ALIVE":3}},"events":[
{"params":{"initiator":"not an origin","network_isolation_key":"null null","url":"http://update.example.com/x"},"source":{"id":1},"type":7},
{"params":{"initiator":"not an origin","network_isolation_key":"http://127.0.0.1 http://127.0.0.1","url":"http://127.0.0.1:8080/ops/live"},"type":7},
{"params":{"initiator":"http://127.0.0.1:8080","network_isolation_key":"http://127.0.0.1 http://127.0.0.1","url":"https://cdn.example.com/uPlot.js"},"type":7},
{"params":{"url":"http://127.0.0.1:8080/not-a-request"},"type":3},
{"params":{"initiator":"http://127.0.0.1:8080","network_isolation_key":"http://127.0.0.1 http://127.0.0.1","url":"http://127.0.0.1:8080/ops/live/data?after=1"},"type":7},
`
	reqs, err := netlogRequests(netlog) // cut short: no closing "]}"
	if err != nil {
		t.Fatal(err)
	}
	page, browser := pageRequests(reqs, origin)
	var urls []string
	for _, r := range page {
		urls = append(urls, r.URL)
	}
	want := "http://127.0.0.1:8080/ops/live https://cdn.example.com/uPlot.js http://127.0.0.1:8080/ops/live/data?after=1"
	if strings.Join(urls, " ") != want || len(browser) != 1 || browser[0].URL != "http://update.example.com/x" {
		t.Errorf("page requests %v, want %s; the browser's own %v", urls, want, browser)
	}
	if _, err := netlogRequests(`{"events":[`); err == nil {
		t.Error("a netlog without constants: no error")
	}
}
