package ingress

import (
	"context"
	"math"
	"sync"
	"time"

	"github.com/flashsale/flashsale"
)

// Every queued ticket knows its place: GET /tickets/{id} and its event stream
// answer a queued ticket with
//
//   - position: 1 + the tickets of its sale ahead of it still queued (the
//     stock store's line, Line.Places: scored by Redis's clock at the claim,
//     left when a ticket is decided or given up). It never grows: entries
//     only leave the line, and a newcomer joins behind everyone. A ticket no
//     longer in the line while its copy still says queued is being decided
//     right now: position 1.
//   - eta_seconds: position ÷ the sale's pace, rounded up to whole seconds
//     (a wait of 1.2 s is no "1 s"); null when the pace
//     is unknown (nothing decided in the last paceWindow). The pace is what
//     this ingress heard of the sale's decisions (Decisions: every ingress
//     hears every worker's announcements): tickets decided per second over
//     the last paceWindow. No Redis command is spent on it.
//   - poll_after_ms: when a client that polls should look again: half the
//     ETA, within [500 ms, 10 s]; without an ETA, 5 ms per place within
//     [1 s, 10 s] (the line is not moving, or the sale just started); for a
//     waiting ticket within [.., 30 s] (pollMaxWaiting). A client that
//     follows it polls a few times per wait instead of every 100 ms.
//
// For a bundle, the place is in the line of its first sale.

// Line is where queued tickets stand in their sales' lines.
type Line interface {
	// Places returns, for each ticket of the sale (its user and id), 1 + the
	// tickets of the sale ahead of it still in the line; 0 for a ticket not
	// in it.
	Places(ctx context.Context, saleID string, tickets []flashsale.TicketRef) ([]int, error)
}

// place is what a queued ticket carries besides the ticket itself.
type place struct {
	Position  *int `json:"position"`
	ETA       *int `json:"eta_seconds"`
	PollAfter int  `json:"poll_after_ms"`
}

// ticketView is a ticket as GET /tickets/{id} and its events show it: the
// place's fields only for a queued ticket (a nil place adds none).
type ticketView struct {
	flashsale.Ticket
	*place
}

// Bounds of poll_after_ms.
const (
	pollMin        = 500 * time.Millisecond
	pollMinUnknown = time.Second
	pollMax        = 10 * time.Second
	pollPerPlace   = 5 * time.Millisecond
)

// viewOf is the view of t (as lookupTicket returns it): a queued ticket with
// its place in its sale's line read now.
func (s *Server) viewOf(ctx context.Context, t *flashsale.Ticket) (ticketView, error) {
	v := ticketView{Ticket: *t}
	if t.Status == flashsale.TicketWaiting {
		var err error
		v.place, err = s.waitingPlace(ctx, t)
		return v, err
	}
	if t.Status != flashsale.TicketQueued {
		return v, nil
	}
	sale := t.Lines()[0].SaleID
	pos := 0
	if s.cfg.Line != nil {
		places, err := s.cfg.Line.Places(ctx, sale, []flashsale.TicketRef{{User: t.UserID, Ticket: t.ID}})
		if err != nil {
			return v, err
		}
		pos = max(places[0], 1)
	}
	v.place = s.estimate(sale, pos, time.Now())
	return v, nil
}

// pollMaxWaiting is pollMax for a waiting ticket (in a waiting room's line,
// after the draw): the same rules within [500 ms, 30 s]. Deep in a line of
// 100,000 its wait is minutes, and at 10 s each of its tickets would poll
// every 10 s meanwhile (7,000 polls a second for 70,000 waiting); what it
// gives up: a ticket ended sold_out unannounced is seen up to 30 s late by
// a poller (a stream shows it within about 2 s).
const pollMaxWaiting = 30 * time.Second

// estimate is the place of a queued ticket at position pos (0: unknown,
// shown as null) in the sale's line at now.
func (s *Server) estimate(sale string, pos int, now time.Time) *place {
	return s.estimateUpTo(sale, pos, now, pollMax)
}

// estimateUpTo is estimate with poll_after_ms at most most.
func (s *Server) estimateUpTo(sale string, pos int, now time.Time, most time.Duration) *place {
	p := &place{PollAfter: int(min(max(time.Duration(pos)*pollPerPlace, pollMinUnknown), most).Milliseconds())}
	if pos == 0 {
		return p
	}
	p.Position = &pos
	if rate := s.pace.rate(sale, now); rate > 0 {
		eta := int(math.Ceil(float64(pos) / rate))
		p.ETA = &eta
		p.PollAfter = int(min(max(time.Duration(eta)*time.Second/2, pollMin), most).Milliseconds())
	}
	return p
}

// paceWindow is how far back a sale's pace looks.
const paceWindow = 5 * time.Second

// paceBook measures each sale's pace from the decisions this ingress heard:
// per sale, the batches of decided tickets of the last paceWindow and when
// each was heard. The pace is the tickets decided after the first batch of
// the window over the time since that batch (the first one's tickets were
// decided before it was heard, over a span the window does not see), so a
// stream of batches gives its rate and a pause lowers it. Safe for concurrent
// use.
type paceBook struct {
	mu    sync.Mutex
	sales map[string][]paceMark
}

type paceMark struct {
	at time.Time
	n  int
}

func newPaceBook() *paceBook { return &paceBook{sales: map[string][]paceMark{}} }

// heard records n tickets of the sale decided at at.
func (p *paceBook) heard(sale string, n int, at time.Time) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.sales[sale] = append(trimMarks(p.sales[sale], at), paceMark{at, n})
}

// rate is the sale's pace at now in tickets per second; 0 when unknown
// (fewer than two batches heard within paceWindow).
func (p *paceBook) rate(sale string, now time.Time) float64 {
	p.mu.Lock()
	defer p.mu.Unlock()
	marks := trimMarks(p.sales[sale], now)
	if len(marks) == 0 {
		delete(p.sales, sale)
		return 0
	}
	p.sales[sale] = marks
	span := now.Sub(marks[0].at).Seconds()
	if len(marks) < 2 || span <= 0 {
		return 0
	}
	n := 0
	for _, m := range marks[1:] {
		n += m.n
	}
	return float64(n) / span
}

// heardWithin reports whether a decision of the sale was heard within d
// before now.
func (p *paceBook) heardWithin(sale string, d time.Duration, now time.Time) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	marks := p.sales[sale]
	return len(marks) > 0 && now.Sub(marks[len(marks)-1].at) < d
}

// forget drops the sales nothing was heard of within paceWindow of now.
func (p *paceBook) forget(now time.Time) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for sale, marks := range p.sales {
		if len(trimMarks(marks, now)) == 0 {
			delete(p.sales, sale)
		}
	}
}

// trimMarks drops the marks older than paceWindow before now.
func trimMarks(marks []paceMark, now time.Time) []paceMark {
	i := 0
	for i < len(marks) && now.Sub(marks[i].at) > paceWindow {
		i++
	}
	return marks[i:]
}
