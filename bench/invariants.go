package bench

import (
	"fmt"
	"sort"
	"strings"
)

// Check is the outcome of one invariant check made from outside the system.
type Check struct {
	Name   string `json:"name"`
	Pass   bool   `json:"pass"`
	Detail string `json:"detail"`
}

// ticketObservation is what the bench last saw of one ticket.
type ticketObservation struct {
	UserID   string
	TicketID string
	OrderID  string
	Status   string
	Quantity int64
	Intent   string // pay, cancel, expire, or "" when no order was made
	Action   string // result of the pay/cancel action
	Verified bool   // re-read from the server after the load
	// Bundle marks a bundle ticket: one unit of the sale and one of the second sale.
	Bundle bool
	// OrderRead tells that the ticket's order was read; OrderItems are its items
	// (units per sale id), nil when not read.
	OrderRead  bool
	OrderItems map[string]int64
}

// units is what the ticket asks for in the first sale (second false) or the
// second sale of the bundles.
func (t ticketObservation) units(second bool) int64 {
	switch {
	case t.Bundle:
		return 1
	case second:
		return 0
	}
	return t.Quantity
}

// saleObservation is what the bench saw of the bundles' second sale.
type saleObservation struct {
	SaleID  string
	Stock   int64
	Samples []StockSample
	Final   *StockSample
}

// invariantInput is everything the checks look at.
type invariantInput struct {
	SaleID       string
	Stock        int64
	PerUserLimit int64
	WaitExpiry   bool
	Completed    bool
	Reason       string
	Tickets      []ticketObservation
	Samples      []StockSample // every reading taken while the run went on
	Final        *StockSample  // the reading once the system was quiet; nil if none
	// Second is the bundles' second sale (--bundle-ratio); nil without bundles.
	Second *saleObservation
}

// Check names, stable for machines reading the JSON report.
const (
	checkCompleted   = "run completed"
	checkOversell    = "no oversell (orders)"
	checkOversellVw  = "no oversell (sale view)"
	checkFinal       = "every 202 ticket final"
	checkPerUser     = "no user over per_user_limit"
	checkOneOrder    = "one order per ticket"
	checkConserved   = "available+held+sold == total"
	checkAgrees      = "sale view agrees with orders"
	checkActions     = "payments and cancellations applied"
	checkExpired     = "unpaid orders expired"
	checkStockReturn = "expired stock returned"
	checkBundles     = "bundle orders all or nothing"
	// secondSale is appended to the name of a check of the bundles' second sale.
	secondSale = " [second sale]"
)

// checkInvariants runs every check on the observations. A check that cannot be
// decided for lack of data fails.
func checkInvariants(in invariantInput) []Check {
	var out []Check
	add := func(name string, pass bool, format string, a ...any) {
		out = append(out, Check{Name: name, Pass: pass, Detail: fmt.Sprintf(format, a...)})
	}

	if in.Completed {
		add(checkCompleted, true, "every user finished within --duration")
	} else {
		add(checkCompleted, false, "%s", orDefault(in.Reason, "the run did not complete"))
	}

	held, sold := in.unitsHeldAndSold(false)
	saleChecks(add, "", in.Stock, in.Samples, in.Final, held, sold)
	var heldB, soldB int64
	if in.Second != nil {
		heldB, soldB = in.unitsHeldAndSold(true)
		saleChecks(add, secondSale, in.Second.Stock, in.Second.Samples, in.Second.Final, heldB, soldB)
	}

	// Every accepted ticket reached a final status; pending_payment counts as final
	// for the purchase (an order exists) unless the run waited for expiry.
	var notFinal, unconfirmed int
	var example string
	for _, t := range in.Tickets {
		final := !undecided(t.Status)
		if in.WaitExpiry {
			final = terminalStatus(t.Status)
		}
		if !final {
			if notFinal == 0 {
				example = fmt.Sprintf("ticket %s is %q", t.TicketID, orDefault(t.Status, "unknown"))
			}
			notFinal++
		} else if !t.Verified {
			if notFinal == 0 && unconfirmed == 0 {
				example = fmt.Sprintf("ticket %s could not be re-read", t.TicketID)
			}
			unconfirmed++
		}
	}
	switch {
	case notFinal > 0 || unconfirmed > 0:
		add(checkFinal, false, "%d of %d tickets not final, %d not re-read (%s)", notFinal, len(in.Tickets), unconfirmed, example)
	case in.WaitExpiry:
		add(checkFinal, true, "%d tickets, all paid/expired/cancelled/sold_out/failed", len(in.Tickets))
	default:
		add(checkFinal, true, "%d tickets, none left queued (pending_payment counts as final without --wait-expiry)", len(in.Tickets))
	}

	// Per-user limit and one order per ticket.
	perUser := map[string]int64{}
	perUserB := map[string]int64{}
	orderTicket := map[string]string{}
	var dupOrders, missingOrder int
	var dupExample string
	for _, t := range in.Tickets {
		if t.Status == statusPendingPayment || t.Status == statusPaid {
			perUser[t.UserID] += t.units(false)
			if n := t.units(true); n > 0 {
				perUserB[t.UserID] += n
			}
		}
		if !hasOrder(t.Status) {
			continue
		}
		if t.OrderID == "" {
			missingOrder++
			continue
		}
		if other, ok := orderTicket[t.OrderID]; ok && other != t.TicketID {
			if dupOrders == 0 {
				dupExample = fmt.Sprintf(": order %s on tickets %s and %s", t.OrderID, other, t.TicketID)
			}
			dupOrders++
			continue
		}
		orderTicket[t.OrderID] = t.TicketID
	}
	var overUsers []string
	var maxPerUser int64
	for u, n := range perUser {
		maxPerUser = max(maxPerUser, n)
		if n > in.PerUserLimit {
			overUsers = append(overUsers, fmt.Sprintf("%s=%d", u, n))
		}
	}
	for u, n := range perUserB {
		maxPerUser = max(maxPerUser, n)
		if n > in.PerUserLimit {
			overUsers = append(overUsers, fmt.Sprintf("%s=%d in the second sale", u, n))
		}
	}
	sort.Strings(overUsers)
	if len(overUsers) == 0 {
		add(checkPerUser, true, "%d users with units, at most %d each, limit %d", len(perUser), maxPerUser, in.PerUserLimit)
	} else {
		add(checkPerUser, false, "%d users over the limit %d: %s", len(overUsers), in.PerUserLimit, firstN(overUsers, 5))
	}
	if dupOrders == 0 {
		note := ""
		if missingOrder > 0 {
			note = fmt.Sprintf(" (%d tickets with an order status had no order_id)", missingOrder)
		}
		add(checkOneOrder, true, "%d orders on %d distinct tickets%s", len(orderTicket), len(orderTicket), note)
	} else {
		add(checkOneOrder, false, "%d orders shared between tickets%s", dupOrders, dupExample)
	}

	agrees(add, "", in.Final, held, sold)
	if in.Second != nil {
		agrees(add, secondSale, in.Second.Final, heldB, soldB)
		bundleCheck(add, in)
	}

	// Pay and cancel calls that succeeded must show on the tickets.
	var notPaid, notCancelled int
	for _, t := range in.Tickets {
		switch {
		case t.Intent == intentPay && t.Action == statusPaid && t.Status != statusPaid:
			notPaid++
		case t.Intent == intentCancel && t.Action == statusCancelled && t.Status != statusCancelled:
			notCancelled++
		}
	}
	add(checkActions, notPaid == 0 && notCancelled == 0,
		"%d paid orders not shown paid, %d cancelled orders not shown cancelled", notPaid, notCancelled)

	if in.WaitExpiry {
		var left, wrong int
		for _, t := range in.Tickets {
			switch {
			case t.Status == statusPendingPayment:
				left++
			case t.Intent == intentExpire && t.Status != statusExpired:
				wrong++
			}
		}
		add(checkExpired, left == 0 && wrong == 0,
			"%d orders still pending_payment, %d left-to-expire orders ended otherwise", left, wrong)
		stockReturned(add, "", in.Final)
		if in.Second != nil {
			stockReturned(add, secondSale, in.Second.Final)
		}
	}
	return out
}

type addFunc func(name string, pass bool, format string, a ...any)

// unitsHeldAndSold sums the units of pending_payment and paid tickets in the
// first sale (second false) or the second sale.
func (in invariantInput) unitsHeldAndSold(second bool) (held, sold int64) {
	for _, t := range in.Tickets {
		switch t.Status {
		case statusPendingPayment:
			held += t.units(second)
		case statusPaid:
			sold += t.units(second)
		}
	}
	return held, sold
}

// saleChecks are the checks of one sale's orders and readings: no oversell
// (orders and sale view) and every reading balanced. suffix tells the second
// sale's checks apart.
func saleChecks(add addFunc, suffix string, stock int64, samples []StockSample, final *StockSample, held, sold int64) {
	add(checkOversell+suffix, held+sold <= stock, "%d units in pending_payment + paid orders, stock %d", held+sold, stock)

	readings := samples
	if final != nil {
		readings = append(append([]StockSample(nil), readings...), *final)
	}
	if len(readings) == 0 {
		add(checkOversellVw+suffix, false, "no reading of the sale")
		add(checkConserved+suffix, false, "no reading of the sale")
		return
	}
	var over, unbalanced int
	var firstOver, firstUnbalanced string
	var maxOut int64
	for _, s := range readings {
		if s.Held+s.Sold > s.Total || s.Total > stock {
			if over == 0 {
				firstOver = fmt.Sprintf("at %.2fs: %s", s.T, describeSample(s))
			}
			over++
		}
		maxOut = max(maxOut, s.Held+s.Sold)
		if s.Available+s.Held+s.Sold != s.Total || s.Total != stock || s.Available < 0 || s.Held < 0 || s.Sold < 0 {
			if unbalanced == 0 {
				firstUnbalanced = fmt.Sprintf("at %.2fs: %s (stock %d)", s.T, describeSample(s), stock)
			}
			unbalanced++
		}
	}
	if over == 0 {
		add(checkOversellVw+suffix, true, "%d readings, at most %d of %d units held or sold", len(readings), maxOut, stock)
	} else {
		add(checkOversellVw+suffix, false, "%d of %d readings over total, first %s", over, len(readings), firstOver)
	}
	if unbalanced == 0 {
		add(checkConserved+suffix, true, "%d readings, all balanced", len(readings))
	} else {
		add(checkConserved+suffix, false, "%d of %d readings unbalanced, first %s", unbalanced, len(readings), firstUnbalanced)
	}
}

// agrees checks that the sale's quiet reading equals the tickets' units.
func agrees(add addFunc, suffix string, final *StockSample, held, sold int64) {
	if final == nil {
		add(checkAgrees+suffix, false, "no reading of the sale once quiet")
		return
	}
	add(checkAgrees+suffix, final.Held == held && final.Sold == sold,
		"sale: held %d, sold %d; orders: pending_payment %d, paid %d", final.Held, final.Sold, held, sold)
}

// stockReturned checks, after the expiry wait, that nothing is held and every
// unsold unit is available.
func stockReturned(add addFunc, suffix string, f *StockSample) {
	if f == nil {
		add(checkStockReturn+suffix, false, "no reading of the sale once quiet")
		return
	}
	add(checkStockReturn+suffix, f.Held == 0 && f.Available == f.Total-f.Sold,
		"held %d (want 0), available %d (want total %d - sold %d = %d)", f.Held, f.Available, f.Total, f.Sold, f.Total-f.Sold)
}

// bundleCheck: every bundle ticket that made an order has an order holding
// exactly one unit of each sale (read with GET /api/v1/orders/{id}), and a
// bundle ticket without an order (sold_out, failed) names none. An order that
// could not be read cannot be vouched for and fails the check.
func bundleCheck(add addFunc, in invariantInput) {
	var orders, complete, unread, half, stray int
	var example string
	note := func(format string, a ...any) {
		if example == "" {
			example = ": " + fmt.Sprintf(format, a...)
		}
	}
	for _, t := range in.Tickets {
		if !t.Bundle {
			continue
		}
		if !hasOrder(t.Status) {
			if t.OrderID != "" && (t.Status == statusSoldOut || t.Status == statusFailed) {
				stray++
				note("ticket %s is %s with order %s", t.TicketID, t.Status, t.OrderID)
			}
			continue
		}
		orders++
		switch {
		case !t.OrderRead:
			unread++
			note("order %s of ticket %s could not be read", t.OrderID, t.TicketID)
		case len(t.OrderItems) == 2 && t.OrderItems[in.SaleID] == 1 && t.OrderItems[in.Second.SaleID] == 1:
			complete++
		default:
			half++
			note("order %s of ticket %s holds %v, want one unit of %s and one of %s", t.OrderID, t.TicketID, fmtUnits(t.OrderItems), in.SaleID, in.Second.SaleID)
		}
	}
	add(checkBundles, unread == 0 && half == 0 && stray == 0,
		"%d bundle orders: %d with both items, %d not as bought, %d unread; %d sold-out/failed bundle tickets with an order%s",
		orders, complete, half, unread, stray, example)
}

// fmtUnits renders units per sale in a stable order.
func fmtUnits(m map[string]int64) string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = fmt.Sprintf("%s x%d", k, m[k])
	}
	return "[" + strings.Join(parts, ", ") + "]"
}

// allPass reports whether every check passed.
func allPass(cs []Check) bool {
	for _, c := range cs {
		if !c.Pass {
			return false
		}
	}
	return len(cs) > 0
}

func orDefault(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

func firstN(s []string, n int) string {
	if len(s) <= n {
		return strings.Join(s, ", ")
	}
	return strings.Join(s[:n], ", ") + fmt.Sprintf(", … (%d more)", len(s)-n)
}
