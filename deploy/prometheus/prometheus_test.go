// Package prometheus_test checks the Prometheus configuration, the alerting
// rules and their unit tests in this directory with promtool (Debian's
// prometheus package; deploy/services.sh installs it). The queries of the rules
// and of the Grafana dashboard are run against a real Prometheus scraping a
// real process in e2e/ops_test.go.
package prometheus_test

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/flashsale/flashsale/internal/testenv"
)

// promtool returns promtool's path (see testenv.Tool).
func promtool(t *testing.T) string {
	t.Helper()
	return testenv.Tool(t, "promtool", "deploy/services.sh, with Debian's prometheus,")
}

// readFile returns a file's content; a missing file fails the test.
func readFile(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// dashboard is the part of grafana-dashboard.json the tests read.
type dashboard struct {
	UID    string `json:"uid"`
	Panels []struct {
		Title   string `json:"title"`
		Type    string `json:"type"`
		Targets []struct {
			Expr  string `json:"expr"`
			RefID string `json:"refId"`
		} `json:"targets"`
	} `json:"panels"`
}

// readDashboard reads and decodes grafana-dashboard.json.
func readDashboard(t *testing.T) dashboard {
	t.Helper()
	var d dashboard
	if err := json.Unmarshal(readFile(t, "grafana-dashboard.json"), &d); err != nil {
		t.Fatalf("grafana-dashboard.json: %v", err)
	}
	return d
}

func run(t *testing.T, name string, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, name, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return string(out)
}

func TestPromtoolCheckConfig(t *testing.T) {
	out := run(t, promtool(t), "check", "config", "prometheus.yml")
	if !strings.Contains(out, "SUCCESS") {
		t.Fatalf("promtool check config did not report SUCCESS:\n%s", out)
	}
}

func TestPromtoolCheckRules(t *testing.T) {
	out := run(t, promtool(t), "check", "rules", "rules.yml")
	if !strings.Contains(out, "SUCCESS: 10 rules found") {
		t.Fatalf("promtool check rules: want 10 rules:\n%s", out)
	}
}

// TestPromtoolTestRules runs rules_test.yml and checks that it tests every
// alert of rules.yml: each one is shown to fire in its test.
func TestPromtoolTestRules(t *testing.T) {
	out := run(t, promtool(t), "test", "rules", "rules_test.yml")
	if !strings.Contains(out, "SUCCESS") {
		t.Fatalf("promtool test rules:\n%s", out)
	}
	rules, tests := readFile(t, "rules.yml"), readFile(t, "rules_test.yml")
	n := 0
	for _, line := range strings.Split(string(rules), "\n") {
		name, ok := strings.CutPrefix(strings.TrimSpace(line), "- alert: ")
		if !ok {
			continue
		}
		n++
		// A firing expectation: the alert's name followed by a non-empty exp_alerts.
		if !strings.Contains(string(tests), "alertname: "+name+"\n        exp_alerts:\n          - exp_labels:") {
			t.Errorf("alert %s has no test in rules_test.yml that shows it firing", name)
		}
	}
	if n != 10 {
		t.Errorf("found %d alerts in rules.yml, want 10", n)
	}
}

// TestDashboardIsGrafanaJSON checks the dashboard's shape: panels with
// Prometheus queries, each with an expression and a refId.
func TestDashboardIsGrafanaJSON(t *testing.T) {
	d := readDashboard(t)
	if d.UID == "" || len(d.Panels) < 10 {
		t.Fatalf("dashboard: uid %q, %d panels; want a uid and the live page's panels", d.UID, len(d.Panels))
	}
	for _, p := range d.Panels {
		if len(p.Targets) == 0 {
			t.Errorf("panel %q has no query", p.Title)
		}
		for _, q := range p.Targets {
			if q.Expr == "" || q.RefID == "" || !strings.Contains(q.Expr, "flashsale_") && !strings.Contains(q.Expr, "up{") {
				t.Errorf("panel %q: query %+v", p.Title, q)
			}
		}
	}
}

// pageToDashboard maps each figure of the live page (ops/web) to the panel of
// the Grafana dashboard that shows it and a piece of that panel's queries.
// Keys: "tile:<element id>", "sales:<column field>", "chart:<chart key>",
// "problem:<sample field>", "queues:<field>", "status".
var pageToDashboard = map[string]struct{ panel, query string }{
	"tile:f-admitted": {"Admitted/s", `flashsale_purchases_total{sale=~"$sale",outcome="admitted"}`},
	"tile:f-orders":   {"Orders/s", `flashsale_worker_messages_total{outcome="pending_payment"}`},
	"tile:f-p50":      {"202→final p50", "histogram_quantile(0.5, sum by (le) (rate(flashsale_ticket_final_seconds_bucket"},
	"tile:f-p99":      {"202→final p99", "histogram_quantile(0.99, sum by (le) (rate(flashsale_ticket_final_seconds_bucket"},
	"tile:f-errors":   {"Errors/s", `flashsale_http_requests_total{status=~"5..",`},
	"tile:f-queue":    {"Purchase queue", `flashsale_queue_messages{queue=~".+\\.purchase"}`},
	"tile:f-outbox":   {"Outbox backlog", "flashsale_outbox_backlog"},
	"tile:f-overdue":  {"Expiry overdue", "flashsale_expiry_overdue_seconds"},

	"sales:state":          {"Sales", `flashsale_sale_state{sale=~"$sale"}`},
	"sales:available":      {"Sales", `flashsale_sale_units{sale=~"$sale"}`},
	"sales:held":           {"Sales", `flashsale_sale_units{sale=~"$sale"}`},
	"sales:sold":           {"Sales", `flashsale_sale_units{sale=~"$sale"}`},
	"sales:admitted_per_s": {"Sales", `sum by (sale) (rate(flashsale_purchases_total{sale=~"$sale",outcome="admitted"}`},
	// The page's counts since its process started: the dashboard's rates by outcome.
	"sales:admitted":     {"Purchases/s by outcome", `sum by (outcome) (rate(flashsale_purchases_total{sale=~"$sale"}`},
	"sales:sold_out":     {"Purchases/s by outcome", `sum by (outcome) (rate(flashsale_purchases_total{sale=~"$sale"}`},
	"sales:rate_limited": {"Purchases/s by outcome", `sum by (outcome) (rate(flashsale_purchases_total{sale=~"$sale"}`},

	// The waiting rooms' table: what each sale's line records.
	"sales:wr_entries":        {"Waiting rooms", `flashsale_waiting_room_entries{sale=~"$sale"}`},
	"sales:wr_admitted":       {"Waiting rooms", `max by (sale) (flashsale_waiting_room_admitted_total{sale=~"$sale"})`},
	"sales:wr_waitlist":       {"Waiting rooms", `flashsale_waiting_room_waitlist{sale=~"$sale"}`},
	"sales:wr_admitted_per_s": {"Waiting rooms", `rate(flashsale_waiting_room_admitted_total{sale=~"$sale"}`},

	"chart:admissions": {"Purchases/s by outcome", "flashsale_purchases_total"},
	"chart:queues":     {"Queue depth (messages ready)", "max by (queue) (flashsale_queue_messages)"},
	"chart:final":      {"202→final", "flashsale_ticket_final_seconds_bucket"},
	"chart:rates":      {"Orders/s and errors/s", `flashsale_worker_messages_total{outcome="pending_payment"}`},
	"chart:sale:":      {"Units by sale and state", `max by (sale, state) (flashsale_sale_units{sale=~"$sale"})`},

	"problem:http_5xx":               {"Orders/s and errors/s", `flashsale_http_requests_total{status=~"5..",`},
	"problem:dead_letters":           {"Orders/s and errors/s", `flashsale_worker_messages_total{outcome=~"dead_letter|failed"}`},
	"problem:stock_cap_refusals":     {"Problems", "flashsale_stock_cap_refusals_total"},
	"problem:reconcile_differences":  {"Problems", "flashsale_reconcile_differences_by_kind"},
	"problem:oversold_units":         {"Problems", "flashsale_oversold_units"},
	"problem:outbox_backlog":         {"Outbox backlog and expiry", "flashsale_outbox_backlog"},
	"problem:expiry_overdue_seconds": {"Outbox backlog and expiry", "flashsale_expiry_overdue_seconds"},

	"queues:messages":  {"Queue depth (messages ready)", "flashsale_queue_messages"},
	"queues:consumers": {"Queue depth (messages ready)", "flashsale_queue_consumers"},
	"status":           {"Ready", "flashsale_ready"},
}

// pageFigures lists the figures the live page shows, read from its HTML and
// script: the tiles, the sales table's columns, the charts, the problems,
// the queues table's columns, and the readiness status.
func pageFigures(t *testing.T) []string {
	t.Helper()
	html, js := readFile(t, "../../ops/web/index.html"), readFile(t, "../../ops/web/static/live.js")
	var out []string
	add := func(prefix string, re string, src []byte) {
		t.Helper()
		n := 0
		for _, m := range regexp.MustCompile(re).FindAllSubmatch(src, -1) {
			out = append(out, prefix+string(m[1]))
			n++
		}
		if n == 0 {
			t.Fatalf("no %s figure found on the page (pattern %s): the page changed, update this test", prefix, re)
		}
	}
	add("tile:", `<span class="v" id="(f-[a-z0-9-]+)"`, html)
	add("sales:", `cell\(tr, "([a-z_]+)"`, js)
	add("chart:", `setData\("([a-z]+:?)"`, js)
	add("problem:", `\["[^"]+", pr\.([a-z_0-9]+)\]`, js)
	add("queues:", `String\(q\.([a-z]+)\)`, js)
	if bytes.Contains(html, []byte(`id="status"`)) && bytes.Contains(js, []byte("s.ready")) {
		out = append(out, "status")
	}
	return out
}

// TestDashboardCoversLivePage checks that every figure of the live page has
// its panel in the Grafana dashboard, with a query on the same metric, and
// that the table above names no figure the page no longer has.
func TestDashboardCoversLivePage(t *testing.T) {
	panels := map[string][]string{}
	for _, p := range readDashboard(t).Panels {
		for _, q := range p.Targets {
			panels[p.Title] = append(panels[p.Title], q.Expr)
		}
	}
	figures := pageFigures(t)
	onPage := map[string]bool{}
	for _, f := range figures {
		if f == "sales:id" { // the sale's id, the row's name
			continue
		}
		onPage[f] = true
		want, ok := pageToDashboard[f]
		if !ok {
			t.Errorf("the live page shows %s; no dashboard panel is named for it (add it to the dashboard and to pageToDashboard)", f)
			continue
		}
		exprs, ok := panels[want.panel]
		if !ok {
			t.Errorf("%s: the dashboard has no panel %q", f, want.panel)
			continue
		}
		found := false
		for _, e := range exprs {
			found = found || strings.Contains(e, want.query)
		}
		if !found {
			t.Errorf("%s: no query of panel %q contains %s: %v", f, want.panel, want.query, exprs)
		}
	}
	for f := range pageToDashboard {
		if !onPage[f] {
			t.Errorf("pageToDashboard names %s, which the live page no longer shows", f)
		}
	}
	t.Logf("%d figures of the live page, each with its dashboard panel", len(onPage))
}
