package ops

import (
	"context"
	"encoding/json"
	"errors"
	"math"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/flashsale/flashsale"
	"github.com/flashsale/flashsale/httpapi"
)

func TestQuantileInterpolatesLikePrometheus(t *testing.T) {
	inf := math.Inf(1)
	cur := []bucket{{0.1, 10}, {1, 90}, {10, 100}, {inf, 100}}
	old := []bucket{{0.1, 0}, {1, 0}, {10, 0}, {inf, 0}}
	// histogram_quantile(0.5): rank 50 in (0.1, 1]: 0.1 + 0.9*(50-10)/80 = 0.55.
	if got := quantile(.5, old, cur); got == nil || math.Abs(*got-0.55) > 1e-9 {
		t.Errorf("p50 = %v, want 0.55", got)
	}
	// rank 99 in (1, 10]: 1 + 9*(99-90)/10 = 9.1.
	if got := quantile(.99, old, cur); got == nil || math.Abs(*got-9.1) > 1e-9 {
		t.Errorf("p99 = %v, want 9.1", got)
	}
	// Only what happened since old counts.
	if got := quantile(.5, cur, cur); got != nil {
		t.Errorf("no observation in the window: %v, want nil", *got)
	}
	// Above the highest finite bound: that bound.
	if got := quantile(.99, nil, []bucket{{1, 0}, {inf, 5}}); got == nil || *got != 1 {
		t.Errorf("all above the highest bound: %v, want 1", got)
	}
}

// gatherer returns a function that gathers reg, reduced as taken at ms.
func gatherer(t *testing.T, reg *prometheus.Registry) func(ms int64) *raw {
	return func(ms int64) *raw {
		t.Helper()
		mfs, err := reg.Gather()
		if err != nil {
			t.Fatal(err)
		}
		return reduce(ms, mfs)
	}
}

// TestSampleFromRegistry feeds the sampler real metric families from a
// registry and checks the figures and rates it derives.
func TestSampleFromRegistry(t *testing.T) {
	reg := prometheus.NewRegistry()
	units := prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "flashsale_sale_units"}, []string{"sale", "state"})
	state := prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "flashsale_sale_state"}, []string{"sale", "state"})
	purchases := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "flashsale_purchases_total"}, []string{"sale", "outcome"})
	worker := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "flashsale_worker_messages_total"}, []string{"outcome"})
	httpReq := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "flashsale_http_requests_total"}, []string{"route", "status"})
	reg.MustRegister(units, state, purchases, worker, httpReq)
	units.WithLabelValues("phone", "available").Set(7)
	units.WithLabelValues("phone", "held").Set(2)
	units.WithLabelValues("phone", "sold").Set(1)
	state.WithLabelValues("phone", "open").Set(1)
	purchases.WithLabelValues("phone", "admitted").Add(3)
	purchases.WithLabelValues("gone", "admitted").Add(1) // a sale the collector no longer lists
	gather := gatherer(t, reg)
	first := gather(1000)
	purchases.WithLabelValues("phone", "admitted").Add(4)
	purchases.WithLabelValues("phone", "sold_out").Add(2)
	worker.WithLabelValues("pending_payment").Add(4)
	httpReq.WithLabelValues("/readyz", "503").Add(5)
	httpReq.WithLabelValues("/api/v1/sales/:id/purchase", "503").Add(1)
	s := sample(gather(3000), first, first)
	if len(s.Sales) != 1 {
		t.Fatalf("sales %+v, want phone only", s.Sales)
	}
	p := s.Sales[0]
	if p.ID != "phone" || p.State != "open" || p.Available != 7 || p.Held != 2 || p.Sold != 1 || p.AdmittedPerSec != 2 || p.Purchases["admitted"] != 7 {
		t.Errorf("phone: %+v", p)
	}
	if s.Admissions["admitted"] != 2 || s.Admissions["sold_out"] != 1 {
		t.Errorf("admissions/s %v, want admitted 2, sold_out 1", s.Admissions)
	}
	if s.OrdersPerSec != 2 || s.ErrorsPerSec != 0.5 || s.Problems.HTTP5xx != 1 {
		t.Errorf("orders/s %v, errors/s %v, 5xx %v; want 2, 0.5 (not /readyz), 1", s.OrdersPerSec, s.ErrorsPerSec, s.Problems.HTTP5xx)
	}
}

type stubSales []*flashsale.Sale

func (s stubSales) ListSales(context.Context, time.Time) ([]*flashsale.Sale, error) { return s, nil }

type stubStock map[string]flashsale.StockLevel

func (s stubStock) Stock(_ context.Context, id string) (flashsale.StockLevel, error) {
	st, ok := s[id]
	if !ok {
		return st, errors.New("redis: connection refused")
	}
	return st, nil
}

// TestCollectorLeavesOutWhatFails: a source that fails is counted and left
// out; the scrape still answers with the rest. Ended sales drop out after
// Retain.
func TestCollectorLeavesOutWhatFails(t *testing.T) {
	now := time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)
	sales := stubSales{
		{ID: "open", StartsAt: now.Add(-time.Hour), EndsAt: now.Add(time.Hour)},
		{ID: "broken", StartsAt: now.Add(-time.Hour), EndsAt: now.Add(time.Hour)},
		{ID: "old", StartsAt: now.Add(-5 * time.Hour), EndsAt: now.Add(-2 * time.Hour)},
	}
	stock := stubStock{"open": {Total: 10, Available: 0, Held: 4, Sold: 6}, "old": {Total: 1, Sold: 1}}
	c, err := NewCollector(CollectorConfig{Sales: sales, Stock: stock, Now: func() time.Time { return now },
		Ready:  []Check{func(context.Context) error { return errors.New("rabbitmq not connected") }},
		Queues: func(context.Context) ([]flashsale.QueueStat, error) { return nil, errors.New("broker away") }})
	if err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(c)
	want := `
# HELP flashsale_ready 1 when every readiness check of the process passes (the /readyz answer), else 0.
# TYPE flashsale_ready gauge
flashsale_ready{role="all"} 0
# HELP flashsale_sale_state 1 for a sale's current state (scheduled, reservation_open, upcoming, open, sold_out, ended).
# TYPE flashsale_sale_state gauge
flashsale_sale_state{sale="open",state="sold_out"} 1
# HELP flashsale_sale_units A sale's units by state (available, held: in unpaid orders or being ordered, sold), as the sale view reads them.
# TYPE flashsale_sale_units gauge
flashsale_sale_units{sale="open",state="available"} 0
flashsale_sale_units{sale="open",state="held"} 4
flashsale_sale_units{sale="open",state="sold"} 6
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want), "flashsale_ready", "flashsale_sale_state", "flashsale_sale_units"); err != nil {
		t.Error(err)
	}
	if n := testutil.ToFloat64(c.errors.WithLabelValues("stock")); n != 1 {
		t.Errorf("stock errors %v, want 1 (the broken sale)", n)
	}
	if n := testutil.ToFloat64(c.errors.WithLabelValues("queues")); n != 1 {
		t.Errorf("queue errors %v, want 1", n)
	}
}

// serveForm serves method path on h, with form as its body when not nil,
// after prepare (headers, context) when not nil.
func serveForm(h http.Handler, method, path string, form url.Values, prepare func(*http.Request) *http.Request) *httptest.ResponseRecorder {
	var req *http.Request
	if form != nil {
		req = httptest.NewRequest(method, path, strings.NewReader(form.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	} else {
		req = httptest.NewRequest(method, path, nil)
	}
	if prepare != nil {
		req = prepare(req)
	}
	w := httptest.NewRecorder()
	h.ServeHTTP(w, req)
	return w
}

func TestLiveLogin(t *testing.T) {
	reg := prometheus.NewRegistry()
	l, err := NewLive(LiveConfig{Gatherer: reg, AdminToken: "s3cret"})
	if err != nil {
		t.Fatal(err)
	}
	l.tick()
	gin.SetMode(gin.ReleaseMode)
	e := gin.New()
	l.Register(e)
	do := func(method, path string, body url.Values, hdr map[string]string) *httptest.ResponseRecorder {
		return serveForm(e, method, path, body, func(req *http.Request) *http.Request {
			for k, v := range hdr {
				req.Header.Set(k, v)
			}
			return req
		})
	}
	if w := do("GET", "/ops/live", nil, nil); w.Code != 401 || !strings.Contains(w.Body.String(), `<form method="post" action="/ops/login">`) {
		t.Errorf("logged out: %d %s", w.Code, w.Body)
	}
	if w := do("POST", "/ops/login", url.Values{"token": {"nope"}}, nil); w.Code != 401 || w.Header().Get("Set-Cookie") != "" {
		t.Errorf("wrong token: %d, cookie %q", w.Code, w.Header().Get("Set-Cookie"))
	}
	w := do("POST", "/ops/login", url.Values{"token": {"s3cret"}}, nil)
	cookie := w.Header().Get("Set-Cookie")
	if w.Code != http.StatusSeeOther || !strings.Contains(cookie, "HttpOnly") || !strings.Contains(cookie, "SameSite=Strict") || strings.Contains(cookie, "s3cret") {
		t.Fatalf("login: %d, cookie %q", w.Code, cookie)
	}
	ck := strings.Split(cookie, ";")[0]
	if w := do("GET", "/ops/live", nil, map[string]string{"Cookie": ck}); w.Code != 200 || !strings.Contains(w.Header().Get("Content-Security-Policy"), "connect-src 'self'") || !strings.Contains(w.Body.String(), "live.js") {
		t.Errorf("logged in: %d, CSP %q", w.Code, w.Header().Get("Content-Security-Policy"))
	}
	if w := do("GET", "/ops/live?token=s3cret", nil, nil); w.Code != http.StatusSeeOther || w.Header().Get("Location") != "/ops/live" || w.Header().Get("Set-Cookie") == "" {
		t.Errorf("?token=: %d, location %q", w.Code, w.Header().Get("Location"))
	}
	if w := do("GET", "/ops/live/data", nil, nil); w.Code != 401 {
		t.Errorf("data without auth: %d", w.Code)
	}
	if w := do("GET", "/ops/live/data", nil, map[string]string{"Cookie": ck}); w.Code != 200 || !strings.Contains(w.Body.String(), `"samples":[{`) {
		t.Errorf("data with the cookie: %d %s", w.Code, w.Body)
	}
	if w := do("GET", "/ops/live/data?after=99999999999999", nil, map[string]string{"Authorization": "Bearer s3cret"}); w.Code != 200 || !strings.Contains(w.Body.String(), `"samples":[]`) {
		t.Errorf("data after the last sample: %d %s", w.Code, w.Body)
	}
	if w := do("GET", "/ops/live/static/uPlot.iife.min.js", nil, nil); w.Code != 200 || w.Body.Len() < 10000 {
		t.Errorf("embedded uPlot: %d, %d bytes", w.Code, w.Body.Len())
	}

	off, err := NewLive(LiveConfig{Gatherer: reg})
	if err != nil {
		t.Fatal(err)
	}
	e2 := gin.New()
	off.Register(e2)
	w = httptest.NewRecorder()
	e2.ServeHTTP(w, httptest.NewRequest("GET", "/ops/live?token=", nil))
	if w.Code != http.StatusServiceUnavailable {
		t.Errorf("without FLASHSALE_ADMIN_TOKEN: %d, want 503", w.Code)
	}
}

func TestHandlerReadyz(t *testing.T) {
	failing := false
	h, err := Handler(HandlerConfig{Gatherer: prometheus.NewRegistry(), Ready: []Check{httpapi.Named("redis", func(context.Context) error {
		if failing {
			return errors.New("dial tcp 10.0.1.11:6379: connection refused")
		}
		return nil
	})}})
	if err != nil {
		t.Fatal(err)
	}
	get := func(path string) *httptest.ResponseRecorder {
		w := httptest.NewRecorder()
		h.ServeHTTP(w, httptest.NewRequest("GET", path, nil))
		return w
	}
	if w := get("/readyz"); w.Code != 200 {
		t.Errorf("/readyz: %d", w.Code)
	}
	failing = true
	if w := get("/readyz"); w.Code != 503 || !strings.Contains(w.Body.String(), `"code":"unavailable"`) || !strings.Contains(w.Body.String(), "redis") ||
		strings.Contains(w.Body.String(), "10.0.1.11") {
		t.Errorf("/readyz failing: %d %s", w.Code, w.Body)
	}
	if w := get("/debug/pprof/"); w.Code != 404 {
		t.Errorf("pprof off: %d", w.Code)
	}
	if w := get("/metrics"); w.Code != 200 {
		t.Errorf("/metrics: %d", w.Code)
	}
}

// stubLines gives each sale's line its entries and releases; a sale it does
// not know fails.
type stubLines struct{ entries, released map[string]int }

func (l stubLines) LineEntries(_ context.Context, id string) (int, error) {
	n, ok := l.entries[id]
	if !ok {
		return 0, errors.New("mysql: connection refused")
	}
	return n, nil
}

func (l stubLines) LineReleased(_ context.Context, id string) (int, error) {
	return l.released[id], nil
}

// TestWaitingRoomFigures: the collector exports each waiting room's entries,
// admitted tickets and waitlist (not for a sale without one; a line that
// cannot be read is counted and left out), and the live page shows them per
// sale with the pace: releases per second between two samples.
func TestWaitingRoomFigures(t *testing.T) {
	now := time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)
	sale := func(id string, room *flashsale.WaitingRoom) *flashsale.Sale {
		return &flashsale.Sale{ID: id, StartsAt: now.Add(-time.Minute), EndsAt: now.Add(time.Hour), WaitingRoom: room}
	}
	sales := stubSales{sale("room", &flashsale.WaitingRoom{Waitlist: 50}), sale("plain", nil), sale("unread", &flashsale.WaitingRoom{})}
	stock := stubStock{"room": {Total: 100, Available: 60, Held: 40}, "plain": {Total: 5, Available: 5}, "unread": {Total: 1, Available: 1}}
	lines := stubLines{entries: map[string]int{"room": 1234}, released: map[string]int{"room": 10}}
	c, err := NewCollector(CollectorConfig{Sales: sales, Stock: stock, Lines: lines, Now: func() time.Time { return now }})
	if err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(c)
	want := `
# HELP flashsale_waiting_room_admitted_total Tickets released from a sale's waiting room line into the purchase pipeline, as the line records them (the same in every process; its rate is the line's pace).
# TYPE flashsale_waiting_room_admitted_total counter
flashsale_waiting_room_admitted_total{sale="room"} 10
# HELP flashsale_waiting_room_entries Tickets waiting in a sale's waiting room line (the sale view's waiting_room.entries).
# TYPE flashsale_waiting_room_entries gauge
flashsale_waiting_room_entries{sale="room"} 1234
# HELP flashsale_waiting_room_waitlist The waitlist W of a sale's waiting room: the tickets kept waiting once every unit is taken.
# TYPE flashsale_waiting_room_waitlist gauge
flashsale_waiting_room_waitlist{sale="room"} 50
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want), "flashsale_waiting_room_admitted_total",
		"flashsale_waiting_room_entries", "flashsale_waiting_room_waitlist"); err != nil {
		t.Error(err)
	}
	if n := testutil.ToFloat64(c.errors.WithLabelValues("waiting_room")); n != 1 {
		t.Errorf("waiting_room errors %v, want 1 (the unread line)", n)
	}

	gather := gatherer(t, reg)
	first := gather(1000)
	lines.released["room"], lines.entries["room"] = 30, 1214
	s := sample(gather(3000), first, first)
	bySale := map[string]SaleSample{}
	for _, ss := range s.Sales {
		bySale[ss.ID] = ss
	}
	if wr := bySale["room"].WaitingRoom; wr == nil || *wr != (WaitingRoomSample{Entries: 1214, Admitted: 30, Waitlist: 50, AdmittedPerSec: 10}) {
		t.Errorf("room's waiting room: %+v, want 1214 waiting, 30 admitted, waitlist 50, 10 admitted/s", wr)
	}
	if wr := bySale["plain"].WaitingRoom; wr != nil || bySale["plain"].Available != 5 {
		t.Errorf("plain: %+v with waiting room %+v, want its units and no waiting room", bySale["plain"], wr)
	}
	if b, err := json.Marshal(bySale["plain"]); err != nil || strings.Contains(string(b), "waiting_room") {
		t.Errorf("a sale without a waiting room is sent as %s, want no waiting_room field", b)
	}
}
