package mysqlstore

import (
	"context"
	"fmt"
)

// SaleIDs returns the id of every sale (an index-only scan of the primary
// key). The catalog keeps them to answer unknown sale ids without a query each.
func (s *Store) SaleIDs(ctx context.Context) ([]string, error) {
	rows, err := s.meta.QueryContext(ctx, `SELECT id FROM sales`)
	if err != nil {
		return nil, fmt.Errorf("mysqlstore: sale ids: %w", err)
	}
	defer rows.Close()
	var ids []string
	for rows.Next() {
		var id string
		if err := rows.Scan(&id); err != nil {
			return nil, fmt.Errorf("mysqlstore: sale ids: %w", err)
		}
		ids = append(ids, id)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("mysqlstore: sale ids: %w", err)
	}
	return ids, nil
}
