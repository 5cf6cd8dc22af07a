package mysqlstore

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"strings"
	"sync"
	"testing"

	"github.com/pressly/goose/v3"

	"github.com/flashsale/flashsale"
	"github.com/flashsale/flashsale/internal/testenv"
)

var discard = slog.New(slog.NewTextHandler(io.Discard, nil))

// viaLocalhost is dsn with its address written as localhost instead of
// 127.0.0.1: the same database reached through another address form.
func viaLocalhost(t *testing.T, dsn string) string {
	t.Helper()
	if !strings.Contains(dsn, "tcp(127.0.0.1:") {
		t.Fatalf("DSN %q is not on 127.0.0.1", dsn)
	}
	return strings.Replace(dsn, "tcp(127.0.0.1:", "tcp(localhost:", 1)
}

// checkShards opens a store on meta and shards and returns CheckShards's answer.
func checkShards(t *testing.T, meta string, shards ...string) (bool, error) {
	t.Helper()
	s, err := Open(Config{MetaDSN: meta, ShardDSNs: shards})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	return s.CheckShards(context.Background())
}

// recordedIDs reads the record in the meta database, in position order.
func recordedIDs(t *testing.T, meta string) []string {
	t.Helper()
	db, err := sql.Open("mysql", meta)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	ids, err := queryStrings(context.Background(), db, "SELECT shard_id FROM shard_list ORDER BY position")
	if err != nil {
		t.Fatal(err)
	}
	return ids
}

// refused asserts that err is a shard list refusal whose message holds every
// one of want.
func refused(t *testing.T, what string, err error, want ...string) {
	t.Helper()
	if !errors.Is(err, ErrShardList) {
		t.Errorf("%s: err = %v, want ErrShardList", what, err)
		return
	}
	for _, w := range want {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("%s: message %q does not say %q", what, err, w)
		}
	}
	if !strings.Contains(err.Error(), "resharding) is not supported") {
		t.Errorf("%s: message %q does not say resharding is not supported", what, err)
	}
}

// The first migrate records the list; the same list (through another address
// form too) migrates and checks again; a reordered, shorter, longer list, or
// one naming a shard twice, is refused by migrate and by CheckShards with the
// difference named, and changes neither the record nor any shard.
func TestShardListRecordedAndChecked(t *testing.T) {
	dbs := testenv.NewDatabases(t, 3)
	ctx := context.Background()
	meta, dsn := dbs.MetaDSN(), dbs.ShardDSNs()
	s0, s1, s2 := dsn[0], dsn[1], dsn[2]
	names := dbs.Shards

	if err := Migrate(ctx, Config{MetaDSN: meta, ShardDSNs: []string{s0, s1}}, discard); err != nil {
		t.Fatalf("first migrate: %v", err)
	}
	rec := recordedIDs(t, meta)
	if len(rec) != 2 || rec[0] == rec[1] {
		t.Fatalf("recorded ids %v, want two distinct", rec)
	}
	same := [][]string{{s0, s1}, {viaLocalhost(t, s0), viaLocalhost(t, s1)}}
	for _, list := range same {
		if err := Migrate(ctx, Config{MetaDSN: meta, ShardDSNs: list}, discard); err != nil {
			t.Errorf("migrate %v again: %v", list, err)
		}
		if recorded, err := checkShards(t, meta, list...); !recorded || err != nil {
			t.Errorf("CheckShards %v = %v, %v; want recorded and nil", list, recorded, err)
		}
	}

	for _, c := range []struct {
		name string
		list []string
		want []string
	}{
		{"reordered", []string{s1, s0}, []string{
			"position 0 (" + names[1] + " at 127.0.0.1:3306) is recorded shard 1 (" + names[1] + " at 127.0.0.1:3306)",
			"position 1 (" + names[0] + " at 127.0.0.1:3306) is recorded shard 0"}},
		{"shorter", []string{s0}, []string{"1 shards configured, 2 recorded", "recorded shard 1 (" + names[1] + " at 127.0.0.1:3306) is not configured"}},
		{"longer", []string{s0, s1, s2}, []string{"3 shards configured, 2 recorded", "position 2 (" + names[2] + " at 127.0.0.1:3306) is not a recorded shard"}},
		{"another database", []string{s0, s2}, []string{"position 1 (" + names[2] + " at 127.0.0.1:3306) is not a recorded shard"}},
		{"reordered via localhost", []string{viaLocalhost(t, s1), viaLocalhost(t, s0)}, []string{"position 0 (" + names[1] + " at localhost:3306) is recorded shard 1"}},
		{"one shard twice", []string{s0, s0}, []string{"position 1 (" + names[0] + " at 127.0.0.1:3306) is recorded shard 0"}},
	} {
		recorded, err := checkShards(t, meta, c.list...)
		if !recorded {
			t.Errorf("%s: CheckShards says nothing is recorded", c.name)
		}
		refused(t, c.name+": CheckShards", err, c.want...)
		refused(t, c.name+": Migrate", Migrate(ctx, Config{MetaDSN: meta, ShardDSNs: c.list}, discard), c.want...)
	}
	if got := recordedIDs(t, meta); strings.Join(got, ",") != strings.Join(rec, ",") {
		t.Errorf("the record became %v, was %v", got, rec)
	}
	noDatabase(t, names[2])
}

// noDatabase asserts that database name does not exist: the refused migrates
// never touched it.
func noDatabase(t *testing.T, name string) {
	t.Helper()
	db, err := sql.Open("mysql", testenv.DSN(""))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var n int
	if err := db.QueryRow("SELECT COUNT(*) FROM information_schema.SCHEMATA WHERE SCHEMA_NAME = ?", name).Scan(&n); err != nil || n != 0 {
		t.Errorf("database %s exists (%d, %v) after refused migrates", name, n, err)
	}
}

// A deployment from before the record: roles start with nothing recorded
// (recorded false, no error) when their list places the orders already on
// the shards where they are, and are refused otherwise; migrate records only
// a list that places them right.
func TestShardListNotRecordedYet(t *testing.T) {
	dbs := testenv.NewDatabases(t, 3)
	ctx := context.Background()
	meta, dsn := dbs.MetaDSN(), dbs.ShardDSNs()
	right := []string{dsn[0], dsn[1]}
	if err := Migrate(ctx, Config{MetaDSN: meta, ShardDSNs: right}, discard); err != nil {
		t.Fatal(err)
	}
	s, err := Open(Config{MetaDSN: meta, ShardDSNs: right})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	createSale(t, s, "s1", 10, 1)
	for i := 0; i < 20; i++ {
		u := fmt.Sprintf("user%d", i)
		if _, err := s.CreateOrders(ctx, s.ShardOf(u), []*flashsale.Order{order(u)}); err != nil {
			t.Fatal(err)
		}
	}
	// What a deployment from before this version looks like: no record, no
	// identities, and neither migration applied (nor any later one): the
	// meta database down to 00004, each shard down to 00006.
	downTo := func(db *sql.DB, kind string, version int64) {
		t.Helper()
		sub, err := fs.Sub(migrations, "migrations/"+kind)
		if err != nil {
			t.Fatal(err)
		}
		p, err := goose.NewProvider(goose.DialectMySQL, db, sub)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := p.DownTo(ctx, version); err != nil {
			t.Fatal(err)
		}
	}
	downTo(s.meta, "meta", 4) // before meta/00005_shard_list.sql
	for _, db := range s.shards {
		downTo(db, "shard", 6) // before shard/00007_shard_identity.sql
	}

	if recorded, err := checkShards(t, meta, right...); recorded || err != nil {
		t.Errorf("CheckShards with nothing recorded = %v, %v; want false, nil", recorded, err)
	}
	wrong := [][]string{{dsn[1], dsn[0]}, {dsn[0], dsn[1], dsn[2]}} // reordered, longer
	for _, list := range wrong {
		_, err := checkShards(t, meta, list...)
		refused(t, fmt.Sprintf("CheckShards of %d shards with nothing recorded", len(list)), err,
			"nothing is recorded yet", "holds orders of user")
		// Migrate brings the tables back and refuses to record a list the orders contradict.
		err = Migrate(ctx, Config{MetaDSN: meta, ShardDSNs: list}, discard)
		refused(t, fmt.Sprintf("Migrate of %d shards with nothing recorded", len(list)), err, "holds orders of user")
		if got := recordedIDs(t, meta); len(got) != 0 {
			t.Errorf("a refused migrate recorded %v", got)
		}
	}
	noDatabase(t, dbs.Shards[2])
	if err := Migrate(ctx, Config{MetaDSN: meta, ShardDSNs: right}, discard); err != nil {
		t.Fatalf("migrate of the list the orders were written with: %v", err)
	}
	if recorded, err := checkShards(t, meta, right...); !recorded || err != nil {
		t.Errorf("CheckShards after migrate = %v, %v; want recorded, nil", recorded, err)
	}
}

// Two first migrates racing with different lists: the first complete record
// wins and the other is refused, never a mix of both.
func TestShardListRecordRace(t *testing.T) {
	dbs := testenv.NewDatabases(t, 2)
	ctx := context.Background()
	meta, dsn := dbs.MetaDSN(), dbs.ShardDSNs()
	lists := [][]string{{dsn[0], dsn[1]}, {dsn[1], dsn[0]}}
	if err := migrateOne(ctx, meta, "meta", discard); err != nil {
		t.Fatal(err)
	}
	for _, d := range dsn {
		if err := migrateOne(ctx, d, "shard", discard); err != nil {
			t.Fatal(err)
		}
	}
	errs := make([]error, len(lists))
	var wg sync.WaitGroup
	for i, list := range lists {
		set, closeSet, err := openShardSet(Config{MetaDSN: meta, ShardDSNs: list})
		if err != nil {
			t.Fatal(err)
		}
		defer closeSet()
		wg.Add(1)
		go func() {
			defer wg.Done()
			ids, err := set.ensureIdentities(ctx)
			if err == nil {
				err = set.record(ctx, ids)
			}
			errs[i] = err
		}()
	}
	wg.Wait()
	won := -1
	for i, err := range errs {
		switch {
		case err == nil && won < 0:
			won = i
		case err == nil:
			t.Errorf("both lists were recorded")
		case !errors.Is(err, ErrShardList):
			t.Errorf("list %d: %v", i, err)
		}
	}
	if won < 0 {
		t.Fatalf("neither list was recorded: %v", errs)
	}
	if recorded, err := checkShards(t, meta, lists[won]...); !recorded || err != nil {
		t.Errorf("the winning list %d: CheckShards = %v, %v", won, recorded, err)
	}
	_, err := checkShards(t, meta, lists[1-won]...)
	refused(t, "the losing list", err, "position 0")
}
