package e2e

import (
	"context"
	"fmt"
	"net/http"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/chromedp"
)

// TestBuyerPageInChromium opens the buyer's page (/try/{sale}) in headless
// Chromium, a phone's width, identified as a gateway would do it (X-User-ID
// on every request of the page, the EventSource's included), while 1,500
// buyers are queued ahead and no worker runs. The person presses "buy": the
// page shows place 1,501; a worker then drains the line (every order COMMIT
// held 500 ms at a MySQL proxy, ~200 orders a second, so that the line takes
// a few seconds; a worker has up to 800 tickets in hand, so the buyer must be
// further back than that to see the line move before their turn) and the
// same page load shows its place falling, never growing, then
// pending_payment with the order and its pay_by, as the API
// has them. Screenshots (queued, falling, pending_payment) go to the test's artifact
// directory (go test -artifacts keeps them). A sale that does not exist is a
// 404 page.
func TestBuyerPageInChromium(t *testing.T) {
	chromiumPath(t)
	e := newEnv(t)
	cp := newCommitProxy(t)
	ing := e.start("ingress", nil)
	c := ing.client()
	spec := openSale(2000, 1, 12900)
	spec.Name = "Phone X, flash sale"
	id := c.createSale(t, spec)
	const ahead = 1500
	admitAll(t, c, id, userNames("ahead", ahead), 64)

	if r := c.must(t, http.MethodGet, "/try/no-such-sale", nil, nil); r.Status != http.StatusNotFound || !strings.Contains(string(r.Body), "no sale") {
		t.Errorf("the page of a sale that does not exist: %s, want 404 saying so", r)
	}
	r := c.must(t, http.MethodGet, "/try/"+id, nil, nil)
	if csp := r.Header.Get("Content-Security-Policy"); r.Status != http.StatusOK || !strings.Contains(csp, "connect-src 'self'") || !strings.Contains(csp, "default-src 'none'") {
		t.Fatalf("the page: %d, Content-Security-Policy %q", r.Status, csp)
	}

	const buyer = "page-buyer"
	page := openHeadless(t, "about:blank", 500, 900)
	page.do("identify the buyer as a gateway would", func(ctx context.Context, tg *chromedp.Target) (chromedp.Void, error) {
		if _, err := cdp.Call(ctx, tg, network.Enable, network.EnableParams{}); err != nil {
			return chromedp.Void{}, err
		}
		_, err := cdp.Call(ctx, tg, network.SetExtraHTTPHeaders, network.SetExtraHTTPHeadersParams{Headers: network.Headers{"X-User-ID": buyer}})
		return chromedp.Void{}, err
	})
	page.do("open the page", chromedp.Navigate(ing.URL+"/try/"+id))
	attr := func(name string) string {
		return evalIn[string](page, fmt.Sprintf("document.getElementById('buyer').dataset.%s || ''", name))
	}
	eventually(t, 15*time.Second, "the page shows the open sale", func() (bool, string) {
		st := attr("state")
		return st == "open" && strings.Contains(page.dom(), spec.Name), "data-state " + st
	})
	origin := evalIn[float64](page, "window.__oneLoad = 'kept'; performance.timeOrigin")

	page.do("press buy", chromedp.Click("#buy"))
	eventually(t, 15*time.Second, "the page shows its place in line", func() (bool, string) {
		return attr("status") == "queued" && attr("positions") != "", fmt.Sprintf("status %q positions %q msg %q", attr("status"), attr("positions"), evalIn[string](page, "document.getElementById('msg').textContent"))
	})
	if got := attr("positions"); got != strconv.Itoa(ahead+1) {
		t.Errorf("the page's first place is %s, want %d (%d buyers ahead)", got, ahead+1, ahead)
	}
	dir := t.ArtifactDir()
	queuedShot := filepath.Join(dir, "buyer-queued.png")
	page.screenshot(queuedShot)
	ticketID := evalIn[string](page, "document.getElementById('ticket-id').textContent")

	// A worker drains the line.
	cp.HoldCommits(-1, true, 500*time.Millisecond)
	e.start("worker", pacedWorker(e, cp))
	eventually(t, 60*time.Second, "the page shows its place falling", func() (bool, string) {
		return strings.Contains(attr("positions"), ",") || attr("status") != "queued", fmt.Sprintf("positions %q", attr("positions"))
	})
	fallingShot := filepath.Join(dir, "buyer-falling.png")
	page.screenshot(fallingShot)
	eventually(t, 90*time.Second, "the page shows pending_payment", func() (bool, string) {
		return attr("status") == "pending_payment", fmt.Sprintf("status %q positions %q", attr("status"), attr("positions"))
	})
	pendingShot := filepath.Join(dir, "buyer-pending.png")
	page.screenshot(pendingShot)
	var positions []int
	for _, p := range strings.Split(attr("positions"), ",") {
		n, err := strconv.Atoi(p)
		if err != nil {
			t.Fatalf("data-positions %q", attr("positions"))
		}
		positions = append(positions, n)
	}
	for i := 1; i < len(positions); i++ {
		if positions[i] >= positions[i-1] {
			t.Errorf("the page's place went from %d to %d: it must only fall", positions[i-1], positions[i])
		}
	}
	if len(positions) < 3 {
		t.Errorf("the page showed places %v: want it to fall at least twice before the order", positions)
	}

	// What the page shows is the API's ticket.
	var v placeView
	tr := c.must(t, http.MethodGet, pathTicket(ticketID), user(buyer), nil)
	if tr.Status != http.StatusOK {
		t.Fatalf("the page's ticket %s as %s: %s", ticketID, buyer, tr)
	}
	v, err := decodePlace(tr.Body)
	if err != nil {
		t.Fatal(err)
	}
	orderShown := evalIn[string](page, "document.getElementById('order-id').textContent")
	payShown := evalIn[string](page, "document.getElementById('pay-by').textContent")
	if v.Status != "pending_payment" || v.OrderID != ticketID || orderShown != v.OrderID || !strings.Contains(payShown, "left") {
		t.Errorf("the page shows order %q, pay by %q; the API: %+v", orderShown, payShown, v)
	}
	if mark, o := evalIn[string](page, "String(window.__oneLoad)"), evalIn[float64](page, "performance.timeOrigin"); mark != "kept" || o != origin {
		t.Errorf("the page was reloaded (mark %q, time origin %v, was %v)", mark, o, origin)
	}
	if w := evalIn[float64](page, "document.documentElement.scrollWidth - window.innerWidth"); w > 0 {
		t.Errorf("the page is %v px wider than a phone's window", w)
	}
	foreign := evalIn[[]string](page, fmt.Sprintf("performance.getEntriesByType('resource').map(e => e.name).filter(u => !u.startsWith(%q))", ing.URL+"/"))
	if len(foreign) > 0 {
		t.Errorf("the page fetched from elsewhere: %v", foreign)
	}
	for _, shot := range []string{queuedShot, pendingShot} {
		img := decodePNG(t, shot)
		if b := img.Bounds(); b.Dx() != 500 || b.Dy() != 900 {
			t.Errorf("%s is %dx%d, want 500x900", shot, b.Dx(), b.Dy())
		}
	}
	if samePixels(decodePNG(t, queuedShot), decodePNG(t, pendingShot)) {
		t.Error("the screenshots queued and pending_payment are the same")
	}
	t.Logf("the page showed places %v, then pending_payment (order %s, %s); screenshots %s, %s, %s", positions, orderShown, payShown, queuedShot, fallingShot, pendingShot)
}
