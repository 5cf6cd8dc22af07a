package bench

import (
	"bytes"
	"encoding/xml"
	"errors"
	"io"
	"strings"
	"testing"
	"time"
)

// checkSVGs parses every <svg> element of page as XML, checks each has plotted data
// (a polyline with at least two points, or a "no data" note), and returns how many
// there are.
func checkSVGs(t *testing.T, page string) int {
	t.Helper()
	for _, bad := range []string{"<script", "<link", "@import", "src=\"http", "href=\"http"} {
		if strings.Contains(page, bad) {
			t.Errorf("page is not self-contained: contains %q", bad)
		}
	}
	n := 0
	rest := page
	for {
		i := strings.Index(rest, "<svg")
		if i < 0 {
			break
		}
		j := strings.Index(rest[i:], "</svg>")
		if j < 0 {
			t.Fatal("unterminated <svg>")
		}
		svg := rest[i : i+j+len("</svg>")]
		rest = rest[i+j+len("</svg>"):]
		n++
		dec := xml.NewDecoder(strings.NewReader(svg))
		polylines, points := 0, 0
		for {
			tok, err := dec.Token()
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				t.Fatalf("svg %d is not well-formed XML: %v\n%s", n, err, svg)
			}
			if se, ok := tok.(xml.StartElement); ok && se.Name.Local == "polyline" {
				polylines++
				for _, a := range se.Attr {
					if a.Name.Local == "points" {
						points = max(points, len(strings.Fields(a.Value)))
					}
				}
			}
		}
		if polylines == 0 && !strings.Contains(svg, "no data") {
			t.Errorf("svg %d has neither data nor a no-data note", n)
		}
		if polylines > 0 && points < 2 {
			t.Errorf("svg %d: longest polyline has %d points", n, points)
		}
	}
	return n
}

func syntheticReport() *Report {
	h := newLatencyHistogram()
	for i := 1; i <= 200; i++ {
		recordDuration(h, time.Duration(i)*time.Millisecond)
	}
	return &Report{
		RunID: "rtest", SaleID: "bench-rtest", URL: "http://127.0.0.1:8080", Inventory: "redis",
		Config:    Config{Users: 100, Stock: 10, PerUserLimit: 1, Conns: 8, Arrival: arrivalBurst}.summary(),
		Completed: true, Pass: true, SaleOpensAt: 2,
		Endpoints: []EndpointReport{
			{Name: "purchase", Requests: 150, PeakRPS: 120, Latency: summarizeHistogram(h), Percentiles: percentileCurve(h),
				Status: map[string]int64{"202": 12, "409 sold_out": 88, "429 rate_limited": 50}, PerSecond: []int64{0, 0, 120, 30}},
			{Name: "get_ticket", Requests: 40, Latency: summarizeHistogram(h), Percentiles: percentileCurve(h),
				Status: map[string]int64{"200": 40}, PerSecond: []int64{0, 0, 25, 15}},
		},
		Purchase: PurchaseReport{Accepted: 12, OrdersCreated: 10,
			Server:   ServerOrderTiming{Orders: 10, FirstToLastMs: 180, OrdersPerSecond: 55.5, OpenToFirstOrderMs: 20, OpenToLastOrderMs: 200},
			Observed: ObservedOrderTiming{Orders: 10, AcceptedToLastOrderMs: 700, OrdersPerSecond: 14.3}},
		Tickets:                       map[string]int64{"paid": 3, "expired": 7, "sold_out": 2},
		Users:                         map[string]int64{"ticket": 12, "rejected_sold_out": 88},
		OrdersPerSecondSeries:         []int64{0, 0, 10},
		ObservedOrdersPerSecondSeries: []int64{0, 0, 8, 2},
		OrdersCurve:                   []CurvePoint{{0, 0}, {0.02, 0}, {0.02, 1}, {0.2, 10}},
		ObservedOrdersCurve:           []CurvePoint{{0, 0}, {0.05, 0}, {0.05, 1}, {0.7, 10}},
		StockSeries: []StockSample{
			{T: 0.25, Total: 10, Available: 10}, {T: 2.5, Total: 10, Available: 2, Held: 8},
			{T: 3.0, Total: 10, Available: 0, Held: 7, Sold: 3}, {T: 35, Total: 10, Available: 7, Sold: 3},
		},
		Checks: []Check{{Name: checkOversell, Pass: true, Detail: "10 units <= 10 & fine"}},
	}
}

func TestRenderHTMLWellFormedSVG(t *testing.T) {
	var buf bytes.Buffer
	if err := renderHTML(&buf, []*Report{syntheticReport()}, nil); err != nil {
		t.Fatal(err)
	}
	page := buf.String()
	if n := checkSVGs(t, page); n != 4 {
		t.Fatalf("%d charts, want 4", n)
	}
	for _, want := range []string{"<!DOCTYPE html>", "Orders created since the opening", "Requests per second by endpoint", "Latency distribution", "Stock over time",
		"available", "sold", "p99.9", "purchase", "10 units &lt;= 10 &amp; fine",
		"created_at (server)", "seen by the bench", "orders created / s (server created_at)",
		"55.5  (10 orders)", "as observed by the bench", "14.3"} {
		if !strings.Contains(page, want) {
			t.Errorf("page lacks %q", want)
		}
	}
}

func TestRenderHTMLEmptyAndCompare(t *testing.T) {
	empty := &Report{RunID: "r0", SaleID: "bench-r0", Error: "cannot reach"}
	var buf bytes.Buffer
	if err := renderHTML(&buf, []*Report{empty}, nil); err != nil {
		t.Fatal(err)
	}
	if n := checkSVGs(t, buf.String()); n != 4 || !strings.Contains(buf.String(), "no data") {
		t.Errorf("empty report: %d charts", n)
	}

	a, b := syntheticReport(), syntheticReport()
	b.Inventory, b.Purchase.Server.OrdersPerSecond = "mysql", 11.1
	b.Purchase.Observed.OrdersPerSecond = 1 // the ratio is of the server-side figures
	cmp := newCompareReport(a, b)
	if cmp.OrdersPerSecondRatio == nil || !near(*cmp.OrdersPerSecondRatio, 5, 1e-9) {
		t.Fatalf("ratio = %v", cmp.OrdersPerSecondRatio)
	}
	buf.Reset()
	if err := renderHTML(&buf, []*Report{a, b}, cmp); err != nil {
		t.Fatal(err)
	}
	if n := checkSVGs(t, buf.String()); n != 8 {
		t.Errorf("compare page: %d charts, want 8", n)
	}
	if !strings.Contains(buf.String(), "5.00") {
		t.Error("compare page lacks the ratio")
	}
}

func TestBuildChartScales(t *testing.T) {
	ch := buildChart("t", "x", "y", []xySeries{{Name: "a", X: []float64{0, 10}, Y: []float64{0, 87}}}, nil)
	if ch.Empty || len(ch.Series) != 1 {
		t.Fatalf("chart: %+v", ch)
	}
	top := ch.YTicks[len(ch.YTicks)-1]
	if top.Label != "100" {
		t.Errorf("top y tick %q, want 100", top.Label)
	}
	// The highest point (87 of 100) sits 13% below the top of the plot.
	pts := strings.Fields(ch.Series[0].Points)
	if len(pts) != 2 || pts[1] != "610,52.6" {
		t.Errorf("points %q", ch.Series[0].Points)
	}
	if got := niceStep(87, 5); got != 20 {
		t.Errorf("niceStep(87, 5) = %v", got)
	}
	if got := niceStep(0.9, 4); got != 0.5 {
		t.Errorf("niceStep(0.9, 4) = %v", got)
	}
	if got := tickLabel(0.25, 0.05); got != "0.25" {
		t.Errorf("tickLabel = %q", got)
	}
	if !buildChart("t", "x", "y", nil, nil).Empty {
		t.Error("no data should be empty")
	}
}
