package flashsale

import "strconv"

// This file is the vocabulary the reconciler and the stores share: what the
// reconciler reads of a sale's stock (in Redis: SaleSnapshot; in MySQL: the
// stock cap, CapSnapshot, and a mysql-inventory sale's row, InventorySnapshot),
// and the compare-and-set fixes it asks the stock store to apply (redisstore
// and mysqlstore implement them, package reconcile decides them).

// SaleSnapshot is a sale's state in the stock store, read at one instant.
type SaleSnapshot struct {
	// Loaded is false when the sale's stock is missing (lost with Redis, or
	// never used; it is rebuilt on first use); the other fields are then empty.
	Loaded bool
	Stock  StockLevel
	// Holds is every ticket's state, by ticket id.
	Holds map[string]Hold
	// Live is each user's live ticket id, by user id.
	Live map[string]string
	// Units is the units each user holds or bought, by user id.
	Units map[string]int
}

// ShardCap is one shard's stock cap on a sale (mysqlstore's allotments), read
// in one consistent snapshot of the shard, beside the units its orders have.
type ShardCap struct {
	Shard int `json:"shard"`
	// Allotted is the most units the shard may have in pending_payment and
	// paid orders of the sale; Used is how many the cap counts.
	Allotted int `json:"allotted"`
	Used     int `json:"used"`
	// InOrders is the units in the shard's pending_payment and paid orders of
	// the sale, net of returned units: what Used must be.
	InOrders int `json:"in_orders"`
}

// CapSnapshot is a sale's stock cap in MySQL: every shard's, and the units
// of transfers between shards debited from their donor and not delivered
// yet. Σ Allotted + InFlight must be the sale's stock.
type CapSnapshot struct {
	Shards   []ShardCap `json:"shards"`
	InFlight int        `json:"in_flight"`
}

// InventorySnapshot is the stock of a sale with inventory "mysql", read in one
// consistent snapshot: its row (total, available, held, sold) and every
// ticket's hold state there, by ticket id.
type InventorySnapshot struct {
	Stock StockLevel
	Holds map[string]Hold
}

// HoldFix sets a ticket's state to To if it is still From. UserID, when known,
// keeps the user's live ticket in step (set for a hold, cleared when the hold
// ends); units are recomputed through a UnitsFix.
type HoldFix struct {
	TicketID, UserID string
	From, To         Hold
}

// UnitsFix sets a user's units to the sum of the held and sold units of Tickets
// (every ticket of the user that may count), if the user's units are still
// Observed.
type UnitsFix struct {
	UserID   string
	Observed int
	Tickets  []string
}

// RepairResult says which fixes applied, by index into the fixes asked for,
// and what the stock is after.
type RepairResult struct {
	Loaded bool // false: the sale was not loaded and nothing was changed
	Holds  []bool
	Units  []bool
	Stock  StockLevel
}

// FormatHold is a hold as the stock store writes it: "H:<q>", "S:<q>", "R",
// "X", "F", or "" for no state.
func FormatHold(h Hold) string {
	switch h.Kind {
	case HoldNone:
		return ""
	case HoldHeld, HoldSold:
		return string(rune(h.Kind)) + ":" + strconv.Itoa(h.Quantity)
	default:
		return string(rune(h.Kind))
	}
}
