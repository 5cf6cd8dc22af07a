package bench

import (
	"bytes"
	"context"
	"net"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// countersBefore and countersAfter are two readings of a server's /metrics,
// trimmed from a real one: the run's sale (bench-r1) and another sale share the
// process; the run's sale has no purchase series yet before the opening.
const countersBefore = `# HELP flashsale_broker_published_total Messages published to RabbitMQ (and confirmed or not), by kind.
# TYPE flashsale_broker_published_total counter
flashsale_broker_published_total{kind="delay"} 10
flashsale_broker_published_total{kind="delay_item"} 40
flashsale_broker_published_total{kind="event"} 100
flashsale_broker_published_total{kind="purchase"} 20
flashsale_broker_published_total{kind="purchase_item"} 50
flashsale_broker_published_total{kind="republish"} 1
# TYPE flashsale_redis_commands_total counter
flashsale_redis_commands_total{stage="admission"} 500
flashsale_redis_commands_total{stage="other"} 70
flashsale_redis_commands_total{stage="worker"} 300
# TYPE flashsale_redis_round_trips_total counter
flashsale_redis_round_trips_total{stage="admission"} 200
flashsale_redis_round_trips_total{stage="other"} 70
flashsale_redis_round_trips_total{stage="worker"} 100
# TYPE flashsale_purchases_total counter
flashsale_purchases_total{outcome="admitted",sale="other"} 50
flashsale_purchases_total{outcome="sold_out",sale="other"} 9
# HELP flashsale_worker_stage_seconds Time per worker stage.
# TYPE flashsale_worker_stage_seconds histogram
flashsale_worker_stage_seconds_bucket{stage="hold",le="0.001"} 3
flashsale_worker_stage_seconds_bucket{stage="hold",le="+Inf"} 4
flashsale_worker_stage_seconds_sum{stage="hold"} 0.01
flashsale_worker_stage_seconds_count{stage="hold"} 4
# TYPE go_goroutines gauge
go_goroutines 42
# TYPE process_cpu_seconds_total counter
process_cpu_seconds_total 12.5
`

// After the run: 300 orders of the run's sale, 320 admitted, and the other sale
// also moved a little (its purchases are not the run's).
const countersAfter = `# TYPE flashsale_broker_published_total counter
flashsale_broker_published_total{kind="delay"} 85
flashsale_broker_published_total{kind="delay_item"} 340
flashsale_broker_published_total{kind="event"} 700
flashsale_broker_published_total{kind="purchase"} 60
flashsale_broker_published_total{kind="purchase_item"} 370
flashsale_broker_published_total{kind="republish"} 4
# TYPE flashsale_redis_commands_total counter
flashsale_redis_commands_total{stage="admission"} 1460
flashsale_redis_commands_total{stage="other"} 80
flashsale_redis_commands_total{stage="worker"} 1800
# TYPE flashsale_redis_round_trips_total counter
flashsale_redis_round_trips_total{stage="admission"} 520
flashsale_redis_round_trips_total{stage="other"} 75
flashsale_redis_round_trips_total{stage="worker"} 700
# TYPE flashsale_purchases_total counter
flashsale_purchases_total{outcome="admitted",sale="bench-r1"} 320
flashsale_purchases_total{outcome="existing",sale="bench-r1"} 5
flashsale_purchases_total{outcome="sold_out",sale="bench-r1"} 75
flashsale_purchases_total{outcome="limit_reached",sale="bench-r1"} 0
flashsale_purchases_total{outcome="rate_limited",sale="bench-r1"} 2600
flashsale_purchases_total{outcome="not_qualified",sale="bench-r1"} 0
flashsale_purchases_total{outcome="admitted",sale="other"} 60
flashsale_purchases_total{outcome="sold_out",sale="other"} 9
# TYPE process_cpu_seconds_total counter
process_cpu_seconds_total 15.5
`

func mustParse(t *testing.T, text string) serverCounters {
	t.Helper()
	c, err := parseCounters(strings.NewReader(text), "bench-r1")
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func readings(t *testing.T, before, after string) (counterReading, counterReading, time.Time) {
	t.Helper()
	begin := time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)
	return counterReading{c: mustParse(t, before), at: begin.Add(1500 * time.Millisecond)},
		counterReading{c: mustParse(t, after), at: begin.Add(20 * time.Second)}, begin
}

func costIn(begin time.Time) costInput {
	return costInput{url: "http://127.0.0.1:8080/metrics", saleID: "bench-r1", orders: 300, accepted: 320, begin: begin}
}

func TestParseCountersKeepsTheSectionsCounters(t *testing.T) {
	c := mustParse(t, countersBefore)
	if got := c[metricPublished]; len(got) != 6 || got["event"] != 100 || got["delay_item"] != 40 {
		t.Errorf("published %v", got)
	}
	if got := c[metricRoundTrips]; got["admission"] != 200 || got["worker"] != 100 || got["other"] != 70 {
		t.Errorf("round trips %v", got)
	}
	if got := c[metricCommands]; got["admission"] != 500 || got["worker"] != 300 {
		t.Errorf("commands %v", got)
	}
	// The family is served, but not yet for the run's sale: present and empty.
	if got, ok := c[metricPurchases]; !ok || len(got) != 0 {
		t.Errorf("purchases of bench-r1 before the opening: %v (served %v), want none", got, ok)
	}
	if got := c[metricCPU]; len(got) != 1 || got[""] != 12.5 {
		t.Errorf("cpu %v", got)
	}
	if len(c) != 5 {
		t.Errorf("kept %d families, want the 5 the section reads: %v", len(c), c)
	}
	after := mustParse(t, countersAfter)
	if got := after[metricPurchases]; len(got) != 6 || got["admitted"] != 320 || got["rate_limited"] != 2600 {
		t.Errorf("purchases of bench-r1 after: %v (the other sale's must be left out)", got)
	}

	if _, err := parseCounters(strings.NewReader("<html>not found</html>\n"), "s"); err == nil {
		t.Error("an HTML page parsed as metrics")
	}
	if c, err := parseCounters(strings.NewReader(""), "s"); err != nil || len(c) != 0 {
		t.Errorf("empty exposition: %v, %v", c, err)
	}
}

func TestServerCostArithmetic(t *testing.T) {
	before, after, begin := readings(t, countersBefore, countersAfter)
	c := serverCost(costIn(begin), before, after)
	if !c.Available || c.Reason != "" || len(c.Missing) != 0 {
		t.Fatalf("cost %+v, want available with every counter", c)
	}
	// Growth: purchase 40 (320 inside), event 600, delay 75 (300 inside),
	// republish 3: 718 messages for 300 orders.
	want := map[string]float64{"purchase": 0.13, "event": 2, "delay": 0.25, "republish": 0.01}
	for k, v := range want {
		if got := c.BrokerMessagesPerOrderByKind[k]; got != v {
			t.Errorf("%s messages / order = %v, want %v", k, got, v)
		}
	}
	for _, tc := range []struct {
		name string
		got  *float64
		want float64
	}{
		{"broker messages / order", c.BrokerMessagesPerOrder, 2.39}, // 718 / 300
		{"purchases / purchase message", c.PurchasesPerPurchaseMessage, 8},
		{"orders / delay message", c.OrdersPerDelayMessage, 4},
		{"round trips / admission", c.RedisRoundTripsPerAdmission, 1}, // 320 / 320
		{"commands / admission", c.RedisCommandsPerAdmission, 3},      // 960 / 320
		{"round trips / claim", c.RedisRoundTripsPerClaim, 0.8},       // 320 / (320+5+75+0)
		{"worker round trips / order", c.WorkerRedisRoundTripsPerOrder, 2},
		{"worker commands / order", c.WorkerRedisCommandsPerOrder, 5},
		{"cpu seconds", c.CPUSeconds, 3},        // 15.5 - 12.5
		{"cpu ms / order", c.CPUMsPerOrder, 10}, // 3000 ms / 300
	} {
		if tc.got == nil || *tc.got != tc.want {
			t.Errorf("%s = %v, want %v", tc.name, fmtPtr(tc.got), tc.want)
		}
	}
	if c.Published["event"] != 600 || c.RedisRoundTrips["other"] != 5 || c.Purchases["admitted"] != 320 {
		t.Errorf("growth: published %v, round trips %v, purchases %v", c.Published, c.RedisRoundTrips, c.Purchases)
	}
	if c.FirstReadAt != 1.5 || c.SecondReadAt != 20 {
		t.Errorf("read at %v and %v, want 1.5 and 20", c.FirstReadAt, c.SecondReadAt)
	}
	if len(c.Notes) != 0 {
		t.Errorf("notes %q, want none for one process serving everything", c.Notes)
	}

	var buf bytes.Buffer
	writeServerCostText(&buf, &Report{ServerCost: c, SaleOpensAt: 2})
	out := buf.String()
	for _, want := range []string{"Server cost", "read 0.50s before the opening and 18.00s after it",
		"broker messages / order", "2.39", "purchase 0.13, event 2.00, delay 0.25, republish 0.01; 718 messages, 300 orders",
		"purchases / purchase message", "8.00", "orders / delay message", "4.00",
		"redis round trips / admitted purchase", "1.00", "commands 3.00; 320 admitted",
		"redis round trips / request at the claim", "0.80", "400 requests reached the claim",
		"worker redis round trips / order", "commands 5.00",
		"server CPU ms / order", "10.00", "3.00 s of CPU between the readings"} {
		if !strings.Contains(out, want) {
			t.Errorf("section lacks %q:\n%s", want, out)
		}
	}
}

func fmtPtr(v *float64) any {
	if v == nil {
		return "nil"
	}
	return *v
}

func TestServerCostMissingMetric(t *testing.T) {
	// A server without the broker counter (an older build): its figures are n/a,
	// the others are still there.
	var kept []string
	for _, l := range strings.Split(countersAfter, "\n") {
		if !strings.Contains(l, metricPublished) {
			kept = append(kept, l)
		}
	}
	before, after, begin := readings(t, countersBefore, strings.Join(kept, "\n"))
	c := serverCost(costIn(begin), before, after)
	if !c.Available || len(c.Missing) != 1 || c.Missing[0] != metricPublished {
		t.Fatalf("cost %+v, want available with the broker counter missing", c)
	}
	if c.BrokerMessagesPerOrder != nil || c.PurchasesPerPurchaseMessage != nil || c.Published != nil {
		t.Errorf("broker figures without the counter: %+v", c)
	}
	if c.RedisRoundTripsPerAdmission == nil || *c.RedisRoundTripsPerAdmission != 1 {
		t.Errorf("round trips / admission = %v, want 1", fmtPtr(c.RedisRoundTripsPerAdmission))
	}
	var buf bytes.Buffer
	writeServerCostText(&buf, &Report{ServerCost: c})
	if out := buf.String(); !strings.Contains(out, "n/a (flashsale_broker_published_total not served)") || !strings.Contains(out, "1.00") {
		t.Errorf("section:\n%s", out)
	}

	// The CPU counter only in the second reading: no CPU figure (counting
	// from 0 would charge the run with the process's whole life).
	before, after, _ = readings(t, strings.ReplaceAll(countersBefore, "process_cpu_seconds_total 12.5", ""), countersAfter)
	c = serverCost(costIn(begin), before, after)
	if c.CPUSeconds != nil || c.CPUMsPerOrder != nil {
		t.Errorf("cpu without a first reading: %v s, %v ms / order", fmtPtr(c.CPUSeconds), fmtPtr(c.CPUMsPerOrder))
	}
	buf.Reset()
	writeServerCostText(&buf, &Report{ServerCost: c})
	if !strings.Contains(buf.String(), "n/a (not in the reading before the opening)") {
		t.Errorf("section without the first cpu reading:\n%s", buf.String())
	}

	// No orders: the per-order figures are n/a, the per-admission ones stand.
	in := costIn(begin)
	in.orders = 0
	before, after, _ = readings(t, countersBefore, countersAfter)
	c = serverCost(in, before, after)
	if c.BrokerMessagesPerOrder != nil || c.WorkerRedisRoundTripsPerOrder != nil || c.RedisRoundTripsPerAdmission == nil {
		t.Errorf("no orders: %+v", c)
	}
	buf.Reset()
	writeServerCostText(&buf, &Report{ServerCost: c})
	if !strings.Contains(buf.String(), "n/a (no orders)") {
		t.Errorf("section without orders:\n%s", buf.String())
	}
}

func TestServerCostNotes(t *testing.T) {
	before, after, begin := readings(t, countersBefore, countersAfter)
	in := costIn(begin)
	in.accepted, in.bundles = 500, true
	c := serverCost(in, before, after)
	joined := strings.Join(c.Notes, "\n")
	for _, want := range []string{"admitted 320 of the 500 purchases the bench saw accepted", "per process", "first sale's only"} {
		if !strings.Contains(joined, want) {
			t.Errorf("notes lack %q: %q", want, c.Notes)
		}
	}
	// Workers in another process: no worker stage here.
	noWorker := strings.ReplaceAll(countersAfter, `flashsale_redis_round_trips_total{stage="worker"} 700`, `flashsale_redis_round_trips_total{stage="worker"} 100`)
	before, after, _ = readings(t, countersBefore, noWorker)
	c = serverCost(costIn(begin), before, after)
	if len(c.Notes) != 1 || !strings.Contains(c.Notes[0], "workers run elsewhere") {
		t.Errorf("notes %q, want the workers' one", c.Notes)
	}
}

func TestServerCostNotAvailable(t *testing.T) {
	before, after, begin := readings(t, countersBefore, countersAfter)
	in := costIn(begin)

	failed := counterReading{err: errWrap("GET http://x/metrics: 404 Not Found")}
	for _, tc := range []struct {
		name          string
		before, after counterReading
		want          string
	}{
		{"first reading failed", failed, after, "before the opening: GET http://x/metrics: 404 Not Found"},
		{"second reading failed", before, failed, "after the load: GET http://x/metrics: 404 Not Found"},
		{"counter went down", counterReading{c: after.c}, counterReading{c: before.c}, "went down between the readings"},
	} {
		c := serverCost(in, tc.before, tc.after)
		if c.Available || !strings.Contains(c.Reason, tc.want) || c.BrokerMessagesPerOrder != nil {
			t.Errorf("%s: %+v, want not available saying %q", tc.name, c, tc.want)
		}
		var buf bytes.Buffer
		writeServerCostText(&buf, &Report{ServerCost: c})
		if out := buf.String(); !strings.Contains(out, "server metrics: not available ("+c.Reason+")") || strings.Contains(out, "broker messages") {
			t.Errorf("%s: section:\n%s", tc.name, out)
		}
	}
	var buf bytes.Buffer
	writeServerCostText(&buf, &Report{})
	if !strings.Contains(buf.String(), "not read (--metrics-url off)") {
		t.Errorf("section with --metrics-url off:\n%s", buf.String())
	}
}

type errWrap string

func (e errWrap) Error() string { return string(e) }

func TestMetricsScraperFailures(t *testing.T) {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /metrics", func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte(countersAfter)) })
	mux.HandleFunc("GET /garbage", func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("{\"not\": \"metrics\"}\n")) })
	mux.HandleFunc("GET /moved", func(w http.ResponseWriter, r *http.Request) { http.Redirect(w, r, "/metrics", http.StatusFound) })
	srv := httptest.NewServer(mux)
	defer srv.Close()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := "http://" + l.Addr().String() + "/metrics"
	_ = l.Close()

	ctx := context.Background()
	s := newMetricsScraper(srv.URL + "/metrics")
	c, err := s.read(ctx, "bench-r1")
	if err != nil || c[metricPurchases]["admitted"] != 320 {
		t.Fatalf("read: %v, %v", c, err)
	}
	for _, tc := range []struct{ url, want string }{
		{srv.URL + "/nothing", "404 Not Found"},
		{srv.URL + "/garbage", "parsing the metrics"},
		{srv.URL + "/moved", "302 Found"}, // no redirect is followed
		{closed, "connection refused"},
	} {
		_, err := newMetricsScraper(tc.url).read(ctx, "bench-r1")
		if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), tc.url) {
			t.Errorf("read %s: %v, want an error naming the URL and %q", tc.url, err, tc.want)
		}
	}
}

func TestParseConfigMetricsURL(t *testing.T) {
	base := []string{"--admin-token", "t", "--pay-ratio", "0", "--url", "http://h:1/"}
	for _, tc := range []struct {
		extra []string
		want  string
	}{
		{nil, "http://h:1/metrics"},
		{[]string{"--metrics-url", "http://127.0.0.1:9100/metrics"}, "http://127.0.0.1:9100/metrics"},
		{[]string{"--metrics-url", ""}, ""},
		{[]string{"--metrics-url", "off"}, ""},
	} {
		c, err := parseConfig(append(append([]string{}, base...), tc.extra...), env(nil), &bytes.Buffer{})
		if err != nil || c.MetricsURL != tc.want {
			t.Errorf("%q: metrics URL %q (%v), want %q", tc.extra, c.MetricsURL, err, tc.want)
		}
	}
	if _, err := parseConfig(append(base, "--metrics-url", "127.0.0.1:9100"), env(nil), &bytes.Buffer{}); err == nil || !strings.Contains(err.Error(), "--metrics-url") {
		t.Errorf("a metrics URL without a scheme: %v", err)
	}
}

func TestMainServerCostFromFakeMetrics(t *testing.T) {
	f, srv := newFakeServer(t)
	jsonPath := filepath.Join(t.TempDir(), "r.json")
	code, out, errOut := runMainForTest(t, benchArgs(srv.URL, "--users", "30", "--stock", "10", "--pay-ratio", "0.5", "--json", jsonPath))
	if code != 0 {
		t.Fatalf("exit %d\nstdout:\n%s\nstderr:\n%s", code, out, errOut)
	}
	var rep Report
	readReport(t, jsonPath, &rep)
	f.mu.Lock()
	want := f.costLocked()
	f.mu.Unlock()
	c := rep.ServerCost
	if c == nil || !c.Available || c.MetricsURL != srv.URL+"/metrics" {
		t.Fatalf("server cost %+v", c)
	}
	orders := rep.Purchase.OrdersCreated
	if c.Orders != orders || int(orders) != want.orders || c.Purchases["admitted"] != int64(want.admitted) {
		t.Errorf("orders %d (fake %d), admitted %d (fake %d)", c.Orders, want.orders, c.Purchases["admitted"], want.admitted)
	}
	msgs := float64((want.admitted+1)/2 + 2*want.orders)
	for _, tc := range []struct {
		name string
		got  *float64
		want float64
	}{
		{"broker messages / order", c.BrokerMessagesPerOrder, round2(msgs / float64(orders))},
		{"round trips / admission", c.RedisRoundTripsPerAdmission, round2(2 * float64(want.claimed) / float64(want.admitted))},
		{"round trips / claim", c.RedisRoundTripsPerClaim, 2},
		{"worker round trips / order", c.WorkerRedisRoundTripsPerOrder, 2},
		{"worker commands / order", c.WorkerRedisCommandsPerOrder, 5},
		{"orders / delay message", c.OrdersPerDelayMessage, 1},
	} {
		if tc.got == nil || *tc.got != tc.want {
			t.Errorf("%s = %v, want %v", tc.name, fmtPtr(tc.got), tc.want)
		}
	}
	if c.FirstReadAt < 0 || c.FirstReadAt > rep.SaleOpensAt || c.SecondReadAt < rep.SaleOpensAt {
		t.Errorf("read at %v and %v, the sale opened at %v", c.FirstReadAt, c.SecondReadAt, rep.SaleOpensAt)
	}
	if !strings.Contains(out, "Server cost") || !strings.Contains(out, "redis round trips / admitted purchase") {
		t.Errorf("summary lacks the section:\n%s", out)
	}
}

func TestMainServerCostNotAvailableDoesNotFail(t *testing.T) {
	_, srv := newFakeServer(t)
	code, out, errOut := runMainForTest(t, benchArgs(srv.URL, "--users", "10", "--stock", "4", "--metrics-url", srv.URL+"/nothing-here"))
	if code != 0 {
		t.Fatalf("exit %d: an unreadable /metrics must not fail the run\nstdout:\n%s\nstderr:\n%s", code, out, errOut)
	}
	if want := "server metrics: not available (before the opening: GET " + srv.URL + "/nothing-here: 404 Not Found)"; !strings.Contains(out, want) {
		t.Errorf("summary lacks %q:\n%s", want, out)
	}
	code, out, _ = runMainForTest(t, benchArgs(srv.URL, "--users", "10", "--stock", "4", "--metrics-url", "off"))
	if code != 0 || !strings.Contains(out, "server metrics: not read (--metrics-url off)") {
		t.Errorf("exit %d with --metrics-url off:\n%s", code, out)
	}
}

func TestServerCostInHTMLAndCompare(t *testing.T) {
	before, after, begin := readings(t, countersBefore, countersAfter)
	a, b := syntheticReport(), syntheticReport()
	a.ServerCost = serverCost(costIn(begin), before, after)
	b.Inventory, b.ServerCost = "mysql", &ServerCost{MetricsURL: "http://x/metrics", Reason: "before the opening: GET http://x/metrics: 404 Not Found"}
	cmp := newCompareReport(a, b)
	found := map[string][3]string{}
	for _, r := range compareRows(cmp) {
		found[r[0]] = r
	}
	if r := found["broker messages / order"]; r[1] != "2.39" || r[2] != "n/a" {
		t.Errorf("compare row %q, want 2.39 and n/a", r)
	}
	if r := found["redis round trips / admission"]; r[1] != "1.00" || r[2] != "n/a" {
		t.Errorf("compare row %q, want 1.00 and n/a", r)
	}
	var buf bytes.Buffer
	if err := renderHTML(&buf, []*Report{a, b}, cmp); err != nil {
		t.Fatal(err)
	}
	page := buf.String()
	if n := checkSVGs(t, page); n != 8 {
		t.Errorf("%d charts, want 8", n)
	}
	for _, want := range []string{"<h3>Server cost</h3>", "broker messages / order", "2.39", "commands 3.00; 320 admitted",
		"redis round trips / admission", "server metrics: not available (before the opening: GET http://x/metrics: 404 Not Found)"} {
		if !strings.Contains(page, want) {
			t.Errorf("page lacks %q", want)
		}
	}
	// The section follows the run's charts: a single run's charts stay on the
	// first 2400 pixels.
	if strings.Index(page, "<h3>Server cost</h3>") < strings.Index(page, "Stock over time") {
		t.Error("the Server cost section comes before the charts")
	}
}
