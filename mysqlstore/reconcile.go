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
	var orders []*flashsale.Order
	for i, db := range s.shards {
		rows, err := db.QueryContext(ctx, `SELECT `+orderColumns+` FROM orders WHERE sale_id = ?`, saleID)
		if err != nil {
			return nil, fmt.Errorf("mysqlstore: sale orders on shard %d: %w", i, err)
		}
		for rows.Next() {
			o, err := scanOrder(rows)
			if err != nil {
				rows.Close()
				return nil, fmt.Errorf("mysqlstore: sale orders on shard %d: %w", i, err)
			}
			orders = append(orders, o)
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return nil, fmt.Errorf("mysqlstore: sale orders on shard %d: %w", i, err)
		}
	}
	return orders, nil
}
