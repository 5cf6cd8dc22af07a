package bench

import (
	"bytes"
	"container/list"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"
)

// endpoint names one API operation in the statistics.
type endpoint string

const (
	epCreateSale endpoint = "create_sale"
	epGetSale    endpoint = "get_sale"
	epReserve    endpoint = "reserve"
	epPurchase   endpoint = "purchase"
	epPurchases  endpoint = "purchases" // POST /api/v1/purchases: a bundle
	epGetTicket  endpoint = "get_ticket"
	epGetOrder   endpoint = "get_order"
	epCancel     endpoint = "cancel"
	epPayment    endpoint = "payment"
)

// followUp reports an endpoint a user calls once it holds a ticket (ticket polls,
// order reads, payments, cancellations), as opposed to the crowd's purchase and
// reservation attempts. Follow-ups go ahead of the crowd for a free connection.
func (ep endpoint) followUp() bool { return ep != epPurchase && ep != epPurchases && ep != epReserve }

// endpointOrder is the order endpoints are listed in reports.
var endpointOrder = []endpoint{epCreateSale, epGetSale, epReserve, epPurchase, epPurchases, epGetTicket, epGetOrder, epCancel, epPayment}

const (
	maxResponseBody = 1 << 20
	maxRetryAfter   = 30 * time.Second
	statusNetError  = "net_error"
)

// apiClient calls the contract's endpoints on one base URL. It never follows
// redirects, so it only ever talks to that URL's host.
type apiClient struct {
	base       string
	hc         *http.Client
	adminToken string
	secret     string
	rec        *recorder // nil: nothing recorded
	slots      *slotPool // nil: no cap on in-flight requests
}

// newAPIClient builds a client with its own transport capped at conns connections.
// When limitInFlight is set, at most conns requests are in flight at once, follow-ups
// first (see slotPool).
func newAPIClient(cfg Config, rec *recorder, conns int, limitInFlight bool) *apiClient {
	tr := &http.Transport{
		Proxy:                 nil, // the bench only talks to --url, never through a proxy
		DialContext:           (&net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		MaxConnsPerHost:       conns,
		MaxIdleConns:          conns,
		MaxIdleConnsPerHost:   conns,
		IdleConnTimeout:       90 * time.Second,
		TLSHandshakeTimeout:   5 * time.Second,
		ResponseHeaderTimeout: cfg.requestTimeout,
	}
	c := &apiClient{
		base: cfg.URL,
		hc: &http.Client{
			Transport: tr,
			Timeout:   cfg.requestTimeout,
			CheckRedirect: func(*http.Request, []*http.Request) error {
				return http.ErrUseLastResponse
			},
		},
		adminToken: cfg.AdminToken,
		secret:     cfg.PaymentSecret,
		rec:        rec,
	}
	if limitInFlight {
		c.slots = newSlotPool(conns)
	}
	return c
}

// slotPool caps the requests in flight. Two classes wait for a slot: follow-ups
// (users who already hold a ticket: polls, order reads, payments, cancellations) and
// the crowd (purchase and reservation attempts, which after a 429 come back by the
// thousands). A freed slot goes to the oldest waiting follow-up while fewer than
// followCap follow-ups are in flight, else to the oldest waiting crowd request, so
// that ticket polls are never starved behind the 429 retry storm and the crowd
// always keeps at least n - followCap slots. Within a class, waiters are served in
// arrival order.
type slotPool struct {
	mu        sync.Mutex
	free      int
	followCap int
	followIn  int
	follow    list.List // of *slotWaiter
	crowd     list.List
}

type slotWaiter struct {
	ch      chan struct{} // receives the slot (buffered: the grant never blocks)
	follow  bool
	granted bool
	elem    *list.Element
}

// newSlotPool returns a pool of n slots of which follow-ups take at most half
// ahead of the crowd (all of them when nobody else waits).
func newSlotPool(n int) *slotPool {
	return &slotPool{free: n, followCap: max(1, n/2)}
}

// enqueue registers a waiter and hands out what slots are free.
func (s *slotPool) enqueue(follow bool) *slotWaiter {
	w := &slotWaiter{ch: make(chan struct{}, 1), follow: follow}
	s.mu.Lock()
	if follow {
		w.elem = s.follow.PushBack(w)
	} else {
		w.elem = s.crowd.PushBack(w)
	}
	s.dispatchLocked()
	s.mu.Unlock()
	return w
}

// acquire waits for a slot of the given class; it returns ctx's error if ctx ends
// first (holding no slot then).
func (s *slotPool) acquire(ctx context.Context, follow bool) error {
	w := s.enqueue(follow)
	select {
	case <-w.ch:
		return nil
	case <-ctx.Done():
	}
	s.mu.Lock()
	if w.granted { // granted while ctx ended: hand the slot on
		s.releaseLocked(follow)
	} else if follow {
		s.follow.Remove(w.elem)
	} else {
		s.crowd.Remove(w.elem)
	}
	s.mu.Unlock()
	return ctx.Err()
}

// release gives back a slot taken by acquire.
func (s *slotPool) release(follow bool) {
	s.mu.Lock()
	s.releaseLocked(follow)
	s.mu.Unlock()
}

func (s *slotPool) releaseLocked(follow bool) {
	s.free++
	if follow {
		s.followIn--
	}
	s.dispatchLocked()
}

// dispatchLocked grants free slots to waiters, follow-ups first within their share.
func (s *slotPool) dispatchLocked() {
	for s.free > 0 {
		var q *list.List
		switch {
		case s.follow.Len() > 0 && (s.followIn < s.followCap || s.crowd.Len() == 0):
			q = &s.follow
		case s.crowd.Len() > 0:
			q = &s.crowd
		default:
			return
		}
		w := q.Remove(q.Front()).(*slotWaiter)
		w.granted = true
		s.free--
		if w.follow {
			s.followIn++
		}
		w.ch <- struct{}{}
	}
}

// close releases idle connections.
func (c *apiClient) close() { c.hc.CloseIdleConnections() }

// apiResponse is a completed HTTP exchange.
type apiResponse struct {
	Status        int
	Code          string // the error code of a 4xx/5xx body, if any
	Message       string
	RetryAfter    time.Duration
	HasRetryAfter bool
	Date          time.Time // the Date header, if any
	Body          []byte
}

// ok reports a 2xx status.
func (r *apiResponse) ok() bool { return r.Status >= 200 && r.Status < 300 }

// key is the status-mix key: "202", or "409 sold_out" for errors with a code.
func (r *apiResponse) key() string {
	if r.Code != "" && !r.ok() {
		return strconv.Itoa(r.Status) + " " + r.Code
	}
	return strconv.Itoa(r.Status)
}

// retryable reports a status worth retrying with backoff (5xx and 429).
func (r *apiResponse) retryable() bool {
	return r.Status >= 500 || r.Status == http.StatusTooManyRequests
}

type errorEnvelope struct {
	Error struct {
		Code    string `json:"code"`
		Message string `json:"message"`
	} `json:"error"`
}

// do sends one request and reads its response. Transport errors are returned as
// errors; any HTTP status is a response.
func (c *apiClient) do(ctx context.Context, ep endpoint, method, path string, body []byte, hdr http.Header) (*apiResponse, error) {
	if c.slots != nil {
		follow := ep.followUp()
		waitStart := time.Now()
		if err := c.slots.acquire(ctx, follow); err != nil {
			return nil, err
		}
		defer c.slots.release(follow)
		c.rec.slotWait(time.Since(waitStart), follow)
	}
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, rd)
	if err != nil {
		return nil, err
	}
	for k, vs := range hdr {
		req.Header[k] = vs
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	req.Header.Set("Accept", "application/json")
	req.Header.Set("User-Agent", "flashsale-bench")

	start := time.Now()
	resp, err := c.hc.Do(req)
	if err != nil {
		if ctx.Err() == nil { // our own cancellation is not the server's fault
			c.rec.request(ep, start, time.Since(start), statusNetError)
		}
		return nil, err
	}
	data, err := io.ReadAll(io.LimitReader(resp.Body, maxResponseBody))
	_ = resp.Body.Close()
	latency := time.Since(start)
	if err != nil {
		if ctx.Err() == nil {
			c.rec.request(ep, start, latency, statusNetError)
		}
		return nil, err
	}
	r := &apiResponse{Status: resp.StatusCode, Body: data}
	if !r.ok() {
		var env errorEnvelope
		if json.Unmarshal(data, &env) == nil {
			r.Code, r.Message = env.Error.Code, env.Error.Message
		}
	}
	if ra := resp.Header.Get("Retry-After"); ra != "" {
		r.RetryAfter, r.HasRetryAfter = parseRetryAfter(ra, time.Now())
	}
	if d := resp.Header.Get("Date"); d != "" {
		if t, err := http.ParseTime(d); err == nil {
			r.Date = t
		}
	}
	c.rec.request(ep, start, latency, r.key())
	return r, nil
}

// parseRetryAfter reads a Retry-After value: delay seconds (integer, or a decimal
// for sub-second windows) or an HTTP date. The result is capped at maxRetryAfter.
func parseRetryAfter(v string, now time.Time) (time.Duration, bool) {
	v = strings.TrimSpace(v)
	if secs, err := strconv.ParseFloat(v, 64); err == nil {
		if secs < 0 || secs != secs {
			return 0, false
		}
		d := time.Duration(secs * float64(time.Second))
		if secs > maxRetryAfter.Seconds() {
			d = maxRetryAfter
		}
		return d, true
	}
	if t, err := http.ParseTime(v); err == nil {
		d := max(t.Sub(now), 0)
		return min(d, maxRetryAfter), true
	}
	return 0, false
}

func (c *apiClient) userHeader(user string) http.Header {
	return http.Header{"X-User-Id": {user}}
}

// decode unmarshals a 2xx body into v.
func decode(r *apiResponse, v any) error {
	if err := json.Unmarshal(r.Body, v); err != nil {
		return fmt.Errorf("decoding %d response: %w", r.Status, err)
	}
	return nil
}

// saleRequest is the body of POST /api/v1/sales.
type saleRequest struct {
	ID                   string              `json:"id"`
	SKU                  string              `json:"sku"`
	Name                 string              `json:"name"`
	Stock                int                 `json:"stock"`
	PriceCents           int64               `json:"price_cents"`
	PerUserLimit         int                 `json:"per_user_limit"`
	StartsAt             string              `json:"starts_at"`
	EndsAt               string              `json:"ends_at"`
	PaymentWindowSeconds int                 `json:"payment_window_seconds"`
	Reservation          *reservationRequest `json:"reservation"`
	Inventory            string              `json:"inventory"`
}

type reservationRequest struct {
	OpensAt  string `json:"opens_at"`
	ClosesAt string `json:"closes_at"`
	Capacity int    `json:"capacity"`
}

// stockView is the "stock" object of a sale. It also accepts a bare number (the
// total), in case a response echoes the creation request.
type stockView struct {
	Total     int64 `json:"total"`
	Available int64 `json:"available"`
	Held      int64 `json:"held"`
	Sold      int64 `json:"sold"`
}

// UnmarshalJSON accepts an object or a number.
func (s *stockView) UnmarshalJSON(b []byte) error {
	if n, err := strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64); err == nil {
		*s = stockView{Total: n}
		return nil
	}
	type plain stockView
	return json.Unmarshal(b, (*plain)(s))
}

// saleView is the answer of GET /api/v1/sales/{id}.
type saleView struct {
	ID           string    `json:"id"`
	State        string    `json:"state"`
	ServerTime   string    `json:"server_time"`
	StartsAt     string    `json:"starts_at"`
	PerUserLimit int       `json:"per_user_limit"`
	PriceCents   int64     `json:"price_cents"`
	Stock        stockView `json:"stock"`
	Reservations *int64    `json:"reservations"`
}

// ticketView is a ticket as returned by purchase and GET /api/v1/tickets/{id}.
type ticketView struct {
	TicketID string     `json:"ticket_id"`
	SaleID   string     `json:"sale_id"`
	Quantity int        `json:"quantity"`
	Status   string     `json:"status"`
	OrderID  string     `json:"order_id"`
	PayBy    string     `json:"pay_by"`
	Items    []itemView `json:"items"`
}

// itemView is one item of a bundle purchase, ticket or order ({"sale_id",
// "quantity"}; orders add "amount_cents" and "returned").
type itemView struct {
	SaleID      string `json:"sale_id"`
	Quantity    int    `json:"quantity"`
	AmountCents int64  `json:"amount_cents,omitempty"`
	Returned    int    `json:"returned,omitempty"`
}

// orderView is GET /api/v1/orders/{id} and the cancel answer.
type orderView struct {
	OrderID     string     `json:"order_id"`
	SaleID      string     `json:"sale_id"`
	UserID      string     `json:"user_id"`
	Quantity    int        `json:"quantity"`
	AmountCents int64      `json:"amount_cents"`
	Status      string     `json:"status"`
	CreatedAt   string     `json:"created_at"`
	PayBy       string     `json:"pay_by"`
	Items       []itemView `json:"items"`
}

// paymentCallback is the body the payment provider posts.
type paymentCallback struct {
	PaymentID   string `json:"payment_id"`
	OrderID     string `json:"order_id"`
	AmountCents int64  `json:"amount_cents"`
	Status      string `json:"status"`
}

type paymentAnswer struct {
	OrderID string `json:"order_id"`
	Status  string `json:"status"`
}

func (c *apiClient) createSale(ctx context.Context, s saleRequest) (*apiResponse, error) {
	body, err := json.Marshal(s)
	if err != nil {
		return nil, err
	}
	return c.do(ctx, epCreateSale, http.MethodPost, "/api/v1/sales", body,
		http.Header{"Authorization": {"Bearer " + c.adminToken}})
}

func (c *apiClient) getSale(ctx context.Context, id string) (saleView, *apiResponse, error) {
	var v saleView
	r, err := c.do(ctx, epGetSale, http.MethodGet, "/api/v1/sales/"+url.PathEscape(id), nil, nil)
	if err == nil && r.Status == http.StatusOK {
		err = decode(r, &v)
	}
	return v, r, err
}

func (c *apiClient) reserve(ctx context.Context, saleID, user string) (*apiResponse, error) {
	return c.do(ctx, epReserve, http.MethodPost, "/api/v1/sales/"+url.PathEscape(saleID)+"/reservations", []byte("{}"), c.userHeader(user))
}

func (c *apiClient) purchase(ctx context.Context, saleID, user string, quantity int) (ticketView, *apiResponse, error) {
	var v ticketView
	body := []byte(fmt.Sprintf(`{"quantity":%d}`, quantity))
	r, err := c.do(ctx, epPurchase, http.MethodPost, "/api/v1/sales/"+url.PathEscape(saleID)+"/purchase", body, c.userHeader(user))
	if err == nil && (r.Status == http.StatusAccepted || r.Status == http.StatusOK) {
		err = decode(r, &v)
	}
	return v, r, err
}

// purchaseBundle posts POST /api/v1/purchases {"items": items}: one ticket for
// every item, all or nothing.
func (c *apiClient) purchaseBundle(ctx context.Context, user string, items []itemView) (ticketView, *apiResponse, error) {
	var v ticketView
	type item struct {
		SaleID   string `json:"sale_id"`
		Quantity int    `json:"quantity"`
	}
	req := struct {
		Items []item `json:"items"`
	}{}
	for _, it := range items {
		req.Items = append(req.Items, item{it.SaleID, it.Quantity})
	}
	body, err := json.Marshal(req)
	if err != nil {
		return v, nil, err
	}
	r, err := c.do(ctx, epPurchases, http.MethodPost, "/api/v1/purchases", body, c.userHeader(user))
	if err == nil && (r.Status == http.StatusAccepted || r.Status == http.StatusOK) {
		err = decode(r, &v)
	}
	return v, r, err
}

func (c *apiClient) getTicket(ctx context.Context, user, ticketID string) (ticketView, *apiResponse, error) {
	var v ticketView
	r, err := c.do(ctx, epGetTicket, http.MethodGet, "/api/v1/tickets/"+url.PathEscape(ticketID), nil, c.userHeader(user))
	if err == nil && r.Status == http.StatusOK {
		err = decode(r, &v)
	}
	return v, r, err
}

func (c *apiClient) getOrder(ctx context.Context, user, orderID string) (orderView, *apiResponse, error) {
	var v orderView
	r, err := c.do(ctx, epGetOrder, http.MethodGet, "/api/v1/orders/"+url.PathEscape(orderID), nil, c.userHeader(user))
	if err == nil && r.Status == http.StatusOK {
		err = decode(r, &v)
	}
	return v, r, err
}

func (c *apiClient) cancelOrder(ctx context.Context, user, orderID string) (orderView, *apiResponse, error) {
	var v orderView
	r, err := c.do(ctx, epCancel, http.MethodPost, "/api/v1/orders/"+url.PathEscape(orderID)+"/cancel", []byte("{}"), c.userHeader(user))
	if err == nil && r.Status == http.StatusOK {
		err = decode(r, &v)
	}
	return v, r, err
}

// pay posts a signed payment callback stamped with the unix time ts.
func (c *apiClient) pay(ctx context.Context, p paymentCallback, ts int64) (paymentAnswer, *apiResponse, error) {
	var v paymentAnswer
	if c.secret == "" {
		return v, nil, errors.New("no payment secret")
	}
	body, err := json.Marshal(p)
	if err != nil {
		return v, nil, err
	}
	hdr := http.Header{"X-Flashsale-Signature": {SignPayment(c.secret, ts, body)}}
	r, err := c.do(ctx, epPayment, http.MethodPost, "/api/v1/payments/callback", body, hdr)
	if err == nil && r.Status == http.StatusOK {
		err = decode(r, &v)
	}
	return v, r, err
}

// SignPayment returns the X-Flashsale-Signature header value for a payment callback
// body signed with secret at unix time ts:
//
//	t=<ts>,v1=<hex HMAC-SHA256(secret, "<ts>.<body>")>
func SignPayment(secret string, ts int64, body []byte) string {
	mac := hmac.New(sha256.New, []byte(secret))
	t := strconv.FormatInt(ts, 10)
	mac.Write([]byte(t))
	mac.Write([]byte{'.'})
	mac.Write(body)
	return "t=" + t + ",v1=" + hex.EncodeToString(mac.Sum(nil))
}
