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
}

// invariantInput is everything the checks look at.
type invariantInput struct {
	Stock        int64
	PerUserLimit int64
	WaitExpiry   bool
	Completed    bool
	Reason       string
	Tickets      []ticketObservation
	Samples      []StockSample // every reading taken while the run went on
	Final        *StockSample  // the reading once the system was quiet; nil if none
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

	var held, sold int64
	for _, t := range in.Tickets {
		switch t.Status {
		case statusPendingPayment:
			held += t.Quantity
		case statusPaid:
			sold += t.Quantity
		}
	}
	add(checkOversell, held+sold <= in.Stock, "%d units in pending_payment + paid orders, stock %d", held+sold, in.Stock)

	readings := in.Samples
	if in.Final != nil {
		readings = append(append([]StockSample(nil), readings...), *in.Final)
	}
	if len(readings) == 0 {
		add(checkOversellVw, false, "no reading of the sale")
		add(checkConserved, false, "no reading of the sale")
	} else {
		var over, unbalanced int
		var firstOver, firstUnbalanced string
		var maxOut int64
		for _, s := range readings {
			if s.Held+s.Sold > s.Total || s.Total > in.Stock {
				if over == 0 {
					firstOver = fmt.Sprintf("at %.2fs: %s", s.T, describeSample(s))
				}
				over++
			}
			maxOut = max(maxOut, s.Held+s.Sold)
			if s.Available+s.Held+s.Sold != s.Total || s.Total != in.Stock || s.Available < 0 || s.Held < 0 || s.Sold < 0 {
				if unbalanced == 0 {
					firstUnbalanced = fmt.Sprintf("at %.2fs: %s (stock %d)", s.T, describeSample(s), in.Stock)
				}
				unbalanced++
			}
		}
		if over == 0 {
			add(checkOversellVw, true, "%d readings, at most %d of %d units held or sold", len(readings), maxOut, in.Stock)
		} else {
			add(checkOversellVw, false, "%d of %d readings over total, first %s", over, len(readings), firstOver)
		}
		if unbalanced == 0 {
			add(checkConserved, true, "%d readings, all balanced", len(readings))
		} else {
			add(checkConserved, false, "%d of %d readings unbalanced, first %s", unbalanced, len(readings), firstUnbalanced)
		}
	}

	// Every accepted ticket reached a final status; pending_payment counts as final
	// for the purchase (an order exists) unless the run waited for expiry.
	var notFinal, unconfirmed int
	var example string
	for _, t := range in.Tickets {
		final := t.Status != "" && t.Status != statusQueued
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
	orderTicket := map[string]string{}
	var dupOrders, missingOrder int
	var dupExample string
	for _, t := range in.Tickets {
		if t.Status == statusPendingPayment || t.Status == statusPaid {
			perUser[t.UserID] += t.Quantity
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

	if in.Final == nil {
		add(checkAgrees, false, "no reading of the sale once quiet")
	} else {
		add(checkAgrees, in.Final.Held == held && in.Final.Sold == sold,
			"sale: held %d, sold %d; orders: pending_payment %d, paid %d", in.Final.Held, in.Final.Sold, held, sold)
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
		if in.Final == nil {
			add(checkStockReturn, false, "no reading of the sale once quiet")
		} else {
			f := in.Final
			add(checkStockReturn, f.Held == 0 && f.Available == f.Total-f.Sold,
				"held %d (want 0), available %d (want total %d - sold %d = %d)", f.Held, f.Available, f.Total, f.Sold, f.Total-f.Sold)
		}
	}
	return out
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
