package ingress

import (
	"errors"
	"fmt"
	"net/http"
	"reflect"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/flashsale/flashsale"
	"github.com/flashsale/flashsale/lifecycle"
	"github.com/flashsale/flashsale/mock"
)

// These tests drive the reads of tickets and orders and the cancel through
// the gin handlers (the fixture of handlers_test.go), with the book of record
// and the lifecycle on fakes: what each answer is and what it shows, and
// that another user's ticket or order is not_found.

// oldID is a ticket id minted long ago (past queuedGrace).
func oldID(n int) string { return fmt.Sprintf("01900000-0000-7000-8000-%012d", n) }

// pendingOrder is user's order id of 2 units of sale a, payable for an hour.
func pendingOrder(id, user string) *flashsale.Order {
	created := time.Now().UTC().Truncate(time.Microsecond)
	o := &flashsale.Order{ID: id, UserID: user, Status: flashsale.OrderPendingPayment, CreatedAt: created, PayBy: created.Add(time.Hour)}
	o.SetItems([]flashsale.OrderItem{{SaleID: "a", Quantity: 2, AmountCents: 200}})
	return o
}

func keys(m map[string]any) string {
	ks := make([]string, 0, len(m))
	for k := range m {
		ks = append(ks, k)
	}
	sort.Strings(ks)
	return strings.Join(ks, " ")
}

func TestGetTicket(t *testing.T) {
	f := newHandlerFixture(t, fakeLifecycle{})
	// A queued ticket's fast copy, and a pending one known only to MySQL
	// (its copy lost).
	queued := uuid.Must(uuid.NewV7()).String()
	f.stock.Queued(t.Context(), &flashsale.Ticket{ID: queued, UserID: "u1", SaleID: "a", Quantity: 1, Status: flashsale.TicketQueued})
	pending := oldID(1)
	f.orders.Put(pendingOrder(pending, "u1"))

	f.line.set(queued, 3)
	code, out := f.send(t, http.MethodGet, "/api/v1/tickets/"+queued, "u1", "")
	if code != http.StatusOK || out["ticket_id"] != queued || out["status"] != "queued" || out["position"] != 3.0 ||
		keys(out) != "eta_seconds items poll_after_ms position quantity sale_id status ticket_id" {
		t.Errorf("own queued ticket: %d %v, want 200 with ticket_id, sale_id, quantity, items, status, position 3, eta_seconds, poll_after_ms and nothing else", code, out)
	}
	code, out = f.send(t, http.MethodGet, "/api/v1/tickets/"+pending, "u1", "")
	if code != http.StatusOK || out["status"] != "pending_payment" || out["order_id"] != pending || out["pay_by"] == nil || out["user_id"] != nil ||
		out["position"] != nil || out["poll_after_ms"] != nil {
		t.Errorf("own pending ticket from MySQL: %d %v, want 200 pending_payment with order_id and pay_by, no user_id, no place", code, out)
	}
	for _, c := range []struct{ name, id, user, want string }{
		{"another user's queued ticket", queued, "u2", "404 not_found"},
		{"another user's pending ticket", pending, "u2", "404 not_found"},
		{"an old id found nowhere", oldID(2), "u1", "404 not_found"},
		{"a new id found nowhere (may still be queued)", uuid.Must(uuid.NewV7()).String(), "u1", "503 unavailable"},
		{"not a ticket id", "nope", "u1", "404 not_found"},
		{"no caller", queued, "", "401 unauthorized"},
	} {
		code, out := f.send(t, http.MethodGet, "/api/v1/tickets/"+c.id, c.user, "")
		if got := fmt.Sprintf("%d %s", code, strings.SplitN(errCode(out), ":", 2)[0]); got != c.want {
			t.Errorf("%s: %s (%s), want %s", c.name, got, errCode(out), c.want)
		}
	}
}

// A pending_payment copy past its pay_by is read again in MySQL, which may
// have expired the order while Redis was away (the soak saw such copies read
// back for 9 s after an outage, after MySQL had answered expired); MySQL away,
// the copy is the answer. A copy within its pay_by is answered without MySQL.
func TestAnOverdueCopyIsReadInMySQL(t *testing.T) {
	f := newHandlerFixture(t, fakeLifecycle{})
	past := time.Now().Add(-time.Second)
	id := oldID(7)
	o := pendingOrder(id, "u1")
	o.Status, o.PayBy = flashsale.OrderExpired, past
	f.orders.Put(o)
	cp := &flashsale.Ticket{ID: id, UserID: "u1", SaleID: "a", Quantity: 2, Status: flashsale.TicketPendingPayment, OrderID: id, PayBy: &past}
	if err := f.stock.PutTickets(t.Context(), cp); err != nil {
		t.Fatal(err)
	}
	if code, out := f.send(t, http.MethodGet, "/api/v1/tickets/"+id, "u1", ""); code != http.StatusOK || out["status"] != "expired" || out["pay_by"] != nil {
		t.Errorf("an overdue copy whose order MySQL expired: %d %v, want 200 expired", code, out)
	}
	f.orders.Err = errors.New("mysql away")
	if code, out := f.send(t, http.MethodGet, "/api/v1/tickets/"+id, "u1", ""); code != http.StatusOK || out["status"] != "pending_payment" {
		t.Errorf("an overdue copy, MySQL away: %d %v, want 200 with the copy", code, out)
	}
	future := time.Now().Add(time.Minute)
	cp.PayBy = &future
	if err := f.stock.PutTickets(t.Context(), cp); err != nil {
		t.Fatal(err)
	}
	if code, out := f.send(t, http.MethodGet, "/api/v1/tickets/"+id, "u1", ""); code != http.StatusOK || out["status"] != "pending_payment" {
		t.Errorf("a copy within its pay_by, MySQL away: %d %v, want 200 with the copy", code, out)
	}
}

func TestGetOrder(t *testing.T) {
	f := newHandlerFixture(t, fakeLifecycle{})
	id := oldID(3)
	f.orders.Put(pendingOrder(id, "u1"))
	code, out := f.send(t, http.MethodGet, "/api/v1/orders/"+id, "u1", "")
	want := "amount_cents created_at items order_id paid_at pay_by payment_id quantity sale_id status user_id"
	if code != http.StatusOK || keys(out) != want {
		t.Fatalf("own order: %d %v, want 200 with %s", code, out, want)
	}
	items, _ := out["items"].([]any)
	if out["order_id"] != id || out["user_id"] != "u1" || out["sale_id"] != "a" || out["quantity"] != 2.0 || out["amount_cents"] != 200.0 ||
		out["status"] != "pending_payment" || out["paid_at"] != nil || len(items) != 1 {
		t.Errorf("own order: %v", out)
	}
	if code, out := f.send(t, http.MethodGet, "/api/v1/orders/"+id, "u2", ""); code != http.StatusNotFound {
		t.Errorf("another user's order: %d %v, want 404", code, out)
	}
	f.orders.Err = errors.New("mysql away")
	if code, out := f.send(t, http.MethodGet, "/api/v1/orders/"+id, "u1", ""); code != http.StatusServiceUnavailable || !strings.HasPrefix(errCode(out), "unavailable") {
		t.Errorf("MySQL away: %d %v, want 503 unavailable", code, out)
	}
}

// An unpaid order is answered from its ticket's copy (the buyer's read before
// paying), exactly as MySQL would answer it; an order the copy does not have
// unpaid and within its pay_by is read in MySQL.
func TestAnUnpaidOrderIsReadFromItsCopy(t *testing.T) {
	f := newHandlerFixture(t, fakeLifecycle{})
	id := oldID(8)
	o := pendingOrder(id, "u1")
	f.orders.Put(o)
	_, fromMySQL := f.send(t, http.MethodGet, "/api/v1/orders/"+id, "u1", "")
	if err := f.stock.PutTickets(t.Context(), flashsale.TicketOf(o)); err != nil {
		t.Fatal(err)
	}
	f.orders.Err = errors.New("mysql away")
	code, fromCopy := f.send(t, http.MethodGet, "/api/v1/orders/"+id, "u1", "")
	if code != http.StatusOK || !reflect.DeepEqual(fromCopy, fromMySQL) {
		t.Fatalf("an unpaid order with its copy, MySQL away: %d %v, want 200 %v (MySQL's answer)", code, fromCopy, fromMySQL)
	}
	if code, out := f.send(t, http.MethodGet, "/api/v1/orders/"+id, "u2", ""); code != http.StatusServiceUnavailable {
		t.Errorf("another user's unpaid order, MySQL away: %d %v, want 503 (the copy is not theirs: MySQL decides)", code, out)
	}

	// Copies the order is not read from: MySQL away, each answers 503.
	past := time.Now().Add(-time.Second)
	overdue := flashsale.TicketOf(pendingOrder(oldID(9), "u1"))
	overdue.PayBy, overdue.Unpaid.PayBy = &past, past
	paid := pendingOrder(oldID(10), "u1")
	paid.Status = flashsale.OrderPaid
	withoutOrder := flashsale.TicketOf(pendingOrder(oldID(11), "u1"))
	withoutOrder.Unpaid = nil
	for name, tk := range map[string]*flashsale.Ticket{"past its pay_by": overdue, "paid": flashsale.TicketOf(paid), "without its order": withoutOrder} {
		if err := f.stock.PutTickets(t.Context(), tk); err != nil {
			t.Fatal(err)
		}
		if code, out := f.send(t, http.MethodGet, "/api/v1/orders/"+tk.ID, "u1", ""); code != http.StatusServiceUnavailable {
			t.Errorf("an order whose copy is %s, MySQL away: %d %v, want 503 (read in MySQL)", name, code, out)
		}
	}
}

func TestCancelOrder(t *testing.T) {
	f := newHandlerFixture(t, fakeLifecycle{})
	book, stock := f.orders, mock.NewStock(map[string]int{"a": 3}, nil)
	lc, err := lifecycle.New(lifecycle.Config{Book: book, Stock: stock})
	if err != nil {
		t.Fatal(err)
	}
	f.srv.cfg.Lifecycle = lc
	pending, paid, away := oldID(4), oldID(5), oldID(6)
	book.Put(pendingOrder(pending, "u1"))
	book.Put(pendingOrder(away, "u1"))
	o := pendingOrder(paid, "u1")
	o.Status = flashsale.OrderPaid
	book.Put(o)
	for _, id := range []string{pending, away} {
		stock.Holds[[2]string{"a", id}] = flashsale.Hold{Kind: flashsale.HoldHeld, Quantity: 2}
	}
	stock.Holds[[2]string{"a", paid}] = flashsale.Hold{Kind: flashsale.HoldSold, Quantity: 2}

	if code, out := f.do(t, "/api/v1/orders/"+pending+"/cancel", "u2", ""); code != http.StatusNotFound {
		t.Errorf("another user's order: %d %v, want 404", code, out)
	}
	for i := 0; i < 2; i++ { // again: 200, unchanged
		code, out := f.do(t, "/api/v1/orders/"+pending+"/cancel", "u1", "")
		if code != http.StatusOK || out["order_id"] != pending || out["status"] != "cancelled" {
			t.Errorf("cancel %d: %d %v, want 200 with the cancelled order", i, code, out)
		}
	}
	if stock.Available["a"] != 3+2 {
		t.Errorf("available %d, want the order's 2 units back once", stock.Available["a"])
	}
	if code, out := f.do(t, "/api/v1/orders/"+paid+"/cancel", "u1", ""); code != http.StatusConflict || !strings.HasPrefix(errCode(out), "already_paid") {
		t.Errorf("a paid order: %d %s, want 409 already_paid", code, errCode(out))
	}
	stock.Fail("release a", 1)
	if code, out := f.do(t, "/api/v1/orders/"+away+"/cancel", "u1", ""); code != http.StatusServiceUnavailable {
		t.Errorf("Redis away after the commit: %d %s, want 503", code, errCode(out))
	}
	if code, out := f.do(t, "/api/v1/orders/"+away+"/cancel", "u1", ""); code != http.StatusOK || out["status"] != "cancelled" || stock.Available["a"] != 3+2+2 {
		t.Errorf("the retry: %d %v, available %d; want 200 cancelled with its units back", code, out, stock.Available["a"])
	}
}
