package mock

import (
	"context"
	"errors"
	"fmt"
	"sync"

	"github.com/flashsale/flashsale"
)

// Stock is an in-memory stock store (worker.Stock, lifecycle.Stock): units
// available per sale and a hold per (sale, ticket), kept like the hold
// scripts keep them: idempotent per ticket, a released ticket never held
// again. Every call is recorded in Steps ("hold a", "release a", "confirm a",
// "retake a" or "short a" when the units are gone, "return a keep 1",
// "resync a"); Fail makes the next calls of one of those fail instead.
type Stock struct {
	Steps *Steps

	mu        sync.Mutex
	Available map[string]int               // units per sale
	Holds     map[[2]string]flashsale.Hold // by (sale, ticket)
	Tickets   map[string]*flashsale.Ticket // the copies PutTickets wrote, by id
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
		Tickets: map[string]*flashsale.Ticket{}, failNext: map[string]int{}}
}

// Fail makes the next times calls of step fail (Redis away): step is what
// the call records ("release a", "confirm a", "return a keep 1", "resync
// a"), "retake a" for Retake, or "put" for PutTickets. A failed call records
// nothing.
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

// Hold holds each request's units in its sale, once per ticket.
func (s *Stock) Hold(_ context.Context, sales []*flashsale.Sale, reqs []*flashsale.PurchaseRequest) ([]flashsale.Hold, []error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	holds, errs := make([]flashsale.Hold, len(reqs)), make([]error, len(reqs))
	for i, r := range reqs {
		k := [2]string{sales[i].ID, r.TicketID}
		s.Steps.Add("hold %s", k[0])
		if h, ok := s.Holds[k]; ok {
			holds[i] = h
			continue
		}
		if s.Available[k[0]] < r.Quantity {
			s.Holds[k] = flashsale.Hold{Kind: flashsale.HoldSoldOut}
		} else {
			s.Available[k[0]] -= r.Quantity
			s.Holds[k] = flashsale.Hold{Kind: flashsale.HoldHeld, Quantity: r.Quantity}
		}
		holds[i] = s.Holds[k]
	}
	return holds, errs
}

// Reassert changes nothing (the fake never loses a hold).
func (s *Stock) Reassert(_ context.Context, parts []flashsale.Part) ([]flashsale.Hold, []error) {
	if s.OnReassert != nil {
		s.OnReassert(parts)
	}
	return make([]flashsale.Hold, len(parts)), make([]error, len(parts))
}

// Release gives a held part's units back and marks it released; it returns
// the hold as it was.
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
	}
	if h.Kind == flashsale.HoldHeld || h.Kind == flashsale.HoldNone {
		s.Holds[k] = flashsale.Hold{Kind: flashsale.HoldReleased}
	}
	return h, nil
}

// Confirm marks the part sold.
func (s *Stock) Confirm(_ context.Context, p flashsale.Part) (flashsale.Hold, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.take("confirm " + p.SaleID); err != nil {
		return flashsale.Hold{}, err
	}
	h := flashsale.Hold{Kind: flashsale.HoldSold, Quantity: p.Quantity}
	s.Holds[[2]string{p.SaleID, p.TicketID}] = h
	return h, nil
}

// Retake holds a released part's units again if all are available.
func (s *Stock) Retake(_ context.Context, p flashsale.Part) (flashsale.Hold, bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.fail("retake " + p.SaleID); err != nil {
		return flashsale.Hold{}, false, err
	}
	k := [2]string{p.SaleID, p.TicketID}
	if s.Available[p.SaleID] < p.Quantity {
		s.Steps.Add("short %s", p.SaleID)
		return s.Holds[k], false, nil
	}
	s.Available[p.SaleID] -= p.Quantity
	s.Steps.Add("retake %s", p.SaleID)
	s.Holds[k] = flashsale.Hold{Kind: flashsale.HoldHeld, Quantity: p.Quantity}
	return s.Holds[k], true, nil
}

// Return lowers a sold part to p.Quantity units.
func (s *Stock) Return(_ context.Context, p flashsale.Part) (flashsale.Hold, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.take(fmt.Sprintf("return %s keep %d", p.SaleID, p.Quantity)); err != nil {
		return flashsale.Hold{}, err
	}
	h := flashsale.Hold{Kind: flashsale.HoldSold, Quantity: p.Quantity}
	s.Holds[[2]string{p.SaleID, p.TicketID}] = h
	return h, nil
}

// PutTickets writes the ticket copies.
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
		s.Tickets[t.ID] = t
	}
	return nil
}

// Resync records the rebuild of the sale.
func (s *Stock) Resync(_ context.Context, saleID string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.take("resync " + saleID); err != nil {
		return err
	}
	return nil
}
