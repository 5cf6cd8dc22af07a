package ingress

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/flashsale/flashsale"
	"github.com/flashsale/flashsale/mock"
)

// These tests drive the gin handlers through httptest with fakes of the
// server's small interfaces: what each answer is, and what it claimed,
// published and undid on the way.

// claimStock is a stock store of claims only: available units per sale, the
// live ticket per (sale, user).
type claimStock struct {
	mu          sync.Mutex
	available   map[string]int
	live        map[[2]string]string
	unconfirmed map[string]bool // claimed tickets not marked queued yet
	units       map[[2]string]int
	claimCalls  map[string]int // per sale
	copies      map[string]*flashsale.Ticket
	refused     map[string]bool // live tickets their hold refused (claims answer Refused)
	getErr      error           // GetTicket's answer when set (Redis away)
	log         []string
}

func newClaimStock(avail map[string]int) *claimStock {
	return &claimStock{available: avail, live: map[[2]string]string{}, unconfirmed: map[string]bool{}, units: map[[2]string]int{}, claimCalls: map[string]int{},
		copies: map[string]*flashsale.Ticket{}, refused: map[string]bool{}}
}

func (s *claimStock) Holder(_ context.Context, saleID, user string) (string, bool, int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	k := [2]string{saleID, user}
	return s.live[k], s.refused[s.live[k]], s.units[k], nil
}

func (s *claimStock) Stock(_ context.Context, saleID string) (flashsale.StockLevel, error) {
	return flashsale.StockLevel{Total: 10, Available: s.available[saleID]}, nil
}

func (s *claimStock) Claim(_ context.Context, sale *flashsale.Sale, user string, want flashsale.TicketClaim, qty int) (flashsale.ClaimOutcome, string, int64, error) {
	ticket := want.ID
	if ticket == "" {
		ticket = "t-" + user + "-" + want.Nonce
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	k := [2]string{sale.ID, user}
	s.claimCalls[sale.ID]++
	switch {
	case s.live[k] != "" && s.unconfirmed[s.live[k]]:
		return flashsale.Unconfirmed, s.live[k], 0, nil
	case s.live[k] != "" && s.refused[s.live[k]]:
		return flashsale.Refused, s.live[k], 0, nil
	case s.live[k] != "":
		return flashsale.Existing, s.live[k], 0, nil
	case s.available[sale.ID] < qty:
		return flashsale.SoldOut, "", 0, nil
	}
	s.live[k] = ticket
	s.unconfirmed[ticket] = true
	s.log = append(s.log, "claim "+sale.ID)
	return flashsale.Claimed, ticket, 7, nil
}

func (s *claimStock) Unclaim(_ context.Context, p flashsale.Part) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	k := [2]string{p.SaleID, p.UserID}
	if s.live[k] == p.TicketID {
		delete(s.live, k)
	}
	s.log = append(s.log, "unclaim "+p.SaleID)
	return nil
}

func (s *claimStock) Release(_ context.Context, p flashsale.Part) (flashsale.Hold, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	k := [2]string{p.SaleID, p.UserID}
	if s.live[k] == p.TicketID {
		delete(s.live, k)
	}
	s.log = append(s.log, "release "+p.SaleID)
	return flashsale.Hold{}, nil
}

func (s *claimStock) Queued(_ context.Context, ts ...*flashsale.Ticket) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, t := range ts {
		delete(s.unconfirmed, t.ID)
		s.copies[t.ID] = t
	}
	return nil
}

// PutTickets writes copies; a refused ticket (sold_out, failed, no order)
// is settled in its sales as redisstore settles it: it ends its user's live
// ticket there ("settle" in the log).
func (s *claimStock) PutTickets(_ context.Context, ts ...*flashsale.Ticket) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, t := range ts {
		s.copies[t.ID] = t
		if t.OrderID != "" || t.Status != flashsale.TicketSoldOut && t.Status != flashsale.TicketFailed {
			continue
		}
		for _, l := range t.Lines() {
			if k := [2]string{l.SaleID, t.UserID}; s.live[k] == t.ID {
				delete(s.live, k)
			}
			s.log = append(s.log, "settle "+l.SaleID)
		}
	}
	return nil
}

func (s *claimStock) GetTicket(_ context.Context, id string) (*flashsale.Ticket, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.getErr != nil {
		return nil, s.getErr
	}
	if t := s.copies[id]; t != nil {
		return t, nil
	}
	return nil, flashsale.ErrNotFound
}

type recQueue struct {
	mu        sync.Mutex
	published []*flashsale.PurchaseRequest
	err       error
	confirm   time.Duration // how long the broker takes to confirm
}

func (q *recQueue) PublishPurchases(_ context.Context, rs []*flashsale.PurchaseRequest) error {
	if q.err != nil {
		return q.err
	}
	time.Sleep(q.confirm) // the broker's latency, not a wait for an effect
	q.mu.Lock()
	defer q.mu.Unlock()
	q.published = append(q.published, rs...)
	return nil
}

type fakeLifecycle struct {
	returnFn func(r flashsale.ReturnRequest) (*flashsale.Order, bool, error)
}

func (fakeLifecycle) Cancel(context.Context, flashsale.OrderRef) (*flashsale.Order, error) {
	return nil, flashsale.ErrNotFound
}
func (l fakeLifecycle) Return(_ context.Context, r flashsale.ReturnRequest) (*flashsale.Order, bool, error) {
	return l.returnFn(r)
}

type handlerFixture struct {
	srv    *Server
	sales  mock.Sales
	stock  *claimStock
	orders *mock.Book // the book of record (empty unless a test puts orders in)
	queue  *recQueue
	line   *fakeLine // queued tickets' places (events_test.go)
}

// newHandlerFixture serves sales a, b (5 units each) and gone (sold out),
// open now, with lc as the lifecycle (fakeLifecycle{}: every cancel is
// not_found); each of opts may change the server's Config first.
func newHandlerFixture(t *testing.T, lc fakeLifecycle, opts ...func(*Config)) *handlerFixture {
	t.Helper()
	open := func(id string) *flashsale.Sale {
		return &flashsale.Sale{ID: id, Stock: 10, PerUserLimit: 2, PriceCents: 100, PaymentWindowSeconds: 60,
			StartsAt: time.Now().Add(-time.Hour), EndsAt: time.Now().Add(time.Hour), Inventory: flashsale.InventoryRedis}
	}
	f := &handlerFixture{sales: mock.Sales{"a": open("a"), "b": open("b"), "gone": open("gone")},
		stock: newClaimStock(map[string]int{"a": 5, "b": 5, "gone": 0}), orders: mock.NewBook(nil), queue: &recQueue{}, line: newFakeLine()}
	cfg := Config{Sales: f.sales, Line: f.line,
		Stock: f.stock, Orders: f.orders, Queue: f.queue, Lifecycle: lc, AdminToken: "admin-token-0123456789",
		LimitPerWindow: -1, Log: slog.New(slog.NewTextHandler(io.Discard, nil))}
	for _, o := range opts {
		o(&cfg)
	}
	srv, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	f.srv = srv
	return f
}

// do POSTs body to path as user and returns the status and the decoded
// answer (see send).
func (f *handlerFixture) do(t *testing.T, path, user, body string) (int, map[string]any) {
	t.Helper()
	return f.send(t, http.MethodPost, path, user, body)
}

// send sends body to path as user: "admin" with the admin token, "token:x"
// with admin token x, "" with no credentials, else X-User-ID: user. It
// returns the status and the decoded answer.
func (f *handlerFixture) send(t *testing.T, method, path, user, body string) (int, map[string]any) {
	t.Helper()
	req := httptest.NewRequest(method, path, strings.NewReader(body))
	switch {
	case user == "admin":
		req.Header.Set("Authorization", "Bearer admin-token-0123456789")
	case strings.HasPrefix(user, "token:"):
		req.Header.Set("Authorization", "Bearer "+strings.TrimPrefix(user, "token:"))
	case user != "":
		req.Header.Set("X-User-ID", user)
	}
	rec := httptest.NewRecorder()
	f.srv.Handler().ServeHTTP(rec, req)
	var out map[string]any
	json.Unmarshal(rec.Body.Bytes(), &out)
	if rec.Code >= 500 && rec.Code != http.StatusServiceUnavailable {
		t.Errorf("%s %s: %d %s", path, body, rec.Code, rec.Body)
	}
	return rec.Code, out
}

func errCode(out map[string]any) string {
	e, _ := out["error"].(map[string]any)
	c, _ := e["code"].(string)
	m, _ := e["message"].(string)
	return c + ": " + m
}

func TestBundlePurchaseClaimsEverySaleAndQueuesOneTicket(t *testing.T) {
	f := newHandlerFixture(t, fakeLifecycle{})
	code, out := f.do(t, "/api/v1/purchases", "u1", `{"items":[{"sale_id":"a","quantity":2},{"sale_id":"b"}]}`)
	if code != http.StatusAccepted || len(f.queue.published) != 1 {
		t.Fatalf("bundle: %d %v, %d published; want 202 and one message", code, out, len(f.queue.published))
	}
	req := f.queue.published[0]
	if req.TicketID != out["ticket_id"] || fmt.Sprint(req.Items) != "[{a 2} {b 1}]" || req.SaleID != "" || fmt.Sprint(req.Loads) != "[7 7]" {
		t.Errorf("queued %+v, want the ticket with both lines and no sale_id", req)
	}
	// The same bundle again: the live ticket, nothing new.
	code, again := f.do(t, "/api/v1/purchases", "u1", `{"items":[{"sale_id":"a","quantity":2},{"sale_id":"b"}]}`)
	if code != http.StatusOK || again["ticket_id"] != out["ticket_id"] || len(f.queue.published) != 1 {
		t.Errorf("the bundle again: %d %v, want 200 with the same ticket", code, again)
	}
}

func TestBundleWithASaleSoldOutUndoesItsClaims(t *testing.T) {
	f := newHandlerFixture(t, fakeLifecycle{})
	code, out := f.do(t, "/api/v1/purchases", "u1", `{"items":[{"sale_id":"a"},{"sale_id":"gone"}]}`)
	if code != http.StatusConflict || !strings.HasPrefix(errCode(out), `sold_out: sale "gone"`) {
		t.Fatalf("bundle with a sold-out sale: %d %s, want 409 sold_out naming it", code, errCode(out))
	}
	if fmt.Sprint(f.stock.log) != "[claim a unclaim a]" || len(f.stock.live) != 0 || len(f.queue.published) != 0 {
		t.Errorf("steps %v, live %v, published %d: want the claim in a undone and nothing queued", f.stock.log, f.stock.live, len(f.queue.published))
	}
}

func TestBundlePublishFailureLeavesNothing(t *testing.T) {
	f := newHandlerFixture(t, fakeLifecycle{})
	f.queue.err = errors.New("broker away")
	code, out := f.do(t, "/api/v1/purchases", "u1", `{"items":[{"sale_id":"a"},{"sale_id":"b"}]}`)
	if code != http.StatusServiceUnavailable || len(f.stock.live) != 0 || len(f.stock.copies) != 0 || len(f.orders.Decisions) != 1 {
		t.Errorf("publish failed: %d %s; live %v, copies %d, given up %v: want 503, no claims, no copy, the ticket given up",
			code, errCode(out), f.stock.live, len(f.stock.copies), f.orders.Decisions)
	}
}

func TestBundleBadInput(t *testing.T) {
	f := newHandlerFixture(t, fakeLifecycle{})
	eleven := make([]string, 11)
	for i := range eleven {
		eleven[i] = fmt.Sprintf(`{"sale_id":"s%d"}`, i)
	}
	for body, want := range map[string]string{
		`{"items":[{"sale_id":"a"}]}`:                                  "400 invalid",
		`{"items":[` + strings.Join(eleven, ",") + `]}`:                "400 invalid",
		`{"items":[{"sale_id":"a"},{"sale_id":"a"}]}`:                  "400 invalid",
		`{"items":[{"sale_id":"a"},{"sale_id":"nope"}]}`:               "404 not_found",
		`{"items":[{"sale_id":"a"},{"sale_id":"b","quantity":0}]}`:     "422 invalid_quantity",
		`{"items":[{"sale_id":"a"},{"sale_id":"b","quantity":3}]}`:     "422 invalid_quantity",
		`{"items":[{"sale_id":"a"},{"sale_id":"b","quantity":"one"}]}`: "400 bad_request",
		`{"items":`: "400 bad_request",
	} {
		code, out := f.do(t, "/api/v1/purchases", "u1", body)
		if got := fmt.Sprintf("%d %s", code, strings.SplitN(errCode(out), ":", 2)[0]); got != want {
			t.Errorf("%s: %s (%s), want %s", body, got, errCode(out), want)
		}
	}
	if len(f.stock.log) != 0 || len(f.queue.published) != 0 {
		t.Errorf("bad bundles claimed %v and published %d, want nothing", f.stock.log, len(f.queue.published))
	}
}

func TestReturnEndpoint(t *testing.T) {
	var got []flashsale.Line
	lc := fakeLifecycle{returnFn: func(r flashsale.ReturnRequest) (*flashsale.Order, bool, error) {
		got = r.Lines
		switch r.ID {
		case "again":
			return &flashsale.Order{ID: r.OrderID}, false, nil
		case "unpaid":
			return nil, false, flashsale.ErrNotPaid
		}
		return &flashsale.Order{ID: r.OrderID}, true, nil
	}}
	f := newHandlerFixture(t, lc)
	path := "/api/v1/orders/01a231c4-a6a2-766e-8ee4-f4c92c544864/returns"
	for _, tc := range []struct{ user, body, want string }{
		{"admin", `{"return_id":"r1","items":[{"sale_id":"a","quantity":1}]}`, "201 : "},
		{"admin", `{"return_id":"again","items":[{"sale_id":"a","quantity":1}]}`, "200 : "},
		{"admin", `{"return_id":"unpaid","items":[{"sale_id":"a","quantity":1}]}`, "409 not_paid"},
		{"admin", `{"items":[{"sale_id":"a","quantity":1}]}`, "400 invalid"},
		{"admin", `{"return_id":"r2","items":[]}`, "400 invalid"},
		{"admin", `{"return_id":"r2","items":[{"sale_id":"a","quantity":0}]}`, "422 invalid_quantity"},
		{"admin", `{"return_id":"r2","items":[{"sale_id":"a","quantity":1},{"sale_id":"a","quantity":1}]}`, "400 invalid"},
		{"u1", `{"return_id":"r3","items":[{"sale_id":"a","quantity":1}]}`, "401 unauthorized"},
	} {
		code, out := f.do(t, path, tc.user, tc.body)
		if g := fmt.Sprintf("%d %s", code, strings.SplitN(errCode(out), ":", 2)[0]); !strings.HasPrefix(tc.want, g) {
			t.Errorf("%s as %s: %s (%s), want %s", tc.body, tc.user, g, errCode(out), tc.want)
		}
	}
	if fmt.Sprint(got) != "[{a 1}]" {
		t.Errorf("the lifecycle was last asked to return %v", got)
	}
}

// A live claim whose publish is not confirmed: an ingress died between its
// claim and its publish (an orphan nobody was told of), or it is being queued
// right now (a double click). The request waits for the copy: it gets the
// ticket once the copy is written, else 503, never the id of a ticket that may
// never be queued. A confirmed one whose copy was lost is answered with its id.
func TestUnconfirmedClaimIsAwaitedNotHandedOut(t *testing.T) {
	f := newHandlerFixture(t, fakeLifecycle{}, func(c *Config) { c.PublishTimeout = 300 * time.Millisecond })
	f.stock.mu.Lock()
	f.stock.live[[2]string{"a", "u1"}] = "orphan"
	f.stock.unconfirmed["orphan"] = true
	f.stock.live[[2]string{"b", "u2"}] = "confirmed-copy-lost"
	f.stock.mu.Unlock()
	if code, out := f.do(t, "/api/v1/sales/b/purchase", "u2", `{}`); code != http.StatusOK || out["ticket_id"] != "confirmed-copy-lost" {
		t.Errorf("a confirmed claim whose copy was lost: %d %v, want 200 with its ticket", code, out)
	}
	start := time.Now()
	code, out := f.do(t, "/api/v1/sales/a/purchase", "u1", `{}`)
	if code != http.StatusServiceUnavailable || out["ticket_id"] != nil {
		t.Errorf("an orphaned claim: %d %v, want 503 without a ticket id", code, out)
	}
	if waited := time.Since(start); waited < 300*time.Millisecond {
		t.Errorf("answered after %s, want a wait of the publish timeout for the copy", waited)
	}
	// The copy arrives while the second click waits: it gets the ticket.
	go func() {
		time.Sleep(100 * time.Millisecond) // the first click's publish confirmed meanwhile
		f.stock.Queued(context.Background(), &flashsale.Ticket{ID: "orphan", UserID: "u1", SaleID: "a", Status: flashsale.TicketQueued})
	}()
	code, out = f.do(t, "/api/v1/sales/a/purchase", "u1", `{}`)
	if code != http.StatusOK || out["ticket_id"] != "orphan" {
		t.Errorf("a claim whose copy arrives: %d %v, want 200 with its ticket", code, out)
	}
	if len(f.queue.published) != 0 {
		t.Errorf("published %d, want nothing", len(f.queue.published))
	}
}

// A purchase is never answered with a ticket that is not live. Redis may
// still name a ticket as the user's live one after it was decided (Redis went
// back in time before following the decision, or was away when the order
// expired): a copy that is final, or a pending_payment copy past its pay_by
// whose order MySQL expired, frees the slot (the expired order's units go
// back) and the purchase is queued as a new ticket.
func TestAFinalTicketIsNeverAnsweredAsLive(t *testing.T) {
	f := newHandlerFixture(t, fakeLifecycle{})
	past := time.Now().Add(-time.Second)
	f.orders.Put(&flashsale.Order{ID: "expired-order", UserID: "u2", Status: flashsale.OrderExpired, PayBy: past,
		Items: []flashsale.OrderItem{{SaleID: "a", Quantity: 1}}})
	f.stock.mu.Lock()
	f.stock.live[[2]string{"a", "u1"}] = "refused"
	f.stock.copies["refused"] = &flashsale.Ticket{ID: "refused", UserID: "u1", Status: flashsale.TicketSoldOut}
	f.stock.live[[2]string{"a", "u2"}] = "expired-order"
	f.stock.copies["expired-order"] = &flashsale.Ticket{ID: "expired-order", UserID: "u2", Status: flashsale.TicketPendingPayment,
		OrderID: "expired-order", PayBy: &past}
	f.stock.mu.Unlock()
	for _, c := range []struct{ user, old string }{{"u1", "refused"}, {"u2", "expired-order"}} {
		code, out := f.do(t, "/api/v1/sales/a/purchase", c.user, `{}`)
		if code != http.StatusAccepted || out["ticket_id"] == c.old || out["status"] != "queued" {
			t.Errorf("%s, whose ticket %s is final: %d %v, want 202 with a new ticket", c.user, c.old, code, out)
		}
	}
	if !slices.Contains(f.stock.log, "release a") {
		t.Errorf("the expired order's units were not given back: %v", f.stock.log)
	}
	// The same on the path without a claim: a sale this node remembers sold
	// out (the soak saw it answer 200 pending_payment with an order the
	// sweeper had expired in MySQL while Redis was away).
	f.orders.Put(&flashsale.Order{ID: "expired-u4", UserID: "u4", Status: flashsale.OrderExpired, PayBy: past,
		Items: []flashsale.OrderItem{{SaleID: "gone", Quantity: 1}}})
	f.stock.mu.Lock()
	f.stock.available["gone"] = 0
	f.stock.live[[2]string{"gone", "u4"}] = "expired-u4"
	f.stock.copies["expired-u4"] = &flashsale.Ticket{ID: "expired-u4", UserID: "u4", Status: flashsale.TicketPendingPayment,
		OrderID: "expired-u4", PayBy: &past}
	f.stock.mu.Unlock()
	f.do(t, "/api/v1/sales/gone/purchase", "u9", `{}`) // remembered sold out from here
	if code, out := f.do(t, "/api/v1/sales/gone/purchase", "u4", `{}`); code != http.StatusConflict || out["ticket_id"] == "expired-u4" {
		t.Errorf("u4 on a sale remembered sold out, whose order MySQL expired: %d %v, want 409 sold_out", code, out)
	}
	// A pending_payment copy within its pay_by is answered as it is, without MySQL.
	future := time.Now().Add(time.Minute)
	f.stock.mu.Lock()
	f.stock.live[[2]string{"b", "u3"}] = "unpaid"
	f.stock.copies["unpaid"] = &flashsale.Ticket{ID: "unpaid", UserID: "u3", Status: flashsale.TicketPendingPayment, OrderID: "unpaid", PayBy: &future}
	f.stock.mu.Unlock()
	if code, out := f.do(t, "/api/v1/sales/b/purchase", "u3", `{}`); code != http.StatusOK || out["ticket_id"] != "unpaid" {
		t.Errorf("a live unpaid order: %d %v, want 200 with it", code, out)
	}
}

// A live ticket its hold refused, whose copy still reads queued (Redis was
// away when the worker wrote it): the purchase asks MySQL. Recorded there
// as sold_out, the ticket is final and the purchase is a new ticket (the
// user may have read the refusal from MySQL already); not recorded yet, it
// is the user's live ticket, queued. The same on the path without a claim
// (a sale this node remembers sold out).
func TestARefusedTicketIsFinalOnceMySQLHasIt(t *testing.T) {
	f := newHandlerFixture(t, fakeLifecycle{})
	f.stock.mu.Lock()
	for _, u := range []string{"u1", "u2"} {
		id := "refused-" + u
		f.stock.live[[2]string{"a", u}] = id
		f.stock.refused[id] = true
		f.stock.copies[id] = &flashsale.Ticket{ID: id, UserID: u, Status: flashsale.TicketQueued}
	}
	f.stock.mu.Unlock()
	recorded := &flashsale.Ticket{ID: "refused-u1", UserID: "u1", Status: flashsale.TicketSoldOut}
	recorded.SetLines([]flashsale.Line{{SaleID: "a", Quantity: 1}})
	if _, err := f.orders.RecordOutcomes(context.Background(), 0, []*flashsale.Ticket{recorded}); err != nil {
		t.Fatal(err)
	}
	if code, out := f.do(t, "/api/v1/sales/a/purchase", "u1", `{}`); code != http.StatusAccepted || out["ticket_id"] == "refused-u1" {
		t.Errorf("u1, whose refusal MySQL has: %d %v, want 202 with a new ticket", code, out)
	}
	if code, out := f.do(t, "/api/v1/sales/a/purchase", "u2", `{}`); code != http.StatusOK || out["ticket_id"] != "refused-u2" || out["status"] != "queued" {
		t.Errorf("u2, whose refusal MySQL does not have yet: %d %v, want 200 with the ticket, queued", code, out)
	}
	// Without a claim: the sale remembered sold out.
	f.stock.mu.Lock()
	f.stock.available["gone"] = 0
	f.stock.live[[2]string{"gone", "u3"}] = "refused-u3"
	f.stock.refused["refused-u3"] = true
	f.stock.copies["refused-u3"] = &flashsale.Ticket{ID: "refused-u3", UserID: "u3", Status: flashsale.TicketQueued}
	f.stock.mu.Unlock()
	f.do(t, "/api/v1/sales/gone/purchase", "u9", `{}`) // remembered sold out from here
	recorded = &flashsale.Ticket{ID: "refused-u3", UserID: "u3", Status: flashsale.TicketSoldOut}
	recorded.SetLines([]flashsale.Line{{SaleID: "gone", Quantity: 1}})
	if _, err := f.orders.RecordOutcomes(context.Background(), 0, []*flashsale.Ticket{recorded}); err != nil {
		t.Fatal(err)
	}
	if code, out := f.do(t, "/api/v1/sales/gone/purchase", "u3", `{}`); code != http.StatusConflict || out["ticket_id"] != nil {
		t.Errorf("u3 on a sale remembered sold out, refusal recorded: %d %v, want 409 sold_out", code, out)
	}
}

// A live ticket whose refusal MySQL recorded while Redis was away (the
// worker's step that settles it in Redis still retrying): its claim is
// Existing, its copy lost. The purchase finds it final in MySQL and settles
// the refusal in Redis, as the worker would (its hold then marks it refused,
// so the claim cannot mint its id again), rather than only undoing its claim.
func TestAFinalRefusalIsSettledNotUnclaimed(t *testing.T) {
	f := newHandlerFixture(t, fakeLifecycle{})
	f.stock.mu.Lock()
	f.stock.live[[2]string{"a", "u1"}] = "lost-u1"
	f.stock.mu.Unlock()
	recorded := &flashsale.Ticket{ID: "lost-u1", UserID: "u1", Status: flashsale.TicketSoldOut}
	recorded.SetLines([]flashsale.Line{{SaleID: "a", Quantity: 1}})
	if _, err := f.orders.RecordOutcomes(context.Background(), 0, []*flashsale.Ticket{recorded}); err != nil {
		t.Fatal(err)
	}
	if code, out := f.do(t, "/api/v1/sales/a/purchase", "u1", `{}`); code != http.StatusAccepted || out["ticket_id"] == "lost-u1" {
		t.Errorf("u1, whose refusal MySQL has: %d %v, want 202 with a new ticket", code, out)
	}
	f.stock.mu.Lock()
	defer f.stock.mu.Unlock()
	if !slices.Contains(f.stock.log, "settle a") || slices.Contains(f.stock.log, "unclaim a") {
		t.Errorf("stock calls %v: want the refusal settled in sale a, not its claim undone", f.stock.log)
	}
	if cp := f.stock.copies["lost-u1"]; cp == nil || cp.Status != flashsale.TicketSoldOut {
		t.Errorf("the refused ticket's copy: %+v, want sold_out", cp)
	}
}

// Once a claim answered sold_out, this node answers the sale's next purchases
// from memory for a short time: no claim, one read of the user's live ticket
// and units. A user with a live ticket there still gets it (200), one at the
// limit still limit_reached; past the memory's time, the claim decides again.
func TestSoldOutIsRememberedBriefly(t *testing.T) {
	f := newHandlerFixture(t, fakeLifecycle{})
	clock := time.Now()
	f.srv.cfg.Now = func() time.Time { return clock }
	claims := func() int {
		f.stock.mu.Lock()
		defer f.stock.mu.Unlock()
		return f.stock.claimCalls["gone"]
	}
	f.stock.mu.Lock()
	f.stock.live[[2]string{"gone", "holder"}] = "held-ticket"
	f.stock.copies["held-ticket"] = &flashsale.Ticket{ID: "held-ticket", UserID: "holder", SaleID: "gone", Quantity: 1, Status: flashsale.TicketPendingPayment}
	f.stock.units[[2]string{"gone", "limited"}] = 2
	f.stock.mu.Unlock()

	if code, out := f.do(t, "/api/v1/sales/gone/purchase", "u1", `{}`); code != http.StatusConflict || !strings.HasPrefix(errCode(out), "sold_out") {
		t.Fatalf("first purchase of a sold-out sale: %d %v", code, out)
	}
	if claims() != 1 {
		t.Fatalf("claims %d, want the first purchase's", claims())
	}
	clock = clock.Add(50 * time.Millisecond)
	if code, out := f.do(t, "/api/v1/sales/gone/purchase", "u2", `{}`); code != http.StatusConflict || !strings.HasPrefix(errCode(out), "sold_out") {
		t.Errorf("within the memory: %d %v, want 409 sold_out", code, out)
	}
	if code, out := f.do(t, "/api/v1/sales/gone/purchase", "limited", `{}`); code != http.StatusConflict || !strings.HasPrefix(errCode(out), "limit_reached") {
		t.Errorf("a user at the limit within the memory: %d %v, want 409 limit_reached", code, out)
	}
	if claims() != 1 {
		t.Errorf("claims %d within the memory, want none more", claims())
	}
	if code, out := f.do(t, "/api/v1/sales/gone/purchase", "holder", `{}`); code != http.StatusOK || out["ticket_id"] != "held-ticket" {
		t.Errorf("a user with a live ticket within the memory: %d %v, want 200 with it", code, out)
	}
	clock = clock.Add(100 * time.Millisecond)
	f.stock.mu.Lock()
	f.stock.available["gone"] = 1 // a unit came back
	f.stock.mu.Unlock()
	if code, out := f.do(t, "/api/v1/sales/gone/purchase", "u3", `{}`); code != http.StatusAccepted {
		t.Errorf("past the memory, a unit back: %d %v, want 202", code, out)
	}
}
