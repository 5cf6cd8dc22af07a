package reconcile

import (
	"context"
	"errors"
	"fmt"

	"github.com/flashsale/flashsale"
)

// Repair applies the fixes of the differences in rep that pick selects (all
// when pick is nil) and marks those that applied. Each sale is repaired in one
// atomic step that also sets its counters from its holds. A sale's error does
// not stop the others; the errors are joined.
func (r *Reconciler) Repair(ctx context.Context, rep *Report, pick func(*Difference) bool) error {
	var errs []error
	for _, s := range rep.Sales {
		if err := r.repairSale(ctx, s, pick); err != nil {
			errs = append(errs, fmt.Errorf("reconcile: repair sale %s: %w", s.SaleID, err))
		}
	}
	rep.recount()
	return errors.Join(errs...)
}

// batch is one sale's repair: the differences it repairs, by what their fix
// is (in MySQL's inventory row, in Redis), and the units of the users its
// hold fixes change.
type batch struct {
	rows                   []*Difference // fixes of a mysql-inventory sale's row, applied first
	holds, units, counters []*Difference
	holders                []flashsale.UnitsFix // after units' own fixes
}

// pickBatch collects the sale's differences not yet repaired that pick selects
// (nil: all). Oversold differences have no fix and are never picked.
func pickBatch(s *SaleReport, pick func(*Difference) bool) *batch {
	b := &batch{}
	for _, d := range s.Differences {
		if d.Repaired || (pick != nil && !pick(d)) {
			continue
		}
		switch {
		case d.mysql != nil:
			b.rows = append(b.rows, d)
		case d.hold != nil:
			b.holds = append(b.holds, d)
		case d.units != nil:
			b.units = append(b.units, d)
		case d.Kind == KindCounters:
			b.counters = append(b.counters, d)
		}
	}
	return b
}

// empty reports whether the batch changes nothing in Redis.
func (b *batch) empty() bool { return len(b.holds)+len(b.units)+len(b.counters) == 0 }

// addHolders recomputes, with its tickets, the units of every user whose
// tickets a hold fix changes and whose units no fix recomputes already:
// observed are the users' units as the look saw them, tickets each user's
// tickets.
func (b *batch) addHolders(observed map[string]int, tickets map[string][]string) {
	fixing := map[string]bool{}
	for _, d := range b.units {
		fixing[d.units.UserID] = true
	}
	for _, d := range b.holds {
		u := d.hold.UserID
		if u == "" || fixing[u] {
			continue
		}
		fixing[u] = true
		b.holders = append(b.holders, flashsale.UnitsFix{UserID: u, Observed: observed[u], Tickets: tickets[u]})
	}
}

// fixes returns the batch's fixes as RepairSale takes them: the hold fixes in
// the order of b.holds, the units fixes in the order of b.units, then holders.
func (b *batch) fixes() ([]flashsale.HoldFix, []flashsale.UnitsFix) {
	var holds []flashsale.HoldFix
	for _, d := range b.holds {
		holds = append(holds, *d.hold)
	}
	var units []flashsale.UnitsFix
	for _, d := range b.units {
		units = append(units, *d.units)
	}
	return holds, append(units, b.holders...)
}

// mark sets Repaired on the differences whose fixes applied; the counters are
// always set when the sale was loaded.
func (b *batch) mark(res flashsale.RepairResult) {
	for i, d := range b.holds {
		d.Repaired = res.Holds[i]
	}
	for i, d := range b.units {
		d.Repaired = res.Units[i]
	}
	for _, d := range b.counters {
		d.Repaired = true
	}
}

// all is every difference of the batch: holds, units, counters.
func (b *batch) all() []*Difference {
	all := make([]*Difference, 0, len(b.holds)+len(b.units)+len(b.counters))
	return append(append(append(all, b.holds...), b.units...), b.counters...)
}

// repairSale repairs the picked differences of one sale: those of a
// mysql-inventory sale's row first (repairRows), then Redis's in one
// RepairSale; then it logs and counts each repair, and fails the tickets of
// the unordered holds it released.
func (r *Reconciler) repairSale(ctx context.Context, s *SaleReport, pick func(*Difference) bool) error {
	b := pickBatch(s, pick)
	if err := r.giveUpUnordered(ctx, s.SaleID, b); err != nil {
		return err
	}
	if err := r.repairRows(ctx, s, b); err != nil {
		return err
	}
	if b.empty() {
		return nil
	}
	b.addHolders(s.obsUnits, s.tickets)
	holds, units := b.fixes()
	res, err := r.cfg.Stock.RepairSale(ctx, s.SaleID, s.sale.Stock, holds, units)
	if err != nil {
		return err
	}
	if !res.Loaded {
		return nil // lost meanwhile: rebuilt from MySQL on first use
	}
	b.mark(res)
	after := res.Stock
	s.Redis = &after
	for _, d := range b.all() {
		if d.Repaired {
			r.counted(ctx, s.SaleID, d, showStock(after))
		}
	}
	return nil
}

// counted logs and counts a repaired difference, and fails the ticket of an
// unordered hold it released.
func (r *Reconciler) counted(ctx context.Context, saleID string, d *Difference, stockAfter string) {
	r.repaired.WithLabelValues(string(d.Kind)).Inc()
	r.log.Warn("reconciler repaired a difference", "sale", saleID, "kind", d.Kind, "store", d.Store,
		"ticket", d.TicketID, "user", d.UserID, "had", d.Redis, "want", d.Want, "stock_after", stockAfter)
	if d.Kind.stray() {
		r.failTicket(ctx, saleID, d)
	}
}

// repairRows applies the batch's fixes of a mysql-inventory sale's row with
// MySQL's own operations (release, confirm, return: each moves the hold only
// from the state it starts from, once), marks those that applied, and keeps
// out of the batch the Redis fixes of tickets whose row fix did not apply
// (the row changed since the look, or the fix was not picked): the Redis
// mirror never goes ahead of the row.
func (r *Reconciler) repairRows(ctx context.Context, s *SaleReport, b *batch) error {
	saleID := s.SaleID
	for _, d := range b.rows {
		f := d.mysql
		var before flashsale.Hold
		var err error
		switch f.To.Kind {
		case flashsale.HoldReleased:
			before, err = r.cfg.Book.ReleaseStock(ctx, saleID, f.TicketID)
		case flashsale.HoldSold:
			if f.From.Kind == flashsale.HoldHeld {
				before, err = r.cfg.Book.ConfirmStock(ctx, saleID, f.TicketID)
			} else {
				before, err = r.cfg.Book.ReturnStock(ctx, saleID, f.TicketID, f.To.Quantity)
			}
		}
		if err != nil {
			return err
		}
		if d.Repaired = before == f.From; d.Repaired {
			r.counted(ctx, saleID, d, "")
		}
	}
	skip := map[string]bool{}
	for _, d := range s.Differences {
		if d.mysql != nil && !d.Repaired {
			skip[d.TicketID] = true
		}
	}
	keep := b.holds[:0]
	for _, d := range b.holds {
		if !skip[d.TicketID] {
			keep = append(keep, d)
		}
	}
	b.holds = keep
	return nil
}

// giveUpUnordered keeps in the batch only the unordered holds (in Redis, or
// in a mysql-inventory sale's row) whose release may go ahead. An unordered
// hold is released only once its ticket's decision is recorded
// (Book.GiveUp): an order committing late then loses to it. A ticket whose
// order was recorded first keeps its hold (the next look sees the order),
// and so does a hold whose user is unknown: its decision cannot be recorded
// on its shard.
func (r *Reconciler) giveUpUnordered(ctx context.Context, saleID string, b *batch) error {
	for _, list := range []*[]*Difference{&b.rows, &b.holds} {
		keep := (*list)[:0]
		for _, d := range *list {
			if d.Kind.stray() {
				if d.UserID == "" {
					continue
				}
				ordered, err := r.cfg.Book.GiveUp(ctx, failedTicket(saleID, d))
				if err != nil {
					return err
				}
				if ordered {
					continue
				}
			}
			keep = append(keep, d)
		}
		*list = keep
	}
	return nil
}

// failedTicket is the ticket of an unordered hold, failed: it made no order.
func failedTicket(saleID string, d *Difference) *flashsale.Ticket {
	return &flashsale.Ticket{ID: d.TicketID, SaleID: saleID, UserID: d.UserID, Quantity: d.fix().From.Quantity,
		Status: flashsale.TicketFailed}
}

// failTicket makes the ticket of a released unordered hold final: it made no
// order and never will (a redelivered message finds it released). A ticket
// copy that is no longer queued is left as it is; a failed write is logged.
func (r *Reconciler) failTicket(ctx context.Context, saleID string, d *Difference) {
	if d.UserID == "" {
		return
	}
	if t, err := r.cfg.Stock.GetTicket(ctx, d.TicketID); err == nil && t.Status != flashsale.TicketQueued {
		return
	}
	if err := r.cfg.Stock.PutTickets(ctx, failedTicket(saleID, d)); err != nil {
		r.log.Warn("reconciler: writing a released ticket failed", "ticket", d.TicketID, "err", err)
	}
}
