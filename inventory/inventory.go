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
	"github.com/flashsale/flashsale/mysqlstore"
	"github.com/flashsale/flashsale/redisstore"
)

// MySQL is the stock of mysql-inventory sales.
type MySQL interface {
	// HoldStock holds units for each ticket of one sale in one transaction.
	HoldStock(ctx context.Context, saleID string, holds []mysqlstore.StockHold) ([]flashsale.Hold, error)
	ReleaseStock(ctx context.Context, saleID, ticketID string) (flashsale.Hold, error)
	ConfirmStock(ctx context.Context, saleID, ticketID string) (flashsale.Hold, error)
	RetakeStock(ctx context.Context, saleID, ticketID string) (flashsale.Hold, bool, error)
	ReturnStock(ctx context.Context, saleID, ticketID string, keep int) (flashsale.Hold, error)
	StockOf(ctx context.Context, saleID string) (flashsale.StockLevel, error)
}

// Router is the stock store every role uses: the Redis store, with holds,
// releases, confirms and stock reads of mysql-inventory sales routed to MySQL.
type Router struct {
	*redisstore.Store
	mysql MySQL
	sales flashsale.SaleFinder
}

// New returns a Router.
func New(redis *redisstore.Store, mysql MySQL, sales flashsale.SaleFinder) (*Router, error) {
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
// hot row decides (one transaction per sale and batch); a hold is then mirrored
// into Redis (re-assert); a refused ticket stays its user's live ticket in
// Redis until its refusal is recorded and its copy written (PutTickets).
func (r *Router) Hold(ctx context.Context, sales []*flashsale.Sale, reqs []*flashsale.PurchaseRequest) ([]flashsale.Hold, []error) {
	holds := make([]flashsale.Hold, len(reqs))
	errs := make([]error, len(reqs))
	var rSales []*flashsale.Sale
	var rReqs []*flashsale.PurchaseRequest
	var rIdx []int
	mIdx := map[string][]int{} // mysql sale id -> request indexes
	for i, req := range reqs {
		if sales[i].Inventory == flashsale.InventoryMySQL {
			mIdx[req.SaleID] = append(mIdx[req.SaleID], i)
			continue
		}
		rSales, rReqs, rIdx = append(rSales, sales[i]), append(rReqs, req), append(rIdx, i)
	}
	if len(rReqs) > 0 {
		h, e := r.Store.Hold(ctx, rSales, rReqs)
		for j, i := range rIdx {
			holds[i], errs[i] = h[j], e[j]
		}
	}
	for saleID, idx := range mIdx {
		r.holdMySQL(ctx, saleID, idx, reqs, holds, errs)
	}
	return holds, errs
}

// holdMySQL holds reqs[idx] of one mysql sale and mirrors the outcome in Redis,
// filling holds and errs at idx.
func (r *Router) holdMySQL(ctx context.Context, saleID string, idx []int, reqs []*flashsale.PurchaseRequest, holds []flashsale.Hold, errs []error) {
	batch := make([]mysqlstore.StockHold, len(idx))
	for j, i := range idx {
		batch[j] = mysqlstore.StockHold{TicketID: reqs[i].TicketID, Quantity: reqs[i].Quantity}
	}
	got, err := r.mysql.HoldStock(ctx, saleID, batch)
	if err != nil {
		for _, i := range idx {
			errs[i] = err
		}
		return
	}
	var held []flashsale.Part
	var heldIdx []int
	for j, i := range idx {
		holds[i] = got[j]
		req := reqs[i]
		if got[j].Kind == flashsale.HoldHeld {
			held = append(held, req.Part(flashsale.Line{SaleID: saleID, Quantity: req.Quantity}))
			heldIdx = append(heldIdx, i)
		}
	}
	if len(held) > 0 {
		_, e := r.Store.Reassert(ctx, held)
		for j, i := range heldIdx {
			errs[i] = e[j]
		}
	}
}

// route runs one stock operation of a sale: on Redis alone for a redis sale;
// for a mysql sale on MySQL first, which decides, then mirrored in Redis when
// MySQL did it (ok). It returns MySQL's answer for a mysql sale.
func (r *Router) route(ctx context.Context, saleID string, onMySQL, onRedis func() (flashsale.Hold, bool, error)) (flashsale.Hold, bool, error) {
	mysql, err := r.inMySQL(ctx, saleID)
	if err != nil {
		return flashsale.Hold{}, false, err
	}
	if !mysql {
		return onRedis()
	}
	before, ok, err := onMySQL()
	if err != nil || !ok {
		return before, ok, err
	}
	_, _, err = onRedis()
	return before, ok, err
}

// always adapts an operation that always applies to route's shape.
func always(h flashsale.Hold, err error) (flashsale.Hold, bool, error) { return h, true, err }

// Release gives a ticket's units back, once.
func (r *Router) Release(ctx context.Context, p flashsale.Part) (flashsale.Hold, error) {
	h, _, err := r.route(ctx, p.SaleID,
		func() (flashsale.Hold, bool, error) { return always(r.mysql.ReleaseStock(ctx, p.SaleID, p.TicketID)) },
		func() (flashsale.Hold, bool, error) { return always(r.Store.Release(ctx, p)) })
	return h, err
}

// Confirm moves a paid ticket's units to sold, once.
func (r *Router) Confirm(ctx context.Context, p flashsale.Part) (flashsale.Hold, error) {
	h, _, err := r.route(ctx, p.SaleID,
		func() (flashsale.Hold, bool, error) { return always(r.mysql.ConfirmStock(ctx, p.SaleID, p.TicketID)) },
		func() (flashsale.Hold, bool, error) { return always(r.Store.Confirm(ctx, p)) })
	return h, err
}

// Retake holds a released ticket's units again if all are available (a late
// payment); ok false when they are not.
func (r *Router) Retake(ctx context.Context, p flashsale.Part) (flashsale.Hold, bool, error) {
	return r.route(ctx, p.SaleID,
		func() (flashsale.Hold, bool, error) { return r.mysql.RetakeStock(ctx, p.SaleID, p.TicketID) },
		func() (flashsale.Hold, bool, error) { return r.Store.Retake(ctx, p) })
}

// Return lowers a paid ticket's units in the sale to p.Quantity, once.
func (r *Router) Return(ctx context.Context, p flashsale.Part) (flashsale.Hold, error) {
	h, _, err := r.route(ctx, p.SaleID,
		func() (flashsale.Hold, bool, error) {
			return always(r.mysql.ReturnStock(ctx, p.SaleID, p.TicketID, p.Quantity))
		},
		func() (flashsale.Hold, bool, error) { return always(r.Store.Return(ctx, p)) })
	return h, err
}

// Stock reads the sale's stock where it is held.
func (r *Router) Stock(ctx context.Context, saleID string) (flashsale.StockLevel, error) {
	mysql, err := r.inMySQL(ctx, saleID)
	if err != nil {
		return flashsale.StockLevel{}, err
	}
	if mysql {
		return r.mysql.StockOf(ctx, saleID)
	}
	return r.Store.Stock(ctx, saleID)
}
