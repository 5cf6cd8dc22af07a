package bench

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
	"text/tabwriter"
	"time"
)

// Report is the whole result of one run, as written by --json.
type Report struct {
	RunID  string `json:"run_id"`
	SaleID string `json:"sale_id"`
	// SecondSaleID is the bundles' second sale (--bundle-ratio > 0).
	SecondSaleID string        `json:"second_sale_id,omitempty"`
	URL          string        `json:"url"`
	Inventory    string        `json:"inventory"`
	Config       ConfigSummary `json:"config"`
	StartedAt    time.Time     `json:"started_at"`
	FinishedAt   time.Time     `json:"finished_at"`
	// ElapsedSeconds is the wall time of the run.
	ElapsedSeconds float64 `json:"elapsed_seconds"`
	// Completed is false when the run could not finish (setup failed, --duration hit).
	Completed bool   `json:"completed"`
	Error     string `json:"error,omitempty"`
	// ClockOffsetMs is the server's clock minus the bench's.
	ClockOffsetMs float64 `json:"clock_offset_ms"`
	// SaleOpensAt is when the sale opened, in seconds since the run started.
	SaleOpensAt float64 `json:"sale_opens_at"`

	Endpoints []EndpointReport `json:"endpoints"`
	Purchase  PurchaseReport   `json:"purchase"`
	// Tickets counts tickets by their last status (paid, expired, cancelled, ...).
	Tickets map[string]int64 `json:"tickets"`
	// Users counts users by the outcome of their purchase attempt ("ticket",
	// "rejected_sold_out", "not_qualified", ...).
	Users map[string]int64 `json:"users"`
	// Actions counts the results of the pay and cancel calls.
	Actions map[string]int64 `json:"actions"`
	// Problems lists distinct error details of users, with counts (at most 20).
	Problems []Problem `json:"problems,omitempty"`
	// Counters holds retry counts and the like.
	Counters map[string]int64 `json:"counters"`
	// OrdersPerSecondSeries counts orders by their created_at (server clock, moved
	// to the bench's by the clock offset), per second of the run.
	OrdersPerSecondSeries []int64 `json:"orders_per_second_series"`
	// ObservedOrdersPerSecondSeries counts orders by when a polling user saw its
	// ticket resolved, per second of the run.
	ObservedOrdersPerSecondSeries []int64 `json:"observed_orders_per_second_series"`
	// OrdersCurve counts orders created so far by created_at, in seconds since the
	// sale opened (server clock), thinned to at most maxCurvePoints points.
	OrdersCurve []CurvePoint `json:"orders_curve"`
	// ObservedOrdersCurve is the same by when the bench saw each order (its ticket
	// polled out of "queued").
	ObservedOrdersCurve []CurvePoint  `json:"observed_orders_curve"`
	StockSeries         []StockSample `json:"stock_series"`
	// SecondStockSeries is the second sale's readings (--bundle-ratio > 0).
	SecondStockSeries []StockSample `json:"second_stock_series,omitempty"`
	// Bundles describes the bundle purchases (--bundle-ratio > 0).
	Bundles *BundleReport `json:"bundles,omitempty"`
	// Follow is how the users followed their tickets (--follow).
	Follow FollowReport `json:"follow"`
	// ServerCost is what the run cost the server, from its counters (absent with
	// --metrics-url off).
	ServerCost *ServerCost `json:"server_cost,omitempty"`
	// OrderCost is what an order cost each process in CPU and the MySQL
	// server in statements and fsyncs (absent when the run ended before the
	// opening).
	OrderCost *OrderCost `json:"order_cost,omitempty"`
	// Preload is the pipeline alone (--preload).
	Preload *PreloadReport `json:"preload,omitempty"`
	// Draw is the check of the waiting room's draw (--arrival waiting-room).
	Draw   *DrawReport `json:"draw,omitempty"`
	Checks []Check     `json:"checks"`
	// Pass is true when the run completed and every check passed.
	Pass bool `json:"pass"`
}

// EndpointReport is the statistics of one endpoint.
type EndpointReport struct {
	Name     string `json:"name"`
	Requests int64  `json:"requests"`
	// MeanRPS is requests over the span from the endpoint's first to last request
	// (at least 1 s); PeakRPS is the busiest one-second window (sliding by 100 ms).
	MeanRPS     float64           `json:"mean_rps"`
	PeakRPS     float64           `json:"peak_rps"`
	Latency     LatencySummary    `json:"latency"`
	Percentiles []PercentilePoint `json:"percentiles"`
	Status      map[string]int64  `json:"status"`
	// PerSecond counts requests started in each second of the run.
	PerSecond []int64 `json:"per_second"`
}

// PurchaseReport describes how fast the crowd was turned into orders.
type PurchaseReport struct {
	Accepted int64 `json:"accepted"`
	// FirstAcceptedAfterOpenMs is the time from the sale's opening to the first 202.
	FirstAcceptedAfterOpenMs float64 `json:"first_accepted_after_open_ms"`
	// OrdersCreated counts the tickets that made an order (pending_payment or a
	// later order status), as re-read at the end.
	OrdersCreated int64 `json:"orders_created"`
	// Server is the headline: the order rate from the orders' own created_at.
	Server ServerOrderTiming `json:"server"`
	// Observed is the order rate as the bench's polling users saw it; it lags the
	// server by the poll interval and by any wait for a free connection.
	Observed ObservedOrderTiming `json:"observed"`
	// Resolve is the time from a 202 to the ticket leaving "queued", as the polling
	// user saw it.
	Resolve LatencySummary `json:"resolve"`
	// Accepted202 is the latency of the purchase requests answered 202 (the
	// claim, the confirmed publish and the ticket copy), apart from the quick
	// 409s and 429s that the endpoint's latency mixes in.
	Accepted202 LatencySummary `json:"accepted_202"`
	// SlotWait is how long the crowd's requests (purchases, reservations) waited on
	// the bench side for one of the --conns slots; when it is large, the bench (not
	// the server) is the limit.
	SlotWait LatencySummary `json:"slot_wait"`
	// SlotWaitFollowUp is the same for follow-ups (ticket polls, order reads,
	// payments, cancellations), which go ahead of the crowd.
	SlotWaitFollowUp LatencySummary `json:"slot_wait_follow_up"`
}

// BundleReport counts the bundle buyers (one unit of the sale and one of the
// second sale, POST /api/v1/purchases) and their orders.
type BundleReport struct {
	// Users is how many users bought a bundle instead of one unit.
	Users int64 `json:"users"`
	// Accepted counts their tickets (202 or 200 for a live ticket).
	Accepted int64 `json:"accepted"`
	// Tickets counts their tickets by last status.
	Tickets map[string]int64 `json:"tickets"`
	// Orders counts bundle tickets that made an order; Complete those whose order
	// was read holding one unit of each sale; Incomplete those holding anything
	// else (half held); Unread those whose order could not be read.
	Orders     int64 `json:"orders"`
	Complete   int64 `json:"complete"`
	Incomplete int64 `json:"incomplete"`
	Unread     int64 `json:"unread"`
	// Units holds the units of pending_payment + paid tickets per sale id (single
	// and bundle tickets together).
	Units map[string]int64 `json:"units"`
}

// CurvePoint is one point of a cumulative curve: N events by T seconds.
type CurvePoint struct {
	T float64 `json:"t"`
	N int64   `json:"n"`
}

// maxCurvePoints bounds the points of a cumulative curve in the report.
const maxCurvePoints = 400

// cumulativeCurve turns event times (seconds, any order) into the cumulative count
// curve from (0, 0), keeping at most maxPoints points (always the last one).
func cumulativeCurve(ts []float64, maxPoints int) []CurvePoint {
	if len(ts) == 0 {
		return nil
	}
	ts = append([]float64(nil), ts...)
	sort.Float64s(ts)
	out := []CurvePoint{{T: min(0, ts[0]), N: 0}}
	if ts[0] > 0 { // flat until the first event
		out = append(out, CurvePoint{T: ts[0], N: 0})
	}
	n := len(ts)
	step := max(1, (n+maxPoints-2)/(maxPoints-1))
	for i := step - 1; i < n; i += step {
		out = append(out, CurvePoint{T: ts[i], N: int64(i + 1)})
	}
	if last := out[len(out)-1]; last.N != int64(n) {
		out = append(out, CurvePoint{T: ts[n-1], N: int64(n)})
	}
	return out
}

// ServerOrderTiming is the order rate measured on the server's clock: every order's
// created_at, read with GET /api/v1/orders/{id} once the load is over.
type ServerOrderTiming struct {
	// Orders is how many distinct orders' created_at was read.
	Orders int64 `json:"orders"`
	// Unread counts orders whose created_at could not be read (they are left out).
	Unread         int64      `json:"unread"`
	FirstCreatedAt *time.Time `json:"first_created_at,omitempty"`
	LastCreatedAt  *time.Time `json:"last_created_at,omitempty"`
	// FirstToLastMs is the first order's created_at to the last one's.
	FirstToLastMs float64 `json:"first_to_last_order_ms"`
	// OrdersPerSecond is Orders over FirstToLastMs (0 with fewer than two orders).
	OrdersPerSecond float64 `json:"orders_per_second"`
	// OpenToFirstOrderMs and OpenToLastOrderMs run from the sale's starts_at.
	OpenToFirstOrderMs float64 `json:"open_to_first_order_ms"`
	OpenToLastOrderMs  float64 `json:"open_to_last_order_ms"`
}

// ObservedOrderTiming is the order rate as seen by the bench's polling users.
type ObservedOrderTiming struct {
	// Orders counts tickets seen resolved with an order while the users polled.
	Orders int64 `json:"orders"`
	// AcceptedToLastOrderMs is the time from the first 202 to the last order seen.
	AcceptedToLastOrderMs float64 `json:"first_accepted_to_last_order_ms"`
	// OrdersPerSecond is Orders over AcceptedToLastOrderMs.
	OrdersPerSecond float64 `json:"orders_per_second"`
}

// serverOrderTiming computes the server-side order figures from the created_at of
// each distinct order, with unread orders left out, relative to the sale's opening.
func serverOrderTiming(created []time.Time, unread int64, startsAt time.Time) ServerOrderTiming {
	s := ServerOrderTiming{Orders: int64(len(created)), Unread: unread}
	if len(created) == 0 {
		return s
	}
	first, last := created[0], created[0]
	for _, c := range created[1:] {
		if c.Before(first) {
			first = c
		}
		if c.After(last) {
			last = c
		}
	}
	first, last = first.UTC(), last.UTC()
	s.FirstCreatedAt, s.LastCreatedAt = &first, &last
	span := last.Sub(first)
	s.FirstToLastMs = msOf(span)
	if len(created) >= 2 && span > 0 {
		s.OrdersPerSecond = float64(len(created)) / span.Seconds()
	}
	if !startsAt.IsZero() {
		s.OpenToFirstOrderMs = msOf(first.Sub(startsAt))
		s.OpenToLastOrderMs = msOf(last.Sub(startsAt))
	}
	return s
}

// Problem is one distinct error detail and how many users hit it.
type Problem struct {
	Detail string `json:"detail"`
	Count  int64  `json:"count"`
}

// CompareReport is --compare's result: the same scenario on a redis and a mysql sale.
type CompareReport struct {
	Redis *Report `json:"redis"`
	MySQL *Report `json:"mysql"`
	// OrdersPerSecondRatio is redis ÷ mysql server-side orders/s (from created_at);
	// absent when mysql has no such figure.
	OrdersPerSecondRatio *float64 `json:"orders_per_second_ratio,omitempty"`
	Pass                 bool     `json:"pass"`
}

func newCompareReport(redis, mysql *Report) *CompareReport {
	c := &CompareReport{Redis: redis, MySQL: mysql, Pass: redis != nil && mysql != nil && redis.Pass && mysql.Pass}
	if redis != nil && mysql != nil {
		if v, ok := ratio(redis.Purchase.Server.OrdersPerSecond, mysql.Purchase.Server.OrdersPerSecond); ok {
			c.OrdersPerSecondRatio = &v
		}
	}
	return c
}

// buildReport assembles the report of a run and runs the invariant checks.
func (r *run) buildReport(begin time.Time, completed bool, reason string, final *StockSample) *Report {
	end := time.Now()
	rec := r.rec
	rep := &Report{
		RunID:          r.id,
		SaleID:         r.saleID,
		URL:            r.cfg.URL,
		Inventory:      r.cfg.Inventory,
		Config:         r.cfg.summary(),
		StartedAt:      begin.UTC(),
		FinishedAt:     end.UTC(),
		ElapsedSeconds: end.Sub(begin).Seconds(),
		Completed:      completed,
		Error:          reason,
		ClockOffsetMs:  float64(r.offset) / float64(time.Millisecond),
		Tickets:        map[string]int64{statusPaid: 0, statusExpired: 0, statusCancelled: 0, statusSoldOut: 0, statusFailed: 0},
		Users:          map[string]int64{},
		Actions:        map[string]int64{},
	}
	opens := time.Time{}
	if !r.sched.startsAt.IsZero() {
		opens = r.local(r.sched.startsAt)
		rep.SaleOpensAt = rec.since(opens)
	}

	rec.mu.Lock()
	for _, name := range endpointOrder {
		e := rec.endpoints[name]
		if e == nil {
			continue
		}
		status := make(map[string]int64, len(e.status))
		for k, v := range e.status {
			status[k] = v
		}
		rep.Endpoints = append(rep.Endpoints, EndpointReport{
			Name:        string(name),
			Requests:    e.count,
			MeanRPS:     ratePerSecond(e.count, e.last.Sub(e.first)),
			PeakRPS:     float64(peakPerSecond(e.ticks)),
			Latency:     summarizeHistogram(e.hist),
			Percentiles: percentileCurve(e.hist),
			Status:      status,
			PerSecond:   perSecond(e.ticks),
		})
	}
	p := &rep.Purchase
	p.Accepted = rec.accepted
	p.Observed.Orders = rec.ordersCreated
	p.Resolve = summarizeHistogram(rec.resolve)
	p.Accepted202 = summarizeHistogram(rec.accepted202)
	p.SlotWait = summarizeHistogram(rec.slots)
	p.SlotWaitFollowUp = summarizeHistogram(rec.followSlots)
	if !rec.firstAccepted.IsZero() {
		if !opens.IsZero() {
			p.FirstAcceptedAfterOpenMs = msOf(rec.firstAccepted.Sub(opens))
		}
		if !rec.lastOrder.IsZero() {
			span := rec.lastOrder.Sub(rec.firstAccepted)
			p.Observed.AcceptedToLastOrderMs = msOf(span)
			p.Observed.OrdersPerSecond = windowRate(rec.ordersCreated, span)
		}
	}
	rep.ObservedOrdersPerSecondSeries = append([]int64(nil), rec.ordersPerSec...)
	rep.StockSeries = append([]StockSample(nil), rec.stock...)
	rep.SecondStockSeries = append([]StockSample(nil), rec.stockSecond...)
	rep.Counters = make(map[string]int64, len(rec.counters))
	for k, v := range rec.counters {
		rep.Counters[k] = v
	}
	rec.mu.Unlock()

	// Server-side order times: one created_at per distinct order.
	createdOf := map[string]time.Time{}
	for _, t := range r.tickets() {
		if !hasOrder(t.status) {
			continue
		}
		p.OrdersCreated++
		if t.orderID == "" {
			continue
		}
		if prev, seen := createdOf[t.orderID]; !seen || prev.IsZero() {
			createdOf[t.orderID] = t.createdAt
		}
	}
	var created []time.Time
	var unread int64
	var sinceOpen, seenSinceOpen []float64
	for _, c := range createdOf {
		if c.IsZero() {
			unread++
			continue
		}
		created = append(created, c)
		rep.OrdersPerSecondSeries = bump(rep.OrdersPerSecondSeries, rec.second(r.local(c)))
		sinceOpen = append(sinceOpen, c.Sub(r.sched.startsAt).Seconds())
	}
	p.Server = serverOrderTiming(created, unread, r.sched.startsAt)
	for _, t := range r.tickets() {
		if hasOrder(t.status) && !t.resolvedAt.IsZero() {
			seenSinceOpen = append(seenSinceOpen, t.resolvedAt.Sub(opens).Seconds())
		}
	}
	if !opens.IsZero() {
		rep.OrdersCurve = cumulativeCurve(sinceOpen, maxCurvePoints)
		rep.ObservedOrdersCurve = cumulativeCurve(seenSinceOpen, maxCurvePoints)
	}

	problems := map[string]int64{}
	for _, u := range r.simUsers {
		if u.outcome == "" {
			u.outcome = outcomeGaveUp
		}
		rep.Users[u.outcome]++
		if u.detail != "" {
			problems[u.detail]++
		}
		if t := u.ticket; t != nil {
			rep.Tickets[orDefault(t.status, "unknown")]++
			if t.intent != "" {
				key := t.intent
				if t.action != "" {
					key += ":" + t.action
				}
				rep.Actions[key]++
			}
		}
	}
	for d, n := range problems {
		rep.Problems = append(rep.Problems, Problem{Detail: d, Count: n})
	}
	sort.Slice(rep.Problems, func(i, j int) bool {
		if rep.Problems[i].Count != rep.Problems[j].Count {
			return rep.Problems[i].Count > rep.Problems[j].Count
		}
		return rep.Problems[i].Detail < rep.Problems[j].Detail
	})
	if len(rep.Problems) > 20 {
		rep.Problems = rep.Problems[:20]
	}

	if r.saleB != "" {
		rep.SecondSaleID = r.saleB
		rep.Bundles = r.bundleReport()
	}
	rep.Follow = followReport(rep)
	rep.ServerCost = r.serverCost(begin, rep)
	if r.preload != nil {
		rep.Preload = r.preload.report(r.rec.since, rep.Purchase.Server, r.offset)
	}
	if r.costFirst != nil && r.costAfter != nil {
		rep.OrderCost = orderCost(r.cost, *r.costFirst, *r.costAfter, rep.Purchase.OrdersCreated, purchaseRequests(rep))
	}
	rep.Checks = append(checkInvariants(r.observations(completed, reason, final)), r.checks.result())
	if r.cfg.waitingRoom() {
		rep.Draw = r.draw
		rep.Checks = append(rep.Checks, drawCheck(r.draw))
	}
	rep.Pass = completed && allPass(rep.Checks)
	return rep
}

// serverCost computes the "Server cost" section from the run's two readings of
// the server's counters; nil with --metrics-url off.
func (r *run) serverCost(begin time.Time, rep *Report) *ServerCost {
	if r.cfg.MetricsURL == "" {
		return nil
	}
	if r.before == nil {
		return &ServerCost{MetricsURL: r.cfg.MetricsURL, Orders: rep.Purchase.OrdersCreated, Reason: "the run ended before they were read"}
	}
	after := counterReading{err: errors.New("not read")}
	if r.countersAfter != nil {
		after = *r.countersAfter
	}
	return serverCost(costInput{
		url:      r.cfg.MetricsURL,
		saleID:   r.saleID,
		orders:   rep.Purchase.OrdersCreated,
		accepted: rep.Purchase.Accepted,
		bundles:  r.saleB != "",
		begin:    begin,
	}, *r.before, after)
}

// bundleReport counts the bundle buyers and their orders.
func (r *run) bundleReport() *BundleReport {
	b := &BundleReport{Tickets: map[string]int64{}, Units: map[string]int64{}}
	for _, u := range r.simUsers {
		if u.bundle {
			b.Users++
		}
	}
	for _, t := range r.tickets() {
		if t.status == statusPendingPayment || t.status == statusPaid {
			b.Units[r.saleID] += t.unitsIn(false)
			b.Units[r.saleB] += t.unitsIn(true)
		}
		if !t.bundle {
			continue
		}
		b.Accepted++
		b.Tickets[orDefault(t.status, "unknown")]++
		if !hasOrder(t.status) {
			continue
		}
		b.Orders++
		units := map[string]int{}
		for _, it := range t.orderItems {
			units[it.SaleId] += it.Quantity
		}
		switch {
		case !t.orderRead:
			b.Unread++
		case len(units) == 2 && units[r.saleID] == 1 && units[r.saleB] == 1:
			b.Complete++
		default:
			b.Incomplete++
		}
	}
	return b
}

func msOf(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// ticketStatusOrder is the order ticket statuses are printed in.
var ticketStatusOrder = []string{statusPaid, statusExpired, statusCancelled, statusSoldOut, statusFailed, statusPendingPayment, statusQueued, statusWaiting}

// writeText prints the human summary of one run.
func writeText(w io.Writer, rep *Report) {
	c := rep.Config
	fmt.Fprintf(w, "flashsale bench  run %s  sale %s  inventory %s  %s\n", rep.RunID, rep.SaleID, rep.Inventory, rep.URL)
	fmt.Fprintf(w, "users %d  stock %d  per-user limit %d  conns %d  arrival %s", c.Users, c.Stock, c.PerUserLimit, c.Conns, c.Arrival)
	switch c.Arrival {
	case arrivalRamp:
		fmt.Fprintf(w, " over %v", c.Ramp)
	case arrivalWaitingRoom:
		fmt.Fprintf(w, " (line open %gs before the opening, waitlist %d)", c.RoomWindowSeconds, c.Waitlist)
	case arrivalEarly:
		fmt.Fprintf(w, " (users arrive over the %gs before the opening and press buy until it opens)", c.RoomWindowSeconds)
	}
	fmt.Fprintf(w, "  reservation %v  pay %.0f%%  cancel %.0f%%  payment window %ds  seed %d\n",
		c.Reservation, c.PayRatio*100, c.CancelRatio*100, c.PaymentWindow, c.Seed)
	if rep.SecondSaleID != "" {
		fmt.Fprintf(w, "bundles %.0f%% of users: one unit of %s and one of %s (stock %d)\n",
			c.BundleRatio*100, rep.SaleID, rep.SecondSaleID, c.secondStock())
	}
	fmt.Fprintf(w, "elapsed %.1fs  clock offset %s\n", rep.ElapsedSeconds, fmtSignedMs(rep.ClockOffsetMs))
	if rep.Error != "" {
		fmt.Fprintf(w, "INCOMPLETE: %s\n", rep.Error)
	}

	fmt.Fprintln(w, "\nEndpoints")
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "  endpoint\trequests\treq/s mean\treq/s peak\tp50\tp90\tp99\tmax\t")
	for _, e := range rep.Endpoints {
		fmt.Fprintf(tw, "  %s\t%d\t%s\t%s\t%s\t%s\t%s\t%s\n", e.Name, e.Requests, fmtRate(e.MeanRPS), fmtRate(e.PeakRPS),
			fmtMs(e.Latency.P50Ms), fmtMs(e.Latency.P90Ms), fmtMs(e.Latency.P99Ms), fmtMs(e.Latency.MaxMs))
	}
	_ = tw.Flush()

	fmt.Fprintln(w, "\nStatus mix")
	tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	for _, e := range rep.Endpoints {
		fmt.Fprintf(tw, "  %s\t%s\n", e.Name, fmtCounts(e.Status, nil))
	}
	_ = tw.Flush()

	p := rep.Purchase
	fmt.Fprintln(w, "\nPurchase flow")
	tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintf(tw, "  accepted (202)\t%d\n", p.Accepted)
	fmt.Fprintf(tw, "  first 202 after the opening\t%s\n", fmtMs(p.FirstAcceptedAfterOpenMs))
	fmt.Fprintf(tw, "  orders created\t%d\n", p.OrdersCreated)
	fmt.Fprintf(tw, "  orders created / s (server created_at)\t%s\n", serverRateText(p.Server))
	fmt.Fprintf(tw, "  first -> last order created (server)\t%s\n", fmtMs(p.Server.FirstToLastMs))
	fmt.Fprintf(tw, "  opening -> first / last order created (server)\t%s / %s\n", fmtMs(p.Server.OpenToFirstOrderMs), fmtMs(p.Server.OpenToLastOrderMs))
	fmt.Fprintf(tw, "  orders created / s as observed by the bench\t%s  (%d orders, first 202 -> last order seen %s)\n",
		fmtRate(p.Observed.OrdersPerSecond), p.Observed.Orders, fmtMs(p.Observed.AcceptedToLastOrderMs))
	fmt.Fprintf(tw, "  purchases answered 202  latency p50 / p99 / max\t%s / %s / %s\n", fmtMs(p.Accepted202.P50Ms), fmtMs(p.Accepted202.P99Ms), fmtMs(p.Accepted202.MaxMs))
	fmt.Fprintf(tw, "  202 -> ticket final (seen by the user)  p50 / p99 / max\t%s / %s / %s\n", fmtMs(p.Resolve.P50Ms), fmtMs(p.Resolve.P99Ms), fmtMs(p.Resolve.MaxMs))
	fmt.Fprintf(tw, "  bench wait for a free conn  purchases p50 / p99\t%s / %s\n", fmtMs(p.SlotWait.P50Ms), fmtMs(p.SlotWait.P99Ms))
	fmt.Fprintf(tw, "  bench wait for a free conn  polls, orders, payments p50 / p99\t%s / %s\n", fmtMs(p.SlotWaitFollowUp.P50Ms), fmtMs(p.SlotWaitFollowUp.P99Ms))
	_ = tw.Flush()

	fmt.Fprintln(w, "\nOutcomes")
	tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintf(tw, "  tickets\t%s\n", fmtCounts(rep.Tickets, ticketStatusOrder))
	fmt.Fprintf(tw, "  users\t%s\n", fmtCounts(rep.Users, []string{outcomeTicket, outcomeSoldOut}))
	if b := rep.Bundles; b != nil {
		fmt.Fprintf(tw, "  bundle tickets\t%s\n", fmtCounts(b.Tickets, ticketStatusOrder))
		fmt.Fprintf(tw, "  bundle orders\t%d: %d with both items, %d not as bought, %d unread (%d bundle users, %d tickets)\n",
			b.Orders, b.Complete, b.Incomplete, b.Unread, b.Users, b.Accepted)
		fmt.Fprintf(tw, "  units held or sold\t%s\n", fmtCounts(b.Units, []string{rep.SaleID, rep.SecondSaleID}))
	}
	if len(rep.Actions) > 0 {
		fmt.Fprintf(tw, "  actions\t%s\n", fmtCounts(rep.Actions, nil))
	}
	if len(rep.Counters) > 0 {
		fmt.Fprintf(tw, "  counters\t%s\n", fmtCounts(rep.Counters, nil))
	}
	_ = tw.Flush()
	writeFollow(w, rep.Follow)
	writePreloadText(w, rep.Preload)
	writeDrawText(w, rep.Draw)
	writeServerCostText(w, rep)
	writeOrderCostText(w, rep.OrderCost)
	if len(rep.Problems) > 0 {
		fmt.Fprintln(w, "\nProblems")
		for _, pr := range rep.Problems {
			fmt.Fprintf(w, "  %6d  %s\n", pr.Count, pr.Detail)
		}
	}

	fmt.Fprintln(w, "\nChecks")
	tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	for _, ch := range rep.Checks {
		fmt.Fprintf(tw, "  %s\t%s\t%s\n", passWord(ch.Pass), ch.Name, ch.Detail)
	}
	_ = tw.Flush()
	fmt.Fprintf(w, "\nRESULT: %s\n", passWord(rep.Pass))
}

// compareRows are the rows of the --compare table: metric, redis, mysql.
func compareRows(cmp *CompareReport) [][3]string {
	var rows [][3]string
	row := func(name string, f func(*Report) string) {
		a, b := "-", "-"
		if cmp.Redis != nil {
			a = f(cmp.Redis)
		}
		if cmp.MySQL != nil {
			b = f(cmp.MySQL)
		}
		rows = append(rows, [3]string{name, a, b})
	}
	row("run", func(r *Report) string { return r.RunID })
	row("orders created", func(r *Report) string { return fmt.Sprint(r.Purchase.OrdersCreated) })
	row("orders created / s (server created_at)", func(r *Report) string { return serverRateText(r.Purchase.Server) })
	row("first -> last order created (server)", func(r *Report) string { return fmtMs(r.Purchase.Server.FirstToLastMs) })
	row("opening -> last order created (server)", func(r *Report) string { return fmtMs(r.Purchase.Server.OpenToLastOrderMs) })
	row("orders / s as observed by the bench", func(r *Report) string { return fmtRate(r.Purchase.Observed.OrdersPerSecond) })
	row("purchase answered 202 p50", func(r *Report) string { return fmtMs(r.Purchase.Accepted202.P50Ms) })
	row("purchase answered 202 p99", func(r *Report) string { return fmtMs(r.Purchase.Accepted202.P99Ms) })
	row("202 -> final p50", func(r *Report) string { return fmtMs(r.Purchase.Resolve.P50Ms) })
	row("202 -> final p99", func(r *Report) string { return fmtMs(r.Purchase.Resolve.P99Ms) })
	for _, ep := range []endpoint{epPurchase, epGetTicket} {
		row(string(ep)+" req/s peak", func(r *Report) string { return fmtRate(endpointOf(r, ep).PeakRPS) })
		row(string(ep)+" p50", func(r *Report) string { return fmtMs(endpointOf(r, ep).Latency.P50Ms) })
		row(string(ep)+" p99", func(r *Report) string { return fmtMs(endpointOf(r, ep).Latency.P99Ms) })
	}
	for _, s := range []string{statusPaid, statusExpired, statusCancelled, statusSoldOut, statusFailed} {
		row("tickets "+s, func(r *Report) string { return fmt.Sprint(r.Tickets[s]) })
	}
	row("broker messages / order", func(r *Report) string {
		return costCompareValue(r, func(c *ServerCost) *float64 { return c.BrokerMessagesPerOrder })
	})
	row("redis round trips / admission", func(r *Report) string {
		return costCompareValue(r, func(c *ServerCost) *float64 { return c.RedisRoundTripsPerAdmission })
	})
	row("server CPU ms / order", func(r *Report) string {
		return costCompareValue(r, func(c *ServerCost) *float64 { return c.CPUMsPerOrder })
	})
	row("CPU ms / order (measured processes, bench excluded)", func(r *Report) string {
		if r.OrderCost == nil {
			return "n/a"
		}
		return fmtOpt(r.OrderCost.MeasuredCPUMsPerOrder, "%.3f")
	})
	for _, name := range []string{procMariaDB, procRedis, procRabbit} {
		row(name+" CPU ms / order", func(r *Report) string { return processMsPerOrder(r, name) })
	}
	row("mysql statements / order", func(r *Report) string {
		if r.OrderCost == nil || r.OrderCost.MySQL == nil || !r.OrderCost.MySQL.Available {
			return "n/a"
		}
		return fmtOpt(r.OrderCost.MySQL.StatementsPerOrder, "%.2f")
	})
	row("checks", func(r *Report) string { return passWord(r.Pass) })
	return rows
}

// processMsPerOrder is one process kind's CPU ms per order, "n/a" when not
// measured.
func processMsPerOrder(r *Report, name string) string {
	if r.OrderCost == nil {
		return "n/a"
	}
	for _, p := range r.OrderCost.Processes {
		if p.Name == name && p.Measured {
			return fmtOpt(p.CPUMsPerOrder, "%.3f")
		}
	}
	return "n/a"
}

// serverRateText renders the server-side orders/s, with what it rests on.
func serverRateText(s ServerOrderTiming) string {
	var out string
	if s.Orders < 2 || s.OrdersPerSecond == 0 {
		out = fmt.Sprintf("n/a (%d orders with a created_at)", s.Orders)
	} else {
		out = fmt.Sprintf("%s  (%d orders)", fmtRate(s.OrdersPerSecond), s.Orders)
	}
	if s.Unread > 0 {
		out += fmt.Sprintf(", %d orders' created_at unreadable", s.Unread)
	}
	return out
}

// ratioText renders the orders/s ratio of a comparison.
func ratioText(cmp *CompareReport) string {
	if cmp.OrdersPerSecondRatio == nil {
		return "n/a (no server-side orders/s for mysql)"
	}
	return fmt.Sprintf("%.2f (server created_at)", *cmp.OrdersPerSecondRatio)
}

// writeCompareText prints both runs of --compare side by side with the ratio.
func writeCompareText(w io.Writer, cmp *CompareReport) {
	fmt.Fprintln(w, "Comparison: the same scenario on a redis sale and a mysql sale")
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintf(tw, "  metric\tredis\tmysql\n")
	for _, r := range compareRows(cmp) {
		fmt.Fprintf(tw, "  %s\t%s\t%s\n", r[0], r[1], r[2])
	}
	_ = tw.Flush()
	fmt.Fprintf(w, "\norders/s ratio redis ÷ mysql: %s\n", ratioText(cmp))
	fmt.Fprintf(w, "RESULT: %s\n", passWord(cmp.Pass))
}

// endpointOf returns the named endpoint's statistics (zero when absent).
func endpointOf(r *Report, ep endpoint) EndpointReport {
	for _, e := range r.Endpoints {
		if e.Name == string(ep) {
			return e
		}
	}
	return EndpointReport{Name: string(ep)}
}

func passWord(ok bool) string {
	if ok {
		return "PASS"
	}
	return "FAIL"
}

func fmtSignedMs(ms float64) string {
	if ms < 0 {
		return "-" + fmtMs(-ms)
	}
	return "+" + fmtMs(ms)
}

// fmtCounts renders counts as "k n, k n", the keys in first first, then by
// descending count.
func fmtCounts(m map[string]int64, first []string) string {
	var parts []string
	seen := map[string]bool{}
	for _, k := range first {
		if v, ok := m[k]; ok {
			parts = append(parts, fmt.Sprintf("%s %d", k, v))
		}
		seen[k] = true
	}
	var rest []string
	for k := range m {
		if !seen[k] {
			rest = append(rest, k)
		}
	}
	sort.Slice(rest, func(i, j int) bool {
		if m[rest[i]] != m[rest[j]] {
			return m[rest[i]] > m[rest[j]]
		}
		return rest[i] < rest[j]
	})
	for _, k := range rest {
		parts = append(parts, fmt.Sprintf("%s %d", k, m[k]))
	}
	if len(parts) == 0 {
		return "-"
	}
	return strings.Join(parts, ", ")
}

// writeJSONFile writes v as indented JSON to path.
func writeJSONFile(path string, v any) error {
	data, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(path, append(data, '\n'), 0o644)
}
