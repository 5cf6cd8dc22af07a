package bench

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/flashsale/flashsale/api/apiclient"
)

// fakeServer is an in-memory stand-in for the contract's HTTP API, just enough for
// the bench (an HTTP client) to be exercised end to end in-process. Tickets resolve
// resolveAfter after they were queued; orders expire lazily at pay_by.
type fakeServer struct {
	token, secret string
	resolveAfter  time.Duration
	// oversell makes every queued ticket an order, stock or not (a broken server).
	oversell bool
	// admissionSlack is how many units beyond the available stock are admitted to
	// the queue (they end as sold_out tickets).
	admissionSlack int
	// halfBundles makes a bundle's order hold only its first item (a broken
	// server that is not all or nothing).
	halfBundles bool
	// drift adds a field the API's description does not have to every order
	// (a server whose answers drifted from it).
	drift bool
	// breakStreams ends every ticket event stream opened without
	// Last-Event-ID after its first event (follow_test.go).
	breakStreams bool
	// paused, when set and true, keeps every queued ticket queued (no worker
	// consumes: preload_test.go). lastPurchase is when the last purchase was
	// answered, firstTicketRead when a ticket was first read.
	paused func() bool
	// misdraw admits a waiting room's line from its back (a server that
	// does not honour its draw: waitroom_test.go).
	misdraw                       bool
	lastPurchase, firstTicketRead time.Time

	mu       sync.Mutex
	seq      int
	sales    map[string]*fakeSale
	tickets  map[string]*fakeTicket
	orders   map[string]*fakeOrder
	attempts map[string]int
	// bundleAttempts counts POST /api/v1/purchases requests.
	bundleAttempts int
	// outcomes counts single-sale purchase answers by sale and outcome, as the
	// server's flashsale_purchases_total does (bundles are not counted here).
	outcomes  map[string]map[string]int
	inventory []string // the "inventory" field of every created sale
}

type fakeSale struct {
	id, sku, name      string
	inventory          string
	created            time.Time
	stock, perUser     int
	price              int64
	startsAt, endsAt   time.Time
	window             time.Duration
	hasRes             bool
	resOpens, resClose time.Time
	reserved           map[string]time.Time
	queue              []*fakeTicket
	orders             []*fakeOrder
	// A waiting room (waitroom_test.go): its opening, waitlist and seed; line
	// holds the waiting tickets, in line order once drawn; scores are the
	// drawn tickets' (sorted).
	hasRoom   bool
	roomOpens time.Time
	waitlist  int
	seed      []byte
	line      []*fakeTicket
	drawn     bool
	scores    []string
}

type fakeTicket struct {
	id, sale, user string
	qty            int
	items          []fakeItem // a bundle: sale is the first item's; nil for one sale
	status         string
	order          *fakeOrder
	created        time.Time
}

type fakeItem struct {
	SaleID   string `json:"sale_id"`
	Quantity int    `json:"quantity"`
}

// inSale is the units the ticket asks for in the sale.
func (tk *fakeTicket) inSale(id string) int {
	if tk.items == nil {
		if tk.sale == id {
			return tk.qty
		}
		return 0
	}
	for _, it := range tk.items {
		if it.SaleID == id {
			return it.Quantity
		}
	}
	return 0
}

type fakeOrder struct {
	id, sale, user string
	qty            int
	items          []fakeItem // a multi-item order; nil for one sale
	amount         int64
	status         string
	created, payBy time.Time
	paymentID      string
}

// qtyIn is the units the order holds in the sale.
func (o *fakeOrder) qtyIn(id string) int {
	if o.items == nil {
		if o.sale == id {
			return o.qty
		}
		return 0
	}
	for _, it := range o.items {
		if it.SaleID == id {
			return it.Quantity
		}
	}
	return 0
}

var fakeUserRE = regexp.MustCompile(`^[A-Za-z0-9_-]{1,64}$`)

// fakeID is the n-th id the fake mints, in UUID form as the server's are.
func fakeID(n int) string { return fmt.Sprintf("00000000-0000-8000-8000-%012x", n) }

func newFakeServer(t *testing.T) (*fakeServer, *httptest.Server) {
	t.Helper()
	f := &fakeServer{
		token: "admintok", secret: "whsec_test", resolveAfter: 20 * time.Millisecond, admissionSlack: 2,
		sales: map[string]*fakeSale{}, tickets: map[string]*fakeTicket{}, orders: map[string]*fakeOrder{}, attempts: map[string]int{},
		outcomes: map[string]map[string]int{},
	}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /api/v1/sales", f.createSale)
	mux.HandleFunc("GET /api/v1/sales/{id}", f.getSale)
	mux.HandleFunc("POST /api/v1/sales/{id}/reservations", f.reserve)
	mux.HandleFunc("POST /api/v1/sales/{id}/purchase", f.countPurchase(f.purchase))
	mux.HandleFunc("POST /api/v1/purchases", f.purchaseBundle)
	mux.HandleFunc("GET /api/v1/tickets/{id}", f.getTicket)
	mux.HandleFunc("GET /api/v1/tickets/{id}/events", f.ticketEvents) // follow_test.go
	mux.HandleFunc("GET /api/v1/orders/{id}", f.getOrder)
	mux.HandleFunc("POST /api/v1/orders/{id}/cancel", f.cancel)
	mux.HandleFunc("POST /api/v1/payments/callback", f.payment)
	mux.HandleFunc("GET /metrics", f.metrics)
	mux.HandleFunc("GET /api/v1/sales/{id}/draw", f.getDraw)              // waitroom_test.go
	mux.HandleFunc("GET /api/v1/sales/{id}/draw/scores", f.getDrawScores) // waitroom_test.go
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return f, srv
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

func writeErr(w http.ResponseWriter, status int, code string) {
	writeJSON(w, status, map[string]any{"error": map[string]string{"code": code, "message": code}})
}

func ts(t time.Time) string { return t.UTC().Format(time.RFC3339Nano) }

// advanceLocked resolves due tickets (in queue order) and expires due orders.
func (f *fakeServer) advanceLocked(now time.Time) {
	for _, s := range f.sales {
		for _, o := range s.orders {
			if o.status == statusPendingPayment && !now.Before(o.payBy) {
				o.status = statusExpired
			}
		}
		if s.hasRoom {
			f.releaseLocked(s, now)
		}
		for len(s.queue) > 0 && !now.Before(s.queue[0].created.Add(f.resolveAfter)) && (f.paused == nil || !f.paused()) {
			tk := s.queue[0]
			s.queue = s.queue[1:]
			if tk.items != nil {
				f.resolveBundleLocked(tk, now)
				continue
			}
			avail, _, _ := s.stockLocked()
			if avail < tk.qty && !f.oversell {
				tk.status = statusSoldOut
				continue
			}
			f.seq++
			// Created when the ticket was due, not when the fake noticed: distinct,
			// increasing times, as a real worker would stamp them.
			o := &fakeOrder{id: fakeID(f.seq), sale: s.id, user: tk.user, qty: tk.qty,
				amount: s.price * int64(tk.qty), status: statusPendingPayment,
				created: tk.created.Add(f.resolveAfter), payBy: now.Add(s.window)}
			s.orders = append(s.orders, o)
			f.orders[o.id] = o
			tk.order = o
		}
	}
}

// resolveBundleLocked makes a bundle ticket's order when every item has its
// units (all of it), or sells the ticket out (none of it). The payment window is
// the shortest of the sales'.
func (f *fakeServer) resolveBundleLocked(tk *fakeTicket, now time.Time) {
	var window time.Duration
	var amount int64
	for i, it := range tk.items {
		s := f.sales[it.SaleID]
		if avail, _, _ := s.stockLocked(); avail < it.Quantity && !f.oversell {
			tk.status = statusSoldOut
			return
		}
		if i == 0 || s.window < window {
			window = s.window
		}
		amount += s.price * int64(it.Quantity)
	}
	items := tk.items
	if f.halfBundles {
		items = items[:1]
	}
	f.seq++
	o := &fakeOrder{id: fakeID(f.seq), user: tk.user, items: append([]fakeItem(nil), items...),
		amount: amount, status: statusPendingPayment, created: tk.created.Add(f.resolveAfter), payBy: now.Add(window)}
	for _, it := range items {
		s := f.sales[it.SaleID]
		s.orders = append(s.orders, o)
	}
	f.orders[o.id] = o
	tk.order = o
}

func (s *fakeSale) stockLocked() (avail, held, sold int) {
	for _, o := range s.orders {
		switch o.status {
		case statusPendingPayment:
			held += o.qtyIn(s.id)
		case statusPaid:
			sold += o.qtyIn(s.id)
		}
	}
	return s.stock - held - sold, held, sold
}

func (tk *fakeTicket) view() map[string]any {
	v := map[string]any{"ticket_id": tk.id, "sale_id": tk.sale, "quantity": tk.qty, "status": tk.status,
		"items": []fakeItem{{SaleID: tk.sale, Quantity: tk.qty}}}
	if tk.items != nil {
		v = map[string]any{"ticket_id": tk.id, "items": tk.items, "status": tk.status}
	}
	if o := tk.order; o != nil {
		v["status"] = o.status
		v["order_id"] = o.id
		if o.status == statusPendingPayment {
			v["pay_by"] = ts(o.payBy)
		}
	}
	return v
}

func (f *fakeServer) orderView(o *fakeOrder) map[string]any {
	v := map[string]any{"order_id": o.id, "user_id": o.user,
		"amount_cents": o.amount, "status": o.status, "created_at": ts(o.created), "pay_by": ts(o.payBy), "payment_id": nil, "paid_at": nil}
	if o.paymentID != "" {
		v["payment_id"], v["paid_at"] = o.paymentID, ts(o.payBy.Add(-time.Second))
	}
	if f.drift {
		v["discount_cents"] = 0
	}
	if o.items == nil {
		v["sale_id"], v["quantity"] = o.sale, o.qty
		v["items"] = []map[string]any{{"sale_id": o.sale, "quantity": o.qty, "amount_cents": o.amount, "returned": 0}}
		return v
	}
	var items []map[string]any
	for _, it := range o.items {
		items = append(items, map[string]any{"sale_id": it.SaleID, "quantity": it.Quantity,
			"amount_cents": f.sales[it.SaleID].price * int64(it.Quantity), "returned": 0})
	}
	v["items"] = items
	return v
}

func userOf(w http.ResponseWriter, r *http.Request) (string, bool) {
	u := r.Header.Get("X-User-ID")
	if !fakeUserRE.MatchString(u) {
		writeErr(w, http.StatusUnauthorized, "unauthorized")
		return "", false
	}
	return u, true
}

func (f *fakeServer) createSale(w http.ResponseWriter, r *http.Request) {
	if r.Header.Get("Authorization") != "Bearer "+f.token {
		writeErr(w, http.StatusUnauthorized, "unauthorized")
		return
	}
	var req struct {
		ID                   string `json:"id"`
		SKU                  string `json:"sku"`
		Name                 string `json:"name"`
		Stock                int    `json:"stock"`
		PriceCents           int64  `json:"price_cents"`
		PerUserLimit         int    `json:"per_user_limit"`
		StartsAt             string `json:"starts_at"`
		EndsAt               string `json:"ends_at"`
		PaymentWindowSeconds int    `json:"payment_window_seconds"`
		Inventory            string `json:"inventory"`
		Reservation          *struct {
			OpensAt  string `json:"opens_at"`
			ClosesAt string `json:"closes_at"`
		} `json:"reservation"`
		WaitingRoom *struct {
			OpensAt  string `json:"opens_at"`
			Waitlist int    `json:"waitlist"`
		} `json:"waiting_room"`
	}
	if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
		writeErr(w, http.StatusBadRequest, "bad_request")
		return
	}
	s := &fakeSale{id: req.ID, sku: req.SKU, name: req.Name, inventory: req.Inventory, created: time.Now(),
		stock: req.Stock, perUser: req.PerUserLimit, price: req.PriceCents,
		window: time.Duration(req.PaymentWindowSeconds) * time.Second, reserved: map[string]time.Time{}}
	var err error
	if s.startsAt, err = time.Parse(time.RFC3339Nano, req.StartsAt); err != nil {
		writeErr(w, http.StatusBadRequest, "invalid")
		return
	}
	if s.endsAt, err = time.Parse(time.RFC3339Nano, req.EndsAt); err != nil || !s.endsAt.After(s.startsAt) {
		writeErr(w, http.StatusBadRequest, "invalid")
		return
	}
	if req.Reservation != nil {
		s.hasRes = true
		s.resOpens, _ = time.Parse(time.RFC3339Nano, req.Reservation.OpensAt)
		s.resClose, _ = time.Parse(time.RFC3339Nano, req.Reservation.ClosesAt)
		if s.resClose.After(s.startsAt) || !s.resClose.After(s.resOpens) {
			writeErr(w, http.StatusBadRequest, "invalid")
			return
		}
	}
	if wr := req.WaitingRoom; wr != nil {
		s.hasRoom, s.waitlist, s.seed = true, wr.Waitlist, make([]byte, 32)
		_, _ = rand.Read(s.seed)
		if s.roomOpens, err = time.Parse(time.RFC3339Nano, wr.OpensAt); err != nil || !s.roomOpens.Before(s.startsAt) {
			writeErr(w, http.StatusBadRequest, "invalid")
			return
		}
	}
	if s.stock <= 0 || s.perUser <= 0 || s.window <= 0 || !fakeUserRE.MatchString(s.id) {
		writeErr(w, http.StatusBadRequest, "invalid")
		return
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if _, ok := f.sales[s.id]; ok {
		writeErr(w, http.StatusConflict, "conflict")
		return
	}
	f.sales[s.id] = s
	f.inventory = append(f.inventory, req.Inventory)
	writeJSON(w, http.StatusCreated, f.saleViewLocked(s, time.Now()))
}

func (f *fakeServer) getSale(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	defer f.mu.Unlock()
	now := time.Now()
	f.advanceLocked(now)
	s := f.sales[r.PathValue("id")]
	if s == nil {
		writeErr(w, http.StatusNotFound, "not_found")
		return
	}
	writeJSON(w, http.StatusOK, f.saleViewLocked(s, now))
}

// saleViewLocked is the sale as the API shows it.
func (f *fakeServer) saleViewLocked(s *fakeSale, now time.Time) map[string]any {
	avail, held, sold := s.stockLocked()
	state := "open"
	switch {
	case s.hasRes && now.Before(s.resOpens):
		state = "scheduled"
	case s.hasRes && now.Before(s.resClose):
		state = "reservation_open"
	case s.hasRoom && now.Before(s.roomOpens):
		state = "scheduled"
	case s.hasRoom && now.Before(s.startsAt):
		state = "waiting_room_open"
	case now.Before(s.startsAt):
		state = "upcoming"
	case !now.Before(s.endsAt):
		state = "ended"
	case avail <= 0:
		state = "sold_out"
	}
	v := map[string]any{"id": s.id, "sku": s.sku, "name": s.name, "state": state, "server_time": ts(now),
		"starts_at": ts(s.startsAt), "ends_at": ts(s.endsAt), "created_at": ts(s.created),
		"payment_window_seconds": int(s.window.Seconds()), "inventory": s.inventory, "reservation": nil,
		"per_user_limit": s.perUser, "price_cents": s.price,
		"stock": map[string]int{"total": s.stock, "available": avail, "held": held, "sold": sold}}
	if s.hasRes {
		v["reservation"] = map[string]any{"opens_at": ts(s.resOpens), "closes_at": ts(s.resClose), "capacity": 0}
		v["reservations"] = len(s.reserved)
	}
	if s.hasRoom {
		sum := sha256.Sum256(s.seed)
		wr := map[string]any{"opens_at": ts(s.roomOpens), "waitlist": s.waitlist, "entries": len(s.line),
			"draw_commitment": hex.EncodeToString(sum[:])}
		if !now.Before(s.startsAt) {
			wr["draw_seed"] = hex.EncodeToString(s.seed)
		}
		v["waiting_room"] = wr
	}
	return v
}

func (f *fakeServer) reserve(w http.ResponseWriter, r *http.Request) {
	user, ok := userOf(w, r)
	if !ok {
		return
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	now := time.Now()
	s := f.sales[r.PathValue("id")]
	switch {
	case s == nil:
		writeErr(w, http.StatusNotFound, "not_found")
	case !s.hasRes:
		writeErr(w, http.StatusConflict, "no_reservation")
	case now.Before(s.resOpens) || !now.Before(s.resClose):
		writeErr(w, http.StatusConflict, "reservation_closed")
	default:
		at, again := s.reserved[user]
		status := http.StatusOK
		if !again {
			at, status = now, http.StatusCreated
			s.reserved[user] = at
		}
		writeJSON(w, status, map[string]any{"sale_id": s.id, "user_id": user, "reserved_at": ts(at)})
	}
}

func (f *fakeServer) purchase(w http.ResponseWriter, r *http.Request) {
	user, ok := userOf(w, r)
	if !ok {
		return
	}
	var body struct {
		Quantity int `json:"quantity"`
	}
	if err := json.NewDecoder(r.Body).Decode(&body); err != nil {
		writeErr(w, http.StatusBadRequest, "bad_request")
		return
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	now := time.Now()
	f.advanceLocked(now)
	s := f.sales[r.PathValue("id")]
	if s == nil {
		writeErr(w, http.StatusNotFound, "not_found")
		return
	}
	if now.Before(s.startsAt) && (!s.hasRoom || now.Before(s.roomOpens)) {
		writeErr(w, http.StatusConflict, "not_started")
		return
	}
	if _, ok := s.reserved[user]; s.hasRes && !ok {
		writeErr(w, http.StatusForbidden, "not_qualified")
		return
	}
	if body.Quantity < 1 || body.Quantity > s.perUser {
		writeErr(w, http.StatusUnprocessableEntity, "invalid_quantity")
		return
	}
	// Inject the crowd-control answers on some users' first attempt.
	f.attempts[user]++
	if f.attempts[user] == 1 {
		n, _ := strconv.Atoi(user[strings.LastIndexByte(user, '-')+1:])
		switch {
		case n%7 == 3:
			w.Header().Set("Retry-After", "1")
			writeErr(w, http.StatusTooManyRequests, "rate_limited")
			return
		case n%11 == 5:
			writeErr(w, http.StatusServiceUnavailable, "unavailable")
			return
		}
	}
	if s.hasRoom {
		f.enterLocked(w, s, user, body.Quantity, now)
		return
	}
	if f.admitLocked(w, s, user, body.Quantity) {
		return
	}
	f.seq++
	tk := &fakeTicket{id: fakeID(f.seq), sale: s.id, user: user, qty: body.Quantity, status: statusQueued, created: now}
	f.tickets[tk.id] = tk
	s.queue = append(s.queue, tk)
	writeJSON(w, http.StatusAccepted, map[string]any{"ticket_id": tk.id, "status": statusQueued})
}

// admitLocked answers for the user's live ticket in the sale (200), the
// per-user limit and the stock; it reports whether it answered.
func (f *fakeServer) admitLocked(w http.ResponseWriter, s *fakeSale, user string, qty int) bool {
	units, queued := 0, 0
	for _, tk := range f.tickets {
		n := tk.inSale(s.id)
		if n == 0 {
			continue
		}
		st := tk.view()["status"]
		if tk.user == user && (st == statusQueued || st == statusPendingPayment) {
			writeJSON(w, http.StatusOK, map[string]any{"ticket_id": tk.id, "status": st})
			return true
		}
		if tk.user == user && (st == statusPendingPayment || st == statusPaid) {
			units += n
		}
		if st == statusQueued {
			queued += n
		}
	}
	if units+qty > s.perUser {
		writeErr(w, http.StatusConflict, "limit_reached")
		return true
	}
	avail, _, _ := s.stockLocked()
	if !f.oversell && avail-queued+f.admissionSlack < qty {
		writeErr(w, http.StatusConflict, "sold_out")
		return true
	}
	return false
}

// purchaseBundle is POST /api/v1/purchases: 2 to 10 distinct sales, each item
// checked as a purchase of its sale, one ticket.
func (f *fakeServer) purchaseBundle(w http.ResponseWriter, r *http.Request) {
	user, ok := userOf(w, r)
	if !ok {
		return
	}
	var body struct {
		Items []fakeItem `json:"items"`
	}
	if err := json.NewDecoder(r.Body).Decode(&body); err != nil {
		writeErr(w, http.StatusBadRequest, "bad_request")
		return
	}
	seen := map[string]bool{}
	for _, it := range body.Items {
		if seen[it.SaleID] {
			writeErr(w, http.StatusBadRequest, "bad_request")
			return
		}
		seen[it.SaleID] = true
	}
	if len(body.Items) < 2 || len(body.Items) > 10 {
		writeErr(w, http.StatusBadRequest, "bad_request")
		return
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	now := time.Now()
	f.advanceLocked(now)
	f.bundleAttempts++
	for _, it := range body.Items {
		s := f.sales[it.SaleID]
		switch {
		case s == nil:
			writeErr(w, http.StatusNotFound, "not_found")
			return
		case now.Before(s.startsAt):
			writeErr(w, http.StatusConflict, "not_started")
			return
		case it.Quantity < 1 || it.Quantity > s.perUser:
			writeErr(w, http.StatusUnprocessableEntity, "invalid_quantity")
			return
		}
		if _, ok := s.reserved[user]; s.hasRes && !ok {
			writeErr(w, http.StatusForbidden, "not_qualified")
			return
		}
	}
	for _, it := range body.Items {
		if f.admitLocked(w, f.sales[it.SaleID], user, it.Quantity) {
			return
		}
	}
	f.seq++
	first := f.sales[body.Items[0].SaleID]
	tk := &fakeTicket{id: fakeID(f.seq), sale: first.id, user: user, items: body.Items, status: statusQueued, created: now}
	f.tickets[tk.id] = tk
	first.queue = append(first.queue, tk)
	writeJSON(w, http.StatusAccepted, map[string]any{"ticket_id": tk.id, "status": statusQueued})
}

func (f *fakeServer) getTicket(w http.ResponseWriter, r *http.Request) {
	user, ok := userOf(w, r)
	if !ok {
		return
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.advanceLocked(time.Now())
	if f.firstTicketRead.IsZero() {
		f.firstTicketRead = time.Now()
	}
	tk := f.tickets[r.PathValue("id")]
	if tk == nil || tk.user != user {
		writeErr(w, http.StatusNotFound, "not_found")
		return
	}
	writeJSON(w, http.StatusOK, tk.view())
}

func (f *fakeServer) getOrder(w http.ResponseWriter, r *http.Request) {
	user, ok := userOf(w, r)
	if !ok {
		return
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.advanceLocked(time.Now())
	o := f.orders[r.PathValue("id")]
	if o == nil || o.user != user {
		writeErr(w, http.StatusNotFound, "not_found")
		return
	}
	writeJSON(w, http.StatusOK, f.orderView(o))
}

func (f *fakeServer) cancel(w http.ResponseWriter, r *http.Request) {
	user, ok := userOf(w, r)
	if !ok {
		return
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.advanceLocked(time.Now())
	o := f.orders[r.PathValue("id")]
	switch {
	case o == nil || o.user != user:
		writeErr(w, http.StatusNotFound, "not_found")
	case o.status == statusPaid:
		writeErr(w, http.StatusConflict, "already_paid")
	default:
		if o.status == statusPendingPayment {
			o.status = statusCancelled
		}
		writeJSON(w, http.StatusOK, f.orderView(o))
	}
}

// verifySignature checks the header independently of SignPayment.
func verifySignature(secret, header string, body []byte, now time.Time) bool {
	var t string
	var sigs []string
	for _, part := range strings.Split(header, ",") {
		k, v, _ := strings.Cut(strings.TrimSpace(part), "=")
		switch k {
		case "t":
			t = v
		case "v1":
			sigs = append(sigs, v)
		}
	}
	sec, err := strconv.ParseInt(t, 10, 64)
	if err != nil || now.Sub(time.Unix(sec, 0)).Abs() > 300*time.Second {
		return false
	}
	mac := hmac.New(sha256.New, []byte(secret))
	mac.Write([]byte(t + "." + string(body)))
	want := hex.EncodeToString(mac.Sum(nil))
	for _, s := range sigs {
		if hmac.Equal([]byte(s), []byte(want)) {
			return true
		}
	}
	return false
}

func (f *fakeServer) payment(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	if !verifySignature(f.secret, r.Header.Get("X-Flashsale-Signature"), body, time.Now()) {
		writeErr(w, http.StatusUnauthorized, "bad_signature")
		return
	}
	var p apiclient.PaymentNotice
	if err := json.Unmarshal(body, &p); err != nil {
		writeErr(w, http.StatusBadRequest, "bad_request")
		return
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.advanceLocked(time.Now())
	o := f.orders[p.OrderId]
	switch {
	case o == nil:
		writeErr(w, http.StatusNotFound, "not_found")
	case o.amount != p.AmountCents:
		writeErr(w, http.StatusUnprocessableEntity, "amount_mismatch")
	case p.Status != "succeeded" || o.paymentID == p.PaymentId:
		writeJSON(w, http.StatusOK, map[string]any{"order_id": o.id, "status": o.status})
	case o.status == statusPendingPayment:
		o.status, o.paymentID = statusPaid, p.PaymentId
		writeJSON(w, http.StatusOK, map[string]any{"order_id": o.id, "status": statusPaid})
	default:
		writeJSON(w, http.StatusOK, map[string]any{"order_id": o.id, "status": "refund_required"})
	}
}

// inventories returns the inventory field of every sale created so far.
func (f *fakeServer) inventories() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.inventory...)
}

// countPurchase counts the purchase answers of known sales by outcome, before
// they reach the client.
func (f *fakeServer) countPurchase(next http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		rec := httptest.NewRecorder()
		next(rec, r)
		var outcome string
		switch rec.Code {
		case http.StatusAccepted:
			outcome = "admitted"
		case http.StatusOK:
			outcome = "existing"
		default:
			var env apiclient.Error
			_ = json.Unmarshal(rec.Body.Bytes(), &env)
			switch c := string(env.Error.Code); c {
			case "rate_limited", "sold_out", "limit_reached", "not_qualified", "blocked", "unavailable":
				outcome = c
			}
		}
		id := r.PathValue("id")
		f.mu.Lock()
		if f.sales[id] != nil && outcome != "" {
			if f.outcomes[id] == nil {
				f.outcomes[id] = map[string]int{}
			}
			f.outcomes[id][outcome]++
		}
		f.lastPurchase = time.Now()
		f.mu.Unlock()
		for k, v := range rec.Header() {
			w.Header()[k] = v
		}
		w.WriteHeader(rec.Code)
		_, _ = w.Write(rec.Body.Bytes())
	}
}

// fakeCost is what the fake's /metrics makes of its state: purchases go out
// two to a message, every order costs one event and one delay message; the
// admission takes 2 round trips (3 commands) per request that reached the
// claim, the worker 2 (5 commands) per order.
type fakeCost struct {
	admitted, claimed, orders int
}

func (f *fakeServer) costLocked() fakeCost {
	var c fakeCost
	for _, byOutcome := range f.outcomes {
		c.admitted += byOutcome["admitted"]
		c.claimed += byOutcome["admitted"] + byOutcome["existing"] + byOutcome["sold_out"] + byOutcome["limit_reached"]
	}
	c.orders = len(f.orders)
	return c
}

// metrics serves the fake's counters as Prometheus text.
func (f *fakeServer) metrics(w http.ResponseWriter, _ *http.Request) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.advanceLocked(time.Now())
	c := f.costLocked()
	var b strings.Builder
	b.WriteString("# HELP flashsale_broker_published_total Messages published.\n# TYPE flashsale_broker_published_total counter\n")
	for _, kv := range []struct {
		kind string
		n    int
	}{{"purchase", (c.admitted + 1) / 2}, {"purchase_item", c.admitted}, {"event", c.orders}, {"delay", c.orders}, {"delay_item", c.orders}, {"republish", 0}} {
		fmt.Fprintf(&b, "flashsale_broker_published_total{kind=%q} %d\n", kv.kind, kv.n)
	}
	b.WriteString("# TYPE flashsale_redis_round_trips_total counter\n")
	fmt.Fprintf(&b, "flashsale_redis_round_trips_total{stage=\"admission\"} %d\nflashsale_redis_round_trips_total{stage=\"worker\"} %d\nflashsale_redis_round_trips_total{stage=\"other\"} 7\n", 2*c.claimed, 2*c.orders)
	b.WriteString("# TYPE flashsale_redis_commands_total counter\n")
	fmt.Fprintf(&b, "flashsale_redis_commands_total{stage=\"admission\"} %d\nflashsale_redis_commands_total{stage=\"worker\"} %d\nflashsale_redis_commands_total{stage=\"other\"} 9\n", 3*c.claimed, 5*c.orders)
	if len(f.outcomes) > 0 {
		b.WriteString("# TYPE flashsale_purchases_total counter\n")
		for sale, byOutcome := range f.outcomes {
			for o, n := range byOutcome {
				fmt.Fprintf(&b, "flashsale_purchases_total{outcome=%q,sale=%q} %d\n", o, sale, n)
			}
		}
	}
	w.Header().Set("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
	_, _ = io.WriteString(w, b.String())
}
