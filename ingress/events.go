package ingress

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/flashsale/flashsale"
)

// GET /api/v1/tickets/{id}/events streams the ticket as server-sent events
// (text/event-stream, for a browser's EventSource):
//
//	retry: 1000                   once, first: reconnect after a second
//	id: 7                         every event has an id: one more than the
//	event: ticket                 last (a reconnect's Last-Event-ID + 1 first)
//	data: {...}                   the JSON of GET /tickets/{id}
//
//	: keep-alive                  a comment every streamHeartbeat
//
// An event is sent at once (also on a reconnect with Last-Event-ID: the
// current state, whatever the client saw); on every status change (a worker's
// announcement reaches every ingress within milliseconds of the ticket's
// copy, see streams; a waiting ticket's release is announced too, see
// followWaiting); and when the place moves, at most once a second (the
// places of all followed tickets are read in one batch per sale each second).
// The stream ends after the first event whose status is neither waiting nor
// queued: a client that reconnects after that gets that state again, once,
// so a browser closes its EventSource on it. A place shown never grows
// within a stream.
//
// Identity and 404 are those of GET /tickets/{id}, answered before the stream
// starts; beyond Config.StreamsPerUser open streams of the user on this node
// the answer is 429 rate_limited. A stream is no request under the API's
// deadlines (see deadline): each of its reads has the read deadline, and each
// write a deadline of its own, which the server's WriteTimeout would
// otherwise cut (net/http lifts the read deadline itself once the request is
// read). The HTTP server's shutdown ends every stream (streams.Close): its
// clients reconnect.

// eventsRoute is the stream's route.
const eventsRoute = "/api/v1/tickets/:id/events"

const (
	// streamHeartbeat is the interval of the comment lines (the contract
	// asks for one at least every 15 s while nothing changes).
	streamHeartbeat = 10 * time.Second
	// streamRetry is the reconnection delay a stream asks of its client.
	streamRetry = time.Second
	// streamWriteDeadline bounds each write to a stream's client.
	streamWriteDeadline = 10 * time.Second
	// placeEvery is the least time between two events of one stream when the
	// place alone moved.
	placeEvery = time.Second
)

// eventStream is one stream's writer and what it showed last.
type eventStream struct {
	w      gin.ResponseWriter
	rc     *http.ResponseController
	id     uint64 // the next event's id
	status flashsale.TicketStatus
	pos    int       // the place shown last; 0: none
	at     time.Time // when the last event was sent
}

func (e *eventStream) write(s string) bool {
	_ = e.rc.SetWriteDeadline(time.Now().Add(streamWriteDeadline))
	if _, err := io.WriteString(e.w, s); err != nil {
		return false
	}
	return e.rc.Flush() == nil
}

// send writes v as the next event; false when the client is gone.
func (e *eventStream) send(v ticketView) bool {
	b, err := json.Marshal(v)
	if err != nil {
		return false
	}
	ok := e.write(fmt.Sprintf("id: %d\nevent: ticket\ndata: %s\n\n", e.id, b))
	e.id++
	e.status, e.at = v.Status, time.Now()
	if v.place != nil && v.Position != nil {
		e.pos = *v.Position
	}
	return ok
}

// streamRead is the context of one of a stream's reads: the request's, with
// the read deadline.
func (s *Server) streamRead(c *gin.Context) (context.Context, context.CancelFunc) {
	if s.cfg.ReadDeadline > 0 {
		return context.WithTimeout(c.Request.Context(), s.cfg.ReadDeadline)
	}
	return c.Request.Context(), func() {}
}

// announcedView is the view of an announced ticket, as its copy was written.
func announcedView(t *flashsale.Ticket) ticketView {
	v := ticketView{Ticket: *t}
	v.SetLines(t.Lines())
	if t.Status != flashsale.TicketPendingPayment {
		v.PayBy = nil
	}
	return v
}

// ticketEvents is the stream (see above).
func (s *Server) ticketEvents(c *gin.Context) {
	user, id := userOf(c), c.Param("id")
	done, ok := s.streams.open(user)
	if !ok {
		s.WriteError(c, flashsale.Errorf(flashsale.CodeRateLimited, "at most %d event streams of a user at a time on this node", s.cfg.StreamsPerUser))
		return
	}
	defer done()
	// Followed before the first read, so that no announcement falls between.
	f := s.streams.follow(flashsale.TicketRef{User: user, Ticket: id})
	defer s.streams.unfollow(f)
	// read reads the ticket under the read deadline, with its place when
	// placed (the first read; later ones look for a status change only: the
	// places come from the hub's batches).
	read := func(placed bool) (ticketView, error) {
		ctx, cancel := s.streamRead(c)
		defer cancel()
		t, err := s.lookupTicket(ctx, c, user, id)
		if err != nil || !placed {
			return ticketView{Ticket: *cmp.Or(t, &flashsale.Ticket{})}, err
		}
		return s.viewOf(ctx, t)
	}
	v, err := read(true)
	if err != nil {
		s.WriteError(c, err)
		return
	}
	s.openStreams.Inc()
	defer s.openStreams.Dec()
	e := &eventStream{w: c.Writer, rc: http.NewResponseController(c.Writer), id: 1}
	if last, err := strconv.ParseUint(c.GetHeader("Last-Event-ID"), 10, 63); err == nil {
		e.id = last + 1
	}
	h := c.Writer.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Accel-Buffering", "no")
	c.Status(http.StatusOK)
	// The hub knows the stream's sale and place before the first event
	// leaves: a client that reacts to it (or a batch that follows it at
	// once) never finds the stream unplaced.
	sale := v.Lines()[0].SaleID
	if v.Status == flashsale.TicketQueued && v.place != nil && v.Position != nil {
		s.streams.placed(f, sale, *v.Position)
	}
	if !e.write(fmt.Sprintf("retry: %d\n\n", streamRetry.Milliseconds())) || !e.send(v) {
		return
	}
	if v.Status == flashsale.TicketWaiting {
		if v, ok = s.followWaiting(c, f, e, v, read); !ok {
			return
		}
	}
	if v.Status != flashsale.TicketQueued {
		return
	}
	s.streams.placed(f, sale, e.pos)
	heartbeat := time.NewTicker(streamHeartbeat)
	defer heartbeat.Stop()
	reread := time.NewTicker(s.cfg.StreamReread)
	defer reread.Stop()
	later := time.NewTimer(0) // a moved place waiting for placeEvery to pass
	<-later.C
	pending := 0
	showPlace := func(pos int) bool {
		if e.pos > 0 && pos >= e.pos {
			return true // never shown growing; unchanged: nothing to send
		}
		if wait := placeEvery - time.Since(e.at); wait > 0 {
			pending = pos
			later.Reset(wait)
			return true
		}
		pending = 0
		return e.send(ticketView{Ticket: v.Ticket, place: s.estimate(sale, pos, time.Now())})
	}
	for {
		var next ticketView
		select {
		case <-c.Request.Context().Done():
			return
		case <-s.streams.closed:
			return
		case <-heartbeat.C:
			if !e.write(": keep-alive\n\n") {
				return
			}
			continue
		case <-later.C:
			if pending > 0 && !showPlace(pending) {
				return
			}
			continue
		case pos := <-f.moved:
			if !showPlace(pos) {
				return
			}
			continue
		case t := <-f.news:
			if t != nil { // announced: as its copy was written
				next = announcedView(t)
				break
			}
			// nil: read again, an announcement may have been missed.
			if next, err = read(false); err != nil {
				s.log.Debug("a ticket stream could not read its ticket; again later", "ticket", id, "err", err)
				continue
			}
		case <-reread.C:
			if next, err = read(false); err != nil {
				if errors.Is(err, flashsale.ErrNotFound) {
					return
				}
				s.log.Debug("a ticket stream could not read its ticket; again later", "ticket", id, "err", err)
				continue
			}
		}
		if next.Status == flashsale.TicketQueued {
			continue // still waiting: its place comes from the hub's batches
		}
		if next.Status != e.status {
			e.send(next)
			return
		}
	}
}
