package e2e

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"image"
	"image/png"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// The operations surface (issue 15): per-sale metrics that agree with the sale
// view and MySQL, the live page in a real browser, and deploy/prometheus's
// rules and dashboard evaluated by a real Prometheus scraping a real process.

// promMetrics is one /metrics answer: value by series, the series written
// name{label="value",...} with labels sorted by name (as client_golang writes
// them).
type promMetrics map[string]float64

// scrapeMetrics GETs url and parses the Prometheus text format.
func scrapeMetrics(t *testing.T, url string) promMetrics {
	t.Helper()
	hc := &http.Client{Timeout: 10 * time.Second}
	resp, err := hc.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(resp.Body)
		t.Fatalf("GET %s: %d %s", url, resp.StatusCode, b)
	}
	m := promMetrics{}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if err != nil {
			t.Fatalf("metrics line %q: %v", line, err)
		}
		m[line[:i]] = v
	}
	if err := sc.Err(); err != nil {
		t.Fatalf("read %s: %v", url, err)
	}
	return m
}

// series names a series: name and label pairs (name, value, name, value...).
func series(name string, labels ...string) string {
	type kv struct{ k, v string }
	var kvs []kv
	for i := 0; i+1 < len(labels); i += 2 {
		kvs = append(kvs, kv{labels[i], labels[i+1]})
	}
	if len(kvs) == 0 {
		return name
	}
	sort.Slice(kvs, func(i, j int) bool { return kvs[i].k < kvs[j].k })
	parts := make([]string, len(kvs))
	for i, p := range kvs {
		parts[i] = fmt.Sprintf("%s=%q", p.k, p.v)
	}
	return name + "{" + strings.Join(parts, ",") + "}"
}

// sum adds the values of every series of the family name whose labels
// include all of labels.
func (m promMetrics) sum(name string, labels ...string) (float64, int) {
	total, n := 0.0, 0
	for k, v := range m {
		fam, rest, _ := strings.Cut(k, "{")
		if fam != name {
			continue
		}
		ok := true
		for i := 0; i+1 < len(labels); i += 2 {
			if !strings.Contains(","+rest, fmt.Sprintf(",%s=%q", labels[i], labels[i+1])) {
				ok = false
			}
		}
		if ok {
			total += v
			n++
		}
	}
	return total, n
}

// purchaseOutcomes are the contract's outcome labels of flashsale_purchases_total.
var purchaseOutcomes = []string{"admitted", "existing", "rate_limited", "sold_out", "limit_reached", "not_qualified", "blocked", "unavailable"}

// answerOutcome is the outcome label a purchase answer is counted under.
func answerOutcome(r reply) string {
	switch r.Status {
	case http.StatusAccepted:
		return "admitted"
	case http.StatusOK:
		return "existing"
	}
	return r.errCode()
}

// mysqlUnits sums the sale's orders straight from the shards: units held by
// pending_payment orders, sold by paid ones, and the count of expired orders.
func mysqlUnits(t *testing.T, e *env, saleID string) (held, sold, expired int) {
	t.Helper()
	for _, r := range e.orders(t, saleID) {
		switch r.Status {
		case "pending_payment":
			held += r.Quantity
		case "paid":
			sold += r.Quantity
		case "expired":
			expired++
		}
	}
	return held, sold, expired
}

// TestOpsMetricsAgreeWithSale runs a scripted sale (sell-out, a double click,
// latecomers turned away, payments through the signed webhook, a paid buyer
// over the limit, the rest expiring after a 6 s window) and then checks every
// per-sale series of /metrics against the sale view, the orders in MySQL and
// the answers the buyers got.
func TestOpsMetricsAgreeWithSale(t *testing.T) {
	e := newEnv(t)
	p := e.start("all", map[string]string{"FLASHSALE_SWEEP_INTERVAL": "1", "FLASHSALE_RECONCILE_INTERVAL": "1"})
	c := p.client()
	const stock, price = 6, 1500
	spec := openSale(stock, 1, price)
	spec.PaymentWindowSeconds = 6
	id := c.createSale(t, spec)

	answers := map[string]int{}
	var refs []ticketRef
	buy := func(u string) reply {
		r := c.must(t, http.MethodPost, pathPurchase(id), user(u), nil)
		o := answerOutcome(r)
		answers[o]++
		if r.Status == http.StatusAccepted {
			var a purchaseAnswer
			if err := r.decode(&a); err != nil {
				t.Fatal(err)
			}
			refs = append(refs, ticketRef{User: u, TicketID: a.TicketID})
		}
		return r
	}
	for i := 0; i < stock; i++ {
		if r := buy(fmt.Sprintf("buyer-%d", i)); r.Status != http.StatusAccepted {
			t.Fatalf("buyer-%d: %s, want 202 (the sale has stock)", i, r)
		}
	}
	buy("buyer-0") // a double click: the live ticket again (counted as whatever it answered)
	// A purchase for a sale that does not exist: 404, and never a label.
	unknown := "no-such-sale-" + randHex(6)
	if r := c.must(t, http.MethodPost, pathPurchase(unknown), user("buyer-0"), nil); r.Status != http.StatusNotFound {
		t.Errorf("a purchase for an unknown sale: %s, want 404", r)
	}
	final := c.awaitFinal(t, refs, 60*time.Second)
	for i := 0; i < 3; i++ {
		buy(fmt.Sprintf("late-%d", i)) // every unit is held: sold out (unless an order expired already)
	}

	// Two buyers pay through the signed webhook, then one of them tries again.
	paid := 0
	for _, ref := range refs {
		v := final[ref.TicketID]
		if v.Status != "pending_payment" || paid == 2 {
			continue
		}
		o := placedOrder{User: ref.User, TicketID: ref.TicketID, OrderID: v.OrderID, AmountCents: price, Quantity: 1}
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		r, err := c.pay(ctx, e.PaymentSecret, "pay-"+randHex(6), o)
		cancel()
		if st, err := payOutcome(r, err, o.OrderID); err != nil || st != "paid" {
			t.Fatalf("paying order %s: %q %v", o.OrderID, st, err)
		}
		paid++
		if paid == 1 {
			if r := buy(ref.User); r.Status != http.StatusConflict {
				t.Errorf("a paid buyer buying again (per_user_limit 1): %s, want 409 limit_reached", r)
			}
		}
	}
	if paid != 2 {
		t.Fatalf("only %d orders were payable; the test needs 2", paid)
	}
	for _, o := range []string{"admitted", "sold_out", "limit_reached"} {
		if answers[o] == 0 {
			t.Errorf("the script got no %s answer (answers %v): it does not test that outcome", o, answers)
		}
	}
	final = c.awaitFinal(t, refs, 60*time.Second)

	// Every unpaid order expires (6 s window; delayq and the 1 s sweeper).
	eventually(t, 30*time.Second, "every unpaid order expired", func() (bool, string) {
		held, sold, expired := mysqlUnits(t, e, id)
		return held == 0, fmt.Sprintf("MySQL: held %d, sold %d, expired orders %d", held, sold, expired)
	})
	view := c.sale(t, id)
	held, sold, expired := mysqlUnits(t, e, id)
	if view.Stock.Held != held || view.Stock.Sold != sold || view.Stock.Available != stock-held-sold {
		t.Fatalf("sale view %+v disagrees with MySQL (held %d, sold %d)", view.Stock, held, sold)
	}
	if expired == 0 || sold != 2 {
		t.Fatalf("the script wants expiries and 2 payments: MySQL sold %d, expired orders %d", sold, expired)
	}

	var m promMetrics
	eventually(t, 20*time.Second, "/metrics settled (reconciler pass, outbox sent, queue empty)", func() (bool, string) {
		m = scrapeMetrics(t, p.URL+"/metrics")
		_, oversold := m[series("flashsale_oversold_units", "sale", id)]
		backlog, shards := m.sum("flashsale_outbox_backlog")
		queued := m[series("flashsale_queue_messages", "queue", e.NS+".purchase")]
		return oversold && shards == 2 && backlog == 0 && queued == 0,
			fmt.Sprintf("oversold series %v, outbox backlog %v on %d shards, purchase queue %v", oversold, backlog, shards, queued)
	})
	for k := range m {
		if strings.Contains(k, unknown) {
			t.Errorf("/metrics has a series for the unknown sale %s: %s", unknown, k)
		}
	}
	if _, n := m.sum("flashsale_purchases_total", "sale", id); n == 0 {
		t.Errorf("/metrics has no flashsale_purchases_total for sale %s: the label check above sees nothing", id)
	}
	check := func(what string, got, want float64) {
		t.Helper()
		if got != want {
			t.Errorf("%s = %v, want %v", what, got, want)
		} else {
			t.Logf("%s = %v", what, got)
		}
	}
	for state, want := range map[string]int{"available": view.Stock.Available, "held": view.Stock.Held, "sold": view.Stock.Sold} {
		k := series("flashsale_sale_units", "sale", id, "state", state)
		v, ok := m[k]
		if !ok {
			t.Errorf("/metrics has no %s", k)
		}
		check(k, v, float64(want))
	}
	check(series("flashsale_sale_state", "sale", id, "state", view.State), m[series("flashsale_sale_state", "sale", id, "state", view.State)], 1)
	if _, n := m.sum("flashsale_sale_state", "sale", id); n != 1 {
		t.Errorf("sale %s has %d flashsale_sale_state series, want 1", id, n)
	}
	for _, o := range purchaseOutcomes {
		k := series("flashsale_purchases_total", "sale", id, "outcome", o)
		if _, ok := m[k]; !ok {
			t.Errorf("/metrics has no %s", k)
		}
		check(k, m[k], float64(answers[o]))
	}
	if _, n := m.sum("flashsale_purchases_total", "sale", id); n != len(purchaseOutcomes) {
		t.Errorf("sale %s has %d flashsale_purchases_total series, want %d (the contract's outcomes)", id, n, len(purchaseOutcomes))
	}
	// Every 202 became final once: an order (pending_payment) for each.
	check("flashsale_ticket_final_seconds_count", m["flashsale_ticket_final_seconds_count"], float64(answers["admitted"]))
	if m["flashsale_ticket_final_seconds_sum"] <= 0 || m["flashsale_ticket_final_seconds_sum"] > 30*float64(answers["admitted"]) {
		t.Errorf("flashsale_ticket_final_seconds_sum = %v for %d tickets", m["flashsale_ticket_final_seconds_sum"], answers["admitted"])
	}
	ordersMade := 0
	for _, v := range final {
		if v.OrderID != "" {
			ordersMade++
		}
	}
	check("orders in MySQL", float64(len(e.orders(t, id))), float64(ordersMade))
	// Expiry: each expired order observed at least once (a duplicate message for
	// an order already expired is observed again), none of them late.
	if n := m["flashsale_expiry_lag_seconds_count"]; n < float64(expired) {
		t.Errorf("flashsale_expiry_lag_seconds_count = %v, want >= %d expired orders", n, expired)
	}
	if v := m[series("flashsale_expiry_lag_seconds_bucket", "le", "+Inf")] - m[series("flashsale_expiry_lag_seconds_bucket", "le", "10")]; v != 0 {
		t.Errorf("%v expiries more than 10 s after pay_by", v)
	}
	if n, _ := m.sum("flashsale_delayq_expired_total"); n < float64(expired) {
		t.Errorf("flashsale_delayq_expired_total = %v, want >= %d", n, expired)
	}
	overdue, _ := m.sum("flashsale_expiry_overdue_orders")
	check("flashsale_expiry_overdue_orders (all shards)", overdue, 0)
	check("flashsale_oversold_units{sale}", m[series("flashsale_oversold_units", "sale", id)], 0)
	diffs, kinds := m.sum("flashsale_reconcile_differences_by_kind")
	check("flashsale_reconcile_differences_by_kind (sum)", diffs, 0)
	if kinds != 10 { // hold, unordered_hold, counters, units, oversold, cap, cap_used, inventory_hold, inventory_unordered, inventory_counters
		t.Errorf("flashsale_reconcile_differences_by_kind has %d kinds, want 10", kinds)
	}
	check("flashsale_ready{role=all}", m[series("flashsale_ready", "role", "all")], 1)
	for _, q := range []string{".purchase", ".purchase.dead", ".expiry"} {
		k := series("flashsale_queue_consumers", "queue", e.NS+q)
		if m[k] < 1 {
			t.Errorf("%s = %v, want >= 1 (flashsale all consumes it)", k, m[k])
		}
	}
	if _, n := m.sum("flashsale_stock_cap_refusals_total"); n != 2 {
		t.Errorf("flashsale_stock_cap_refusals_total has %d series, want 2 (sold_out, over_limit, at 0)", n)
	}
	p.Stop()
}

// --- the live page in headless Chromium ---

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

// checkPageRequests reads a page's netlog and fails t for every request of
// the page that was not to origin, and for each of paths the page did not
// request; it returns the page's requests, the browser's own and the page's
// requests per path (without the query).
func checkPageRequests(t *testing.T, netlog, origin string, paths ...string) (page, browser []netlogRequest, seen map[string]int) {
	t.Helper()
	reqs, err := netlogRequests(netlog)
	if err != nil {
		t.Fatal(err)
	}
	page, browser = pageRequests(reqs, origin)
	seen = map[string]int{}
	for _, r := range page {
		if !strings.HasPrefix(r.URL, origin+"/") {
			t.Errorf("the page requested %s (initiator %s), not from %s", r.URL, r.Initiator, origin)
		}
		path, _, _ := strings.Cut(strings.TrimPrefix(r.URL, origin), "?")
		seen[path]++
	}
	for _, path := range paths {
		if seen[path] == 0 {
			t.Errorf("the netlog has no request of the page to %s: it does not see the page's requests (%d requests: %v)", path, len(page), page)
		}
	}
	return page, browser, seen
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

// liveSaleFigures are the page's figures of one sale, read from its DOM.
type liveSaleFigures struct {
	State                  string
	Available, Held, Sold  int
	Admitted               string
	Charts, Drawn, Foreign int
	Samples                int
	LastT                  string
	Overflow               string
	Resources              []string
}

var (
	reBodyAttr = regexp.MustCompile(`<body([^>]*)>`)
	reAttr     = regexp.MustCompile(`data-([a-z-]+)="([^"]*)"`)
	reCell     = regexp.MustCompile(`<td data-field="([a-z_]+)"[^>]*>([^<]*)</td>`)
	reRes      = regexp.MustCompile(`(?s)<span id="resources"[^>]*>(.*?)</span>`)
)

// parseLiveDOM reads the figures of sale id from the page's DOM (its
// outerHTML). A page without the sale's row yet has no state and no units.
func parseLiveDOM(dom, id string) liveSaleFigures {
	var f liveSaleFigures
	bm := reBodyAttr.FindStringSubmatch(dom)
	if bm == nil {
		return f
	}
	attrs := map[string]string{}
	for _, a := range reAttr.FindAllStringSubmatch(bm[1], -1) {
		attrs[a[1]] = a[2]
	}
	f.Charts, _ = strconv.Atoi(attrs["charts"])
	f.Drawn, _ = strconv.Atoi(attrs["charts-drawn"])
	f.Foreign, _ = strconv.Atoi(attrs["foreign"])
	f.Samples, _ = strconv.Atoi(attrs["samples"])
	f.LastT = attrs["last-t"]
	f.Overflow = attrs["overflow"]
	start := strings.Index(dom, `<tr data-sale="`+id+`">`)
	if start < 0 {
		return f
	}
	row := dom[start:]
	row = row[:strings.Index(row, "</tr>")]
	cells := map[string]string{}
	for _, c := range reCell.FindAllStringSubmatch(row, -1) {
		cells[c[1]] = c[2]
	}
	f.State = cells["state"]
	f.Available, _ = strconv.Atoi(cells["available"])
	f.Held, _ = strconv.Atoi(cells["held"])
	f.Sold, _ = strconv.Atoi(cells["sold"])
	f.Admitted = cells["admitted"]
	if rm := reRes.FindStringSubmatch(dom); rm != nil {
		f.Resources = strings.Fields(rm[1])
	}
	return f
}

// liveSample is the part of a /ops/live/data sample the test reads.
type liveSample struct {
	T     int64 `json:"t"`
	Sales []struct {
		ID        string `json:"id"`
		State     string `json:"state"`
		Available int    `json:"available"`
		Held      int    `json:"held"`
		Sold      int    `json:"sold"`
		// WaitingRoom is there for a sale with one.
		WaitingRoom *liveRoom `json:"waiting_room"`
	} `json:"sales"`
}

// liveRoom is a waiting room on the live page.
type liveRoom struct {
	Entries  int     `json:"entries"`
	Admitted int     `json:"admitted"`
	Waitlist int     `json:"waitlist"`
	Pace     float64 `json:"admitted_per_s"`
}

// awaitLiveRoom polls /ops/live/data until the page's latest sample shows
// sale id's waiting room with want's entries, admitted and waitlist, and
// returns the samples kept (the pace is checked by the caller).
func awaitLiveRoom(t *testing.T, c *client, id string, want liveRoom) []liveSample {
	t.Helper()
	var samples []liveSample
	eventually(t, 15*time.Second, fmt.Sprintf("the live page shows the waiting room of %s as %+v", id, want), func() (bool, string) {
		r := c.must(t, http.MethodGet, "/ops/live/data", c.admin(), nil)
		var d struct {
			Samples []liveSample `json:"samples"`
		}
		if r.Status != http.StatusOK || r.decode(&d) != nil || len(d.Samples) == 0 {
			return false, r.String()
		}
		samples = d.Samples
		for _, s := range d.Samples[len(d.Samples)-1].Sales {
			if s.ID == id {
				got := s.WaitingRoom
				return got != nil && got.Entries == want.Entries && got.Admitted == want.Admitted && got.Waitlist == want.Waitlist,
					fmt.Sprintf("sample %+v", got)
			}
		}
		return false, "no sale in the latest sample"
	})
	return samples
}

// awaitLiveSample polls /ops/live/data until the page's latest sample has sale
// id's view (state and stock) and returns the view.
func awaitLiveSample(t *testing.T, c *client, id string) saleView {
	t.Helper()
	var view saleView
	eventually(t, 15*time.Second, "the live page's latest sample shows the sale view", func() (bool, string) {
		view = c.sale(t, id)
		r := c.must(t, http.MethodGet, "/ops/live/data", c.admin(), nil)
		var d struct {
			Samples []liveSample `json:"samples"`
		}
		if r.Status != http.StatusOK || r.decode(&d) != nil || len(d.Samples) == 0 {
			return false, r.String()
		}
		last := d.Samples[len(d.Samples)-1]
		for _, s := range last.Sales {
			if s.ID == id {
				ok := s.State == view.State && s.Available == view.Stock.Available && s.Held == view.Stock.Held && s.Sold == view.Stock.Sold
				return ok, fmt.Sprintf("sample %+v, view %s %+v", s, view.State, view.Stock)
			}
		}
		return false, "no sale in the latest sample"
	})
	return view
}

// checkShot decodes a screenshot and asserts it is the page with its charts:
// the window's size and many colours (lines, legends), not a blank or an error
// page.
func checkShot(t *testing.T, path string, width, height int) image.Image {
	t.Helper()
	img := decodePNG(t, path)
	if b := img.Bounds(); b.Dx() != width || b.Dy() != height {
		t.Fatalf("screenshot is %dx%d, want %dx%d", b.Dx(), b.Dy(), width, height)
	}
	colours := map[[3]int]bool{}
	for y := 0; y < height; y += 2 {
		for x := 0; x < width; x += 2 {
			r, g, b := rgb8(img, x, y)
			if absInt(r-g) > 40 || absInt(g-b) > 40 || absInt(r-b) > 40 { // saturated: series, not text or grid
				colours[[3]int{r >> 4, g >> 4, b >> 4}] = true
			}
		}
	}
	if len(colours) < 6 {
		t.Errorf("screenshot %s has %d saturated colours; want the charts' series", path, len(colours))
	}
	return img
}

// TestLivePageInChromium opens the live page once in headless Chromium (driven
// through the DevTools protocol) during an open sale and keeps it open while
// buyers purchase in rounds: after each round the same page load, never
// reloaded, shows the sale view's figures by itself; it has drawn every
// chart, taken more samples, fits a phone's width and then a laptop's, and a
// screenshot after each round shows the figures moving. The page logs in with
// ?token=. Nothing left the server: the page's own list of what it fetched,
// and, from outside the page, the browser's netlog (with every host name
// unresolvable) has no URL but the server's.
func TestLivePageInChromium(t *testing.T) {
	chromiumPath(t)
	e := newEnv(t)
	p := e.start("all", nil)
	c := p.client()
	const stock = 500
	id := c.createSale(t, openSale(stock, 1, 2500))

	// Logged out: a login form, no data.
	if r := c.must(t, http.MethodGet, "/ops/live", nil, nil); r.Status != http.StatusUnauthorized || !strings.Contains(string(r.Body), `action="/ops/login"`) {
		t.Errorf("GET /ops/live without the cookie: %s, want 401 with the login form", r)
	}
	if r := c.must(t, http.MethodGet, "/ops/live/data", nil, nil); r.Status != http.StatusUnauthorized {
		t.Errorf("GET /ops/live/data without the token: %s, want 401", r)
	}
	if r := c.must(t, http.MethodGet, "/ops/live?token=wrong", nil, nil); r.Status != http.StatusUnauthorized {
		t.Errorf("GET /ops/live?token=wrong: %s, want 401", r)
	}

	round := func(prefix string, n int) {
		t.Helper()
		users := make([]string, n)
		for i := range users {
			users[i] = fmt.Sprintf("%s-%d", prefix, i)
		}
		refs, ta := accepted(t, c.burst(id, users, true))
		ta.only(t, "202")
		c.awaitFinal(t, refs, 60*time.Second)
	}
	// FLASHSALE_OPS_SHOTS keeps the screenshots in that directory, to look at.
	dir := os.Getenv("FLASHSALE_OPS_SHOTS")
	if dir == "" {
		dir = t.TempDir()
	}

	// One page load, at a phone's width first (500 CSS px; the layout is fluid
	// below that).
	page := openHeadless(t, p.URL+"/ops/live?token="+e.AdminToken, 500, 1600)
	if loc := evalIn[string](page, "location.pathname + location.search"); loc != "/ops/live" {
		t.Errorf("after logging in with ?token= the page is at %s, want /ops/live (the token off the address bar)", loc)
	}
	// A mark in the page's JavaScript world and its time origin: a reload
	// would lose the one and change the other.
	origin := evalIn[float64](page, "window.__oneLoad = 'kept'; performance.timeOrigin")

	// look waits until the page, polling by itself every second, shows the
	// sale view and has taken at least minSamples samples (the screenshots
	// are then a few seconds apart), and takes a screenshot.
	look := func(n, width, height, minSamples int) (liveSaleFigures, saleView, time.Time) {
		t.Helper()
		view := awaitLiveSample(t, c, id)
		var fig liveSaleFigures
		eventually(t, 15*time.Second, fmt.Sprintf("look %d: the open page shows the sale view", n), func() (bool, string) {
			fig = parseLiveDOM(page.dom(), id)
			return fig.State == view.State && fig.Available == view.Stock.Available && fig.Held == view.Stock.Held &&
					fig.Sold == view.Stock.Sold && fig.Charts >= 5 && fig.Drawn == fig.Charts && fig.Samples >= minSamples,
				fmt.Sprintf("page %+v; sale view %s %+v", fig, view.State, view.Stock)
		})
		shot := filepath.Join(dir, fmt.Sprintf("live-%d.png", n))
		page.screenshot(shot)
		at := time.Now()
		checkShot(t, shot, width, height)
		t.Logf("look %d (%dx%d): page %+v; sale view %s %+v; screenshot %s", n, width, height, fig, view.State, view.Stock, shot)
		// It fits the window's width, a phone's too: only tables scroll sideways.
		if fig.Overflow != "0" {
			t.Errorf("look %d: the page is wider than the %d px window (data-overflow %q)", n, width, fig.Overflow)
		}
		if fig.Foreign != 0 || len(fig.Resources) < 4 {
			t.Errorf("look %d: the page counts %d requests that left the server; resources %v", n, fig.Foreign, fig.Resources)
		}
		for _, u := range fig.Resources {
			if !strings.HasPrefix(u, p.URL+"/") {
				t.Errorf("look %d: the page fetched %s, not from %s", n, u, p.URL)
			}
		}
		if mark, o := evalIn[string](page, "String(window.__oneLoad)"), evalIn[float64](page, "performance.timeOrigin"); mark != "kept" || o != origin {
			t.Fatalf("look %d: the page was reloaded (mark %q, time origin %v, was %v)", n, mark, o, origin)
		}
		return fig, view, at
	}

	// Before any buyer: the sale's row, every unit available.
	eventually(t, 15*time.Second, "the open page shows the new sale", func() (bool, string) {
		f := parseLiveDOM(page.dom(), id)
		return f.State == "open" && f.Available == stock, fmt.Sprintf("page %+v", f)
	})
	round("round1", 15)
	fig, view, at := look(1, 500, 1600, 0)
	var prevShot image.Image
	for n, size := range [][2]int{{1280, 1400}, {1280, 1400}} {
		n += 2
		const bought = 20
		round(fmt.Sprintf("round%d", n), bought)
		if n == 2 {
			page.viewport(size[0], size[1]) // a laptop's width, same page load
		}
		fig2, view2, at2 := look(n, size[0], size[1], fig.Samples+3)
		t.Logf("look %d: %s after look %d, the page took %d samples in between", n, at2.Sub(at).Round(time.Millisecond), n-1, fig2.Samples-fig.Samples)
		if view2.Stock.Available != view.Stock.Available-bought || fig2.Available != fig.Available-bought || fig2.Held != fig.Held+bought {
			t.Errorf("look %d: the page did not move with the sale: %+v, then %+v (%d units bought in between)", n, fig, fig2, bought)
		}
		if fig2.Samples <= fig.Samples || fig2.LastT <= fig.LastT || fig2.Admitted == fig.Admitted {
			t.Errorf("look %d: the page's samples did not move: %d → %d samples, last %s → %s, admitted %s → %s",
				n, fig.Samples, fig2.Samples, fig.LastT, fig2.LastT, fig.Admitted, fig2.Admitted)
		}
		shot := decodePNG(t, filepath.Join(dir, fmt.Sprintf("live-%d.png", n)))
		if prevShot != nil && samePixels(prevShot, shot) {
			t.Errorf("look %d: the screenshot is the same as the one before: nothing moved on the page", n)
		}
		prevShot, fig, view, at = shot, fig2, view2, at2
	}

	// From outside the page: every request of the page in the browser's
	// netlog is to the server. The netlog sees the page's requests (so it
	// would see one that left); the browser's own (component updates and the
	// like, no page asked for them) found no host: every name resolves to
	// NOTFOUND.
	pageReqs, browserReqs, seen := checkPageRequests(t, page.close(), p.URL,
		"/ops/live", "/ops/live/static/uPlot.iife.min.js", "/ops/live/static/live.js", "/ops/live/data")
	// Every poll the page listed itself at its last look is in the netlog.
	polls := 0
	for _, u := range fig.Resources {
		if strings.HasPrefix(u, p.URL+"/ops/live/data") {
			polls++
		}
	}
	if seen["/ops/live/data"] < polls {
		t.Errorf("the netlog has %d polls of /ops/live/data, the page listed %d: it misses requests", seen["/ops/live/data"], polls)
	}
	t.Logf("netlog: %d requests of the page (%d polls; the page listed %d at its last look), all to %s; %d of the browser's own (not the page's, no host resolved)",
		len(pageReqs), seen["/ops/live/data"], polls, p.URL, len(browserReqs))
	p.Stop()
}

// decodePNG reads a PNG file.
func decodePNG(t *testing.T, path string) image.Image {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	img, err := png.Decode(f)
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return img
}

// samePixels tells whether two images have the same size and pixels.
func samePixels(a, b image.Image) bool {
	if a.Bounds() != b.Bounds() {
		return false
	}
	r := a.Bounds()
	for y := r.Min.Y; y < r.Max.Y; y++ {
		for x := r.Min.X; x < r.Max.X; x++ {
			if a.At(x, y) != b.At(x, y) {
				return false
			}
		}
	}
	return true
}

// --- a real Prometheus scraping a sale ---

// boolify turns every comparison of a PromQL expression into its bool form
// (`x > 0` into `x > bool 0`), so that an alert's expression returns its series
// (0 or 1) whether the alert would fire or not: an empty result then means the
// expression names series nobody exports. Label matchers (inside braces) and
// strings are left alone.
func boolify(q string) string {
	var b strings.Builder
	depth := 0
	var quote byte
	for i := 0; i < len(q); i++ {
		ch := q[i]
		if quote != 0 {
			b.WriteByte(ch)
			if ch == '\\' && i+1 < len(q) {
				i++
				b.WriteByte(q[i])
			} else if ch == quote {
				quote = 0
			}
			continue
		}
		switch {
		case ch == '"' || ch == '\'' || ch == '`':
			quote = ch
		case ch == '{':
			depth++
		case ch == '}':
			depth--
		case depth == 0 && (ch == '>' || ch == '<' || ch == '=' || ch == '!'):
			op := string(ch)
			if i+1 < len(q) && q[i+1] == '=' {
				op += "="
				i++
			}
			if op != "=" && op != "!" {
				op += " bool"
			}
			b.WriteString(op)
			continue
		}
		b.WriteByte(ch)
	}
	return b.String()
}

func TestBoolify(t *testing.T) {
	for in, want := range map[string]string{
		`max by (sale) (x) > 0`: `max by (sale) (x) > bool 0`,
		`max(m{queue=~".+\\.purchase",a!="b"}) > 0 and on() sum(rate(w[1m])) == 0`: `max(m{queue=~".+\\.purchase",a!="b"}) > bool 0 and on() sum(rate(w[1m])) == bool 0`,
		`up{job="flashsale"} == 0`: `up{job="flashsale"} == bool 0`,
		`a >= 1 or b != 2`:         `a >= bool 1 or b != bool 2`,
		`histogram_quantile(0.99, sum by (le) (rate(h[5m]))) > 10`: `histogram_quantile(0.99, sum by (le) (rate(h[5m]))) > bool 10`,
	} {
		if got := boolify(in); got != want {
			t.Errorf("boolify(%q) = %q, want %q", in, got, want)
		}
	}
}

// ruleExprs reads the alert names and expressions of a rules file (plain,
// or folded with >- over the following, more indented lines).
func ruleExprs(t *testing.T, path string) map[string]string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	lines := strings.Split(string(b), "\n")
	alert := ""
	for i := 0; i < len(lines); i++ {
		line := strings.TrimSpace(lines[i])
		if name, ok := strings.CutPrefix(line, "- alert: "); ok {
			alert = name
			continue
		}
		expr, ok := strings.CutPrefix(line, "expr: ")
		if !ok {
			continue
		}
		if expr == ">-" || expr == ">" || expr == "|" {
			indent := len(lines[i]) - len(strings.TrimLeft(lines[i], " "))
			var parts []string
			for i+1 < len(lines) && len(lines[i+1])-len(strings.TrimLeft(lines[i+1], " ")) > indent && strings.TrimSpace(lines[i+1]) != "" {
				i++
				parts = append(parts, strings.TrimSpace(lines[i]))
			}
			expr = strings.Join(parts, " ")
		}
		out[alert] = expr
	}
	return out
}

// dashboardExprs reads every query of the Grafana dashboard, with its
// variables given values: every sale, a 1-minute rate interval.
func dashboardExprs(t *testing.T, path string) map[string]string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var d struct {
		Panels []struct {
			Title   string `json:"title"`
			Targets []struct {
				Expr  string `json:"expr"`
				RefID string `json:"refId"`
			} `json:"targets"`
		} `json:"panels"`
	}
	if err := json.Unmarshal(b, &d); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	out := map[string]string{}
	r := strings.NewReplacer("$sale", ".*", "$__rate_interval", "1m")
	for _, p := range d.Panels {
		for _, q := range p.Targets {
			out[p.Title+" "+q.RefID] = r.Replace(q.Expr)
		}
	}
	return out
}

// promQuery runs an instant query and returns the number of series, or an
// error when Prometheus refused the query.
func promQuery(base, q string) (int, error) {
	hc := &http.Client{Timeout: 10 * time.Second}
	resp, err := hc.Get(base + "/api/v1/query?query=" + urlQueryEscape(q))
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	var r struct {
		Status string `json:"status"`
		Error  string `json:"error"`
		Data   struct {
			Result []json.RawMessage `json:"result"`
		} `json:"data"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&r); err != nil {
		return 0, err
	}
	if r.Status != "success" {
		return 0, fmt.Errorf("%s: %s", r.Status, r.Error)
	}
	return len(r.Data.Result), nil
}

// reMetricName finds the metric names of the project (and Prometheus's up)
// in a PromQL expression.
var reMetricName = regexp.MustCompile(`\bflashsale_[a-z0-9_]+|\bup\{`)

func urlQueryEscape(s string) string {
	return strings.NewReplacer("%", "%25", "+", "%2B", " ", "%20", "&", "%26", "#", "%23", "\"", "%22", "=", "%3D",
		"{", "%7B", "}", "%7D", "[", "%5B", "]", "%5D", "\\", "%5C", "$", "%24", ">", "%3E", "<", "%3C", "|", "%7C", "~", "%7E").Replace(s)
}

// TestPrometheusEvaluatesDashboardAndRules starts Debian's Prometheus on
// loopback (its own directory and port) with deploy/prometheus's configuration
// pointed at a running `flashsale all` whose /metrics is on its operations
// listener (FLASHSALE_OPS_ADDR), runs a sale, and evaluates every query of the
// Grafana dashboard and every alert expression through Prometheus's HTTP API:
// each must return series. It also checks what the operations listener moves
// off the public one.
func TestPrometheusEvaluatesDashboardAndRules(t *testing.T) {
	promBin, err := exec.LookPath("prometheus")
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("prometheus not installed (CI is set, so this fails; deploy/services.sh chromium installs it): %v", err)
		}
		t.Skipf("prometheus not installed (deploy/services.sh chromium): %v", err)
	}
	deployDir, err := filepath.Abs("../deploy/prometheus")
	if err != nil {
		t.Fatal(err)
	}
	e := newEnv(t)
	opsAddr := freeAddr(t)
	opsURL := "http://" + opsAddr
	p := e.startProc("all", map[string]string{"FLASHSALE_OPS_ADDR": opsAddr, "FLASHSALE_SWEEP_INTERVAL": "1",
		"FLASHSALE_RECONCILE_INTERVAL": "1"}, false)
	c := p.client()
	ops := checkedClient(t, opsURL, e.AdminToken)
	eventually(t, 60*time.Second, "/readyz 200 on the operations listener", func() (bool, string) {
		r, err := ops.send(context.Background(), http.MethodGet, "/readyz", nil, nil)
		return err == nil && r.Status == http.StatusOK, fmt.Sprint(r, err)
	})
	eventually(t, 10*time.Second, "the public listener answers", func() (bool, string) {
		r, err := c.send(context.Background(), http.MethodGet, "/healthz", nil, nil)
		return err == nil && r.Status == http.StatusOK, fmt.Sprint(r, err)
	})
	// With FLASHSALE_OPS_ADDR, /metrics and /readyz leave the public listener.
	for _, path := range []string{"/metrics", "/readyz"} {
		checkError(t, "public GET "+path+" with an operations listener", c.must(t, http.MethodGet, path, nil, nil), http.StatusNotFound, "not_found")
	}
	for path, want := range map[string]int{"/healthz": 200, "/metrics": 200, "/debug/pprof/cmdline": 200, "/ops/live": 401, "/ops/live/data": 401} {
		if r := ops.must(t, http.MethodGet, path, nil, nil); r.Status != want {
			t.Errorf("operations listener GET %s: %s, want %d", path, r, want)
		}
	}
	if r := ops.must(t, http.MethodGet, "/ops/live/data", ops.admin(), nil); r.Status != http.StatusOK {
		t.Errorf("operations listener GET /ops/live/data with the token: %s", r)
	}

	spec := openSale(40, 1, 990)
	spec.PaymentWindowSeconds = 2
	id := c.createSale(t, spec)
	// A sale with a waiting room: the dashboard's waiting-room panel has its series.
	if r := c.must(t, http.MethodPost, "/api/v1/sales", c.admin(), roomSale(10, 5, -time.Second, time.Hour)); r.Status != http.StatusCreated {
		t.Fatalf("create a sale with a waiting room: %s", r)
	}
	buyers := func(prefix string, n int) []string {
		u := make([]string, n)
		for i := range u {
			u[i] = fmt.Sprintf("%s-%d", prefix, i)
		}
		return u
	}
	orders := c.placeOrders(t, id, buyers("first", 20))
	for _, o := range orders[:5] {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		r, err := c.pay(ctx, e.PaymentSecret, "pay-"+randHex(6), o)
		cancel()
		if _, err := payOutcome(r, err, o.OrderID); err != nil {
			t.Fatalf("pay %s: %v", o.OrderID, err)
		}
	}

	// Prometheus, configured from deploy/prometheus/prometheus.yml.
	cfg, err := os.ReadFile(filepath.Join(deployDir, "prometheus.yml"))
	if err != nil {
		t.Fatal(err)
	}
	conf := string(cfg)
	for old, repl := range map[string]string{
		"127.0.0.1:8080":          opsAddr,
		"scrape_interval: 5s":     "scrape_interval: 1s",
		"evaluation_interval: 5s": "evaluation_interval: 1s",
		"scrape_timeout: 4s":      "scrape_timeout: 1s",
		"  - rules.yml":           "  - " + filepath.Join(deployDir, "rules.yml"),
	} {
		if !strings.Contains(conf, old) {
			t.Fatalf("deploy/prometheus/prometheus.yml no longer has %q; update this test", old)
		}
		conf = strings.ReplaceAll(conf, old, repl)
	}
	dir := t.TempDir()
	confPath := filepath.Join(dir, "prometheus.yml")
	if err := os.WriteFile(confPath, []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	promAddr := freeAddr(t)
	promURL := "http://" + promAddr
	logf, err := os.Create(filepath.Join(dir, "prometheus.log"))
	if err != nil {
		t.Fatal(err)
	}
	defer logf.Close()
	prom := exec.Command(promBin, "--config.file="+confPath, "--storage.tsdb.path="+filepath.Join(dir, "data"),
		"--web.listen-address="+promAddr, "--log.level=warn")
	prom.Stdout, prom.Stderr = logf, logf
	prom.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := prom.Start(); err != nil {
		t.Fatalf("start prometheus: %v", err)
	}
	promDone := make(chan struct{})
	go func() { prom.Wait(); close(promDone) }()
	t.Cleanup(func() {
		syscall.Kill(-prom.Process.Pid, syscall.SIGTERM)
		select {
		case <-promDone:
		case <-time.After(10 * time.Second):
			syscall.Kill(-prom.Process.Pid, syscall.SIGKILL)
			<-promDone
		}
	})
	promLog := func() string { b, _ := os.ReadFile(logf.Name()); return tail(string(b), 30) }
	eventually(t, 30*time.Second, "prometheus ready", func() (bool, string) {
		select {
		case <-promDone:
			t.Fatalf("prometheus exited:\n%s", promLog())
		default:
		}
		r, err := newClient(promURL, "").send(context.Background(), http.MethodGet, "/-/ready", nil, nil)
		return err == nil && r.Status == http.StatusOK, fmt.Sprint(r, err)
	})
	// The sale goes on while Prometheus scrapes: more buyers, more expiries.
	c.placeOrders(t, id, buyers("second", 10))
	eventually(t, 30*time.Second, "8 scrapes of the sale stored", func() (bool, string) {
		n, err := promQuery(promURL, `count_over_time(flashsale_sale_units{state="sold",sale="`+id+`"}[1m]) >= 8`)
		return err == nil && n == 1, fmt.Sprintf("%d series, %v; up: %s", n, err, promLog())
	})

	// A query naming a metric nobody exports returns nothing: the check below
	// can fail.
	if n, err := promQuery(promURL, boolify(`max(flashsale_no_such_metric) > 0`)); err != nil || n != 0 {
		t.Fatalf("control query: %d series, %v; want 0", n, err)
	}
	queries := map[string]string{}
	for name, q := range dashboardExprs(t, filepath.Join(deployDir, "grafana-dashboard.json")) {
		queries["dashboard: "+name] = q
	}
	rules := ruleExprs(t, filepath.Join(deployDir, "rules.yml"))
	if len(rules) != 10 {
		t.Fatalf("read %d alert rules from rules.yml, want 10: %v", len(rules), rules)
	}
	for name, q := range rules {
		queries["alert: "+name] = boolify(q)
	}
	names := make([]string, 0, len(queries))
	for k := range queries {
		names = append(names, k)
	}
	sort.Strings(names)
	for _, name := range names {
		n, err := promQuery(promURL, queries[name])
		switch {
		case err != nil:
			t.Errorf("%s: %s: %v", name, queries[name], err)
		case n == 0:
			t.Errorf("%s: %s: no series", name, queries[name])
		default:
			t.Logf("%s: %d series", name, n)
		}
	}
	// An expression whose one side falls back to a constant (`or vector(0)`,
	// `or … * 0`) returns series even if that side names a metric nobody
	// exports: every metric named anywhere must have series of its own.
	metrics := map[string][]string{}
	for _, name := range names {
		for _, m := range reMetricName.FindAllString(queries[name], -1) {
			m = strings.TrimSuffix(m, "{")
			metrics[m] = append(metrics[m], name)
		}
	}
	if len(metrics) < 15 {
		t.Errorf("only %d metric names found in the dashboard and the rules: %v", len(metrics), metrics)
	}
	for m, users := range metrics {
		if n, err := promQuery(promURL, fmt.Sprintf(`count({__name__=%q})`, m)); err != nil || n == 0 {
			t.Errorf("%s (named by %v): no series (%d, %v)", m, users, n, err)
		}
	}
	t.Logf("%d metric names in the dashboard and the rules, each with series", len(metrics))
	// Prometheus evaluates the rules themselves without error.
	eventually(t, 15*time.Second, "every rule evaluated, healthy", func() (bool, string) {
		r := newClient(promURL, "").must(t, http.MethodGet, "/api/v1/rules", nil, nil)
		var d struct {
			Data struct {
				Groups []struct {
					Rules []struct {
						Name      string `json:"name"`
						Health    string `json:"health"`
						LastError string `json:"lastError"`
					} `json:"rules"`
				} `json:"groups"`
			} `json:"data"`
		}
		if err := r.decode(&d); err != nil {
			return false, err.Error()
		}
		var bad []string
		n := 0
		for _, g := range d.Data.Groups {
			for _, rule := range g.Rules {
				n++
				if rule.Health != "ok" {
					bad = append(bad, fmt.Sprintf("%s: %s %s", rule.Name, rule.Health, rule.LastError))
				}
			}
		}
		return n == 10 && len(bad) == 0, fmt.Sprintf("%d rules, not ok: %v", n, bad)
	})
	// Nothing is wrong with this sale: no alert fires.
	if n, err := promQuery(promURL, `ALERTS{alertstate="firing"}`); err != nil || n != 0 {
		r := newClient(promURL, "").must(t, http.MethodGet, "/api/v1/alerts", nil, nil)
		t.Errorf("alerts firing during a healthy sale: %d, %v: %s", n, err, r)
	}
	p.Stop()
}
