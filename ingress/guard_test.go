package ingress

import (
	"context"
	"crypto/sha1"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/google/uuid"

	"github.com/flashsale/flashsale"
	"github.com/flashsale/flashsale/mock"
)

// TestValidTicketID: only canonical UUIDv7 not minted in the future.
func TestValidTicketID(t *testing.T) {
	now := time.Now()
	v7 := uuid.Must(uuid.NewV7()).String()
	for id, want := range map[string]bool{
		v7:                                     true,
		uuid.NewString():                       false, // v4
		"no-such-ticket":                       false,
		"{" + v7 + "}":                         false,
		"urn:uuid:" + v7:                       false,
		v7[:35]:                                false,
		"01900000-0000-7000-8000-00000000000g": false,
	} {
		if got := validTicketID(id, "u1", now); got != want {
			t.Errorf("validTicketID(%q) = %v, want %v", id, got, want)
		}
	}
	if validTicketID(v7, "u1", now.Add(-2*time.Hour)) {
		t.Error("an id minted 2 hours in the future was accepted")
	}
	// A minted id (version 8) is valid for its user only.
	sum := sha1.Sum([]byte("u|u1"))
	minted := "01234567-89ab-8cde-8f01-2345" + hex.EncodeToString(sum[:4])
	if !validTicketID(minted, "u1", now) || validTicketID(minted, "u2", now) || !validTicketID(minted, "", now) {
		t.Errorf("minted id %s: valid for its user %v, for another %v", minted, validTicketID(minted, "u1", now), validTicketID(minted, "u2", now))
	}
}

// TestNegativeCache: remembered per user, for negativeTTL, bounded.
func TestNegativeCache(t *testing.T) {
	var n negativeCache
	now := time.Now()
	n.add("u", "id", now)
	if !n.has("u", "id", now.Add(time.Second)) || n.has("other", "id", now) || n.has("u", "id", now.Add(negativeTTL)) {
		t.Error("negative cache: wrong membership")
	}
	for i := range negativeMax + 5 {
		n.add("u", string(rune(i)), now)
	}
	if len(n.m) > negativeMax {
		t.Errorf("%d entries, want at most %d", len(n.m), negativeMax)
	}
}

// blockingSales blocks every read of a sale until the request's context ends
// (as the catalog's MySQL read does when MySQL hangs).
type blockingSales struct{ mock.Sales }

func (blockingSales) Get(ctx context.Context, _ string) (*flashsale.Sale, error) {
	<-ctx.Done()
	return nil, fmt.Errorf("catalog: read sale: %w", ctx.Err())
}

// blockingClaims blocks every claim until the request's context ends (Redis
// frozen).
type blockingClaims struct{ *claimStock }

func (blockingClaims) Claim(ctx context.Context, _ *flashsale.Sale, _ string, _ flashsale.TicketClaim, _ int) (flashsale.ClaimOutcome, string, int64, error) {
	<-ctx.Done()
	return 0, "", 0, fmt.Errorf("redisstore: claim: %w", ctx.Err())
}

// TestEveryRequestHasADeadline: a request whose dependency blocks is answered
// 503 unavailable (never 500, never left hanging) once its deadline passes: a
// read (GET a sale) at ReadDeadline, a purchase at PurchaseDeadline, and a
// POST registered by another role on the router (as the payment callback is)
// at WriteDeadline.
func TestEveryRequestHasADeadline(t *testing.T) {
	f := newHandlerFixture(t, fakeLifecycle{})
	const read, purchase, write = 100 * time.Millisecond, 300 * time.Millisecond, 200 * time.Millisecond
	srv, err := New(Config{Sales: blockingSales{}, Stock: blockingClaims{f.stock}, Orders: f.orders, Queue: f.queue,
		Lifecycle: fakeLifecycle{}, LimitPerWindow: -1, ReadDeadline: read, PurchaseDeadline: purchase, WriteDeadline: write,
		PublishTimeout: 250 * time.Millisecond, Log: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	open := &flashsale.Sale{ID: "a", Stock: 10, PerUserLimit: 2, PriceCents: 100, PaymentWindowSeconds: 60,
		StartsAt: time.Now().Add(-time.Hour), EndsAt: time.Now().Add(time.Hour), Inventory: flashsale.InventoryRedis}
	purchaseSrv, err := New(Config{Sales: mock.Sales{"a": open}, Stock: blockingClaims{f.stock}, Orders: f.orders,
		Queue: f.queue, Lifecycle: fakeLifecycle{}, LimitPerWindow: -1, ReadDeadline: read, PurchaseDeadline: purchase,
		WriteDeadline: write, PublishTimeout: 250 * time.Millisecond, Log: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	srv.Router().POST("/api/v1/payments/callback", func(c *gin.Context) {
		<-c.Request.Context().Done()
		srv.WriteError(c, c.Request.Context().Err())
	})
	for _, tc := range []struct {
		name, method, path string
		h                  http.Handler
		deadline           time.Duration
	}{
		{"GET a sale", http.MethodGet, "/api/v1/sales/a", srv.Handler(), read},
		{"a purchase", http.MethodPost, "/api/v1/sales/a/purchase", purchaseSrv.Handler(), purchase},
		{"the payment callback", http.MethodPost, "/api/v1/payments/callback", srv.Handler(), write},
	} {
		req := httptest.NewRequest(tc.method, tc.path, strings.NewReader(`{}`))
		req.Header.Set("X-User-ID", "u1")
		rec := httptest.NewRecorder()
		start := time.Now()
		done := make(chan struct{})
		go func() {
			defer close(done)
			tc.h.ServeHTTP(rec, req)
		}()
		select {
		case <-done:
		case <-time.After(tc.deadline + 2*time.Second):
			t.Fatalf("%s: not answered %s after its deadline of %s", tc.name, 2*time.Second, tc.deadline)
		}
		took := time.Since(start)
		if rec.Code != http.StatusServiceUnavailable || !strings.Contains(rec.Body.String(), `"unavailable"`) {
			t.Errorf("%s: %d %s, want 503 unavailable", tc.name, rec.Code, rec.Body)
		}
		if took < tc.deadline || took > tc.deadline+time.Second {
			t.Errorf("%s: answered after %s, want at its deadline of %s", tc.name, took.Round(time.Millisecond), tc.deadline)
		}
	}
	if _, err := New(Config{Sales: blockingSales{}, Stock: f.stock, Orders: f.orders, Queue: f.queue, Lifecycle: fakeLifecycle{},
		PublishTimeout: 5 * time.Second, PurchaseDeadline: 5 * time.Second}); err == nil {
		t.Error("a purchase deadline not above the publish timeout was accepted")
	}
}

// countingOrders counts the lookups that reach the book of record; it knows
// one order.
type countingOrders struct {
	lookups atomic.Int64
	order   *flashsale.Order
}

func (o *countingOrders) GetOrder(_ context.Context, ref flashsale.OrderRef) (*flashsale.Order, error) {
	o.lookups.Add(1)
	if o.order != nil && o.order.Ref() == ref {
		return o.order, nil
	}
	return nil, flashsale.ErrNotFound
}

func (o *countingOrders) GetTicket(context.Context, flashsale.TicketRef) (*flashsale.Ticket, error) {
	o.lookups.Add(1)
	return nil, flashsale.ErrNotFound
}

func (o *countingOrders) GiveUp(context.Context, *flashsale.Ticket) (bool, error) { return false, nil }

// TestUnknownLookupBudget: a user asking for fresh well-shaped ids (new
// UUIDv7 each time, which no memory of unknown ids catches) reaches MySQL for
// the first 3 only (the default budget); then those lookups are 429 rate_limited with a
// Retry-After, while that user's real ticket and order (known to Redis) are
// still answered, and other users are untouched. A user who asks for their
// own ticket again and again spends nothing.
func TestUnknownLookupBudget(t *testing.T) {
	stock := newClaimStock(map[string]int{})
	mine, order := uuid.Must(uuid.NewV7()).String(), uuid.Must(uuid.NewV7()).String()
	stock.copies[mine] = &flashsale.Ticket{ID: mine, UserID: "crafter", SaleID: "a", Quantity: 1, Status: flashsale.TicketQueued}
	stock.copies[order] = &flashsale.Ticket{ID: order, UserID: "crafter", SaleID: "a", Quantity: 1, Status: flashsale.TicketPendingPayment, OrderID: order}
	orders := &countingOrders{order: &flashsale.Order{ID: order, UserID: "crafter", SaleID: "a", Quantity: 1}}
	srv, err := New(Config{Sales: mock.Sales{}, Stock: stock, Orders: orders, Queue: &recQueue{}, Lifecycle: fakeLifecycle{},
		Log: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	get := func(user, path string) *httptest.ResponseRecorder {
		req := httptest.NewRequest(http.MethodGet, path, nil)
		req.Header.Set("X-User-ID", user)
		rec := httptest.NewRecorder()
		srv.Handler().ServeHTTP(rec, req)
		return rec
	}
	answers := map[string]int{}
	for i := range 40 {
		path := "/api/v1/tickets/" + uuid.Must(uuid.NewV7()).String()
		if i%2 == 1 {
			path = "/api/v1/orders/" + uuid.Must(uuid.NewV7()).String()
		}
		rec := get("crafter", path)
		answers[strconv.Itoa(rec.Code)]++
		if rec.Code == http.StatusTooManyRequests {
			if ra, _ := strconv.Atoi(rec.Header().Get("Retry-After")); ra < 1 || !strings.Contains(rec.Body.String(), `"rate_limited"`) {
				t.Fatalf("over the budget: %s, Retry-After %q; want 429 rate_limited with Retry-After", rec.Body, rec.Header().Get("Retry-After"))
			}
		}
	}
	if n := orders.lookups.Load(); n != defaultUnknownLookups || answers["429"] != 40-defaultUnknownLookups || answers["503"]+answers["404"] != defaultUnknownLookups {
		t.Errorf("40 fresh ids: %d MySQL lookups, answers %v; want %d lookups and the rest 429", n, answers, defaultUnknownLookups)
	}
	for _, path := range []string{"/api/v1/tickets/" + mine, "/api/v1/orders/" + order} {
		if rec := get("crafter", path); rec.Code != http.StatusOK {
			t.Errorf("the crafter's real %s over the budget: %d %s, want 200", path, rec.Code, rec.Body)
		}
	}
	if rec := get("someone-else", "/api/v1/orders/"+uuid.Must(uuid.NewV7()).String()); rec.Code != http.StatusNotFound {
		t.Errorf("another user's unknown order: %d %s, want 404 (their own budget)", rec.Code, rec.Body)
	}
	for range 50 {
		if rec := get("crafter", "/api/v1/tickets/"+mine); rec.Code != http.StatusOK {
			t.Fatalf("the crafter's own ticket: %d", rec.Code)
		}
	}
	stock.copies[mine].UserID = "honest"
	for range 50 {
		get("honest", "/api/v1/tickets/"+mine)
	}
	before := orders.lookups.Load()
	if rec := get("honest", "/api/v1/tickets/"+uuid.Must(uuid.NewV7()).String()); rec.Code == http.StatusTooManyRequests || orders.lookups.Load() != before+1 {
		t.Errorf("after 50 lookups of their own ticket, a user's first unknown id: %d, want it looked up (no token spent on found ids)", rec.Code)
	}
}

// TestLookupBudgetFailsOpenWhileRedisIsAway: a user whose budget is spent
// (their queued tickets' lookups missed) still gets their own order while
// Redis cannot be read: the budget cannot tell their ids from crafted ones
// then, and a 429 would refuse their cancel for the length of the outage.
func TestLookupBudgetFailsOpenWhileRedisIsAway(t *testing.T) {
	stock := newClaimStock(map[string]int{})
	order := uuid.Must(uuid.NewV7()).String()
	orders := &countingOrders{order: &flashsale.Order{ID: order, UserID: "u1", SaleID: "a", Quantity: 1}}
	srv, err := New(Config{Sales: mock.Sales{}, Stock: stock, Orders: orders, Queue: &recQueue{}, Lifecycle: fakeLifecycle{},
		Log: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	get := func(path string) *httptest.ResponseRecorder {
		req := httptest.NewRequest(http.MethodGet, path, nil)
		req.Header.Set("X-User-ID", "u1")
		rec := httptest.NewRecorder()
		srv.Handler().ServeHTTP(rec, req)
		return rec
	}
	for range defaultUnknownLookups {
		get("/api/v1/tickets/" + uuid.Must(uuid.NewV7()).String())
	}
	if rec := get("/api/v1/tickets/" + uuid.Must(uuid.NewV7()).String()); rec.Code != http.StatusTooManyRequests {
		t.Fatalf("over the budget with Redis up: %d, want 429", rec.Code)
	}
	stock.mu.Lock()
	stock.getErr = errors.New("dial tcp: connection refused")
	stock.mu.Unlock()
	if rec := get("/api/v1/orders/" + order); rec.Code != http.StatusOK {
		t.Errorf("the user's own order over the budget while Redis is away: %d %s, want 200", rec.Code, rec.Body)
	}
}

// TestLookupBudgetRefills: 5 tokens, one back every 2 s, and a token given
// back by a lookup that found its id.
func TestLookupBudgetRefills(t *testing.T) {
	b := newLookupBudget(5, 10*time.Second)
	t0 := time.Now()
	for i := range 5 {
		if ok, _ := b.take("u", t0); !ok {
			t.Fatalf("take %d refused", i+1)
		}
	}
	ok, wait := b.take("u", t0)
	if ok || wait < time.Second || wait > 2*time.Second {
		t.Errorf("a 6th take: %v, wait %s; want refused, about 2 s", ok, wait)
	}
	if ok, _ := b.take("u", t0.Add(2100*time.Millisecond)); !ok {
		t.Error("after 2 s a token is not back")
	}
	b.giveBack("u")
	if ok, _ := b.take("u", t0.Add(2100*time.Millisecond)); !ok {
		t.Error("a token given back cannot be taken")
	}
	if ok, _ := newLookupBudget(-1, time.Second).take("u", t0); !ok {
		t.Error("an unbounded budget refused")
	}
}
