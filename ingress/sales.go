package ingress

import (
	"crypto/rand"
	"encoding/hex"
	"net/http"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/google/uuid"

	"github.com/flashsale/flashsale"
)

// saleInput is the body of POST /api/v1/sales. Pointers tell absent from zero.
type saleInput struct {
	ID                   *string           `json:"id"`
	SKU                  *string           `json:"sku"`
	Name                 *string           `json:"name"`
	Stock                *int              `json:"stock"`
	PriceCents           *int64            `json:"price_cents"`
	PerUserLimit         *int              `json:"per_user_limit"`
	StartsAt             *string           `json:"starts_at"`
	EndsAt               *string           `json:"ends_at"`
	PaymentWindowSeconds *int              `json:"payment_window_seconds"`
	Reservation          *reservationInput `json:"reservation"`
	Inventory            *string           `json:"inventory"`
	WaitingRoom          *waitingRoomInput `json:"waiting_room"`
}

type waitingRoomInput struct {
	OpensAt  *string `json:"opens_at"`
	Waitlist *int    `json:"waitlist"`
}

type reservationInput struct {
	OpensAt  *string `json:"opens_at"`
	ClosesAt *string `json:"closes_at"`
	Capacity *int    `json:"capacity"`
}

// MaxStock bounds a sale's stock (and per-user limit) to keep counters small.
const MaxStock = 100_000_000

// MaxPriceCents bounds a unit's price (10^12 cents), and MaxAmountCents the
// amount of one order of one sale (price_cents × per_user_limit, 10^15 cents):
// with quantity <= per_user_limit no amount can overflow, and a bundle of up
// to ten such items stays far below 2^63.
const (
	MaxPriceCents  = 1_000_000_000_000
	MaxAmountCents = 1_000_000_000_000_000
)

func invalid(field, format string, args ...any) error {
	return flashsale.Errorf(flashsale.CodeInvalid, field+": "+format, args...)
}

func parseTime(field string, v *string) (time.Time, error) {
	if v == nil {
		return time.Time{}, invalid(field, "is required")
	}
	t, err := time.Parse(time.RFC3339Nano, *v)
	if err != nil {
		return time.Time{}, invalid(field, "must be an RFC 3339 time")
	}
	return t.UTC().Truncate(time.Microsecond), nil
}

func text(field string, v *string, max int) (string, error) {
	if v == nil || *v == "" {
		return "", invalid(field, "is required")
	}
	if len(*v) > max {
		return "", invalid(field, "must be at most %d bytes", max)
	}
	return *v, nil
}

// toSale validates the input field by field and returns the sale to create.
func (in *saleInput) toSale(now time.Time) (*flashsale.Sale, error) {
	s := &flashsale.Sale{PerUserLimit: 1, PaymentWindowSeconds: 900, Inventory: flashsale.InventoryRedis,
		CreatedAt: now.UTC().Truncate(time.Microsecond)}
	var err error
	if in.ID == nil {
		s.ID = uuid.NewString()
	} else if !flashsale.ValidID(*in.ID) {
		return nil, invalid("id", "must be 1 to 64 characters of [A-Za-z0-9_-]")
	} else {
		s.ID = *in.ID
	}
	if s.SKU, err = text("sku", in.SKU, 128); err != nil {
		return nil, err
	}
	if s.Name, err = text("name", in.Name, 255); err != nil {
		return nil, err
	}
	if in.Stock == nil || *in.Stock <= 0 || *in.Stock > MaxStock {
		return nil, invalid("stock", "must be between 1 and %d", MaxStock)
	}
	s.Stock = *in.Stock
	if in.PriceCents == nil || *in.PriceCents < 0 || *in.PriceCents > MaxPriceCents {
		return nil, invalid("price_cents", "is required and must be between 0 and %d", int64(MaxPriceCents))
	}
	s.PriceCents = *in.PriceCents
	if in.PerUserLimit != nil {
		if *in.PerUserLimit < 1 || *in.PerUserLimit > MaxStock {
			return nil, invalid("per_user_limit", "must be between 1 and %d", MaxStock)
		}
		s.PerUserLimit = *in.PerUserLimit
	}
	// Both are bounded above, so the product cannot overflow.
	if s.PriceCents*int64(s.PerUserLimit) > MaxAmountCents {
		return nil, invalid("price_cents", "× per_user_limit must be at most %d (the largest order)", int64(MaxAmountCents))
	}
	if s.StartsAt, err = parseTime("starts_at", in.StartsAt); err != nil {
		return nil, err
	}
	if s.EndsAt, err = parseTime("ends_at", in.EndsAt); err != nil {
		return nil, err
	}
	if !s.EndsAt.After(s.StartsAt) {
		return nil, invalid("ends_at", "must be after starts_at")
	}
	if in.PaymentWindowSeconds != nil {
		if *in.PaymentWindowSeconds < 1 || *in.PaymentWindowSeconds > 86400 {
			return nil, invalid("payment_window_seconds", "must be between 1 and 86400")
		}
		s.PaymentWindowSeconds = *in.PaymentWindowSeconds
	}
	if in.Inventory != nil {
		switch inv := flashsale.Inventory(*in.Inventory); inv {
		case flashsale.InventoryRedis, flashsale.InventoryMySQL:
			s.Inventory = inv
		default:
			return nil, invalid("inventory", "must be %q or %q", flashsale.InventoryRedis, flashsale.InventoryMySQL)
		}
	}
	if r := in.Reservation; r != nil {
		res := &flashsale.Reservation{}
		if res.OpensAt, err = parseTime("reservation.opens_at", r.OpensAt); err != nil {
			return nil, err
		}
		if res.ClosesAt, err = parseTime("reservation.closes_at", r.ClosesAt); err != nil {
			return nil, err
		}
		if !res.ClosesAt.After(res.OpensAt) {
			return nil, invalid("reservation.closes_at", "must be after reservation.opens_at")
		}
		if res.ClosesAt.After(s.StartsAt) {
			return nil, invalid("reservation.closes_at", "must be no later than starts_at")
		}
		if r.Capacity != nil {
			if *r.Capacity < 0 || *r.Capacity > MaxStock {
				return nil, invalid("reservation.capacity", "must be between 0 and %d", MaxStock)
			}
			res.Capacity = *r.Capacity
		}
		s.Reservation = res
	}
	if w := in.WaitingRoom; w != nil {
		if s.WaitingRoom, err = w.toWaitingRoom(s); err != nil {
			return nil, err
		}
	}
	return s, nil
}

// toWaitingRoom validates a waiting room of sale s (whose window and
// reservation phase are already valid) and draws its secret seed.
func (w *waitingRoomInput) toWaitingRoom(s *flashsale.Sale) (*flashsale.WaitingRoom, error) {
	wr := &flashsale.WaitingRoom{}
	var err error
	if wr.OpensAt, err = parseTime("waiting_room.opens_at", w.OpensAt); err != nil {
		return nil, err
	}
	if !wr.OpensAt.Before(s.StartsAt) {
		return nil, invalid("waiting_room.opens_at", "must be before starts_at")
	}
	if r := s.Reservation; r != nil && wr.OpensAt.Before(r.ClosesAt) {
		return nil, invalid("waiting_room.opens_at", "must be no earlier than reservation.closes_at")
	}
	if w.Waitlist != nil {
		if *w.Waitlist < 0 || *w.Waitlist > MaxStock {
			return nil, invalid("waiting_room.waitlist", "must be between 0 and %d", MaxStock)
		}
		wr.Waitlist = *w.Waitlist
	}
	wr.Seed = make([]byte, flashsale.DrawSeedBytes)
	if _, err := rand.Read(wr.Seed); err != nil {
		return nil, flashsale.Unavailable(err, "no randomness for the draw's seed right now; retry")
	}
	return wr, nil
}

// saleView is a sale as GET /api/v1/sales/{id} shows it.
type saleView struct {
	ID                   string                 `json:"id"`
	SKU                  string                 `json:"sku"`
	Name                 string                 `json:"name"`
	PriceCents           int64                  `json:"price_cents"`
	PerUserLimit         int                    `json:"per_user_limit"`
	StartsAt             time.Time              `json:"starts_at"`
	EndsAt               time.Time              `json:"ends_at"`
	PaymentWindowSeconds int                    `json:"payment_window_seconds"`
	Reservation          *flashsale.Reservation `json:"reservation"`
	Inventory            flashsale.Inventory    `json:"inventory"`
	CreatedAt            time.Time              `json:"created_at"`
	State                flashsale.SaleState    `json:"state"`
	ServerTime           time.Time              `json:"server_time"`
	Stock                flashsale.StockLevel   `json:"stock"`
	// Reservations is the number of users who reserved; only for sales with a
	// reservation phase.
	Reservations *int `json:"reservations,omitempty"`
	// WaitingRoom is present when the sale has one.
	WaitingRoom *waitingRoomView `json:"waiting_room,omitempty"`
}

// waitingRoomView is a sale's waiting room as the sale view shows it: the
// seed only once the line is drawn (from starts_at on).
type waitingRoomView struct {
	OpensAt        time.Time `json:"opens_at"`
	Waitlist       int       `json:"waitlist"`
	Entries        int       `json:"entries"`
	DrawCommitment string    `json:"draw_commitment"`
	DrawSeed       string    `json:"draw_seed,omitempty"`
}

func (s *Server) view(c *gin.Context, sale *flashsale.Sale) (*saleView, error) {
	stock, err := s.cfg.Stock.Stock(c.Request.Context(), sale.ID)
	if err != nil {
		return nil, flashsale.Unavailable(err, "the sale's stock cannot be read right now; retry")
	}
	now := s.cfg.Now().UTC()
	reservations, err := s.reservationCount(c.Request.Context(), sale)
	if err != nil {
		return nil, err
	}
	var wr *waitingRoomView
	if w := sale.WaitingRoom; w != nil {
		wr = &waitingRoomView{OpensAt: w.OpensAt, Waitlist: w.Waitlist, DrawCommitment: w.Commitment()}
		if sale.Drawn(now) {
			wr.DrawSeed = hex.EncodeToString(w.Seed)
		}
		if wr.Entries, err = s.lineEntries(c.Request.Context(), sale); err != nil {
			return nil, err
		}
	}
	return &saleView{WaitingRoom: wr, Reservations: reservations, ID: sale.ID, SKU: sale.SKU, Name: sale.Name, PriceCents: sale.PriceCents,
		PerUserLimit: sale.PerUserLimit, StartsAt: sale.StartsAt, EndsAt: sale.EndsAt,
		PaymentWindowSeconds: sale.PaymentWindowSeconds, Reservation: sale.Reservation,
		Inventory: sale.Inventory, CreatedAt: sale.CreatedAt, State: sale.StateAt(now, stock.Available),
		ServerTime: now, Stock: stock}, nil
}

func (s *Server) createSale(c *gin.Context) {
	var in saleInput
	if err := BindJSON(c, &in); err != nil {
		s.WriteError(c, err)
		return
	}
	sale, err := in.toSale(s.cfg.Now())
	if err != nil {
		s.WriteError(c, err)
		return
	}
	if err := s.cfg.Sales.Create(c.Request.Context(), sale); err != nil {
		s.WriteError(c, err)
		return
	}
	s.log.Info("sale created", "sale", sale.ID, "stock", sale.Stock, "starts_at", sale.StartsAt, "ends_at", sale.EndsAt)
	v, err := s.view(c, sale)
	if err != nil {
		s.WriteError(c, err)
		return
	}
	c.JSON(http.StatusCreated, v)
}

func (s *Server) getSale(c *gin.Context) {
	sale, err := s.cfg.Sales.Get(c.Request.Context(), c.Param("id"))
	if err != nil {
		s.WriteError(c, err)
		return
	}
	v, err := s.view(c, sale)
	if err != nil {
		s.WriteError(c, err)
		return
	}
	c.JSON(http.StatusOK, v)
}
