package bench

import (
	"context"
	"fmt"
	"net/http"
	"sync"
	"time"
)

// tickets lists every ticket the users were given.
func (r *run) tickets() []*ticketTrack {
	var out []*ticketTrack
	for _, u := range r.simUsers {
		if u.ticket != nil {
			out = append(out, u.ticket)
		}
	}
	return out
}

// forEach calls fn for every item on at most workers goroutines, until ctx ends.
func forEach[T any](ctx context.Context, items []T, workers int, fn func(T)) {
	if len(items) == 0 {
		return
	}
	ch := make(chan T)
	var wg sync.WaitGroup
	for range max(1, min(len(items), workers)) {
		wg.Go(func() {
			for it := range ch {
				fn(it)
			}
		})
	}
feed:
	for _, it := range items {
		select {
		case ch <- it:
		case <-ctx.Done():
			break feed
		}
	}
	close(ch)
	wg.Wait()
}

// verifyWorkers is how many verification reads run at once: the users' pool is
// idle by then, but a verification should not be a load test of its own.
func (r *run) verifyWorkers() int { return min(r.cfg.Conns, 64) }

// refresh re-reads the given tickets from the server, in parallel.
func (r *run) refresh(ctx context.Context, ts []*ticketTrack) {
	forEach(ctx, ts, r.verifyWorkers(), func(t *ticketTrack) {
		tv, resp, err := r.users.getTicket(ctx, t.userID, t.id)
		if err == nil && resp.Status == http.StatusOK {
			t.apply(tv)
			t.verified = true
		}
	})
}

// readCreatedAt reads the created_at of every order the tickets made and the bench
// has not read yet (GET /api/v1/orders/{id} as the order's owner, a few retries on
// transient errors), once the load is over. These server-side times, not the moment
// a polling user happened to see its ticket resolved, give the order rate.
func (r *run) readCreatedAt(ctx context.Context) {
	var todo []*ticketTrack
	for _, t := range r.tickets() {
		// Bundle orders are read for their items too (all or nothing).
		if hasOrder(t.status) && t.orderID != "" && (t.createdAt.IsZero() || (t.bundle && !t.orderRead)) {
			todo = append(todo, t)
		}
	}
	forEach(ctx, todo, r.verifyWorkers(), func(t *ticketTrack) {
		for attempt := 1; attempt <= 4; attempt++ {
			ov, resp, err := r.users.getOrder(ctx, t.userID, t.orderID)
			if err == nil && resp.Status == http.StatusOK {
				t.noteOrder(ov)
				return
			}
			if ctx.Err() != nil || (resp != nil && !resp.retryable()) {
				return
			}
			sleepCtx(ctx, backoff(attempt+2))
		}
	})
}

// waitExpiry waits until every order still unpaid has passed its pay_by and been
// seen expired, or until expiryGrace after the latest pay_by. It reports whether the
// run could go on (false only when ctx ended); orders that did not expire in time are
// left for the invariant check to flag.
func (r *run) waitExpiry(ctx context.Context) (bool, string) {
	var waiting []*ticketTrack
	var latest time.Time
	for _, t := range r.tickets() {
		if t.status != statusPendingPayment {
			continue
		}
		if t.payBy.IsZero() { // no pay_by seen: assume the sale's window from when we saw the order
			t.payBy = t.resolvedAt.Add(r.offset).Add(time.Duration(r.cfg.PaymentWindow) * time.Second)
		}
		latest = later(latest, t.payBy)
		waiting = append(waiting, t)
	}
	if len(waiting) == 0 {
		return true, ""
	}
	r.log.Info("waiting for unpaid orders to expire", "orders", len(waiting),
		"latest_pay_by_in", time.Until(r.local(latest)).Round(time.Second))
	r.prog.start(phaseExpiry, "expiring  ", len(waiting))
	defer r.prog.finish()
	deadline := r.local(latest).Add(r.cfg.expiryGrace)
	for {
		now := r.serverNow()
		var due []*ticketTrack
		next := time.Time{}
		for _, t := range waiting {
			if !t.payBy.After(now) {
				due = append(due, t)
			} else if next.IsZero() || t.payBy.Before(next) {
				next = t.payBy
			}
		}
		r.refresh(ctx, due)
		still := waiting[:0]
		for _, t := range waiting {
			if t.status == statusPendingPayment {
				still = append(still, t)
			} else {
				r.prog.add(phaseExpiry, 1)
			}
		}
		waiting = still
		if len(waiting) == 0 {
			return true, ""
		}
		if ctx.Err() != nil {
			return false, "the run ended while waiting for unpaid orders to expire"
		}
		if time.Now().After(deadline) {
			r.log.Warn("unpaid orders did not expire in time", "orders", len(waiting), "grace", r.cfg.expiryGrace)
			return true, ""
		}
		wait := 500 * time.Millisecond
		if len(due) == 0 && !next.IsZero() {
			wait = max(time.Until(r.local(next)), 50*time.Millisecond)
		}
		if !sleepCtx(ctx, wait) {
			return false, "the run ended while waiting for unpaid orders to expire"
		}
	}
}

func later(a, b time.Time) time.Time {
	if b.After(a) {
		return b
	}
	return a
}

// unitsHeldAndSold sums the units of tickets in pending_payment and in paid, in
// the first sale (second false) or the second sale of the bundles.
func unitsHeldAndSold(ts []*ticketTrack, second bool) (held, sold int64) {
	for _, t := range ts {
		switch t.status {
		case statusPendingPayment:
			held += t.unitsIn(second)
		case statusPaid:
			sold += t.unitsIn(second)
		}
	}
	return held, sold
}

// settle re-reads every ticket, then the sale, until the sale's held and sold agree
// with the tickets (the system is quiet) or settleTimeout passes. It returns the last
// reading of the sale, or nil when none could be had.
func (r *run) settle(ctx context.Context) *StockSample {
	all := r.tickets()
	todo := all
	deadline := time.Now().Add(r.cfg.settleTimeout)
	var final *StockSample
	for {
		r.refresh(ctx, todo)
		held, sold := unitsHeldAndSold(all, false)
		secondQuiet := true
		if r.saleB != "" {
			heldB, soldB := unitsHeldAndSold(all, true)
			secondQuiet = false
			if s, ok := r.sampleSecond(ctx); ok {
				r.finalSecond = &s
				secondQuiet = s.Held == heldB && s.Sold == soldB
			}
		}
		if s, ok := r.sampleSale(ctx, r.saleID, r.rec.addStock); ok {
			final = &s
			if s.Held == held && s.Sold == sold && secondQuiet {
				return final
			}
		}
		if ctx.Err() != nil || time.Now().After(deadline) {
			if final != nil {
				r.log.Warn("sale did not settle", "held", final.Held, "sold", final.Sold, "tickets_held", held, "tickets_sold", sold)
			}
			return final
		}
		todo = todo[:0:0]
		for _, t := range all {
			if !terminalStatus(t.status) || !t.verified {
				todo = append(todo, t)
			}
		}
		if !sleepCtx(ctx, 250*time.Millisecond) {
			return final
		}
	}
}

// observations turns the run's tickets into the invariant checker's input.
func (r *run) observations(completed bool, reason string, final *StockSample) invariantInput {
	in := invariantInput{
		SaleID:       r.saleID,
		Stock:        int64(r.cfg.Stock),
		PerUserLimit: int64(r.cfg.PerUserLimit),
		WaitExpiry:   r.cfg.WaitExpiry,
		Completed:    completed,
		Reason:       reason,
		Samples:      r.rec.stockSnapshot(),
		Final:        final,
	}
	if r.saleB != "" {
		in.Second = &saleObservation{
			SaleID:  r.saleB,
			Stock:   int64(r.cfg.secondStock()),
			Samples: r.rec.stockSecondSnapshot(),
			Final:   r.finalSecond,
		}
	}
	for _, t := range r.tickets() {
		var items map[string]int64
		if t.orderRead {
			items = map[string]int64{}
			for _, it := range t.orderItems {
				items[it.SaleId] += int64(it.Quantity)
			}
		}
		in.Tickets = append(in.Tickets, ticketObservation{
			Bundle:     t.bundle,
			OrderRead:  t.orderRead,
			OrderItems: items,
			UserID:     t.userID,
			TicketID:   t.id,
			OrderID:    t.orderID,
			Status:     t.status,
			Quantity:   int64(t.quantity),
			Intent:     t.intent,
			Action:     t.action,
			Verified:   t.verified,
		})
	}
	return in
}

// describeSample renders a stock reading for check details.
func describeSample(s StockSample) string {
	return fmt.Sprintf("total %d, available %d, held %d, sold %d", s.Total, s.Available, s.Held, s.Sold)
}
