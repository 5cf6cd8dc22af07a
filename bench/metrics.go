package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"net/url"
	"strings"
	"text/tabwriter"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// The "Server cost" section: the bench reads the server's own counters
// (Prometheus text at --metrics-url) before the sale opens and again once
// the load is over, and divides their growth by what the run did: broker
// messages per order, Redis round trips and commands per admission and per
// order, the process's CPU per order. Counters are per process: the figures cover the one process behind
// --metrics-url, and every sale it served meanwhile.

// The server's counters the section reads, and the label of each it splits by.
const (
	metricPublished  = "flashsale_broker_published_total"  // kind
	metricRoundTrips = "flashsale_redis_round_trips_total" // stage
	metricCommands   = "flashsale_redis_commands_total"    // stage
	metricPurchases  = "flashsale_purchases_total"         // sale, outcome
	metricCPU        = "process_cpu_seconds_total"         // no label: the process's user + system CPU
)

// Label values of the counters.
const (
	kindPurchase     = "purchase"      // messages carrying purchases (one, or a group)
	kindPurchaseItem = "purchase_item" // the purchases inside them
	kindEvent        = "event"         // order events from the outbox
	kindDelay        = "delay"         // expiry-scheduling messages (one order, or a group)
	kindDelayItem    = "delay_item"    // the orders inside them
	kindRepublish    = "republish"     // a group member re-published alone

	stageAdmission = "admission" // the ingress admitting purchase requests
	stageWorker    = "worker"    // holding and ordering queued purchases
)

// messageKinds are the kinds that are messages (the _item kinds count what is
// inside them), in the order the report lists them.
var messageKinds = []string{kindPurchase, kindEvent, kindDelay, kindRepublish}

// claimOutcomes are the purchase outcomes of requests that reached the claim in
// Redis (the others were turned away before it: rate_limited, not_qualified,
// blocked, unavailable).
var claimOutcomes = []string{"admitted", "existing", "sold_out", "limit_reached"}

const (
	maxMetricsBody = 32 << 20
	metricsTimeout = 5 * time.Second
)

// serverCounters is one reading of the server's counters, reduced to what the
// section needs: each family's values by its label (the purchases of one sale,
// by outcome). A family the server did not serve has no entry.
type serverCounters map[string]map[string]float64

// parseCounters reads Prometheus text exposition and keeps the section's
// counters; of flashsale_purchases_total, only saleID's series.
func parseCounters(in io.Reader, saleID string) (serverCounters, error) {
	p := expfmt.NewTextParser(model.UTF8Validation)
	mfs, err := p.TextToMetricFamilies(in)
	if err != nil {
		return nil, fmt.Errorf("parsing the metrics: %w", err)
	}
	out := serverCounters{}
	keep := func(family, by string, match func(*dto.Metric) bool) {
		mf, ok := mfs[family]
		if !ok {
			return
		}
		vals := map[string]float64{}
		for _, m := range mf.GetMetric() {
			if m.GetCounter() == nil || !match(m) {
				continue
			}
			vals[labelOf(m, by)] += m.GetCounter().GetValue()
		}
		out[family] = vals
	}
	all := func(*dto.Metric) bool { return true }
	keep(metricPublished, "kind", all)
	keep(metricRoundTrips, "stage", all)
	keep(metricCommands, "stage", all)
	keep(metricPurchases, "outcome", func(m *dto.Metric) bool { return labelOf(m, "sale") == saleID })
	keep(metricCPU, "", all)
	return out, nil
}

func labelOf(m *dto.Metric, name string) string {
	for _, l := range m.GetLabel() {
		if l.GetName() == name {
			return l.GetValue()
		}
	}
	return ""
}

// metricsScraper reads the server's counters over plain HTTP GET: no proxy, no
// redirect, no credentials.
type metricsScraper struct {
	url string
	hc  *http.Client
}

func newMetricsScraper(target string) *metricsScraper {
	return &metricsScraper{url: target, hc: &http.Client{
		Transport: &http.Transport{
			Proxy:       nil,
			DialContext: (&net.Dialer{Timeout: metricsTimeout}).DialContext,
		},
		Timeout:       metricsTimeout,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}}
}

// read scrapes once. Any failure (no answer, a status other than 200, a body
// that does not parse) is an error saying what went wrong.
func (s *metricsScraper) read(ctx context.Context, saleID string) (serverCounters, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, s.url, nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Accept", "text/plain;version=0.0.4")
	req.Header.Set("User-Agent", "flashsale-bench")
	resp, err := s.hc.Do(req)
	if err != nil {
		if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) {
			return nil, fmt.Errorf("GET %s: no answer in time", s.url)
		}
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err // the URL is said once
		}
		return nil, fmt.Errorf("GET %s: %w", s.url, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET %s: %s", s.url, resp.Status)
	}
	c, err := parseCounters(io.LimitReader(resp.Body, maxMetricsBody), saleID)
	if err != nil {
		return nil, fmt.Errorf("GET %s: %w", s.url, err)
	}
	return c, nil
}

func (s *metricsScraper) close() { s.hc.CloseIdleConnections() }

// counterReading is one scrape's result and when it was taken.
type counterReading struct {
	c   serverCounters
	err error
	at  time.Time
}

// ServerCost is the "Server cost" section: what the run cost the server, from
// the growth of its counters between a reading before the sale opened and
// one once the load was over (after the expiry wait with --wait-expiry). The
// ratios are rounded to 2 decimals and absent when a counter they rest on was
// not served or their divisor is 0.
type ServerCost struct {
	// MetricsURL is where the counters were read.
	MetricsURL string `json:"metrics_url"`
	// Available is false when a reading failed; Reason says why.
	Available bool   `json:"available"`
	Reason    string `json:"reason,omitempty"`
	// FirstReadAt and SecondReadAt are when the readings were taken, in seconds
	// since the run started (like sale_opens_at), to the millisecond.
	FirstReadAt  float64 `json:"first_read_at,omitempty"`
	SecondReadAt float64 `json:"second_read_at,omitempty"`
	// Missing names the counters the server did not serve.
	Missing []string `json:"missing,omitempty"`
	// Orders is the orders this run created (purchase.orders_created).
	Orders int64 `json:"orders"`
	// Published, RedisRoundTrips and RedisCommands are the counters' growth by
	// kind and by stage; Purchases is flashsale_purchases_total's growth for the
	// run's (first) sale, by outcome.
	Published       map[string]int64 `json:"published,omitempty"`
	RedisRoundTrips map[string]int64 `json:"redis_round_trips,omitempty"`
	RedisCommands   map[string]int64 `json:"redis_commands,omitempty"`
	Purchases       map[string]int64 `json:"purchases,omitempty"`

	// BrokerMessagesPerOrder is the messages published (purchase, event, delay,
	// republish) over the orders; BrokerMessagesPerOrderByKind the same by kind.
	BrokerMessagesPerOrder       *float64           `json:"broker_messages_per_order,omitempty"`
	BrokerMessagesPerOrderByKind map[string]float64 `json:"broker_messages_per_order_by_kind,omitempty"`
	// PurchasesPerPurchaseMessage is purchase_item ÷ purchase (the group size);
	// OrdersPerDelayMessage is delay_item ÷ delay.
	PurchasesPerPurchaseMessage *float64 `json:"purchases_per_purchase_message,omitempty"`
	OrdersPerDelayMessage       *float64 `json:"orders_per_delay_message,omitempty"`
	// RedisRoundTripsPerAdmission and RedisCommandsPerAdmission are the
	// admission stage's over the sale's admitted purchases.
	RedisRoundTripsPerAdmission *float64 `json:"redis_round_trips_per_admission,omitempty"`
	RedisCommandsPerAdmission   *float64 `json:"redis_commands_per_admission,omitempty"`
	// RedisRoundTripsPerClaim is the admission stage's round trips over the
	// sale's requests that reached the claim (admitted, existing, sold_out,
	// limit_reached).
	RedisRoundTripsPerClaim *float64 `json:"redis_round_trips_per_claim,omitempty"`
	// WorkerRedisRoundTripsPerOrder and WorkerRedisCommandsPerOrder are the
	// worker stage's over the orders.
	WorkerRedisRoundTripsPerOrder *float64 `json:"worker_redis_round_trips_per_order,omitempty"`
	WorkerRedisCommandsPerOrder   *float64 `json:"worker_redis_commands_per_order,omitempty"`
	// CPUSeconds is the process's CPU time (user + system) between the readings
	// (process_cpu_seconds_total), everything it did meanwhile included;
	// CPUMsPerOrder is it in milliseconds over the orders.
	CPUSeconds    *float64 `json:"cpu_seconds,omitempty"`
	CPUMsPerOrder *float64 `json:"cpu_ms_per_order,omitempty"`
	// Notes say what the figures do not cover.
	Notes []string `json:"notes,omitempty"`
}

// costInput is what the run knows that the section divides by or checks against.
type costInput struct {
	url      string
	saleID   string
	orders   int64 // orders the run created
	accepted int64 // 202s the bench was given in the sale (bundles included)
	bundles  bool  // the run also had a second sale
	begin    time.Time
}

// serverCost computes the section from the two readings. A failed reading, or
// a counter that went backwards (the process restarted), leaves it not
// available; a counter the second reading lacks leaves out the figures that
// rest on it (a counter the first reading lacks counts from 0: the sale's
// series only appear with its first purchase).
func serverCost(in costInput, before, after counterReading) *ServerCost {
	c := &ServerCost{MetricsURL: in.url, Orders: in.orders}
	switch {
	case before.err != nil:
		c.Reason = "before the opening: " + before.err.Error()
		return c
	case after.err != nil:
		c.Reason = "after the load: " + after.err.Error()
		return c
	}
	c.FirstReadAt = math.Round(before.at.Sub(in.begin).Seconds()*1000) / 1000
	c.SecondReadAt = math.Round(after.at.Sub(in.begin).Seconds()*1000) / 1000

	deltas := map[string]map[string]int64{}
	for _, family := range []string{metricPublished, metricRoundTrips, metricCommands, metricPurchases, metricCPU} {
		now, ok := after.c[family]
		if !ok {
			c.Missing = append(c.Missing, family)
			continue
		}
		d := map[string]int64{}
		for k, v := range now {
			grew := v - before.c[family][k]
			if grew < 0 {
				c.Reason = fmt.Sprintf("%s{%s} went down between the readings (did the server restart?)", family, k)
				return &ServerCost{MetricsURL: c.MetricsURL, Orders: c.Orders, Reason: c.Reason}
			}
			d[k] = int64(math.Round(grew))
		}
		deltas[family] = d
		if was, ok := before.c[metricCPU][""]; ok && family == metricCPU {
			cpu := round2(now[""] - was) // not from 0: the process's whole life is not the run's
			c.CPUSeconds = &cpu
		}
	}
	c.Available = true
	c.Published, c.RedisRoundTrips, c.RedisCommands, c.Purchases =
		deltas[metricPublished], deltas[metricRoundTrips], deltas[metricCommands], deltas[metricPurchases]

	orders := float64(in.orders)
	if pub := c.Published; pub != nil {
		var total int64
		c.BrokerMessagesPerOrderByKind = map[string]float64{}
		for _, k := range messageKinds {
			total += pub[k]
			if v, ok := ratio(float64(pub[k]), orders); ok {
				c.BrokerMessagesPerOrderByKind[k] = round2(v)
			}
		}
		if len(c.BrokerMessagesPerOrderByKind) == 0 {
			c.BrokerMessagesPerOrderByKind = nil
		}
		c.BrokerMessagesPerOrder = ratioOf(total, in.orders)
		c.PurchasesPerPurchaseMessage = ratioOf(pub[kindPurchaseItem], pub[kindPurchase])
		c.OrdersPerDelayMessage = ratioOf(pub[kindDelayItem], pub[kindDelay])
	}
	if pur := c.Purchases; pur != nil {
		var claimed int64
		for _, o := range claimOutcomes {
			claimed += pur[o]
		}
		if trips := c.RedisRoundTrips; trips != nil {
			c.RedisRoundTripsPerAdmission = ratioOf(trips[stageAdmission], pur["admitted"])
			c.RedisRoundTripsPerClaim = ratioOf(trips[stageAdmission], claimed)
		}
		if cmds := c.RedisCommands; cmds != nil {
			c.RedisCommandsPerAdmission = ratioOf(cmds[stageAdmission], pur["admitted"])
		}
		if pur["admitted"] < in.accepted {
			c.Notes = append(c.Notes, fmt.Sprintf("the process read admitted %d of the %d purchases the bench saw accepted: counters are per process, so another ingress served the rest and these figures cover only this one",
				pur["admitted"], in.accepted))
		}
	}
	if trips := c.RedisRoundTrips; trips != nil {
		c.WorkerRedisRoundTripsPerOrder = ratioOf(trips[stageWorker], in.orders)
		if trips[stageWorker] == 0 && in.orders > 0 {
			c.Notes = append(c.Notes, "no worker Redis traffic in the process read: the workers run elsewhere, and their counters (worker stage, order events, expiry messages) are not read")
		}
	}
	if cmds := c.RedisCommands; cmds != nil {
		c.WorkerRedisCommandsPerOrder = ratioOf(cmds[stageWorker], in.orders)
	}
	if c.CPUSeconds != nil {
		if v, ok := ratio(*c.CPUSeconds*1000, orders); ok {
			v = round2(v)
			c.CPUMsPerOrder = &v
		}
	}
	if in.bundles {
		c.Notes = append(c.Notes, "admissions are the first sale's only: a bundle is counted once per sale, so the second sale's would count it twice")
	}
	return c
}

// ratioOf is a/b to 2 decimals, nil when b is 0.
func ratioOf(a, b int64) *float64 {
	v, ok := ratio(float64(a), float64(b))
	if !ok {
		return nil
	}
	v = round2(v)
	return &v
}

func round2(v float64) float64 { return math.Round(v*100) / 100 }

// costRow is one line of the section: a figure, its value, what it rests on.
type costRow struct{ Name, Value, Detail string }

// serverCostRows renders the section's figures for the text and HTML reports;
// a figure whose counter was not served or whose divisor is 0 reads "n/a".
func serverCostRows(c *ServerCost) []costRow {
	missing := func(family string) bool {
		for _, m := range c.Missing {
			if m == family {
				return true
			}
		}
		return false
	}
	// value renders v, or why there is none: the first missing counter of
	// families, else the empty divisor.
	value := func(v *float64, zero string, families ...string) string {
		for _, f := range families {
			if missing(f) {
				return "n/a (" + f + " not served)"
			}
		}
		if v == nil {
			return "n/a (" + zero + ")"
		}
		return fmt.Sprintf("%.2f", *v)
	}
	var rows []costRow
	detail := ""
	if !missing(metricPublished) {
		var parts []string
		for _, k := range messageKinds {
			parts = append(parts, fmt.Sprintf("%s %.2f", k, c.BrokerMessagesPerOrderByKind[k]))
		}
		detail = strings.Join(parts, ", ") + fmt.Sprintf("; %d messages, %d orders", sumOf(c.Published, messageKinds), c.Orders)
	}
	rows = append(rows,
		costRow{"broker messages / order", value(c.BrokerMessagesPerOrder, "no orders", metricPublished), detail},
		costRow{"purchases / purchase message", value(c.PurchasesPerPurchaseMessage, "no purchase messages", metricPublished), ""},
		costRow{"orders / delay message", value(c.OrdersPerDelayMessage, "no delay messages", metricPublished), ""},
	)
	detail = ""
	if !missing(metricCommands) && !missing(metricPurchases) {
		detail = fmt.Sprintf("commands %s; %d admitted", value(c.RedisCommandsPerAdmission, "none admitted"), c.Purchases["admitted"])
	}
	rows = append(rows, costRow{"redis round trips / admitted purchase", value(c.RedisRoundTripsPerAdmission, "none admitted", metricRoundTrips, metricPurchases), detail})
	detail = ""
	if !missing(metricPurchases) {
		detail = fmt.Sprintf("%d requests reached the claim: %s", sumOf(c.Purchases, claimOutcomes), strings.Join(claimOutcomes, ", "))
	}
	rows = append(rows, costRow{"redis round trips / request at the claim", value(c.RedisRoundTripsPerClaim, "no request reached it", metricRoundTrips, metricPurchases), detail})
	detail = ""
	if !missing(metricCommands) {
		detail = "commands " + value(c.WorkerRedisCommandsPerOrder, "no orders")
	}
	rows = append(rows, costRow{"worker redis round trips / order", value(c.WorkerRedisRoundTripsPerOrder, "no orders", metricRoundTrips), detail})
	detail, why := "", "not in the reading before the opening"
	if c.CPUSeconds != nil {
		detail, why = fmt.Sprintf("%.2f s of CPU between the readings", *c.CPUSeconds), "no orders"
	}
	rows = append(rows, costRow{"server CPU ms / order", value(c.CPUMsPerOrder, why, metricCPU), detail})
	return rows
}

func sumOf(m map[string]int64, keys []string) int64 {
	var n int64
	for _, k := range keys {
		n += m[k]
	}
	return n
}

// serverCostHeading is the section's first line: where and when the counters
// were read, or why they were not.
func serverCostHeading(c *ServerCost, opensAt float64) string {
	switch {
	case c == nil:
		return "server metrics: not read (--metrics-url off)"
	case !c.Available:
		return "server metrics: not available (" + c.Reason + ")"
	}
	return fmt.Sprintf("counters of %s, read %.2fs before the opening and %.2fs after it; per process, every sale it served meanwhile included",
		c.MetricsURL, opensAt-c.FirstReadAt, c.SecondReadAt-opensAt)
}

// writeServerCostText prints the section of the text summary.
func writeServerCostText(w io.Writer, rep *Report) {
	c := rep.ServerCost
	fmt.Fprintln(w, "\nServer cost")
	fmt.Fprintf(w, "  %s\n", serverCostHeading(c, rep.SaleOpensAt))
	if c == nil || !c.Available {
		return
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	for _, row := range serverCostRows(c) {
		if row.Detail != "" {
			fmt.Fprintf(tw, "  %s\t%s\t(%s)\n", row.Name, row.Value, row.Detail)
		} else {
			fmt.Fprintf(tw, "  %s\t%s\n", row.Name, row.Value)
		}
	}
	_ = tw.Flush()
	for _, n := range c.Notes {
		fmt.Fprintf(w, "  note: %s\n", n)
	}
}

// costCompareValue renders one figure for the --compare table.
func costCompareValue(r *Report, v func(*ServerCost) *float64) string {
	if r.ServerCost == nil || !r.ServerCost.Available {
		return "n/a"
	}
	if p := v(r.ServerCost); p != nil {
		return fmt.Sprintf("%.2f", *p)
	}
	return "n/a"
}
