package mysqlstore

import (
	"context"
	"fmt"

	"github.com/flashsale/flashsale"
)

// SaleTickets returns every ticket of the sale that MySQL decided, from
// every shard's primary (a rebuild must not read a lagging replica): one per
// order row of the sale, in any status, with its quantity there less what
// was returned, and one per recorded outcome (sold_out, failed) of a ticket
// whose first sale it is (a bundle's outcome names its first sale only).
// It is what a rebuild of the sale's Redis keys merges (see redisstore's
// rebuild.go).
func (s *Store) SaleTickets(ctx context.Context, saleID string) ([]*flashsale.Ticket, error) {
	var all []*flashsale.Ticket
	for i, db := range s.shards {
		if err := queryRows(ctx, db, func(r scanner) error {
			t := &flashsale.Ticket{}
			var q int
			err := r.Scan(&t.ID, &t.UserID, &t.Status, &q)
			t.SetLines([]flashsale.Line{{SaleID: saleID, Quantity: q}})
			all = append(all, t)
			return err
		}, `SELECT order_id, user_id, status, quantity - returned FROM orders WHERE sale_id = ?
			UNION ALL
			SELECT ticket_id, user_id, status, quantity FROM ticket_outcomes WHERE sale_id = ? AND status <> '`+decisionOrdered+`'`,
			saleID, saleID); err != nil {
			return nil, fmt.Errorf("mysqlstore: tickets of sale %s on shard %d: %w", saleID, i, err)
		}
	}
	return all, nil
}

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
