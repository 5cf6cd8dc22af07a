package ops

import (
	"math"
	"sort"
	"strings"

	dto "github.com/prometheus/client_model/go"

	"github.com/flashsale/flashsale"
)

// Sample is what the live page shows at one instant. Rates are per second over
// the interval since the previous sample; the 202→final percentiles are over
// the last FinalWindow. Every figure comes from the process's own registry, so
// the page and /metrics never disagree.
type Sample struct {
	T     int64        `json:"t"` // unix milliseconds
	Sales []SaleSample `json:"sales"`
	// Admissions are purchase answers per second by outcome, all sales.
	Admissions map[string]float64    `json:"admissions"`
	Queues     []flashsale.QueueStat `json:"queues"`
	// FinalP50 and FinalP99 are seconds from 202 to a ticket's final answer
	// (see flashsale_ticket_final_seconds); nil when no ticket became final
	// within the window.
	FinalP50 *float64 `json:"final_p50"`
	FinalP99 *float64 `json:"final_p99"`
	// OrdersPerSec are orders created per second (worker outcome
	// pending_payment).
	OrdersPerSec float64 `json:"orders_per_s"`
	// ErrorsPerSec are HTTP 5xx answers (but /readyz's), dead-lettered
	// purchases, failed tickets and failed metric reads per second.
	ErrorsPerSec float64 `json:"errors_per_s"`
	// Problems are the standing counts an operator must never ignore.
	Problems Problems `json:"problems"`
	Ready    bool     `json:"ready"`
}

// SaleSample is one sale at one instant.
type SaleSample struct {
	ID        string `json:"id"`
	State     string `json:"state"`
	Available int    `json:"available"`
	Held      int    `json:"held"`
	Sold      int    `json:"sold"`
	// AdmittedPerSec are 202s per second for this sale.
	AdmittedPerSec float64 `json:"admitted_per_s"`
	// Purchases are the counts since the process started, by outcome.
	Purchases map[string]float64 `json:"purchases"`
	// WaitingRoom is the sale's waiting room; absent for a sale without one.
	WaitingRoom *WaitingRoomSample `json:"waiting_room,omitempty"`
}

// WaitingRoomSample is a sale's waiting room at one instant, as its line
// records it (the same figures on every process).
type WaitingRoomSample struct {
	// Entries are the tickets waiting in the line now.
	Entries int `json:"entries"`
	// Admitted are the tickets released from the line into the pipeline.
	Admitted int `json:"admitted"`
	// Waitlist is the room's W.
	Waitlist int `json:"waitlist"`
	// AdmittedPerSec is the line's pace: releases per second over the
	// interval since the previous sample.
	AdmittedPerSec float64 `json:"admitted_per_s"`
}

// Problems are totals (not rates).
type Problems struct {
	HTTP5xx              float64 `json:"http_5xx"`
	DeadLetters          float64 `json:"dead_letters"`
	StockCapRefusals     float64 `json:"stock_cap_refusals"`
	ReconcileDifferences float64 `json:"reconcile_differences"`
	OversoldUnits        float64 `json:"oversold_units"`
	OutboxBacklog        float64 `json:"outbox_backlog"`
	ExpiryOverdueSeconds float64 `json:"expiry_overdue_seconds"`
}

// raw is one gather, reduced to what the page needs.
type raw struct {
	t        int64
	counters map[string]float64 // "name|label=value,..." -> value
	gauges   map[string]float64
	final    []bucket // cumulative buckets of flashsale_ticket_final_seconds
}

type bucket struct {
	le    float64
	count float64
}

func seriesKey(name string, m *dto.Metric) string {
	var b strings.Builder
	b.WriteString(name)
	b.WriteByte('|')
	for i, l := range m.GetLabel() {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(l.GetName())
		b.WriteByte('=')
		b.WriteString(l.GetValue())
	}
	return b.String()
}

func label(m *dto.Metric, name string) string {
	for _, l := range m.GetLabel() {
		if l.GetName() == name {
			return l.GetValue()
		}
	}
	return ""
}

// reduce keeps the families the page reads.
func reduce(t int64, mfs []*dto.MetricFamily) *raw {
	r := &raw{t: t, counters: map[string]float64{}, gauges: map[string]float64{}}
	for _, mf := range mfs {
		name := mf.GetName()
		if !strings.HasPrefix(name, "flashsale_") {
			continue
		}
		for _, m := range mf.GetMetric() {
			switch {
			case m.Counter != nil:
				r.counters[seriesKey(name, m)] = m.GetCounter().GetValue()
			case m.Gauge != nil:
				r.gauges[seriesKey(name, m)] = m.GetGauge().GetValue()
			case m.Histogram != nil && name == "flashsale_ticket_final_seconds":
				for _, b := range m.GetHistogram().GetBucket() {
					r.final = append(r.final, bucket{b.GetUpperBound(), float64(b.GetCumulativeCount())})
				}
				r.final = append(r.final, bucket{math.Inf(1), float64(m.GetHistogram().GetSampleCount())})
			}
		}
	}
	return r
}

// parseKey splits a series key into its name and labels.
func parseKey(k string) (string, map[string]string) {
	name, rest, _ := strings.Cut(k, "|")
	labels := map[string]string{}
	if rest != "" {
		for _, kv := range strings.Split(rest, ",") {
			k, v, _ := strings.Cut(kv, "=")
			labels[k] = v
		}
	}
	return name, labels
}

// rate is the per-second increase of counter key between prev and cur (0 on a
// reset or when prev is nil).
func rate(prev, cur *raw, key string) float64 {
	if prev == nil || cur.t <= prev.t {
		return 0
	}
	d := cur.counters[key] - prev.counters[key]
	if d < 0 {
		return 0
	}
	return d / (float64(cur.t-prev.t) / 1000)
}

// quantile is histogram_quantile over the increase of the buckets between old
// and cur (linear within a bucket, as Prometheus does); nil without
// observations.
func quantile(q float64, old, cur []bucket) *float64 {
	if len(cur) == 0 {
		return nil
	}
	inc := make([]bucket, len(cur))
	for i, b := range cur {
		inc[i] = b
		if i < len(old) && old[i].le == b.le {
			inc[i].count = max(b.count-old[i].count, 0)
		}
	}
	total := inc[len(inc)-1].count
	if total == 0 {
		return nil
	}
	rank := q * total
	i := sort.Search(len(inc), func(i int) bool { return inc[i].count >= rank })
	if i == len(inc)-1 || math.IsInf(inc[i].le, 1) {
		v := inc[len(inc)-2].le // above the highest bound: the highest bound
		return &v
	}
	lo, below := 0.0, 0.0
	if i > 0 {
		lo, below = inc[i-1].le, inc[i-1].count
	}
	v := lo
	if n := inc[i].count - below; n > 0 {
		v = lo + (inc[i].le-lo)*(rank-below)/n
	}
	return &v
}

// sample computes a Sample from the current gather, the previous one (rates)
// and the one FinalWindow ago (percentiles).
func sample(cur, prev, old *raw) Sample {
	// Sales and Queues are [] when there are none, never null (the API
	// description's array).
	s := Sample{T: cur.t, Sales: []SaleSample{}, Queues: []flashsale.QueueStat{}, Admissions: map[string]float64{}, Ready: true}
	sales := map[string]*SaleSample{}
	sale := func(id string) *SaleSample {
		if ss, ok := sales[id]; ok {
			return ss
		}
		ss := &SaleSample{ID: id, Purchases: map[string]float64{}}
		sales[id] = ss
		return ss
	}
	room := func(id string) *WaitingRoomSample {
		ss := sale(id)
		if ss.WaitingRoom == nil {
			ss.WaitingRoom = &WaitingRoomSample{}
		}
		return ss.WaitingRoom
	}
	for k, v := range cur.gauges {
		name, l := parseKey(k)
		switch name {
		case "flashsale_sale_units":
			ss := sale(l["sale"])
			switch l["state"] {
			case "available":
				ss.Available = int(v)
			case "held":
				ss.Held = int(v)
			case "sold":
				ss.Sold = int(v)
			}
		case "flashsale_sale_state":
			if v == 1 {
				sale(l["sale"]).State = l["state"]
			}
		case "flashsale_waiting_room_entries":
			room(l["sale"]).Entries = int(v)
		case "flashsale_waiting_room_waitlist":
			room(l["sale"]).Waitlist = int(v)
		case "flashsale_queue_messages":
			s.Queues = append(s.Queues, flashsale.QueueStat{Name: l["queue"], Messages: int(v),
				Consumers: int(cur.gauges[seriesKey2("flashsale_queue_consumers", "queue", l["queue"])])})
		case "flashsale_outbox_backlog":
			s.Problems.OutboxBacklog += v
		case "flashsale_expiry_overdue_seconds":
			s.Problems.ExpiryOverdueSeconds = max(s.Problems.ExpiryOverdueSeconds, v)
		case "flashsale_reconcile_differences":
			s.Problems.ReconcileDifferences = v
		case "flashsale_oversold_units":
			s.Problems.OversoldUnits += v
		case "flashsale_ready":
			s.Ready = s.Ready && v == 1
		}
	}
	for k, v := range cur.counters {
		name, l := parseKey(k)
		switch name {
		case "flashsale_purchases_total":
			r := rate(prev, cur, k)
			s.Admissions[l["outcome"]] += r
			if _, listed := sales[l["sale"]]; !listed {
				continue // not (or no longer) listed by the collector: no row
			}
			ss := sale(l["sale"])
			ss.Purchases[l["outcome"]] = v
			if l["outcome"] == "admitted" {
				ss.AdmittedPerSec = r
			}
		case "flashsale_worker_messages_total":
			switch l["outcome"] {
			case "pending_payment":
				s.OrdersPerSec += rate(prev, cur, k)
			case "dead_letter", "failed":
				s.ErrorsPerSec += rate(prev, cur, k)
				if l["outcome"] == "dead_letter" {
					s.Problems.DeadLetters += v
				}
			}
		case "flashsale_http_requests_total":
			// /readyz answers 503 by design while a dependency is away: the
			// readiness figure says so, it is not an error of a request.
			if strings.HasPrefix(l["status"], "5") && l["route"] != "/readyz" {
				s.ErrorsPerSec += rate(prev, cur, k)
				s.Problems.HTTP5xx += v
			}
		case "flashsale_ops_collect_errors_total":
			s.ErrorsPerSec += rate(prev, cur, k)
		case "flashsale_stock_cap_refusals_total":
			s.Problems.StockCapRefusals += v
		case "flashsale_waiting_room_admitted_total":
			wr := room(l["sale"])
			wr.Admitted, wr.AdmittedPerSec = int(v), rate(prev, cur, k)
		}
	}
	for _, ss := range sales {
		if ss.State == "" {
			ss.State = "unknown"
		}
		s.Sales = append(s.Sales, *ss)
	}
	sort.Slice(s.Sales, func(i, j int) bool { return s.Sales[i].ID < s.Sales[j].ID })
	sort.Slice(s.Queues, func(i, j int) bool { return s.Queues[i].Name < s.Queues[j].Name })
	var oldFinal []bucket
	if old != nil {
		oldFinal = old.final
	}
	s.FinalP50, s.FinalP99 = quantile(.5, oldFinal, cur.final), quantile(.99, oldFinal, cur.final)
	return s
}

func seriesKey2(name, l, v string) string { return name + "|" + l + "=" + v }
