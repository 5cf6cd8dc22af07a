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
	rep.Orders = countOrders(parts)
	mysql := mysqlStock(sale.Stock, rep.Orders)
	rep.MySQL = &mysql
	ds := rep.diffRedis(sale, snap, parts, owners(snap.Live, parts))
	if d := diffOversold(mysql); d != nil {
		ds = append(ds, d)
	}
	sign(sale.ID, ds)
	rep.Differences = append(rep.Differences, ds...)
	return rep
}

// diffRedis compares a loaded snapshot with parts (what Redis must follow:
// orders, or a mysql-inventory sale's row) and returns the differences of
// holds, unordered holds, counters and units, unsigned. owner knows the
// tickets' users. It sets rep's Redis stock and what a repair of units needs.
func (rep *SaleReport) diffRedis(sale *flashsale.Sale, snap flashsale.SaleSnapshot, parts []flashsale.Part, owner map[string]string) []*Difference {
	redis := snap.Stock
	rep.Redis = &redis
	holds, fixed := diffHolds(parts, snap.Holds)
	unordered := diffUnordered(snap.Holds, parts, owner)
	rep.Unordered += len(unordered)
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
	return append(ds, diffUnits(snap.Units, asIsUnits, toBeUnits, rep.tickets)...)
}

// diffInventorySale compares a sale with inventory "mysql": its MySQL row
// with the parts of its orders (each ticket's hold there, its unordered
// holds, the row's counters against its holds), then, when snap is loaded,
// the Redis mirror with the row as it will be once repaired (the mirror
// follows MySQL's holds, which follow the orders), and the orders with the
// stock (oversold). It returns the sale's report like diffSale, with the row
// in Inventory; with snap not loaded, status SaleNotLoaded and MySQL's
// differences only.
func diffInventorySale(sale *flashsale.Sale, inv flashsale.InventorySnapshot, snap flashsale.SaleSnapshot, parts []flashsale.Part) *SaleReport {
	rep := newSaleReport(sale)
	rep.Status = SaleAgree
	rep.Orders = countOrders(parts)
	mysql := mysqlStock(sale.Stock, rep.Orders)
	rep.MySQL = &mysql
	row := inv.Stock
	rep.Inventory = &row
	owner := owners(snap.Live, parts)

	// The row's holds against the orders, as Redis's are compared; only
	// MySQL's own operations repair them (see rowFix).
	holds, _ := diffHolds(parts, inv.Holds)
	unordered := diffUnordered(inv.Holds, parts, owner)
	rep.Unordered += len(unordered)
	fixed := make(map[string]flashsale.Hold, len(inv.Holds))
	for t, h := range inv.Holds {
		fixed[t] = h
	}
	ds := append(holds, unordered...)
	for _, d := range ds {
		d.Store, d.mysql, d.hold = storeMySQL, rowFix(d.hold), nil
		if d.Kind == KindHold {
			d.Kind = KindInventoryHold
		} else {
			d.Kind, d.Detail = KindInventoryUnordered, "no order in MySQL: a purchase between its hold in the inventory row and its commit, or a lost message"
		}
		// The mirror follows the row as a repair will leave it, except for
		// unordered holds: their release waits (StrayAfter) and the mirror
		// follows it once it is done, never ahead of it.
		if d.mysql != nil && d.Kind == KindInventoryHold {
			fixed[d.TicketID] = d.mysql.To
		}
	}
	asIs, _ := tally(sale.Stock, inv.Holds, nil)
	toBe, _ := tally(sale.Stock, fixed, nil)
	if d := diffCounters(row, asIs, toBe); d != nil {
		d.Kind, d.Store, d.Detail = KindInventoryCounters, storeMySQL, "the inventory row does not match its ticket holds"
		ds = append(ds, d)
	}

	if snap.Loaded {
		mirror := rep.diffRedis(sale, snap, mirrorParts(sale.ID, fixed, owner), owner)
		for _, d := range mirror {
			if d.Kind == KindHold {
				d.Detail = "held " + show(fixed[d.TicketID]) + " in MySQL's inventory row"
			}
		}
		ds = append(ds, mirror...)
	} else {
		rep.Status, rep.Note = SaleNotLoaded, "Redis mirror not loaded; rebuilt from MySQL on first use"
	}
	if d := diffOversold(mysql); d != nil {
		ds = append(ds, d)
	}
	sign(sale.ID, ds)
	rep.Differences = append(rep.Differences, ds...)
	return rep
}

// rowFix is the fix of a ticket's hold in a mysql-inventory sale's row that
// MySQL's own idempotent operations can apply, or nil: release (held → R),
// confirm (held → sold, same units) and a return (sold → fewer sold). A hold
// the row lacks is never taken by a repair: the units may be gone.
func rowFix(f *flashsale.HoldFix) *flashsale.HoldFix {
	switch {
	case f.From.Kind == flashsale.HoldHeld && f.To.Kind == flashsale.HoldReleased,
		f.From.Kind == flashsale.HoldHeld && f.To.Kind == flashsale.HoldSold && f.To.Quantity == f.From.Quantity,
		f.From.Kind == flashsale.HoldSold && f.To.Kind == flashsale.HoldSold && f.To.Quantity < f.From.Quantity:
		return f
	}
	return nil
}

// mirrorParts are the parts the Redis mirror of a mysql-inventory sale must
// follow: one per ticket the row knows, held (as a pending order) or sold
// (as a paid one) as the row has it, any other state as a closed order (it
// must not count).
func mirrorParts(saleID string, holds map[string]flashsale.Hold, owner map[string]string) []flashsale.Part {
	tickets := make([]string, 0, len(holds))
	for t := range holds {
		tickets = append(tickets, t)
	}
	sort.Strings(tickets)
	parts := make([]flashsale.Part, len(tickets))
	for i, t := range tickets {
		h := holds[t]
		st := flashsale.OrderExpired
		switch h.Kind {
		case flashsale.HoldHeld:
			st = flashsale.OrderPendingPayment
		case flashsale.HoldSold:
			st = flashsale.OrderPaid
		}
		parts[i] = flashsale.Part{SaleID: saleID, TicketID: t, UserID: owner[t], Quantity: h.Quantity, Status: st}
	}
	return parts
}

// addCap adds the sale's stock cap to its report, with its differences
// (diffCap), signed.
func (rep *SaleReport) addCap(c flashsale.CapSnapshot) {
	rep.Cap = &c
	ds := diffCap(rep.sale.Stock, c)
	sign(rep.SaleID, ds)
	rep.Differences = append(rep.Differences, ds...)
}

// diffCap returns the differences of a sale's stock cap (both inventory
// modes): its allotments and the units in flight not adding up to stock, or a
// shard using more than its allotment (KindCap), and a shard whose used
// units are not its orders' (KindCapUsed). None has a fix: MySQL's cap is
// the last word on stock, and a difference here is a bug to look into.
func diffCap(stock int, c flashsale.CapSnapshot) []*Difference {
	var ds []*Difference
	total := c.InFlight
	for _, sc := range c.Shards {
		total += sc.Allotted
	}
	if total != stock {
		ds = append(ds, &Difference{Kind: KindCap, Store: storeMySQL, Redis: fmt.Sprintf("allotted %d (in flight %d)", total, c.InFlight),
			Want: fmt.Sprintf("allotted %d", stock), Detail: "the shards' allotments and the units in flight do not add up to the stock"})
	}
	for _, sc := range c.Shards {
		if sc.Used > sc.Allotted {
			ds = append(ds, &Difference{Kind: KindCap, Store: storeMySQL, Redis: fmt.Sprintf("shard %d used %d", sc.Shard, sc.Used),
				Want: fmt.Sprintf("at most %d", sc.Allotted), Detail: fmt.Sprintf("shard %d uses more than its allotment", sc.Shard)})
		}
		if sc.Used != sc.InOrders {
			ds = append(ds, &Difference{Kind: KindCapUsed, Store: storeMySQL, Redis: fmt.Sprintf("shard %d used %d", sc.Shard, sc.Used),
				Want: fmt.Sprintf("used %d", sc.InOrders), Detail: fmt.Sprintf("shard %d's pending_payment and paid orders have %d units", sc.Shard, sc.InOrders)})
		}
	}
	return ds
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
func mysqlStock(total int, c OrderCounts) flashsale.StockLevel {
	return flashsale.StockLevel{Total: total, Available: total - c.PendingUnits - c.PaidUnits,
		Held: c.PendingUnits, Sold: c.PaidUnits}
}

// owners maps every ticket whose user is known to that user: by its order (a
// part without a user says nothing), or (held without one) by the user's
// live ticket.
func owners(live map[string]string, parts []flashsale.Part) map[string]string {
	owner := make(map[string]string, len(parts)+len(live))
	for u, t := range live {
		owner[t] = u
	}
	for _, p := range parts {
		if p.UserID != "" {
			owner[p.TicketID] = p.UserID
		}
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
func tally(total int, holds map[string]flashsale.Hold, owner map[string]string) (flashsale.StockLevel, map[string]int) {
	st, units := flashsale.StockLevel{Total: total}, map[string]int{}
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
func diffCounters(got, asIs, toBe flashsale.StockLevel) *Difference {
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
func diffOversold(mysql flashsale.StockLevel) *Difference {
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
