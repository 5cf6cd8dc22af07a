package e2e

// Helpers of the stock-cap tests (stockcap_test.go, issue 10): crowds that
// arrive one after another on one sale, and a watch that checks the no-oversell
// invariant in MySQL, the sale view and the accepted tickets at every poll while
// the test runs, not only once the system is quiet. Names start with sc.

import (
	"context"
	"fmt"
	"net/http"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"
)

// scCrowd adds n buyers named prefix-NNNNN to the sale, arriving evenly over
// spread, each buying one unit once (retrying transport errors and 503 for the
// sale's retryFor, as fxSale does). The returned WaitGroup is done when each
// has its final answer; settle waits for them too.
func (s *fxSale) scCrowd(prefix string, n int, spread time.Duration) *sync.WaitGroup {
	names := userNames(prefix, n)
	var wg sync.WaitGroup
	wg.Add(len(names))
	s.wg.Add(len(names))
	go func() {
		start := time.Now()
		for i, u := range names {
			if d := time.Until(start.Add(spread * time.Duration(i) / time.Duration(len(names)))); d > 0 {
				time.Sleep(d) // pacing the arrivals
			}
			go func() {
				defer wg.Done()
				s.buy(u)
			}()
		}
	}()
	return &wg
}

// scRefs returns the tickets accepted so far.
func (s *fxSale) scRefs() []ticketRef {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]ticketRef(nil), s.refs...)
}

// scFinal waits until every ticket accepted so far is final (see awaitFinal).
func (s *fxSale) scFinal(timeout time.Duration) map[string]ticketView {
	s.t.Helper()
	return s.c.awaitFinal(s.t, s.scRefs(), timeout)
}

// scNoFailed asserts that no accepted ticket ended failed: an outage or a
// Redis that went back in time delays purchases or sells them out, it never
// fails them.
func scNoFailed(t *testing.T, out *fxOutcome) {
	t.Helper()
	var failed []string
	for _, ref := range out.refs {
		if out.final[ref.TicketID].Status == "failed" {
			failed = append(failed, ref.User+"/"+ref.TicketID)
		}
	}
	if n := len(failed); n > 0 {
		if n > 5 {
			failed = append(failed[:5], "...")
		}
		t.Errorf("%d of %d accepted tickets ended failed, want none: %v", n, len(out.refs), failed)
	}
}

// scLiveUnits returns the units of pending_payment + paid orders of the sale,
// summed over the shards, straight from MySQL. The shards are read one after
// the other, not in one snapshot: a unit freed on one shard and taken on the
// other between the two reads would count twice, so the tests that watch it
// neither cancel nor expire orders while they do (payment window 900 s).
// The schema has no returns yet; once it has, returned units come off here.
func scLiveUnits(ctx context.Context, e *env, saleID string) (int, error) {
	total := 0
	for i := range e.ShardDBs {
		var n int
		err := e.shard(i).QueryRowContext(ctx,
			"SELECT COALESCE(SUM(quantity), 0) FROM orders WHERE sale_id = ? AND status IN ('pending_payment', 'paid')",
			saleID).Scan(&n)
		if err != nil {
			return 0, fmt.Errorf("shard %d: %w", i, err)
		}
		total += n
	}
	return total, nil
}

// scMustLiveUnits is scLiveUnits on the test goroutine.
func scMustLiveUnits(t *testing.T, e *env, saleID string) int {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	n, err := scLiveUnits(ctx, e, saleID)
	if err != nil {
		t.Fatalf("orders: %v", err)
	}
	return n
}

// scWatch checks, every ~150 ms while the test runs:
//   - no oversell: units in pending_payment + paid orders, read from the
//     shards directly (no proxy of the test is in the way), never exceed stock;
//   - the sale view, when it answers 200: available + held + sold == total and
//     no counter below zero;
//   - accepted tickets, a few per poll in turn: never 404 (503 is fine while a
//     dependency is away).
//
// It records every breach with the phase of the test it happened in; stop
// reports them (and fails the test on any).
type scWatch struct {
	t     *testing.T
	e     *env
	s     *fxSale
	start time.Time
	quit  chan struct{}
	wg    sync.WaitGroup

	mu          sync.Mutex
	phaseName   string
	polls       int
	pollErrs    int
	lastPollErr error
	maxUnits    int
	maxAt       string
	overPolls   int
	firstOver   string
	views       int
	viewAnswers map[string]int
	badViews    []string
	badViewN    int
	minAvail    int
	minAvailAt  string
	ticketGets  int
	ticketAns   map[string]map[string]int // phase -> answer -> count
	lost        map[string]string         // ticket -> when it answered 404
}

// scStartWatch starts watching the sale; call stop (deferred) to end it and
// report.
func scStartWatch(t *testing.T, e *env, s *fxSale) *scWatch {
	w := &scWatch{t: t, e: e, s: s, start: time.Now(), quit: make(chan struct{}), phaseName: "start",
		viewAnswers: map[string]int{}, ticketAns: map[string]map[string]int{}, lost: map[string]string{}, minAvail: s.Stock}
	w.wg.Add(2)
	go w.loop(150*time.Millisecond, w.pollOrders, w.pollView)
	go w.loop(200*time.Millisecond, w.pollTickets)
	return w
}

// phase names what the test does from now on, for the reports.
func (w *scWatch) phase(name string) {
	w.mu.Lock()
	w.phaseName = name
	w.mu.Unlock()
	w.t.Logf("%6.2fs phase: %s", time.Since(w.start).Seconds(), name)
}

// when is "at 12.34s (phase)"; w.mu held.
func (w *scWatch) when() string {
	return fmt.Sprintf("at %.2fs (%s)", time.Since(w.start).Seconds(), w.phaseName)
}

func (w *scWatch) loop(every time.Duration, polls ...func()) {
	defer w.wg.Done()
	tick := time.NewTicker(every)
	defer tick.Stop()
	for {
		for _, p := range polls {
			p()
		}
		select {
		case <-w.quit:
			return
		case <-tick.C:
		}
	}
}

func (w *scWatch) pollOrders() {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	units, err := scLiveUnits(ctx, w.e, w.s.ID)
	w.mu.Lock()
	defer w.mu.Unlock()
	if err != nil {
		w.pollErrs++
		w.lastPollErr = err
		return
	}
	w.polls++
	if units > w.maxUnits {
		w.maxUnits, w.maxAt = units, w.when()
	}
	if units > w.s.Stock {
		w.overPolls++
		if w.firstOver == "" {
			w.firstOver = fmt.Sprintf("%d units %s", units, w.when())
		}
	}
}

func (w *scWatch) pollView() {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	r, err := w.s.c.send(ctx, http.MethodGet, pathSale(w.s.ID), nil, nil)
	var v saleView
	if err == nil && r.Status == http.StatusOK {
		err = r.decode(&v)
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	w.views++
	w.viewAnswers[outcome(r, err)]++
	if err != nil || r.Status != http.StatusOK {
		return
	}
	st := v.Stock
	if st.Available < w.minAvail {
		w.minAvail, w.minAvailAt = st.Available, w.when()
	}
	if st.Available+st.Held+st.Sold != st.Total || st.Total != w.s.Stock || st.Available < 0 || st.Held < 0 || st.Sold < 0 {
		w.badViewN++
		if len(w.badViews) < 5 {
			w.badViews = append(w.badViews, fmt.Sprintf("%+v %s", st, w.when()))
		}
	}
}

// pollTickets reads the next few accepted tickets, in turn.
func (w *scWatch) pollTickets() {
	refs := w.s.scRefs()
	if len(refs) == 0 {
		return
	}
	w.mu.Lock()
	next := w.ticketGets
	w.mu.Unlock()
	for i := 0; i < 25 && i < len(refs); i++ {
		ref := refs[(next+i)%len(refs)]
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		r, err := w.s.c.send(ctx, http.MethodGet, pathTicket(ref.TicketID), user(ref.User), nil)
		cancel()
		w.mu.Lock()
		w.ticketGets++
		if w.ticketAns[w.phaseName] == nil {
			w.ticketAns[w.phaseName] = map[string]int{}
		}
		w.ticketAns[w.phaseName][outcome(r, err)]++
		if err == nil && r.Status == http.StatusNotFound {
			if _, seen := w.lost[ref.TicketID]; !seen {
				w.lost[ref.TicketID] = fmt.Sprintf("%s of %s: %s %s", ref.TicketID, ref.User, r, w.when())
			}
		}
		w.mu.Unlock()
		select {
		case <-w.quit:
			return
		default:
		}
	}
}

// ticketReads returns how many ticket reads the watch made during the phase.
func (w *scWatch) ticketReads(phase string) int {
	w.mu.Lock()
	defer w.mu.Unlock()
	n := 0
	for _, c := range w.ticketAns[phase] {
		n += c
	}
	return n
}

// stop ends the watch and fails the test on anything it saw. Deferred right
// after scStartWatch, it reports even when the test stopped early.
func (w *scWatch) stop() {
	t := w.t
	t.Helper()
	select {
	case <-w.quit:
		return
	default:
	}
	close(w.quit)
	w.wg.Wait()
	w.mu.Lock()
	defer w.mu.Unlock()
	t.Logf("watch over %.1fs: %d order polls (max %d units in pending_payment+paid orders %s, stock %d); "+
		"%d sale views %v (lowest available %d %s); %d ticket reads by phase %v",
		time.Since(w.start).Seconds(), w.polls, w.maxUnits, w.maxAt, w.s.Stock,
		w.views, w.viewAnswers, w.minAvail, w.minAvailAt, w.ticketGets, w.ticketAns)
	if w.polls == 0 {
		t.Errorf("watch: no successful poll of the orders (last error: %v)", w.lastPollErr)
	}
	if w.pollErrs > 0 {
		t.Errorf("watch: %d polls of the orders failed, the invariant went unchecked then (last: %v)", w.pollErrs, w.lastPollErr)
	}
	if w.overPolls > 0 {
		t.Errorf("OVERSOLD during the run: %d of %d polls saw more units in pending_payment+paid orders than the stock %d; first %s; max %d %s",
			w.overPolls, w.polls, w.s.Stock, w.firstOver, w.maxUnits, w.maxAt)
	}
	for answer, n := range w.viewAnswers {
		if strings.HasPrefix(answer, "5") && !strings.HasPrefix(answer, "503") {
			t.Errorf("%d sale views answered %s: a dependency away is 503, never a 500", n, answer)
		}
	}
	if w.badViewN > 0 {
		t.Errorf("%d sale views broke available+held+sold == total (%d) or went below zero, e.g. %v", w.badViewN, w.s.Stock, w.badViews)
	}
	if n := len(w.lost); n > 0 {
		var ex []string
		for _, v := range w.lost {
			ex = append(ex, v)
		}
		sort.Strings(ex)
		if len(ex) > 5 {
			ex = append(ex[:5], "...")
		}
		t.Errorf("%d accepted tickets answered 404 while polled during the run: %s", n, strings.Join(ex, "; "))
	}
}
