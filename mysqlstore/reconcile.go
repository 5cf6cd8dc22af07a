package mysqlstore

import (
	"context"
	"fmt"

	"github.com/flashsale/flashsale"
)

// SaleOrders returns every order of the sale from every shard, whatever its
// status: what the reconciler compares Redis's per-ticket holds with. It reads
// through the (sale_id, status) index; a sale's orders are bounded by its stock
// plus the orders that were given up.
func (s *Store) SaleOrders(ctx context.Context, saleID string) ([]*flashsale.Order, error) {
	orders, err := s.ordersOfSale(ctx, saleID, "")
	if err != nil {
		return nil, fmt.Errorf("mysqlstore: sale orders: %w", err)
	}
	return orders, nil
}
