package e2e

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/flashsale/flashsale/redisstore"
)

// TestBundleWorkerKilledInWindow: the worker SIGKILLed four times while a
// bundle is provably half done, on a private Redis Cluster (three masters,
// three replicas; cluster-node-timeout 30 s, so that a paused master is not
// failed over) where the bundle's two sales, A (200 units) and B (150), live
// on different masters, so that the worker's pipeline of hold scripts is split
// per master:
//
//   - window (a), between the holds of the two items, twice: B's master is
//     paused (SIGSTOP) and the worker started; its holds on A's master go
//     through while it waits for B's. Once A's master (polled directly) holds
//     the A line of a bundle ticket this worker took, the worker is killed,
//     then B's master resumed (SIGCONT: it runs what the dead worker sent);
//   - window (b), every line held but no order committed, twice: the worker's
//     MySQL connections go through the COMMIT-holding proxy of the stock-cap
//     tests; once both lines of a bundle ticket are held and a COMMIT of
//     orders is held, the worker is killed. After the first such kill the
//     proxy drops the connections (MySQL rolls the orders back); after the
//     second it forwards the held COMMITs and closes (whether MySQL commits
//     them before it sees the connection gone is a race; the log says).
//
// Each kill's evidence is read from Redis once the worker is dead (nothing
// changes the holds then): the bundle tickets held in A and not in B (B read
// on its replica while B is paused; only tickets whose A line this worker
// held count: B was paused before it started) or held in both; for none of
// them an order or a decision in MySQL. Every kill must catch at least one.
// The buyers come in waves of 12 bundles and 6 single buyers of each sale: a
// first one while the worker runs without a fault (then it stops gracefully),
// one before each kill's worker starts, answered while no worker runs, so that
// it starts with a backlog; after the last kill the worker runs without
// faults and the rest of the crowd of TestBundleCrowd (1,000 bundles, 1,000
// single buyers of each sale in all) arrives over 3 s. All along the watch
// checks every 150 ms: no sale oversold (views and MySQL), views balanced.
// Once every ticket is final nothing is half held: every bundle order holds
// both items in MySQL (a row per sale) and in Redis (H:1 under its ticket in
// both sales), every sold_out or failed bundle ticket has no order and holds
// neither item in Redis; the sale views equal the tickets' units and MySQL's,
// `flashsale reconcile` exits 0 and the background reconciler repaired
// nothing (the saga's redelivery and compensation did).
func TestBundleWorkerKilledInWindow(t *testing.T) {
	e := newEnv(t)
	t0 := time.Now()
	nodes, addrs := startRedisCluster(t, 30*time.Second)
	e.setVar("FLASHSALE_REDIS_ADDRS", strings.Join(addrs, ","))
	e.setVar("FLASHSALE_REDIS_SEGMENTS", "1") // a sale's keys in one slot: {sale:<id>}
	cc := redis.NewClusterClient(&redis.ClusterOptions{Addrs: addrs})
	defer cc.Close()

	// Sale ids are chosen by the test: B's is drawn until its slot is on
	// another master than A's.
	sa := openSale(200, 1, 1100)
	masterA := bwMaster(t, cc, e.NS, sa.ID)
	sb := openSale(150, 1, 700)
	for i := 0; bwMaster(t, cc, e.NS, sb.ID) == masterA; i++ {
		if i == 100 {
			t.Fatalf("precondition: 100 sale ids all on A's master %s", masterA)
		}
		sb = openSale(150, 1, 700)
	}
	nodeA, nodeB := nodeOf(nodes, masterA), nodeOf(nodes, bwMaster(t, cc, e.NS, sb.ID))
	if nodeA == nil || nodeB == nil {
		t.Fatalf("precondition: the sales' masters %s and %s are not nodes of the cluster", masterA, bwMaster(t, cc, e.NS, sb.ID))
	}
	replicaB := bwReplicaOf(t, nodes, nodeB)
	t.Logf("sale A %s on master %s, sale B %s on master %s (replica %s); cluster ready after %s",
		sa.ID, nodeA.Name, sb.ID, nodeB.Name, replicaB.Name, time.Since(t0).Round(10*time.Millisecond))

	ing := e.start("ingress", nil)
	cp := newCommitProxy(t)
	var seeds []string // a worker started while B's master is paused learns the slot map from the others
	for _, a := range addrs {
		if a != nodeB.Addr {
			seeds = append(seeds, a)
		}
	}
	workerVars := map[string]string{
		"FLASHSALE_RECONCILE_INTERVAL": "1",
		"FLASHSALE_MYSQL_SHARD_DSNS":   e.shardDSNsVia(cp.Addr),
		"FLASHSALE_REDIS_ADDRS":        strings.Join(seeds, ","),
	}
	cr := newBnCrowdOf(t, e, ing.client(), sa, sb)
	w := cr.watch()
	holdsA := strings.TrimSuffix(redisstore.StockKey(e.NS, cr.A.ID, "", 1), "stock") + "holds"
	holdsB := strings.TrimSuffix(redisstore.StockKey(e.NS, cr.B.ID, "", 1), "stock") + "holds"
	rA, rB := nodeA.client(), replicaB.readOnlyClient()
	defer rA.Close()
	defer rB.Close()

	const waveBundles, waveSingles = 12, 6
	awaitWave := func(name string) {
		eventually(t, time.Minute, name+" answered", func() (bool, string) {
			return cr.finished.Load() == int64(cr.buyers), fmt.Sprintf("%d of %d buyers answered", cr.finished.Load(), cr.buyers)
		})
	}
	// A first wave with the worker running and no fault: the masters learn
	// the worker's scripts (a hold on A answered NOSCRIPT would wait for the
	// whole pipeline, B's part included, before it runs again). The worker then
	// stops gracefully.
	wk := e.startProc("worker", workerVars, false)
	cr.start("bw-warm", waveBundles, waveSingles, 300*time.Millisecond)
	awaitWave("the first wave")
	var warm []ticketRef
	for _, r := range cr.snapshot() {
		warm = append(warm, r.ticketRef)
	}
	cr.c.awaitFinal(t, warm, time.Minute)
	wk.Stop()

	var evidence []string
	var caughtBy [][]string // the tickets each kill caught
	for i, window := range []string{"a", "b", "a", "b"} {
		cycle := time.Now()
		cr.start(fmt.Sprintf("bw%d", i), waveBundles, waveSingles, 300*time.Millisecond)
		awaitWave(fmt.Sprintf("wave %d", i+1))
		var caught []string
		var held int    // COMMITs held at the kill (window b)
		var undo func() // the fault's end, once the evidence is read
		switch window {
		case "a":
			nodeB.Pause()
			before := bwHashAll(t, rA, holdsA)
			wk.Start()
			eventually(t, 20*time.Second, "a bundle ticket held in A by this worker (B paused)", func() (bool, string) {
				now := bwHashAll(t, rA, holdsA)
				n := len(bwHalfHeld(cr, before, now, nil))
				return n > 0, fmt.Sprintf("%d holds in A, %d before", len(now), len(before))
			})
			wk.Kill()
			caught = bwHalfHeld(cr, before, bwHashAll(t, rA, holdsA), bwHashAll(t, rB, holdsB))
			undo = nodeB.Resume
		case "b":
			// Tickets with an order or a decision already (the first wave's,
			// those of a COMMIT forwarded at the previous kill) do not count.
			var ids []string
			for _, r := range cr.snapshot() {
				ids = append(ids, r.TicketID)
			}
			done := map[string]bool{}
			for _, id := range bwDecided(t, e, ids) {
				done[id] = true
			}
			cp.HoldCommits(-1, true, 20*time.Second)
			wk.Start()
			eventually(t, 20*time.Second, "a bundle ticket held in both sales while a COMMIT of orders is held", func() (bool, string) {
				now, _, _ := cp.Holding()
				n := len(bwBothHeld(cr, bwHashAll(t, cc, holdsA), bwHashAll(t, cc, holdsB), done))
				return now > 0 && n > 0, fmt.Sprintf("%d COMMITs held, %d bundle tickets held in both", now, n)
			})
			wk.Kill()
			held, _, _ = cp.Holding()
			caught = bwBothHeld(cr, bwHashAll(t, cc, holdsA), bwHashAll(t, cc, holdsB), done)
			if held == 0 {
				t.Errorf("kill %d: no COMMIT held at the kill", i+1)
			}
			undo = func() {
				if i == 1 {
					cp.Down() // the held transactions' connections close: MySQL rolls them back
					cp.Release()
					cp.Up()
					return
				}
				cp.Release() // the held COMMITs are forwarded after the worker died
			}
		}
		decided := bwDecided(t, e, caught)
		undo()
		desc := map[string]string{"a": "held in A, not in B (between the holds)",
			"b": fmt.Sprintf("held in A and B with %d COMMITs of orders held", held)}[window]
		ev := fmt.Sprintf("kill %d, window (%s): %d bundle tickets %s, %d of them with an order or decision in MySQL at the kill",
			i+1, window, len(caught), desc, len(decided))
		if window == "b" {
			// What the end of the fault did to them: rolled back, or committed late.
			eventually(t, 30*time.Second, "the held COMMITs released", func() (bool, string) {
				now, _, _ := cp.Holding()
				return now == 0, fmt.Sprintf("%d held", now)
			})
			ev += fmt.Sprintf("; %d with an order once the held COMMITs were %s", len(bwDecided(t, e, caught)),
				map[bool]string{true: "dropped", false: "forwarded"}[i == 1])
		}
		ev += fmt.Sprintf(" (this wave and kill took %s)", time.Since(cycle).Round(10*time.Millisecond))
		evidence = append(evidence, ev)
		caughtBy = append(caughtBy, caught)
		t.Log(ev)
		if len(caught) == 0 || len(decided) > 0 {
			t.Errorf("kill %d did not land in window (%s): %d tickets caught, decided in MySQL: %v", i+1, window, len(caught), decided)
		}
	}
	t.Logf("four kills done after %s", time.Since(t0).Round(10*time.Millisecond))
	wk.Start()
	cr.start("bw", 1000-5*waveBundles, 1000-5*waveSingles, 3*time.Second)
	final := cr.settle(2 * time.Minute)
	w.end(t)
	t.Logf("settled after %s", time.Since(t0).Round(10*time.Millisecond))

	// Nothing half held, in MySQL and in Redis.
	inA, inB := map[string]string{}, map[string]string{}
	for _, r := range e.orders(t, cr.A.ID) {
		inA[r.OrderID] = r.Status
	}
	for _, r := range e.orders(t, cr.B.ID) {
		inB[r.OrderID] = r.Status
	}
	redisA, redisB := bwHashAll(t, cc, holdsA), bwHashAll(t, cc, holdsB)
	pr := newProblems(t)
	statuses := map[string]int{}
	compensated := 0
	for _, r := range cr.snapshot() {
		if r.Kind != bnBundle {
			continue
		}
		v := final[r.TicketID]
		statuses[v.Status]++
		switch v.Status {
		case "pending_payment":
			if inA[r.TicketID] != "pending_payment" || inB[r.TicketID] != "pending_payment" {
				pr.errorf("bundle order %s: MySQL rows in A %q, in B %q, want both pending_payment", r.TicketID, inA[r.TicketID], inB[r.TicketID])
			}
			if redisA[r.TicketID] != "H:1" || redisB[r.TicketID] != "H:1" {
				pr.errorf("bundle order %s: Redis holds A %q, B %q, want H:1 in both", r.TicketID, redisA[r.TicketID], redisB[r.TicketID])
			}
		case "sold_out", "failed":
			if redisA[r.TicketID] == "R" || redisB[r.TicketID] == "R" {
				compensated++ // a line was held, then released
			}
			if _, ok := inA[r.TicketID]; ok {
				pr.errorf("%s bundle ticket %s has an order row in A", v.Status, r.TicketID)
			}
			if _, ok := inB[r.TicketID]; ok {
				pr.errorf("%s bundle ticket %s has an order row in B", v.Status, r.TicketID)
			}
			for sale, st := range map[string]string{"A": redisA[r.TicketID], "B": redisB[r.TicketID]} {
				if strings.HasPrefix(st, "H") || strings.HasPrefix(st, "S") {
					pr.errorf("%s bundle ticket %s holds %s in %s", v.Status, r.TicketID, st, sale)
				}
			}
		}
	}
	pr.done()
	t.Logf("bundle tickets: %v; %d of those without an order had a line held and released (R in Redis)", statuses, compensated)
	for i, ev := range evidence {
		ended := map[string]int{}
		for _, id := range caughtBy[i] {
			ended[final[id].Status]++
		}
		t.Logf("evidence: %s; they ended %v", ev, ended)
	}
	bnReconcileExits0(t, e)
	fxNoRepairs(t, wk)
}

// bwMaster is the address of the master serving sale saleID's keys (one
// slot: the hash tag {sale:<id>}).
func bwMaster(t *testing.T, cc *redis.ClusterClient, ns, saleID string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	m, err := cc.MasterForKey(ctx, redisstore.StockKey(ns, saleID, "", 1))
	if err != nil {
		t.Fatalf("master of sale %s: %v", saleID, err)
	}
	return m.Options().Addr
}

// bwReplicaOf waits for a replica of master in sync and returns it.
func bwReplicaOf(t *testing.T, nodes []*privateRedis, master *privateRedis) *privateRedis {
	t.Helper()
	var replica *privateRedis
	eventually(t, 30*time.Second, "a replica of "+master.Name+" in sync", func() (bool, string) {
		var st []string
		for _, n := range nodes {
			if n == master {
				continue
			}
			c := n.client()
			r := clusterRole(c)
			c.Close()
			if r.role == "slave" && r.master == master.Addr && r.state == "connected" {
				replica = n
				return true, ""
			}
			st = append(st, fmt.Sprintf("%s: %+v", n.Name, r))
		}
		return false, fmt.Sprint(st)
	})
	return replica
}

// readOnlyClient is a client of a cluster replica that reads the keys of its
// master's slots (READONLY on every connection).
func (r *privateRedis) readOnlyClient() *redis.Client {
	return redis.NewClient(&redis.Options{Addr: r.Addr, MaxRetries: -1, DialTimeout: time.Second,
		OnConnect: func(ctx context.Context, cn *redis.Conn) error { return cn.ReadOnly(ctx).Err() }})
}

// bwHashAll reads a hash (a sale's holds: ticket id -> state).
func bwHashAll(t *testing.T, c redis.Cmdable, key string) map[string]string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	m, err := c.HGetAll(ctx, key).Result()
	if err != nil {
		t.Fatalf("HGETALL %s: %v", key, err)
	}
	return m
}

// bwHalfHeld returns the crowd's bundle tickets held in A now and not before,
// and not held or sold in B (b nil: B not read).
func bwHalfHeld(cr *bnCrowd, before, now, b map[string]string) []string {
	var out []string
	for _, r := range cr.snapshot() {
		if r.Kind != bnBundle {
			continue
		}
		_, was := before[r.TicketID]
		if strings.HasPrefix(now[r.TicketID], "H:") && !was && !bwCounts(b[r.TicketID]) {
			out = append(out, r.TicketID)
		}
	}
	sort.Strings(out)
	return out
}

// bwBothHeld returns the crowd's bundle tickets held in both sales, but
// those in skip.
func bwBothHeld(cr *bnCrowd, a, b map[string]string, skip map[string]bool) []string {
	var out []string
	for _, r := range cr.snapshot() {
		if r.Kind == bnBundle && !skip[r.TicketID] && strings.HasPrefix(a[r.TicketID], "H:") && strings.HasPrefix(b[r.TicketID], "H:") {
			out = append(out, r.TicketID)
		}
	}
	sort.Strings(out)
	return out
}

// bwCounts reports whether a hold state counts units (held or sold).
func bwCounts(state string) bool {
	return strings.HasPrefix(state, "H:") || strings.HasPrefix(state, "S:")
}

// bwDecided returns the tickets among ids that have an order row or a
// recorded decision (ticket_outcomes) on any shard, straight from MySQL.
func bwDecided(t *testing.T, e *env, ids []string) []string {
	t.Helper()
	if len(ids) == 0 {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	marks := strings.TrimSuffix(strings.Repeat("?,", len(ids)), ",")
	args := make([]any, 0, 2*len(ids))
	for range 2 {
		for _, id := range ids {
			args = append(args, id)
		}
	}
	var out []string
	for i := range e.ShardDBs {
		rows, err := e.shard(i).QueryContext(ctx, "SELECT order_id FROM orders WHERE order_id IN ("+marks+
			") UNION SELECT ticket_id FROM ticket_outcomes WHERE ticket_id IN ("+marks+")", args...)
		if err != nil {
			t.Fatalf("reading shard %d: %v", i, err)
		}
		for rows.Next() {
			var id string
			if err := rows.Scan(&id); err != nil {
				t.Fatalf("reading shard %d: %v", i, err)
			}
			out = append(out, id)
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			t.Fatalf("reading shard %d: %v", i, err)
		}
	}
	return out
}

// bwFirst returns at most n of ids.
func bwFirst(ids []string, n int) []string { return ids[:min(n, len(ids))] }
