package bench

import (
	"sync"
	"time"

	hdrhistogram "github.com/HdrHistogram/hdrhistogram-go"
)

// Histogram range: 1 µs to 5 minutes, 3 significant digits.
const (
	histLowest  = 1
	histHighest = int64(5 * time.Minute / time.Microsecond)
	histDigits  = 3
	// maxSeconds bounds every per-second series (a run lasts at most maxDuration).
	maxSeconds = int(maxDuration/time.Second) + 1
	// tick is the resolution of request counting; a second is ticksPerSecond ticks.
	tick           = 100 * time.Millisecond
	ticksPerSecond = int(time.Second / tick)
	maxTicks       = maxSeconds * ticksPerSecond
)

func newLatencyHistogram() *hdrhistogram.Histogram {
	return hdrhistogram.New(histLowest, histHighest, histDigits)
}

// recordDuration adds d (in microseconds, clamped to the histogram's range) to h.
func recordDuration(h *hdrhistogram.Histogram, d time.Duration) {
	us := min(max(d.Microseconds(), histLowest), histHighest)
	_ = h.RecordValue(us) // in range by construction
}

// StockSample is one reading of the sale's stock counters.
type StockSample struct {
	// T is the reading's time in seconds since the run started.
	T            float64 `json:"t"`
	State        string  `json:"state"`
	Total        int64   `json:"total"`
	Available    int64   `json:"available"`
	Held         int64   `json:"held"`
	Sold         int64   `json:"sold"`
	Reservations *int64  `json:"reservations,omitempty"`
}

// recorder collects everything measured during one run. It is safe for concurrent use.
type recorder struct {
	t0 time.Time

	mu        sync.Mutex
	endpoints map[endpoint]*endpointRecord
	counters  map[string]int64

	slots         *hdrhistogram.Histogram // bench-side wait for a free slot: purchases, reservations
	followSlots   *hdrhistogram.Histogram // the same for follow-ups: ticket polls, orders, payments
	resolve       *hdrhistogram.Histogram // 202 -> ticket left "queued"
	accepted202   *hdrhistogram.Histogram // the latency of purchases answered 202
	accepted      int64
	firstAccepted time.Time
	ordersCreated int64
	firstOrder    time.Time
	lastOrder     time.Time
	ordersPerSec  []int64
	stock         []StockSample
	stockSecond   []StockSample // the second sale's readings (--bundle-ratio)
}

type endpointRecord struct {
	hist   *hdrhistogram.Histogram
	status map[string]int64
	ticks  []int64 // requests started in each tick since t0
	count  int64
	first  time.Time
	last   time.Time
}

func newRecorder(t0 time.Time) *recorder {
	return &recorder{
		t0:          t0,
		endpoints:   make(map[endpoint]*endpointRecord),
		counters:    make(map[string]int64),
		resolve:     newLatencyHistogram(),
		accepted202: newLatencyHistogram(),
		slots:       newLatencyHistogram(),
		followSlots: newLatencyHistogram(),
	}
}

// second is the per-second bucket of t.
func (r *recorder) second(t time.Time) int {
	s := int(t.Sub(r.t0) / time.Second)
	return min(max(s, 0), maxSeconds-1)
}

// tickOf is the tick bucket of t.
func (r *recorder) tickOf(t time.Time) int {
	i := int(t.Sub(r.t0) / tick)
	return min(max(i, 0), maxTicks-1)
}

// bump increments s[i], growing s as needed.
func bump(s []int64, i int) []int64 {
	if i >= len(s) {
		s = append(s, make([]int64, i+1-len(s))...)
	}
	s[i]++
	return s
}

// request records one HTTP exchange that started at start and took latency.
func (r *recorder) request(ep endpoint, start time.Time, latency time.Duration, statusKey string) {
	if r == nil {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	e := r.endpoints[ep]
	if e == nil {
		e = &endpointRecord{hist: newLatencyHistogram(), status: make(map[string]int64), first: start}
		r.endpoints[ep] = e
	}
	e.count++
	e.status[statusKey]++
	end := start.Add(latency)
	if end.After(e.last) {
		e.last = end
	}
	e.ticks = bump(e.ticks, r.tickOf(start))
	if statusKey != statusNetError {
		recordDuration(e.hist, latency)
	}
	if statusKey == "202" && (ep == epPurchase || ep == epPurchases) {
		recordDuration(r.accepted202, latency)
	}
}

// slotWait records how long a request waited for one of the --conns slots;
// followUp tells a follow-up (poll, order, payment, cancel) from a crowd request.
func (r *recorder) slotWait(d time.Duration, followUp bool) {
	if r == nil {
		return
	}
	r.mu.Lock()
	if followUp {
		recordDuration(r.followSlots, d)
	} else {
		recordDuration(r.slots, d)
	}
	r.mu.Unlock()
}

// count adds n to a named counter (retries and the like).
func (r *recorder) count(name string, n int64) {
	r.mu.Lock()
	r.counters[name] += n
	r.mu.Unlock()
}

// acceptedAt records a 202 at t.
func (r *recorder) acceptedAt(t time.Time) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.accepted++
	if r.firstAccepted.IsZero() || t.Before(r.firstAccepted) {
		r.firstAccepted = t
	}
}

// resolved records that a ticket accepted at acceptedAt was seen out of "queued" at
// at, and whether that meant an order was created.
func (r *recorder) resolved(acceptedAt, at time.Time, orderCreated bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	recordDuration(r.resolve, at.Sub(acceptedAt))
	if !orderCreated {
		return
	}
	r.ordersCreated++
	if r.firstOrder.IsZero() || at.Before(r.firstOrder) {
		r.firstOrder = at
	}
	if at.After(r.lastOrder) {
		r.lastOrder = at
	}
	r.ordersPerSec = bump(r.ordersPerSec, r.second(at))
}

// addStock appends a stock reading.
func (r *recorder) addStock(s StockSample) {
	r.mu.Lock()
	r.stock = append(r.stock, s)
	r.mu.Unlock()
}

// addStockSecond appends a reading of the second sale.
func (r *recorder) addStockSecond(s StockSample) {
	r.mu.Lock()
	r.stockSecond = append(r.stockSecond, s)
	r.mu.Unlock()
}

// stockSecondSnapshot returns a copy of the second sale's readings so far.
func (r *recorder) stockSecondSnapshot() []StockSample {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]StockSample(nil), r.stockSecond...)
}

// since is t as seconds since the run started.
func (r *recorder) since(t time.Time) float64 { return t.Sub(r.t0).Seconds() }

// stockSnapshot returns a copy of the stock readings so far.
func (r *recorder) stockSnapshot() []StockSample {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]StockSample(nil), r.stock...)
}

// perSecond sums ticks into whole seconds since t0.
func perSecond(ticks []int64) []int64 {
	out := make([]int64, (len(ticks)+ticksPerSecond-1)/ticksPerSecond)
	for i, v := range ticks {
		out[i/ticksPerSecond] += v
	}
	return out
}

// peakPerSecond is the largest count in any one-second window (sliding by one tick).
func peakPerSecond(ticks []int64) int64 {
	var sum, best int64
	for i, v := range ticks {
		sum += v
		if i >= ticksPerSecond {
			sum -= ticks[i-ticksPerSecond]
		}
		best = max(best, sum)
	}
	return best
}
