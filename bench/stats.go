package bench

import (
	"fmt"
	"math"
	"time"

	hdrhistogram "github.com/HdrHistogram/hdrhistogram-go"
)

// LatencySummary summarises a latency distribution, in milliseconds.
type LatencySummary struct {
	Count  int64   `json:"count"`
	MinMs  float64 `json:"min_ms"`
	MeanMs float64 `json:"mean_ms"`
	P50Ms  float64 `json:"p50_ms"`
	P90Ms  float64 `json:"p90_ms"`
	P99Ms  float64 `json:"p99_ms"`
	P999Ms float64 `json:"p999_ms"`
	MaxMs  float64 `json:"max_ms"`
}

// PercentilePoint is one point of a latency percentile curve.
type PercentilePoint struct {
	Percentile float64 `json:"percentile"`
	Ms         float64 `json:"ms"`
}

// curvePercentiles are the points of the latency distribution charts.
var curvePercentiles = []float64{0, 10, 25, 50, 75, 90, 95, 99, 99.9, 100}

// usToMs converts a histogram value (µs) to milliseconds.
func usToMs(v int64) float64 { return float64(v) / 1000 }

// summarizeHistogram summarises a histogram of microsecond values.
func summarizeHistogram(h *hdrhistogram.Histogram) LatencySummary {
	n := h.TotalCount()
	if n == 0 {
		return LatencySummary{}
	}
	return LatencySummary{
		Count:  n,
		MinMs:  usToMs(h.Min()),
		MeanMs: h.Mean() / 1000,
		P50Ms:  usToMs(h.ValueAtPercentile(50)),
		P90Ms:  usToMs(h.ValueAtPercentile(90)),
		P99Ms:  usToMs(h.ValueAtPercentile(99)),
		P999Ms: usToMs(h.ValueAtPercentile(99.9)),
		MaxMs:  usToMs(h.Max()),
	}
}

// percentileCurve samples h at curvePercentiles (0 is the minimum, 100 the maximum).
func percentileCurve(h *hdrhistogram.Histogram) []PercentilePoint {
	if h.TotalCount() == 0 {
		return nil
	}
	out := make([]PercentilePoint, 0, len(curvePercentiles))
	for _, p := range curvePercentiles {
		var v int64
		switch p {
		case 0:
			v = h.Min()
		case 100:
			v = h.Max()
		default:
			v = h.ValueAtPercentile(p)
		}
		out = append(out, PercentilePoint{Percentile: p, Ms: usToMs(v)})
	}
	return out
}

// ratePerSecond is count over span, with span taken as at least one second so that a
// handful of requests in a few milliseconds does not read as a huge rate.
func ratePerSecond(count int64, span time.Duration) float64 {
	if count <= 0 {
		return 0
	}
	return float64(count) / max(span, time.Second).Seconds()
}

// windowRate is count over span without the one-second floor (a span under a
// millisecond counts as one millisecond). It is used for "orders created per second"
// between the first 202 and the last order.
func windowRate(count int64, span time.Duration) float64 {
	if count <= 0 {
		return 0
	}
	return float64(count) / max(span, time.Millisecond).Seconds()
}

// takeShare decides, for the k-th item (1-based) of a stream, whether it belongs to
// the share ratio of the stream, so that after n items exactly floor(n*ratio) (up to
// rounding of ratio itself) were taken, whatever order items arrive in.
func takeShare(k int64, ratio float64) bool {
	if k < 1 || ratio <= 0 {
		return false
	}
	if ratio >= 1 {
		return true
	}
	const eps = 1e-9
	return math.Floor(float64(k)*ratio+eps) > math.Floor(float64(k-1)*ratio+eps)
}

// ratio is a/b, or 0 with ok=false when b is 0.
func ratio(a, b float64) (float64, bool) {
	if b == 0 || math.IsNaN(a) || math.IsNaN(b) {
		return 0, false
	}
	return a / b, true
}

// fmtMs formats milliseconds for humans: µs below 1 ms, ms below 1 s, else s.
func fmtMs(ms float64) string {
	switch {
	case ms <= 0:
		return "0"
	case ms < 1:
		return fmt.Sprintf("%.0fµs", ms*1000)
	case ms < 10:
		return fmt.Sprintf("%.2fms", ms)
	case ms < 1000:
		return fmt.Sprintf("%.1fms", ms)
	case ms < 60_000:
		return fmt.Sprintf("%.2fs", ms/1000)
	default:
		return fmt.Sprintf("%.1fm", ms/60_000)
	}
}

// fmtRate formats a per-second rate.
func fmtRate(v float64) string {
	switch {
	case v == 0:
		return "0"
	case v < 10:
		return fmt.Sprintf("%.2f", v)
	case v < 1000:
		return fmt.Sprintf("%.1f", v)
	default:
		return fmt.Sprintf("%.0f", v)
	}
}
