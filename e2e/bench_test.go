package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"image"
	"image/png"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"syscall"
	"testing"
	"time"
)

// The bench scenario of TestBenchAgainstAll: small enough for a test, large enough
// for the limiter to answer 429s and for the stock to sell out in a crowd.
const (
	benchUsers    = 3000
	benchStock    = 300
	benchConns    = 64
	benchPayRatio = 0.3
	benchWindow   = 10 // payment window, seconds: every user has an answer long before
)

// benchReport is the part of `flashsale bench --json` this test reads, decoded
// independently of the bench package (the report is an interface of its own).
type benchReport struct {
	SaleID    string `json:"sale_id"`
	Completed bool   `json:"completed"`
	Pass      bool   `json:"pass"`
	Error     string `json:"error"`
	Checks    []struct {
		Name   string `json:"name"`
		Pass   bool   `json:"pass"`
		Detail string `json:"detail"`
	} `json:"checks"`
	Purchase struct {
		Accepted      int64 `json:"accepted"`
		OrdersCreated int64 `json:"orders_created"`
		Server        struct {
			Orders             int64      `json:"orders"`
			Unread             int64      `json:"unread"`
			FirstCreatedAt     *time.Time `json:"first_created_at"`
			LastCreatedAt      *time.Time `json:"last_created_at"`
			FirstToLastMs      float64    `json:"first_to_last_order_ms"`
			OrdersPerSecond    float64    `json:"orders_per_second"`
			OpenToFirstOrderMs float64    `json:"open_to_first_order_ms"`
			OpenToLastOrderMs  float64    `json:"open_to_last_order_ms"`
		} `json:"server"`
		Observed struct {
			Orders                int64   `json:"orders"`
			AcceptedToLastOrderMs float64 `json:"first_accepted_to_last_order_ms"`
			OrdersPerSecond       float64 `json:"orders_per_second"`
		} `json:"observed"`
	} `json:"purchase"`
	Endpoints []struct {
		Name   string           `json:"name"`
		Status map[string]int64 `json:"status"`
	} `json:"endpoints"`
	Tickets               map[string]int64 `json:"tickets"`
	Users                 map[string]int64 `json:"users"`
	Counters              map[string]int64 `json:"counters"`
	OrdersPerSecondSeries []int64          `json:"orders_per_second_series"`
}

// TestBenchAgainstAll runs `flashsale bench` (the binary under test) against
// `flashsale all` with the contract's default limiter (50 purchases per sale per
// 10 ms window), so that the bench's 429 / Retry-After handling meets the real
// thing, and with --wait-expiry, so that unpaid orders expire and their stock
// comes back. It asserts the bench passes every check, that its server-side order
// times are the database's, and that its HTML report renders in Chromium with the
// charts drawn.
func TestBenchAgainstAll(t *testing.T) {
	e := newEnv(t)
	p := e.start("all", map[string]string{"FLASHSALE_LIMIT_PER_WINDOW": "50"})
	// FLASHSALE_E2E_BENCH_DIR keeps the reports and the screenshot for a look.
	dir := t.TempDir()
	if keep := os.Getenv("FLASHSALE_E2E_BENCH_DIR"); keep != "" {
		if err := os.MkdirAll(keep, 0o755); err != nil {
			t.Fatal(err)
		}
		dir = keep
	}
	jsonPath := filepath.Join(dir, "bench.json")
	htmlPath := filepath.Join(dir, "bench.html")

	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, binPath, "bench",
		"--url", p.URL,
		"--users", fmt.Sprint(benchUsers), "--stock", fmt.Sprint(benchStock), "--conns", fmt.Sprint(benchConns),
		"--pay-ratio", fmt.Sprint(benchPayRatio), "--payment-window", fmt.Sprint(benchWindow), "--wait-expiry",
		"--duration", "90s", "--json", jsonPath, "--html", htmlPath)
	cmd.Env = processEnv(map[string]string{
		"FLASHSALE_ADMIN_TOKEN":    e.AdminToken,
		"FLASHSALE_PAYMENT_SECRET": e.PaymentSecret,
	})
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	t0 := time.Now()
	err := cmd.Run()
	t.Logf("flashsale bench took %s; its summary:\n%s", time.Since(t0).Round(time.Millisecond), stdout.String())
	if err != nil {
		t.Fatalf("flashsale bench: %v (want exit 0)\nstderr:\n%s\n%s", err, tail(stderr.String(), 40), p.LogTail(60))
	}

	data, err := os.ReadFile(jsonPath)
	if err != nil {
		t.Fatal(err)
	}
	var rep benchReport
	if err := json.Unmarshal(data, &rep); err != nil {
		t.Fatalf("--json report: %v", err)
	}
	checkBenchReport(t, &rep)
	checkBenchAgainstDatabase(t, e, &rep)
	screenshotReport(t, htmlPath, filepath.Join(dir, "bench.png"))
}

// checkBenchReport asserts what the scenario must give: every check passed, the
// whole stock became orders (the payment window is far longer than the purchase
// phase, so no unit came back while users were still buying), exactly the pay
// ratio of them paid and the rest expired.
func checkBenchReport(t *testing.T, rep *benchReport) {
	t.Helper()
	if !rep.Completed || !rep.Pass {
		t.Errorf("report: completed %v, pass %v, error %q", rep.Completed, rep.Pass, rep.Error)
	}
	if len(rep.Checks) == 0 {
		t.Fatal("report has no checks")
	}
	names := map[string]bool{}
	for _, c := range rep.Checks {
		names[c.Name] = true
		if !c.Pass {
			t.Errorf("check %q failed: %s", c.Name, c.Detail)
		}
	}
	for _, want := range []string{"run completed", "no oversell (orders)", "no oversell (sale view)",
		"every 202 ticket final", "sale view agrees with orders", "unpaid orders expired", "expired stock returned",
		"answers match the API description"} {
		if !names[want] {
			t.Errorf("check %q missing from the report", want)
		}
	}

	pu := rep.Purchase
	if pu.OrdersCreated != benchStock {
		t.Errorf("orders created = %d, want %d (the stock)", pu.OrdersCreated, benchStock)
	}
	paid := int64(math.Floor(float64(pu.OrdersCreated)*benchPayRatio + 1e-9))
	if got := rep.Tickets; got["paid"] != paid || got["expired"] != pu.OrdersCreated-paid || got["cancelled"] != 0 {
		t.Errorf("tickets %v, want paid %d, expired %d", got, paid, pu.OrdersCreated-paid)
	}
	if got := rep.Users["ticket"] + rep.Users["rejected_sold_out"]; got != benchUsers {
		t.Errorf("users with a ticket or a sold_out answer: %d, want %d (%v)", got, benchUsers, rep.Users)
	}

	s := pu.Server
	if s.Orders != pu.OrdersCreated || s.Unread != 0 {
		t.Errorf("server-side timing read %d orders (%d unread), want all %d", s.Orders, s.Unread, pu.OrdersCreated)
	}
	if s.FirstCreatedAt == nil || s.LastCreatedAt == nil || s.FirstToLastMs <= 0 || s.OrdersPerSecond <= 0 {
		t.Fatalf("no server-side order rate: %+v", s)
	}
	if want := float64(s.Orders) / (s.FirstToLastMs / 1000); math.Abs(s.OrdersPerSecond-want) > want*1e-6 {
		t.Errorf("orders/s %v, want orders / span = %v", s.OrdersPerSecond, want)
	}
	if s.OpenToFirstOrderMs < 0 || s.OpenToLastOrderMs < s.OpenToFirstOrderMs || s.OpenToLastOrderMs > 60_000 {
		t.Errorf("opening -> first / last order %vms / %vms", s.OpenToFirstOrderMs, s.OpenToLastOrderMs)
	}
	var series int64
	for _, n := range rep.OrdersPerSecondSeries {
		series += n
	}
	if series != s.Orders {
		t.Errorf("orders_per_second_series sums to %d, want %d", series, s.Orders)
	}
	var purchase map[string]int64
	for _, ep := range rep.Endpoints {
		if ep.Name == "purchase" {
			purchase = ep.Status
		}
	}
	t.Logf("server: %d orders in %.0f ms = %.0f orders/s (opening -> first %.0f ms, -> last %.0f ms); "+
		"observed by the bench: %.0f orders/s over %.0f ms; purchase answers %v; counters %v",
		s.Orders, s.FirstToLastMs, s.OrdersPerSecond, s.OpenToFirstOrderMs, s.OpenToLastOrderMs,
		pu.Observed.OrdersPerSecond, pu.Observed.AcceptedToLastOrderMs, purchase, rep.Counters)
}

// checkBenchAgainstDatabase compares the bench's view with the order rows
// themselves: the stock's worth of orders, the paid share paid, and the bench's
// first and last created_at (read over the API) equal to MySQL's.
func checkBenchAgainstDatabase(t *testing.T, e *env, rep *benchReport) {
	t.Helper()
	rows := e.orders(t, rep.SaleID)
	checkOrderRows(t, rows, benchStock, 1)
	status := map[string]int{}
	for _, r := range rows {
		status[r.Status]++
	}
	if len(rows) != benchStock || int64(status["paid"]) != rep.Tickets["paid"] || int64(status["expired"]) != rep.Tickets["expired"] {
		t.Errorf("order rows %d %v, want %d with the report's paid %d and expired %d",
			len(rows), status, benchStock, rep.Tickets["paid"], rep.Tickets["expired"])
	}

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var first, last time.Time
	for i := range e.ShardDBs {
		var lo, hi any
		if err := e.shard(i).QueryRowContext(ctx,
			"SELECT MIN(created_at), MAX(created_at) FROM orders WHERE sale_id = ?", rep.SaleID).Scan(&lo, &hi); err != nil {
			t.Fatalf("shard %d: %v", i, err)
		}
		if lo == nil {
			continue // no order of the sale on this shard
		}
		l, h := sqlTime(t, lo), sqlTime(t, hi)
		if first.IsZero() || l.Before(first) {
			first = l
		}
		if h.After(last) {
			last = h
		}
	}
	s := rep.Purchase.Server
	if s.FirstCreatedAt == nil || s.LastCreatedAt == nil {
		return // reported by checkBenchReport
	}
	if d := s.FirstCreatedAt.Sub(first); d.Abs() > time.Millisecond {
		t.Errorf("bench's first created_at %s, MySQL's %s", s.FirstCreatedAt.Format(time.RFC3339Nano), first.Format(time.RFC3339Nano))
	}
	if d := s.LastCreatedAt.Sub(last); d.Abs() > time.Millisecond {
		t.Errorf("bench's last created_at %s, MySQL's %s", s.LastCreatedAt.Format(time.RFC3339Nano), last.Format(time.RFC3339Nano))
	}
	t.Logf("MySQL: %d orders created from %s to %s (%s)", len(rows), first.Format("15:04:05.000000"),
		last.Format("15:04:05.000000"), last.Sub(first))
}

// sqlTime reads a DATETIME(6) column (UTC) scanned into an any: bytes without
// parseTime, a time.Time with it.
func sqlTime(t *testing.T, v any) time.Time {
	t.Helper()
	switch x := v.(type) {
	case time.Time:
		return x
	case []byte:
		v = string(x)
	}
	str, ok := v.(string)
	if !ok {
		t.Fatalf("created_at scanned as %T", v)
	}
	tm, err := time.ParseInLocation("2006-01-02 15:04:05.999999", str, time.UTC)
	if err != nil {
		t.Fatalf("created_at %q: %v", str, err)
	}
	return tm
}

// The screenshot's size, and what the test knows of the report's charts: every
// chart is an SVG line chart whose plot area has a grey (#888) y axis PlotH tall and
// PlotW wide at scale 1, and draws its series in this palette (the grey of the
// eighth series left out: it is not a colour).
const (
	shotWidth, shotHeight  = 1280, 2400
	chartPlotW, chartPlotH = 540, 174
	charts                 = 4 // orders over time, requests per second, latency, stock
)

var chartPalette = [][3]int{
	{0x1f, 0x77, 0xb4}, {0xff, 0x7f, 0x0e}, {0x2c, 0xa0, 0x2c}, {0xd6, 0x27, 0x28}, {0x94, 0x67, 0xbd},
	{0x8c, 0x56, 0x4b}, {0xe3, 0x77, 0xc2}, {0xbc, 0xbd, 0x22}, {0x17, 0xbe, 0xcf},
}

// screenshotReport renders the HTML report in headless Chromium and asserts the
// picture is the page with its charts: the expected size, not blank, and every
// chart's plot area holding coloured series.
func screenshotReport(t *testing.T, htmlPath, pngPath string) {
	t.Helper()
	chromium, err := exec.LookPath("chromium")
	if err != nil {
		chromium = "/usr/bin/chromium"
	}
	if _, err := os.Stat(chromium); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("chromium not installed (CI is set, so this fails; deploy/services.sh chromium installs it): %v", err)
		}
		t.Skipf("chromium not installed (deploy/services.sh chromium): %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
		"--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync",
		"--user-data-dir="+t.TempDir(), fmt.Sprintf("--window-size=%d,%d", shotWidth, shotHeight),
		"--screenshot="+pngPath, "file://"+htmlPath)
	// Chromium forks helpers: on timeout, end the whole process group, and do not
	// wait for helpers that keep the output pipe open.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = 5 * time.Second
	out, err := cmd.CombinedOutput()
	if err != nil && !errors.Is(err, exec.ErrWaitDelay) {
		t.Fatalf("chromium --screenshot: %v\n%s", err, tail(string(out), 30))
	}
	f, err := os.Open(pngPath)
	if err != nil {
		t.Fatalf("no screenshot: %v\n%s", err, tail(string(out), 30))
	}
	defer f.Close()
	img, err := png.Decode(f)
	if err != nil {
		t.Fatalf("screenshot is not a PNG: %v", err)
	}
	if b := img.Bounds(); b.Dx() != shotWidth || b.Dy() != shotHeight {
		t.Fatalf("screenshot is %dx%d, want %dx%d", b.Dx(), b.Dy(), shotWidth, shotHeight)
	}
	checkScreenshot(t, img)
	t.Logf("screenshot of the HTML report: %s", pngPath)
}

func rgb8(img image.Image, x, y int) (r, g, b int) {
	r16, g16, b16, _ := img.At(x, y).RGBA()
	return int(r16 >> 8), int(g16 >> 8), int(b16 >> 8)
}

func absInt(v int) int {
	if v < 0 {
		return -v
	}
	return v
}

// plotArea is a chart's plot area found on the screenshot: its y axis at column x
// from row top to row bottom.
type plotArea struct{ x, top, bottom int }

// findPlots finds the charts' y axes: vertical runs of mid-grey pixels about a plot
// tall (table borders are lighter, text is shorter, the dashed marker is broken, a
// scrollbar is longer), merging the neighbouring columns of one antialiased line.
func findPlots(img image.Image) []plotArea {
	b := img.Bounds()
	grey := func(x, y int) bool {
		r, g, bl := rgb8(img, x, y)
		return absInt(r-g) < 10 && absInt(g-bl) < 10 && r >= 0x60 && r <= 0xd0
	}
	var found []plotArea
	for x := b.Min.X; x < b.Max.X; x++ {
		run := 0
		for y := b.Min.Y; y <= b.Max.Y; y++ {
			if y < b.Max.Y && grey(x, y) {
				run++
				continue
			}
			if run >= chartPlotH*2/3 && run <= chartPlotH*3/2 { // not the scrollbar, if any
				a := plotArea{x: x, top: y - run, bottom: y - 1}
				merged := false
				for i, f := range found {
					if absInt(f.x-a.x) <= 2 && a.top <= f.bottom && f.top <= a.bottom {
						found[i].top, found[i].bottom = min(f.top, a.top), max(f.bottom, a.bottom)
						merged = true
						break
					}
				}
				if !merged {
					found = append(found, a)
				}
			}
			run = 0
		}
	}
	sort.Slice(found, func(i, j int) bool { return found[i].top < found[j].top })
	return found
}

// checkScreenshot asserts the page is not blank and that every chart drew its
// series: in each plot area (right of its y axis, as wide as the axis is tall
// times PlotW/PlotH), pixels of at least two palette colours.
func checkScreenshot(t *testing.T, img image.Image) {
	t.Helper()
	b := img.Bounds()
	colours := map[uint32]bool{}
	nonWhite := 0
	for y := b.Min.Y; y < b.Max.Y; y++ {
		for x := b.Min.X; x < b.Max.X; x++ {
			r, g, bl := rgb8(img, x, y)
			colours[uint32(r)<<16|uint32(g)<<8|uint32(bl)] = true
			if r < 245 || g < 245 || bl < 245 {
				nonWhite++
			}
		}
	}
	total := b.Dx() * b.Dy()
	t.Logf("screenshot: %d distinct colours, %.1f%% of the pixels not white", len(colours), 100*float64(nonWhite)/float64(total))
	if len(colours) < 64 || nonWhite < total/50 {
		t.Errorf("screenshot looks blank: %d distinct colours, %d of %d pixels not white", len(colours), nonWhite, total)
	}

	plots := findPlots(img)
	if len(plots) != charts {
		t.Errorf("found %d chart plot areas (y axes) on the screenshot, want %d: %+v", len(plots), charts, plots)
	}
	for i, p := range plots {
		width := (p.bottom - p.top + 1) * chartPlotW / chartPlotH
		perColour := make([]int, len(chartPalette))
		for y := max(b.Min.Y, p.top-2); y <= min(b.Max.Y-1, p.bottom+2); y++ {
			for x := p.x + 2; x <= min(b.Max.X-1, p.x+width); x++ {
				r, g, bl := rgb8(img, x, y)
				for k, c := range chartPalette {
					if dr, dg, db := r-c[0], g-c[1], bl-c[2]; dr*dr+dg*dg+db*db < 25*25 {
						perColour[k]++
						break
					}
				}
			}
		}
		seen, sum := 0, 0
		for _, n := range perColour {
			sum += n
			if n >= 20 {
				seen++
			}
		}
		t.Logf("chart %d: plot at x %d, rows %d-%d: %d series pixels, per palette colour %v", i+1, p.x, p.top, p.bottom, sum, perColour)
		if seen < 2 || sum < 150 {
			t.Errorf("chart %d (rows %d-%d) has %d series pixels in %d colours: its lines did not render", i+1, p.top, p.bottom, sum, seen)
		}
	}
}
