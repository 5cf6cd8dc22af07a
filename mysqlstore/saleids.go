package mysqlstore

import (
	"context"
	"fmt"
)

// SaleIDs returns the id of every sale (an index-only scan of the primary
// key). The catalog keeps them to answer unknown sale ids without a query each.
func (s *Store) SaleIDs(ctx context.Context) ([]string, error) {
	ids, err := queryStrings(ctx, s.meta, `SELECT id FROM sales`)
	if err != nil {
		return nil, fmt.Errorf("mysqlstore: sale ids: %w", err)
	}
	return ids, nil
}
