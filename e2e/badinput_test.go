package e2e

import (
	"maps"
	"net/http"
	"strings"
	"testing"
	"time"
)

// TestBadInputs: every bad request gets its exact status and error code in
// the contract's error shape, never a 500, and creates nothing.
func TestBadInputs(t *testing.T) {
	e := newEnv(t)
	p := e.start("all", nil)
	c := p.client()
	now := time.Now().UTC().Truncate(time.Second)

	// The sale every bad purchase targets: open, 50 units, 2 per user.
	open := openSale(50, 2, 1000)
	openID := c.createSale(t, open)

	future := openSale(10, 1, 100)
	future.StartsAt, future.EndsAt = now.Add(time.Hour), now.Add(2*time.Hour)
	futureID := c.createSale(t, future)

	ended := openSale(10, 1, 100)
	ended.StartsAt, ended.EndsAt = now.Add(-2*time.Hour), now.Add(-time.Hour)
	endedID := c.createSale(t, ended)

	// Someone else's ticket and order.
	const owner = "owner-1"
	ownSaleID := c.createSale(t, openSale(5, 1, 100))
	r := c.must(t, http.MethodPost, pathPurchase(ownSaleID), user(owner), map[string]int{"quantity": 1})
	var a purchaseAnswer
	if r.Status != http.StatusAccepted || r.decode(&a) != nil || a.TicketID == "" {
		t.Fatalf("owner's purchase: %s", r)
	}
	own := c.awaitFinal(t, []ticketRef{{User: owner, TicketID: a.TicketID}}, 30*time.Second)[a.TicketID]
	if own.Status != "pending_payment" || own.OrderID == "" {
		t.Fatalf("owner's ticket ended %+v, want pending_payment", own)
	}

	validSale := func(id string, kv ...any) map[string]any {
		m := map[string]any{
			"id": id, "sku": "SKU-1", "name": "bad input sale", "stock": 5, "price_cents": 100,
			"per_user_limit": 1, "starts_at": now.Add(-time.Minute), "ends_at": now.Add(time.Hour),
		}
		for i := 0; i+1 < len(kv); i += 2 {
			m[kv[i].(string)] = kv[i+1]
		}
		return m
	}
	// Ids of create requests that must not have created anything.
	rejected := []string{}
	rejectedSale := func(kv ...any) map[string]any {
		id := "rejected-" + randHex(4)
		rejected = append(rejected, id)
		return validSale(id, kv...)
	}

	const u1 = "bad-input-user"
	admin := c.admin()
	purchase := pathPurchase(openID)
	tooBig := `{"quantity": 1` + strings.Repeat(" ", 70*1024) + `}`

	cases := []struct {
		name    string
		method  string
		path    string
		headers hdr
		body    any
		status  int
		code    string
		field   []string // the message names one of these (create validation)
	}{
		{"malformed json", "POST", purchase, user(u1), `{"quantity":`, 400, "bad_request", nil},
		{"quantity of wrong type", "POST", purchase, user(u1), `{"quantity":"one"}`, 400, "bad_request", nil},
		{"body not an object", "POST", purchase, user(u1), `[1]`, 400, "bad_request", nil},
		{"body over 64 KiB", "POST", purchase, user(u1), tooBig, 400, "bad_request", nil},
		{"missing X-User-ID", "POST", purchase, nil, `{"quantity":1}`, 401, "unauthorized", nil},
		{"empty X-User-ID", "POST", purchase, user(""), `{"quantity":1}`, 401, "unauthorized", nil},
		{"X-User-ID with bad characters", "POST", purchase, user("bad user!"), `{"quantity":1}`, 401, "unauthorized", nil},
		{"X-User-ID of 65 characters", "POST", purchase, user(strings.Repeat("a", 65)), `{"quantity":1}`, 401, "unauthorized", nil},
		{"unknown sale", "POST", pathPurchase("no-such-sale"), user(u1), `{"quantity":1}`, 404, "not_found", nil},
		{"quantity 0", "POST", purchase, user(u1), `{"quantity":0}`, 422, "invalid_quantity", nil},
		{"negative quantity", "POST", purchase, user(u1), `{"quantity":-1}`, 422, "invalid_quantity", nil},
		{"quantity above per_user_limit", "POST", purchase, user(u1), `{"quantity":3}`, 422, "invalid_quantity", nil},
		{"sale not started", "POST", pathPurchase(futureID), user(u1), `{"quantity":1}`, 409, "not_started", nil},
		{"sale ended", "POST", pathPurchase(endedID), user(u1), `{"quantity":1}`, 409, "ended", nil},

		{"create without token", "POST", "/api/v1/sales", nil, rejectedSale(), 401, "unauthorized", nil},
		{"create with wrong token", "POST", "/api/v1/sales", hdr{"Authorization": "Bearer wrong-" + e.AdminToken}, rejectedSale(), 401, "unauthorized", nil},
		{"create with token but no Bearer", "POST", "/api/v1/sales", hdr{"Authorization": e.AdminToken}, rejectedSale(), 401, "unauthorized", nil},
		{"create malformed json", "POST", "/api/v1/sales", admin, `{"id":`, 400, "bad_request", nil},
		{"create stock 0", "POST", "/api/v1/sales", admin, rejectedSale("stock", 0), 400, "invalid", []string{"stock"}},
		{"create negative stock", "POST", "/api/v1/sales", admin, rejectedSale("stock", -5), 400, "invalid", []string{"stock"}},
		{"create bad id", "POST", "/api/v1/sales", admin, validSale("bad id!"), 400, "invalid", []string{"id"}},
		{"create id of 65 characters", "POST", "/api/v1/sales", admin, validSale(strings.Repeat("x", 65)), 400, "invalid", []string{"id"}},
		{"create ends before starts", "POST", "/api/v1/sales", admin,
			rejectedSale("starts_at", now.Add(time.Hour), "ends_at", now.Add(time.Minute)), 400, "invalid", []string{"ends_at", "starts_at"}},
		{"create negative price", "POST", "/api/v1/sales", admin, rejectedSale("price_cents", -1), 400, "invalid", []string{"price_cents"}},
		{"create negative per_user_limit", "POST", "/api/v1/sales", admin, rejectedSale("per_user_limit", -1), 400, "invalid", []string{"per_user_limit"}},
		{"create payment window too long", "POST", "/api/v1/sales", admin, rejectedSale("payment_window_seconds", 86401), 400, "invalid", []string{"payment_window_seconds"}},
		{"create duplicate id", "POST", "/api/v1/sales", admin, validSale(openID, "stock", 999), 409, "conflict", nil},

		{"unknown sale view", "GET", pathSale("no-such-sale"), nil, nil, 404, "not_found", nil},
		{"someone else's ticket", "GET", pathTicket(own.TicketID), user("intruder-1"), nil, 404, "not_found", nil},
		{"someone else's order", "GET", pathOrder(own.OrderID), user("intruder-1"), nil, 404, "not_found", nil},
		{"cancel someone else's order", "POST", pathOrder(own.OrderID) + "/cancel", user("intruder-1"), nil, 404, "not_found", nil},
		{"unknown ticket", "GET", pathTicket("no-such-ticket"), user(owner), nil, 404, "not_found", nil},
		{"unknown order", "GET", pathOrder("no-such-order"), user(owner), nil, 404, "not_found", nil},
		{"ticket without X-User-ID", "GET", pathTicket(own.TicketID), nil, nil, 401, "unauthorized", nil},
		{"ticket with bad X-User-ID", "GET", pathTicket(own.TicketID), user("bad user!"), nil, 401, "unauthorized", nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := c.must(t, tc.method, tc.path, maps.Clone(tc.headers), tc.body)
			if r.Status >= 500 {
				t.Fatalf("bad input answered %s", r)
			}
			checkError(t, tc.name, r, tc.status, tc.code)
			if ct := r.Header.Get("Content-Type"); !strings.Contains(ct, "application/json") {
				t.Errorf("Content-Type %q, want application/json", ct)
			}
			if len(tc.field) > 0 {
				var e apiError
				if r.decode(&e) == nil && e.Error != nil {
					msg := strings.ToLower(e.Error.Message)
					found := false
					for _, f := range tc.field {
						found = found || strings.Contains(msg, f)
					}
					if !found {
						t.Errorf("message %q names none of the fields %v", e.Error.Message, tc.field)
					}
				}
			}
		})
	}

	// Nothing of the above was created or taken.
	v := c.sale(t, openID)
	if want := (stockView{Total: 50, Available: 50}); v.Stock != want {
		t.Errorf("target sale stock %+v after bad requests, want %+v", v.Stock, want)
	}
	if rows := e.orders(t, openID); len(rows) != 0 {
		t.Errorf("%d orders for the target sale after bad requests: %+v", len(rows), rows)
	}
	for _, id := range rejected {
		checkError(t, "GET rejected sale "+id, c.must(t, http.MethodGet, pathSale(id), nil, nil), 404, "not_found")
	}
	ownView := c.sale(t, ownSaleID)
	if want := (stockView{Total: 5, Available: 4, Held: 1}); ownView.Stock != want {
		t.Errorf("owner's sale stock %+v after someone else's cancel, want %+v", ownView.Stock, want)
	}
	r = c.must(t, http.MethodGet, pathOrder(own.OrderID), user(owner), nil)
	var o orderView
	if r.Status != http.StatusOK || r.decode(&o) != nil || o.Status != "pending_payment" || o.UserID != owner {
		t.Errorf("owner's order after someone else's cancel: %s, want 200 pending_payment", r)
	}

	// The user who sent all the bad purchases has no ticket: a good one is new (202).
	r = c.must(t, http.MethodPost, purchase, user(u1), map[string]int{"quantity": 2})
	if r.Status != http.StatusAccepted {
		t.Errorf("first good purchase of %s: %s, want 202", u1, r)
	}
	// X-User-ID of exactly 64 characters is valid.
	long := strings.Repeat("A", 31) + "_" + strings.Repeat("z", 31) + "-"
	r = c.must(t, http.MethodPost, purchase, user(long), map[string]int{"quantity": 1})
	if r.Status != http.StatusAccepted {
		t.Errorf("purchase with a 64-character X-User-ID: %s, want 202", r)
	}
}
