package mysqlstore

// The record of the shard list.
//
// A user's shard is flashsale.ShardOf(user_id, N) over the configured list,
// and each shard holds its own allotment of every sale's stock
// (allotments.go). Two processes with different lists place a user on
// different shards and split a sale's stock twice, so the allotments add up to
// more than the stock: an oversell. The list is therefore recorded once, in the
// meta database, and every process compares its own with the record before it
// starts (Store.CheckShards), and every migrate does too (Migrate).
//
// What names a shard is a random id that migrate writes into the shard
// database itself (table shard_identity), not its DSN: the same database
// reached through another host name, port, user or proxy matches (deployments
// and the tests reach shards through proxies), and two different databases
// never match, even where their DSNs look alike (one name on two servers behind
// one address, a database dropped and made again). Only the meta record
// (table shard_list) holds positions, so a first migrate cut short, or two
// racing with different lists, can never leave two records that disagree: the
// first complete INSERT of the whole list wins, and the loser compares with it.
// What it cannot tell apart: a copy of a shard database (a restored backup)
// carries the same id; a list naming one id twice is refused.
//
// Nothing recorded yet (a deployment from before the record, or a new one):
// migrate records the list it is run with, once it checked that the orders
// already on each shard are of users the list places there (up to 100 per
// shard), so that a reordered or resized list is refused even then. A role
// runs the same placement check and starts with a warning: roles migrate
// nothing, and refusing them would stop a deployment upgraded before its
// migrate ran.

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/go-sql-driver/mysql"
	"github.com/google/uuid"

	"github.com/flashsale/flashsale"
)

// ErrShardList is wrapped by the error of a shard list that is not the one
// recorded in the meta database (its message names each position that
// differs, and the recorded list), or that the orders already on the shards
// show to be another list than the one they were written with.
var ErrShardList = errors.New("the shard list is not the one recorded in the meta database")

// shardListAdvice ends the message of a list that differs from the record or
// from the orders' placement.
const shardListAdvice = "A user's shard is hash(user_id) mod N over this list and each shard holds its own part of " +
	"every sale's stock, so processes with another list place users elsewhere and oversell. " +
	"Changing the shard list (resharding) is not supported: start every process with the recorded list"

const (
	errBadDB   = 1049 // unknown database
	errNoTable = 1146
)

// shardLabel names a shard in messages: its database and address, never its
// credentials.
func shardLabel(cfg *mysql.Config) string {
	return cfg.DBName + " at " + cfg.Addr
}

// shardSet is what the record is checked through: the meta database and the
// shards of one configured list, in order.
type shardSet struct {
	meta   *sql.DB
	shards []*sql.DB
	labels []string // per shard, shardLabel
}

// recordedShard is one position of the record.
type recordedShard struct{ id, label string }

// CheckShards compares the store's shard list with the one recorded in the
// meta database: one query on the meta database and one per shard. It never
// writes. A list that differs is an error wrapping ErrShardList. With nothing
// recorded (or no record table: migrate has not run since this version),
// recorded is false and err is nil unless the placement check fails (see the
// comment at the top of this file). Any other error is MySQL's (unreachable,
// timed out) and says nothing about the list.
func (s *Store) CheckShards(ctx context.Context) (recorded bool, err error) {
	set := shardSet{meta: s.meta, shards: s.shards, labels: s.labels}
	rec, err := set.recorded(ctx)
	if err != nil {
		return false, err
	}
	return rec != nil, set.check(ctx, rec)
}

// check compares the shards with the record rec, or, when nothing is
// recorded (rec nil), checks that the orders on them are placed by this list.
func (s shardSet) check(ctx context.Context, rec []recordedShard) error {
	if rec == nil {
		return s.checkPlacement(ctx)
	}
	ids, err := s.identities(ctx)
	if err != nil {
		return err
	}
	return s.compare(ids, rec)
}

// recorded reads the record, in position order: nil when nothing is recorded
// or the table does not exist yet.
func (s shardSet) recorded(ctx context.Context) ([]recordedShard, error) {
	rows, err := s.meta.QueryContext(ctx, "SELECT position, shard_id, label FROM shard_list ORDER BY position")
	if isMySQLError(err, errNoTable) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("mysqlstore: read the shard list: %w", err)
	}
	defer rows.Close()
	var rec []recordedShard
	for rows.Next() {
		var pos int
		var r recordedShard
		if err := rows.Scan(&pos, &r.id, &r.label); err != nil {
			return nil, fmt.Errorf("mysqlstore: read the shard list: %w", err)
		}
		if pos != len(rec) { // written in one statement from 0: a hole is a hand edit
			return nil, fmt.Errorf("%w: the record has no position %d (edited by hand?)", ErrShardList, len(rec))
		}
		rec = append(rec, r)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("mysqlstore: read the shard list: %w", err)
	}
	return rec, nil
}

// identities reads each shard's id: "" for a database with none (it does not
// exist, or was never migrated as a shard by this version).
func (s shardSet) identities(ctx context.Context) ([]string, error) {
	ids := make([]string, len(s.shards))
	for i, db := range s.shards {
		err := db.QueryRowContext(ctx, "SELECT shard_id FROM shard_identity WHERE one = 1").Scan(&ids[i])
		if err != nil && !errors.Is(err, sql.ErrNoRows) && !isMySQLError(err, errBadDB, errNoTable) {
			return nil, fmt.Errorf("mysqlstore: read the identity of shard %d (%s): %w", i, s.labels[i], err)
		}
	}
	return ids, nil
}

// ensureIdentities gives each shard without an id a new random one, keeping
// the id of one that has it (INSERT IGNORE: of two migrates racing, the first
// id stays), and returns every shard's id. The shards must be migrated.
func (s shardSet) ensureIdentities(ctx context.Context) ([]string, error) {
	for i, db := range s.shards {
		if _, err := db.ExecContext(ctx, "INSERT IGNORE INTO shard_identity (one, shard_id, created_at) VALUES (1, ?, ?)",
			uuid.NewString(), time.Now().UTC()); err != nil {
			return nil, fmt.Errorf("mysqlstore: write the identity of shard %d (%s): %w", i, s.labels[i], err)
		}
	}
	return s.identities(ctx)
}

// record writes the list of ids as the record, all positions in one
// statement. When another migrate recorded first, it compares with that
// record instead.
func (s shardSet) record(ctx context.Context, ids []string) error {
	first := map[string]int{}
	for i, id := range ids {
		if j, dup := first[id]; dup {
			return fmt.Errorf("%w: positions %d (%s) and %d (%s) are one database (or a copy of one): each position must be a database of its own",
				ErrShardList, j, s.labels[j], i, s.labels[i])
		}
		first[id] = i
	}
	now := time.Now().UTC()
	args := make([]any, 0, 4*len(ids))
	for i, id := range ids {
		args = append(args, i, id, s.labels[i], now)
	}
	_, err := s.meta.ExecContext(ctx,
		"INSERT INTO shard_list (position, shard_id, label, recorded_at) VALUES "+placeholders(len(ids), 4), args...)
	if isMySQLError(err, errDupKey) {
		rec, err := s.recorded(ctx)
		if err != nil {
			return err
		}
		return s.compare(ids, rec)
	}
	if err != nil {
		return fmt.Errorf("mysqlstore: record the shard list: %w", err)
	}
	return nil
}

// compare returns nil when ids are the recorded list, position by position,
// and otherwise an error wrapping ErrShardList that names every difference.
func (s shardSet) compare(ids []string, rec []recordedShard) error {
	var diffs []string
	if len(ids) != len(rec) {
		diffs = append(diffs, fmt.Sprintf("%d shards configured, %d recorded", len(ids), len(rec)))
	}
	at := make(map[string]int, len(rec))
	for j, r := range rec {
		at[r.id] = j
	}
	for i, id := range ids {
		j, known := at[id]
		switch {
		case known && j == i:
		case id == "":
			diffs = append(diffs, fmt.Sprintf("position %d (%s) is not a recorded shard (its database has no shard identity: it was never migrated as a shard)", i, s.labels[i]))
		case !known:
			diffs = append(diffs, fmt.Sprintf("position %d (%s) is not a recorded shard (shard id %s)", i, s.labels[i], id))
		default:
			diffs = append(diffs, fmt.Sprintf("position %d (%s) is recorded shard %d (%s)", i, s.labels[i], j, rec[j].label))
		}
	}
	for j := len(ids); j < len(rec); j++ {
		diffs = append(diffs, fmt.Sprintf("recorded shard %d (%s) is not configured", j, rec[j].label))
	}
	if len(diffs) == 0 {
		return nil
	}
	list := make([]string, len(rec))
	for j, r := range rec {
		list[j] = fmt.Sprintf("%d: %s", j, r.label)
	}
	return fmt.Errorf("%w: %s. %s: %s", ErrShardList, strings.Join(diffs, "; "), shardListAdvice, strings.Join(list, ", "))
}

// checkPlacement reads up to 100 orders of each shard and refuses the list
// when one of them is of a user the list places on another shard: the orders
// were written with another list. A shard without an orders table (never
// migrated) has nothing to check.
func (s shardSet) checkPlacement(ctx context.Context) error {
	for i, db := range s.shards {
		users, err := sampleUsers(ctx, db)
		if err != nil {
			return fmt.Errorf("mysqlstore: read the orders of shard %d (%s): %w", i, s.labels[i], err)
		}
		for _, u := range users {
			if want := flashsale.ShardOf(u, len(s.shards)); want != i {
				return fmt.Errorf("%w: nothing is recorded yet, but position %d (%s) holds orders of user %q, "+
					"whom a list of %d shards places at position %d: the orders were written with another list. %s",
					ErrShardList, i, s.labels[i], u, len(s.shards), want, shardListAdvice)
			}
		}
	}
	return nil
}

// sampleUsers returns the users of up to 100 orders of a shard; none when the
// database or its orders table does not exist.
func sampleUsers(ctx context.Context, db *sql.DB) ([]string, error) {
	users, err := queryStrings(ctx, db, "SELECT user_id FROM orders LIMIT 100")
	if isMySQLError(err, errBadDB, errNoTable) {
		return nil, nil
	}
	return users, err
}
