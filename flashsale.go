// Package flashsale holds the domain vocabulary of the flash-sale system: sales,
// tickets, orders, their statuses, and the coded errors every role speaks.
//
// It imports only the standard library. Adapters (Redis, MySQL, RabbitMQ) and roles
// (ingress, worker, delayq, payment) build on these types; cmd/flashsale wires them.
package flashsale

import (
	"hash/fnv"
	"regexp"
	"time"
)

// idPattern is the shape of every caller-chosen identifier: sale ids and user ids.
var idPattern = regexp.MustCompile(`^[A-Za-z0-9_-]{1,64}$`)

// ValidID reports whether s is 1 to 64 characters of [A-Za-z0-9_-].
func ValidID(s string) bool { return idPattern.MatchString(s) }

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
	Inventory            Inventory    `json:"inventory"`
	CreatedAt            time.Time    `json:"created_at"`
}

// PaymentWindow is how long an order of this sale may stay unpaid.
func (s *Sale) PaymentWindow() time.Duration {
	return time.Duration(s.PaymentWindowSeconds) * time.Second
}

// Stock is a sale's availability as Redis sees it. Available+Held+Sold == Total
// whenever it is read in one piece.
type Stock struct {
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

// TicketStatus is where a purchase request stands. Queued and pending_payment are
// live; every other status is final (paid is final for the ticket too).
type TicketStatus string

const (
	TicketQueued         TicketStatus = "queued"
	TicketPendingPayment TicketStatus = "pending_payment"
	TicketPaid           TicketStatus = "paid"
	TicketExpired        TicketStatus = "expired"
	TicketCancelled      TicketStatus = "cancelled"
	TicketSoldOut        TicketStatus = "sold_out"
	TicketFailed         TicketStatus = "failed"
)

// Live reports whether the ticket still blocks its user from a new purchase.
func (s TicketStatus) Live() bool { return s == TicketQueued || s == TicketPendingPayment }

// Ticket is a user's purchase request. A ticket makes at most one order, and that
// order's id is the ticket's id.
type Ticket struct {
	ID       string       `json:"ticket_id"`
	SaleID   string       `json:"sale_id"`
	UserID   string       `json:"-"`
	Quantity int          `json:"quantity"`
	Status   TicketStatus `json:"status"`
	OrderID  string       `json:"order_id,omitempty"`
	PayBy    *time.Time   `json:"pay_by,omitempty"`
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

// Order is the book-of-record entry for units a user holds or bought. It lives on
// shard ShardOf(UserID, n).
type Order struct {
	ID          string      `json:"order_id"`
	SaleID      string      `json:"sale_id"`
	UserID      string      `json:"user_id"`
	Quantity    int         `json:"quantity"`
	AmountCents int64       `json:"amount_cents"`
	Status      OrderStatus `json:"status"`
	CreatedAt   time.Time   `json:"created_at"`
	PayBy       time.Time   `json:"pay_by"`
	PaidAt      *time.Time  `json:"paid_at"`
	PaymentID   *string     `json:"payment_id"`
}

// TicketOf is the ticket view of an order: a ticket follows its order's status.
func TicketOf(o *Order) *Ticket {
	t := &Ticket{ID: o.ID, SaleID: o.SaleID, UserID: o.UserID, Quantity: o.Quantity,
		Status: TicketStatus(o.Status), OrderID: o.ID}
	if o.Status == OrderPendingPayment {
		p := o.PayBy
		t.PayBy = &p
	}
	return t
}

// PurchaseRequest is what the ingress queues and a worker consumes.
type PurchaseRequest struct {
	TicketID   string    `json:"ticket_id"`
	SaleID     string    `json:"sale_id"`
	UserID     string    `json:"user_id"`
	Quantity   int       `json:"quantity"`
	AdmittedAt time.Time `json:"admitted_at"`
}

// EventType is the routing key of an order event on the <namespace>.events exchange.
type EventType string

const (
	EventOrderCreated        EventType = "order.created"
	EventOrderPaid           EventType = "order.paid"
	EventOrderExpired        EventType = "order.expired"
	EventOrderCancelled      EventType = "order.cancelled"
	EventOrderRefundRequired EventType = "order.refund_required"
)

// Event is an order transition as published (contract section 3). It is written to
// the outbox in the transaction of the transition, so EventID is fixed before it is
// ever published; consumers de-duplicate by it.
type Event struct {
	EventID    string     `json:"event_id"`
	Type       EventType  `json:"type"`
	OccurredAt time.Time  `json:"occurred_at"`
	Order      EventOrder `json:"order"`
}

// EventOrder is the order snapshot an event carries.
type EventOrder struct {
	OrderID     string      `json:"order_id"`
	SaleID      string      `json:"sale_id"`
	UserID      string      `json:"user_id"`
	Quantity    int         `json:"quantity"`
	AmountCents int64       `json:"amount_cents"`
	Status      OrderStatus `json:"status"`
	PaymentID   *string     `json:"payment_id"`
}

// SnapshotOf returns the event view of o.
func SnapshotOf(o *Order) EventOrder {
	return EventOrder{OrderID: o.ID, SaleID: o.SaleID, UserID: o.UserID, Quantity: o.Quantity,
		AmountCents: o.AmountCents, Status: o.Status, PaymentID: o.PaymentID}
}

// PayOutcome is what a payment notification did to its order.
type PayOutcome string

const (
	// PayPaid: the order is paid by this payment.
	PayPaid PayOutcome = "paid"
	// PayRefundRequired: money arrived for an order that cannot take it (expired,
	// cancelled, or paid by another payment); the order is unchanged.
	PayRefundRequired PayOutcome = "refund_required"
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
