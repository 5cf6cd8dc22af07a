package bench

import (
	"bytes"
	"cmp"
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
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/flashsale/flashsale/api/apiclient"
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
	epDraw       endpoint = "draw"        // GET /sales/{id}/draw (--arrival waiting-room)
	epDrawScores endpoint = "draw_scores" // GET /sales/{id}/draw/scores
)

// followUp reports an endpoint a user calls once it holds a ticket (ticket polls,
// order reads, payments, cancellations), as opposed to the crowd's purchase and
// reservation attempts. Follow-ups go ahead of the crowd for a free connection.
func (ep endpoint) followUp() bool { return ep != epPurchase && ep != epPurchases && ep != epReserve }

// endpointOrder is the order endpoints are listed in reports.
var endpointOrder = []endpoint{epCreateSale, epGetSale, epReserve, epPurchase, epPurchases, epGetTicket, epTicketEvents, epGetOrder, epCancel, epPayment, epDraw, epDrawScores}

const (
	maxResponseBody = 1 << 20
	maxRetryAfter   = 30 * time.Second
	statusNetError  = "net_error"
)

// apiClient calls the contract's endpoints on one base URL through the client
// generated from the API's description (package api/apiclient). What is
// written here is what the bench adds to every exchange, in Do: a slot among
// the requests in flight (slotPool), the answer recorded for the statistics,
// and the answer checked against the description (apiChecks); and the payment
// signature, made over the exact bytes sent. It never follows redirects, so
// it only ever talks to that URL's host.
type apiClient struct {
	gen        *apiclient.ClientWithResponses
	hc         *http.Client
	adminToken string
	secret     string
	rec        *recorder  // nil: nothing recorded
	slots      *slotPool  // nil: no cap on in-flight requests
	checks     *apiChecks // nil: nothing checked
}

// newAPIClient builds a client with its own transport capped at conns connections.
// When limitInFlight is set, at most conns requests are in flight at once, follow-ups
// first (see slotPool).
func newAPIClient(cfg Config, rec *recorder, checks *apiChecks, conns int, limitInFlight bool) (*apiClient, error) {
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
		checks:     checks,
	}
	if limitInFlight {
		c.slots = newSlotPool(conns)
	}
	gen, err := apiclient.NewClientWithResponses(cfg.URL, apiclient.WithHTTPClient(c))
	if err != nil {
		return nil, fmt.Errorf("bench: a client of %s: %w", cfg.URL, err)
	}
	c.gen = gen
	return c, nil
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

// exchange is one call in the making: its endpoint (for the slots and the
// statistics) and, once Do has it, its answer.
type exchange struct {
	ep     endpoint
	answer *apiResponse
}

type exchangeKey struct{}

// on names the call made with the returned context ep, and gives where Do
// leaves its answer.
func on(ctx context.Context, ep endpoint) (context.Context, *exchange) {
	x := &exchange{ep: ep}
	return context.WithValue(ctx, exchangeKey{}, x), x
}

// Do sends one request of the generated client and reads its answer whole
// (at most maxResponseBody), recording and checking it. Transport errors are
// returned as errors; any HTTP status is an answer.
func (c *apiClient) Do(req *http.Request) (*http.Response, error) {
	ctx := req.Context()
	x, _ := ctx.Value(exchangeKey{}).(*exchange)
	if x == nil {
		return nil, errors.New("bench: a request made without on()")
	}
	if c.slots != nil {
		follow := x.ep.followUp()
		waitStart := time.Now()
		if err := c.slots.acquire(ctx, follow); err != nil {
			return nil, err
		}
		defer c.slots.release(follow)
		c.rec.slotWait(time.Since(waitStart), follow)
	}
	req.Header.Set("Accept", "application/json")
	req.Header.Set("User-Agent", "flashsale-bench")
	var sent []byte // the body as sent, for the check
	if req.GetBody != nil {
		if b, err := req.GetBody(); err == nil {
			sent, _ = io.ReadAll(b)
		}
	}

	start := time.Now()
	resp, err := c.hc.Do(req)
	if err != nil {
		if ctx.Err() == nil { // our own cancellation is not the server's fault
			c.rec.request(x.ep, start, time.Since(start), statusNetError)
		}
		return nil, err
	}
	data, err := io.ReadAll(io.LimitReader(resp.Body, maxResponseBody))
	_ = resp.Body.Close()
	latency := time.Since(start)
	if err != nil {
		if ctx.Err() == nil {
			c.rec.request(x.ep, start, latency, statusNetError)
		}
		return nil, err
	}
	resp.Body = io.NopCloser(bytes.NewReader(data)) // for the generated client to decode
	x.answer = answerOf(resp, data)
	c.rec.request(x.ep, start, latency, x.answer.key())
	c.checks.check(x.ep, x.answer.key(), req, sent, resp, data)
	return resp, nil
}

// answerOf reads what the bench needs of an answer: status, error code and
// message, Retry-After, Date.
func answerOf(resp *http.Response, body []byte) *apiResponse {
	r := &apiResponse{Status: resp.StatusCode, Body: body}
	if !r.ok() {
		var e apiclient.Error
		if json.Unmarshal(body, &e) == nil {
			r.Code, r.Message = string(e.Error.Code), e.Error.Message
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
	return r
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

// asUser identifies a user call (header mode: X-User-ID).
func asUser(user string) apiclient.RequestEditorFn {
	return func(_ context.Context, req *http.Request) error {
		req.Header.Set("X-User-ID", user)
		return nil
	}
}

// asAdmin carries the admin token.
func (c *apiClient) asAdmin(_ context.Context, req *http.Request) error {
	req.Header.Set("Authorization", "Bearer "+c.adminToken)
	return nil
}

// body is the value v of a call's declared body when it answered one (err
// nil and v set), else zero.
func body[T any](v *T) T {
	if v == nil {
		var zero T
		return zero
	}
	return *v
}

func (c *apiClient) createSale(ctx context.Context, s apiclient.SaleInput) (*apiResponse, error) {
	ctx, x := on(ctx, epCreateSale)
	_, err := c.gen.CreateSaleWithResponse(ctx, s, c.asAdmin)
	return x.answer, err
}

func (c *apiClient) getSale(ctx context.Context, id string) (apiclient.Sale, *apiResponse, error) {
	ctx, x := on(ctx, epGetSale)
	resp, err := c.gen.GetSaleWithResponse(ctx, id)
	if err != nil {
		return apiclient.Sale{}, x.answer, err
	}
	return body(resp.JSON200), x.answer, nil
}

func (c *apiClient) getDraw(ctx context.Context, saleID string) (apiclient.Draw, *apiResponse, error) {
	ctx, x := on(ctx, epDraw)
	resp, err := c.gen.GetDrawWithResponse(ctx, saleID)
	if err != nil {
		return apiclient.Draw{}, x.answer, err
	}
	return body(resp.JSON200), x.answer, nil
}

// getDrawScores reads one page of a draw's scores: those above after ("":
// from the start), at most limit.
func (c *apiClient) getDrawScores(ctx context.Context, saleID, after string, limit int) ([]string, *apiResponse, error) {
	ctx, x := on(ctx, epDrawScores)
	p := &apiclient.GetDrawScoresParams{Limit: &limit}
	if after != "" {
		p.After = &after
	}
	resp, err := c.gen.GetDrawScoresWithResponse(ctx, saleID, p)
	if err != nil || resp.JSON200 == nil {
		return nil, x.answer, err
	}
	return resp.JSON200.Scores, x.answer, nil
}

func (c *apiClient) reserve(ctx context.Context, saleID, user string) (*apiResponse, error) {
	ctx, x := on(ctx, epReserve)
	_, err := c.gen.ReserveWithResponse(ctx, saleID, apiclient.ReserveJSONRequestBody{}, asUser(user))
	return x.answer, err
}

func (c *apiClient) purchase(ctx context.Context, saleID, user string, quantity int) (apiclient.PurchaseAnswer, *apiResponse, error) {
	ctx, x := on(ctx, epPurchase)
	resp, err := c.gen.PurchaseWithResponse(ctx, saleID, apiclient.PurchaseInput{Quantity: &quantity}, asUser(user))
	if err != nil {
		return apiclient.PurchaseAnswer{}, x.answer, err
	}
	return body(cmp.Or(resp.JSON202, resp.JSON200)), x.answer, nil
}

// purchaseBundle posts POST /api/v1/purchases {"items": items}: one ticket for
// every item, all or nothing.
func (c *apiClient) purchaseBundle(ctx context.Context, user string, items []apiclient.BundleItem) (apiclient.PurchaseAnswer, *apiResponse, error) {
	ctx, x := on(ctx, epPurchases)
	resp, err := c.gen.PurchaseBundleWithResponse(ctx, apiclient.BundleInput{Items: items}, asUser(user))
	if err != nil {
		return apiclient.PurchaseAnswer{}, x.answer, err
	}
	return body(cmp.Or(resp.JSON202, resp.JSON200)), x.answer, nil
}

func (c *apiClient) getTicket(ctx context.Context, user, ticketID string) (apiclient.Ticket, *apiResponse, error) {
	ctx, x := on(ctx, epGetTicket)
	resp, err := c.gen.GetTicketWithResponse(ctx, ticketID, asUser(user))
	if err != nil {
		return apiclient.Ticket{}, x.answer, err
	}
	return body(resp.JSON200), x.answer, nil
}

func (c *apiClient) getOrder(ctx context.Context, user, orderID string) (apiclient.Order, *apiResponse, error) {
	ctx, x := on(ctx, epGetOrder)
	resp, err := c.gen.GetOrderWithResponse(ctx, orderID, asUser(user))
	if err != nil {
		return apiclient.Order{}, x.answer, err
	}
	return body(resp.JSON200), x.answer, nil
}

func (c *apiClient) cancelOrder(ctx context.Context, user, orderID string) (apiclient.Order, *apiResponse, error) {
	ctx, x := on(ctx, epCancel)
	resp, err := c.gen.CancelOrderWithResponse(ctx, orderID, asUser(user))
	if err != nil {
		return apiclient.Order{}, x.answer, err
	}
	return body(resp.JSON200), x.answer, nil
}

// pay posts a signed payment callback stamped with the unix time ts.
func (c *apiClient) pay(ctx context.Context, p apiclient.PaymentNotice, ts int64) (apiclient.PaymentAnswer, *apiResponse, error) {
	if c.secret == "" {
		return apiclient.PaymentAnswer{}, nil, errors.New("no payment secret")
	}
	raw, err := json.Marshal(p)
	if err != nil {
		return apiclient.PaymentAnswer{}, nil, err
	}
	ctx, x := on(ctx, epPayment)
	resp, err := c.gen.PaymentCallbackWithBodyWithResponse(ctx, &apiclient.PaymentCallbackParams{XFlashsaleSignature: SignPayment(c.secret, ts, raw)},
		"application/json", bytes.NewReader(raw))
	if err != nil {
		return apiclient.PaymentAnswer{}, x.answer, err
	}
	return body(resp.JSON200), x.answer, nil
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
