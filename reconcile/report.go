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
	// KindCap: the sale's stock cap in MySQL does not add up: its allotments
	// plus the units in flight between shards are not the stock, or a shard
	// uses more than its allotment. Not repaired: a bug to look into.
	KindCap Kind = "cap"
	// KindCapUsed: a shard's stock cap counts other units (used) than the
	// shard's orders have. Not repaired: a bug to look into.
	KindCapUsed Kind = "cap_used"
	// KindInventoryHold: a mysql-inventory sale's ticket hold in its MySQL
	// row does not follow the ticket's order. Repaired (released, confirmed,
	// lowered to a return) where MySQL's own operation applies.
	KindInventoryHold Kind = "inventory_hold"
	// KindInventoryUnordered: a ticket is held or sold in a mysql-inventory
	// sale's row without an order: a purchase in flight, or one whose message
	// was lost after the hold. Released like an unordered hold.
	KindInventoryUnordered Kind = "inventory_unordered"
	// KindInventoryCounters: a mysql-inventory sale's row (available, held,
	// sold) does not match its ticket holds, or its total the stock. Not
	// repaired: a bug to look into.
	KindInventoryCounters Kind = "inventory_counters"
)

// stray reports whether a difference of kind k is a hold without an order,
// which is released only once it persisted (StrayAfter, or
// OnceOptions.ReleaseUnordered): a purchase may be between its hold and its
// commit.
func (k Kind) stray() bool { return k == KindUnordered || k == KindInventoryUnordered }

// Difference is one thing Redis and MySQL disagree about, or MySQL with
// itself (Store "mysql": the stock cap, a mysql-inventory sale's row).
type Difference struct {
	Kind     Kind   `json:"kind"`
	TicketID string `json:"ticket_id,omitempty"`
	UserID   string `json:"user_id,omitempty"`
	// Store is where the difference is: empty for Redis, "mysql" for MySQL's
	// own bookkeeping (kinds cap, cap_used and inventory_*).
	Store string `json:"store,omitempty"`
	// Redis is what the store has (Redis, or MySQL's row or cap for Store
	// "mysql"), Want what it should have by MySQL's orders.
	Redis    string `json:"redis"`
	Want     string `json:"want"`
	Detail   string `json:"detail,omitempty"`
	Repaired bool   `json:"repaired"`

	sig   string              // identity across passes: see sign
	hold  *flashsale.HoldFix  // the fix of a hold or unordered difference in Redis
	units *flashsale.UnitsFix // the fix of a units difference
	mysql *flashsale.HoldFix  // the fix of a ticket's hold in a mysql-inventory sale's row
}

// storeMySQL is Difference.Store for MySQL's own bookkeeping.
const storeMySQL = "mysql"

// fix is the difference's hold fix, in Redis or in MySQL's row; nil for
// none.
func (d *Difference) fix() *flashsale.HoldFix {
	if d.hold != nil {
		return d.hold
	}
	return d.mysql
}

// SaleStatus sums up one sale.
type SaleStatus string

// A sale is not_loaded when its stock is not in Redis (rebuilt from MySQL on
// first use): only MySQL's own bookkeeping is compared then.
const (
	SaleAgree     SaleStatus = "agree"
	SaleDiffer    SaleStatus = "differ"
	SaleNotLoaded SaleStatus = "not_loaded"
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
	// Redis is the stock as Redis has it; MySQL as the orders say it is;
	// Inventory, for a sale with inventory "mysql", as its MySQL row has it.
	Redis     *flashsale.StockLevel `json:"redis,omitempty"`
	MySQL     *flashsale.StockLevel `json:"mysql,omitempty"`
	Inventory *flashsale.StockLevel `json:"inventory,omitempty"`
	// Cap is the sale's stock cap in MySQL, per shard.
	Cap    *flashsale.CapSnapshot `json:"cap,omitempty"`
	Orders OrderCounts            `json:"orders"`
	// Unordered counts tickets held or sold in Redis (or in a mysql-inventory
	// sale's row) without an order: in a live sale, mostly purchases between
	// their hold and their commit.
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
	fmt.Fprintf(&b, "%d sales: %d agree, %d different, %d not loaded; %d differences remain, %d repaired",
		len(r.Sales), counts[SaleAgree], counts[SaleDiffer], counts[SaleNotLoaded], r.Differences, r.Repaired)
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

// writeSale writes a sale's paragraph: its status, both stocks (and the
// inventory row of a mysql-inventory sale) where it was compared, its stock
// cap, and its differences.
func writeSale(b *strings.Builder, s *SaleReport) {
	switch s.Status {
	case SaleNotLoaded:
		fmt.Fprintf(b, "sale %s: %s (%s)\n", s.SaleID, s.Status, s.Note)
	case SaleAgree:
		if len(s.Differences) > 0 {
			fmt.Fprintf(b, "sale %s: repaired; Redis and MySQL agree\n", s.SaleID)
		} else {
			fmt.Fprintf(b, "sale %s: Redis and MySQL agree\n", s.SaleID)
		}
	default:
		fmt.Fprintf(b, "sale %s: DIFFERENT\n", s.SaleID)
	}
	if s.Redis != nil {
		fmt.Fprintf(b, "  redis: %s\n", showStock(*s.Redis))
	}
	if s.MySQL != nil {
		fmt.Fprintf(b, "  mysql: %s (orders: %d pending, %d paid, %d expired or cancelled)\n",
			showStock(*s.MySQL), s.Orders.Pending, s.Orders.Paid, s.Orders.Closed)
	}
	if s.Inventory != nil {
		fmt.Fprintf(b, "  inventory row: %s\n", showStock(*s.Inventory))
	}
	if s.Cap != nil {
		fmt.Fprintf(b, "  stock cap: %s\n", showCap(*s.Cap))
	}
	if s.Unordered > 0 {
		fmt.Fprintf(b, "  %d tickets held without an order\n", s.Unordered)
	}
	for _, d := range s.Differences {
		writeDifference(b, d)
	}
}

// writeDifference writes one line: "  - <kind>[ ticket <id>][ user <id>]:
// <redis|mysql> <x>, want <y> (<detail>) [repaired|NOT REPAIRED]".
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
	store := "redis"
	if d.Store != "" {
		store = d.Store
	}
	fmt.Fprintf(b, "  - %s%s: %s %s, want %s (%s) [%s]\n", d.Kind, what, store, d.Redis, d.Want, d.Detail, state)
}

// show is a hold as a difference reads it: "none", "H:<q>", "S:<q>", "R", ...
func show(h flashsale.Hold) string {
	if h.Kind == flashsale.HoldNone {
		return "none"
	}
	return flashsale.FormatHold(h)
}

// showCap is a stock cap as the text reads it: "shard 0 allotted 5 used 3
// (orders 3), shard 1 ...; in flight 0".
func showCap(c flashsale.CapSnapshot) string {
	var parts []string
	for _, sc := range c.Shards {
		parts = append(parts, fmt.Sprintf("shard %d allotted %d used %d (orders %d)", sc.Shard, sc.Allotted, sc.Used, sc.InOrders))
	}
	return fmt.Sprintf("%s; in flight %d", strings.Join(parts, ", "), c.InFlight)
}

// showStock is a stock as a difference and the text read it.
func showStock(s flashsale.StockLevel) string {
	return fmt.Sprintf("total %d available %d held %d sold %d", s.Total, s.Available, s.Held, s.Sold)
}
