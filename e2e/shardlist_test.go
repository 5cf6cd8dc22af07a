package e2e

import (
	"context"
	"database/sql"
	"errors"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/pressly/goose/v3"
)

// TestShardListMismatchRefused (issue 22, case 8): processes started with
// another shard list than the deployment's place users on other shards and
// split each sale's stock into other allotments, which then add up to more than
// the stock. The deployment is migrated with [s0, s1] (newEnv), which records
// that list; then
//   - `flashsale worker` with [s0, s1, s2] and `flashsale all` with [s1, s0]
//     exit 2 within 10 s, their log naming the difference and saying that
//     resharding is not supported;
//   - `flashsale migrate` with either list exits 2 the same way, and s2's
//     database is never created; so does `flashsale reconcile` with [s1, s0];
//   - the recorded list reached through a proxy of the test's own (another
//     address for the same databases) starts and gets ready.
func TestShardListMismatchRefused(t *testing.T) {
	e := newEnv(t)
	s2 := "fs_" + e.id + "_s2"
	t.Cleanup(func() { // in case a process created it
		if db, err := sql.Open("mysql", mysqlDSN("")); err == nil {
			db.Exec("DROP DATABASE IF EXISTS `" + s2 + "`")
			db.Close()
		}
	})
	s0, s1 := e.ShardDBs[0], e.ShardDBs[1]
	longer := strings.Join([]string{mysqlDSN(s0), mysqlDSN(s1), mysqlDSN(s2)}, ",")
	reordered := mysqlDSN(s1) + "," + mysqlDSN(s0)
	wantLonger := []string{"3 shards configured, 2 recorded", "position 2 (" + s2 + " at "}
	wantReordered := []string{"position 0 (" + s1 + " at ", ") is recorded shard 1 (" + s1 + " at "}
	for _, c := range []struct {
		role, list string
		want       []string
	}{
		{"worker", longer, wantLonger},
		{"all", reordered, wantReordered},
		{"migrate", longer, wantLonger},
		{"migrate", reordered, wantReordered},
		{"reconcile", reordered, wantReordered},
	} {
		what := "flashsale " + c.role + " with " + map[bool]string{true: "[s0, s1, s2]", false: "[s1, s0]"}[c.list == longer]
		code, out, took := runRefused(t, e, c.role, c.list, 10*time.Second)
		switch {
		case code < 0:
			t.Errorf("%s still ran after %s (it started with another shard list):\n%s", what, took.Round(time.Millisecond), tail(out, 15))
			continue
		case code != 2:
			t.Errorf("%s exited %d after %s, want 2 (refused):\n%s", what, code, took.Round(time.Millisecond), tail(out, 15))
		default:
			t.Logf("%s exited %d after %s:\n%s", what, code, took.Round(time.Millisecond), tail(out, 1))
		}
		for _, w := range append(c.want, "FLASHSALE_MYSQL_SHARD_DSNS", "resharding) is not supported") {
			if !strings.Contains(out, w) {
				t.Errorf("%s: the log does not say %q:\n%s", what, w, tail(out, 15))
			}
		}
	}
	var n int
	if err := e.shard(0).QueryRow("SELECT COUNT(*) FROM information_schema.SCHEMATA WHERE SCHEMA_NAME = ?", s2).Scan(&n); err != nil || n != 0 {
		t.Errorf("database %s: %d, %v; want none (a refused process creates nothing)", s2, n, err)
	}

	// The recorded list through another address is the same list.
	base, err := mysqlBase()
	if err != nil {
		t.Fatal(err)
	}
	px := newProxy(t, base.Addr)
	p := e.start("all", map[string]string{"FLASHSALE_MYSQL_SHARD_DSNS": e.shardDSNsVia(px.Addr)}) // waits for /readyz
	p.Stop()
}

// runRefused runs `flashsale role` with the deployment's variables and
// FLASHSALE_MYSQL_SHARD_DSNS set to shards, for at most timeout. It returns
// the exit code (-1 when the process was still running at timeout and was
// killed), its output and how long it ran.
func runRefused(t *testing.T, e *env, role, shards string, timeout time.Duration) (int, string, time.Duration) {
	t.Helper()
	vars := e.Vars()
	vars["FLASHSALE_MYSQL_SHARD_DSNS"] = shards
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, binPath, role)
	cmd.Env = processEnv(vars)
	t0 := time.Now()
	out, err := cmd.CombinedOutput()
	took := time.Since(t0)
	var ee *exec.ExitError
	switch {
	case err == nil:
		return 0, string(out), took
	case ctx.Err() != nil:
		return -1, string(out), took
	case errors.As(err, &ee):
		return ee.ExitCode(), string(out), took
	}
	t.Fatalf("flashsale %s: %v", role, err)
	return 0, "", 0
}

// TestShardListNotRecordedYet: a deployment migrated before the shard list
// was recorded (here: the record and its migration removed from the meta
// database) still starts its roles, with a warning that says how to record the
// list; the next `flashsale migrate` records it, and from then on a role with
// another list is refused.
func TestShardListNotRecordedYet(t *testing.T) {
	e := newEnv(t)
	meta, err := sql.Open("mysql", mysqlDSN(e.MetaDB))
	if err != nil {
		t.Fatal(err)
	}
	defer meta.Close()
	// The record's table and its migration (meta/00005_shard_list.sql)
	// undone, and every later one (goose refuses a database missing a
	// migration older than one it has): the meta database taken down to
	// 00004 by the migrations' own Down sections.
	p, err := goose.NewProvider(goose.DialectMySQL, meta, os.DirFS("../mysqlstore/migrations/meta"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := p.DownTo(context.Background(), 4); err != nil {
		t.Fatalf("meta database down to 00004: %v", err)
	}
	ing := e.start("ingress", nil) // waits for /readyz
	if log := ing.LogTail(40); !strings.Contains(log, "shard list is not recorded in the meta database yet: run flashsale migrate") {
		t.Errorf("ingress started with nothing recorded and gave no warning:\n%s", log)
	}
	ing.Stop()

	e.migrate()
	reordered := mysqlDSN(e.ShardDBs[1]) + "," + mysqlDSN(e.ShardDBs[0])
	if code, out, took := runRefused(t, e, "worker", reordered, 10*time.Second); code != 2 {
		t.Errorf("after migrate recorded the list, a worker with [s1, s0] exited %d after %s, want 2:\n%s",
			code, took.Round(time.Millisecond), tail(out, 15))
	}
}
