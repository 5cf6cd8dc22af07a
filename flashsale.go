// Package flashsale holds the domain vocabulary of the flash-sale system: sales,
// tickets, orders, their statuses, and the coded errors every role speaks.
//
// It imports only the standard library. Adapters (Redis, MySQL, RabbitMQ) and roles
// (ingress, worker, delayq, payment) build on these types; cmd/flashsale wires them.
package flashsale

import (
	"crypto/sha1"
	"encoding/hex"
	"hash/fnv"
	"regexp"
	"sort"
	"time"
)

// idPattern is the shape of every caller-chosen identifier: sale ids and user ids.
var idPattern = regexp.MustCompile(`^[A-Za-z0-9_-]{1,64}$`)

// ValidID reports whether s is 1 to 64 characters of [A-Za-z0-9_-].
func ValidID(s string) bool { return idPattern.MatchString(s) }

// MintedFor reports whether id has the shape of a ticket id minted for user:
// ticket ids are UUIDs of version 8 whose last 8 hex digits are the first 8
// of SHA-1("u|" + user), the user's tag (the stock store mints them, see
// TicketClaim and redisstore's claimScript). The rest of the id is a hash of
// the ticket's sales, the user and a number, so a ticket id is predictable;
// what it opens is checked against the caller's identity everywhere. The tag
// lets a lookup of an id found nowhere tell "this user's ticket, possibly
// still queued" (503, retry) from a stranger's guess (404).
func MintedFor(id, user string) bool {
	if len(id) != 36 || id[14] != '8' {
		return false
	}
	sum := sha1.Sum([]byte("u|" + user))
	return id[28:] == hex.EncodeToString(sum[:4])
}

// ShardOf returns the index of the order shard that holds userID's orders:
// FNV-1a (32-bit) of the user id's bytes, mixed by MurmurHash3's fmix32
// finalizer, modulo n. The finalizer matters: FNV-1a's low bits are weak (its
// lowest bit is only the parity of the bytes' lowest bits), and a modulo by a
// small n reads exactly those. Changing this function moves users between shards,
// so it never changes.
func ShardOf(userID string, n int) int {
	h := fnv.New32a()
	h.Write([]byte(userID))
	return int(fmix32(h.Sum32()) % uint32(n))
}

func fmix32(h uint32) uint32 {
	h ^= h >> 16
	h *= 0x85ebca6b
	h ^= h >> 13
	h *= 0xc2b2ae35
	h ^= h >> 16
	return h
}

// Inventory says where a sale's stock is held.
type Inventory string

const (
	// InventoryRedis holds stock with Lua scripts in Redis (the default).
	InventoryRedis Inventory = "redis"
	// InventoryMySQL holds stock with a conditional update of one MySQL row per
	// sale: the simple design, kept to measure against.
	InventoryMySQL Inventory = "mysql"
)

// Reservation is the optional qualification phase before a sale: only users who
// reserved in [OpensAt, ClosesAt) may buy. Capacity 0 means unlimited.
type Reservation struct {
	OpensAt  time.Time `json:"opens_at"`
	ClosesAt time.Time `json:"closes_at"`
	Capacity int       `json:"capacity"`
}

// Sale is a limited stock of one SKU on sale in [StartsAt, EndsAt).
// A sale never changes after it is created.
type Sale struct {
	ID                   string       `json:"id"`
	SKU                  string       `json:"sku"`
	Name                 string       `json:"name"`
	Stock                int          `json:"stock"`
	PriceCents           int64        `json:"price_cents"`
	PerUserLimit         int          `json:"per_user_limit"`
	StartsAt             time.Time    `json:"starts_at"`
	EndsAt               time.Time    `json:"ends_at"`
	PaymentWindowSeconds int          `json:"payment_window_seconds"`
	Reservation          *Reservation `json:"reservation"`
	WaitingRoom          *WaitingRoom `json:"waiting_room"`
	Inventory            Inventory    `json:"inventory"`
	CreatedAt            time.Time    `json:"created_at"`
}

// StockLevel is a sale's availability as Redis sees it. Available+Held+Sold == Total
// whenever it is read in one piece.
type StockLevel struct {
	Total     int `json:"total"`
	Available int `json:"available"`
	Held      int `json:"held"`
	Sold      int `json:"sold"`
}

// SaleState is where a sale stands by the server's clock and its stock.
type SaleState string

const (
	StateScheduled       SaleState = "scheduled"
	StateReservationOpen SaleState = "reservation_open"
	StateUpcoming        SaleState = "upcoming"
	StateWaitingRoomOpen SaleState = "waiting_room_open"
	StateOpen            SaleState = "open"
	StateSoldOut         SaleState = "sold_out"
	StateEnded           SaleState = "ended"
)

// StateAt returns the sale's state at now given how many units are available.
func (s *Sale) StateAt(now time.Time, available int) SaleState {
	switch {
	case !now.Before(s.EndsAt):
		return StateEnded
	case !now.Before(s.StartsAt):
		if available <= 0 {
			return StateSoldOut
		}
		return StateOpen
	case s.WaitingRoom != nil && !now.Before(s.WaitingRoom.OpensAt):
		return StateWaitingRoomOpen
	case s.Reservation == nil:
		return StateScheduled
	case now.Before(s.Reservation.OpensAt):
		return StateScheduled
	case now.Before(s.Reservation.ClosesAt):
		return StateReservationOpen
	default:
		return StateUpcoming
	}
}

// TicketStatus is where a purchase request stands. Waiting, queued and
// pending_payment are live; every other status is final (paid is final for the ticket too).
type TicketStatus string

const (
	// TicketWaiting: in a waiting room's line (see WaitingRoom), holding
	// nothing yet.
	TicketWaiting        TicketStatus = "waiting"
	TicketQueued         TicketStatus = "queued"
	TicketPendingPayment TicketStatus = "pending_payment"
	TicketPaid           TicketStatus = "paid"
	TicketExpired        TicketStatus = "expired"
	TicketCancelled      TicketStatus = "cancelled"
	TicketSoldOut        TicketStatus = "sold_out"
	TicketFailed         TicketStatus = "failed"
)

// Live reports whether the ticket still blocks its user from a new purchase.
func (s TicketStatus) Live() bool {
	return s == TicketWaiting || s == TicketQueued || s == TicketPendingPayment
}

// Line is units of one sale in a purchase: a ticket has one line per sale it
// buys (one for a purchase of one sale, 2 to 10 for a bundle).
type Line struct {
	SaleID   string `json:"sale_id"`
	Quantity int    `json:"quantity"`
}

// MaxLines is how many sales one purchase may buy at once.
const MaxLines = 10

// Ticket is a user's purchase request. A ticket makes at most one order, and that
// order's id is the ticket's id. SaleID and Quantity are set for a ticket of one
// sale; Items has every line (one for a ticket of one sale).
type Ticket struct {
	ID       string       `json:"ticket_id"`
	SaleID   string       `json:"sale_id,omitempty"`
	UserID   string       `json:"-"`
	Quantity int          `json:"quantity,omitempty"`
	Items    []Line       `json:"items,omitempty"`
	Status   TicketStatus `json:"status"`
	OrderID  string       `json:"order_id,omitempty"`
	PayBy    *time.Time   `json:"pay_by,omitempty"`
	// Unpaid is the ticket's order as it was created, on a pending_payment
	// ticket (TicketOf sets it): an unpaid order changes only by leaving
	// pending_payment, so the ticket's fast copy keeps it and the order is
	// read from there while the copy says pending_payment (the buyer's read
	// before paying needs no MySQL; see ingress's getOrder). Nil when not
	// known (a copy written before it was kept, or a ticket from MySQL).
	Unpaid *Order `json:"-"`
}

// Lines returns the ticket's lines: Items, or its one sale.
func (t *Ticket) Lines() []Line {
	if len(t.Items) > 0 {
		return t.Items
	}
	return []Line{{SaleID: t.SaleID, Quantity: t.Quantity}}
}

// Overdue reports whether t, a fast copy, is an unpaid order's past its
// pay_by at now. Its order may be expired in MySQL already (an expiry that
// committed while Redis was away; Redis follows within seconds of answering),
// so MySQL decides: no reader takes such a copy for the ticket's status.
func (t *Ticket) Overdue(now time.Time) bool {
	return t.Status == TicketPendingPayment && t.PayBy != nil && !now.Before(*t.PayBy)
}

// SetLines sets Items to lines, and SaleID and Quantity when there is one line
// (they are empty for a bundle).
func (t *Ticket) SetLines(lines []Line) {
	t.Items, t.SaleID, t.Quantity = lines, "", 0
	if len(lines) == 1 {
		t.SaleID, t.Quantity = lines[0].SaleID, lines[0].Quantity
	}
}

// OrderStatus is an order's place in its lifecycle. Every change is a conditional
// update from pending_payment; whichever transition commits first wins.
type OrderStatus string

const (
	OrderPendingPayment OrderStatus = "pending_payment"
	OrderPaid           OrderStatus = "paid"
	OrderExpired        OrderStatus = "expired"
	OrderCancelled      OrderStatus = "cancelled"
)

// OrderItem is the part of an order in one sale. Returned units were given back
// (the order stays paid); Quantity-Returned units still count as sold.
type OrderItem struct {
	SaleID      string `json:"sale_id"`
	Quantity    int    `json:"quantity"`
	AmountCents int64  `json:"amount_cents"`
	Returned    int    `json:"returned"`
}

// Order is the book-of-record entry for units a user holds or bought. It lives on
// shard ShardOf(UserID, n). Items has one entry per sale (one for an order of
// one sale, several for a bundle); SaleID and Quantity are set only for an order
// of one sale, and AmountCents is the total.
type Order struct {
	ID          string      `json:"order_id"`
	SaleID      string      `json:"sale_id,omitempty"`
	UserID      string      `json:"user_id"`
	Quantity    int         `json:"quantity,omitempty"`
	AmountCents int64       `json:"amount_cents"`
	Status      OrderStatus `json:"status"`
	CreatedAt   time.Time   `json:"created_at"`
	PayBy       time.Time   `json:"pay_by"`
	PaidAt      *time.Time  `json:"paid_at"`
	PaymentID   *string     `json:"payment_id"`
	Items       []OrderItem `json:"items"`
}

// OrderMark is a place in one shard's orders in the order of their last
// change: updated_at (the database's clock for expiry and cancel) and the
// order id. The sweeper's pass over closed orders keeps one per shard.
type OrderMark struct {
	At      time.Time
	OrderID string
}

// SetItems sets Items (in sale id order), the total AmountCents, and SaleID
// and Quantity when there is one item (they are empty for a bundle).
func (o *Order) SetItems(items []OrderItem) {
	sort.Slice(items, func(i, j int) bool { return items[i].SaleID < items[j].SaleID })
	o.Items, o.SaleID, o.Quantity, o.AmountCents = items, "", 0, 0
	for _, it := range items {
		o.AmountCents += it.AmountCents
	}
	if len(items) == 1 {
		o.SaleID, o.Quantity = items[0].SaleID, items[0].Quantity
	}
}

// Lines returns the units the order holds or bought per sale (less returned).
func (o *Order) Lines() []Line {
	lines := make([]Line, len(o.Items))
	for i, it := range o.Items {
		lines[i] = Line{SaleID: it.SaleID, Quantity: it.Quantity - it.Returned}
	}
	return lines
}

// CheckReturn reports whether lines may be given back from o: o is paid
// (else an error wrapping ErrNotPaid) and each line has that many units left
// to return in its sale's item (else invalid_quantity, also for a sale o did
// not buy).
func (o *Order) CheckReturn(lines []Line) error {
	if o.Status != OrderPaid {
		return Errorf(CodeNotPaid, "order %q is %s, not paid", o.ID, o.Status)
	}
	for _, l := range lines {
		left := 0
		for _, it := range o.Items {
			if it.SaleID == l.SaleID {
				left = it.Quantity - it.Returned
			}
		}
		if l.Quantity > left {
			return Errorf(CodeInvalidQuantity, "only %d units of sale %q are left to return", left, l.SaleID)
		}
	}
	return nil
}

// Part is a ticket's share of one sale, as that sale's stock sees it: one hold
// per ticket and sale (a bundle has one per sale). Quantity is the units it
// holds or bought there, net of returns; Status is its order's, once it has
// one. The stock store's operations take a Part, so a sale, a ticket and a
// user are never passed as look-alike strings in the wrong order.
type Part struct {
	SaleID   string
	TicketID string // the order's id too
	UserID   string
	Quantity int
	Status   OrderStatus
}

// OrderRef names one order: the user it belongs to (a user's orders live on
// shard ShardOf(User, n)) and its id. The book of record's transitions take
// one, so a user id and an order id are never passed as look-alike strings in
// the wrong order.
type OrderRef struct {
	User  string
	Order string
}

// TicketRef names a user's ticket: the user and the ticket's id, never two
// look-alike strings (a user sees only their own tickets).
type TicketRef struct {
	User   string
	Ticket string
}

// Ref names the order.
func (o *Order) Ref() OrderRef { return OrderRef{User: o.UserID, Order: o.ID} }

// Parts returns the order's parts, one per item.
func (o *Order) Parts() []Part {
	parts := make([]Part, len(o.Items))
	for i, l := range o.Lines() {
		parts[i] = Part{SaleID: l.SaleID, TicketID: o.ID, UserID: o.UserID, Quantity: l.Quantity, Status: o.Status}
	}
	return parts
}

// TicketOf is the ticket view of an order: a ticket follows its order's status.
func TicketOf(o *Order) *Ticket {
	t := &Ticket{ID: o.ID, UserID: o.UserID, Status: TicketStatus(o.Status), OrderID: o.ID}
	lines := make([]Line, len(o.Items))
	for i, it := range o.Items {
		lines[i] = Line{SaleID: it.SaleID, Quantity: it.Quantity}
	}
	t.SetLines(lines)
	if o.Status == OrderPendingPayment {
		p := o.PayBy
		t.PayBy, t.Unpaid = &p, o
	}
	return t
}

// PurchaseRequest is what the ingress queues and a worker consumes: a purchase
// of one sale (SaleID, Quantity) or a bundle (Items, 2 to MaxLines lines of
// distinct sales, all or nothing).
type PurchaseRequest struct {
	TicketID   string    `json:"ticket_id"`
	SaleID     string    `json:"sale_id,omitempty"`
	UserID     string    `json:"user_id"`
	Quantity   int       `json:"quantity,omitempty"`
	Items      []Line    `json:"items,omitempty"`
	AdmittedAt time.Time `json:"admitted_at"`
	// Loads has, for each line, the load of its sale's stock the claim was
	// made in (the stock store's id of that load; 0: unknown). The hold reads
	// it instead of comparing clocks (see redisstore's holdScript).
	Loads []int64 `json:"loads,omitempty"`
}

// LoadOf returns the load of the i-th line's claim, 0 when unknown.
func (r *PurchaseRequest) LoadOf(i int) int64 {
	if i < len(r.Loads) {
		return r.Loads[i]
	}
	return 0
}

// Lines returns the request's lines: Items, or its one sale.
func (r *PurchaseRequest) Lines() []Line {
	if len(r.Items) > 0 {
		return r.Items
	}
	return []Line{{SaleID: r.SaleID, Quantity: r.Quantity}}
}

// Valid reports whether the request names a ticket, a user and 1 to MaxLines
// lines of distinct sales with positive quantities.
func (r *PurchaseRequest) Valid() bool {
	if r.TicketID == "" || r.UserID == "" || len(r.Items) > MaxLines {
		return false
	}
	seen := map[string]bool{}
	for _, l := range r.Lines() {
		if l.SaleID == "" || l.Quantity < 1 || seen[l.SaleID] {
			return false
		}
		seen[l.SaleID] = true
	}
	return true
}

// Part is the request's part in one sale (nothing held yet: Quantity is
// what it asks for).
func (r *PurchaseRequest) Part(l Line) Part {
	return Part{SaleID: l.SaleID, TicketID: r.TicketID, UserID: r.UserID, Quantity: l.Quantity}
}

// LineRequest is the request's i-th line, as the stock of that line's sale
// holds it (under the request's ticket id).
func (r *PurchaseRequest) LineRequest(i int) *PurchaseRequest {
	l := r.Lines()[i]
	return &PurchaseRequest{TicketID: r.TicketID, SaleID: l.SaleID, UserID: r.UserID, Quantity: l.Quantity,
		AdmittedAt: r.AdmittedAt, Loads: []int64{r.LoadOf(i)}}
}

// Ticket returns the request's ticket with status st.
func (r *PurchaseRequest) Ticket(st TicketStatus) *Ticket {
	t := &Ticket{ID: r.TicketID, UserID: r.UserID, Status: st}
	t.SetLines(r.Lines())
	return t
}

// ReturnRequest gives units of a paid order back (contract: order returns).
// ID is the caller's idempotency key: the same ID with the same order and
// lines again changes nothing; with another order or other lines it is a
// conflict.
type ReturnRequest struct {
	ID      string
	OrderID string
	Lines   []Line
}

// EventType is the routing key of an order event on the <namespace>.events exchange.
type EventType string

const (
	EventOrderCreated        EventType = "order.created"
	EventOrderPaid           EventType = "order.paid"
	EventOrderExpired        EventType = "order.expired"
	EventOrderCancelled      EventType = "order.cancelled"
	EventOrderRefundRequired EventType = "order.refund_required"
	EventOrderReturned       EventType = "order.returned"
)

// Event is an order transition as published (contract section 3). It is written to
// the outbox in the transaction of the transition, so EventID is fixed before it is
// ever published; consumers de-duplicate by it.
type Event struct {
	EventID    string     `json:"event_id"`
	Type       EventType  `json:"type"`
	OccurredAt time.Time  `json:"occurred_at"`
	Order      EventOrder `json:"order"`
	// ReturnID and Items are set on order.returned only: the return and the
	// units it gave back.
	ReturnID string `json:"return_id,omitempty"`
	Items    []Line `json:"items,omitempty"`
}

// EventOrder is the order snapshot an event carries.
type EventOrder struct {
	OrderID     string      `json:"order_id"`
	SaleID      string      `json:"sale_id,omitempty"`
	UserID      string      `json:"user_id"`
	Quantity    int         `json:"quantity,omitempty"`
	AmountCents int64       `json:"amount_cents"`
	Status      OrderStatus `json:"status"`
	PaymentID   *string     `json:"payment_id"`
	Items       []OrderItem `json:"items"`
	// PayBy is when the order expires unpaid: the expiry is scheduled from it.
	PayBy time.Time `json:"pay_by"`
}

// Ref names the order the event is about.
func (e EventOrder) Ref() OrderRef { return OrderRef{User: e.UserID, Order: e.OrderID} }

// SnapshotOf returns the event view of o.
func SnapshotOf(o *Order) EventOrder {
	return EventOrder{OrderID: o.ID, SaleID: o.SaleID, UserID: o.UserID, Quantity: o.Quantity,
		AmountCents: o.AmountCents, Status: o.Status, PaymentID: o.PaymentID, Items: o.Items, PayBy: o.PayBy}
}

// Payment is one notification of the payment provider: PaymentID paid
// AmountCents for OrderID, or failed to.
type Payment struct {
	PaymentID   string
	OrderID     string
	AmountCents int64
	Succeeded   bool
}

// PayOutcome is what a payment notification did to its order.
type PayOutcome string

const (
	// PayPaid: the order is paid by this payment.
	PayPaid PayOutcome = "paid"
	// PayRefundRequired: money arrived for an order that cannot take it (expired,
	// cancelled, or paid by another payment); the order is unchanged.
	PayRefundRequired PayOutcome = "refund_required"
	// PayFailed: the provider reports a failed payment; nothing changed (the
	// order stays payable until it expires).
	PayFailed PayOutcome = "failed"
)

// OutboxEvent is one unsent outbox row: an event and where it is stored.
type OutboxEvent struct {
	ID      int64 // position in its shard's outbox; publish in this order
	EventID string
	Type    EventType
	Payload []byte // the Event as JSON, fixed when the transition committed
}

// UserReservation is one user's reservation of a sale's reservation phase: it
// qualifies the user to buy once the sale opens. (Reservation, above, is the
// phase itself.) A user reserves a sale at most once; ReservedAt is when.
type UserReservation struct {
	SaleID     string    `json:"sale_id"`
	UserID     string    `json:"user_id"`
	ReservedAt time.Time `json:"reserved_at"`
}
