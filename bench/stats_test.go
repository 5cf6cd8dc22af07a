package bench

import (
	"math"
	"testing"
	"time"
)

func near(got, want, relTol float64) bool {
	return math.Abs(got-want) <= math.Abs(want)*relTol
}

func TestSummarizeHistogram(t *testing.T) {
	h := newLatencyHistogram()
	// 1 ms .. 1000 ms, one value each.
	for i := 1; i <= 1000; i++ {
		recordDuration(h, time.Duration(i)*time.Millisecond)
	}
	s := summarizeHistogram(h)
	if s.Count != 1000 {
		t.Fatalf("count = %d", s.Count)
	}
	for _, c := range []struct {
		name      string
		got, want float64
	}{
		{"min", s.MinMs, 1}, {"p50", s.P50Ms, 500}, {"p90", s.P90Ms, 900}, {"p99", s.P99Ms, 990},
		{"p99.9", s.P999Ms, 999}, {"max", s.MaxMs, 1000}, {"mean", s.MeanMs, 500.5},
	} {
		if !near(c.got, c.want, 0.002) { // 3 significant digits
			t.Errorf("%s = %v, want ≈ %v", c.name, c.got, c.want)
		}
	}
	if (summarizeHistogram(newLatencyHistogram()) != LatencySummary{}) {
		t.Error("empty histogram should summarise to zero")
	}
}

func TestRecordDurationClamps(t *testing.T) {
	h := newLatencyHistogram()
	recordDuration(h, 0)
	recordDuration(h, time.Hour)
	if h.TotalCount() != 2 {
		t.Fatalf("count = %d, want 2 (out-of-range values are clamped, not dropped)", h.TotalCount())
	}
	if got := usToMs(h.Max()); !near(got, float64(histHighest)/1000, 0.002) {
		t.Errorf("max = %v ms", got)
	}
}

func TestPercentileCurveIsMonotonic(t *testing.T) {
	h := newLatencyHistogram()
	for i := range 5000 {
		recordDuration(h, time.Duration(i*i)*time.Microsecond)
	}
	c := percentileCurve(h)
	if len(c) != len(curvePercentiles) {
		t.Fatalf("len = %d", len(c))
	}
	for i := 1; i < len(c); i++ {
		if c[i].Ms < c[i-1].Ms {
			t.Errorf("curve decreases at %v: %v < %v", c[i].Percentile, c[i].Ms, c[i-1].Ms)
		}
	}
	if percentileCurve(newLatencyHistogram()) != nil {
		t.Error("empty histogram should give no curve")
	}
}

func TestRates(t *testing.T) {
	for _, tc := range []struct {
		name string
		got  float64
		want float64
	}{
		{"rate over 2s", ratePerSecond(100, 2*time.Second), 50},
		{"rate floors span at 1s", ratePerSecond(10, 100*time.Millisecond), 10},
		{"rate of nothing", ratePerSecond(0, time.Second), 0},
		{"window rate", windowRate(100, 2*time.Second), 50},
		{"window rate short", windowRate(10, 100*time.Millisecond), 100},
		{"window rate zero span", windowRate(5, 0), 5000},
	} {
		if !near(tc.got, tc.want, 1e-9) {
			t.Errorf("%s = %v, want %v", tc.name, tc.got, tc.want)
		}
	}
	// 100 ms ticks: 5 requests in each of ticks 5..14 straddle two aligned seconds
	// (25 + 25) but fill one sliding second (50).
	ticks := make([]int64, 20)
	for i := 5; i < 15; i++ {
		ticks[i] = 5
	}
	if got := perSecond(ticks); len(got) != 2 || got[0] != 25 || got[1] != 25 {
		t.Errorf("perSecond = %v, want [25 25]", got)
	}
	if got := peakPerSecond(ticks); got != 50 {
		t.Errorf("peakPerSecond = %d, want 50", got)
	}
	if peakPerSecond(nil) != 0 || len(perSecond(nil)) != 0 {
		t.Error("empty series")
	}
	if r, ok := ratio(10, 4); !ok || r != 2.5 {
		t.Errorf("ratio = %v %v", r, ok)
	}
	if _, ok := ratio(1, 0); ok {
		t.Error("ratio by zero should not be ok")
	}
}

func TestTakeShareIsExact(t *testing.T) {
	for _, r := range []float64{0, 0.1, 0.3, 1.0 / 3, 0.5, 0.7, 0.999, 1} {
		for _, n := range []int64{1, 7, 10, 100, 1001} {
			var taken int64
			for k := int64(1); k <= n; k++ {
				if takeShare(k, r) {
					taken++
				}
			}
			if want := int64(math.Floor(float64(n)*r + 1e-9)); taken != want {
				t.Errorf("ratio %v over %d: took %d, want %d", r, n, taken, want)
			}
		}
	}
}

func TestRecorderBucketsBySecond(t *testing.T) {
	t0 := time.Now()
	r := newRecorder(t0)
	r.request(epPurchase, t0.Add(100*time.Millisecond), 5*time.Millisecond, "202")
	r.request(epPurchase, t0.Add(1500*time.Millisecond), 7*time.Millisecond, "409 sold_out")
	r.request(epPurchase, t0.Add(1600*time.Millisecond), 0, statusNetError)
	r.acceptedAt(t0.Add(105 * time.Millisecond))
	r.resolved(t0.Add(105*time.Millisecond), t0.Add(2200*time.Millisecond), true)
	e := r.endpoints[epPurchase]
	if got := perSecond(e.ticks); len(got) != 2 || got[0] != 1 || got[1] != 2 {
		t.Errorf("per second = %v, want [1 2]", got)
	}
	if e.status["202"] != 1 || e.status["409 sold_out"] != 1 || e.status[statusNetError] != 1 {
		t.Errorf("status = %v", e.status)
	}
	if e.hist.TotalCount() != 2 {
		t.Errorf("latencies recorded = %d, want 2 (network errors have none)", e.hist.TotalCount())
	}
	if len(r.ordersPerSec) != 3 || r.ordersPerSec[2] != 1 || r.ordersCreated != 1 {
		t.Errorf("orders per second = %v", r.ordersPerSec)
	}
	if got := usToMs(r.resolve.Max()); !near(got, 2095, 0.002) {
		t.Errorf("resolve = %v ms", got)
	}
}

func TestBackoffGrowsToCap(t *testing.T) {
	prev := time.Duration(0)
	for i := 1; i <= 20; i++ {
		d := backoff(i)
		if d < prev || d > backoffCap {
			t.Fatalf("backoff(%d) = %v after %v", i, d, prev)
		}
		prev = d
	}
	if backoff(1) != backoffStart || backoff(20) != backoffCap {
		t.Errorf("backoff(1) = %v, backoff(20) = %v", backoff(1), backoff(20))
	}
}

func TestServerOrderTiming(t *testing.T) {
	open := time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC)
	created := []time.Time{ // any order, any zone
		open.Add(600 * time.Millisecond),
		open.Add(1100 * time.Millisecond).In(time.FixedZone("x", 3600)),
		open.Add(100 * time.Millisecond),
	}
	s := serverOrderTiming(created, 2, open)
	if s.Orders != 3 || s.Unread != 2 {
		t.Errorf("orders %d unread %d", s.Orders, s.Unread)
	}
	if s.FirstCreatedAt == nil || !s.FirstCreatedAt.Equal(open.Add(100*time.Millisecond)) || s.FirstCreatedAt.Location() != time.UTC ||
		s.LastCreatedAt == nil || !s.LastCreatedAt.Equal(open.Add(1100*time.Millisecond)) {
		t.Errorf("first %v last %v", s.FirstCreatedAt, s.LastCreatedAt)
	}
	if s.FirstToLastMs != 1000 || !near(s.OrdersPerSecond, 3, 1e-12) || s.OpenToFirstOrderMs != 100 || s.OpenToLastOrderMs != 1100 {
		t.Errorf("timing %+v", s)
	}
	if txt := serverRateText(s); txt != "3.00  (3 orders), 2 orders' created_at unreadable" {
		t.Errorf("text %q", txt)
	}

	one := serverOrderTiming(created[:1], 0, open)
	if one.OrdersPerSecond != 0 || one.FirstToLastMs != 0 || one.OpenToLastOrderMs != 600 {
		t.Errorf("one order: %+v", one)
	}
	if txt := serverRateText(one); txt != "n/a (1 orders with a created_at)" {
		t.Errorf("one order text %q", txt)
	}
	if none := serverOrderTiming(nil, 0, open); none.FirstCreatedAt != nil || none.OrdersPerSecond != 0 {
		t.Errorf("no orders: %+v", none)
	}
}

func TestCumulativeCurve(t *testing.T) {
	if cumulativeCurve(nil, 10) != nil {
		t.Error("no events should give no curve")
	}
	got := cumulativeCurve([]float64{0.3, 0.1, 0.2}, 10)
	want := []CurvePoint{{0, 0}, {0.1, 0}, {0.1, 1}, {0.2, 2}, {0.3, 3}}
	if len(got) != len(want) {
		t.Fatalf("curve %v, want %v", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("curve %v, want %v", got, want)
		}
	}
	// Thinned: at most maxPoints points past the anchors, increasing, ending at the total.
	ts := make([]float64, 10_000)
	for i := range ts {
		ts[i] = float64(len(ts)-i) / 1000
	}
	c := cumulativeCurve(ts, 100)
	if len(c) > 102 || c[len(c)-1] != (CurvePoint{T: 10, N: 10_000}) {
		t.Fatalf("thinned curve has %d points, last %v", len(c), c[len(c)-1])
	}
	for i := 1; i < len(c); i++ {
		if c[i].T < c[i-1].T || c[i].N < c[i-1].N {
			t.Fatalf("curve decreases at %d: %v then %v", i, c[i-1], c[i])
		}
	}
}
