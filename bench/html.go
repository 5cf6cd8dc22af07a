package bench

import (
	"bytes"
	"fmt"
	"html/template"
	"io"
	"math"
	"os"
	"strconv"
	"strings"
	"time"
)

// The HTML report is one self-contained page: inline CSS and SVG charts generated
// here, no script and no external asset, so it renders offline.

// Chart geometry, in SVG user units.
const (
	chartWidth   = 780
	chartHeight  = 250
	chartLeft    = 70
	chartTop     = 30
	chartLegendW = 170
	chartBottom  = 46
)

var palette = []string{"#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf"}

// xySeries is one line of data for a chart.
type xySeries struct {
	Name string
	X, Y []float64
}

// svgChart is a line chart laid out in SVG coordinates, ready for the template.
type svgChart struct {
	Title, XLabel, YLabel string
	Width, Height         float64
	Left, Top             float64
	PlotW, PlotH          float64
	Series                []svgSeries
	XTicks, YTicks        []svgTick
	Marker                *svgTick // a vertical marker (the sale's opening), if in range
	Empty                 bool
}

type svgSeries struct {
	Name    string
	Color   string
	Points  string
	Dots    []svgPoint // drawn for short series, where a line alone may be invisible
	LegendY float64
}

type svgPoint struct{ X, Y float64 }

type svgTick struct {
	Pos   float64
	Label string
}

// niceStep is a 1, 2 or 5 times a power of ten step close to span/n.
func niceStep(span float64, n int) float64 {
	if span <= 0 || n < 1 || math.IsNaN(span) || math.IsInf(span, 0) {
		return 1
	}
	raw := span / float64(n)
	mag := math.Pow(10, math.Floor(math.Log10(raw)))
	for _, m := range []float64{1, 2, 5, 10} {
		if m*mag >= raw {
			return m * mag
		}
	}
	return 10 * mag
}

// tickLabel formats v with as many decimals as step needs.
func tickLabel(v, step float64) string {
	if step >= 1 {
		return strconv.FormatFloat(math.Round(v), 'f', -1, 64)
	}
	dec := int(math.Ceil(-math.Log10(step)))
	return strconv.FormatFloat(v, 'f', dec, 64)
}

// buildChart lays out series. With categories, x values are indexes into them and
// the x axis is labelled with the categories.
func buildChart(title, xLabel, yLabel string, series []xySeries, categories []string) svgChart {
	ch := svgChart{
		Title: title, XLabel: xLabel, YLabel: yLabel,
		Width: chartWidth, Height: chartHeight, Left: chartLeft, Top: chartTop,
		PlotW: chartWidth - chartLeft - chartLegendW, PlotH: chartHeight - chartTop - chartBottom,
	}
	xmin, xmax, ymax := math.Inf(1), math.Inf(-1), 0.0
	points := 0
	for _, s := range series {
		for i := range min(len(s.X), len(s.Y)) {
			x, y := s.X[i], s.Y[i]
			if math.IsNaN(x) || math.IsNaN(y) || math.IsInf(x, 0) || math.IsInf(y, 0) {
				continue
			}
			xmin, xmax, ymax = math.Min(xmin, x), math.Max(xmax, x), math.Max(ymax, y)
			points++
		}
	}
	if points == 0 {
		ch.Empty = true
		return ch
	}
	if categories != nil {
		xmin, xmax = 0, float64(max(len(categories)-1, 1))
	}
	xmin = math.Min(xmin, 0)
	if xmax <= xmin {
		xmax = xmin + 1
	}
	ystep := niceStep(ymax, 5)
	ytop := math.Max(math.Ceil(ymax/ystep)*ystep, ystep)
	px := func(x float64) float64 { return ch.Left + (x-xmin)/(xmax-xmin)*ch.PlotW }
	py := func(y float64) float64 { return ch.Top + ch.PlotH - y/ytop*ch.PlotH }

	for v := 0.0; v <= ytop+ystep/2; v += ystep {
		ch.YTicks = append(ch.YTicks, svgTick{Pos: py(v), Label: tickLabel(v, ystep)})
	}
	if categories != nil {
		for i, c := range categories {
			ch.XTicks = append(ch.XTicks, svgTick{Pos: px(float64(i)), Label: c})
		}
	} else {
		xstep := niceStep(xmax-xmin, 8)
		for v := math.Ceil(xmin/xstep) * xstep; v <= xmax+xstep/1e6; v += xstep {
			ch.XTicks = append(ch.XTicks, svgTick{Pos: px(v), Label: tickLabel(v, xstep)})
		}
	}
	for i, s := range series {
		var b strings.Builder
		var dots []svgPoint
		n := min(len(s.X), len(s.Y))
		for j := range n {
			x, y := s.X[j], s.Y[j]
			if math.IsNaN(x) || math.IsNaN(y) || math.IsInf(x, 0) || math.IsInf(y, 0) {
				continue
			}
			p := svgPoint{X: round1(px(x)), Y: round1(py(math.Max(y, 0)))}
			if b.Len() > 0 {
				b.WriteByte(' ')
			}
			b.WriteString(strconv.FormatFloat(p.X, 'f', -1, 64))
			b.WriteByte(',')
			b.WriteString(strconv.FormatFloat(p.Y, 'f', -1, 64))
			if n <= 12 {
				dots = append(dots, p)
			}
		}
		ch.Series = append(ch.Series, svgSeries{
			Name: s.Name, Color: palette[i%len(palette)], Points: b.String(), Dots: dots,
			LegendY: ch.Top + 8 + float64(i)*18,
		})
	}
	return ch
}

// withMarker adds a vertical marker at x (data units) when it lies on the x axis.
func (ch svgChart) withMarker(x float64, label string, xmin, xmax float64) svgChart {
	if ch.Empty || x < xmin || x > xmax || xmax <= xmin {
		return ch
	}
	ch.Marker = &svgTick{Pos: round1(ch.Left + (x-xmin)/(xmax-xmin)*ch.PlotW), Label: label}
	return ch
}

func round1(v float64) float64 { return math.Round(v*10) / 10 }

// chartsFor builds the charts of one run: orders created over time (server and
// bench-observed), requests per second, latency distribution, stock.
func chartsFor(rep *Report) []svgChart {
	var thr []xySeries
	xmax := 0.0
	for _, e := range rep.Endpoints {
		s := perSecondSeries(e.Name, e.PerSecond)
		thr = append(thr, s)
		xmax = math.Max(xmax, float64(len(e.PerSecond)))
	}
	throughput := buildChart("Requests per second by endpoint", "seconds since start", "per second", thr, nil).
		withMarker(rep.SaleOpensAt, "sale opens", 0, math.Max(xmax, 1))

	var lat []xySeries
	cats := make([]string, len(curvePercentiles))
	for i, p := range curvePercentiles {
		switch p {
		case 0:
			cats[i] = "min"
		case 100:
			cats[i] = "max"
		default:
			cats[i] = "p" + strconv.FormatFloat(p, 'f', -1, 64)
		}
	}
	for _, e := range rep.Endpoints {
		s := xySeries{Name: e.Name}
		for i, pp := range e.Percentiles {
			s.X = append(s.X, float64(i))
			s.Y = append(s.Y, pp.Ms)
		}
		lat = append(lat, s)
	}
	latency := buildChart("Latency distribution by endpoint", "percentile", "milliseconds", lat, cats)

	var avail, held, sold xySeries
	avail.Name, held.Name, sold.Name = "available", "held", "sold"
	sxmax := 0.0
	for _, s := range rep.StockSeries {
		avail.X, avail.Y = append(avail.X, s.T), append(avail.Y, float64(s.Available))
		held.X, held.Y = append(held.X, s.T), append(held.Y, float64(s.Held))
		sold.X, sold.Y = append(sold.X, s.T), append(sold.Y, float64(s.Sold))
		sxmax = math.Max(sxmax, s.T)
	}
	stock := buildChart("Stock over time", "seconds since start", "units", []xySeries{avail, held, sold}, nil).
		withMarker(rep.SaleOpensAt, "sale opens", 0, math.Max(sxmax, 1))
	orders := buildChart("Orders created since the opening", "seconds since the sale opened", "orders", []xySeries{
		curveSeries("created_at (server)", rep.OrdersCurve),
		curveSeries("seen by the bench", rep.ObservedOrdersCurve),
	}, nil)
	return []svgChart{orders, throughput, latency, stock}
}

// curveSeries plots a cumulative curve.
func curveSeries(name string, pts []CurvePoint) xySeries {
	s := xySeries{Name: name}
	for _, p := range pts {
		s.X = append(s.X, p.T)
		s.Y = append(s.Y, float64(p.N))
	}
	return s
}

// perSecondSeries plots counts per second as steps: each count spans its second.
func perSecondSeries(name string, counts []int64) xySeries {
	s := xySeries{Name: name}
	for i, c := range counts {
		s.X = append(s.X, float64(i), float64(i+1))
		s.Y = append(s.Y, float64(c), float64(c))
	}
	return s
}

type htmlRun struct {
	R          *Report
	Charts     []svgChart
	ServerRate string
	Tickets    string
	Users      string
	Actions    string
	Cost       htmlCost
	OrderCost  htmlOrderCost
	Preload    []string    // --preload's figures, a line each
	Draw       [][2]string // the waiting room's draw (--arrival waiting-room)
}

// htmlOrderCost is the "Cost of an order" section of one run, after the
// Server cost one.
type htmlOrderCost struct {
	Heading   string
	Processes [][5]string
	Reason    string // why the processes were not measured
	MySQL     []string
	Notes     []string
}

func htmlPreloadOf(p *PreloadReport) []string {
	switch {
	case p == nil:
		return nil
	case p.Error != "":
		return []string{p.Error}
	}
	return append([]string{fmt.Sprintf("%d purchases queued, then workers started: %s", p.Purchases, p.WorkersCmd)}, preloadLines(p)...)
}

func htmlOrderCostOf(r *Report) htmlOrderCost {
	c := r.OrderCost
	if c == nil {
		return htmlOrderCost{Heading: orderCostHeading(nil)}
	}
	return htmlOrderCost{Heading: orderCostHeading(c), Processes: orderCostRows(c), Reason: c.ProcessesReason,
		MySQL: mysqlCostLines(c.MySQL), Notes: c.Notes}
}

// htmlCost is the "Server cost" section of one run. It comes after the charts,
// so that a single run's charts still fit a 1280×2400 window.
type htmlCost struct {
	Heading string
	Rows    []costRow
	Notes   []string
}

type htmlCompare struct {
	Rows  [][3]string
	Ratio string
	Pass  bool
}

type htmlPage struct {
	Title     string
	Generated string
	Compare   *htmlCompare
	Runs      []htmlRun
}

var htmlFuncs = template.FuncMap{
	"f1":   func(v float64) string { return strconv.FormatFloat(round1(v), 'f', -1, 64) },
	"ms":   fmtMs,
	"rate": fmtRate,
	"pass": passWord,
	"counts": func(m map[string]int64) string {
		return fmtCounts(m, nil)
	},
	"add": func(a, b float64) float64 { return a + b },
}

var htmlTemplate = template.Must(template.New("page").Funcs(htmlFuncs).Parse(`<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8"/>
<meta name="viewport" content="width=device-width, initial-scale=1"/>
<title>{{.Title}}</title>
<style>
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 2em auto; max-width: 1000px; color: #222; padding: 0 1em; }
h1 { font-size: 1.5em; } h2 { font-size: 1.25em; margin-top: 2em; border-bottom: 1px solid #ccc; } h3 { font-size: 1.05em; }
table { border-collapse: collapse; margin: 0.5em 0 1em; font-size: 0.9em; }
th, td { border: 1px solid #ddd; padding: 3px 8px; text-align: left; vertical-align: top; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
.pass { color: #17803d; font-weight: bold; } .fail { color: #c62828; font-weight: bold; }
figure { margin: 1em 0; } svg { background: #fff; border: 1px solid #eee; max-width: 100%; height: auto; }
.meta { color: #555; font-size: 0.9em; }
</style>
</head>
<body>
<h1>{{.Title}}</h1>
<p class="meta">Generated {{.Generated}}. Self-contained: charts are inline SVG.</p>
{{with .Compare}}
<h2>Comparison</h2>
<table>
<tr><th>metric</th><th>redis</th><th>mysql</th></tr>
{{range .Rows}}<tr><td>{{index . 0}}</td><td class="num">{{index . 1}}</td><td class="num">{{index . 2}}</td></tr>
{{end}}</table>
<p>orders/s ratio redis ÷ mysql: <strong>{{.Ratio}}</strong> — result <span class="{{if .Pass}}pass{{else}}fail{{end}}">{{pass .Pass}}</span></p>
{{end}}
{{range .Runs}}{{$r := .R}}
<h2>Run {{$r.RunID}} — sale {{$r.SaleID}} ({{$r.Inventory}})</h2>
<p>Result: <span class="{{if $r.Pass}}pass{{else}}fail{{end}}">{{pass $r.Pass}}</span>{{if $r.Error}} — incomplete: {{$r.Error}}{{end}}</p>
<p class="meta">{{$r.URL}} · users {{$r.Config.Users}} · stock {{$r.Config.Stock}} · per-user limit {{$r.Config.PerUserLimit}} · conns {{$r.Config.Conns}} · arrival {{$r.Config.Arrival}} · reservation {{$r.Config.Reservation}} · pay {{$r.Config.PayRatio}} · cancel {{$r.Config.CancelRatio}} · payment window {{$r.Config.PaymentWindow}}s · seed {{$r.Config.Seed}} · elapsed {{f1 $r.ElapsedSeconds}}s</p>
<h3>Purchase flow</h3>
<table>
<tr><td>accepted (202)</td><td class="num">{{$r.Purchase.Accepted}}</td></tr>
<tr><td>first 202 after the opening</td><td class="num">{{ms $r.Purchase.FirstAcceptedAfterOpenMs}}</td></tr>
<tr><td>orders created</td><td class="num">{{$r.Purchase.OrdersCreated}}</td></tr>
<tr><td><strong>orders created / s (server created_at)</strong></td><td class="num"><strong>{{.ServerRate}}</strong></td></tr>
<tr><td>first → last order created (server)</td><td class="num">{{ms $r.Purchase.Server.FirstToLastMs}}</td></tr>
<tr><td>opening → first / last order created (server)</td><td class="num">{{ms $r.Purchase.Server.OpenToFirstOrderMs}} / {{ms $r.Purchase.Server.OpenToLastOrderMs}}</td></tr>
<tr><td>orders created / s as observed by the bench</td><td class="num">{{rate $r.Purchase.Observed.OrdersPerSecond}} ({{$r.Purchase.Observed.Orders}} orders, first 202 → last order seen {{ms $r.Purchase.Observed.AcceptedToLastOrderMs}})</td></tr>
<tr><td>202 → ticket final (seen by the user) p50 / p99</td><td class="num">{{ms $r.Purchase.Resolve.P50Ms}} / {{ms $r.Purchase.Resolve.P99Ms}}</td></tr>
<tr><td>bench wait for a free connection: purchases p50 / p99</td><td class="num">{{ms $r.Purchase.SlotWait.P50Ms}} / {{ms $r.Purchase.SlotWait.P99Ms}}</td></tr>
<tr><td>bench wait for a free connection: polls, orders, payments p50 / p99</td><td class="num">{{ms $r.Purchase.SlotWaitFollowUp.P50Ms}} / {{ms $r.Purchase.SlotWaitFollowUp.P99Ms}}</td></tr>
<tr><td>tickets</td><td>{{.Tickets}}</td></tr>
<tr><td>users</td><td>{{.Users}}</td></tr>
{{if .Actions}}<tr><td>actions</td><td>{{.Actions}}</td></tr>{{end}}
</table>
{{with .Preload}}<h3>Pipeline alone (--preload)</h3>
{{range .}}<p>{{.}}</p>
{{end}}{{end}}{{with .Draw}}<h3>Waiting room draw</h3>
<table>
{{range .}}<tr><td>{{index . 0}}</td><td>{{index . 1}}</td></tr>
{{end}}</table>
{{end}}<h3>Endpoints</h3>
<table>
<tr><th>endpoint</th><th>requests</th><th>req/s mean</th><th>req/s peak</th><th>p50</th><th>p90</th><th>p99</th><th>max</th><th>status mix</th></tr>
{{range $r.Endpoints}}<tr><td>{{.Name}}</td><td class="num">{{.Requests}}</td><td class="num">{{rate .MeanRPS}}</td><td class="num">{{rate .PeakRPS}}</td><td class="num">{{ms .Latency.P50Ms}}</td><td class="num">{{ms .Latency.P90Ms}}</td><td class="num">{{ms .Latency.P99Ms}}</td><td class="num">{{ms .Latency.MaxMs}}</td><td>{{counts .Status}}</td></tr>
{{end}}</table>
<h3>Checks</h3>
<table>
{{range $r.Checks}}<tr><td class="{{if .Pass}}pass{{else}}fail{{end}}">{{pass .Pass}}</td><td>{{.Name}}</td><td>{{.Detail}}</td></tr>
{{end}}</table>
{{range .Charts}}{{template "chart" .}}{{end}}
<h3>Server cost</h3>
<p class="meta">{{.Cost.Heading}}</p>
{{with .Cost.Rows}}<table>
{{range .}}<tr><td>{{.Name}}</td><td class="num">{{.Value}}</td><td>{{.Detail}}</td></tr>
{{end}}</table>
{{end}}{{range .Cost.Notes}}<p class="meta">note: {{.}}</p>
{{end}}<h3>Cost of an order</h3>
<p class="meta">{{.OrderCost.Heading}}</p>
{{with .OrderCost.Reason}}<p>processes: not measured ({{.}})</p>
{{end}}{{with .OrderCost.Processes}}<table>
<tr><th>process</th><th>CPU s</th><th>CPU ms / order</th><th>CPU s / 1000 purchase requests</th><th></th></tr>
{{range .}}<tr><td>{{index . 0}}</td><td class="num">{{index . 1}}</td><td class="num">{{index . 2}}</td><td class="num">{{index . 3}}</td><td>{{index . 4}}</td></tr>
{{end}}</table>
{{end}}{{range .OrderCost.MySQL}}<p>{{.}}</p>
{{end}}{{range .OrderCost.Notes}}<p class="meta">note: {{.}}</p>
{{end}}{{end}}
</body>
</html>
{{define "chart"}}<figure>
<svg xmlns="http://www.w3.org/2000/svg" width="{{f1 .Width}}" height="{{f1 .Height}}" viewBox="0 0 {{f1 .Width}} {{f1 .Height}}" role="img" aria-label="{{.Title}}" font-family="sans-serif" font-size="11">
<text x="{{f1 .Left}}" y="18" font-size="14" font-weight="bold">{{.Title}}</text>
{{if .Empty}}<text x="{{f1 (add .Left 10)}}" y="{{f1 (add .Top 20)}}" fill="#888">no data</text>
{{else}}{{$c := .}}{{range .YTicks}}<line x1="{{f1 $c.Left}}" y1="{{f1 .Pos}}" x2="{{f1 (add $c.Left $c.PlotW)}}" y2="{{f1 .Pos}}" stroke="#eee"/>
<text x="{{f1 (add $c.Left -6)}}" y="{{f1 (add .Pos 4)}}" text-anchor="end">{{.Label}}</text>
{{end}}{{range .XTicks}}<line x1="{{f1 .Pos}}" y1="{{f1 (add $c.Top $c.PlotH)}}" x2="{{f1 .Pos}}" y2="{{f1 (add $c.Top (add $c.PlotH 4))}}" stroke="#888"/>
<text x="{{f1 .Pos}}" y="{{f1 (add $c.Top (add $c.PlotH 16))}}" text-anchor="middle">{{.Label}}</text>
{{end}}<line x1="{{f1 .Left}}" y1="{{f1 (add .Top .PlotH)}}" x2="{{f1 (add .Left .PlotW)}}" y2="{{f1 (add .Top .PlotH)}}" stroke="#888"/>
<line x1="{{f1 .Left}}" y1="{{f1 .Top}}" x2="{{f1 .Left}}" y2="{{f1 (add .Top .PlotH)}}" stroke="#888"/>
{{with .Marker}}<line x1="{{f1 .Pos}}" y1="{{f1 $c.Top}}" x2="{{f1 .Pos}}" y2="{{f1 (add $c.Top $c.PlotH)}}" stroke="#999" stroke-dasharray="4 3"/>
<text x="{{f1 (add .Pos 3)}}" y="{{f1 (add $c.Top 10)}}" fill="#777">{{.Label}}</text>
{{end}}{{range .Series}}<polyline fill="none" stroke="{{.Color}}" stroke-width="1.6" points="{{.Points}}"/>
{{$color := .Color}}{{range .Dots}}<circle cx="{{f1 .X}}" cy="{{f1 .Y}}" r="2.2" fill="{{$color}}"/>{{end}}
<rect x="{{f1 (add $c.Left (add $c.PlotW 14))}}" y="{{f1 (add .LegendY -8)}}" width="10" height="10" fill="{{.Color}}"/>
<text x="{{f1 (add $c.Left (add $c.PlotW 30))}}" y="{{f1 .LegendY}}">{{.Name}}</text>
{{end}}<text x="{{f1 (add .Left (add .PlotW -0))}}" y="{{f1 (add .Height -6)}}" text-anchor="end" fill="#555">{{.XLabel}}</text>
<text x="14" y="{{f1 (add .Top (add .PlotH -0))}}" fill="#555" transform="rotate(-90 14 {{f1 (add .Top .PlotH)}})">{{.YLabel}}</text>
{{end}}</svg>
</figure>
{{end}}`))

// renderHTML renders the page for the given runs (and comparison, if any).
func renderHTML(w io.Writer, runs []*Report, cmp *CompareReport) error {
	page := htmlPage{
		Title:     "flashsale bench report",
		Generated: time.Now().UTC().Format(time.RFC3339),
	}
	if cmp != nil {
		page.Title = "flashsale bench: redis vs mysql"
		page.Compare = &htmlCompare{Rows: compareRows(cmp), Ratio: ratioText(cmp), Pass: cmp.Pass}
	}
	for _, r := range runs {
		if r == nil {
			continue
		}
		page.Runs = append(page.Runs, htmlRun{
			R:          r,
			Charts:     chartsFor(r),
			ServerRate: serverRateText(r.Purchase.Server),
			Tickets:    fmtCounts(r.Tickets, ticketStatusOrder),
			Users:      fmtCounts(r.Users, []string{outcomeTicket, outcomeSoldOut}),
			Actions:    fmtCountsOrEmpty(r.Actions),
			Cost:       htmlCostOf(r),
			OrderCost:  htmlOrderCostOf(r),
			Preload:    htmlPreloadOf(r.Preload),
			Draw:       drawLines(r.Draw),
		})
	}
	var buf bytes.Buffer
	if err := htmlTemplate.Execute(&buf, page); err != nil {
		return fmt.Errorf("rendering HTML report: %w", err)
	}
	_, err := w.Write(buf.Bytes())
	return err
}

func htmlCostOf(r *Report) htmlCost {
	c := htmlCost{Heading: serverCostHeading(r.ServerCost, r.SaleOpensAt)}
	if r.ServerCost != nil && r.ServerCost.Available {
		c.Rows, c.Notes = serverCostRows(r.ServerCost), r.ServerCost.Notes
	}
	return c
}

func fmtCountsOrEmpty(m map[string]int64) string {
	if len(m) == 0 {
		return ""
	}
	return fmtCounts(m, nil)
}

// writeHTMLFile writes the HTML report to path.
func writeHTMLFile(path string, runs []*Report, cmp *CompareReport) error {
	var buf bytes.Buffer
	if err := renderHTML(&buf, runs, cmp); err != nil {
		return err
	}
	return os.WriteFile(path, buf.Bytes(), 0o644)
}
