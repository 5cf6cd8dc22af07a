// Package inventory routes stock operations by a sale's inventory mode.
//
// Sales with inventory "redis" (the default) hold stock with the Redis scripts
// alone. Sales with inventory "mysql" hold it with a conditional update of one
// MySQL row per sale (the simple design, kept so that flashsale bench can measure
// against it on the same paths): MySQL decides, and Redis then mirrors the
// decision, because claims (one live ticket per user, the per-user limit, the
// sold-out fast path) and ticket copies stay in Redis for both modes. Every step
// is idempotent per ticket on both sides, and MySQL always goes first, so a crash
// between the two is completed by the retry.
package inventory

import (
	"context"
	"errors"

	"github.com/flashsale/flashsale"
	"github.com/flashsale/flashsale/redisstore"
)

// MySQL is the stock of mysql-inventory sales.
type MySQL interface {
	HoldStock(ctx context.Context, saleID, ticketID string, q int) (flashsale.Hold, error)
	ReleaseStock(ctx context.Context, saleID, ticketID string) (flashsale.Hold, error)
	ConfirmStock(ctx context.Context, saleID, ticketID string) (flashsale.Hold, error)
	StockOf(ctx context.Context, saleID string) (flashsale.Stock, error)
}

// Sales tells a sale's inventory mode.
type Sales interface {
	Get(ctx context.Context, id string) (*flashsale.Sale, error)
}

// Router is the stock store every role uses: the Redis store, with holds,
// releases, confirms and stock reads of mysql-inventory sales routed to MySQL.
type Router struct {
	*redisstore.Store
	mysql MySQL
	sales Sales
}

// New returns a Router.
func New(redis *redisstore.Store, mysql MySQL, sales Sales) (*Router, error) {
	if redis == nil || mysql == nil || sales == nil {
		return nil, errors.New("inventory: redis, mysql and sales are required")
	}
	return &Router{Store: redis, mysql: mysql, sales: sales}, nil
}

func (r *Router) inMySQL(ctx context.Context, saleID string) (bool, error) {
	sale, err := r.sales.Get(ctx, saleID)
	if err != nil {
		return false, err
	}
	return sale.Inventory == flashsale.InventoryMySQL, nil
}

// Hold holds each request's units; see redisstore.Store.Hold. For mysql sales the
// hot row decides; a hold is then mirrored into Redis (re-assert), a refusal
// clears the user's live ticket there.
func (r *Router) Hold(ctx context.Context, sales []*flashsale.Sale, reqs []*flashsale.PurchaseRequest) ([]flashsale.Hold, []error) {
	holds := make([]flashsale.Hold, len(reqs))
	errs := make([]error, len(reqs))
	var rSales []*flashsale.Sale
	var rReqs []*flashsale.PurchaseRequest
	var rIdx []int
	for i, req := range reqs {
		if sales[i].Inventory != flashsale.InventoryMySQL {
			rSales, rReqs, rIdx = append(rSales, sales[i]), append(rReqs, req), append(rIdx, i)
			continue
		}
		holds[i], errs[i] = r.holdMySQL(ctx, req)
	}
	if len(rReqs) > 0 {
		h, e := r.Store.Hold(ctx, rSales, rReqs)
		for j, i := range rIdx {
			holds[i], errs[i] = h[j], e[j]
		}
	}
	return holds, errs
}

func (r *Router) holdMySQL(ctx context.Context, req *flashsale.PurchaseRequest) (flashsale.Hold, error) {
	h, err := r.mysql.HoldStock(ctx, req.SaleID, req.TicketID, req.Quantity)
	if err != nil {
		return h, err
	}
	switch h.Kind {
	case flashsale.HoldHeld:
		_, errs := r.Store.Reassert(ctx, []*flashsale.Order{{ID: req.TicketID, SaleID: req.SaleID, UserID: req.UserID, Quantity: req.Quantity}})
		err = errs[0]
	case flashsale.HoldSoldOut:
		_, err = r.Store.Release(ctx, req.SaleID, req.TicketID, req.UserID)
	}
	return h, err
}

// Release gives a ticket's units back, once; MySQL first for mysql sales.
func (r *Router) Release(ctx context.Context, saleID, ticketID, userID string) (flashsale.Hold, error) {
	mysql, err := r.inMySQL(ctx, saleID)
	if err != nil || !mysql {
		if err != nil {
			return flashsale.Hold{}, err
		}
		return r.Store.Release(ctx, saleID, ticketID, userID)
	}
	before, err := r.mysql.ReleaseStock(ctx, saleID, ticketID)
	if err != nil {
		return before, err
	}
	_, err = r.Store.Release(ctx, saleID, ticketID, userID)
	return before, err
}

// Confirm moves a paid ticket's units to sold, once; MySQL first for mysql sales.
func (r *Router) Confirm(ctx context.Context, saleID, ticketID, userID string) (flashsale.Hold, error) {
	mysql, err := r.inMySQL(ctx, saleID)
	if err != nil || !mysql {
		if err != nil {
			return flashsale.Hold{}, err
		}
		return r.Store.Confirm(ctx, saleID, ticketID, userID)
	}
	before, err := r.mysql.ConfirmStock(ctx, saleID, ticketID)
	if err != nil {
		return before, err
	}
	_, err = r.Store.Confirm(ctx, saleID, ticketID, userID)
	return before, err
}

// Stock reads the sale's stock where it is held.
func (r *Router) Stock(ctx context.Context, saleID string) (flashsale.Stock, error) {
	mysql, err := r.inMySQL(ctx, saleID)
	if err != nil {
		return flashsale.Stock{}, err
	}
	if mysql {
		return r.mysql.StockOf(ctx, saleID)
	}
	return r.Store.Stock(ctx, saleID)
}
