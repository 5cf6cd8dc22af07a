package ingress

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"math"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/flashsale/flashsale"
	"github.com/flashsale/flashsale/internal/sse"
)

// These tests drive the ticket event streams (events.go, streams.go) and the
// places and estimates of queued tickets (place.go) through a real HTTP
// server (httptest) on the handler fixture: the announcements and the
// ticker's batches are called directly, as the running service would.

// fakeLine gives tickets the places a test sets (0 for any other).
type fakeLine struct {
	mu     sync.Mutex
	places map[string]int
	calls  int
}

func newFakeLine() *fakeLine { return &fakeLine{places: map[string]int{}} }

func (l *fakeLine) set(id string, p int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.places[id] = p
}

func (l *fakeLine) Places(_ context.Context, _ string, refs []flashsale.TicketRef) ([]int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.calls++
	out := make([]int, len(refs))
	for i, r := range refs {
		out[i] = l.places[r.Ticket]
	}
	return out, nil
}

// streamClient is one open stream of the fixture's server.
type streamClient struct {
	resp *http.Response
	r    *sse.Reader
}

// openStream opens the ticket's event stream as user (with Last-Event-ID
// when lastID is set); it returns the answer when it is not a stream.
func openStream(t *testing.T, base, id, user, lastID string) (*streamClient, *http.Response) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, base+"/api/v1/tickets/"+id+"/events", nil)
	if user != "" {
		req.Header.Set("X-User-ID", user)
	}
	if lastID != "" {
		req.Header.Set("Last-Event-ID", lastID)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	t.Cleanup(func() { cancel(); resp.Body.Close() })
	if resp.StatusCode != http.StatusOK {
		return nil, resp
	}
	if ct := resp.Header.Get("Content-Type"); ct != "text/event-stream" {
		t.Fatalf("stream's Content-Type %q", ct)
	}
	return &streamClient{resp: resp, r: sse.NewReader(resp.Body)}, resp
}

// next returns the stream's next ticket event, with the time it came,
// skipping the retry block and comments; io.EOF once the stream ended.
func (s *streamClient) next(t *testing.T) (sse.Event, map[string]any, time.Time, error) {
	t.Helper()
	for {
		ev, err := s.r.Next()
		if err != nil {
			return ev, nil, time.Now(), err
		}
		if ev.Comment || ev.Type == "" {
			continue
		}
		if ev.Type != "ticket" {
			t.Fatalf("event of type %q: %+v", ev.Type, ev)
		}
		var v map[string]any
		if err := json.Unmarshal([]byte(ev.Data), &v); err != nil {
			t.Fatalf("event data %q: %v", ev.Data, err)
		}
		return ev, v, time.Now(), nil
	}
}

// streamFixture is the handler fixture served over HTTP (closed when the test
// ends) with a queued ticket of u1 at position place; each of opts may
// change the server's Config first.
func streamFixture(t *testing.T, place int, opts ...func(*Config)) (*handlerFixture, *httptest.Server, string) {
	t.Helper()
	f := newHandlerFixture(t, fakeLifecycle{}, opts...)
	srv := httptest.NewServer(f.srv.Handler())
	t.Cleanup(srv.Close)
	id := f.queuedTicket(t, "u1")
	f.line.set(id, place)
	return f, srv, id
}

// queuedTicket puts a queued copy of a ticket of sale a, owned by user.
func (f *handlerFixture) queuedTicket(t *testing.T, user string) string {
	t.Helper()
	id := uuid.Must(uuid.NewV7()).String()
	f.stock.Queued(t.Context(), &flashsale.Ticket{ID: id, UserID: user, SaleID: "a", Quantity: 1, Status: flashsale.TicketQueued})
	return id
}

func pendingTicket(id string) *flashsale.Ticket {
	payBy := time.Now().Add(time.Minute).UTC().Truncate(time.Microsecond)
	t := &flashsale.Ticket{ID: id, Status: flashsale.TicketPendingPayment, OrderID: id, PayBy: &payBy}
	t.SetLines([]flashsale.Line{{SaleID: "a", Quantity: 1}})
	return t
}

// A stream sends the ticket at once, its place when it moves (never growing,
// at most once a second), its decision as announced, and ends.
func TestTicketEventsFollowATicketToItsDecision(t *testing.T) {
	f, srv, id := streamFixture(t, 5)
	s, resp := openStream(t, srv.URL, id, "u1", "")
	if s == nil {
		t.Fatalf("stream: %d", resp.StatusCode)
	}
	ev, v, first, err := s.next(t)
	if err != nil || ev.ID != "1" || v["status"] != "queued" || v["position"] != 5.0 || v["ticket_id"] != id {
		t.Fatalf("first event = %+v %v %v, want id 1, queued at position 5", ev, v, err)
	}
	if _, ok := v["eta_seconds"]; !ok || v["poll_after_ms"] == nil {
		t.Fatalf("first event %v lacks eta_seconds (null) or poll_after_ms", v)
	}
	all := func(string) bool { return true }
	f.line.set(id, 3)
	f.srv.streams.refresh(t.Context(), all)
	ev, v, at, err := s.next(t)
	if err != nil || ev.ID != "2" || v["position"] != 3.0 {
		t.Fatalf("after the place moved = %+v %v %v, want id 2 at position 3", ev, v, err)
	}
	if gap := at.Sub(first); gap < placeEvery-50*time.Millisecond {
		t.Errorf("the moved place came %s after the first event, want at most one a second", gap)
	}
	// A place read higher (it never is: the line only loses tickets) is not
	// shown; the decision comes as announced, and ends the stream.
	f.line.set(id, 4)
	f.srv.streams.refresh(t.Context(), all)
	f.srv.streams.deliver([]*flashsale.Ticket{pendingTicket("someone-else"), pendingTicket(id)})
	ev, v, _, err = s.next(t)
	if err != nil || ev.ID != "3" || v["status"] != "pending_payment" || v["order_id"] != id || v["pay_by"] == nil || v["position"] != nil {
		t.Fatalf("after the decision = %+v %v %v, want id 3 pending_payment with order_id and pay_by, no place", ev, v, err)
	}
	if ev, _, _, err := s.next(t); err != io.EOF {
		t.Fatalf("after the decision the stream goes on: %+v %v", ev, err)
	}
	if r := f.srv.pace.rate("a", time.Now().Add(time.Second)); r != 0 {
		t.Errorf("pace after one batch = %v, want unknown (0)", r)
	}
}

// A reconnect with Last-Event-ID gets the current state at once, numbered
// after it; a decided ticket's stream sends it and ends.
func TestTicketEventsReconnect(t *testing.T) {
	f, srv, id := streamFixture(t, 2)
	s, _ := openStream(t, srv.URL, id, "u1", "41")
	if ev, v, _, err := s.next(t); err != nil || ev.ID != "42" || v["position"] != 2.0 {
		t.Fatalf("reconnect's first event = %+v %v %v, want id 42 at position 2", ev, v, err)
	}
	f.stock.Queued(t.Context(), &flashsale.Ticket{ID: id, UserID: "u1", SaleID: "a", Quantity: 1, Status: flashsale.TicketSoldOut})
	s, _ = openStream(t, srv.URL, id, "u1", "42")
	if ev, v, _, err := s.next(t); err != nil || ev.ID != "43" || v["status"] != "sold_out" {
		t.Fatalf("reconnect to a decided ticket = %+v %v %v, want id 43 sold_out", ev, v, err)
	}
	if _, _, _, err := s.next(t); err != io.EOF {
		t.Fatalf("a decided ticket's stream goes on: %v", err)
	}
}

// Without announcements (missed, or none configured) a stream still gets the
// decision by reading its ticket again.
func TestTicketEventsReadAgainWithoutAnnouncements(t *testing.T) {
	f, srv, id := streamFixture(t, 1)
	s, _ := openStream(t, srv.URL, id, "u1", "")
	if _, v, _, err := s.next(t); err != nil || v["status"] != "queued" {
		t.Fatalf("first event %v %v", v, err)
	}
	decided := pendingTicket(id)
	decided.UserID = "u1"
	f.stock.Queued(t.Context(), decided)
	start := time.Now()
	_, v, at, err := s.next(t)
	if err != nil || v["status"] != "pending_payment" {
		t.Fatalf("after the copy changed: %v %v", v, err)
	}
	if d := at.Sub(start); d > f.srv.cfg.StreamReread+500*time.Millisecond {
		t.Errorf("the decision came %s after it was written, want within %s", d, f.srv.cfg.StreamReread)
	}
}

// A user holds at most StreamsPerUser streams on a node; the same identity
// rules as GET /tickets/{id}; CloseStreams ends every stream.
func TestTicketEventsLimitsAndIdentity(t *testing.T) {
	f, srv, id := streamFixture(t, 1)
	var open []*streamClient
	for range 4 {
		s, resp := openStream(t, srv.URL, id, "u1", "")
		if s == nil {
			t.Fatalf("stream: %d", resp.StatusCode)
		}
		if _, _, _, err := s.next(t); err != nil {
			t.Fatal(err)
		}
		open = append(open, s)
	}
	if s, resp := openStream(t, srv.URL, id, "u1", ""); s != nil || resp.StatusCode != http.StatusTooManyRequests || resp.Header.Get("Retry-After") == "" {
		t.Fatalf("5th stream of a user: %v, want 429 with Retry-After", resp.Status)
	}
	other := f.queuedTicket(t, "u2")
	if s, resp := openStream(t, srv.URL, other, "u2", ""); s == nil {
		t.Fatalf("another user's stream while u1 has 4: %d", resp.StatusCode)
	}
	for _, c := range []struct {
		user string
		want int
	}{{"u3", http.StatusNotFound}, {"", http.StatusUnauthorized}} {
		if s, resp := openStream(t, srv.URL, id, c.user, ""); s != nil || resp.StatusCode != c.want {
			t.Errorf("stream of u1's ticket as %q: %v, want %d", c.user, resp.Status, c.want)
		}
	}
	open[0].resp.Body.Close()
	var again *streamClient
	for deadline := time.Now().Add(5 * time.Second); again == nil && time.Now().Before(deadline); {
		if again, _ = openStream(t, srv.URL, id, "u1", ""); again == nil {
			time.Sleep(20 * time.Millisecond) // until the server saw the stream go
		}
	}
	if again == nil {
		t.Fatal("no stream once one of the four was closed")
	}
	f.srv.CloseStreams()
	for _, s := range append(open[1:], again) {
		for {
			if _, _, _, err := s.next(t); err != nil {
				if !errors.Is(err, io.EOF) && !errors.Is(err, io.ErrUnexpectedEOF) {
					t.Errorf("stream after CloseStreams: %v, want its end", err)
				}
				break
			}
		}
	}
}

// The pace is the tickets decided after the window's first batch over the
// time since it; the ETA is the place at that pace, and poll_after_ms half
// of it within its bounds.
func TestPaceAndEstimate(t *testing.T) {
	f := newHandlerFixture(t, fakeLifecycle{})
	p := f.srv.pace
	t0 := time.Now()
	if r := p.rate("a", t0); r != 0 {
		t.Fatalf("pace of a sale nothing was heard of = %v", r)
	}
	for i := range 5 { // 100 tickets every 500 ms: 200/s
		p.heard("a", 100, t0.Add(time.Duration(i)*500*time.Millisecond))
	}
	now := t0.Add(2 * time.Second)
	if r := p.rate("a", now); math.Abs(r-200) > 1 {
		t.Fatalf("pace = %v, want 200/s", r)
	}
	est := f.srv.estimate("a", 1000, now)
	if *est.Position != 1000 || est.ETA == nil || *est.ETA != 5 || est.PollAfter != 2500 {
		t.Fatalf("estimate at 1000 = position %d eta %v poll %d, want 5 s and 2500 ms", *est.Position, est.ETA, est.PollAfter)
	}
	if est := f.srv.estimate("a", 1, now); *est.ETA != 1 || est.PollAfter != 500 {
		t.Errorf("estimate at 1 = eta %d poll %d, want 1 s (rounded up) and 500 ms", *est.ETA, est.PollAfter)
	}
	if est := f.srv.estimate("a", 201, now); *est.ETA != 2 {
		t.Errorf("estimate at 201 = eta %d, want 2 s (1.005 rounded up)", *est.ETA)
	}
	if est := f.srv.estimate("a", 100000, now); est.PollAfter != 10000 {
		t.Errorf("estimate at 100000: poll %d, want the 10 s cap", est.PollAfter)
	}
	// The line stops moving: the pace falls, then is unknown.
	if r := p.rate("a", now.Add(3*time.Second)); r >= 200 {
		t.Errorf("pace 3 s after the last batch = %v, want below 200", r)
	}
	later := now.Add(paceWindow + 3*time.Second)
	if est := f.srv.estimate("a", 300, later); est.ETA != nil || est.PollAfter != 1500 {
		t.Errorf("estimate with no pace: eta %v poll %d, want null and 1500 ms (5 ms a place)", est.ETA, est.PollAfter)
	}
	if est := f.srv.estimate("a", 3, later); est.PollAfter != 1000 {
		t.Errorf("estimate with no pace at 3: poll %d, want 1 s", est.PollAfter)
	}
}
