package reconcile

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/flashsale/flashsale"
)

// The text and the JSON are read by people and by the end-to-end tests
// (`flashsale reconcile --json`): these pin them.
func sampleReport() *Report {
	s1 := &flashsale.Sale{ID: "s1", Stock: 10}
	snap := flashsale.SaleSnapshot{Loaded: true, Stock: stock(10, 8, 2, 0), Holds: map[string]flashsale.Hold{"x1": held(1), "o2": held(1)},
		Live: map[string]string{"u9": "x1", "u2": "o2"}, Units: map[string]int{"u9": 1, "u2": 1}}
	differ := diffSale(s1, snap, partsIn("s1", []*flashsale.Order{row("o1", "u1", pending, 1), row("o2", "u2", paid, 1)}))
	differ.Differences[0].Repaired = true
	differ.addCap(flashsale.CapSnapshot{Shards: []flashsale.ShardCap{{Shard: 0, Allotted: 5, Used: 1, InOrders: 1}, {Shard: 1, Allotted: 4, Used: 0, InOrders: 1}}})
	// A mysql-inventory sale whose expired order is still held in its row
	// and in the Redis mirror.
	s2 := &flashsale.Sale{ID: "s2", Stock: 4, Inventory: flashsale.InventoryMySQL}
	inv := flashsale.InventorySnapshot{Stock: stock(4, 2, 2, 0), Holds: map[string]flashsale.Hold{"o5": held(1), "o6": held(1)}}
	mirror := flashsale.SaleSnapshot{Loaded: true, Stock: stock(4, 2, 2, 0), Holds: map[string]flashsale.Hold{"o5": held(1), "o6": held(1)},
		Live: map[string]string{"u5": "o5", "u6": "o6"}, Units: map[string]int{"u5": 1, "u6": 1}}
	mysqlSale := diffInventorySale(s2, inv, mirror, partsIn("s2", []*flashsale.Order{
		order("o5", "u5", pending, flashsale.OrderItem{SaleID: "s2", Quantity: 1}), order("o6", "u6", expired, flashsale.OrderItem{SaleID: "s2", Quantity: 1})}))
	mysqlSale.addCap(flashsale.CapSnapshot{Shards: []flashsale.ShardCap{{Shard: 0, Allotted: 2, Used: 1, InOrders: 1}, {Shard: 1, Allotted: 2}}})
	unloaded := newSaleReport(&flashsale.Sale{ID: "s3"})
	unloaded.Status, unloaded.Note = SaleNotLoaded, "not loaded in Redis; rebuilt from MySQL on first use"
	rep := &Report{CheckedAt: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC), Sales: []*SaleReport{differ, mysqlSale, unloaded}, Transient: 1}
	rep.recount()
	return rep
}

func TestReportText(t *testing.T) {
	want := `sale s1: DIFFERENT
  redis: total 10 available 8 held 2 sold 0
  mysql: total 10 available 8 held 1 sold 1 (orders: 1 pending, 1 paid, 0 expired or cancelled)
  stock cap: shard 0 allotted 5 used 1 (orders 1), shard 1 allotted 4 used 0 (orders 1); in flight 0
  1 tickets held without an order
  - hold ticket o1 user u1: redis none, want H:1 (order pending_payment in MySQL) [repaired]
  - hold ticket o2 user u2: redis H:1, want S:1 (order paid in MySQL) [NOT REPAIRED]
  - unordered_hold ticket x1 user u9: redis H:1, want R (no order in MySQL: a purchase between its hold and its commit, or a lost message) [NOT REPAIRED]
  - cap: mysql allotted 9 (in flight 0), want allotted 10 (the shards' allotments and the units in flight do not add up to the stock) [NOT REPAIRED]
  - cap_used: mysql shard 1 used 0, want used 1 (shard 1's pending_payment and paid orders have 1 units) [NOT REPAIRED]
sale s2: DIFFERENT
  redis: total 4 available 2 held 2 sold 0
  mysql: total 4 available 3 held 1 sold 0 (orders: 1 pending, 0 paid, 1 expired or cancelled)
  inventory row: total 4 available 2 held 2 sold 0
  stock cap: shard 0 allotted 2 used 1 (orders 1), shard 1 allotted 2 used 0 (orders 0); in flight 0
  - inventory_hold ticket o6 user u6: mysql H:1, want R (order expired in MySQL) [NOT REPAIRED]
  - hold ticket o6 user u6: redis H:1, want R (held R in MySQL's inventory row) [NOT REPAIRED]
sale s3: not_loaded (not loaded in Redis; rebuilt from MySQL on first use)
3 sales: 0 agree, 2 different, 1 not loaded; 6 differences remain, 1 repaired; 1 seen on one look only (work in flight)
Redis and MySQL DIFFER.
`
	if got := sampleReport().Text(); got != want {
		t.Errorf("text\n%s\nwant\n%s", got, want)
	}
}

func TestReportJSON(t *testing.T) {
	want := `{
  "checked_at": "2026-01-02T03:04:05Z",
  "sales": [
    {
      "sale_id": "s1",
      "status": "differ",
      "redis": {
        "total": 10,
        "available": 8,
        "held": 2,
        "sold": 0
      },
      "mysql": {
        "total": 10,
        "available": 8,
        "held": 1,
        "sold": 1
      },
      "cap": {
        "shards": [
          {
            "shard": 0,
            "allotted": 5,
            "used": 1,
            "in_orders": 1
          },
          {
            "shard": 1,
            "allotted": 4,
            "used": 0,
            "in_orders": 1
          }
        ],
        "in_flight": 0
      },
      "orders": {
        "pending": 1,
        "pending_units": 1,
        "paid": 1,
        "paid_units": 1,
        "closed": 0
      },
      "unordered_holds": 1,
      "differences": [
        {
          "kind": "hold",
          "ticket_id": "o1",
          "user_id": "u1",
          "redis": "none",
          "want": "H:1",
          "detail": "order pending_payment in MySQL",
          "repaired": true
        },
        {
          "kind": "hold",
          "ticket_id": "o2",
          "user_id": "u2",
          "redis": "H:1",
          "want": "S:1",
          "detail": "order paid in MySQL",
          "repaired": false
        },
        {
          "kind": "unordered_hold",
          "ticket_id": "x1",
          "user_id": "u9",
          "redis": "H:1",
          "want": "R",
          "detail": "no order in MySQL: a purchase between its hold and its commit, or a lost message",
          "repaired": false
        },
        {
          "kind": "cap",
          "store": "mysql",
          "redis": "allotted 9 (in flight 0)",
          "want": "allotted 10",
          "detail": "the shards' allotments and the units in flight do not add up to the stock",
          "repaired": false
        },
        {
          "kind": "cap_used",
          "store": "mysql",
          "redis": "shard 1 used 0",
          "want": "used 1",
          "detail": "shard 1's pending_payment and paid orders have 1 units",
          "repaired": false
        }
      ]
    },
    {
      "sale_id": "s2",
      "status": "differ",
      "redis": {
        "total": 4,
        "available": 2,
        "held": 2,
        "sold": 0
      },
      "mysql": {
        "total": 4,
        "available": 3,
        "held": 1,
        "sold": 0
      },
      "inventory": {
        "total": 4,
        "available": 2,
        "held": 2,
        "sold": 0
      },
      "cap": {
        "shards": [
          {
            "shard": 0,
            "allotted": 2,
            "used": 1,
            "in_orders": 1
          },
          {
            "shard": 1,
            "allotted": 2,
            "used": 0,
            "in_orders": 0
          }
        ],
        "in_flight": 0
      },
      "orders": {
        "pending": 1,
        "pending_units": 1,
        "paid": 0,
        "paid_units": 0,
        "closed": 1
      },
      "unordered_holds": 0,
      "differences": [
        {
          "kind": "inventory_hold",
          "ticket_id": "o6",
          "user_id": "u6",
          "store": "mysql",
          "redis": "H:1",
          "want": "R",
          "detail": "order expired in MySQL",
          "repaired": false
        },
        {
          "kind": "hold",
          "ticket_id": "o6",
          "user_id": "u6",
          "redis": "H:1",
          "want": "R",
          "detail": "held R in MySQL's inventory row",
          "repaired": false
        }
      ]
    },
    {
      "sale_id": "s3",
      "status": "not_loaded",
      "note": "not loaded in Redis; rebuilt from MySQL on first use",
      "orders": {
        "pending": 0,
        "pending_units": 0,
        "paid": 0,
        "paid_units": 0,
        "closed": 0
      },
      "unordered_holds": 0,
      "differences": []
    }
  ],
  "differences": 6,
  "repaired": 1,
  "transient": 1,
  "agree": false
}`
	got, err := json.MarshalIndent(sampleReport(), "", "  ")
	if err != nil || string(got) != want {
		t.Errorf("json (%v)\n%s\nwant\n%s", err, got, want)
	}
}
