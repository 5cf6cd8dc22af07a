package waitroom

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"testing"
	"time"

	"github.com/flashsale/flashsale"
	"github.com/flashsale/flashsale/service"
)

// fakes: a line in memory (in line order), a stock with a level, fast copies and
// decisions the test sets, and a queue recording what was published.

type fakeLine struct {
	waiting  []*flashsale.Ticket // in line order
	released []*flashsale.Ticket
	ended    []string
}

func (l *fakeLine) ReleasedTickets(context.Context, string) ([]*flashsale.Ticket, error) {
	return slices.Clone(l.released), nil
}
func (l *fakeLine) NextWaiting(_ context.Context, _ string, n int) ([]*flashsale.Ticket, error) {
	return slices.Clone(l.waiting[:min(n, len(l.waiting))]), nil
}
func (l *fakeLine) LeaveLineAs(_ context.Context, _ string, ids []string, st flashsale.TicketStatus, _ time.Time) error {
	l.waiting = slices.DeleteFunc(l.waiting, func(t *flashsale.Ticket) bool {
		if !slices.Contains(ids, t.ID) {
			return false
		}
		if st == flashsale.TicketQueued {
			l.released = append(l.released, t)
		} else {
			l.ended = append(l.ended, t.ID)
		}
		return true
	})
	return nil
}
func (l *fakeLine) MarkAdmitted(_ context.Context, ids []string) error {
	l.released = slices.DeleteFunc(l.released, func(t *flashsale.Ticket) bool { return slices.Contains(ids, t.ID) })
	return nil
}
func (l *fakeLine) EndWaiting(ctx context.Context, sale string, keep int, at time.Time) (int, error) {
	if len(l.waiting) <= keep {
		return 0, nil
	}
	var ids []string
	for _, t := range l.waiting[keep:] {
		ids = append(ids, t.ID)
	}
	return len(ids), l.LeaveLineAs(ctx, sale, ids, flashsale.TicketSoldOut, at)
}
func (l *fakeLine) LineEntries(context.Context, string) (int, error) { return len(l.waiting), nil }

type fakeStock struct {
	available int
	decided   map[string]flashsale.TicketStatus
}

func (s *fakeStock) Stock(context.Context, string) (flashsale.StockLevel, error) {
	return flashsale.StockLevel{Available: s.available}, nil
}
func (s *fakeStock) Claim(_ context.Context, _ *flashsale.Sale, _ string, want flashsale.TicketClaim, _ int) (flashsale.ClaimOutcome, string, int64, error) {
	return flashsale.Claimed, want.ID, 1, nil
}
func (s *fakeStock) Released(_ context.Context, ts ...*flashsale.Ticket) error {
	for _, t := range ts {
		if _, ok := s.decided[t.ID]; !ok {
			s.decided[t.ID] = flashsale.TicketQueued // its fast copy, queued
		}
	}
	return nil
}
func (s *fakeStock) GetTicket(_ context.Context, id string) (*flashsale.Ticket, error) {
	st, ok := s.decided[id]
	if !ok {
		return nil, flashsale.Errorf(flashsale.CodeNotFound, "no copy")
	}
	return &flashsale.Ticket{ID: id, Status: st}, nil
}

// decide has the pipeline decide a released ticket: its units taken.
func (s *fakeStock) decide(t *flashsale.Ticket, st flashsale.TicketStatus) {
	s.decided[t.ID] = st
	if st == flashsale.TicketPendingPayment {
		s.available -= t.Quantity
	}
}

type noBook struct{}

func (noBook) GetTicket(context.Context, flashsale.TicketRef) (*flashsale.Ticket, error) {
	return nil, flashsale.Errorf(flashsale.CodeNotFound, "not in the book")
}

type fakeQueue struct{ published []string }

func (q *fakeQueue) PublishPurchases(_ context.Context, reqs []*flashsale.PurchaseRequest) error {
	for _, r := range reqs {
		q.published = append(q.published, r.TicketID)
	}
	return nil
}

type oneSale struct{ s *flashsale.Sale }

func (o oneSale) ListSales(context.Context, time.Time) ([]*flashsale.Sale, error) {
	return []*flashsale.Sale{o.s}, nil
}

type noLeases struct{}

func (noLeases) Obtain(context.Context, string, time.Duration) (service.Lease, error) {
	return nil, service.ErrNotObtained
}

func setup(t *testing.T, available, waitlist int, quantities ...int) (*Releaser, *fakeLine, *fakeStock, *fakeQueue, *flashsale.Sale, *time.Time) {
	t.Helper()
	now := time.Date(2026, 12, 6, 12, 0, 10, 0, time.UTC)
	sale := &flashsale.Sale{ID: "s", StartsAt: now.Add(-10 * time.Second), EndsAt: now.Add(time.Hour),
		WaitingRoom: &flashsale.WaitingRoom{Waitlist: waitlist}}
	line := &fakeLine{}
	for i, q := range quantities {
		tk := &flashsale.Ticket{ID: fmt.Sprintf("t%d", i+1), UserID: fmt.Sprintf("u%d", i+1), Status: flashsale.TicketWaiting}
		tk.SetLines([]flashsale.Line{{SaleID: "s", Quantity: q}})
		line.waiting = append(line.waiting, tk)
	}
	stock := &fakeStock{available: available, decided: map[string]flashsale.TicketStatus{}}
	q := &fakeQueue{}
	r, err := New(Config{Sales: oneSale{sale}, Line: line, Stock: stock, Book: noBook{}, Queue: q, Leases: noLeases{},
		Namespace: "ns", Log: slog.New(slog.NewTextHandler(io.Discard, nil)), Now: func() time.Time { return now }})
	if err != nil {
		t.Fatal(err)
	}
	return r, line, stock, q, sale, &now
}

func pass(t *testing.T, r *Releaser) {
	t.Helper()
	if err := r.Pass(context.Background()); err != nil {
		t.Fatal(err)
	}
}

// While released tickets are in flight, only what fits in available minus
// their units is released, in line order; a ticket asking more than is left
// ends sold_out only once nothing is in flight; once sold out, the waitlist
// keeps waiting and the rest end.
func TestReleaserAdmitsInLineOrder(t *testing.T) {
	r, line, stock, q, _, _ := setup(t, 3, 1, 1, 1, 2, 1, 1, 1)
	pass(t, r)
	if !slices.Equal(q.published, []string{"t1", "t2"}) {
		t.Fatalf("first pass published %v, want t1 t2 (t3 asks 2 of the 1 left)", q.published)
	}
	pass(t, r) // t1, t2 in flight: 3 - 2 = 1 left, t3 asks 2: nothing decided yet
	if len(q.published) != 2 || len(line.ended) != 0 {
		t.Fatalf("with tickets in flight: published %v, ended %v; want no change", q.published, line.ended)
	}
	stock.decide(line.released[0], flashsale.TicketPendingPayment)
	stock.decide(line.released[1], flashsale.TicketPendingPayment)
	pass(t, r) // nothing in flight, 1 left: t3 (2) ends sold_out, t4 released
	if !slices.Equal(line.ended, []string{"t3"}) || !slices.Equal(q.published, []string{"t1", "t2", "t4"}) {
		t.Fatalf("ended %v, published %v; want t3 ended, t4 released", line.ended, q.published)
	}
	stock.decide(line.released[0], flashsale.TicketPendingPayment)
	pass(t, r) // sold out, nothing in flight: t5 keeps waiting (waitlist 1), t6 ends
	if !slices.Equal(line.ended, []string{"t3", "t6"}) || len(line.waiting) != 1 || line.waiting[0].ID != "t5" {
		t.Fatalf("ended %v, waiting %v; want t6 ended and t5 waiting", line.ended, line.waiting)
	}
	stock.available++ // a unit given back goes to the first waiting ticket
	pass(t, r)
	if q.published[len(q.published)-1] != "t5" {
		t.Fatalf("a unit given back went to %v, want t5", q.published)
	}
}

// Nothing is released before starts_at + Delay, and at ends_at every
// waiting ticket ends sold_out.
func TestReleaserWaitsForTheDelayAndEndsAtEndsAt(t *testing.T) {
	r, line, _, q, sale, now := setup(t, 5, 0, 1, 1)
	*now = sale.StartsAt.Add(time.Second)
	pass(t, r)
	if len(q.published) != 0 {
		t.Fatalf("released %v within the delay after starts_at", q.published)
	}
	*now = sale.EndsAt
	pass(t, r)
	if len(q.published) != 0 || !slices.Equal(line.ended, []string{"t1", "t2"}) {
		t.Fatalf("at ends_at: published %v, ended %v; want both ended", q.published, line.ended)
	}
}
