package reconcile

import (
	"context"
	"fmt"
	"time"

	"github.com/flashsale/flashsale"
)

// Check compares every sale that ends after since, without repairing.
func (r *Reconciler) Check(ctx context.Context, since time.Time) (*Report, error) {
	sales, err := r.cfg.Book.ListSales(ctx, since)
	if err != nil {
		return nil, err
	}
	rep := &Report{CheckedAt: r.cfg.Now().UTC()}
	for _, sale := range sales {
		s, err := r.checkSale(ctx, sale)
		if err != nil {
			return nil, fmt.Errorf("reconcile: sale %s: %w", sale.ID, err)
		}
		rep.Sales = append(rep.Sales, s)
	}
	rep.recount()
	return rep, nil
}

// checkSale reads one sale's sides, Redis first (see the package comment),
// and compares them: diffSale, or diffInventorySale for a sale with
// inventory "mysql", and the stock cap (diffCap) for every sale. It first
// delivers the sale's stock-cap transfers a crash left in flight, so that
// MySQL is whole.
func (r *Reconciler) checkSale(ctx context.Context, sale *flashsale.Sale) (*SaleReport, error) {
	if _, err := r.cfg.Book.CompleteTransfers(ctx, sale.ID); err != nil {
		return nil, err
	}
	snap, err := r.cfg.Stock.Snapshot(ctx, sale.ID)
	if err != nil {
		return nil, err
	}
	var rep *SaleReport
	switch {
	case sale.Inventory == flashsale.InventoryMySQL:
		inv, err := r.cfg.Book.Inventory(ctx, sale.ID)
		if err != nil {
			return nil, err
		}
		orders, err := r.cfg.Book.SaleOrders(ctx, sale.ID)
		if err != nil {
			return nil, err
		}
		rep = diffInventorySale(sale, inv, snap, partsIn(sale.ID, orders))
	case !snap.Loaded:
		rep = newSaleReport(sale)
		rep.Status, rep.Note = SaleNotLoaded, "not loaded in Redis; rebuilt from MySQL on first use"
	default:
		orders, err := r.cfg.Book.SaleOrders(ctx, sale.ID)
		if err != nil {
			return nil, err
		}
		rep = diffSale(sale, snap, partsIn(sale.ID, orders))
	}
	c, err := r.cfg.Book.Cap(ctx, sale.ID)
	if err != nil {
		return nil, err
	}
	rep.addCap(c)
	if rep.MySQL != nil {
		r.oversold.WithLabelValues(sale.ID).Add(0) // the sale's series exists, at 0 until it is ever oversold
		if rep.MySQL.Available < 0 {
			r.alarmOversold(sale, *rep.MySQL)
		}
	}
	return rep, nil
}

// partsIn returns the orders' parts in the sale. SaleOrders gives one order
// per part, with that sale's item only; a whole order (a bundle) gives its
// part in the sale too.
func partsIn(saleID string, orders []*flashsale.Order) []flashsale.Part {
	parts := make([]flashsale.Part, 0, len(orders))
	for _, o := range orders {
		for _, p := range o.Parts() {
			if p.SaleID == saleID {
				parts = append(parts, p)
			}
		}
	}
	return parts
}

// alarmOversold sets flashsale_oversold_units for the sale and logs an error:
// orders hold more units than the sale's stock, which must never happen.
func (r *Reconciler) alarmOversold(sale *flashsale.Sale, mysql flashsale.StockLevel) {
	r.oversold.WithLabelValues(sale.ID).Set(float64(-mysql.Available))
	r.log.Error("OVERSOLD: more units in orders than the sale's stock", "sale", sale.ID, "stock", sale.Stock,
		"in_orders", mysql.Held+mysql.Sold, "over", -mysql.Available)
}
