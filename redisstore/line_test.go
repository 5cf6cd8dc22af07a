package redisstore

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/flashsale/flashsale"
	"github.com/flashsale/flashsale/service"
)

// queueUsers claims and queues one ticket per user, in order, and returns
// their refs.
func queueUsers(t *testing.T, s *Store, sale *flashsale.Sale, users ...string) []flashsale.TicketRef {
	t.Helper()
	var refs []flashsale.TicketRef
	for _, u := range users {
		req := mint(t, s, sale, u, "n-"+u)
		if err := s.Queued(context.Background(), req.Ticket(flashsale.TicketQueued)); err != nil {
			t.Fatal(err)
		}
		refs = append(refs, flashsale.TicketRef{User: u, Ticket: req.TicketID})
	}
	return refs
}

func wantPlaces(t *testing.T, s *Store, saleID string, refs []flashsale.TicketRef, want ...int) {
	t.Helper()
	got, err := s.Places(context.Background(), saleID, refs)
	if err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("places = %v, want %v", got, want)
	}
}

// A ticket's place is 1 + the tickets claimed before it still in the line,
// over every segment; a decided or given-up ticket leaves the line, a new one
// joins at the back, so no place ever grows.
func TestPlacesCountTheTicketsAheadAndNeverGrow(t *testing.T) {
	s, sale, _ := newStore(t, 100, 1)
	ctx := context.Background()
	users := []string{"u0", "u1", "u2", "u3", "u4", "u5"}
	refs := queueUsers(t, s, sale, users...)
	wantPlaces(t, s, sale.ID, refs, 1, 2, 3, 4, 5, 6)

	// u1 ordered, u3 sold out: both leave the line; a queued copy leaves nothing.
	payBy := time.Now().Add(time.Minute)
	decided := []*flashsale.Ticket{
		{ID: refs[1].Ticket, UserID: "u1", Status: flashsale.TicketPendingPayment, OrderID: refs[1].Ticket, PayBy: &payBy},
		{ID: refs[3].Ticket, UserID: "u3", Status: flashsale.TicketSoldOut},
		{ID: refs[4].Ticket, UserID: "u4", Status: flashsale.TicketQueued},
	}
	for _, d := range decided {
		d.SetLines([]flashsale.Line{{SaleID: sale.ID, Quantity: 1}})
	}
	if err := s.PutTickets(ctx, decided...); err != nil {
		t.Fatal(err)
	}
	wantPlaces(t, s, sale.ID, refs, 1, 0, 2, 0, 3, 4)

	// A purchase answered 503 gives its ticket up: it leaves the line.
	if err := s.Unclaim(ctx, flashsale.Part{SaleID: sale.ID, TicketID: refs[0].Ticket, UserID: "u0"}); err != nil {
		t.Fatal(err)
	}
	// A newcomer joins at the back: nobody's place grows.
	late := queueUsers(t, s, sale, "u6")
	wantPlaces(t, s, sale.ID, append(refs, late...), 0, 0, 1, 0, 2, 3, 4)
}

// A rebuild keeps the line's entries of the tickets MySQL does not know, with
// their places; those MySQL decided leave it. The line has its family's
// marker: lost on its own, the sale is stale and rebuilt.
func TestARebuildKeepsTheLine(t *testing.T) {
	s, sale, src := newStore(t, 100, 1)
	ctx := context.Background()
	refs := queueUsers(t, s, sale, "u0", "u1", "u2", "u3")
	src.orders = []*flashsale.Order{{ID: refs[2].Ticket, SaleID: sale.ID, UserID: "u2", Quantity: 1, Status: flashsale.OrderPendingPayment}}
	if err := s.Resync(ctx, sale.ID); err != nil {
		t.Fatal(err)
	}
	wantPlaces(t, s, sale.ID, refs, 1, 2, 0, 3)
	late := queueUsers(t, s, sale, "u4")
	wantPlaces(t, s, sale.ID, append(refs, late...), 1, 2, 0, 3, 4)

	// The line lost on its own: the next script finds the sale stale and
	// rebuilds it (the places it had are gone with it; nobody's grows).
	if err := s.rdb.Del(ctx, s.keys(sale.ID, "u0").queue).Err(); err != nil {
		t.Fatal(err)
	}
	if ok, err := s.saleCurrent(ctx, sale.ID); err != nil || ok {
		t.Fatalf("sale current after its line was lost: %v %v, want stale", ok, err)
	}
	got, err := s.Places(ctx, sale.ID, refs)
	if err != nil {
		t.Fatal(err)
	}
	for i, p := range got {
		if p > []int{1, 2, 0, 3}[i] {
			t.Fatalf("places after the line was lost = %v: one grew", got)
		}
	}
	if ok, err := s.saleCurrent(ctx, sale.ID); err != nil || !ok {
		t.Fatalf("sale not current after the places rebuilt it: %v %v", ok, err)
	}
}

// A claim whose publish never completed (its ingress died) leaves the head of
// the line once it is stale, so the tickets behind it move up.
func TestAnOrphanedClaimLeavesTheLine(t *testing.T) {
	s, sale, _ := newStore(t, 100, 1)
	s.cfg.ClaimStale = 2 * time.Second // long enough to see the orphan before it is stale on a busy box
	ctx := context.Background()
	mint(t, s, sale, "orphan", "n0") // never queued
	refs := queueUsers(t, s, sale, "u1", "u2")
	wantPlaces(t, s, sale.ID, refs, 2, 3)
	var got []int
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); {
		var err error
		if got, err = s.Places(ctx, sale.ID, refs); err != nil {
			t.Fatal(err)
		}
		if got[0] == 1 {
			break
		}
		service.Sleep(ctx, 50*time.Millisecond) // until the orphan is stale by Redis's clock
	}
	if fmt.Sprint(got) != "[1 2]" {
		t.Fatalf("places once the orphan is stale = %v, want [1 2]", got)
	}
}

// Every listener hears the tickets PutTickets decides (not the copies of
// queued or paid tickets), after their copies are written, and the tickets a
// waiting room's line releases (Released, queued; not Queued's).
func TestDecidedTicketsAreAnnounced(t *testing.T) {
	s, sale, _ := newStore(t, 100, 1)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	synced := make(chan struct{}, 1)
	heard := make(chan []*flashsale.Ticket, 4)
	go s.FollowDecisions(ctx, func(ts []*flashsale.Ticket) { heard <- ts }, func() { synced <- struct{}{} })
	select {
	case <-synced:
	case <-ctx.Done():
		t.Fatal("never subscribed")
	}
	payBy := time.Now().Add(time.Minute).UTC().Truncate(time.Microsecond)
	pending := &flashsale.Ticket{ID: "t-pending", UserID: "u1", Status: flashsale.TicketPendingPayment, OrderID: "t-pending", PayBy: &payBy}
	paid := &flashsale.Ticket{ID: "t-paid", UserID: "u2", Status: flashsale.TicketPaid, OrderID: "t-paid"}
	queued := &flashsale.Ticket{ID: "t-queued", UserID: "u3", Status: flashsale.TicketQueued}
	released := &flashsale.Ticket{ID: "t-released", UserID: "u4", Status: flashsale.TicketQueued}
	for _, tk := range []*flashsale.Ticket{pending, paid, queued, released} {
		tk.SetLines([]flashsale.Line{{SaleID: sale.ID, Quantity: 1}})
	}
	if err := s.Queued(ctx, queued); err != nil {
		t.Fatal(err)
	}
	if err := s.Released(ctx, released); err != nil {
		t.Fatal(err)
	}
	if err := s.PutTickets(ctx, pending, paid); err != nil {
		t.Fatal(err)
	}
	select {
	case ts := <-heard:
		if len(ts) != 1 || ts[0].ID != released.ID || ts[0].Status != flashsale.TicketQueued || ts[0].SaleID != sale.ID {
			t.Fatalf("announced first %+v, want only the released ticket, queued", ts)
		}
	case <-ctx.Done():
		t.Fatal("nothing announced")
	}
	if cp, err := s.GetTicket(ctx, released.ID); err != nil || cp.Status != flashsale.TicketQueued {
		t.Fatalf("the released ticket's copy: %+v %v", cp, err)
	}
	select {
	case ts := <-heard:
		if len(ts) != 1 || ts[0].ID != pending.ID || ts[0].Status != flashsale.TicketPendingPayment || ts[0].SaleID != sale.ID ||
			ts[0].PayBy == nil || !ts[0].PayBy.Equal(payBy) {
			t.Fatalf("announced %+v, want only the pending ticket as written", ts)
		}
	case <-ctx.Done():
		t.Fatal("nothing announced")
	}
	if cp, err := s.GetTicket(ctx, pending.ID); err != nil || cp.Status != flashsale.TicketPendingPayment {
		t.Fatalf("the announced ticket's copy: %+v %v", cp, err)
	}
}
