package reconcile

import (
	"fmt"
	"sort"

	"github.com/flashsale/flashsale"
)

// This file is the comparison itself, as pure functions: given a sale, its
// Redis snapshot and its orders' parts in it, the differences and their
// fixes. Nothing here reads or writes a store; check.go feeds it.

// diffSale compares a loaded sale's snapshot with the parts of its orders (one
// per order, Quantity net of returned units) and returns the sale's report:
// status SaleAgree (Report.recount makes it SaleDiffer where a difference
// remains), both sides' stock, the order counts and the differences in this
// order: holds (as the parts come), unordered holds (by ticket), counters,
// units (by user), oversold. Every difference carries its signature.
func diffSale(sale *flashsale.Sale, snap flashsale.SaleSnapshot, parts []flashsale.Part) *SaleReport {
	rep := newSaleReport(sale)
	rep.Status = SaleAgree
	redis := snap.Stock
	rep.Redis = &redis
	rep.Orders = countOrders(parts)
	mysql := mysqlStock(sale.Stock, rep.Orders)
	rep.MySQL = &mysql

	owner := owners(snap.Live, parts)
	holds, fixed := diffHolds(parts, snap.Holds)
	unordered := diffUnordered(snap.Holds, parts, owner)
	rep.Unordered = len(unordered)
	rep.obsUnits, rep.tickets = snap.Units, ticketsByUser(owner)

	// Counters and units. Every script changes a hold, the counters and its
	// user's units in one step, so in flight they always match the holds as
	// they are; a mismatch is drift. It is reported unless fixing the holds
	// makes them right anyway (a lost hold whose counters are still counted),
	// with what they must be once the holds are fixed. Either way a repair
	// sets the counters from the holds and recomputes the units of every user
	// whose tickets it changes.
	asIs, asIsUnits := tally(sale.Stock, snap.Holds, owner)
	toBe, toBeUnits := tally(sale.Stock, fixed, owner)

	ds := append(holds, unordered...)
	if d := diffCounters(snap.Stock, asIs, toBe); d != nil {
		ds = append(ds, d)
	}
	ds = append(ds, diffUnits(snap.Units, asIsUnits, toBeUnits, rep.tickets)...)
	if d := diffOversold(mysql); d != nil {
		ds = append(ds, d)
	}
	sign(sale.ID, ds)
	rep.Differences = append(rep.Differences, ds...)
	return rep
}

// newSaleReport is the report of a sale before it is compared. Differences is
// empty, not nil: the JSON has "differences": [] for every sale.
func newSaleReport(sale *flashsale.Sale) *SaleReport {
	return &SaleReport{SaleID: sale.ID, sale: sale, Differences: []*Difference{}}
}

// counted reports whether a hold counts against the stock: held or sold.
func counted(h flashsale.Hold) bool {
	return h.Kind == flashsale.HoldHeld || h.Kind == flashsale.HoldSold
}

// countOrders counts the parts by their order's status.
func countOrders(parts []flashsale.Part) OrderCounts {
	var c OrderCounts
	for _, p := range parts {
		switch p.Status {
		case flashsale.OrderPendingPayment:
			c.Pending++
			c.PendingUnits += p.Quantity
		case flashsale.OrderPaid:
			c.Paid++
			c.PaidUnits += p.Quantity
		default:
			c.Closed++
		}
	}
	return c
}

// mysqlStock is the stock as the orders say it is: held the units of pending
// orders, sold those of paid ones. Available is negative when oversold.
func mysqlStock(total int, c OrderCounts) flashsale.Stock {
	return flashsale.Stock{Total: total, Available: total - c.PendingUnits - c.PaidUnits,
		Held: c.PendingUnits, Sold: c.PaidUnits}
}

// owners maps every ticket whose user is known to that user: by its order, or
// (held without one) by the user's live ticket.
func owners(live map[string]string, parts []flashsale.Part) map[string]string {
	owner := make(map[string]string, len(parts)+len(live))
	for u, t := range live {
		owner[t] = u
	}
	for _, p := range parts {
		owner[p.TicketID] = p.UserID
	}
	return owner
}

// ticketsByUser inverts owner: each user's tickets, sorted.
func ticketsByUser(owner map[string]string) map[string][]string {
	tickets := map[string][]string{}
	for t, u := range owner {
		tickets[u] = append(tickets[u], t)
	}
	for _, ts := range tickets {
		sort.Strings(ts)
	}
	return tickets
}

// want is the hold a part's order calls for, given the hold cur Redis has:
// held for a pending order, sold for a paid one. A closed (expired or
// cancelled) order's ticket must not count: a counted hold is to be released,
// any other state (released, refused, none after a rebuild) stays.
func want(p flashsale.Part, cur flashsale.Hold) flashsale.Hold {
	switch p.Status {
	case flashsale.OrderPendingPayment:
		return flashsale.Hold{Kind: flashsale.HoldHeld, Quantity: p.Quantity}
	case flashsale.OrderPaid:
		return flashsale.Hold{Kind: flashsale.HoldSold, Quantity: p.Quantity}
	}
	if counted(cur) {
		return flashsale.Hold{Kind: flashsale.HoldReleased}
	}
	return cur
}

// diffHolds returns a difference for every part whose ticket's hold does not
// follow its order, and every ticket's hold once those are fixed (the others,
// unordered holds too, keep theirs).
func diffHolds(parts []flashsale.Part, holds map[string]flashsale.Hold) ([]*Difference, map[string]flashsale.Hold) {
	var ds []*Difference
	fixed := make(map[string]flashsale.Hold, len(holds))
	for t, h := range holds {
		fixed[t] = h
	}
	for _, p := range parts {
		cur := holds[p.TicketID]
		w := want(p, cur)
		if w == cur {
			continue
		}
		fixed[p.TicketID] = w
		ds = append(ds, &Difference{Kind: KindHold, TicketID: p.TicketID, UserID: p.UserID, Redis: show(cur), Want: show(w),
			Detail: "order " + string(p.Status) + " in MySQL",
			hold:   &flashsale.HoldFix{TicketID: p.TicketID, UserID: p.UserID, From: cur, To: w}})
	}
	return ds, fixed
}

// diffUnordered returns a difference, by ticket id, for every ticket held or
// sold in Redis that has no order; its fix releases the hold. Its user is
// known only when the ticket is the user's live ticket.
func diffUnordered(holds map[string]flashsale.Hold, parts []flashsale.Part, owner map[string]string) []*Difference {
	ordered := make(map[string]bool, len(parts))
	for _, p := range parts {
		ordered[p.TicketID] = true
	}
	var tickets []string
	for t, h := range holds {
		if !ordered[t] && counted(h) {
			tickets = append(tickets, t)
		}
	}
	sort.Strings(tickets)
	ds := make([]*Difference, len(tickets))
	for i, t := range tickets {
		h := holds[t]
		ds[i] = &Difference{Kind: KindUnordered, TicketID: t, UserID: owner[t], Redis: show(h), Want: "R",
			Detail: "no order in MySQL: a purchase between its hold and its commit, or a lost message",
			hold:   &flashsale.HoldFix{TicketID: t, UserID: owner[t], From: h, To: flashsale.Hold{Kind: flashsale.HoldReleased}}}
	}
	return ds
}

// tally is what the counters and the users' units must be given holds: held
// and sold their sums, available the rest of total, and each known owner's
// held and sold units.
func tally(total int, holds map[string]flashsale.Hold, owner map[string]string) (flashsale.Stock, map[string]int) {
	st, units := flashsale.Stock{Total: total}, map[string]int{}
	for t, h := range holds {
		switch h.Kind {
		case flashsale.HoldHeld:
			st.Held += h.Quantity
		case flashsale.HoldSold:
			st.Sold += h.Quantity
		}
		if u, ok := owner[t]; ok && counted(h) {
			units[u] += h.Quantity
		}
	}
	st.Available = st.Total - st.Held - st.Sold
	return st, units
}

// diffCounters returns the difference of counters got that match neither the
// holds as they are (asIs) nor as they will be once fixed (toBe), or nil. Its
// signature is the drift from asIs, which work in flight does not change.
func diffCounters(got, asIs, toBe flashsale.Stock) *Difference {
	if got == asIs || got == toBe {
		return nil
	}
	return &Difference{Kind: KindCounters, Redis: showStock(got), Want: showStock(toBe),
		Detail: "the counters do not match the holds",
		sig: fmt.Sprintf("%d %d %d %d", got.Total-asIs.Total, got.Available-asIs.Available,
			got.Held-asIs.Held, got.Sold-asIs.Sold)}
}

// diffUnits returns a difference, by user, for every user whose units got
// match neither the tickets as they are (asIs) nor as they will be once fixed
// (toBe). Users with units but no counted ticket are compared too: their
// units leaked. The fix recomputes the units from tickets.
func diffUnits(got, asIs, toBe map[string]int, tickets map[string][]string) []*Difference {
	users := make([]string, 0, len(asIs)+len(toBe))
	seen := map[string]bool{}
	for _, m := range []map[string]int{asIs, toBe, got} {
		for u := range m {
			if !seen[u] {
				seen[u] = true
				users = append(users, u)
			}
		}
	}
	sort.Strings(users)
	var ds []*Difference
	for _, u := range users {
		n := got[u]
		if n == asIs[u] || n == toBe[u] {
			continue
		}
		ds = append(ds, &Difference{Kind: KindUnits, UserID: u, Redis: fmt.Sprint(n), Want: fmt.Sprint(toBe[u]),
			Detail: "units do not match the user's tickets",
			units:  &flashsale.UnitsFix{UserID: u, Observed: n, Tickets: tickets[u]},
			sig:    fmt.Sprintf("%d %d", n, asIs[u])})
	}
	return ds
}

// diffOversold returns the difference of orders holding more units than the
// sale's stock, or nil. Nothing in Redis repairs it: it has no fix.
func diffOversold(mysql flashsale.Stock) *Difference {
	if mysql.Available >= 0 {
		return nil
	}
	return &Difference{Kind: KindOversold, Redis: "-", Want: fmt.Sprintf("at most %d units in orders", mysql.Total),
		Detail: fmt.Sprintf("%d units in pending_payment and paid orders, stock %d", mysql.Held+mysql.Sold, mysql.Total)}
}

// sign sets each difference's signature, its identity across passes: the
// sale, the kind, the ticket and user, and what differs (Redis and Want
// unless the difference set its own).
func sign(saleID string, ds []*Difference) {
	for _, d := range ds {
		if d.sig == "" {
			d.sig = d.Redis + "|" + d.Want
		}
		d.sig = saleID + "|" + string(d.Kind) + "|" + d.TicketID + "|" + d.UserID + "|" + d.sig
	}
}
