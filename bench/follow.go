package bench

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"time"

	"github.com/flashsale/flashsale/api/apiclient"
	"github.com/flashsale/flashsale/internal/sse"
)

// How a user follows their ticket from the 202 to its decision (--follow):
//
//   - poll (the default): GET /tickets/{id}, the first look pollStart after
//     the 202, then after each answer's poll_after_ms (jittered over
//     [d/2, 3d/2)); an answer without it (an older server, an error) doubles
//     the wait up to pollCap, as before.
//   - stream: GET /tickets/{id}/events, read until the first event whose
//     status is not queued; a stream that breaks is opened again with
//     Last-Event-ID after the retry it asked for (1 s), and after
//     maxTransientErrors breaks the user polls instead. Streams have a
//     transport of their own, outside --conns: a stream holds its connection
//     while it waits, and would otherwise starve the crowd.
//
// The report's "Following tickets" section counts the polls and the streams
// per order.
const (
	followPoll   = "poll"
	followStream = "stream"
)

// epTicketEvents is the event stream of a ticket: one request per stream
// opened, its latency the time to the first event.
const epTicketEvents endpoint = "ticket_events"

// streamRetryDefault is the wait before a stream is opened again when the
// server named none.
const streamRetryDefault = time.Second

// followTicket follows the ticket to its decision, as --follow says; it
// reports whether the ticket was resolved.
func (r *run) followTicket(ctx context.Context, u *simUser, t *ticketTrack) bool {
	if r.cfg.Follow == followStream {
		return r.streamTicket(ctx, u, t)
	}
	return r.pollTicket(ctx, u, t)
}

// nextPoll is the wait before the next poll after resp: the poll_after_ms of
// a 200 answer that has it, else prev doubled, up to pollCap.
func nextPoll(resp *apiResponse, prev time.Duration) time.Duration {
	if resp != nil && resp.Status == http.StatusOK {
		var v apiclient.Ticket
		if json.Unmarshal(resp.Body, &v) == nil && v.PollAfterMs != nil && *v.PollAfterMs > 0 {
			return time.Duration(*v.PollAfterMs) * time.Millisecond
		}
	}
	return min(prev*2, pollCap)
}

// streamClient opens ticket event streams on a transport of its own.
type streamClient struct {
	base string
	hc   *http.Client
}

func newStreamClient(cfg Config) *streamClient {
	return &streamClient{base: cfg.URL, hc: &http.Client{
		Transport: &http.Transport{
			Proxy:                 nil,
			DialContext:           (&net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
			MaxIdleConnsPerHost:   256,
			IdleConnTimeout:       30 * time.Second,
			ResponseHeaderTimeout: cfg.requestTimeout,
		},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}}
}

func (s *streamClient) close() { s.hc.CloseIdleConnections() }

// errStreamEnded: the stream ended before the ticket left the queue.
var errStreamEnded = errors.New("the stream ended with the ticket still queued")

// streamOnce opens one stream of the ticket (with Last-Event-ID lastID
// unless "") and reads it until the ticket leaves the queue. It returns the
// last event's id, the retry the stream asked for, and the error that ended
// it (nil: the ticket was resolved and applied to t).
func (r *run) streamOnce(ctx context.Context, u *simUser, t *ticketTrack, lastID string) (string, time.Duration, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, r.streams.base+"/api/v1/tickets/"+t.id+"/events", nil)
	if err != nil {
		return lastID, 0, err
	}
	req.Header.Set("X-User-Id", u.id)
	req.Header.Set("Accept", "text/event-stream")
	req.Header.Set("User-Agent", "flashsale-bench")
	if lastID != "" {
		req.Header.Set("Last-Event-ID", lastID)
	}
	start := time.Now()
	resp, err := r.streams.hc.Do(req)
	if err != nil {
		if ctx.Err() == nil {
			r.rec.request(epTicketEvents, start, time.Since(start), statusNetError)
		}
		return lastID, 0, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		data, _ := io.ReadAll(io.LimitReader(resp.Body, maxResponseBody))
		ar := answerOf(resp, data)
		r.rec.request(epTicketEvents, start, time.Since(start), ar.key())
		return lastID, 0, fmt.Errorf("ticket events: %s", ar.key())
	}
	rd := sse.NewReader(resp.Body)
	first, retry := true, time.Duration(0)
	for {
		ev, err := rd.Next()
		if err != nil {
			if first && ctx.Err() == nil {
				r.rec.request(epTicketEvents, start, time.Since(start), statusNetError)
			}
			if err == io.EOF {
				err = errStreamEnded
			}
			return lastID, retry, err
		}
		if ev.Retry > 0 {
			retry = ev.Retry
		}
		if ev.Type != "ticket" {
			continue
		}
		lastID = ev.LastID
		if first {
			first = false
			r.rec.request(epTicketEvents, start, time.Since(start), "200")
		}
		r.rec.count("ticket_stream_events", 1)
		var tv apiclient.Ticket
		if err := json.Unmarshal([]byte(ev.Data), &tv); err != nil {
			return lastID, retry, fmt.Errorf("ticket event: %w", err)
		}
		t.apply(tv)
		if !undecided(t.status) {
			now := time.Now()
			t.resolvedAt = now
			r.rec.resolved(t.acceptedAt, now, hasOrder(t.status))
			return lastID, retry, nil
		}
	}
}

// streamTicket follows the ticket through its event stream (see above); it
// reports whether the ticket was resolved.
func (r *run) streamTicket(ctx context.Context, u *simUser, t *ticketTrack) bool {
	lastID := ""
	for breaks := 0; ; breaks++ {
		if breaks > 0 {
			r.rec.count("ticket_stream_reconnects", 1)
		}
		id, retry, err := r.streamOnce(ctx, u, t, lastID)
		if err == nil {
			return true
		}
		lastID = id
		if ctx.Err() != nil {
			u.detail = "run ended while the ticket was queued"
			return false
		}
		if breaks >= maxTransientErrors {
			r.rec.count("ticket_stream_fallback_to_poll", 1)
			return r.pollTicket(ctx, u, t)
		}
		if retry <= 0 {
			retry = streamRetryDefault
		}
		sleepCtx(ctx, u.jitter(retry))
	}
}

// FollowReport is how the users followed their tickets (--follow).
type FollowReport struct {
	// Mode is "poll" or "stream".
	Mode string `json:"mode"`
	// Polls counts the users' GET /tickets/{id} (not the final
	// verification's); Streams the event streams opened (reconnections
	// included); Events the ticket events received.
	Polls   int64 `json:"polls"`
	Streams int64 `json:"streams"`
	Events  int64 `json:"events"`
	// Reconnects counts streams opened again after one broke; Fallbacks the
	// users who gave up streaming and polled.
	Reconnects int64 `json:"reconnects"`
	Fallbacks  int64 `json:"fallbacks"`
	// Requests counts the users' requests: purchases, reservations, polls,
	// streams, order reads, payments, cancels (the final verification's
	// ticket reads not counted; its reads of orders no user read are). The
	// per-order figures divide by the orders created (absent without
	// orders).
	Requests         int64    `json:"requests"`
	PollsPerOrder    *float64 `json:"polls_per_order,omitempty"`
	StreamsPerOrder  *float64 `json:"streams_per_order,omitempty"`
	RequestsPerOrder *float64 `json:"requests_per_order,omitempty"`
}

// followReport reads how the run's users followed their tickets from its
// endpoints and counters.
func followReport(rep *Report) FollowReport {
	f := FollowReport{Mode: rep.Config.Follow, Polls: rep.Counters["ticket_polls"], Events: rep.Counters["ticket_stream_events"],
		Reconnects: rep.Counters["ticket_stream_reconnects"], Fallbacks: rep.Counters["ticket_stream_fallback_to_poll"]}
	if f.Mode == "" {
		f.Mode = followPoll
	}
	f.Requests = f.Polls
	for _, e := range rep.Endpoints {
		switch endpoint(e.Name) {
		case epCreateSale, epGetSale, epGetTicket, epDraw, epDrawScores: // the bench's own; the polls are counted above
			continue
		case epTicketEvents:
			f.Streams = e.Requests
		}
		f.Requests += e.Requests
	}
	if n := rep.Purchase.OrdersCreated; n > 0 {
		per := func(v int64) *float64 { x := float64(v) / float64(n); return &x }
		f.PollsPerOrder, f.StreamsPerOrder, f.RequestsPerOrder = per(f.Polls), per(f.Streams), per(f.Requests)
	}
	return f
}

// writeFollow prints the "Following tickets" section.
func writeFollow(w io.Writer, f FollowReport) {
	per := func(v *float64) string {
		if v == nil {
			return "-"
		}
		return strconv.FormatFloat(*v, 'f', 2, 64)
	}
	fmt.Fprintf(w, "\nFollowing tickets (--follow %s)\n", f.Mode)
	fmt.Fprintf(w, "  ticket polls %d (%s per order)  streams %d (%s per order, %d reconnects, %d fell back to polling)  events %d\n",
		f.Polls, per(f.PollsPerOrder), f.Streams, per(f.StreamsPerOrder), f.Reconnects, f.Fallbacks, f.Events)
	fmt.Fprintf(w, "  user requests %d (%s per order; the bench's sale creation, stock samples and final ticket reads not counted)\n", f.Requests, per(f.RequestsPerOrder))
}
