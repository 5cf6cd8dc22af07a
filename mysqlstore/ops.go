package mysqlstore

import (
	"context"
	"database/sql"
	"fmt"
	"time"
)

// OutboxBacklog returns how many outbox rows of shard the broker has not
// confirmed yet (sent_at IS NULL; an index range scan).
func (s *Store) OutboxBacklog(ctx context.Context, shard int) (int, error) {
	var n int
	if err := s.shards[shard].QueryRowContext(ctx, `SELECT COUNT(*) FROM outbox WHERE sent_at IS NULL`).Scan(&n); err != nil {
		return 0, fmt.Errorf("mysqlstore: outbox backlog: %w", err)
	}
	return n, nil
}

// Overdue returns how many unpaid orders of shard are past their pay_by at now,
// and how long past it the oldest one is (0 when none): the expiry lag as it
// stands (an index range scan on (status, pay_by)).
func (s *Store) Overdue(ctx context.Context, shard int, now time.Time) (int, time.Duration, error) {
	var n int
	var oldest sql.NullTime
	err := s.shards[shard].QueryRowContext(ctx,
		`SELECT COUNT(*), MIN(pay_by) FROM orders WHERE status = 'pending_payment' AND pay_by <= ?`, now.UTC()).Scan(&n, &oldest)
	if err != nil {
		return 0, 0, fmt.Errorf("mysqlstore: overdue orders: %w", err)
	}
	if !oldest.Valid {
		return n, 0, nil
	}
	return n, max(now.Sub(oldest.Time), 0), nil
}
