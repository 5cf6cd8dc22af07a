package reconcile

import (
	"fmt"
	"strings"
	"time"

	"github.com/flashsale/flashsale"
)

// This file is the report: its JSON shape (`flashsale reconcile --json`, read
// by the end-to-end tests) and its text (Report.Text). Both are an interface:
// a change to a field name or a line changes what callers parse.

// Kind is what a difference is about.
type Kind string

const (
	// KindHold: a ticket's Redis state does not follow its order in MySQL.
	KindHold Kind = "hold"
	// KindUnordered: a ticket is held or sold in Redis without an order.
	KindUnordered Kind = "unordered_hold"
	// KindCounters: the stock counters do not match the holds (or total the sale).
	KindCounters Kind = "counters"
	// KindUnits: a user's units do not match the user's tickets.
	KindUnits Kind = "units"
	// KindOversold: MySQL has more units in orders than the sale's stock. Not
	// repairable in Redis.
	KindOversold Kind = "oversold"
)

// Difference is one thing Redis and MySQL disagree about.
type Difference struct {
	Kind     Kind   `json:"kind"`
	TicketID string `json:"ticket_id,omitempty"`
	UserID   string `json:"user_id,omitempty"`
	// Redis is what Redis has, Want what it should have by MySQL.
	Redis    string `json:"redis"`
	Want     string `json:"want"`
	Detail   string `json:"detail,omitempty"`
	Repaired bool   `json:"repaired"`

	sig   string              // identity across passes: see sign
	hold  *flashsale.HoldFix  // the fix of a hold or unordered difference
	units *flashsale.UnitsFix // the fix of a units difference
}

// SaleStatus sums up one sale.
type SaleStatus string

const (
	SaleAgree     SaleStatus = "agree"
	SaleDiffer    SaleStatus = "differ"
	SaleNotLoaded SaleStatus = "not_loaded"
	SaleSkipped   SaleStatus = "skipped"
)

// OrderCounts counts a sale's orders in MySQL.
type OrderCounts struct {
	Pending      int `json:"pending"`
	PendingUnits int `json:"pending_units"`
	Paid         int `json:"paid"`
	PaidUnits    int `json:"paid_units"`
	Closed       int `json:"closed"` // expired or cancelled
}

// SaleReport is one sale's comparison.
type SaleReport struct {
	SaleID string     `json:"sale_id"`
	Status SaleStatus `json:"status"`
	Note   string     `json:"note,omitempty"`
	// Redis is the stock as Redis has it; MySQL as the orders say it is.
	Redis  *flashsale.Stock `json:"redis,omitempty"`
	MySQL  *flashsale.Stock `json:"mysql,omitempty"`
	Orders OrderCounts      `json:"orders"`
	// Unordered counts tickets held or sold in Redis without an order: in a
	// live sale, mostly purchases between their hold and their commit.
	Unordered   int           `json:"unordered_holds"`
	Differences []*Difference `json:"differences"`

	sale     *flashsale.Sale
	obsUnits map[string]int      // user -> units as Redis had them
	tickets  map[string][]string // user -> the user's tickets, sorted
}

// Report is the outcome of a reconciliation.
type Report struct {
	CheckedAt time.Time     `json:"checked_at"`
	Sales     []*SaleReport `json:"sales"`
	// Differences counts those not repaired; Repaired those repaired.
	Differences int `json:"differences"`
	Repaired    int `json:"repaired"`
	// Transient counts differences seen on one of two looks only (work that was
	// in flight); they are not in Sales.
	Transient int `json:"transient"`
	// Agree: no difference remains.
	Agree bool `json:"agree"`
}

// recount sets the totals from the differences, and each compared sale's
// status: agree when none of its differences remains open.
func (r *Report) recount() {
	r.Differences, r.Repaired = 0, 0
	for _, s := range r.Sales {
		open := 0
		for _, d := range s.Differences {
			if d.Repaired {
				r.Repaired++
			} else {
				open++
			}
		}
		r.Differences += open
		if s.Status == SaleAgree || s.Status == SaleDiffer {
			s.Status = SaleAgree
			if open > 0 {
				s.Status = SaleDiffer
			}
		}
	}
	r.Agree = r.Differences == 0
}

// each calls fn for every difference of every sale, in order.
func (r *Report) each(fn func(s *SaleReport, d *Difference)) {
	for _, s := range r.Sales {
		for _, d := range s.Differences {
			fn(s, d)
		}
	}
}

// Text writes the report for people: a paragraph a sale (the stock after the
// repairs, if any) and a summary line.
func (r *Report) Text() string {
	var b strings.Builder
	counts := map[SaleStatus]int{}
	for _, s := range r.Sales {
		counts[s.Status]++
		writeSale(&b, s)
	}
	fmt.Fprintf(&b, "%d sales: %d agree, %d different, %d not loaded, %d skipped; %d differences remain, %d repaired",
		len(r.Sales), counts[SaleAgree], counts[SaleDiffer], counts[SaleNotLoaded], counts[SaleSkipped], r.Differences, r.Repaired)
	if r.Transient > 0 {
		fmt.Fprintf(&b, "; %d seen on one look only (work in flight)", r.Transient)
	}
	if r.Agree {
		b.WriteString("\nRedis and MySQL agree.\n")
	} else {
		b.WriteString("\nRedis and MySQL DIFFER.\n")
	}
	return b.String()
}

// writeSale writes a sale's paragraph: its status, and for a compared sale
// both stocks and its differences.
func writeSale(b *strings.Builder, s *SaleReport) {
	switch s.Status {
	case SaleSkipped, SaleNotLoaded:
		fmt.Fprintf(b, "sale %s: %s (%s)\n", s.SaleID, s.Status, s.Note)
		return
	case SaleAgree:
		if len(s.Differences) > 0 {
			fmt.Fprintf(b, "sale %s: repaired; Redis and MySQL agree\n", s.SaleID)
		} else {
			fmt.Fprintf(b, "sale %s: Redis and MySQL agree\n", s.SaleID)
		}
	default:
		fmt.Fprintf(b, "sale %s: DIFFERENT\n", s.SaleID)
	}
	fmt.Fprintf(b, "  redis: %s\n", showStock(*s.Redis))
	fmt.Fprintf(b, "  mysql: %s (orders: %d pending, %d paid, %d expired or cancelled)\n",
		showStock(*s.MySQL), s.Orders.Pending, s.Orders.Paid, s.Orders.Closed)
	if s.Unordered > 0 {
		fmt.Fprintf(b, "  %d tickets held in Redis without an order\n", s.Unordered)
	}
	for _, d := range s.Differences {
		writeDifference(b, d)
	}
}

// writeDifference writes one line: "  - <kind>[ ticket <id>][ user <id>]:
// redis <x>, want <y> (<detail>) [repaired|NOT REPAIRED]".
func writeDifference(b *strings.Builder, d *Difference) {
	what := ""
	if d.TicketID != "" {
		what += " ticket " + d.TicketID
	}
	if d.UserID != "" {
		what += " user " + d.UserID
	}
	state := "NOT REPAIRED"
	if d.Repaired {
		state = "repaired"
	}
	fmt.Fprintf(b, "  - %s%s: redis %s, want %s (%s) [%s]\n", d.Kind, what, d.Redis, d.Want, d.Detail, state)
}

// show is a hold as a difference reads it: "none", "H:<q>", "S:<q>", "R", ...
func show(h flashsale.Hold) string {
	if h.Kind == flashsale.HoldNone {
		return "none"
	}
	return flashsale.FormatHold(h)
}

// showStock is a stock as a difference and the text read it.
func showStock(s flashsale.Stock) string {
	return fmt.Sprintf("total %d available %d held %d sold %d", s.Total, s.Available, s.Held, s.Sold)
}
