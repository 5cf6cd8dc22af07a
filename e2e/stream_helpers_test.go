package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"sort"
	"strconv"
	"time"

	"github.com/flashsale/flashsale/internal/sse"
)

// What the tests of issue 24 share: a ticket's place as GET /tickets/{id}
// and its event stream show it, and a reader of event streams.

// placeView is a ticket with its place (queued tickets).
type placeView struct {
	TicketID  string     `json:"ticket_id"`
	SaleID    string     `json:"sale_id"`
	Status    string     `json:"status"`
	OrderID   string     `json:"order_id"`
	PayBy     *time.Time `json:"pay_by"`
	Position  *int       `json:"position"`
	ETA       *int       `json:"eta_seconds"`
	PollAfter *int       `json:"poll_after_ms"`
	// Keys are the keys the JSON had; At is when it was decoded (as the
	// answer came).
	Keys map[string]bool `json:"-"`
	At   time.Time       `json:"-"`
}

// UnmarshalJSON decodes the view and notes its keys and the time.
func (v *placeView) UnmarshalJSON(b []byte) error {
	type plain placeView
	if err := json.Unmarshal(b, (*plain)(v)); err != nil {
		return err
	}
	var m map[string]json.RawMessage
	if err := json.Unmarshal(b, &m); err != nil {
		return err
	}
	v.Keys, v.At = map[string]bool{}, time.Now()
	for k := range m {
		v.Keys[k] = true
	}
	return nil
}

func decodePlace(b []byte) (placeView, error) {
	var v placeView
	if err := json.Unmarshal(b, &v); err != nil {
		return v, fmt.Errorf("decode %q: %w", b, err)
	}
	return v, nil
}

// placeProblem says what is wrong with a view's place fields, "" when
// nothing: a queued ticket has position (>= 1), eta_seconds (a number >= 0
// or null) and poll_after_ms (500 ms to 10 s); any other has none of them.
func placeProblem(v placeView) string {
	if v.Status != "queued" {
		if v.Keys["position"] || v.Keys["eta_seconds"] || v.Keys["poll_after_ms"] {
			return fmt.Sprintf("a %s ticket carries place fields %v", v.Status, v.Keys)
		}
		return ""
	}
	switch {
	case v.Position == nil || *v.Position < 1:
		return "a queued ticket without a position >= 1"
	case !v.Keys["eta_seconds"]:
		return "a queued ticket without eta_seconds"
	case v.ETA != nil && *v.ETA < 0:
		return fmt.Sprintf("eta_seconds %d", *v.ETA)
	case v.PollAfter == nil || *v.PollAfter < 500 || *v.PollAfter > 10000:
		return "poll_after_ms missing or outside [500, 10000]"
	}
	return ""
}

// places reads the tickets (owner and id) once (see readAll) and returns the
// views that answered 200 (each with the time its answer came, At), and the
// first problems.
func (c *client) places(refs []ticketRef) (map[string]placeView, []string) {
	return readAll[ticketRef, placeView](c, refs, func(r ticketRef) (string, string, string, string) {
		return "ticket", r.TicketID, pathTicket(r.TicketID), r.User
	})
}

// streamTransport is a transport for many long streams to one server: no
// limit of connections per host, no timeout on a response.
func streamTransport() *http.Transport {
	return &http.Transport{
		DialContext:         (&net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		MaxIdleConnsPerHost: 64,
		IdleConnTimeout:     30 * time.Second,
	}
}

// ticketStream is one open event stream of a ticket.
type ticketStream struct {
	resp   *http.Response
	r      *sse.Reader
	cancel context.CancelFunc
}

// openTicketStream opens GET /tickets/{id}/events on base as user (with
// Last-Event-ID unless lastID is ""). A stream is returned for a 200;
// anything else is returned as a reply.
func openTicketStream(hc *http.Client, base, ticketID, userID, lastID string) (*ticketStream, reply, error) {
	ctx, cancel := context.WithCancel(context.Background())
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+pathTicket(ticketID)+"/events", nil)
	if err != nil {
		cancel()
		return nil, reply{}, err
	}
	req.Header.Set("X-User-ID", userID)
	req.Header.Set("Accept", "text/event-stream")
	if lastID != "" {
		req.Header.Set("Last-Event-ID", lastID)
	}
	resp, err := hc.Do(req)
	if err != nil {
		cancel()
		return nil, reply{}, err
	}
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != "text/event-stream" {
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		cancel()
		return nil, reply{Status: resp.StatusCode, Header: resp.Header, Body: b}, nil
	}
	return &ticketStream{resp: resp, r: sse.NewReader(resp.Body), cancel: cancel}, reply{Status: resp.StatusCode, Header: resp.Header}, nil
}

// streamEvent is a ticket event (or, with Comment, a comment line) and when
// it was read.
type streamEvent struct {
	Comment bool
	ID      string
	View    placeView
	At      time.Time
}

// next reads the next ticket event or comment line (blocks without data are
// skipped); io.EOF once the stream ended.
func (s *ticketStream) next() (streamEvent, error) {
	for {
		ev, err := s.r.Next()
		if err != nil {
			return streamEvent{}, err
		}
		if ev.Comment {
			return streamEvent{Comment: true, At: time.Now()}, nil
		}
		if ev.Type == "" {
			continue
		}
		if ev.Type != "ticket" {
			return streamEvent{}, fmt.Errorf("an event of type %q", ev.Type)
		}
		v, err := decodePlace([]byte(ev.Data))
		if err != nil {
			return streamEvent{}, err
		}
		return streamEvent{ID: ev.ID, View: v, At: time.Now()}, nil
	}
}

// nextEvent is next without comment lines.
func (s *ticketStream) nextEvent() (streamEvent, error) {
	for {
		ev, err := s.next()
		if err != nil || !ev.Comment {
			return ev, err
		}
	}
}

func (s *ticketStream) close() {
	s.cancel()
	s.resp.Body.Close()
}

// eventID parses an event's id.
func eventID(ev streamEvent) int {
	n, err := strconv.Atoi(ev.ID)
	if err != nil {
		return -1
	}
	return n
}

// countBefore is how many of the sorted times are before x.
func countBefore(sorted []time.Time, x time.Time) int {
	return sort.Search(len(sorted), func(i int) bool { return !sorted[i].Before(x) })
}

// procRSS returns a process's resident set size in bytes (Linux).
func procRSS(pid int) (int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/statm", pid))
	if err != nil {
		return 0, err
	}
	var size, resident int64
	if _, err := fmt.Sscan(string(b), &size, &resident); err != nil {
		return 0, err
	}
	return resident * int64(os.Getpagesize()), nil
}

// pid is the process id of the running process.
func (p *proc) pid() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.cmd.Process.Pid
}
