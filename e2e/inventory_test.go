package e2e

import (
	"bytes"
	"database/sql"
	"encoding/json"
	"net/http"
	"testing"
	"time"

	"github.com/flashsale/flashsale/payment"
)

// TestMySQLInventorySellsExactlyStock: a sale with inventory "mysql" holds its
// stock in one MySQL row through the same ingress, queue, worker, cancel and
// payment paths: 600 users race for 40 units, exactly 40 orders are made, and
// the sale view (read from the MySQL row) follows a cancel and a payment.
func TestMySQLInventorySellsExactlyStock(t *testing.T) {
	e := newEnv(t)
	p := e.start("all", map[string]string{"FLASHSALE_LIMIT_PER_WINDOW": "0"})
	c := p.client()
	const users, stock, price = 600, 40, 2500
	spec := openSale(stock, 1, price)
	spec.Inventory = "mysql"
	saleID := c.createSale(t, spec)

	refs, ta := accepted(t, c.burst(saleID, userNames("inv", users), true))
	ta.only(t, "202", "409 sold_out")
	final := c.awaitFinal(t, refs, 90*time.Second)
	var orders []ticketRef
	for _, ref := range refs {
		switch s := final[ref.TicketID].Status; s {
		case "pending_payment":
			orders = append(orders, ref)
		case "sold_out":
		default:
			t.Errorf("ticket %s ended %q", ref.TicketID, s)
		}
	}
	if len(orders) != stock {
		t.Fatalf("%d orders, want exactly %d", len(orders), stock)
	}
	rows := e.orders(t, saleID)
	checkOrderRows(t, rows, stock, 1)
	if len(rows) != stock {
		t.Errorf("%d order rows, want %d", len(rows), stock)
	}
	meta, err := sql.Open("mysql", mysqlDSN(e.MetaDB))
	if err != nil {
		t.Fatal(err)
	}
	defer meta.Close()
	wantStock := func(want stockView) {
		t.Helper()
		if v := c.sale(t, saleID); v.Stock != want {
			t.Errorf("sale stock %+v, want %+v", v.Stock, want)
		}
		var got stockView
		err := meta.QueryRow(`SELECT total, available, held, sold FROM inventory WHERE sale_id = ?`, saleID).
			Scan(&got.Total, &got.Available, &got.Held, &got.Sold)
		if err != nil || got != want {
			t.Errorf("MySQL inventory row %+v (%v), want %+v", got, err, want)
		}
	}
	wantStock(stockView{Total: stock, Available: 0, Held: stock})

	// Cancel one order: its unit goes back to the row, once.
	cancelled := orders[0]
	for i := 0; i < 2; i++ {
		if r := c.must(t, http.MethodPost, pathOrder(cancelled.TicketID)+"/cancel", user(cancelled.User), nil); r.Status != http.StatusOK {
			t.Fatalf("cancel #%d: %s", i+1, r)
		}
	}
	wantStock(stockView{Total: stock, Available: 1, Held: stock - 1})

	// Pay another: held becomes sold.
	paid := orders[1]
	body, _ := json.Marshal(map[string]any{"payment_id": "pay-" + paid.TicketID, "order_id": paid.TicketID,
		"amount_cents": price, "status": "succeeded"})
	req, _ := http.NewRequest(http.MethodPost, p.URL+"/api/v1/payments/callback", bytes.NewReader(body))
	req.Header.Set("X-Flashsale-Signature", payment.Sign(e.PaymentSecret, time.Now(), body))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("payment callback: %d", resp.StatusCode)
	}
	wantStock(stockView{Total: stock, Available: 1, Held: stock - 2, Sold: 1})

	// The returned unit can be bought again by a new user.
	r := c.must(t, http.MethodPost, pathPurchase(saleID), user("inv-late"), nil)
	if r.Status != http.StatusAccepted {
		t.Fatalf("purchase of the returned unit: %s", r)
	}
	var a purchaseAnswer
	r.decode(&a)
	if v := c.awaitFinal(t, []ticketRef{{User: "inv-late", TicketID: a.TicketID}}, 30*time.Second)[a.TicketID]; v.Status != "pending_payment" {
		t.Fatalf("late ticket ended %q, want pending_payment", v.Status)
	}
	wantStock(stockView{Total: stock, Available: 0, Held: stock - 1, Sold: 1})
}
