package bench

import (
	"cmp"
	"context"
	"database/sql"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/go-sql-driver/mysql"
)

// The MySQL side of the "Cost of an order" section: the growth of the
// server's global status counters between the two readings (SHOW GLOBAL
// STATUS), per order: statements by kind (Com_*), fsyncs (Innodb_data_fsyncs,
// and Innodb_os_log_fsyncs where the server has it) and row-lock waits.
// The counters are the whole server's: with both shards on one server they
// cover both, and any other work on it counts too.

// statusReading is one SHOW GLOBAL STATUS, reduced to the counters the
// section reads, by name.
type statusReading map[string]int64

// Counters of the section besides Com_*.
const (
	statusDataFsyncs   = "Innodb_data_fsyncs"
	statusLogFsyncs    = "Innodb_os_log_fsyncs"
	statusRowLockWaits = "Innodb_row_lock_waits"
	statusRowLockTime  = "Innodb_row_lock_time" // ms
)

// keepStatus says whether a status variable is one the section reads.
func keepStatus(name string) bool {
	switch name {
	case statusDataFsyncs, statusLogFsyncs, statusRowLockWaits, statusRowLockTime:
		return true
	}
	return strings.HasPrefix(name, "Com_")
}

// notStatements are the Com_* counters that are not statements of their own:
// a prepared statement's protocol steps (its execution also counts under the
// statement's kind, Com_select etc.), pings and other admin commands, and the
// bench's own status readings.
func notStatement(kind string) bool {
	return strings.HasPrefix(kind, "stmt_") || kind == "admin_commands" || kind == "show_status"
}

// mysqlProbe reads a MySQL server's global status.
type mysqlProbe struct {
	db   *sql.DB
	addr string
}

// newMySQLProbe opens (lazily) a connection pool of one to the server of dsn.
func newMySQLProbe(dsn string) (*mysqlProbe, error) {
	cfg, err := mysql.ParseDSN(dsn)
	if err != nil {
		return nil, fmt.Errorf("--mysql-dsn: %w", err)
	}
	c, err := mysql.NewConnector(cfg)
	if err != nil {
		return nil, fmt.Errorf("--mysql-dsn: %w", err)
	}
	db := sql.OpenDB(c)
	db.SetMaxOpenConns(1)
	return &mysqlProbe{db: db, addr: cfg.Addr}, nil
}

func (p *mysqlProbe) close() { _ = p.db.Close() }

// read takes one reading.
func (p *mysqlProbe) read(ctx context.Context) (statusReading, error) {
	rows, err := p.db.QueryContext(ctx, "SHOW GLOBAL STATUS")
	if err != nil {
		return nil, fmt.Errorf("SHOW GLOBAL STATUS on %s: %w", p.addr, err)
	}
	defer rows.Close()
	out := statusReading{}
	for rows.Next() {
		var name, value string
		if err := rows.Scan(&name, &value); err != nil {
			return nil, fmt.Errorf("SHOW GLOBAL STATUS on %s: %w", p.addr, err)
		}
		addStatus(out, name, value)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("SHOW GLOBAL STATUS on %s: %w", p.addr, err)
	}
	return out, nil
}

// addStatus keeps one status row if the section reads it and its value is a
// counter.
func addStatus(r statusReading, name, value string) {
	if !keepStatus(name) {
		return
	}
	if v, err := strconv.ParseInt(value, 10, 64); err == nil {
		r[name] = v
	}
}

// StatementKind is one kind of statement and how many ran.
type StatementKind struct {
	// Kind is the Com_* counter's name without "Com_" (select, insert,
	// update, commit, begin, ...).
	Kind     string  `json:"kind"`
	Count    int64   `json:"count"`
	PerOrder float64 `json:"per_order"`
}

// MySQLCost is what the run cost the MySQL server, per order.
type MySQLCost struct {
	// Server is the address read (--mysql-dsn's).
	Server string `json:"server"`
	// Available is false when a reading failed (or a counter went down: the
	// server restarted); Reason says why.
	Available bool   `json:"available"`
	Reason    string `json:"reason,omitempty"`
	// Statements is the statements run: every Com_* counter's growth but a
	// prepared statement's protocol steps, admin commands (pings) and the
	// bench's SHOW STATUS. Kinds lists them, most first.
	Statements         int64           `json:"statements"`
	StatementsPerOrder *float64        `json:"statements_per_order,omitempty"`
	Kinds              []StatementKind `json:"kinds,omitempty"`
	// Fsyncs is Innodb_data_fsyncs + Innodb_os_log_fsyncs (where served).
	Fsyncs         int64    `json:"fsyncs"`
	FsyncsPerOrder *float64 `json:"fsyncs_per_order,omitempty"`
	// RowLockWaits and RowLockTimeMs are InnoDB's row-lock waits and the time
	// spent in them.
	RowLockWaits  int64 `json:"row_lock_waits"`
	RowLockTimeMs int64 `json:"row_lock_time_ms"`
}

// mysqlCost is the growth between two readings over the orders.
func mysqlCost(server string, before, after statusReading, orders int64) *MySQLCost {
	c := &MySQLCost{Server: server}
	d := map[string]int64{}
	for name, v := range after {
		grew := v - before[name]
		if grew < 0 {
			c.Reason = name + " went down between the readings (did the server restart?)"
			return c
		}
		d[name] = grew
	}
	c.Available = true
	for name, n := range d {
		kind, ok := strings.CutPrefix(name, "Com_")
		if !ok || n == 0 || notStatement(kind) {
			continue
		}
		c.Statements += n
		c.Kinds = append(c.Kinds, StatementKind{Kind: kind, Count: n})
	}
	slices.SortFunc(c.Kinds, func(a, b StatementKind) int {
		return cmp.Or(cmp.Compare(b.Count, a.Count), cmp.Compare(a.Kind, b.Kind))
	})
	for i := range c.Kinds {
		if v := ratioPtr(float64(c.Kinds[i].Count), float64(orders), 2); v != nil {
			c.Kinds[i].PerOrder = *v
		}
	}
	c.StatementsPerOrder = ratioPtr(float64(c.Statements), float64(orders), 2)
	c.Fsyncs = d[statusDataFsyncs] + d[statusLogFsyncs]
	c.FsyncsPerOrder = ratioPtr(float64(c.Fsyncs), float64(orders), 2)
	c.RowLockWaits, c.RowLockTimeMs = d[statusRowLockWaits], d[statusRowLockTime]
	return c
}
