package mysqlstore

import (
	"context"
	"fmt"

	"github.com/flashsale/flashsale"
)

// The waiting rooms' lines live in the meta database, table waiting_line (see
// its migration for the columns): one row per ticket that entered a line, its
// line_key giving its place. The line is read in line_key order through
// ux_line; the tickets still waiting through ix_status.

// LineEntries counts the tickets waiting in the sale's line.
func (s *Store) LineEntries(ctx context.Context, saleID string) (int, error) {
	var n int
	err := s.meta.QueryRowContext(ctx, `SELECT COUNT(*) FROM waiting_line WHERE sale_id = ? AND status = ?`,
		saleID, string(flashsale.TicketWaiting)).Scan(&n)
	if err != nil {
		return 0, fmt.Errorf("mysqlstore: line entries: %w", err)
	}
	return n, nil
}

// drawnKeys is the condition on line_key and left_at of a drawn entry of a
// sale that starts at the second argument: entered before starts_at (key
// '0' + score) and still in the line then.
const drawnKeys = `line_key < '1' AND (left_at IS NULL OR left_at >= ?)`

// DrawnEntries counts the entries of the sale's draw: the tickets waiting in
// its line at starts_at.
func (s *Store) DrawnEntries(ctx context.Context, sale *flashsale.Sale) (int, error) {
	var n int
	err := s.meta.QueryRowContext(ctx, `SELECT COUNT(*) FROM waiting_line WHERE sale_id = ? AND `+drawnKeys,
		sale.ID, sale.StartsAt).Scan(&n)
	if err != nil {
		return 0, fmt.Errorf("mysqlstore: drawn entries: %w", err)
	}
	return n, nil
}

// DrawScores returns at most limit scores of the sale's draw greater than
// after ("" for the first), in ascending order.
func (s *Store) DrawScores(ctx context.Context, sale *flashsale.Sale, after string, limit int) ([]string, error) {
	keys, err := queryStrings(ctx, s.meta, `SELECT line_key FROM waiting_line
		WHERE sale_id = ? AND line_key > ? AND `+drawnKeys+` ORDER BY line_key LIMIT ?`,
		sale.ID, "0"+after, sale.StartsAt, limit)
	if err != nil {
		return nil, fmt.Errorf("mysqlstore: draw scores: %w", err)
	}
	for i, k := range keys {
		keys[i] = k[1:]
	}
	return keys, nil
}
