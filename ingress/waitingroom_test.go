package ingress

import (
	"context"
	"io"
	"net/http"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/flashsale/flashsale"
)

// fakeWaitingLine holds line tickets by id, each with its position.
type fakeWaitingLine struct {
	WaitingLine // nil: the methods these tests never call
	mu          sync.Mutex
	tickets     map[string]*flashsale.Ticket
	pos         map[string]int
	reads       int // GetLineTicket and LinePosition calls: a MySQL read each
}

func (l *fakeWaitingLine) readCount() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.reads
}

func (l *fakeWaitingLine) set(t *flashsale.Ticket, pos int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.tickets[t.ID], l.pos[t.ID] = t, pos
}

func (l *fakeWaitingLine) GetLineTicket(_ context.Context, id string) (*flashsale.Ticket, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.reads++
	if t := l.tickets[id]; t != nil {
		return t, nil
	}
	return nil, flashsale.ErrNotFound
}

func (l *fakeWaitingLine) LinePosition(_ context.Context, _, id string) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.reads++
	return l.pos[id], nil
}

// WaitingPlaces is the position of each ticket still waiting, else 0.
func (l *fakeWaitingLine) WaitingPlaces(_ context.Context, _ string, ids []string) ([]int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := make([]int, len(ids))
	for i, id := range ids {
		if t := l.tickets[id]; t != nil && t.Status == flashsale.TicketWaiting {
			out[i] = l.pos[id]
		}
	}
	return out, nil
}

// waitingStream serves the handler fixture over HTTP with sale a drawn
// (a waiting room whose starts_at passed) and u1's ticket waiting in its
// line at position 2, and opens that ticket's stream; it returns the
// fixture, the line, the ticket and the stream, its first event read.
func waitingStream(t *testing.T, opts ...func(*Config)) (*handlerFixture, *fakeWaitingLine, *flashsale.Ticket, *streamClient) {
	t.Helper()
	line := &fakeWaitingLine{tickets: map[string]*flashsale.Ticket{}, pos: map[string]int{}}
	f, srv, _ := streamFixture(t, 0, append([]func(*Config){func(c *Config) { c.WaitingLine = line }}, opts...)...)
	f.sales["a"].WaitingRoom = &flashsale.WaitingRoom{OpensAt: time.Now().Add(-2 * time.Hour)}
	w := &flashsale.Ticket{ID: flashsale.NewTicketID("u1"), UserID: "u1", SaleID: "a", Quantity: 1, Status: flashsale.TicketWaiting}
	line.set(w, 2)
	s, resp := openStream(t, srv.URL, w.ID, "u1", "")
	if s == nil {
		b, _ := io.ReadAll(resp.Body)
		t.Fatalf("stream: %d %s", resp.StatusCode, b)
	}
	if ev, v, _, err := s.next(t); err != nil || ev.ID != "1" || v["status"] != "waiting" || v["position"] != 2.0 {
		t.Fatalf("first event = %+v %v %v, want id 1, waiting at position 2", ev, v, err)
	}
	return f, line, w, s
}

// released is w released from its line (queued), as the releaser writes and
// announces it.
func released(w *flashsale.Ticket) *flashsale.Ticket {
	q := &flashsale.Ticket{ID: w.ID, UserID: w.UserID, Status: flashsale.TicketQueued}
	q.SetLines(w.Lines())
	return q
}

// wantStatuses reads the stream to its end (within 5 s) and fails unless its
// events have the statuses want, in order, numbered on from 2.
func wantStatuses(t *testing.T, s *streamClient, want ...string) []map[string]any {
	t.Helper()
	stop := time.AfterFunc(5*time.Second, func() { s.resp.Body.Close() })
	defer stop.Stop()
	var got []string
	var views []map[string]any
	for {
		ev, v, _, err := s.next(t)
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("after %v: %v", got, err)
		}
		if want := strconv.Itoa(len(got) + 2); ev.ID != want {
			t.Errorf("event %v has id %q, want %s", v, ev.ID, want)
		}
		got, views = append(got, v["status"].(string)), append(views, v)
	}
	if len(got) != len(want) {
		t.Fatalf("stream after waiting: %v, want %v", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("stream after waiting: %v, want %v", got, want)
		}
	}
	return views
}

// A waiting ticket released, decided and its order cancelled in quick
// succession (well within the 900 ms between two reads of the line) reaches
// its stream as every status it passed through, in order, once each:
// waiting, queued (with its place in the pipeline's line), pending_payment,
// whose event ends the stream (contract: the first status neither waiting
// nor queued), never the cancellation read afterwards.
func TestTicketEventsWaitingTicketPassesThroughEveryStatus(t *testing.T) {
	f, line, w, s := waitingStream(t)
	q := released(w)
	f.line.set(w.ID, 3)
	f.stock.Queued(t.Context(), q)
	f.srv.streams.deliver([]*flashsale.Ticket{q})
	decided := pendingTicket(w.ID)
	decided.UserID = "u1"
	f.stock.Queued(t.Context(), decided)
	f.srv.streams.deliver([]*flashsale.Ticket{decided})
	cancelled := *decided
	cancelled.Status, cancelled.PayBy = flashsale.TicketCancelled, nil
	f.stock.Queued(t.Context(), &cancelled)
	line.set(&flashsale.Ticket{ID: w.ID, UserID: "u1", SaleID: "a", Quantity: 1, Status: flashsale.TicketQueued}, 0)

	views := wantStatuses(t, s, "queued", "pending_payment")
	if views[0]["position"] != 3.0 {
		t.Errorf("queued event %v, want its place in the pipeline's line (3)", views[0])
	}
	if views[1]["order_id"] != w.ID || views[1]["pay_by"] == nil {
		t.Errorf("pending_payment event %v lacks its order or pay_by", views[1])
	}
	if r := f.srv.pace.rate("a", time.Now().Add(time.Second)); r != 0 {
		t.Errorf("pace after one decision = %v, want unknown (0): a release is no decision", r)
	}
}

// A decision announced before the release (a quick worker) still comes
// after queued; with no release announced at all (lost), the decision comes
// alone within the grace.
func TestTicketEventsWaitingTicketDecidedBeforeItsRelease(t *testing.T) {
	f, _, w, s := waitingStream(t)
	decided := pendingTicket(w.ID)
	f.srv.streams.deliver([]*flashsale.Ticket{decided})
	f.srv.streams.deliver([]*flashsale.Ticket{released(w)})
	wantStatuses(t, s, "queued", "pending_payment")

	f, _, w, s = waitingStream(t)
	start := time.Now()
	f.srv.streams.deliver([]*flashsale.Ticket{pendingTicket(w.ID)})
	wantStatuses(t, s, "pending_payment")
	if d := time.Since(start); d > releaseGrace+500*time.Millisecond {
		t.Errorf("the decision came %s after its announcement, want within the grace %s", d, releaseGrace)
	}
}

// Without any announcement the stream reads its ticket: a position that
// moves, then the release (queued) once the line's row and the copy say so.
func TestTicketEventsWaitingTicketReadAgain(t *testing.T) {
	f, line, w, s := waitingStream(t)
	line.set(w, 1)
	if _, v, _, err := s.next(t); err != nil || v["status"] != "waiting" || v["position"] != 1.0 {
		t.Fatalf("after the line moved: %v %v, want waiting at position 1", v, err)
	}
	f.line.set(w.ID, 1)
	f.stock.Queued(t.Context(), released(w))
	if _, v, _, err := s.next(t); err != nil || v["status"] != "queued" || v["position"] != 1.0 {
		t.Fatalf("after the release: %v %v, want queued at position 1", v, err)
	}
}

// quietDecisions announces nothing.
type quietDecisions struct{}

func (quietDecisions) FollowDecisions(ctx context.Context, _ func([]*flashsale.Ticket), synced func()) error {
	synced()
	<-ctx.Done()
	return ctx.Err()
}

// With announcements, a waiting ticket's stream reads nothing of its own
// while the ticket waits: its moves come from the line's shared snapshot
// (WaitingPlaces), and the ticket is read once, when the snapshot shows it
// no longer waiting (here: left on another node, unannounced).
func TestTicketEventsWaitingTicketReadsNothingWhileItWaits(t *testing.T) {
	_, line, w, s := waitingStream(t, func(c *Config) { c.Decisions = quietDecisions{} })
	opened := line.readCount()
	line.set(w, 1)
	if _, v, _, err := s.next(t); err != nil || v["status"] != "waiting" || v["position"] != 1.0 {
		t.Fatalf("after the line moved: %v %v, want waiting at position 1", v, err)
	}
	left := *w
	left.Status = flashsale.TicketCancelled
	line.set(&left, 0)
	if _, v, _, err := s.next(t); err != nil || v["status"] != "cancelled" {
		t.Fatalf("after the ticket left: %v %v, want cancelled", v, err)
	}
	if n := line.readCount() - opened; n != 1 {
		t.Errorf("the stream read its ticket's line row %d times after its first event, want once (when it left)", n)
	}
}

// A waiting ticket deep in a drawn line is told to look again in 30 s, not
// the 10 s of a queued ticket: a line of 70,000 would poll 7,000 times a
// second.
func TestWaitingTicketDeepInTheLinePollsSeldom(t *testing.T) {
	line := &fakeWaitingLine{tickets: map[string]*flashsale.Ticket{}, pos: map[string]int{}}
	f := newHandlerFixture(t, fakeLifecycle{}, func(c *Config) { c.WaitingLine = line })
	f.sales["a"].WaitingRoom = &flashsale.WaitingRoom{OpensAt: time.Now().Add(-2 * time.Hour)}
	deep := &flashsale.Ticket{ID: flashsale.NewTicketID("u1"), UserID: "u1", SaleID: "a", Quantity: 1, Status: flashsale.TicketWaiting}
	line.set(deep, 50000)
	code, v := f.send(t, http.MethodGet, "/api/v1/tickets/"+deep.ID, "u1", "")
	if code != http.StatusOK || v["position"] != 50000.0 || v["poll_after_ms"] != float64(pollMaxWaiting.Milliseconds()) {
		t.Errorf("waiting 50,000th: %d %v, want position 50000, poll_after_ms %d", code, v, pollMaxWaiting.Milliseconds())
	}
}
