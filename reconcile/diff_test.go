package reconcile

import (
	"fmt"
	"reflect"
	"testing"

	"github.com/flashsale/flashsale"
)

// These tests run the diffing alone: a sale, its snapshot and its orders in,
// differences and fixes out; no Redis, no MySQL.

var (
	none = flashsale.Hold{}
	rel  = flashsale.Hold{Kind: flashsale.HoldReleased}
)

func held(q int) flashsale.Hold { return flashsale.Hold{Kind: flashsale.HoldHeld, Quantity: q} }
func sold(q int) flashsale.Hold { return flashsale.Hold{Kind: flashsale.HoldSold, Quantity: q} }

// row is an order as SaleOrders returns it: one row per order and sale.
func row(id, user string, st flashsale.OrderStatus, q int) *flashsale.Order {
	return order(id, user, st, flashsale.OrderItem{SaleID: "s1", Quantity: q})
}

func order(id, user string, st flashsale.OrderStatus, items ...flashsale.OrderItem) *flashsale.Order {
	o := &flashsale.Order{ID: id, UserID: user, Status: st}
	o.SetItems(items)
	return o
}

const (
	pending   = flashsale.OrderPendingPayment
	paid      = flashsale.OrderPaid
	expired   = flashsale.OrderExpired
	cancelled = flashsale.OrderCancelled
)

// describe is a difference in one line: "<kind>[ <ticket>][ <user>]: <redis> -> <want>".
func describe(d *Difference) string {
	s := string(d.Kind)
	if d.TicketID != "" {
		s += " " + d.TicketID
	}
	if d.UserID != "" {
		s += " " + d.UserID
	}
	return s + ": " + d.Redis + " -> " + d.Want
}

func describeAll(ds []*Difference) []string {
	out := []string{}
	for _, d := range ds {
		out = append(out, describe(d))
	}
	return out
}

func stock(total, available, h, s int) flashsale.StockLevel {
	return flashsale.StockLevel{Total: total, Available: available, Held: h, Sold: s}
}

func TestDiffSale(t *testing.T) {
	for _, tc := range []struct {
		name   string
		total  int // the sale's stock; 10 when 0
		orders []*flashsale.Order
		snap   flashsale.SaleSnapshot
		want   []string
		check  func(t *testing.T, rep *SaleReport)
	}{{
		name: "every order followed: no difference",
		orders: []*flashsale.Order{row("o1", "u1", pending, 1), row("o2", "u2", paid, 2),
			row("o3", "u3", expired, 1), row("o4", "u4", cancelled, 1)},
		snap: flashsale.SaleSnapshot{Stock: stock(10, 7, 1, 2),
			Holds: map[string]flashsale.Hold{"o1": held(1), "o2": sold(2), "o3": rel}, // o4: none, as after a rebuild
			Live:  map[string]string{"u1": "o1"},
			Units: map[string]int{"u1": 1, "u2": 2, "u3": 0}},
		want: []string{},
		check: func(t *testing.T, rep *SaleReport) {
			if want := (OrderCounts{Pending: 1, PendingUnits: 1, Paid: 1, PaidUnits: 2, Closed: 2}); rep.Orders != want {
				t.Errorf("orders %+v, want %+v", rep.Orders, want)
			}
			if *rep.Redis != stock(10, 7, 1, 2) || *rep.MySQL != stock(10, 7, 1, 2) || rep.Unordered != 0 {
				t.Errorf("redis %+v mysql %+v unordered %d", *rep.Redis, *rep.MySQL, rep.Unordered)
			}
		},
	}, {
		// The counters and units still count it: fixing the hold makes them
		// right, so they are no difference of their own.
		name:   "a held order whose hold is missing",
		orders: []*flashsale.Order{row("o1", "u1", pending, 1)},
		snap: flashsale.SaleSnapshot{Stock: stock(10, 9, 1, 0), Holds: map[string]flashsale.Hold{},
			Live: map[string]string{"u1": "o1"}, Units: map[string]int{"u1": 1}},
		want: []string{"hold o1 u1: none -> H:1"},
		check: func(t *testing.T, rep *SaleReport) {
			d := rep.Differences[0]
			if want := (flashsale.HoldFix{TicketID: "o1", UserID: "u1", From: none, To: held(1)}); *d.hold != want {
				t.Errorf("fix %+v, want %+v", *d.hold, want)
			}
			if d.Detail != "order pending_payment in MySQL" {
				t.Errorf("detail %q", d.Detail)
			}
		},
	}, {
		name:   "a sold order still held",
		orders: []*flashsale.Order{row("o1", "u1", paid, 2)},
		snap: flashsale.SaleSnapshot{Stock: stock(10, 8, 2, 0), Holds: map[string]flashsale.Hold{"o1": held(2)},
			Live: map[string]string{"u1": "o1"}, Units: map[string]int{"u1": 2}},
		want: []string{"hold o1 u1: H:2 -> S:2"},
	}, {
		name:   "an expired order still held",
		orders: []*flashsale.Order{row("o1", "u1", expired, 1), row("o2", "u2", cancelled, 1)},
		snap: flashsale.SaleSnapshot{Stock: stock(10, 8, 1, 1), Holds: map[string]flashsale.Hold{"o1": held(1), "o2": sold(1)},
			Live: map[string]string{"u1": "o1"}, Units: map[string]int{"u1": 1, "u2": 1}},
		want: []string{"hold o1 u1: H:1 -> R", "hold o2 u2: S:1 -> R"},
		check: func(t *testing.T, rep *SaleReport) {
			if d := rep.Differences[0]; d.Detail != "order expired in MySQL" || d.hold.To != rel {
				t.Errorf("difference %+v, fix %+v", d, *d.hold)
			}
			if *rep.MySQL != stock(10, 10, 0, 0) || rep.Orders.Closed != 2 {
				t.Errorf("mysql %+v orders %+v", *rep.MySQL, rep.Orders)
			}
		},
	}, {
		// The user is known only by the live ticket; a ticket that is not
		// its user's live one has none.
		name: "unordered holds",
		snap: flashsale.SaleSnapshot{Stock: stock(10, 8, 2, 0), Holds: map[string]flashsale.Hold{"x2": held(1), "x1": held(1), "x3": rel},
			Live: map[string]string{"u9": "x1"}, Units: map[string]int{"u9": 1}},
		want: []string{"unordered_hold x1 u9: H:1 -> R", "unordered_hold x2: H:1 -> R"},
		check: func(t *testing.T, rep *SaleReport) {
			if rep.Unordered != 2 {
				t.Errorf("unordered %d, want 2", rep.Unordered)
			}
			if want := (flashsale.HoldFix{TicketID: "x1", UserID: "u9", From: held(1), To: rel}); *rep.Differences[0].hold != want {
				t.Errorf("fix %+v, want %+v", *rep.Differences[0].hold, want)
			}
		},
	}, {
		name:   "a user's units off",
		orders: []*flashsale.Order{row("o1", "u1", pending, 1), row("o2", "u1", paid, 1)},
		snap: flashsale.SaleSnapshot{Stock: stock(10, 8, 1, 1), Holds: map[string]flashsale.Hold{"o1": held(1), "o2": sold(1)},
			Live: map[string]string{"u1": "o1"}, Units: map[string]int{"u1": 3}},
		want: []string{"units u1: 3 -> 2"},
		check: func(t *testing.T, rep *SaleReport) {
			want := flashsale.UnitsFix{UserID: "u1", Observed: 3, Tickets: []string{"o1", "o2"}}
			if got := rep.Differences[0].units; !reflect.DeepEqual(*got, want) {
				t.Errorf("fix %+v, want %+v", *got, want)
			}
		},
	}, {
		name: "units without any ticket leaked",
		snap: flashsale.SaleSnapshot{Stock: stock(10, 10, 0, 0), Holds: map[string]flashsale.Hold{},
			Units: map[string]int{"ghost": 2, "zero": 0}},
		want: []string{"units ghost: 2 -> 0"},
	}, {
		name:   "counters off",
		orders: []*flashsale.Order{row("o1", "u1", pending, 1)},
		snap: flashsale.SaleSnapshot{Stock: stock(10, 13, 1, 0), Holds: map[string]flashsale.Hold{"o1": held(1)},
			Live: map[string]string{"u1": "o1"}, Units: map[string]int{"u1": 1}},
		want: []string{"counters: total 10 available 13 held 1 sold 0 -> total 10 available 9 held 1 sold 0"},
	}, {
		// Counters that match neither the holds nor the fixed holds are
		// drift; what they must be is what they are once the hold is fixed.
		name:   "counters off and a hold lost",
		orders: []*flashsale.Order{row("o1", "u1", pending, 1)},
		snap: flashsale.SaleSnapshot{Stock: stock(10, 5, 5, 0), Holds: map[string]flashsale.Hold{},
			Live: map[string]string{"u1": "o1"}, Units: map[string]int{"u1": 1}},
		want: []string{"hold o1 u1: none -> H:1",
			"counters: total 10 available 5 held 5 sold 0 -> total 10 available 9 held 1 sold 0"},
	}, {
		name:   "oversold",
		total:  2,
		orders: []*flashsale.Order{row("o1", "u1", pending, 1), row("o2", "u2", paid, 2)},
		snap: flashsale.SaleSnapshot{Stock: stock(2, -1, 1, 2), Holds: map[string]flashsale.Hold{"o1": held(1), "o2": sold(2)},
			Live: map[string]string{"u1": "o1"}, Units: map[string]int{"u1": 1, "u2": 2}},
		want: []string{"oversold: - -> at most 2 units in orders"},
		check: func(t *testing.T, rep *SaleReport) {
			d := rep.Differences[0]
			if d.hold != nil || d.units != nil || d.Detail != "3 units in pending_payment and paid orders, stock 2" {
				t.Errorf("oversold difference %+v", d)
			}
			if *rep.MySQL != stock(2, -1, 1, 2) {
				t.Errorf("mysql %+v", *rep.MySQL)
			}
		},
	}, {
		// A whole bundle order: only its part in s1 counts here, net of the
		// unit returned.
		name: "a bundle order's part in the sale",
		orders: []*flashsale.Order{order("b1", "u1", paid,
			flashsale.OrderItem{SaleID: "s1", Quantity: 3, Returned: 1}, flashsale.OrderItem{SaleID: "s2", Quantity: 4})},
		snap: flashsale.SaleSnapshot{Stock: stock(10, 8, 0, 2), Holds: map[string]flashsale.Hold{"b1": sold(2)},
			Units: map[string]int{"u1": 2}},
		want: []string{},
		check: func(t *testing.T, rep *SaleReport) {
			if rep.Orders != (OrderCounts{Paid: 1, PaidUnits: 2}) {
				t.Errorf("orders %+v", rep.Orders)
			}
		},
	}, {
		// A bundle's row as SaleOrders reads it, whose return Redis has not
		// followed yet.
		name: "a bundle order's row with a return not followed",
		orders: []*flashsale.Order{row("o1", "u2", pending, 1),
			order("b1", "u1", paid, flashsale.OrderItem{SaleID: "s1", Quantity: 3, Returned: 1})},
		snap: flashsale.SaleSnapshot{Stock: stock(10, 6, 1, 3), Holds: map[string]flashsale.Hold{"o1": held(1), "b1": sold(3)},
			Live: map[string]string{"u2": "o1"}, Units: map[string]int{"u1": 3, "u2": 1}},
		want: []string{"hold b1 u1: S:3 -> S:2"},
	}} {
		t.Run(tc.name, func(t *testing.T) {
			total := tc.total
			if total == 0 {
				total = 10
			}
			sale := &flashsale.Sale{ID: "s1", Stock: total}
			tc.snap.Loaded = true
			rep := diffSale(sale, tc.snap, partsIn(sale.ID, tc.orders))
			if got := describeAll(rep.Differences); !reflect.DeepEqual(got, tc.want) {
				t.Fatalf("differences\n got %q\nwant %q", got, tc.want)
			}
			if rep.SaleID != "s1" || rep.Status != SaleAgree {
				t.Errorf("sale %q status %q", rep.SaleID, rep.Status)
			}
			if tc.check != nil {
				tc.check(t, rep)
			}
		})
	}
}

// A difference's signature is its identity across two looks: work that
// completes in between (here a purchase holding a unit, counters and units
// in step) leaves the signatures of drift unchanged.
func TestDiffSignaturesIgnoreWorkInFlight(t *testing.T) {
	sale := &flashsale.Sale{ID: "s1", Stock: 10}
	parts := partsIn("s1", []*flashsale.Order{row("o1", "u1", pending, 1)})
	before := flashsale.SaleSnapshot{Loaded: true, Stock: stock(10, 13, 0, 0), Holds: map[string]flashsale.Hold{},
		Live: map[string]string{"u1": "o1"}, Units: map[string]int{"u1": 5}}
	after := flashsale.SaleSnapshot{Loaded: true, Stock: stock(10, 12, 1, 0), Holds: map[string]flashsale.Hold{"x1": held(1)},
		Live: map[string]string{"u1": "o1", "u2": "x1"}, Units: map[string]int{"u1": 5, "u2": 1}}
	sigs := func(snap flashsale.SaleSnapshot) map[string]bool {
		m := map[string]bool{}
		for _, d := range diffSale(sale, snap, parts).Differences {
			m[d.sig] = true
		}
		return m
	}
	a, b := sigs(before), sigs(after)
	for _, sig := range []string{"s1|hold|o1|u1|none|H:1", "s1|counters|||0 3 0 0", "s1|units||u1|5 0"} {
		if !a[sig] || !b[sig] {
			t.Errorf("signature %q: before %v, after %v", sig, a[sig], b[sig])
		}
	}
	if !b["s1|unordered_hold|x1|u2|H:1|R"] || len(b) != len(a)+1 {
		t.Errorf("before %v\nafter %v", a, b)
	}
}

// A repair recomputes the units of every user whose tickets it changes, once,
// from the units the look saw.
func TestRepairBatchRecomputesTheUnitsOfHolders(t *testing.T) {
	sale := &flashsale.Sale{ID: "s1", Stock: 10}
	snap := flashsale.SaleSnapshot{Loaded: true, Stock: stock(10, 7, 3, 0), Holds: map[string]flashsale.Hold{"x1": held(1)},
		Live: map[string]string{"u1": "o1", "u3": "x1"}, Units: map[string]int{"u1": 1, "u2": 4, "u3": 1}}
	rep := diffSale(sale, snap, partsIn("s1", []*flashsale.Order{row("o1", "u1", pending, 1), row("o2", "u2", paid, 1)}))
	want := []string{"hold o1 u1: none -> H:1", "hold o2 u2: none -> S:1", "unordered_hold x1 u3: H:1 -> R",
		"counters: total 10 available 7 held 3 sold 0 -> total 10 available 7 held 2 sold 1", "units u2: 4 -> 1"}
	if got := describeAll(rep.Differences); !reflect.DeepEqual(got, want) {
		t.Fatalf("differences\n got %q\nwant %q", got, want)
	}
	b := pickBatch(rep, func(d *Difference) bool { return d.Kind != KindUnordered })
	b.addHolders(rep.obsUnits, rep.tickets)
	holds, units := b.fixes()
	if got := fmt.Sprint(holds); got != "[{o1 u1 {0 0} {72 1}} {o2 u2 {0 0} {83 1}}]" {
		t.Errorf("hold fixes %s", got)
	}
	// u2's own fix, then u1's: u2 is fixed once.
	if got := fmt.Sprint(units); got != "[{u2 4 [o2]} {u1 1 [o1]}]" {
		t.Errorf("units fixes %s", got)
	}
	if len(b.counters) != 1 {
		t.Errorf("counters %v", b.counters)
	}
	// Only the picked differences' flags come back; the holders' are not
	// differences of their own.
	b.mark(flashsale.RepairResult{Loaded: true, Holds: []bool{true, false}, Units: []bool{true, true}})
	got := []bool{}
	for _, d := range rep.Differences {
		got = append(got, d.Repaired)
	}
	if !reflect.DeepEqual(got, []bool{true, false, false, true, true}) {
		t.Errorf("repaired %v", got)
	}
}

// Once keeps what both looks saw; the rest was work in flight.
func TestKeepSeenInCountsTransients(t *testing.T) {
	mk := func(sigs ...string) *Report {
		s := &SaleReport{Status: SaleAgree}
		for _, sig := range sigs {
			s.Differences = append(s.Differences, &Difference{Kind: KindHold, sig: sig})
		}
		return &Report{Sales: []*SaleReport{s}}
	}
	first, second := mk("a", "b", "c"), mk("b", "d")
	keepSeenIn(first, second)
	if len(second.Sales[0].Differences) != 1 || second.Sales[0].Differences[0].sig != "b" {
		t.Errorf("kept %v", second.Sales[0].Differences)
	}
	// d is new, a and c are gone.
	if second.Transient != 3 || second.Differences != 1 || second.Agree || second.Sales[0].Status != SaleDiffer {
		t.Errorf("report %+v", second)
	}
}

// The stock cap (both inventory modes): the allotments plus the units in
// flight must be the stock, no shard over its allotment, and each shard's
// used units those of its orders. Nothing repairs it.
func TestDiffCap(t *testing.T) {
	shard := func(i, allotted, used, inOrders int) flashsale.ShardCap {
		return flashsale.ShardCap{Shard: i, Allotted: allotted, Used: used, InOrders: inOrders}
	}
	for _, tc := range []struct {
		name string
		cap  flashsale.CapSnapshot
		want []string
	}{{
		name: "adds up, used as in the orders",
		cap:  flashsale.CapSnapshot{Shards: []flashsale.ShardCap{shard(0, 6, 6, 6), shard(1, 3, 1, 1)}, InFlight: 1},
		want: []string{},
	}, {
		name: "units lost between shards",
		cap:  flashsale.CapSnapshot{Shards: []flashsale.ShardCap{shard(0, 5, 0, 0), shard(1, 4, 0, 0)}},
		want: []string{"cap: allotted 9 (in flight 0) -> allotted 10"},
	}, {
		name: "more allotted than stock, a shard over its allotment, used off",
		cap:  flashsale.CapSnapshot{Shards: []flashsale.ShardCap{shard(0, 6, 7, 7), shard(1, 5, 2, 3)}, InFlight: 1},
		want: []string{"cap: allotted 12 (in flight 1) -> allotted 10", "cap: shard 0 used 7 -> at most 6",
			"cap_used: shard 1 used 2 -> used 3"},
	}} {
		t.Run(tc.name, func(t *testing.T) {
			rep := newSaleReport(&flashsale.Sale{ID: "s1", Stock: 10})
			rep.Status = SaleAgree
			rep.addCap(tc.cap)
			if got := describeAll(rep.Differences); !reflect.DeepEqual(got, tc.want) {
				t.Fatalf("differences\n got %q\nwant %q", got, tc.want)
			}
			for _, d := range rep.Differences {
				if d.Store != "mysql" || d.fix() != nil || d.units != nil || d.sig == "" {
					t.Errorf("%s: store %q, fixes %v %v, signature %q; want mysql, no fix, signed", describe(d), d.Store, d.fix(), d.units, d.sig)
				}
			}
			if rep.Cap == nil || !reflect.DeepEqual(*rep.Cap, tc.cap) {
				t.Errorf("cap %+v, want %+v", rep.Cap, tc.cap)
			}
		})
	}
}

// A mysql-inventory sale: its row's holds follow the orders (and only MySQL's
// own operations repair them), its counters follow its holds, and the Redis
// mirror follows the row as a repair leaves it.
func TestDiffInventorySale(t *testing.T) {
	mirrorOf := func(st flashsale.StockLevel, holds map[string]flashsale.Hold, live map[string]string, units map[string]int) flashsale.SaleSnapshot {
		return flashsale.SaleSnapshot{Loaded: true, Stock: st, Holds: holds, Live: live, Units: units}
	}
	for _, tc := range []struct {
		name   string
		orders []*flashsale.Order
		inv    flashsale.InventorySnapshot
		snap   flashsale.SaleSnapshot
		want   []string
		check  func(t *testing.T, rep *SaleReport)
	}{{
		name:   "row and mirror follow the orders",
		orders: []*flashsale.Order{row("o1", "u1", pending, 1), row("o2", "u2", paid, 2), row("o3", "u3", expired, 1)},
		inv:    flashsale.InventorySnapshot{Stock: stock(10, 7, 1, 2), Holds: map[string]flashsale.Hold{"o1": held(1), "o2": sold(2), "o3": rel, "x9": {Kind: flashsale.HoldSoldOut}}},
		snap: mirrorOf(stock(10, 7, 1, 2), map[string]flashsale.Hold{"o1": held(1), "o2": sold(2), "o3": rel},
			map[string]string{"u1": "o1"}, map[string]int{"u1": 1, "u2": 2}),
		want: []string{},
		check: func(t *testing.T, rep *SaleReport) {
			if *rep.Inventory != stock(10, 7, 1, 2) || *rep.MySQL != stock(10, 7, 1, 2) || *rep.Redis != stock(10, 7, 1, 2) {
				t.Errorf("inventory %+v mysql %+v redis %+v", *rep.Inventory, *rep.MySQL, *rep.Redis)
			}
		},
	}, {
		// Issue 22, case 2: the order expired in MySQL, its release failed
		// (Redis away, and MySQL's row goes through the same step): the row
		// and the mirror still hold it, so admission answers sold_out while
		// a unit is free. The row is released (MySQL's release), then the
		// mirror follows, with the user's units.
		name:   "an expired order still held in the row and the mirror",
		orders: []*flashsale.Order{row("o1", "u1", expired, 1)},
		inv:    flashsale.InventorySnapshot{Stock: stock(1, 0, 1, 0), Holds: map[string]flashsale.Hold{"o1": held(1)}},
		snap: mirrorOf(stock(1, 0, 1, 0), map[string]flashsale.Hold{"o1": held(1)},
			map[string]string{"u1": "o1"}, map[string]int{"u1": 1}),
		want: []string{"inventory_hold o1 u1: H:1 -> R", "hold o1 u1: H:1 -> R"},
		check: func(t *testing.T, rep *SaleReport) {
			row, mirror := rep.Differences[0], rep.Differences[1]
			if want := (flashsale.HoldFix{TicketID: "o1", UserID: "u1", From: held(1), To: rel}); row.mysql == nil || *row.mysql != want || row.hold != nil || row.Store != "mysql" {
				t.Errorf("row fix %+v (redis fix %+v, store %q), want %+v in MySQL", row.mysql, row.hold, row.Store, want)
			}
			if mirror.hold == nil || mirror.hold.To != rel || mirror.Store != "" || mirror.Detail != "held R in MySQL's inventory row" {
				t.Errorf("mirror difference %+v, fix %+v", mirror, mirror.hold)
			}
			b := pickBatch(rep, nil)
			b.addHolders(rep.obsUnits, rep.tickets)
			if _, units := b.fixes(); len(b.rows) != 1 || len(b.holds) != 1 || fmt.Sprint(units) != "[{u1 1 [o1]}]" {
				t.Errorf("batch: %d row fixes, %d Redis hold fixes, units %v", len(b.rows), len(b.holds), units)
			}
		},
	}, {
		// Held in the row, never ordered (a purchase in flight, or a lost
		// message): released only as an unordered hold (after StrayAfter),
		// and the mirror keeps it meanwhile.
		name: "a ticket held in the row without an order",
		inv:  flashsale.InventorySnapshot{Stock: stock(3, 2, 1, 0), Holds: map[string]flashsale.Hold{"x1": held(1)}},
		snap: mirrorOf(stock(3, 2, 1, 0), map[string]flashsale.Hold{"x1": held(1)}, map[string]string{"u9": "x1"}, map[string]int{"u9": 1}),
		want: []string{"inventory_unordered x1 u9: H:1 -> R"},
		check: func(t *testing.T, rep *SaleReport) {
			d := rep.Differences[0]
			if !d.Kind.stray() || d.mysql == nil || rep.Unordered != 1 {
				t.Errorf("difference %+v, fix %+v, unordered %d; want a stray with a row fix", d, d.mysql, rep.Unordered)
			}
		},
	}, {
		// The mirror lost a hold the row has (a rebuild from the orders
		// while the purchase was in flight), and keeps one the row released.
		name:   "the mirror differs from the row",
		orders: []*flashsale.Order{row("o2", "u2", cancelled, 1)},
		inv:    flashsale.InventorySnapshot{Stock: stock(5, 4, 1, 0), Holds: map[string]flashsale.Hold{"x1": held(1), "o2": rel}},
		snap: mirrorOf(stock(5, 4, 1, 0), map[string]flashsale.Hold{"o2": held(1)},
			map[string]string{"u9": "x1", "u2": "o2"}, map[string]int{"u2": 1}),
		want: []string{"inventory_unordered x1 u9: H:1 -> R", "hold o2 u2: H:1 -> R", "hold x1 u9: none -> H:1"},
	}, {
		// Only MySQL's own operations repair the row: a pending order the
		// row does not hold is reported, never held by a repair, and the
		// mirror follows the row as it is.
		name:   "a row hold no operation can repair",
		orders: []*flashsale.Order{row("o1", "u1", pending, 1)},
		inv:    flashsale.InventorySnapshot{Stock: stock(2, 2, 0, 0), Holds: map[string]flashsale.Hold{"o1": rel}},
		snap:   mirrorOf(stock(2, 2, 0, 0), map[string]flashsale.Hold{"o1": rel}, map[string]string{"u1": "o1"}, map[string]int{}),
		want:   []string{"inventory_hold o1 u1: R -> H:1"},
		check: func(t *testing.T, rep *SaleReport) {
			if d := rep.Differences[0]; d.fix() != nil {
				t.Errorf("fix %+v, want none", d.fix())
			}
		},
	}, {
		name:   "a paid order's return the row did not follow, a confirm it missed",
		orders: []*flashsale.Order{order("o1", "u1", paid, flashsale.OrderItem{SaleID: "s1", Quantity: 3, Returned: 1}), row("o2", "u2", paid, 1)},
		inv:    flashsale.InventorySnapshot{Stock: stock(10, 6, 1, 3), Holds: map[string]flashsale.Hold{"o1": sold(3), "o2": held(1)}},
		snap: mirrorOf(stock(10, 7, 0, 3), map[string]flashsale.Hold{"o1": sold(2), "o2": sold(1)},
			map[string]string{}, map[string]int{"u1": 2, "u2": 1}),
		want: []string{"inventory_hold o1 u1: S:3 -> S:2", "inventory_hold o2 u2: H:1 -> S:1"},
		check: func(t *testing.T, rep *SaleReport) {
			for _, d := range rep.Differences {
				if d.mysql == nil {
					t.Errorf("%s: no row fix", describe(d))
				}
			}
		},
	}, {
		name:   "the row's counters off its holds",
		orders: []*flashsale.Order{row("o1", "u1", pending, 1)},
		inv:    flashsale.InventorySnapshot{Stock: stock(5, 3, 2, 0), Holds: map[string]flashsale.Hold{"o1": held(1)}},
		snap:   mirrorOf(stock(5, 4, 1, 0), map[string]flashsale.Hold{"o1": held(1)}, map[string]string{"u1": "o1"}, map[string]int{"u1": 1}),
		want:   []string{"inventory_counters: total 5 available 3 held 2 sold 0 -> total 5 available 4 held 1 sold 0"},
		check: func(t *testing.T, rep *SaleReport) {
			if d := rep.Differences[0]; d.Store != "mysql" || d.fix() != nil || d.units != nil {
				t.Errorf("difference %+v, want MySQL's, with no fix", d)
			}
			if b := pickBatch(rep, nil); !b.empty() || len(b.rows) != 0 {
				t.Errorf("a repair would change something: %+v", b)
			}
		},
	}, {
		// The mirror not loaded: MySQL's own bookkeeping is still compared.
		name:   "the mirror not loaded",
		orders: []*flashsale.Order{row("o1", "u1", expired, 1)},
		inv:    flashsale.InventorySnapshot{Stock: stock(1, 0, 1, 0), Holds: map[string]flashsale.Hold{"o1": held(1)}},
		want:   []string{"inventory_hold o1 u1: H:1 -> R"},
		check: func(t *testing.T, rep *SaleReport) {
			if rep.Status != SaleNotLoaded || rep.Redis != nil {
				t.Errorf("status %s, redis %+v; want not_loaded, none", rep.Status, rep.Redis)
			}
		},
	}} {
		t.Run(tc.name, func(t *testing.T) {
			sale := &flashsale.Sale{ID: "s1", Stock: tc.inv.Stock.Total, Inventory: flashsale.InventoryMySQL}
			rep := diffInventorySale(sale, tc.inv, tc.snap, partsIn(sale.ID, tc.orders))
			if got := describeAll(rep.Differences); !reflect.DeepEqual(got, tc.want) {
				t.Fatalf("differences\n got %q\nwant %q", got, tc.want)
			}
			for _, d := range rep.Differences {
				if d.sig == "" {
					t.Errorf("%s: not signed", describe(d))
				}
			}
			if tc.check != nil {
				tc.check(t, rep)
			}
		})
	}
}
