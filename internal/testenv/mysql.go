package testenv

import (
	"context"
	"database/sql"
	"fmt"
	"strings"
	"testing"
	"time"

	_ "github.com/go-sql-driver/mysql" // the driver the DSNs below are for
)

// Databases are one test's own meta and shard databases on the local MariaDB.
type Databases struct {
	Meta   string
	Shards []string
}

// DSN is the DSN of database name.
func DSN(name string) string {
	return fmt.Sprintf("root@tcp(%s)/%s?parseTime=true", MySQLServer(), name)
}

// MetaDSN and ShardDSNs are the DSNs to configure the system with.
func (d Databases) MetaDSN() string { return DSN(d.Meta) }

// ShardDSNs returns the shard DSNs in order.
func (d Databases) ShardDSNs() []string {
	out := make([]string, len(d.Shards))
	for i, s := range d.Shards {
		out[i] = DSN(s)
	}
	return out
}

// NewDatabases names fresh databases (created by migrate) and drops them when the
// test ends.
func NewDatabases(t testing.TB, shards int) Databases {
	t.Helper()
	Require(t, MySQLServer())
	base := Name("fs_")
	d := Databases{Meta: base + "_meta"}
	for i := 0; i < shards; i++ {
		d.Shards = append(d.Shards, fmt.Sprintf("%s_s%d", base, i))
	}
	t.Cleanup(func() {
		db, err := sql.Open("mysql", DSN(""))
		if err != nil {
			return
		}
		defer db.Close()
		for _, name := range append([]string{d.Meta}, d.Shards...) {
			db.Exec("DROP DATABASE IF EXISTS `" + name + "`")
		}
	})
	return d
}

// LockRows runs query (a SELECT ... FOR UPDATE) with args in a transaction of
// its own on each of dbs, and keeps the rows it locked until release, which
// also runs at cleanup. A query that selects no row on some db fails the test.
// Tests use it to hold a transaction of the system under test at a chosen
// statement, to widen a race's window.
func LockRows(t testing.TB, dbs []*sql.DB, query string, args ...any) (release func()) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var txs []*sql.Tx
	release = func() {
		for _, tx := range txs {
			tx.Rollback()
		}
		txs = nil
	}
	t.Cleanup(release)
	for i, db := range dbs {
		tx, err := db.BeginTx(context.Background(), nil)
		if err != nil {
			t.Fatalf("database %d: begin: %v", i, err)
		}
		txs = append(txs, tx)
		rows, err := tx.QueryContext(ctx, query, args...)
		if err != nil {
			t.Fatalf("database %d: %s: %v", i, query, err)
		}
		found := rows.Next()
		rows.Close()
		if !found {
			t.Fatalf("database %d: %s: no row to lock", i, query)
		}
	}
	return release
}

// AwaitWrites polls, up to timeout, until n writes (statements other than
// SELECT) are in flight on the databases named, and returns how many it saw
// last. db is any connection to the server. While LockRows holds the rows
// they write, such statements stay in flight waiting for the lock. It reads
// the process list, which is live: information_schema.innodb_trx is a cache
// that MariaDB refreshes only after 100 ms without a read, so polling it
// often never sees it change.
func AwaitWrites(db *sql.DB, names []string, n int, timeout time.Duration) int {
	args := make([]any, len(names))
	for i, name := range names {
		args[i] = name
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	got := 0
	for {
		err := db.QueryRowContext(ctx, `SELECT COUNT(*) FROM information_schema.processlist
			WHERE command = 'Query' AND info NOT LIKE 'SELECT%' AND db IN (?`+strings.Repeat(",?", len(args)-1)+`)`, args...).Scan(&got)
		if err == nil && got >= n {
			return got
		}
		select {
		case <-ctx.Done():
			return got
		case <-tick.C:
		}
	}
}
