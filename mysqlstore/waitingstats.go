package mysqlstore

import (
	"context"
	"fmt"

	"github.com/flashsale/flashsale"
)

// LineReleased counts the tickets the releaser released from the sale's
// line into the pipeline (status queued, then admitted once seen decided),
// for the operators' figures. It reads ix_status over the released rows
// only: at most the units the line was given (the sale's stock, plus the
// units given back and the tickets a worker still refused), never the
// waiting or ended rows of a large line.
func (s *Store) LineReleased(ctx context.Context, saleID string) (int, error) {
	var n int
	err := s.meta.QueryRowContext(ctx, `SELECT COUNT(*) FROM waiting_line WHERE sale_id = ? AND status IN (?, ?)`,
		saleID, string(flashsale.TicketQueued), lineAdmitted).Scan(&n)
	if err != nil {
		return 0, fmt.Errorf("mysqlstore: line released: %w", err)
	}
	return n, nil
}
