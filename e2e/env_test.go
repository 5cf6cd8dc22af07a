package e2e

import (
	"bufio"
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"fmt"
	"hash/fnv"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
	"github.com/redis/go-redis/v9"
)

// env is one test's isolated deployment: a namespace for Redis keys and
// RabbitMQ names, its own meta and shard databases (migrated), an admin token
// and a payment secret. Everything is removed in t.Cleanup.
type env struct {
	t             *testing.T
	id            string
	NS            string
	MetaDB        string
	ShardDBs      []string
	AdminToken    string
	PaymentSecret string

	mu        sync.Mutex
	shards    []*sql.DB
	overrides map[string]string // see setVar
}

// setVar changes one FLASHSALE_* variable of the deployment for every process
// started (and every command run) from now on: e.g. a Redis of the test's own.
func (e *env) setVar(key, value string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.overrides == nil {
		e.overrides = map[string]string{}
	}
	e.overrides[key] = value
}

func randHex(n int) string {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		panic(err)
	}
	return hex.EncodeToString(b)
}

// newEnv creates the test's deployment with two order shards and runs
// "flashsale migrate" on it.
func newEnv(t *testing.T) *env {
	t.Helper()
	requireServices(t)
	id := randHex(5)
	e := &env{
		t:             t,
		id:            id,
		NS:            "t" + id,
		MetaDB:        "fs_" + id + "_meta",
		ShardDBs:      []string{"fs_" + id + "_s0", "fs_" + id + "_s1"},
		AdminToken:    "admin-" + randHex(12),
		PaymentSecret: "paysecret-" + randHex(16),
	}
	t.Cleanup(e.cleanup)
	e.migrate()
	return e
}

// redisSegments is FLASHSALE_REDIS_SEGMENTS of the test run: the suite's
// processes split each sale's stock so (default 1).
func redisSegments() int {
	n, err := strconv.Atoi(os.Getenv("FLASHSALE_REDIS_SEGMENTS"))
	if err != nil || n < 1 {
		return 1
	}
	return n
}

// isSaleKey matches the Redis keys of a sale: its stock in one piece, or its
// home and segments.
func isSaleKey(e *env, saleID string) func(string) bool {
	return func(k string) bool {
		return strings.HasPrefix(k, e.NS+":{sale:"+saleID+"}:") || strings.HasPrefix(k, e.NS+":{sale:"+saleID+":")
	}
}

// Vars are the FLASHSALE_* variables of every process of this deployment.
// The limiter is off unless a test turns it on.
func (e *env) Vars() map[string]string {
	shards := make([]string, len(e.ShardDBs))
	for i, db := range e.ShardDBs {
		shards[i] = mysqlDSN(db)
	}
	vars := map[string]string{
		"FLASHSALE_REDIS_ADDRS":      strings.Join(redisAddrs(), ","),
		"FLASHSALE_AMQP_URL":         amqpURL(),
		"FLASHSALE_MYSQL_META_DSN":   mysqlDSN(e.MetaDB),
		"FLASHSALE_MYSQL_SHARD_DSNS": strings.Join(shards, ","),
		"FLASHSALE_NAMESPACE":        e.NS,
		"FLASHSALE_ADMIN_TOKEN":      e.AdminToken,
		"FLASHSALE_PAYMENT_SECRET":   e.PaymentSecret,
		"FLASHSALE_LIMIT_PER_WINDOW": "0",
		"FLASHSALE_LOG_LEVEL":        "info",
		"FLASHSALE_HTTP_ADDR":        "127.0.0.1:0", // replaced by start
	}
	if l := os.Getenv("FLASHSALE_E2E_LOG_LEVEL"); l != "" {
		vars["FLASHSALE_LOG_LEVEL"] = l // e.g. debug, to chase a flake
	}
	if n := redisSegments(); n > 1 {
		vars["FLASHSALE_REDIS_SEGMENTS"] = strconv.Itoa(n) // the suite run with sales in segments
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	for k, v := range e.overrides {
		vars[k] = v
	}
	return vars
}

func (e *env) migrate() {
	t := e.t
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, binPath, "migrate")
	cmd.Env = processEnv(e.Vars())
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("flashsale migrate: %v\n%s", err, tail(string(out), 60))
	}
}

// shard returns a connection pool to shard database i.
func (e *env) shard(i int) *sql.DB {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.shards == nil {
		for _, name := range e.ShardDBs {
			db, err := sql.Open("mysql", mysqlDSN(name))
			if err != nil {
				e.t.Fatalf("open shard %s: %v", name, err)
			}
			e.shards = append(e.shards, db)
		}
	}
	return e.shards[i]
}

// shardOf is the contract's placement of a user's orders:
// the documented placement: fmix32(fnv1a32(user_id)) mod N, recomputed here
// independently of the implementation.
func shardOf(user string, n int) int {
	h := fnv.New32a()
	h.Write([]byte(user))
	x := h.Sum32()
	x ^= x >> 16
	x *= 0x85ebca6b
	x ^= x >> 13
	x *= 0xc2b2ae35
	x ^= x >> 16
	return int(x % uint32(n))
}

type orderRow struct {
	Shard       int
	OrderID     string
	SaleID      string
	UserID      string
	Quantity    int
	AmountCents int64
	Status      string
}

// orders reads every row of the sale from every shard, straight from MySQL.
func (e *env) orders(t *testing.T, saleID string) []orderRow {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var out []orderRow
	for i := range e.ShardDBs {
		rows, err := e.shard(i).QueryContext(ctx,
			"SELECT order_id, sale_id, user_id, quantity, amount_cents, status FROM orders WHERE sale_id = ?", saleID)
		if err != nil {
			t.Fatalf("query shard %d: %v", i, err)
		}
		for rows.Next() {
			r := orderRow{Shard: i}
			if err := rows.Scan(&r.OrderID, &r.SaleID, &r.UserID, &r.Quantity, &r.AmountCents, &r.Status); err != nil {
				t.Fatalf("scan shard %d: %v", i, err)
			}
			out = append(out, r)
		}
		if err := rows.Err(); err != nil {
			t.Fatalf("rows shard %d: %v", i, err)
		}
		rows.Close()
	}
	return out
}

// checkOrderRows asserts what must hold for the order rows of one sale at any
// moment: no order id twice, every row on its user's shard, no user above the
// per-user limit and no oversell (pending_payment + paid units <= stock).
// It returns the live (pending_payment + paid) rows by user.
func checkOrderRows(t *testing.T, rows []orderRow, stock, perUserLimit int) map[string][]orderRow {
	t.Helper()
	seen := map[string]orderRow{}
	live := map[string][]orderRow{}
	units := 0
	for _, r := range rows {
		if prev, dup := seen[r.OrderID]; dup {
			t.Errorf("order %s exists twice: shard %d and shard %d", r.OrderID, prev.Shard, r.Shard)
		}
		seen[r.OrderID] = r
		if want := shardOf(r.UserID, 2); r.Shard != want {
			t.Errorf("order %s of user %q is on shard %d, want shard %d (fmix32(fnv1a32) mod 2)", r.OrderID, r.UserID, r.Shard, want)
		}
		switch r.Status {
		case "pending_payment", "paid":
			live[r.UserID] = append(live[r.UserID], r)
			units += r.Quantity
		case "expired", "cancelled":
		default:
			t.Errorf("order %s has status %q", r.OrderID, r.Status)
		}
	}
	if units > stock {
		t.Errorf("oversell: %d units in pending_payment+paid orders, stock %d", units, stock)
	}
	for u, rs := range live {
		n := 0
		for _, r := range rs {
			n += r.Quantity
		}
		if n > perUserLimit {
			t.Errorf("user %q holds %d units in %d live orders, per_user_limit %d", u, n, len(rs), perUserLimit)
		}
	}
	return live
}

func (e *env) cleanup() {
	t := e.t
	e.mu.Lock()
	for _, db := range e.shards {
		db.Close()
	}
	e.shards = nil
	e.mu.Unlock()

	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	// MySQL: drop the test's databases.
	if db, err := sql.Open("mysql", mysqlDSN("")); err == nil {
		for _, name := range append([]string{e.MetaDB}, e.ShardDBs...) {
			if _, err := db.ExecContext(ctx, "DROP DATABASE IF EXISTS `"+name+"`"); err != nil {
				t.Logf("cleanup: drop database %s: %v", name, err)
			}
		}
		db.Close()
	}

	// Redis: every key of the namespace.
	rdb := newRedis()
	deleteKeys := func(ctx context.Context, c *redis.Client) error {
		iter := c.Scan(ctx, 0, e.NS+"*", 1000).Iterator()
		var batch []string
		for iter.Next(ctx) {
			batch = append(batch, iter.Val())
			if len(batch) == 500 {
				if err := c.Del(ctx, batch...).Err(); err != nil {
					return err
				}
				batch = batch[:0]
			}
		}
		if err := iter.Err(); err != nil {
			return err
		}
		if len(batch) > 0 {
			return c.Del(ctx, batch...).Err()
		}
		return nil
	}
	var err error
	switch c := rdb.(type) {
	case *redis.ClusterClient:
		// Keys of one DEL must share a slot in a cluster: delete one by one.
		err = c.ForEachMaster(ctx, func(ctx context.Context, m *redis.Client) error {
			iter := m.Scan(ctx, 0, e.NS+"*", 1000).Iterator()
			for iter.Next(ctx) {
				if err := c.Del(ctx, iter.Val()).Err(); err != nil {
					return err
				}
			}
			return iter.Err()
		})
	case *redis.Client:
		err = deleteKeys(ctx, c)
	}
	if err != nil {
		t.Logf("cleanup: redis keys %s*: %v", e.NS, err)
	}
	rdb.Close()

	// RabbitMQ: queues and exchanges named after the namespace.
	e.deleteBrokerObjects()
}

// deleteBrokerObjects deletes the queues and exchanges whose names start with
// the namespace, listing them with rabbitmqctl (the broker is local).
func (e *env) deleteBrokerObjects() {
	t := e.t
	vhost := "/"
	if u, err := amqp.ParseURI(amqpURL()); err == nil && u.Vhost != "" {
		vhost = u.Vhost
	}
	list := func(what string) []string {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		out, err := exec.CommandContext(ctx, "rabbitmqctl", "-q", "-p", vhost, "list_"+what, "name").Output()
		if err != nil {
			t.Logf("cleanup: rabbitmqctl list_%s: %v", what, err)
			return nil
		}
		var names []string
		sc := bufio.NewScanner(strings.NewReader(string(out)))
		for sc.Scan() {
			if name := strings.TrimSpace(sc.Text()); strings.HasPrefix(name, e.NS) {
				names = append(names, name)
			}
		}
		return names
	}
	t0 := time.Now()
	queues, exchanges := list("queues"), list("exchanges")
	if d := time.Since(t0); d > 3*time.Second {
		t.Logf("cleanup: rabbitmqctl took %s", d.Round(time.Millisecond))
	}
	if len(queues)+len(exchanges) == 0 {
		return
	}
	conn, err := amqp.DialConfig(amqpURL(), amqp.Config{Dial: amqp.DefaultDial(5 * time.Second)})
	if err != nil {
		t.Logf("cleanup: rabbitmq: %v", err)
		return
	}
	defer conn.Close()
	// A failed operation closes its channel: one channel per name.
	do := func(kind, name string, f func(ch *amqp.Channel) error) {
		ch, err := conn.Channel()
		if err != nil {
			t.Logf("cleanup: channel: %v", err)
			return
		}
		defer ch.Close()
		if err := f(ch); err != nil {
			t.Logf("cleanup: delete %s %s: %v", kind, name, err)
		}
	}
	for _, q := range queues {
		do("queue", q, func(ch *amqp.Channel) error { _, err := ch.QueueDelete(q, false, false, false); return err })
	}
	for _, x := range exchanges {
		do("exchange", x, func(ch *amqp.Channel) error { return ch.ExchangeDelete(x, false, false) })
	}
}

// tail returns the last n lines of s.
func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = append([]string{fmt.Sprintf("... (%d lines before)", len(lines)-n)}, lines[len(lines)-n:]...)
	}
	return strings.Join(lines, "\n")
}
