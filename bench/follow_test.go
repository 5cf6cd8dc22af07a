package bench

import (
	"encoding/json"
	"fmt"
	"net/http"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// ticketEvents is the fake's GET /tickets/{id}/events: the ticket at once,
// then each change (looked at every 5 ms) until it leaves the queue; with
// breakStreams a stream opened without Last-Event-ID ends after its first
// event, as an ingress that restarts would end it.
func (f *fakeServer) ticketEvents(w http.ResponseWriter, r *http.Request) {
	user, ok := userOf(w, r)
	if !ok {
		return
	}
	view := func() (map[string]any, bool) {
		f.mu.Lock()
		defer f.mu.Unlock()
		f.advanceLocked(time.Now())
		tk := f.tickets[r.PathValue("id")]
		if tk == nil || tk.user != user {
			return nil, false
		}
		return tk.view(), true
	}
	v, ok := view()
	if !ok {
		writeErr(w, http.StatusNotFound, "not_found")
		return
	}
	next := 1
	if n, err := strconv.Atoi(r.Header.Get("Last-Event-ID")); err == nil {
		next = n + 1
	}
	broken := f.breakStreams && r.Header.Get("Last-Event-ID") == ""
	w.Header().Set("Content-Type", "text/event-stream")
	w.WriteHeader(http.StatusOK)
	fmt.Fprint(w, "retry: 20\n\n")
	last := ""
	for {
		if st := fmt.Sprint(v["status"]); st != last {
			b, _ := json.Marshal(v)
			fmt.Fprintf(w, "id: %d\nevent: ticket\ndata: %s\n\n", next, b)
			w.(http.Flusher).Flush()
			next++
			last = st
			if st != statusQueued || broken {
				return
			}
		}
		select {
		case <-r.Context().Done():
			return
		case <-time.After(5 * time.Millisecond): // the fake's own pace of looking
		}
		v, _ = view()
	}
}

// runFollowing runs the bench against the fake at url with args, and returns
// its report and summary; anything but exit 0 fails the test.
func runFollowing(t *testing.T, url string, args ...string) (Report, string) {
	t.Helper()
	jsonPath := filepath.Join(t.TempDir(), "r.json")
	code, out, errOut := runMainForTest(t, benchArgs(url, append(args, "--json", jsonPath)...))
	if code != 0 {
		t.Fatalf("exit %d\nstdout:\n%s\nstderr:\n%s", code, out, errOut)
	}
	var rep Report
	readReport(t, jsonPath, &rep)
	return rep, out
}

// A run whose users follow their tickets through event streams polls no
// ticket, opens about one stream per ticket (again with Last-Event-ID when
// one breaks), and passes.
func TestFollowStreamAgainstFake(t *testing.T) {
	f, srv := newFakeServer(t)
	f.breakStreams = true
	rep, out := runFollowing(t, srv.URL, "--users", "40", "--stock", "12", "--pay-ratio", "0.5", "--follow", "stream")
	fw := rep.Follow
	if !rep.Pass || fw.Mode != followStream || rep.Config.Follow != followStream {
		t.Fatalf("report: pass %v, follow %+v", rep.Pass, fw)
	}
	tickets := rep.Users[outcomeTicket]
	// A ticket still queued when its first stream broke was followed again
	// with Last-Event-ID; one decided by then needed no second stream.
	if fw.Polls != 0 || fw.Streams != tickets+fw.Reconnects || fw.Reconnects == 0 || fw.Events < tickets || fw.Fallbacks != 0 {
		t.Errorf("following %d tickets: %+v, want no poll, a stream a ticket and one more a broken stream", tickets, fw)
	}
	if fw.PollsPerOrder == nil || *fw.PollsPerOrder != 0 || fw.StreamsPerOrder == nil || *fw.StreamsPerOrder < 1 {
		t.Errorf("per order: %+v", fw)
	}
	if ep := endpointOf(&rep, epTicketEvents); ep.Status["200"] != fw.Streams {
		t.Errorf("ticket_events status mix %v, want %d x 200", ep.Status, fw.Streams)
	}
	if !strings.Contains(out, "Following tickets (--follow stream)") || !strings.Contains(out, "ticket polls 0 (0.00 per order)") {
		t.Errorf("summary lacks the following section:\n%s", out)
	}
}

// A poll waits what the last answer's poll_after_ms says; without it (an
// older server, an error), twice the last wait up to pollCap.
func TestNextPollFollowsPollAfter(t *testing.T) {
	for _, c := range []struct {
		resp *apiResponse
		prev time.Duration
		want time.Duration
	}{
		{&apiResponse{Status: 200, Body: []byte(`{"status":"queued","position":9,"eta_seconds":null,"poll_after_ms":1500}`)}, 50 * time.Millisecond, 1500 * time.Millisecond},
		{&apiResponse{Status: 200, Body: []byte(`{"status":"queued"}`)}, 50 * time.Millisecond, 100 * time.Millisecond},
		{&apiResponse{Status: 200, Body: []byte(`{"status":"queued"}`)}, 400 * time.Millisecond, pollCap},
		{&apiResponse{Status: 503, Body: []byte(`{"poll_after_ms":9000}`)}, 100 * time.Millisecond, 200 * time.Millisecond},
		{nil, 100 * time.Millisecond, 200 * time.Millisecond},
	} {
		if got := nextPoll(c.resp, c.prev); got != c.want {
			t.Errorf("nextPoll(%v, %v) = %v, want %v", c.resp, c.prev, got, c.want)
		}
	}
}

// --follow takes poll or stream.
func TestFollowFlag(t *testing.T) {
	if _, err := parseConfig([]string{"--admin-token", "x", "--payment-secret", "y", "--follow", "carrier-pigeon"}, func(string) string { return "" }, &strings.Builder{}); err == nil || !strings.Contains(err.Error(), "--follow") {
		t.Errorf("--follow carrier-pigeon: %v, want an error naming --follow", err)
	}
	c, err := parseConfig([]string{"--admin-token", "x", "--payment-secret", "y"}, func(string) string { return "" }, &strings.Builder{})
	if err != nil || c.Follow != followPoll {
		t.Errorf("default --follow = %q %v, want poll", c.Follow, err)
	}
}

// The default run polls, and the report says how often.
func TestFollowPollReport(t *testing.T) {
	_, srv := newFakeServer(t)
	rep, out := runFollowing(t, srv.URL, "--users", "20", "--stock", "8", "--pay-ratio", "0")
	fw := rep.Follow
	if fw.Mode != followPoll || fw.Polls < rep.Users[outcomeTicket] || fw.Streams != 0 || fw.PollsPerOrder == nil || *fw.PollsPerOrder < 1 {
		t.Errorf("following by polling: %+v (%d tickets)", fw, rep.Users[outcomeTicket])
	}
	if !strings.Contains(out, "Following tickets (--follow poll)") {
		t.Errorf("summary lacks the following section:\n%s", out)
	}
}
