package mysqlstore

import (
	"context"
	"fmt"
	"time"

	"github.com/flashsale/flashsale"
)

// UnsentEvents returns up to limit outbox rows of shard not yet confirmed by the
// broker, in the order they were written (so an order's events stay in order).
func (s *Store) UnsentEvents(ctx context.Context, shard, limit int) ([]flashsale.OutboxEvent, error) {
	rows, err := s.shards[shard].QueryContext(ctx,
		`SELECT id, event_id, event_type, payload FROM outbox WHERE sent_at IS NULL ORDER BY id LIMIT ?`, limit)
	if err != nil {
		return nil, fmt.Errorf("mysqlstore: unsent events: %w", err)
	}
	defer rows.Close()
	var out []flashsale.OutboxEvent
	for rows.Next() {
		var e flashsale.OutboxEvent
		var typ string
		if err := rows.Scan(&e.ID, &e.EventID, &typ, &e.Payload); err != nil {
			return nil, fmt.Errorf("mysqlstore: unsent events: %w", err)
		}
		e.Type = flashsale.EventType(typ)
		out = append(out, e)
	}
	return out, rows.Err()
}

// MarkSent records that the broker confirmed the rows ids of shard.
func (s *Store) MarkSent(ctx context.Context, shard int, ids []int64, now time.Time) error {
	if len(ids) == 0 {
		return nil
	}
	args := make([]any, 0, len(ids)+1)
	args = append(args, now.UTC())
	for _, id := range ids {
		args = append(args, id)
	}
	_, err := s.shards[shard].ExecContext(ctx, `UPDATE outbox SET sent_at = ? WHERE id IN (`+
		marks(len(ids))+`)`, args...)
	if err != nil {
		return fmt.Errorf("mysqlstore: mark sent: %w", err)
	}
	return nil
}

// PurgeSent deletes up to 1,000 rows of shard sent before before; it returns how
// many it deleted.
func (s *Store) PurgeSent(ctx context.Context, shard int, before time.Time) (int64, error) {
	res, err := s.shards[shard].ExecContext(ctx, `DELETE FROM outbox WHERE sent_at IS NOT NULL AND sent_at < ? LIMIT 1000`, before.UTC())
	if err != nil {
		return 0, fmt.Errorf("mysqlstore: purge sent: %w", err)
	}
	return res.RowsAffected()
}
