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
	skipped, unloaded := newSaleReport(&flashsale.Sale{ID: "s2"}), newSaleReport(&flashsale.Sale{ID: "s3"})
	skipped.Status, skipped.Note = SaleSkipped, "inventory mysql: its stock is held in MySQL"
	unloaded.Status, unloaded.Note = SaleNotLoaded, "not loaded in Redis; rebuilt from MySQL on first use"
	rep := &Report{CheckedAt: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC), Sales: []*SaleReport{differ, skipped, unloaded}, Transient: 1}
	rep.recount()
	return rep
}

func TestReportText(t *testing.T) {
	want := `sale s1: DIFFERENT
  redis: total 10 available 8 held 2 sold 0
  mysql: total 10 available 8 held 1 sold 1 (orders: 1 pending, 1 paid, 0 expired or cancelled)
  1 tickets held in Redis without an order
  - hold ticket o1 user u1: redis none, want H:1 (order pending_payment in MySQL) [repaired]
  - hold ticket o2 user u2: redis H:1, want S:1 (order paid in MySQL) [NOT REPAIRED]
  - unordered_hold ticket x1 user u9: redis H:1, want R (no order in MySQL: a purchase between its hold and its commit, or a lost message) [NOT REPAIRED]
sale s2: skipped (inventory mysql: its stock is held in MySQL)
sale s3: not_loaded (not loaded in Redis; rebuilt from MySQL on first use)
3 sales: 0 agree, 1 different, 1 not loaded, 1 skipped; 2 differences remain, 1 repaired; 1 seen on one look only (work in flight)
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
        }
      ]
    },
    {
      "sale_id": "s2",
      "status": "skipped",
      "note": "inventory mysql: its stock is held in MySQL",
      "orders": {
        "pending": 0,
        "pending_units": 0,
        "paid": 0,
        "paid_units": 0,
        "closed": 0
      },
      "unordered_holds": 0,
      "differences": []
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
  "differences": 2,
  "repaired": 1,
  "transient": 1,
  "agree": false
}`
	got, err := json.MarshalIndent(sampleReport(), "", "  ")
	if err != nil || string(got) != want {
		t.Errorf("json (%v)\n%s\nwant\n%s", err, got, want)
	}
}
