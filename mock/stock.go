package mock

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"

	"github.com/flashsale/flashsale"
)

// Stock is an in-memory stock store (worker.Stock, lifecycle.Stock, and the
// ingress's reads Stock and GetTicket): units available per sale, a hold per
// (sale, ticket), each user's live ticket and units per sale, and ticket
// copies, kept as redisstore's scripts keep them; it passes the stock store's
// suite (internal/storetest.RunStock) as redisstore does. A hold is taken
// once per ticket, for the user's one live ticket, within the sale's
// per_user_limit; a released or refused ticket is never held again; a
// confirm, a retake, a return and a re-assert follow the order whatever the
// hold was; a ticket copy never moves back. It has no claims: a ticket with no
// live entry is held (as after Redis lost the claim). Where Redis would be
// behind MySQL (fewer units available than a confirm or a re-assert of a
// committed order needs), redisstore rebuilds the sale from MySQL, which
// counts the order: the fake marks the part as MySQL has it without taking
// units.
//
// Every call is recorded in Steps ("hold a", "release a", "confirm a",
// "retake a" or "short a" when the units are gone, "return a keep 1",
// "resync a"); Fail makes the next calls of one of those fail instead.
type Stock struct {
	Steps *Steps

	mu        sync.Mutex
	Available map[string]int               // units per sale
	Holds     map[[2]string]flashsale.Hold // by (sale, ticket)
	Tickets   map[string]*flashsale.Ticket // the copies PutTickets wrote, by id
	live      map[[2]string]string         // (sale, user) -> the user's live ticket
	units     map[[2]string]int            // (sale, user) -> units the user holds or bought
	failNext  map[string]int               // step ("release a", "put") -> failures left

	// OnReassert and OnPut, when set, see every re-assert and ticket write.
	OnReassert func([]flashsale.Part)
	OnPut      func([]*flashsale.Ticket)
}

// NewStock returns a Stock with available units per sale, recording into
// steps (a new Steps when nil).
func NewStock(available map[string]int, steps *Steps) *Stock {
	if steps == nil {
		steps = &Steps{}
	}
	if available == nil {
		available = map[string]int{}
	}
	return &Stock{Steps: steps, Available: available, Holds: map[[2]string]flashsale.Hold{},
		Tickets: map[string]*flashsale.Ticket{}, live: map[[2]string]string{}, units: map[[2]string]int{}, failNext: map[string]int{}}
}

// Fail makes the next times calls of step fail (Redis away): step is what
// the call records ("release a", "confirm a", "return a keep 1", "resync
// a"), "retake a" for Retake, "put" for PutTickets or "get" for GetTicket. A
// failed call records nothing.
func (s *Stock) Fail(step string, times int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.failNext[step] += times
}

func (s *Stock) fail(step string) error {
	if s.failNext[step] > 0 {
		s.failNext[step]--
		return errors.New("mock: " + step + " failed")
	}
	return nil
}

// take fails step if Fail said so, else records it; the caller holds mu.
func (s *Stock) take(step string) error {
	if err := s.fail(step); err != nil {
		return err
	}
	s.Steps.Add("%s", step)
	return nil
}

// count moves q units of p's sale from available to the part, which becomes
// kind (held or sold), unless fewer are available: then nothing moves and it
// reports false, or with committed (the part's order is in MySQL, which a
// rebuild follows) the part is counted as kind without taking units from
// available. The caller holds mu.
func (s *Stock) count(p flashsale.Part, q int, kind flashsale.HoldKind, committed bool) bool {
	enough := s.Available[p.SaleID] >= q
	if !enough && !committed {
		return false
	}
	if enough {
		s.Available[p.SaleID] -= q
	}
	s.units[[2]string{p.SaleID, p.UserID}] += q
	s.Holds[[2]string{p.SaleID, p.TicketID}] = flashsale.Hold{Kind: kind, Quantity: q}
	return enough
}

// unlive drops p's ticket as its user's live ticket; the caller holds mu.
func (s *Stock) unlive(p flashsale.Part) {
	if k := [2]string{p.SaleID, p.UserID}; s.live[k] == p.TicketID {
		delete(s.live, k)
	}
}

// Hold holds each request's units in its sale, once per ticket: refused
// (failed) when the user has another live ticket there or would pass the
// sale's per_user_limit, sold out when fewer units are available.
func (s *Stock) Hold(_ context.Context, sales []*flashsale.Sale, reqs []*flashsale.PurchaseRequest) ([]flashsale.Hold, []error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	holds, errs := make([]flashsale.Hold, len(reqs)), make([]error, len(reqs))
	for i, r := range reqs {
		p := r.Part(flashsale.Line{SaleID: sales[i].ID, Quantity: r.Quantity})
		k, uk := [2]string{p.SaleID, p.TicketID}, [2]string{p.SaleID, p.UserID}
		s.Steps.Add("hold %s", p.SaleID)
		if h, ok := s.Holds[k]; ok {
			holds[i] = h
			continue
		}
		refused := flashsale.HoldKind(0)
		switch {
		case s.live[uk] != "" && s.live[uk] != p.TicketID, s.units[uk]+p.Quantity > sales[i].PerUserLimit:
			refused = flashsale.HoldRefused
		case !s.count(p, p.Quantity, flashsale.HoldHeld, false):
			refused = flashsale.HoldSoldOut
		default:
			s.live[uk] = p.TicketID
		}
		if refused != 0 {
			s.Holds[k] = flashsale.Hold{Kind: refused}
			s.unlive(p)
		}
		holds[i] = s.Holds[k]
	}
	return holds, errs
}

// Reassert counts each committed order's part where the store does not (it
// never held it, or refused it); a part held, sold or released is left as
// it is. It returns the parts' holds afterwards.
func (s *Stock) Reassert(_ context.Context, parts []flashsale.Part) ([]flashsale.Hold, []error) {
	if s.OnReassert != nil {
		s.OnReassert(parts)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	holds := make([]flashsale.Hold, len(parts))
	for i, p := range parts {
		k := [2]string{p.SaleID, p.TicketID}
		if h, ok := s.Holds[k]; !ok || h.Kind == flashsale.HoldSoldOut || h.Kind == flashsale.HoldRefused {
			s.count(p, p.Quantity, flashsale.HoldHeld, true)
			s.live[[2]string{p.SaleID, p.UserID}] = p.TicketID
		}
		holds[i] = s.Holds[k]
	}
	return holds, make([]error, len(parts))
}

// Release gives a held part's units back and marks it released (also a part
// never held); it returns the hold as it was.
func (s *Stock) Release(_ context.Context, p flashsale.Part) (flashsale.Hold, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.take("release " + p.SaleID); err != nil {
		return flashsale.Hold{}, err
	}
	k := [2]string{p.SaleID, p.TicketID}
	h := s.Holds[k]
	if h.Kind == flashsale.HoldHeld {
		s.Available[p.SaleID] += h.Quantity
		s.units[[2]string{p.SaleID, p.UserID}] -= h.Quantity
	}
	if h.Kind == flashsale.HoldHeld || h.Kind == flashsale.HoldNone {
		s.Holds[k] = flashsale.Hold{Kind: flashsale.HoldReleased}
	}
	s.unlive(p)
	return h, nil
}

// Confirm marks the part sold: a held part's units, else (released, refused
// or unknown) p.Quantity units taken as sold. It returns the hold as it was.
func (s *Stock) Confirm(_ context.Context, p flashsale.Part) (flashsale.Hold, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.take("confirm " + p.SaleID); err != nil {
		return flashsale.Hold{}, err
	}
	k := [2]string{p.SaleID, p.TicketID}
	h := s.Holds[k]
	switch h.Kind {
	case flashsale.HoldHeld:
		s.Holds[k] = flashsale.Hold{Kind: flashsale.HoldSold, Quantity: h.Quantity}
	case flashsale.HoldSold:
	default:
		s.count(p, p.Quantity, flashsale.HoldSold, true)
	}
	s.unlive(p)
	return h, nil
}

// Retake holds a released (or unknown) part's units again if all are
// available; a part in any other state is left as it is (ok). It returns the
// hold as it was.
func (s *Stock) Retake(_ context.Context, p flashsale.Part) (flashsale.Hold, bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.fail("retake " + p.SaleID); err != nil {
		return flashsale.Hold{}, false, err
	}
	h := s.Holds[[2]string{p.SaleID, p.TicketID}]
	if h.Kind != flashsale.HoldReleased && h.Kind != flashsale.HoldNone {
		s.Steps.Add("retake %s", p.SaleID)
		return h, true, nil
	}
	if !s.count(p, p.Quantity, flashsale.HoldHeld, false) {
		s.Steps.Add("short %s", p.SaleID)
		return flashsale.Hold{}, false, nil
	}
	s.Steps.Add("retake %s", p.SaleID)
	return h, true, nil
}

// Return lowers a sold (or held) part to p.Quantity units, putting the rest
// back; a part at or below that is left as it is. It returns the hold as it
// was.
func (s *Stock) Return(_ context.Context, p flashsale.Part) (flashsale.Hold, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.take(fmt.Sprintf("return %s keep %d", p.SaleID, p.Quantity)); err != nil {
		return flashsale.Hold{}, err
	}
	k := [2]string{p.SaleID, p.TicketID}
	h := s.Holds[k]
	if (h.Kind == flashsale.HoldSold || h.Kind == flashsale.HoldHeld) && h.Quantity > p.Quantity {
		d := h.Quantity - p.Quantity
		s.Available[p.SaleID] += d
		s.units[[2]string{p.SaleID, p.UserID}] -= d
		s.Holds[k] = flashsale.Hold{Kind: h.Kind, Quantity: p.Quantity}
	}
	return h, nil
}

// ticketRank orders a ticket copy's statuses: a copy never moves back.
func ticketRank(st flashsale.TicketStatus) int {
	switch st {
	case flashsale.TicketQueued:
		return 1
	case flashsale.TicketPendingPayment:
		return 2
	}
	return 3
}

// PutTickets writes the ticket copies, except over a copy further along
// (queued < pending_payment < a final status).
func (s *Stock) PutTickets(_ context.Context, tickets ...*flashsale.Ticket) error {
	if s.OnPut != nil {
		s.OnPut(tickets)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.fail("put"); err != nil {
		return err
	}
	for _, t := range tickets {
		if cur := s.Tickets[t.ID]; cur == nil || ticketRank(t.Status) >= ticketRank(cur.Status) {
			c := *t // a copy, as Redis keeps: the order of a pending_payment one only
			c.Unpaid = nil
			if t.Unpaid != nil && t.Status == flashsale.TicketPendingPayment {
				o := *t.Unpaid
				o.Items = slices.Clone(o.Items)
				c.Unpaid = &o
			}
			s.Tickets[t.ID] = &c
		}
	}
	return nil
}

// GetTicket returns a ticket's copy, or flashsale.ErrNotFound. Fail("get")
// makes it fail (Redis away).
func (s *Stock) GetTicket(_ context.Context, ticketID string) (*flashsale.Ticket, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.fail("get"); err != nil {
		return nil, err
	}
	if t := s.Tickets[ticketID]; t != nil {
		c := *t
		return &c, nil
	}
	return nil, flashsale.Errorf(flashsale.CodeNotFound, "no ticket %q", ticketID)
}

// Stock reads the sale's figures: available, and held and sold summed over
// its holds; the total is their sum.
func (s *Stock) Stock(_ context.Context, saleID string) (flashsale.StockLevel, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := flashsale.StockLevel{Available: s.Available[saleID]}
	for k, h := range s.Holds {
		if k[0] != saleID {
			continue
		}
		switch h.Kind {
		case flashsale.HoldHeld:
			st.Held += h.Quantity
		case flashsale.HoldSold:
			st.Sold += h.Quantity
		}
	}
	st.Total = st.Available + st.Held + st.Sold
	return st, nil
}

// Resync records the rebuild of the sale; it changes nothing (the fake has
// no book of record to rebuild from, and keeps what the book does not know,
// as a rebuild does).
func (s *Stock) Resync(_ context.Context, saleID string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.take("resync " + saleID); err != nil {
		return err
	}
	return nil
}
