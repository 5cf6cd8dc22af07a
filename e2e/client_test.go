package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"
)

// client talks to one process's HTTP API. Safe for concurrent use; its
// transport keeps many idle connections so that load tests reuse them.
type client struct {
	base       string
	adminToken string
	hc         *http.Client
	// bearer, when set, makes a JWT for a user id: every request that names a
	// user with X-User-ID also carries "Authorization: Bearer <JWT>" (jwt
	// mode, see withJWT).
	bearer func(userID string) string
	// api, when set, checks every exchange against the API's description
	// (see checkedClient); nil for a client of another server (Prometheus).
	api *apiChecks
}

// withJWT returns a client of the same process (sharing connections) that
// identifies users with the JWTs sign makes, for FLASHSALE_USER_AUTH=jwt.
func (c *client) withJWT(sign func(userID string) string) *client {
	cc := *c
	cc.bearer = sign
	return &cc
}

func newClient(base, adminToken string) *client {
	tr := &http.Transport{
		DialContext:         (&net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		MaxIdleConns:        4096,
		MaxIdleConnsPerHost: 4096,
		MaxConnsPerHost:     1024,
		IdleConnTimeout:     60 * time.Second,
	}
	return &client{base: base, adminToken: adminToken, hc: &http.Client{Transport: tr, Timeout: 30 * time.Second}}
}

// reply is one HTTP answer.
type reply struct {
	Status int
	Header http.Header
	Body   []byte
}

func (r reply) String() string {
	b := string(r.Body)
	if len(b) > 300 {
		b = b[:300] + "..."
	}
	return fmt.Sprintf("%d %s", r.Status, strings.TrimSpace(b))
}

func (r reply) decode(v any) error {
	if err := json.Unmarshal(r.Body, v); err != nil {
		return fmt.Errorf("decode %T from %s: %w", v, r, err)
	}
	return nil
}

// apiError is the contract's one error shape.
type apiError struct {
	Error *struct {
		Code    string `json:"code"`
		Message string `json:"message"`
	} `json:"error"`
}

// errCode returns the error code of an error reply, "" if the body does not
// have the contract's error shape.
func (r reply) errCode() string {
	var e apiError
	if json.Unmarshal(r.Body, &e) != nil || e.Error == nil {
		return ""
	}
	return e.Error.Code
}

// checkError asserts status, the error shape with a non-empty message and the
// code.
func checkError(t *testing.T, what string, r reply, status int, code string) {
	t.Helper()
	if r.Status != status {
		t.Errorf("%s: got %s, want %d %s", what, r, status, code)
		return
	}
	var e apiError
	if err := json.Unmarshal(r.Body, &e); err != nil || e.Error == nil {
		t.Errorf("%s: body %q is not {\"error\":{\"code\",\"message\"}}", what, r.Body)
		return
	}
	if e.Error.Code != code {
		t.Errorf("%s: code %q, want %q (%s)", what, e.Error.Code, code, r)
	}
	if strings.TrimSpace(e.Error.Message) == "" {
		t.Errorf("%s: empty error message (%s)", what, r)
	}
}

type hdr = map[string]string

// send does one request. body: nil (none), []byte or string (raw), anything
// else (JSON).
func (c *client) send(ctx context.Context, method, path string, headers hdr, body any) (reply, error) {
	var rd io.Reader
	switch b := body.(type) {
	case nil:
	case []byte:
		rd = bytes.NewReader(b)
	case string:
		rd = strings.NewReader(b)
	default:
		j, err := json.Marshal(b)
		if err != nil {
			return reply{}, err
		}
		rd = bytes.NewReader(j)
	}
	var raw []byte // the body as sent, for the description's check
	if rd != nil {
		raw, _ = io.ReadAll(rd)
		rd = bytes.NewReader(raw)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, rd)
	if err != nil {
		return reply{}, err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	for k, v := range headers {
		req.Header[http.CanonicalHeaderKey(k)] = []string{v}
	}
	if u := req.Header.Get("X-User-ID"); c.bearer != nil && u != "" && req.Header.Get("Authorization") == "" {
		req.Header.Set("Authorization", "Bearer "+c.bearer(u))
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		return reply{}, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return reply{}, err
	}
	if c.api != nil {
		c.api.check(req, raw, resp, b)
	}
	return reply{Status: resp.StatusCode, Header: resp.Header, Body: b}, nil
}

// must is send that fails the test on a transport error. Test goroutine only.
func (c *client) must(t *testing.T, method, path string, headers hdr, body any) reply {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	r, err := c.send(ctx, method, path, headers, body)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	return r
}

func user(id string) hdr { return hdr{"X-User-ID": id} }

func (c *client) admin() hdr { return hdr{"Authorization": "Bearer " + c.adminToken} }

func pathSale(id string) string     { return "/api/v1/sales/" + url.PathEscape(id) }
func pathPurchase(id string) string { return pathSale(id) + "/purchase" }
func pathTicket(id string) string   { return "/api/v1/tickets/" + url.PathEscape(id) }
func pathOrder(id string) string    { return "/api/v1/orders/" + url.PathEscape(id) }

// purchase sends POST /sales/{id}/purchase {"quantity": qty} as user.
func (c *client) purchase(ctx context.Context, saleID, userID string, qty int) (reply, error) {
	return c.send(ctx, http.MethodPost, pathPurchase(saleID), user(userID), map[string]int{"quantity": qty})
}

// saleSpec is the body of POST /api/v1/sales.
type saleSpec struct {
	ID                   string    `json:"id,omitempty"`
	SKU                  string    `json:"sku"`
	Name                 string    `json:"name"`
	Stock                int       `json:"stock"`
	PriceCents           int64     `json:"price_cents"`
	PerUserLimit         int       `json:"per_user_limit,omitempty"`
	StartsAt             time.Time `json:"starts_at"`
	EndsAt               time.Time `json:"ends_at"`
	PaymentWindowSeconds int       `json:"payment_window_seconds,omitempty"`
	Inventory            string    `json:"inventory,omitempty"`
}

// openSale is a sale that started a minute ago and ends in an hour.
func openSale(stock, perUserLimit int, price int64) saleSpec {
	now := time.Now().UTC()
	return saleSpec{
		ID:           "sale-" + randHex(4),
		SKU:          "SKU-" + randHex(3),
		Name:         "e2e flash sale",
		Stock:        stock,
		PriceCents:   price,
		PerUserLimit: perUserLimit,
		StartsAt:     now.Add(-time.Minute).Truncate(time.Second),
		EndsAt:       now.Add(time.Hour).Truncate(time.Second),
	}
}

// createSale creates the sale and returns its id; anything but 201 fails the
// test.
func (c *client) createSale(t *testing.T, s saleSpec) string {
	t.Helper()
	r := c.must(t, http.MethodPost, "/api/v1/sales", c.admin(), s)
	if r.Status != http.StatusCreated {
		t.Fatalf("create sale %+v: %s", s, r)
	}
	var got struct {
		ID string `json:"id"`
	}
	if err := r.decode(&got); err != nil {
		t.Fatal(err)
	}
	if s.ID != "" && got.ID != s.ID {
		t.Fatalf("create sale: id %q, want %q", got.ID, s.ID)
	}
	if got.ID == "" {
		t.Fatalf("create sale: no id in %s", r)
	}
	return got.ID
}

type stockView struct {
	Total     int `json:"total"`
	Available int `json:"available"`
	Held      int `json:"held"`
	Sold      int `json:"sold"`
}

type saleView struct {
	ID           string    `json:"id"`
	State        string    `json:"state"`
	ServerTime   time.Time `json:"server_time"`
	PerUserLimit int       `json:"per_user_limit"`
	Stock        stockView `json:"stock"`
}

// sale reads GET /sales/{id} and asserts available+held+sold == total. A 503
// (the stock cannot be read right now: Redis away, or a rebuild from MySQL
// outlasting the request's deadline on a busy box) is retried for up to 10 s,
// as a client would; the view it then gets is checked like any other.
func (c *client) sale(t *testing.T, id string) saleView {
	t.Helper()
	var r reply
	poll(10*time.Second, 50*time.Millisecond, func() bool {
		r = c.must(t, http.MethodGet, pathSale(id), nil, nil)
		return r.Status != http.StatusServiceUnavailable
	})
	if r.Status != http.StatusOK {
		t.Fatalf("GET sale %s: %s", id, r)
	}
	var v saleView
	if err := r.decode(&v); err != nil {
		t.Fatal(err)
	}
	if s := v.Stock; s.Available+s.Held+s.Sold != s.Total {
		t.Errorf("sale %s: available %d + held %d + sold %d != total %d", id, s.Available, s.Held, s.Sold, s.Total)
	}
	if s := v.Stock; s.Available < 0 || s.Held < 0 || s.Sold < 0 {
		t.Errorf("sale %s: negative stock counter %+v", id, s)
	}
	return v
}

// ticketRef is a ticket a purchase answered, with its owner.
type ticketRef struct {
	User     string
	TicketID string
}

type purchaseAnswer struct {
	TicketID string `json:"ticket_id"`
	Status   string `json:"status"`
}

type ticketView struct {
	TicketID string     `json:"ticket_id"`
	SaleID   string     `json:"sale_id"`
	Quantity int        `json:"quantity"`
	Status   string     `json:"status"`
	OrderID  string     `json:"order_id"`
	PayBy    *time.Time `json:"pay_by"`
}

type orderView struct {
	OrderID     string     `json:"order_id"`
	SaleID      string     `json:"sale_id"`
	UserID      string     `json:"user_id"`
	Quantity    int        `json:"quantity"`
	AmountCents int64      `json:"amount_cents"`
	Status      string     `json:"status"`
	CreatedAt   time.Time  `json:"created_at"`
	PayBy       *time.Time `json:"pay_by"`
	PaidAt      *time.Time `json:"paid_at"`
	PaymentID   *string    `json:"payment_id"`
}

// finalTicket reports whether a ticket status ends the purchase flow
// (pending_payment is final for a purchase: the order exists).
func finalTicket(status string) bool {
	switch status {
	case "pending_payment", "paid", "expired", "cancelled", "sold_out", "failed":
		return true
	}
	return false
}

var ticketStatuses = map[string]bool{
	"waiting": true, "queued": true, "pending_payment": true, "paid": true, "expired": true,
	"cancelled": true, "sold_out": true, "failed": true,
}

// readAll GETs one resource per item as its owner (16 at a time) and returns
// the views of those that answered 200, keyed by id, plus a description of the
// first failures. what(item) gives the resource's kind, id, path and owner.
func readAll[I, V any](c *client, items []I, what func(I) (kind, id, path, owner string)) (map[string]V, []string) {
	out := make(map[string]V, len(items))
	var problems []string
	var mu sync.Mutex
	work := make(chan I)
	var wg sync.WaitGroup
	for range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for it := range work {
				kind, id, path, owner := what(it)
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				r, err := c.send(ctx, http.MethodGet, path, user(owner), nil)
				cancel()
				var v V
				if err == nil && r.Status == http.StatusOK {
					err = r.decode(&v)
				} else if err == nil {
					err = fmt.Errorf("%s", r)
				}
				mu.Lock()
				if err != nil {
					if len(problems) < 5 {
						problems = append(problems, fmt.Sprintf("%s %s of %s: %v", kind, id, owner, err))
					}
				} else {
					out[id] = v
				}
				mu.Unlock()
			}
		}()
	}
	for _, it := range items {
		work <- it
	}
	close(work)
	wg.Wait()
	return out, problems
}

// ticketStates reads every ticket once; see readAll.
func (c *client) ticketStates(refs []ticketRef) (map[string]ticketView, []string) {
	return readAll[ticketRef, ticketView](c, refs, func(r ticketRef) (string, string, string, string) {
		return "ticket", r.TicketID, pathTicket(r.TicketID), r.User
	})
}

// awaitFinal polls the tickets until every one has a final status and
// returns their last views. It fails the test when the deadline passes.
func (c *client) awaitFinal(t *testing.T, refs []ticketRef, timeout time.Duration) map[string]ticketView {
	t.Helper()
	final, left, counts, problems := awaitViews(timeout, refs, c.ticketStates, func(ref ticketRef) string { return ref.TicketID },
		func(ref ticketRef, v ticketView, ok bool) bool {
			if ok && !ticketStatuses[v.Status] {
				t.Errorf("ticket %s: unknown status %q", ref.TicketID, v.Status)
			}
			if ok && v.TicketID != ref.TicketID {
				t.Errorf("ticket %s: view names ticket_id %q", ref.TicketID, v.TicketID)
			}
			return ok && finalTicket(v.Status)
		}, func(v ticketView) string { return v.Status })
	if len(left) > 0 {
		t.Fatalf("%d of %d accepted tickets not final after %s: %v; first problems: %v; e.g. ticket %s of %s",
			len(left), len(refs), timeout, counts, problems, left[0].TicketID, left[0].User)
	}
	return final
}

// tally counts outcomes of concurrent requests and keeps a few examples of
// each, to report unexpected ones without flooding the log.
type tally struct {
	mu       sync.Mutex
	counts   map[string]int
	examples map[string][]string
}

func newTally() *tally { return &tally{counts: map[string]int{}, examples: map[string][]string{}} }

func (ta *tally) add(kind, example string) {
	ta.mu.Lock()
	defer ta.mu.Unlock()
	ta.counts[kind]++
	if len(ta.examples[kind]) < 3 {
		ta.examples[kind] = append(ta.examples[kind], example)
	}
}

func (ta *tally) get(kind string) int {
	ta.mu.Lock()
	defer ta.mu.Unlock()
	return ta.counts[kind]
}

// total is the number of outcomes counted.
func (ta *tally) total() int {
	ta.mu.Lock()
	defer ta.mu.Unlock()
	n := 0
	for _, c := range ta.counts {
		n += c
	}
	return n
}

// only fails the test if any outcome outside allowed happened.
func (ta *tally) only(t *testing.T, allowed ...string) {
	t.Helper()
	ta.mu.Lock()
	defer ta.mu.Unlock()
	ok := map[string]bool{}
	for _, a := range allowed {
		ok[a] = true
	}
	for kind, n := range ta.counts {
		if !ok[kind] {
			t.Errorf("%d unexpected answers %q, e.g. %v", n, kind, ta.examples[kind])
		}
	}
}

func (ta *tally) String() string {
	ta.mu.Lock()
	defer ta.mu.Unlock()
	return fmt.Sprint(ta.counts)
}

// outcome names an answer for a tally: "202", "409 sold_out", ...
func outcome(r reply, err error) string {
	if err != nil {
		return "transport error"
	}
	if code := r.errCode(); code != "" {
		return fmt.Sprintf("%d %s", r.Status, code)
	}
	return fmt.Sprint(r.Status)
}
