package e2e

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"slices"
	"sort"
	"strconv"
	"sync"
	"testing"
	"time"
)

// The tests of issue 24: every queued ticket knows its place (position,
// eta_seconds, poll_after_ms), and its event stream pushes it.

// admission is one buyer's purchase: the ticket and when the request that
// got it was sent and answered.
type admission struct {
	ref            ticketRef
	sent, answered time.Time
}

// admitAll has every user purchase one unit, conc at a time, retrying a 503
// (the contract lets a buyer retry; nothing of it was kept); it returns the
// admissions in the order of the users.
func admitAll(t *testing.T, c *client, saleID string, users []string, conc int) []admission {
	t.Helper()
	out := make([]admission, len(users))
	work := make(chan int)
	var wg sync.WaitGroup
	ta := newTally()
	for range conc {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range work {
				for attempt := 0; ; attempt++ {
					ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
					sent := time.Now()
					r, err := c.purchase(ctx, saleID, users[i], 1)
					answered := time.Now()
					cancel()
					if err == nil && r.Status == http.StatusServiceUnavailable && attempt < 50 {
						time.Sleep(50 * time.Millisecond) // a buyer's backoff, not a wait for an effect
						continue
					}
					ta.add(outcome(r, err), fmt.Sprintf("%s: %v %s", users[i], err, r))
					if err == nil && r.Status == http.StatusAccepted {
						var a purchaseAnswer
						if err := r.decode(&a); err == nil {
							out[i] = admission{ref: ticketRef{User: users[i], TicketID: a.TicketID}, sent: sent, answered: answered}
						}
					}
					break
				}
			}
		}()
	}
	for i := range users {
		work <- i
	}
	close(work)
	wg.Wait()
	ta.only(t, "202")
	return out
}

// TestQueuedTicketsKnowTheirPlace admits 2,000 buyers while no worker runs,
// then lets a worker drain them at ~200 orders a second (every order's
// COMMIT held 500 ms at a MySQL proxy, so that the drain lasts long enough
// to watch; the order transactions of one shard queue on its stock-cap row):
//   - with the worker stopped, every ticket's position lies between 1 + the
//     tickets answered 202 before its request was sent (surely ahead of it)
//     and 1 + the tickets whose requests were sent before its answer came
//     (possibly ahead of it): so at most "the tickets admitted before it,
//     plus one"; eta_seconds is null (nothing decided: no pace);
//   - once the worker runs, every queued ticket is read every 300 ms and no
//     position ever grows;
//   - at half-way (half the tickets decided) each queued ticket's
//     eta_seconds is compared with its real wait (its order's created_at
//     minus the moment of the reading): within a factor of 2 for the tickets
//     that waited 2 s or more (eta is in whole seconds).
func TestQueuedTicketsKnowTheirPlace(t *testing.T) {
	e := newEnv(t)
	cp := newCommitProxy(t)
	ing := e.start("ingress", nil)
	c := ing.client()
	const buyers = 2000
	id := c.createSale(t, openSale(buyers, 1, 100))

	adm := admitAll(t, c, id, userNames("place", buyers), 64)
	refs := make([]ticketRef, len(adm))
	sentAt := make([]time.Time, len(adm))
	answeredAt := make([]time.Time, len(adm))
	byTicket := map[string]admission{}
	for i, a := range adm {
		refs[i], sentAt[i], answeredAt[i] = a.ref, a.sent, a.answered
		byTicket[a.ref.TicketID] = a
	}
	sort.Slice(sentAt, func(i, j int) bool { return sentAt[i].Before(sentAt[j]) })
	sort.Slice(answeredAt, func(i, j int) bool { return answeredAt[i].Before(answeredAt[j]) })

	// The worker stopped: every place within its bounds.
	views, problems := c.places(refs)
	if len(views) != buyers {
		t.Fatalf("read %d of %d tickets: %v", len(views), buyers, problems)
	}
	seen := map[int]int{}
	bad := 0
	for _, a := range adm {
		v := views[a.ref.TicketID]
		if p := placeProblem(v); p != "" || v.Status != "queued" {
			t.Fatalf("ticket %s with the worker stopped: %s (%+v)", a.ref.TicketID, p, v)
		}
		if v.ETA != nil {
			t.Errorf("ticket %s: eta_seconds %d with nothing decided yet, want null", a.ref.TicketID, *v.ETA)
		}
		lo := 1 + countBefore(answeredAt, a.sent)     // answered before it was sent: ahead of it
		hi := 1 + countBefore(sentAt, a.answered) - 1 // sent before it was answered, itself excluded
		if p := *v.Position; p < lo || p > hi {
			if bad++; bad <= 5 {
				t.Errorf("ticket %s at position %d, want within [%d, %d] (1 + the tickets surely / possibly admitted before it)", a.ref.TicketID, p, lo, hi)
			}
		}
		seen[*v.Position]++
	}
	if bad > 0 {
		t.Fatalf("%d of %d positions out of their bounds", bad, buyers)
	}
	if seen[1] != 1 || len(seen) < buyers*9/10 {
		t.Errorf("positions with the worker stopped: %d distinct, %d at 1; want nearly all distinct and one first", len(seen), seen[1])
	}
	t.Logf("worker stopped: %d positions within their bounds, %d distinct; e.g. the last admitted at %d", buyers, len(seen), *views[adm[len(adm)-1].ref.TicketID].Position)

	// The worker runs, every order COMMIT held 500 ms. Every 300 ms a
	// sample of 500 tickets spread over the line (every 4th admitted) is read.
	cp.HoldCommits(-1, true, 500*time.Millisecond)
	started := time.Now()
	e.start("worker", pacedWorker(e, cp))
	var left []ticketRef
	for i := 0; i < len(refs); i += 4 {
		left = append(left, refs[i])
	}
	sample := len(left)
	type reading struct {
		pos, eta int // eta -1: null
		at       time.Time
	}
	last := map[string]reading{}    // each ticket's last reading while queued
	half := map[string]reading{}    // at half-way
	decided := map[string]float64{} // when each was first seen decided: the middle of the gap since its last queued reading
	halfAt := time.Time{}
	rounds, grew, reads := 0, 0, 0
	var roundDur []time.Duration
	tick := time.NewTicker(300 * time.Millisecond)
	defer tick.Stop()
	for deadline := time.Now().Add(3 * time.Minute); len(left) > 0; {
		if time.Now().After(deadline) {
			t.Fatalf("%d tickets still queued after 3 minutes", len(left))
		}
		<-tick.C // a sample every 300 ms (or as soon as the last one took longer)
		t0 := time.Now()
		views, problems := c.places(left)
		roundDur = append(roundDur, time.Since(t0))
		rounds++
		reads += len(views)
		var next []ticketRef
		for _, r := range left {
			v, ok := views[r.TicketID]
			if !ok {
				t.Fatalf("ticket %s not read: %v", r.TicketID, problems)
			}
			if p := placeProblem(v); p != "" {
				t.Fatalf("ticket %s: %s (%+v)", r.TicketID, p, v)
			}
			prev, seenBefore := last[r.TicketID]
			if v.Status != "queued" {
				if v.Status != "pending_payment" {
					t.Errorf("ticket %s ended %s, want pending_payment (stock for everyone)", r.TicketID, v.Status)
				}
				from := started
				if seenBefore {
					from = prev.at
				}
				decided[r.TicketID] = from.Add(v.At.Sub(from) / 2).Sub(started).Seconds()
				continue
			}
			next = append(next, r)
			if seenBefore && *v.Position > prev.pos {
				if grew++; grew <= 5 {
					t.Errorf("ticket %s: position grew from %d to %d", r.TicketID, prev.pos, *v.Position)
				}
			}
			rd := reading{pos: *v.Position, eta: -1, at: v.At}
			if v.ETA != nil {
				rd.eta = *v.ETA
			}
			last[r.TicketID] = rd
		}
		if halfAt.IsZero() && len(next) <= sample/2 {
			halfAt = time.Now()
			for _, r := range next {
				half[r.TicketID] = last[r.TicketID]
			}
			t.Logf("half-way after %s: %d of the %d sampled tickets queued", halfAt.Sub(started).Round(time.Millisecond), len(next), sample)
		}
		left = next
	}
	slices.Sort(roundDur)
	t.Logf("drained in %s: %d rounds of reads (every 300 ms; a round took %s median, %s at most), %d reads, %d positions grew",
		time.Since(started).Round(time.Millisecond), rounds, roundDur[len(roundDur)/2].Round(time.Millisecond), roundDur[len(roundDur)-1].Round(time.Millisecond), reads, grew)
	if grew > 0 {
		t.Fatalf("%d readings saw a position grow", grew)
	}

	// eta at half-way against the real wait: from that reading to the
	// moment the ticket was seen decided.
	type cmp struct {
		eta  int
		wait float64
	}
	var cmps []cmp
	var ratios []float64
	off, noETA := 0, 0
	for tid, h := range half {
		if h.eta < 0 {
			noETA++
			continue
		}
		wait := decided[tid] - h.at.Sub(started).Seconds()
		cmps = append(cmps, cmp{h.eta, wait})
		if wait < 2 {
			continue
		}
		ratios = append(ratios, float64(h.eta)/wait)
		if float64(h.eta) < wait/2 || float64(h.eta) > 2*wait {
			if off++; off <= 5 {
				t.Errorf("ticket %s: eta_seconds %d at half-way (position %d), real wait %.1f s: not within a factor of 2", tid, h.eta, h.pos, wait)
			}
		}
	}
	if noETA > 0 {
		t.Errorf("%d queued tickets had no eta at half-way, with the line moving", noETA)
	}
	if len(ratios) == 0 {
		t.Fatal("no ticket waited 2 s or more after half-way: the drain was too fast to judge an eta")
	}
	sort.Slice(cmps, func(i, j int) bool { return cmps[i].wait < cmps[j].wait })
	slices.Sort(ratios)
	t.Logf("eta at half-way vs the real wait, %d tickets (%d waited >= 2 s): eta/wait min %.2f, median %.2f, max %.2f; longest wait %.1f s with eta %d s; %d outside a factor of 2",
		len(cmps), len(ratios), ratios[0], ratios[len(ratios)/2], ratios[len(ratios)-1], cmps[len(cmps)-1].wait, cmps[len(cmps)-1].eta, off)
	if off > 0 {
		t.Fatalf("%d of %d etas at half-way not within a factor of 2 of the real wait", off, len(ratios))
	}
}

// followed is what a test saw of one ticket's stream: the events in order,
// the comment lines' times, and how the stream ended.
type followed struct {
	mu       sync.Mutex
	events   []streamEvent
	comments []time.Time
	ended    chan struct{}
	err      error // io.EOF: the server ended it
}

// follow reads s on a goroutine of its own until it ends; seen are the
// events already read from it.
func follow(s *ticketStream, seen ...streamEvent) *followed {
	f := &followed{ended: make(chan struct{}), events: seen}
	go func() {
		defer close(f.ended)
		for {
			ev, err := s.next()
			f.mu.Lock()
			if err != nil {
				f.err = err
				f.mu.Unlock()
				return
			}
			if ev.Comment {
				f.comments = append(f.comments, ev.At)
			} else {
				f.events = append(f.events, ev)
			}
			f.mu.Unlock()
		}
	}()
	return f
}

func (f *followed) seen() ([]streamEvent, []time.Time) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.events), slices.Clone(f.comments)
}

// lastEvent returns the last event seen, and whether there was one.
func (f *followed) lastEvent() (streamEvent, bool) {
	evs, _ := f.seen()
	if len(evs) == 0 {
		return streamEvent{}, false
	}
	return evs[len(evs)-1], true
}

// TestTicketStreamAcrossIngresses follows 40 tickets admitted by ingress A
// through event streams held on ingress B, with no worker running yet:
//   - every stream sends the ticket at once (queued, with its place), and a
//     comment line within 15 s while nothing changes;
//   - a 5th stream of one user on B is 429 rate_limited;
//   - a reconnect with Last-Event-ID gets the current state at once, its
//     event numbered after the last one seen;
//   - B restarted (SIGTERM, exit 0) ends its streams; the clients reconnect
//     with Last-Event-ID and get the current state at once;
//   - once a worker runs, every stream delivers pending_payment within 1 s of
//     the order's created_at and ends; a place shown never grows and event
//     ids follow each other; a reconnect after the end gets pending_payment
//     at once, and the stream ends again.
func TestTicketStreamAcrossIngresses(t *testing.T) {
	e := newEnv(t)
	a := e.start("ingress", nil)
	b := e.start("ingress", nil)
	ca := a.client()
	const n = 40
	id := ca.createSale(t, openSale(n, 1, 100))
	adm := admitAll(t, ca, id, userNames("stream", n), 8)
	hc := &http.Client{Transport: streamTransport()}
	open := func(r ticketRef, lastID string) *ticketStream {
		t.Helper()
		s, rep, err := openTicketStream(hc, b.URL, r.TicketID, r.User, lastID)
		if err != nil || s == nil {
			t.Fatalf("stream of %s on B: %v %s", r.TicketID, err, rep)
		}
		return s
	}
	// first reads a new stream's first event, which must come at once.
	first := func(s *ticketStream, opened time.Time, what string) streamEvent {
		t.Helper()
		ev, err := s.nextEvent()
		if err != nil {
			t.Fatalf("%s: no first event: %v", what, err)
		}
		if d := ev.At.Sub(opened); d > time.Second {
			t.Errorf("%s: first event %s after the stream opened, want at once", what, d)
		}
		if p := placeProblem(ev.View); p != "" || ev.View.Status != "queued" {
			t.Fatalf("%s: first event %+v: %s", what, ev.View, p)
		}
		return ev
	}
	streams := make([]*ticketStream, n)
	follows := make([]*followed, n)
	firsts := make([]streamEvent, n)
	for i, r := range adm {
		opened := time.Now()
		streams[i] = open(r.ref, "")
		firsts[i] = first(streams[i], opened, "stream of "+r.ref.TicketID)
		if firsts[i].ID != "1" {
			t.Errorf("the first event of a new stream has id %q, want 1", firsts[i].ID)
		}
		follows[i] = follow(streams[i], firsts[i])
	}
	t.Logf("40 streams on B, first events at positions %d .. %d", *firsts[0].View.Position, *firsts[n-1].View.Position)

	// A user's 5th stream on one node.
	var extra []*ticketStream
	for range 3 {
		extra = append(extra, open(adm[0].ref, ""))
	}
	if s, rep, err := openTicketStream(hc, b.URL, adm[0].ref.TicketID, adm[0].ref.User, ""); err != nil || s != nil {
		t.Fatalf("5th stream of a user: %v %v", err, s != nil)
	} else {
		checkError(t, "5th stream of a user", rep, http.StatusTooManyRequests, "rate_limited")
	}
	for _, s := range extra {
		s.close()
	}

	// Nothing changes: a comment line within 15 s.
	eventually(t, 16*time.Second, "a comment line on a stream where nothing changes", func() (bool, string) {
		_, comments := follows[1].seen()
		return len(comments) > 0, fmt.Sprintf("%d comments", len(comments))
	})
	_, comments := follows[1].seen()
	if d := comments[0].Sub(firsts[1].At); d > 15*time.Second {
		t.Errorf("the first comment line came %s after the first event, want within 15 s", d)
	}

	// A reconnect with Last-Event-ID.
	streams[2].close()
	<-follows[2].ended
	lastSeen, _ := follows[2].lastEvent()
	opened := time.Now()
	streams[2] = open(adm[2].ref, lastSeen.ID)
	ev := first(streams[2], opened, "reconnect with Last-Event-ID")
	if eventID(ev) != eventID(lastSeen)+1 || *ev.View.Position > *lastSeen.View.Position {
		t.Errorf("reconnect with Last-Event-ID %s: event %s at position %d, want id %d, position <= %d",
			lastSeen.ID, ev.ID, *ev.View.Position, eventID(lastSeen)+1, *lastSeen.View.Position)
	}
	follows[2] = follow(streams[2], ev)

	// The streams outlive the server's read and write timeouts (10 s, 15 s):
	// none ends by itself within 16 s of its start.
	heldFor := 16*time.Second - time.Since(firsts[0].At)
	select {
	case <-follows[0].ended:
	case <-time.After(heldFor): // the span in which nothing may happen
	}
	for i, f := range follows {
		select {
		case <-f.ended:
			t.Fatalf("stream %d ended by itself (%v) %s after the first was opened", i, f.err, time.Since(firsts[0].At).Round(time.Millisecond))
		default:
		}
	}

	// B restarts: its streams end, the clients reconnect.
	stopAt := time.Now()
	b.Stop()
	stopped := time.Since(stopAt)
	for i, f := range follows {
		select {
		case <-f.ended:
		case <-time.After(5 * time.Second):
			t.Fatalf("stream %d still open 5 s after B stopped", i)
		}
	}
	b.Start()
	t.Logf("B stopped in %s with 40 streams open (exit 0); restarted", stopped.Round(time.Millisecond))
	for i, r := range adm {
		last, _ := follows[i].lastEvent()
		opened := time.Now()
		streams[i] = open(r.ref, last.ID)
		ev := first(streams[i], opened, "reconnect after B restarted")
		if eventID(ev) != eventID(last)+1 || *ev.View.Position > *last.View.Position {
			t.Errorf("reconnect after the restart: event %s at position %d, want id %d, position <= %d", ev.ID, *ev.View.Position, eventID(last)+1, *last.View.Position)
		}
		follows[i] = follow(streams[i], ev)
	}

	// A worker: every stream delivers pending_payment within 1 s of the
	// order's created_at, and ends.
	e.start("worker", nil)
	for i, f := range follows {
		select {
		case <-f.ended:
		case <-time.After(60 * time.Second):
			t.Fatalf("stream of %s not ended 60 s after the worker started", adm[i].ref.TicketID)
		}
	}
	var lags []time.Duration
	for i, f := range follows {
		evs, _ := f.seen()
		if f.err != io.EOF {
			t.Errorf("stream %d ended with %v, want the server's end", i, f.err)
		}
		if len(evs) == 0 {
			t.Fatalf("stream %d: no event", i)
		}
		for k := 1; k < len(evs); k++ {
			if eventID(evs[k]) != eventID(evs[k-1])+1 {
				t.Errorf("stream %d: event ids %s then %s", i, evs[k-1].ID, evs[k].ID)
			}
			if p, q := evs[k-1].View.Position, evs[k].View.Position; p != nil && q != nil && *q > *p {
				t.Errorf("stream %d: position grew from %d to %d", i, *p, *q)
			}
		}
		final := evs[len(evs)-1]
		if final.View.Status != "pending_payment" || final.View.OrderID != adm[i].ref.TicketID || final.View.PayBy == nil {
			t.Fatalf("stream %d ended with %+v, want pending_payment with its order", i, final.View)
		}
		o := ca.orderNowByID(t, adm[i].ref)
		lag := final.At.Sub(o.CreatedAt)
		lags = append(lags, lag)
		if lag > time.Second {
			t.Errorf("stream %d: pending_payment %s after the order's created_at, want within 1 s", i, lag)
		}
	}
	slices.Sort(lags)
	t.Logf("pending_payment on B's streams after the orders' created_at: median %s, max %s", lags[len(lags)/2].Round(time.Millisecond), lags[len(lags)-1].Round(time.Millisecond))

	// A reconnect after the end: the final state at once, and the end.
	last, _ := follows[0].lastEvent()
	opened = time.Now()
	s, rep, err := openTicketStream(hc, b.URL, adm[0].ref.TicketID, adm[0].ref.User, last.ID)
	if err != nil || s == nil {
		t.Fatalf("reconnect after the end: %v %s", err, rep)
	}
	ev, err = s.nextEvent()
	if err != nil || ev.View.Status != "pending_payment" || eventID(ev) != eventID(last)+1 || ev.At.Sub(opened) > time.Second {
		t.Fatalf("reconnect after the end: %+v %v, want pending_payment (id %d) at once", ev, err, eventID(last)+1)
	}
	if _, err := s.next(); err != io.EOF {
		t.Errorf("a reconnect after the end goes on: %v", err)
	}
}

// orderNowByID reads the ticket's order (its id is the ticket's).
func (c *client) orderNowByID(t *testing.T, r ticketRef) orderView {
	t.Helper()
	rep := c.must(t, http.MethodGet, pathOrder(r.TicketID), user(r.User), nil)
	var o orderView
	if rep.Status != http.StatusOK {
		t.Fatalf("order %s: %s", r.TicketID, rep)
	}
	if err := rep.decode(&o); err != nil {
		t.Fatal(err)
	}
	return o
}

// TestManyTicketStreams holds 10,000 event streams open on one ingress (2,500
// buyers with 4 streams each, the most a user may hold on a node), all queued
// while no worker runs, and measures the ingress's memory with them; then a
// worker decides every ticket and every stream delivers pending_payment and
// ends. FLASHSALE_E2E_STREAMS sets another number of buyers (x4 streams).
func TestManyTicketStreams(t *testing.T) {
	buyers := 2500
	var vars map[string]string // the default FLASHSALE_MAX_CONNS holds 10,000 streams
	if n, err := strconv.Atoi(os.Getenv("FLASHSALE_E2E_STREAMS")); err == nil && n > 0 {
		buyers = n
		vars = map[string]string{"FLASHSALE_MAX_CONNS": "0"}
	}
	const perUser = 4
	e := newEnv(t)
	ing := e.start("ingress", vars)
	c := ing.client()
	id := c.createSale(t, openSale(buyers, 1, 100))
	adm := admitAll(t, c, id, userNames("many", buyers), 64)
	metrics := func() promMetrics { return scrapeMetrics(t, ing.URL+"/metrics") }
	runtime := func(m promMetrics) (heap, goroutines float64) {
		return m["go_memstats_heap_inuse_bytes"], m["go_goroutines"]
	}
	rss0, err := procRSS(ing.pid())
	if err != nil {
		t.Fatal(err)
	}
	heap0, gor0 := runtime(metrics())

	hc := &http.Client{Transport: streamTransport()}
	total := buyers * perUser
	follows := make([]*followed, total)
	work := make(chan int)
	var wg sync.WaitGroup
	var mu sync.Mutex
	var failures []string
	opening := time.Now()
	for range 128 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range work {
				r := adm[i/perUser].ref
				s, rep, err := openTicketStream(hc, ing.URL, r.TicketID, r.User, "")
				var ev streamEvent
				if err == nil && s != nil {
					ev, err = s.nextEvent()
				}
				if err != nil || s == nil || ev.View.Status != "queued" {
					mu.Lock()
					failures = append(failures, fmt.Sprintf("stream %d: %v %s %+v", i, err, rep, ev.View))
					mu.Unlock()
					continue
				}
				follows[i] = follow(s, ev)
			}
		}()
	}
	for i := range total {
		work <- i
	}
	close(work)
	wg.Wait()
	if len(failures) > 0 {
		t.Fatalf("%d of %d streams did not open: %v", len(failures), total, failures[:min(5, len(failures))])
	}
	opened := time.Since(opening)
	var m promMetrics
	eventually(t, 10*time.Second, "the ingress counts every stream open", func() (bool, string) {
		m = metrics()
		return m["flashsale_ticket_streams"] == float64(total), fmt.Sprintf("flashsale_ticket_streams %v", m["flashsale_ticket_streams"])
	})
	rss1, err := procRSS(ing.pid())
	if err != nil {
		t.Fatal(err)
	}
	heap1, gor1 := runtime(m)
	t.Logf("%d streams opened in %s; the ingress with them: RSS %.1f MiB (+%.1f MiB, %.1f KiB a stream), Go heap in use %.1f MiB (+%.1f KiB a stream), goroutines %.0f (+%.0f)",
		total, opened.Round(time.Millisecond), float64(rss1)/(1<<20), float64(rss1-rss0)/(1<<20), float64(rss1-rss0)/1024/float64(total),
		heap1/(1<<20), (heap1-heap0)/1024/float64(total), gor1, gor1-gor0)
	if r := c.must(t, http.MethodGet, "/healthz", nil, nil); r.Status != http.StatusOK {
		t.Errorf("healthz with %d streams open: %s", total, r)
	}

	// A worker decides every ticket: every stream delivers it and ends.
	started := time.Now()
	e.start("worker", nil)
	for i, f := range follows {
		select {
		case <-f.ended:
		case <-time.After(2 * time.Minute):
			t.Fatalf("stream %d not ended 2 minutes after the worker started", i)
		}
	}
	events := 0
	for i, f := range follows {
		last, _ := f.lastEvent()
		evs, _ := f.seen()
		events += len(evs)
		if f.err != io.EOF || last.View.Status != "pending_payment" {
			t.Fatalf("stream %d ended (%v) with %+v, want pending_payment", i, f.err, last.View)
		}
	}
	t.Logf("every stream delivered pending_payment and ended %s after the worker started; %d events in all (%.1f a stream)",
		time.Since(started).Round(time.Millisecond), events, float64(events)/float64(total))
	eventually(t, 10*time.Second, "the ingress counts no stream open", func() (bool, string) {
		v := metrics()["flashsale_ticket_streams"]
		return v == 0, fmt.Sprintf("flashsale_ticket_streams %v", v)
	})
}

// TestPendingPaymentStreamedAfterALockWait: a ticket's pending_payment reaches
// its stream within 1 s of the order's created_at even when the order
// transaction waited for a lock first. 40 tickets are queued with no worker
// running and followed through their event streams; the test holds the sale's
// allotment row on shard 0 (the row every order transaction of the sale on
// that shard updates: its stock cap) locked FOR UPDATE, starts a worker, and
// keeps the lock 2.5 s after a transaction of shard 0 is seen waiting for it.
// Every stream must deliver pending_payment within 1 s of its order's
// created_at: the orders of shard 0 are created once their transaction holds
// its locks (not when it began), and the orders of shard 1, committed
// meanwhile, are announced without waiting for shard 0's transaction.
func TestPendingPaymentStreamedAfterALockWait(t *testing.T) {
	e := newEnv(t)
	if len(e.ShardDBs) < 2 {
		t.Fatalf("%d shards, want at least 2", len(e.ShardDBs))
	}
	ing := e.start("ingress", nil)
	c := ing.client()
	const n = 40
	// Stock for 5 times the buyers: no shard runs out of its share of the
	// stock cap and borrows from shard 0's locked row (a borrow is not what
	// is measured here).
	id := c.createSale(t, openSale(5*n, 1, 100))

	// One order on each shard first: its allotment row exists (it is created
	// before the first order transaction of the sale on the shard).
	var warm []string
	onShard := map[int]bool{}
	for _, u := range userNames("lockwarm", 64) {
		if s := shardOf(u, len(e.ShardDBs)); !onShard[s] {
			onShard[s] = true
			warm = append(warm, u)
		}
	}
	worker := e.start("worker", nil)
	var warmRefs []ticketRef
	for _, a := range admitAll(t, c, id, warm, len(warm)) {
		warmRefs = append(warmRefs, a.ref)
	}
	c.awaitFinal(t, warmRefs, time.Minute)
	worker.Stop()

	adm := admitAll(t, c, id, userNames("lockwait", n), 8)
	hc := &http.Client{Transport: streamTransport()}
	follows := make([]*followed, n)
	perShard := map[int]int{}
	for i, a := range adm {
		s, rep, err := openTicketStream(hc, ing.URL, a.ref.TicketID, a.ref.User, "")
		if err != nil || s == nil {
			t.Fatalf("stream of %s: %v %s", a.ref.TicketID, err, rep)
		}
		ev, err := s.nextEvent()
		if err != nil || ev.View.Status != "queued" {
			t.Fatalf("stream of %s: first event %+v, %v; want queued", a.ref.TicketID, ev.View, err)
		}
		follows[i] = follow(s, ev)
		perShard[shardOf(a.ref.User, len(e.ShardDBs))]++
	}
	if perShard[0] == 0 || perShard[1] == 0 {
		t.Fatalf("tickets per shard %v: want some on shards 0 and 1", perShard)
	}

	// The lock: shard 0's allotment row of the sale, held by a transaction of
	// the test's own.
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	lock, err := e.shard(0).BeginTx(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer lock.Rollback()
	var used int
	if err := lock.QueryRowContext(ctx, `SELECT used FROM sale_allotments WHERE sale_id = ? FOR UPDATE`, id).Scan(&used); err != nil {
		t.Fatalf("locking the allotment row of shard 0: %v", err)
	}
	e.start("worker", nil)
	eventually(t, 30*time.Second, "a transaction on shard 0 waiting for the allotment row", func() (bool, string) {
		var waiting int
		err := e.shard(1).QueryRowContext(ctx, `SELECT COUNT(*) FROM information_schema.INNODB_TRX t
			JOIN information_schema.PROCESSLIST p ON p.ID = t.trx_mysql_thread_id
			WHERE t.trx_state = 'LOCK WAIT' AND p.DB = ?`, e.ShardDBs[0]).Scan(&waiting)
		return err == nil && waiting > 0, fmt.Sprintf("%d waiting (%v)", waiting, err)
	})
	const hold = 2500 * time.Millisecond
	waitSeen := time.Now()
	time.Sleep(hold) // the fault itself: the lock stays held this long, nothing is awaited
	if err := lock.Rollback(); err != nil {
		t.Fatal(err)
	}
	t.Logf("shard 0's allotment row held %s after a transaction was seen waiting for it", time.Since(waitSeen).Round(time.Millisecond))

	for i, f := range follows {
		select {
		case <-f.ended:
		case <-time.After(60 * time.Second):
			t.Fatalf("stream of %s not ended 60 s after the lock was released", adm[i].ref.TicketID)
		}
	}
	lags := map[int][]time.Duration{}
	late := 0
	for i, f := range follows {
		final, ok := f.lastEvent()
		if !ok || f.err != io.EOF || final.View.Status != "pending_payment" {
			t.Fatalf("stream %d ended (%v) with %+v, want pending_payment", i, f.err, final.View)
		}
		o := c.orderNowByID(t, adm[i].ref)
		shard := shardOf(adm[i].ref.User, len(e.ShardDBs))
		lag := final.At.Sub(o.CreatedAt)
		lags[shard] = append(lags[shard], lag)
		if lag > time.Second {
			if late++; late <= 5 {
				t.Errorf("ticket %s (shard %d): pending_payment streamed %s after the order's created_at, want within 1 s",
					adm[i].ref.TicketID, shard, lag.Round(time.Millisecond))
			}
		}
	}
	for shard, l := range lags {
		slices.Sort(l)
		t.Logf("shard %d: %d orders, pending_payment streamed after created_at: median %s, max %s",
			shard, len(l), l[len(l)/2].Round(time.Millisecond), l[len(l)-1].Round(time.Millisecond))
	}
	if late > 0 {
		t.Fatalf("%d of %d pending_payment events came more than 1 s after their order's created_at", late, n)
	}
}
