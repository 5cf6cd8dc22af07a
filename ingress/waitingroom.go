package ingress

import (
	"context"
	"encoding/hex"
	"errors"
	"math/rand/v2"
	"net/http"
	"regexp"
	"strconv"
	"sync"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/flashsale/flashsale"
	"github.com/flashsale/flashsale/admission"
)

// WaitingLine is the book of record's part in the waiting rooms' lines (see
// docs/protocols.md, "The waiting room"): what the sale view and the draw's
// endpoints read.
type WaitingLine interface {
	admission.WaitingLine
	// GetLineTicket returns a ticket that entered a line (with its user), as
	// the line has it, or an error wrapping flashsale.ErrNotFound.
	GetLineTicket(ctx context.Context, id string) (*flashsale.Ticket, error)
	// LeaveLine makes the user's waiting ticket cancelled and returns it
	// (unchanged when already cancelled); flashsale.ErrConflict in any other
	// status, flashsale.ErrNotFound when the user has no such ticket in a line.
	LeaveLine(ctx context.Context, userID, id string, at time.Time) (*flashsale.Ticket, error)
	// LinePosition returns 1 + the tickets waiting ahead of the waiting
	// ticket id in its sale's line (0 when it is not waiting there).
	LinePosition(ctx context.Context, saleID, id string) (int, error)
	// WaitingPlaces returns, for each of ids (tickets of the sale's line),
	// its place as a snapshot of the line that this process's readers share
	// has it, without reading each ticket: >= 1 waiting at that position
	// (lagging the line by about a second), 0 no longer waiting (released,
	// left, ended) or not in the line, -1 not known yet (seen waiting after
	// the snapshot was read).
	WaitingPlaces(ctx context.Context, saleID string, ids []string) ([]int, error)
	// LineEntries counts the tickets waiting in the sale's line.
	LineEntries(ctx context.Context, saleID string) (int, error)
	// DrawnEntries counts the tickets of the sale's draw: those waiting in
	// its line at starts_at.
	DrawnEntries(ctx context.Context, sale *flashsale.Sale) (int, error)
	// DrawScores returns at most limit of the draw's scores greater than
	// after ("" for the first), ascending.
	DrawScores(ctx context.Context, sale *flashsale.Sale, after string, limit int) ([]string, error)
}

// MaxDrawScores is the most scores /draw/scores answers at once, and its
// default page.
const MaxDrawScores = 1000

// lowerHex is the shape of a score: lower-case hex.
var lowerHex = regexp.MustCompile(`^[0-9a-f]{1,64}$`)

// lineEntries is the sale view's waiting_room.entries (0 without a
// WaitingLine).
func (s *Server) lineEntries(ctx context.Context, sale *flashsale.Sale) (int, error) {
	if s.cfg.WaitingLine == nil {
		return 0, nil
	}
	n, err := s.cfg.WaitingLine.LineEntries(ctx, sale.ID)
	if err != nil {
		return 0, flashsale.Unavailable(err, "cannot count the line now; retry")
	}
	return n, nil
}

// drawnSale finds the sale of a draw request: 404 for an unknown sale or one
// without a waiting room, 409 not_started before its starts_at.
func (s *Server) drawnSale(c *gin.Context) (*flashsale.Sale, error) {
	sale, err := s.cfg.Sales.Get(c.Request.Context(), c.Param("id"))
	if err != nil {
		return nil, err
	}
	if sale.WaitingRoom == nil || s.cfg.WaitingLine == nil {
		return nil, flashsale.Errorf(flashsale.CodeNotFound, "sale %q has no waiting room", sale.ID)
	}
	if !sale.Drawn(s.cfg.Now()) {
		return nil, flashsale.Errorf(flashsale.CodeNotStarted, "the line of sale %q is drawn at its starts_at", sale.ID)
	}
	return sale, nil
}

// getDraw is GET /api/v1/sales/{id}/draw: the commitment, the revealed
// seed and the number of drawn entries.
func (s *Server) getDraw(c *gin.Context) {
	sale, err := s.drawnSale(c)
	if err != nil {
		s.WriteError(c, err)
		return
	}
	n, err := s.drawnEntries(c.Request.Context(), sale)
	if err != nil {
		s.WriteError(c, flashsale.Unavailable(err, "cannot count the draw now; retry"))
		return
	}
	c.JSON(http.StatusOK, gin.H{"commitment": sale.WaitingRoom.Commitment(),
		"seed": hex.EncodeToString(sale.WaitingRoom.Seed), "entries": n})
}

// getDrawScores is GET /api/v1/sales/{id}/draw/scores?after=&limit=: a page
// of the draw's scores, ascending.
func (s *Server) getDrawScores(c *gin.Context) {
	after, hasAfter := c.GetQuery("after")
	if hasAfter && !lowerHex.MatchString(after) {
		s.WriteError(c, invalid("after", "must be 1 to 64 lower-case hex digits"))
		return
	}
	limit := MaxDrawScores
	if v, ok := c.GetQuery("limit"); ok {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > MaxDrawScores {
			s.WriteError(c, invalid("limit", "must be between 1 and %d", MaxDrawScores))
			return
		}
		limit = n
	}
	sale, err := s.drawnSale(c)
	if err != nil {
		s.WriteError(c, err)
		return
	}
	scores, err := s.cfg.WaitingLine.DrawScores(c.Request.Context(), sale, after, limit)
	if err != nil {
		s.WriteError(c, flashsale.Unavailable(err, "cannot read the draw now; retry"))
		return
	}
	if scores == nil {
		scores = []string{}
	}
	c.JSON(http.StatusOK, gin.H{"scores": scores})
}

// withWaitingLine is an admission config that sends the purchases of sales
// with a waiting room to line (none when line is nil).
func withWaitingLine(cfg admission.Config, line WaitingLine, levels admission.Levels) admission.Config {
	if line != nil {
		cfg.WaitingLine, cfg.Levels = line, levels
	}
	return cfg
}

// lineTicket looks a ticket up in the waiting rooms' lines, for a lookup that
// found it neither in the fast copies nor in the orders' book: a ticket
// waiting (or that left its line without an order) lives only there.
func (s *Server) lineTicket(ctx context.Context, id string) (*flashsale.Ticket, error) {
	if s.cfg.WaitingLine == nil {
		return nil, flashsale.Errorf(flashsale.CodeNotFound, "no ticket %q", id)
	}
	return s.cfg.WaitingLine.GetLineTicket(ctx, id)
}

// waitingPlace is the place of a waiting ticket: its position in its line
// from the draw on (null before), and the estimate at the sale's pace.
func (s *Server) waitingPlace(ctx context.Context, t *flashsale.Ticket) (*place, error) {
	saleID := t.Lines()[0].SaleID
	sale, err := s.cfg.Sales.Get(ctx, saleID)
	if err != nil {
		return nil, err
	}
	if now := s.cfg.Now(); !sale.Drawn(now) {
		return &place{PollAfter: int(untilDrawn(sale.StartsAt.Sub(now)).Milliseconds())}, nil
	}
	pos := 0
	if s.cfg.WaitingLine != nil {
		if pos, err = s.cfg.WaitingLine.LinePosition(ctx, saleID, t.ID); err != nil {
			return nil, flashsale.Unavailable(err, "cannot read the ticket's place now; retry")
		}
	}
	return s.estimateUpTo(saleID, pos, time.Now(), pollMaxWaiting), nil
}

// untilDrawn is a waiting ticket's poll_after before the draw, left before
// it: nothing about the ticket moves until then but its owner's cancel, so
// its poller looks again once the draw is revealed, half a second to a
// second after it (spread, so that a line of pollers does not come at once).
func untilDrawn(left time.Duration) time.Duration {
	return max(left, 0) + pollMin + rand.N(time.Second-pollMin)
}

// leaveLine is POST /api/v1/tickets/{id}/cancel: a waiting ticket leaves its
// line (200 with the ticket, cancelled; again: 200 unchanged); a ticket in
// any other status is 409 conflict.
func (s *Server) leaveLine(c *gin.Context) {
	ctx, user, id := c.Request.Context(), userOf(c), c.Param("id")
	var none struct{}
	if err := BindJSON(c, &none); err != nil {
		s.WriteError(c, err)
		return
	}
	var t *flashsale.Ticket
	err := flashsale.Errorf(flashsale.CodeNotFound, "no ticket %q", id)
	if s.cfg.WaitingLine != nil {
		t, err = s.cfg.WaitingLine.LeaveLine(ctx, user, id, s.cfg.Now())
	}
	if errors.Is(err, flashsale.ErrNotFound) {
		// Not in a line: a ticket of an ordinary purchase (409), or none (404).
		if _, lerr := s.lookupTicket(ctx, c, user, id); lerr != nil {
			s.WriteError(c, lerr)
			return
		}
		err = flashsale.Errorf(flashsale.CodeConflict, "ticket %q is not waiting in a line (an order is cancelled through its order)", id)
	}
	if err != nil {
		s.WriteError(c, err)
		return
	}
	s.streams.wake(id)    // this node's streams of it: cancelled now, not at the next snapshot
	t.SetLines(t.Lines()) // a ticket's view lists its items (see lookupTicket)
	v, err := s.viewOf(ctx, t)
	if err != nil {
		s.WriteError(c, err)
		return
	}
	c.JSON(http.StatusOK, v)
}

// waitingReread is how often the event stream of a waiting ticket looks at
// its place in the line's shared snapshot (WaitingLine.WaitingPlaces, read
// once a second per process and sale, not per stream): a waiting room's line
// moves in MySQL, which announces neither the moves nor the tickets it ends
// (left on another node, sold_out), so they are seen there (within about
// 2 s: the snapshot's age and this).
const waitingReread = 900 * time.Millisecond

// releaseGrace is how long the stream of a waiting ticket whose decision was
// announced first waits for the announcement of its release: the releaser
// announces a release once the broker confirmed its purchase, and a quick
// worker may announce the decision before that reaches this ingress.
const releaseGrace = 500 * time.Millisecond

// followWaiting streams a waiting ticket (its first event first, sent) until
// it is no longer waiting, and returns its last view, sent (false when the
// stream is over: the client left, the server closes streams).
//
// Every waitingReread it looks the ticket up in the line's shared snapshot
// (see waitingReread): a new place (from the draw on) is sent, a ticket that
// the snapshot shows no longer waiting is read (once: its status changed),
// and nothing else reads MySQL for it. Without announcements (no
// Decisions) the ticket is read every StreamReread too. A comment goes out at
// least every streamHeartbeat. The release and the decisions are announced
// (f.news, the stream follows its ticket id from the start), and so is a
// leave through this node (nil: read again): a released ticket is sent
// queued at once, with its place in the pipeline's line, and is followed on
// like any queued ticket; a decision announced before the release waits up
// to releaseGrace for it, so that queued is sent first. A read never goes
// ahead of the announcements: while one is pending, what the read found is
// left to it, so a ticket released, decided and its order cancelled between
// two looks is sent queued and pending_payment (whose event ends the
// stream), not cancelled. Only when the announcements are lost (Redis
// pub/sub delivers at most once) does a read show a later status alone (a
// lost release: once the snapshot shows the ticket released).
func (s *Server) followWaiting(c *gin.Context, f *follower, e *eventStream, first ticketView, read func(placed bool) (ticketView, error)) (ticketView, bool) {
	every := time.NewTicker(waitingReread)
	defer every.Stop()
	heartbeat := time.NewTicker(streamHeartbeat)
	defer heartbeat.Stop()
	var reread <-chan time.Time
	if s.cfg.Decisions == nil {
		t := time.NewTicker(s.cfg.StreamReread)
		defer t.Stop()
		reread = t.C
	}
	grace := time.NewTimer(releaseGrace)
	grace.Stop()
	defer grace.Stop()
	var decided *flashsale.Ticket // announced before the release
	// released sends v (queued), then the decision announced before it.
	released := func(v ticketView) (ticketView, bool) {
		if !e.send(v) {
			return ticketView{}, false
		}
		if decided == nil {
			return v, true
		}
		d := announcedView(decided)
		return d, e.send(d)
	}
	for {
		var v ticketView
		var err error
		select {
		case <-c.Request.Context().Done():
			return ticketView{}, false
		case <-s.streams.closed:
			return ticketView{}, false
		case <-heartbeat.C:
			if !e.write(": keep-alive\n\n") {
				return ticketView{}, false
			}
			continue
		case <-grace.C: // no release heard: the decision alone
			d := announcedView(decided)
			return d, e.send(d)
		case t := <-f.news:
			switch {
			case t == nil: // read again (an announcement may have been missed)
				v, err = read(true)
			case t.Status == flashsale.TicketQueued:
				return released(s.releasedView(c, t))
			case decided == nil && t.Status != flashsale.TicketWaiting:
				decided = t
				grace.Reset(releaseGrace)
				continue
			default:
				continue
			}
		case <-reread:
			v, err = read(true)
		case <-every.C:
			var known bool
			if v, known, err = s.waitingLook(c, first); err == nil && !known {
				continue
			}
		}
		if err != nil {
			s.log.Debug("a waiting ticket's stream could not read it; again later", "ticket", c.Param("id"), "err", err)
			continue
		}
		pos := 0
		if v.place != nil && v.Position != nil {
			pos = *v.Position
		}
		switch {
		case v.Status == e.status && (pos == 0 || pos >= e.pos && e.pos > 0):
			continue // unchanged (a place is never shown growing)
		case v.Status == flashsale.TicketQueued:
			return released(v)
		case v.Status != flashsale.TicketWaiting && (decided != nil || len(f.news) > 0):
			continue // the announcements go first
		}
		if !e.send(v) {
			return ticketView{}, false
		}
		if v.Status != flashsale.TicketWaiting {
			return v, true
		}
	}
}

// waitingLook is what the line's shared snapshot says of the waiting ticket
// of first (the stream's first view): its view with its place when it is
// still waiting there and the sale was drawn, or the ticket read anew when
// the snapshot shows it no longer waiting; known is false when there is
// nothing new to tell (before the draw, or not in the snapshot yet).
func (s *Server) waitingLook(c *gin.Context, first ticketView) (v ticketView, known bool, err error) {
	ctx, cancel := s.streamRead(c)
	defer cancel()
	t := &first.Ticket
	sale := t.Lines()[0].SaleID
	places, err := s.cfg.WaitingLine.WaitingPlaces(ctx, sale, []string{t.ID})
	switch {
	case err != nil:
		return v, false, err
	case places[0] < 0:
		return v, false, nil
	case places[0] == 0: // no longer waiting: its status
		return s.leftView(ctx, c, t.ID)
	}
	sl, err := s.cfg.Sales.Get(ctx, sale)
	if err != nil {
		return v, false, err
	}
	if !sl.Drawn(s.cfg.Now()) {
		return v, false, nil
	}
	return ticketView{Ticket: *t, place: s.estimateUpTo(sale, places[0], time.Now(), pollMaxWaiting)}, true, nil
}

// releasedView is the view of a ticket announced released: queued, with its
// place in the pipeline's line (unknown when it cannot be read now).
func (s *Server) releasedView(c *gin.Context, t *flashsale.Ticket) ticketView {
	ctx, cancel := s.streamRead(c)
	defer cancel()
	a := announcedView(t)
	a.UserID = userOf(c) // an announcement names no user; the stream's owns the ticket
	v, err := s.viewOf(ctx, &a.Ticket)
	if err != nil {
		s.log.Debug("a released ticket's place could not be read; sent unknown", "ticket", t.ID, "err", err)
		v.place = s.estimate(t.Lines()[0].SaleID, 0, time.Now())
	}
	return v
}

// leftView is the view of a ticket that left its line: as its line row has
// it when it left without an order (cancelled, or ended sold_out: one read,
// which matters when a sale's line ends thousands of streams at once), else
// as any lookup finds it (released: its copy, or the orders' book).
func (s *Server) leftView(ctx context.Context, c *gin.Context, id string) (ticketView, bool, error) {
	user := userOf(c)
	lt, err := s.cfg.WaitingLine.GetLineTicket(ctx, id)
	if err == nil && lt.UserID == user && (lt.Status == flashsale.TicketCancelled || lt.Status == flashsale.TicketSoldOut) {
		v := ticketView{Ticket: *lt}
		v.SetLines(lt.Lines())
		v.PayBy = nil
		return v, true, nil
	}
	if lt, err = s.lookupTicket(ctx, c, user, id); err != nil {
		return ticketView{}, false, err
	}
	v, err := s.viewOf(ctx, lt)
	return v, err == nil, err
}

// drawSettled is how long after starts_at a line's drawn set is final: the
// entries admitted before starts_at commit within admission.EntryDeadline.
const drawSettled = 5 * time.Second

// drawCounts remembers each settled draw's count: the count reads every
// drawn entry's index row (4.4 s for 1,000,000 here, over the read deadline),
// and the drawn set never changes once settled. One count runs per sale at a
// time, detached from the requests that wait for it (up to their deadline).
type drawCounts struct {
	mu sync.Mutex
	m  map[string]*drawCount
}

type drawCount struct {
	done chan struct{}
	n    int
	err  error
}

// drawnEntries is the number of the sale's drawn entries, counted once per
// process after the draw settled (a failed count is tried again by the next
// request).
func (s *Server) drawnEntries(ctx context.Context, sale *flashsale.Sale) (int, error) {
	if s.cfg.Now().Before(sale.StartsAt.Add(drawSettled)) {
		return s.cfg.WaitingLine.DrawnEntries(ctx, sale)
	}
	d := &s.drawn
	d.mu.Lock()
	if d.m == nil {
		d.m = map[string]*drawCount{}
	}
	dc, ok := d.m[sale.ID]
	if !ok {
		dc = &drawCount{done: make(chan struct{})}
		d.m[sale.ID] = dc
		go func() {
			cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Minute)
			defer cancel()
			dc.n, dc.err = s.cfg.WaitingLine.DrawnEntries(cctx, sale)
			if dc.err != nil {
				d.mu.Lock()
				delete(d.m, sale.ID)
				d.mu.Unlock()
			}
			close(dc.done)
		}()
	}
	d.mu.Unlock()
	select {
	case <-dc.done:
		return dc.n, dc.err
	case <-ctx.Done():
		return 0, ctx.Err()
	}
}
