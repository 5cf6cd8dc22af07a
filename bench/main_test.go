package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// benchArgs are the flags every in-process run uses against the fake.
func benchArgs(url string, extra ...string) []string {
	return append([]string{
		"--url", url, "--admin-token", "admintok", "--payment-secret", "whsec_test",
		"--start-delay", "100ms", "--duration", "60s", "--conns", "8", "--quiet", "--seed", "42",
	}, extra...)
}

func runMainForTest(t *testing.T, args []string) (int, string, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	var stdout, stderr bytes.Buffer
	code := Main(ctx, args, &stdout, &stderr)
	return code, stdout.String(), stderr.String()
}

func readReport(t *testing.T, path string, v any) {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(data, v); err != nil {
		t.Fatalf("report is not JSON: %v", err)
	}
}

func TestMainFullRunAgainstFake(t *testing.T) {
	f, srv := newFakeServer(t)
	dir := t.TempDir()
	jsonPath, htmlPath := filepath.Join(dir, "r.json"), filepath.Join(dir, "r.html")
	code, out, errOut := runMainForTest(t, benchArgs(srv.URL,
		"--users", "40", "--stock", "12", "--pay-ratio", "0.5", "--cancel-ratio", "0.5",
		"--payment-window", "2", "--wait-expiry", "--json", jsonPath, "--html", htmlPath))
	if code != 0 {
		t.Fatalf("exit %d\nstdout:\n%s\nstderr:\n%s", code, out, errOut)
	}
	for _, want := range []string{"Endpoints", "purchase", "Status mix", "orders created / s (server created_at)",
		"first -> last order created (server)", "opening -> first / last order created (server)",
		"orders created / s as observed by the bench", "first 202 -> last order seen", "Checks", "PASS",
		"PASS  answers match the API description", "RESULT: PASS"} {
		if !strings.Contains(out, want) {
			t.Errorf("summary lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "FAIL") {
		t.Errorf("summary has a FAIL:\n%s", out)
	}

	var rep Report
	readReport(t, jsonPath, &rep)
	if !rep.Pass || !rep.Completed {
		t.Fatalf("report not passing: %+v", rep.Checks)
	}
	// At least the stock became orders (more when cancelled units went back on sale
	// and were bought by the tickets admitted beyond the stock); half of them paid,
	// the other half split between cancelled and expired.
	orders := rep.Purchase.OrdersCreated
	if orders < 12 {
		t.Errorf("orders created = %d, want at least 12 (the stock)", orders)
	}
	if a := rep.Purchase.Accepted202; a.Count != rep.Purchase.Accepted || a.P50Ms <= 0 {
		t.Errorf("latency of the 202 answers %+v, want one per 202 (%d)", a, rep.Purchase.Accepted)
	}
	paid := orders / 2
	cancelled := (orders - paid) / 2
	expired := orders - paid - cancelled
	if got := rep.Tickets; got[statusPaid] != paid || got[statusCancelled] != cancelled || got[statusExpired] != expired {
		t.Errorf("tickets = %v, want paid %d, cancelled %d, expired %d", got, paid, cancelled, expired)
	}
	checkServerTiming(t, f, &rep)
	if got := rep.Users[outcomeTicket] + rep.Users[outcomeSoldOut]; got != 40 {
		t.Errorf("users with a ticket or sold out = %d, want 40 (%v)", got, rep.Users)
	}
	if rep.Counters["purchase_retry_429"] == 0 || rep.Counters["purchase_retry_503"] == 0 {
		t.Errorf("429/503 were not retried: %v", rep.Counters)
	}
	if len(rep.StockSeries) == 0 {
		t.Error("no stock samples")
	}
	last := rep.StockSeries[len(rep.StockSeries)-1]
	if last.Sold != paid || last.Held != 0 || last.Available != 12-paid {
		t.Errorf("final stock %+v, want sold %d, held 0, available %d", last, paid, 12-paid)
	}
	if ep := endpointOf(&rep, epPurchase); ep.Requests < 40 || ep.Status["202"] == 0 || ep.Latency.P99Ms <= 0 {
		t.Errorf("purchase endpoint stats look wrong: %+v", ep)
	}
	if ep := endpointOf(&rep, epPayment); ep.Status["200"] != paid {
		t.Errorf("payment status mix %v, want %d×200", ep.Status, paid)
	}

	html, err := os.ReadFile(htmlPath)
	if err != nil {
		t.Fatal(err)
	}
	if n := checkSVGs(t, string(html)); n != 4 {
		t.Errorf("HTML has %d charts, want 4", n)
	}
}

func TestMainReservationRun(t *testing.T) {
	_, srv := newFakeServer(t)
	dir := t.TempDir()
	jsonPath := filepath.Join(dir, "r.json")
	code, out, errOut := runMainForTest(t, benchArgs(srv.URL,
		"--users", "15", "--stock", "5", "--pay-ratio", "1", "--reservation", "--reservation-window", "400ms",
		"--arrival", "ramp", "--ramp", "200ms", "--json", jsonPath))
	if code != 0 {
		t.Fatalf("exit %d\nstdout:\n%s\nstderr:\n%s", code, out, errOut)
	}
	var rep Report
	readReport(t, jsonPath, &rep)
	if ep := endpointOf(&rep, epReserve); ep.Status["201"] != 15 {
		t.Errorf("reservations %v, want 15×201", ep.Status)
	}
	if rep.Tickets[statusPaid] != 5 {
		t.Errorf("tickets %v, want 5 paid", rep.Tickets)
	}
	if rep.Users[outcomeNotQualified] != 0 || rep.Users[outcomeNotReserved] != 0 {
		t.Errorf("users %v: nobody should be unqualified", rep.Users)
	}
}

func TestMainDetectsOversell(t *testing.T) {
	f, srv := newFakeServer(t)
	f.oversell = true
	code, out, _ := runMainForTest(t, benchArgs(srv.URL, "--users", "20", "--stock", "5", "--pay-ratio", "0"))
	if code != 1 {
		t.Fatalf("exit %d, want 1 for an overselling server\n%s", code, out)
	}
	for _, want := range []string{"FAIL  no oversell (orders)", "FAIL  available+held+sold == total", "RESULT: FAIL"} {
		if !strings.Contains(out, want) {
			t.Errorf("summary lacks %q:\n%s", want, out)
		}
	}
}

// TestMainDetectsAPIDrift: a server whose orders carry a field the API's
// description does not have fails the bench's check of the answers (and
// only that check: the run itself goes well).
func TestMainDetectsAPIDrift(t *testing.T) {
	f, srv := newFakeServer(t)
	f.drift = true
	code, out, _ := runMainForTest(t, benchArgs(srv.URL, "--users", "20", "--stock", "5", "--pay-ratio", "1"))
	if code != 1 {
		t.Fatalf("exit %d, want 1 for a server whose answers drifted from the description\n%s", code, out)
	}
	for _, want := range []string{"FAIL  answers match the API description", `"discount_cents"`, "RESULT: FAIL"} {
		if !strings.Contains(out, want) {
			t.Errorf("summary lacks %q:\n%s", want, out)
		}
	}
	if strings.Count(out, "FAIL  ") != 1 {
		t.Errorf("other checks failed too:\n%s", out)
	}
}

func TestMainCompare(t *testing.T) {
	f, srv := newFakeServer(t)
	dir := t.TempDir()
	jsonPath, htmlPath := filepath.Join(dir, "c.json"), filepath.Join(dir, "c.html")
	code, out, errOut := runMainForTest(t, benchArgs(srv.URL,
		"--users", "10", "--stock", "4", "--compare", "--json", jsonPath, "--html", htmlPath))
	if code != 0 {
		t.Fatalf("exit %d\nstdout:\n%s\nstderr:\n%s", code, out, errOut)
	}
	if got := f.inventories(); len(got) != 2 || got[0] != "redis" || got[1] != "mysql" {
		t.Errorf("sales created with inventories %v, want [redis mysql]", got)
	}
	if !strings.Contains(out, "orders/s ratio redis ÷ mysql:") || !strings.Contains(out, "metric") {
		t.Errorf("no comparison in:\n%s", out)
	}
	var cmp CompareReport
	readReport(t, jsonPath, &cmp)
	if cmp.Redis == nil || cmp.MySQL == nil || cmp.OrdersPerSecondRatio == nil || !cmp.Pass {
		t.Fatalf("comparison report incomplete: %+v", cmp)
	}
	if cmp.Redis.Inventory != "redis" || cmp.MySQL.Inventory != "mysql" || cmp.Redis.SaleID == cmp.MySQL.SaleID {
		t.Errorf("runs: %s/%s and %s/%s", cmp.Redis.SaleID, cmp.Redis.Inventory, cmp.MySQL.SaleID, cmp.MySQL.Inventory)
	}
	html, err := os.ReadFile(htmlPath)
	if err != nil {
		t.Fatal(err)
	}
	if n := checkSVGs(t, string(html)); n != 8 {
		t.Errorf("compare HTML has %d charts, want 8", n)
	}
}

func TestMainUnreachableServerFails(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	_ = l.Close() // nothing listens there any more
	code, out, _ := runMainForTest(t, benchArgs("http://"+addr, "--users", "3", "--stock", "1", "--duration", "10s"))
	if code != 1 {
		t.Fatalf("exit %d, want 1", code)
	}
	if !strings.Contains(out, "INCOMPLETE") || !strings.Contains(out, "FAIL  run completed") {
		t.Errorf("summary does not say the run failed:\n%s", out)
	}
}

func TestMainUsage(t *testing.T) {
	for _, args := range [][]string{
		{"--users", "0", "--admin-token", "x", "--pay-ratio", "0"},
		{"--arrival", "sideways", "--admin-token", "x", "--pay-ratio", "0"},
		{"--no-such-flag"},
		{"stray-argument", "--admin-token", "x"},
	} {
		var stdout, stderr bytes.Buffer
		if code := Main(context.Background(), args, &stdout, &stderr); code != 2 {
			t.Errorf("Main(%q) = %d, want 2", args, code)
		}
	}
	var stdout, stderr bytes.Buffer
	if code := Main(context.Background(), []string{"--help"}, &stdout, &stderr); code != 0 {
		t.Errorf("--help exit %d, want 0", code)
	}
	if !strings.Contains(stderr.String(), "--pay-ratio") && !strings.Contains(stderr.String(), "-pay-ratio") {
		t.Errorf("--help printed no flags:\n%s", stderr.String())
	}
}

// checkServerTiming asserts that the report's server-side order figures are the
// fake's own created_at of the sale's orders, whatever the polling users saw.
func checkServerTiming(t *testing.T, f *fakeServer, rep *Report) {
	t.Helper()
	f.mu.Lock()
	sale := f.sales[rep.SaleID]
	var first, last time.Time
	for i, o := range sale.orders {
		if i == 0 || o.created.Before(first) {
			first = o.created
		}
		if o.created.After(last) {
			last = o.created
		}
	}
	n, startsAt := int64(len(sale.orders)), sale.startsAt
	f.mu.Unlock()
	first, last = first.Round(0), last.Round(0) // wall clock, as the JSON carries it

	s := rep.Purchase.Server
	if s.Orders != n || s.Unread != 0 || rep.Purchase.OrdersCreated != n {
		t.Fatalf("server timing read %d orders (%d unread), report says %d created; the fake made %d", s.Orders, s.Unread, rep.Purchase.OrdersCreated, n)
	}
	if s.FirstCreatedAt == nil || s.LastCreatedAt == nil || !s.FirstCreatedAt.Equal(first) || !s.LastCreatedAt.Equal(last) {
		t.Errorf("first/last created_at %v / %v, want %v / %v", s.FirstCreatedAt, s.LastCreatedAt, first, last)
	}
	span := last.Sub(first)
	if !near(s.FirstToLastMs, msOf(span), 1e-9) || !near(s.OrdersPerSecond, float64(n)/span.Seconds(), 1e-9) {
		t.Errorf("span %vms rate %v/s, want %vms %v/s", s.FirstToLastMs, s.OrdersPerSecond, msOf(span), float64(n)/span.Seconds())
	}
	if !near(s.OpenToLastOrderMs, msOf(last.Sub(startsAt)), 1e-9) || !near(s.OpenToFirstOrderMs, msOf(first.Sub(startsAt)), 1e-9) {
		t.Errorf("opening -> first/last %v / %v ms, want %v / %v", s.OpenToFirstOrderMs, s.OpenToLastOrderMs, msOf(first.Sub(startsAt)), msOf(last.Sub(startsAt)))
	}
	var sum int64
	for _, c := range rep.OrdersPerSecondSeries {
		sum += c
	}
	if sum != n {
		t.Errorf("orders_per_second_series sums to %d, want %d", sum, n)
	}
	for _, c := range [][]CurvePoint{rep.OrdersCurve, rep.ObservedOrdersCurve} {
		if len(c) < 2 || c[0].N != 0 || c[len(c)-1].N != n {
			t.Errorf("cumulative orders curve %v does not run from 0 to %d", c, n)
		}
	}
	if o := rep.Purchase.Observed; o.Orders != n || o.OrdersPerSecond <= 0 {
		t.Errorf("observed %+v, want %d orders and a rate", o, n)
	}
}
