package mysqlstore

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"time"

	"github.com/flashsale/flashsale/service"
)

// Leases are service.Leases in the meta database: one row per lease naming its
// holder's random token and when it ends, by the database's clock (no host
// clock decides who holds a lease). The singleton jobs whose work is in MySQL
// (each shard's outbox relay, the expiry sweeper) take their lease here rather
// than in Redis: a lease lives where its job works, so Redis away, or back
// from an older snapshot with an old holder's lease in it, never stops the
// events and the expiries that MySQL alone can carry on with.
type Leases struct{ s *Store }

// Leases returns the lease store in the meta database.
func (s *Store) Leases() *Leases { return &Leases{s: s} }

// Obtain implements service.Leases: the row is taken when it is absent or
// ended, in one statement.
func (l *Leases) Obtain(ctx context.Context, key string, ttl time.Duration) (service.Lease, error) {
	b := make([]byte, 16)
	rand.Read(b)
	token := hex.EncodeToString(b)
	us := ttl.Microseconds()
	if _, err := l.s.meta.ExecContext(ctx, `INSERT INTO leases (name, token, until) VALUES (?, ?, UTC_TIMESTAMP(6) + INTERVAL ? MICROSECOND)
		ON DUPLICATE KEY UPDATE token = IF(until < UTC_TIMESTAMP(6), VALUES(token), token), until = IF(token = VALUES(token), VALUES(until), until)`,
		key, token, us); err != nil {
		return nil, fmt.Errorf("mysqlstore: obtain lease %s: %w", key, err)
	}
	var holder string
	if err := l.s.meta.QueryRowContext(ctx, `SELECT token FROM leases WHERE name = ?`, key).Scan(&holder); err != nil {
		return nil, fmt.Errorf("mysqlstore: obtain lease %s: %w", key, err)
	}
	if holder != token {
		return nil, service.ErrNotObtained
	}
	return &lease{l: l, key: key, token: token}, nil
}

type lease struct {
	l          *Leases
	key, token string
}

// Refresh implements service.Lease: only while this holder still has the row
// and it has not ended.
func (le *lease) Refresh(ctx context.Context, ttl time.Duration) error {
	res, err := le.l.s.meta.ExecContext(ctx, `UPDATE leases SET until = UTC_TIMESTAMP(6) + INTERVAL ? MICROSECOND
		WHERE name = ? AND token = ? AND until >= UTC_TIMESTAMP(6)`, ttl.Microseconds(), le.key, le.token)
	if err != nil {
		return fmt.Errorf("mysqlstore: refresh lease %s: %w", le.key, err)
	}
	if n, err := res.RowsAffected(); err != nil || n != 1 {
		return fmt.Errorf("%w: %s (mysqlstore)", service.ErrLeaseLost, le.key)
	}
	return nil
}

// Release implements service.Lease.
func (le *lease) Release(ctx context.Context) error {
	if _, err := le.l.s.meta.ExecContext(ctx, `DELETE FROM leases WHERE name = ? AND token = ?`, le.key, le.token); err != nil {
		return fmt.Errorf("mysqlstore: release lease %s: %w", le.key, err)
	}
	return nil
}
