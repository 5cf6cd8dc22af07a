// Package mysqlstore is the book of record on MySQL/MariaDB: sales and reservations
// in the meta database; orders, ticket outcomes and the transactional outbox on N
// order shards, a user's rows on shard flashsale.ShardOf(userID, N). The list of
// shards is recorded in the meta database by Migrate, and compared with the
// record by Migrate and Store.CheckShards (shardlist.go says how and why).
//
// Driver errors are translated here: a duplicate key becomes flashsale.ErrConflict
// (or a per-row outcome), a deadlock is retried, a missing row is
// flashsale.ErrNotFound. Nothing above this package sees a *mysql.MySQLError.
package mysqlstore

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/go-sql-driver/mysql"

	"github.com/flashsale/flashsale"
	"github.com/flashsale/flashsale/internal/groupcommit"
	"github.com/flashsale/flashsale/service"
)

// Config says where the databases are.
type Config struct {
	// MetaDSN is the meta database (sales, reservations). Required.
	MetaDSN string
	// ShardDSNs are the order shards, in order; their order and count are part
	// of the hash that places users, so they never change: Migrate records the
	// list in the meta database and Store.CheckShards compares with the record
	// (shardlist.go). At least one.
	ShardDSNs []string
	// MaxOpenConns caps each database's pool. Default 32.
	MaxOpenConns int
	// ReadConns caps each shard's pool of API reads (a user's order or
	// ticket), kept apart from the pool the worker commits orders through, so
	// that a flood of reads queues behind its own small pool and never takes
	// the connections commits need. Default 8.
	ReadConns int
	// PayGroup is the most payments that share one transaction (Store.Settle,
	// which binds their payment ids in one statement too), and payment ids
	// bound in one statement (Store.BindPayment): those that
	// come while one is being applied share the next (a group commit, see
	// internal/groupcommit). Default 64; 1: each payment alone.
	PayGroup int
}

func (c *Config) validate() error {
	if c.MetaDSN == "" {
		return errors.New("mysqlstore: MetaDSN is required")
	}
	if len(c.ShardDSNs) == 0 {
		return errors.New("mysqlstore: at least one shard DSN is required")
	}
	if c.MaxOpenConns == 0 {
		c.MaxOpenConns = 32
	}
	if c.ReadConns == 0 {
		c.ReadConns = 8
	}
	if c.PayGroup == 0 {
		c.PayGroup = 64
	}
	if c.MaxOpenConns < 1 || c.ReadConns < 1 || c.PayGroup < 1 {
		return errors.New("mysqlstore: MaxOpenConns, ReadConns and PayGroup must be positive")
	}
	return nil
}

// Store is the MySQL book of record. It is safe for concurrent use.
type Store struct {
	meta    *sql.DB
	shards  []*sql.DB
	readers []*sql.DB // per shard: the pool of API reads (see Config.ReadConns)
	names   []string  // database names, meta first, for readiness reports
	labels  []string  // per shard: its database and address (shardLabel), for the shard list's messages

	saleCache sync.Map // sale id -> *flashsale.Sale (sales never change)
	allotted  sync.Map // allotKey -> struct{}: the allotment row exists

	written []chan struct{} // per shard: a token once this process committed outbox rows (OutboxWritten)

	entries groupcommit.Group[lineEntry, lineEntered] // EnterLine's batches (see enterLines)
	ranks   lineRanks                                 // the lines' snapshots for LinePosition

	pays  []*groupcommit.Group[payCall, payAnswer] // per shard: payment notifications (Settle) sharing transactions (nil: each alone)
	binds *groupcommit.Group[bindCall, struct{}]   // payment ids bound together (nil: each alone)
}

// parseDSN applies the settings this package relies on: UTC times parsed into
// time.Time, client-side interpolation (one round trip per statement) and bounded
// network timeouts so that a killed connection is noticed.
func parseDSN(dsn string) (*mysql.Config, error) {
	cfg, err := mysql.ParseDSN(dsn)
	if err != nil {
		return nil, fmt.Errorf("mysqlstore: bad DSN: %w", err)
	}
	cfg.ParseTime = true
	cfg.Loc = time.UTC
	cfg.InterpolateParams = true
	if cfg.Timeout == 0 {
		cfg.Timeout = 5 * time.Second
	}
	if cfg.ReadTimeout == 0 {
		cfg.ReadTimeout = 30 * time.Second
	}
	if cfg.WriteTimeout == 0 {
		cfg.WriteTimeout = 30 * time.Second
	}
	return cfg, nil
}

// openDB opens a pool of at most maxOpen connections to dsn (it connects
// lazily) and returns it with the parsed DSN.
func openDB(dsn string, maxOpen int) (*sql.DB, *mysql.Config, error) {
	cfg, err := parseDSN(dsn)
	if err != nil {
		return nil, nil, err
	}
	connector, err := mysql.NewConnector(cfg)
	if err != nil {
		return nil, nil, fmt.Errorf("mysqlstore: %w", err)
	}
	db := sql.OpenDB(connector)
	db.SetMaxOpenConns(maxOpen)
	db.SetMaxIdleConns(maxOpen)
	db.SetConnMaxLifetime(30 * time.Minute)
	return db, cfg, nil
}

// Open connects to the meta database and every shard. It does not migrate,
// and it does not compare the shard list with the record: see CheckShards.
func Open(cfg Config) (*Store, error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	s := &Store{}
	s.entries.Run = s.enterLines
	meta, mcfg, err := openDB(cfg.MetaDSN, cfg.MaxOpenConns)
	if err != nil {
		return nil, err
	}
	s.meta, s.names = meta, []string{mcfg.DBName}
	if cfg.PayGroup > 1 {
		s.binds = &groupcommit.Group[bindCall, struct{}]{Run: s.bindPayments, Max: cfg.PayGroup}
	}
	for _, dsn := range cfg.ShardDSNs {
		db, scfg, err := openDB(dsn, cfg.MaxOpenConns)
		if err != nil {
			s.Close()
			return nil, err
		}
		s.shards = append(s.shards, db)
		s.names = append(s.names, scfg.DBName)
		s.labels = append(s.labels, shardLabel(scfg))
		if db, _, err = openDB(dsn, cfg.ReadConns); err != nil {
			s.Close()
			return nil, err
		}
		s.readers = append(s.readers, db)
		s.written = append(s.written, make(chan struct{}, 1))
		if cfg.PayGroup > 1 {
			shard := len(s.shards) - 1
			s.pays = append(s.pays, &groupcommit.Group[payCall, payAnswer]{Max: cfg.PayGroup,
				Run: func(ctx context.Context, calls []payCall) ([]groupcommit.Result[payAnswer], error) {
					return s.payGroup(ctx, shard, calls)
				}})
		}
	}
	return s, nil
}

// OutboxWritten delivers a token after this process committed outbox rows
// on shard (one token stands for any number of commits since the last one
// was taken), so that a relay in the process need not poll an idle outbox
// often. Rows other processes write give no token.
func (s *Store) OutboxWritten(shard int) <-chan struct{} { return s.written[shard] }

// outboxWritten signals OutboxWritten's readers; it never blocks.
func (s *Store) outboxWritten(shard int) {
	select {
	case s.written[shard] <- struct{}{}:
	default:
	}
}

// Close closes every pool.
func (s *Store) Close() error {
	var errs []error
	for _, db := range append(append([]*sql.DB{s.meta}, s.shards...), s.readers...) {
		if db != nil {
			errs = append(errs, db.Close())
		}
	}
	return errors.Join(errs...)
}

// Shards is the number of order shards.
func (s *Store) Shards() int { return len(s.shards) }

// ShardOf is the shard index holding userID's orders.
func (s *Store) ShardOf(userID string) int { return flashsale.ShardOf(userID, len(s.shards)) }

// Ping checks every database and names the ones that do not answer.
func (s *Store) Ping(ctx context.Context) error {
	var failed []string
	for i, db := range append([]*sql.DB{s.meta}, s.shards...) {
		if err := db.PingContext(ctx); err != nil {
			failed = append(failed, "mysql:"+s.names[i])
		}
	}
	if len(failed) > 0 {
		return fmt.Errorf("%s not answering", strings.Join(failed, ", "))
	}
	return nil
}

const (
	errDupKey   = 1062
	errDeadlock = 1213
	errLockWait = 1205
)

func isMySQLError(err error, numbers ...uint16) bool {
	var me *mysql.MySQLError
	if !errors.As(err, &me) {
		return false
	}
	for _, n := range numbers {
		if me.Number == n {
			return true
		}
	}
	return false
}

// inTx runs fn in a transaction, retrying deadlocks and lock wait time-outs a few
// times with a short backoff. fn must be safe to run again.
func inTx(ctx context.Context, db *sql.DB, fn func(*sql.Tx) error) error {
	backoff := 5 * time.Millisecond
	for attempt := 0; ; attempt++ {
		err := func() error {
			tx, err := db.BeginTx(ctx, nil)
			if err != nil {
				return err
			}
			if err := fn(tx); err != nil {
				tx.Rollback()
				return err
			}
			return tx.Commit()
		}()
		if err == nil || attempt >= 4 || !isMySQLError(err, errDeadlock, errLockWait) {
			return err
		}
		if !service.Sleep(ctx, backoff) {
			return ctx.Err()
		}
		backoff *= 2
	}
}

// queryStrings runs a query whose rows are one string column and returns
// them in order. Its errors are the driver's, unwrapped: callers wrap them.
func queryStrings(ctx context.Context, db *sql.DB, query string, args ...any) ([]string, error) {
	rows, err := db.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var v string
		if err := rows.Scan(&v); err != nil {
			return nil, err
		}
		out = append(out, v)
	}
	return out, rows.Err()
}

// placeholders returns "(?,?,?),(?,?,?)" for rows rows of cols columns.
func placeholders(rows, cols int) string {
	one := "(" + strings.TrimSuffix(strings.Repeat("?,", cols), ",") + ")"
	return strings.TrimSuffix(strings.Repeat(one+",", rows), ",")
}
