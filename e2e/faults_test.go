package e2e

// Fault tests (issue 6): a sale with thousands of users and hundreds of units
// through the real processes, one fault injected in the middle of it, then,
// once the system is quiet, every guarantee of contract section 4 (fxSale.settle):
// no oversell, every accepted ticket final, no duplicates, stock conserved with
// Redis == MySQL, and `flashsale reconcile` exiting 0. Each then pays and
// cancels a few orders and checks again. None runs in parallel: the Redis
// restart disturbs everything on the machine, and the others load it.

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"net/http"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/flashsale/flashsale/redisstore"
)

const (
	fxUsers = 3000
	fxStock = 600
)

// TestFaultWorkerKilledTwice: the worker is SIGKILLed twice while it sells,
// each time left dead until more purchases queued up, then started again.
func TestFaultWorkerKilledTwice(t *testing.T) {
	e := newEnv(t)
	ing := e.start("ingress", nil)
	wk := e.startProc("worker", map[string]string{"FLASHSALE_RECONCILE_INTERVAL": "1"}, false)
	s := fxStartSale(t, e, ing.client(), fxStock, fxUsers, 5*time.Second, 0)
	for _, at := range []int{fxStock / 4, fxStock / 2} {
		v := s.awaitTaken(at, time.Minute)
		s.midSale(v)
		wk.Kill()
		// Purchases queue up while no worker runs.
		s.awaitAccepted(s.accepted()+100, time.Minute)
		t.Logf("worker killed at %+v; %d tickets accepted before the restart", v.Stock, s.accepted())
		wk.Start()
	}
	out := s.settle("202", "409 sold_out")
	s.payAndCancel(out, 10)
	fxNoRepairs(t, wk)
}

// TestFaultRedisKeysDeleted: every Redis key of the deployment is deleted at
// once in the middle of the sale (for this deployment, the loss of Redis).
// The sale is "not loaded", never "sold out": it is rebuilt from MySQL.
func TestFaultRedisKeysDeleted(t *testing.T) {
	e := newEnv(t)
	ing := e.start("ingress", nil)
	wk := e.startProc("worker", map[string]string{"FLASHSALE_RECONCILE_INTERVAL": "1"}, false)
	c := ing.client()
	s := fxStartSale(t, e, c, fxStock, fxUsers, 5*time.Second, 0)
	before := s.awaitTaken(fxStock/3, time.Minute)
	s.midSale(before)
	keys := fxDeleteRedisKeys(t, e)
	if !slices.ContainsFunc(keys, isSaleKey(e, s.ID)) {
		t.Fatalf("precondition: no key of sale %s among the %d keys deleted", s.ID, len(keys))
	}
	// Rebuilt from MySQL at once: sold out only if the orders took every unit.
	after := c.sale(t, s.ID)
	t.Logf("deleted %d keys at %+v; the sale view right after: %s %+v", len(keys), before.Stock, after.State, after.Stock)
	if after.Stock.Total != fxStock || (after.State == "sold_out") != (after.Stock.Available == 0) || after.State == "ended" {
		t.Errorf("after the loss the sale is %s %+v", after.State, after.Stock)
	}
	out := s.settle("202", "409 sold_out")
	s.payAndCancel(out, 10)
	fxNoRepairs(t, wk)
}

// TestFaultRedisRestarted: the Redis server is shut down without saving and
// started again in the middle of the sale. Everyone on the machine loses their
// Redis data, so it runs only with FLASHSALE_TEST_DISRUPTIVE=1 or CI.
func TestFaultRedisRestarted(t *testing.T) {
	fxDisruptive(t)
	e := newEnv(t)
	ing := e.start("ingress", nil)
	e.startProc("worker", nil, false)
	s := fxStartSale(t, e, ing.client(), fxStock, fxUsers, 5*time.Second, 30*time.Second)
	v := s.awaitTaken(fxStock/3, time.Minute)
	s.midSale(v)
	rdb := newRedis()
	defer rdb.Close()
	ctx := context.Background()
	marker := e.NS + ":fx-marker"
	if err := rdb.Set(ctx, marker, "1", 0).Err(); err != nil {
		t.Fatal(err)
	}
	took := fxRestartRedis(t)
	if n, err := rdb.Exists(ctx, marker).Result(); err != nil || n != 0 {
		t.Fatalf("precondition: Redis kept its data over the restart (%d, %v)", n, err)
	}
	t.Logf("redis restarted at %+v; down for %s", v.Stock, took)
	out := s.settle("202", "200", "409 sold_out")
	s.payAndCancel(out, 10)
}

// TestFaultBrokerOutage: RabbitMQ is unreachable for 5 s for the ingress and
// the worker (a TCP proxy in front of the broker goes down, then up): the
// ingress answers 503 quickly meanwhile, and users who retry get through once
// it is back.
func TestFaultBrokerOutage(t *testing.T) {
	e := newEnv(t)
	px, viaProxy := amqpProxy(t)
	vars := map[string]string{"FLASHSALE_AMQP_URL": viaProxy}
	ing := e.start("ingress", vars)
	e.startProc("worker", vars, false)
	s := fxStartSale(t, e, ing.client(), fxStock, fxUsers, 8*time.Second, 60*time.Second)
	v := s.awaitTaken(fxStock/4, time.Minute)
	s.midSale(v)
	px.Down()
	down := time.Now()
	back := down.Add(5 * time.Second)
	if !poll(time.Until(back), 10*time.Millisecond, func() bool { return s.retried("503 unavailable") > 0 }) {
		t.Errorf("no purchase answered 503 during the broker outage")
	}
	time.Sleep(time.Until(back)) // the outage lasts 5 s
	px.Up()
	t.Logf("broker away for %s from %+v; %d answers 503 meanwhile", time.Since(down).Round(time.Millisecond), v.Stock, s.retried("503 unavailable"))
	out := s.settle("202", "409 sold_out")
	// A purchase whose publish hangs waits out the publish timeout (5 s),
	// then undoes its claim (a MySQL write and two Redis calls) before it
	// answers 503.
	if s.slow503 > 6500*time.Millisecond {
		t.Errorf("the slowest 503 took %s, want an answer within the 5 s publish timeout and its undo", s.slow503)
	}
	s.payAndCancel(out, 10)
}

// TestFaultBrokerStopApp: the broker itself is stopped for several seconds
// mid-sale (`rabbitmqctl stop_app`, then `start_app`) under ingress and worker.
// Purchases answer 503 meanwhile, every process reconnects and re-declares, and
// nothing confirmed is lost. It stops the machine's broker for everyone, so it
// runs only with FLASHSALE_TEST_DISRUPTIVE=1 or CI.
func TestFaultBrokerStopApp(t *testing.T) {
	fxDisruptive(t)
	e := newEnv(t)
	ing := e.start("ingress", nil)
	e.startProc("worker", nil, false)
	c := ing.client()
	// A second sale with stock to spare: its buyers during the outage show what
	// the ingress answers while the broker is stopped.
	probeSale := c.createSale(t, openSale(100, 1, 100))
	s := fxStartSale(t, e, c, fxStock, fxUsers, 8*time.Second, 90*time.Second)
	v := s.awaitTaken(fxStock/4, time.Minute)
	s.midSale(v)
	rabbitmqctl := func(args ...string) {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		if out, err := exec.CommandContext(ctx, "rabbitmqctl", args...).CombinedOutput(); err != nil {
			t.Fatalf("rabbitmqctl %v: %v\n%s", args, err, out)
		}
	}
	down := time.Now()
	rabbitmqctl("stop_app")
	t.Cleanup(func() { exec.Command("rabbitmqctl", "start_app").Run() }) // never leave the broker stopped
	// While it is stopped, a purchase answers 503 promptly and leaves nothing.
	var probes []string
	for i := 0; i < 5; i++ {
		u := fmt.Sprintf("probe-%d", i)
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		t0 := time.Now()
		r, err := c.purchase(ctx, probeSale, u, 1)
		cancel()
		if err != nil {
			t.Fatalf("purchase while the broker is stopped: %v", err)
		}
		checkError(t, "purchase while the broker is stopped", r, http.StatusServiceUnavailable, "unavailable")
		if took := time.Since(t0); took > 5*time.Second {
			t.Errorf("a purchase while the broker is stopped took %s, want an answer within 5s", took)
		}
		probes = append(probes, u)
	}
	rabbitmqctl("start_app")
	rabbitmqctl("await_startup")
	t.Logf("broker stopped for %s from %+v", time.Since(down).Round(time.Millisecond), v.Stock)
	// The same buyers succeed once it is back: 202, then an order.
	var refs []ticketRef
	for _, u := range probes {
		// 503 while the processes reconnect; still 503 at the deadline fails
		// as any other answer but 202 does.
		var r reply
		poll(60*time.Second, pollEvery, func() bool {
			r = c.must(t, http.MethodPost, pathPurchase(probeSale), user(u), map[string]int{"quantity": 1})
			return r.Status != http.StatusServiceUnavailable
		})
		if r.Status != http.StatusAccepted {
			t.Fatalf("purchase by %s after the broker came back: %s, want 202", u, r)
		}
		var a purchaseAnswer
		if err := r.decode(&a); err != nil {
			t.Fatal(err)
		}
		refs = append(refs, ticketRef{User: u, TicketID: a.TicketID})
	}
	for id, tv := range c.awaitFinal(t, refs, time.Minute) {
		if tv.Status != "pending_payment" {
			t.Errorf("probe ticket %s ended %q, want pending_payment", id, tv.Status)
		}
	}
	out := s.settle("202", "409 sold_out", "503 unavailable")
	s.payAndCancel(out, 10)
}

// TestFaultMySQLConnectionsKilled: every connection to the deployment's order
// shards is killed (KILL <id>) four times during the sale. Workers retry; no
// message whose effects did not commit is acked.
func TestFaultMySQLConnectionsKilled(t *testing.T) {
	e := newEnv(t)
	ing := e.start("ingress", nil)
	e.startProc("worker", nil, false)
	admin, err := sql.Open("mysql", mysqlDSN(""))
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close()
	s := fxStartSale(t, e, ing.client(), fxStock, fxUsers, 5*time.Second, 0)
	killed := 0
	for i := 1; i <= 4; i++ {
		v := s.awaitTaken(i*fxStock/5, time.Minute)
		if i == 1 {
			s.midSale(v)
		}
		n := fxKillShardConnections(t, e, admin)
		t.Logf("killed %d shard connections at %+v", n, v.Stock)
		killed += n
	}
	if killed == 0 {
		t.Fatalf("precondition: no connection to the shards was killed")
	}
	out := s.settle("202", "409 sold_out")
	s.payAndCancel(out, 10)
}

// TestFaultRollingRestart: ingress, worker, delayq and relay run as separate
// processes and each is stopped with SIGTERM (exiting 0) and started again,
// one after another, during the sale. Users retry connection errors while the
// ingress restarts.
func TestFaultRollingRestart(t *testing.T) {
	e := newEnv(t)
	ing := e.start("ingress", nil)
	roles := []*proc{ing, e.startProc("worker", nil, false), e.startProc("delayq", nil, false), e.startProc("relay", nil, false)}
	s := fxStartSale(t, e, ing.client(), 900, fxUsers, 8*time.Second, 60*time.Second)
	v := s.awaitTaken(150, time.Minute)
	s.midSale(v)
	for _, p := range roles {
		t0 := time.Now()
		p.Restart() // asserts exit 0 on SIGTERM
		t.Logf("%s restarted in %s", p.Role, time.Since(t0).Round(time.Millisecond))
	}
	if v, _ := s.view(); v.Stock.Available == 0 {
		t.Logf("the sale sold out during the restarts (%+v)", v.Stock)
	}
	out := s.settle("202", "200", "409 sold_out")
	s.payAndCancel(out, 10)
	for _, p := range roles {
		p.Stop()
	}
}

// TestFaultPoisonMessages: messages that can never succeed are published into
// the purchase queue during the sale: invalid JSON, a purchase of an unknown
// sale, a purchase without ids. They are dead-lettered and consumed from the
// dead-letter queue (the unknown sale's ticket ends failed), and nothing else
// is disturbed.
func TestFaultPoisonMessages(t *testing.T) {
	e := newEnv(t)
	p := e.start("all", nil)
	c := p.client()
	s := fxStartSale(t, e, c, fxStock, fxUsers, 5*time.Second, 0)
	v := s.awaitTaken(fxStock/4, time.Minute)
	s.midSale(v)
	ticket := uuid.Must(uuid.NewV7()).String() // ticket ids are UUIDv7, as the ingress mints them
	const poisonUser = "poison-user"
	unknownSale, _ := json.Marshal(map[string]any{"ticket_id": ticket, "sale_id": "no-such-sale-" + randHex(4),
		"user_id": poisonUser, "quantity": 1, "admitted_at": time.Now().UTC()})
	for _, body := range [][]byte{[]byte(`{"ticket_id": "x", "sale_id": `), unknownSale, []byte(`{"quantity": 1}`)} {
		fxPublish(t, e.NS+".purchase", "purchase", body)
	}
	out := s.settle("202", "409 sold_out")

	// All three went through the dead-letter queue and were consumed there.
	var dead, settled float64
	if !poll(30*time.Second, pollEvery, func() bool {
		dead = fxMetric(t, c, `flashsale_worker_messages_total{outcome="dead_letter"}`)
		settled = fxMetric(t, c, `flashsale_worker_messages_total{outcome="dead_letter_settled"}`)
		return dead >= 3 && settled >= 3
	}) {
		t.Fatalf("dead-lettered %v and settled %v poison messages, want 3 and 3", dead, settled)
	}
	t.Logf("dead-lettered %v, settled from the dead-letter queue %v", dead, settled)
	r := c.must(t, http.MethodGet, pathTicket(ticket), user(poisonUser), nil)
	var tv ticketView
	if r.Status != http.StatusOK || r.decode(&tv) != nil || tv.Status != "failed" {
		t.Errorf("ticket of the unknown sale's purchase: %s, want failed", r)
	}
	var status string
	err := e.shard(shardOf(poisonUser, 2)).QueryRow("SELECT status FROM ticket_outcomes WHERE ticket_id = ?", ticket).Scan(&status)
	if err != nil || status != "failed" {
		t.Errorf("ticket_outcomes of the unknown sale's purchase: %q, %v; want failed", status, err)
	}
	// Both queues drain: every message, poison or not, was settled.
	fxAwaitPurchaseQueuesDrained(t, e)
	s.payAndCancel(out, 10)
}

// TestFaultReconcileCommand: differences injected into Redis are reported by
// `flashsale reconcile` (exit 1, also with --json), repaired by --repair (exit
// 0), and the sale view is right again.
func TestFaultReconcileCommand(t *testing.T) {
	e := newEnv(t)
	p := e.start("all", map[string]string{"FLASHSALE_RECONCILE_INTERVAL": "3600"})
	c := p.client()
	s := fxStartSale(t, e, c, 50, 80, 0, 0)
	out := s.settle("202", "409 sold_out")
	want := stockView{Total: 50, Held: 50}

	// A counter off, and a held order's hold lost.
	rdb := newRedis()
	defer rdb.Close()
	ctx := context.Background()
	// damage deletes the hold of the n-th ticket that made an order (a
	// sold-out ticket's refusal state is no difference when it is gone) and
	// puts the counters of its user's part of the sale off; it returns the
	// ticket.
	damage := func(n int) string {
		t.Helper()
		var held, holder string
		for _, ref := range out.refs {
			if out.final[ref.TicketID].Status == "pending_payment" {
				if held, holder = ref.TicketID, ref.User; n == 0 {
					break
				}
				n--
			}
		}
		prefix := strings.TrimSuffix(redisstore.StockKey(e.NS, s.ID, holder, redisSegments()), "stock")
		if err := rdb.HIncrBy(ctx, prefix+"stock", "available", 7).Err(); err != nil {
			t.Fatal(err)
		}
		if n, err := rdb.HDel(ctx, prefix+"holds", held).Result(); err != nil || n != 1 {
			t.Fatalf("precondition: hold of %s not deleted: %d %v", held, n, err)
		}
		return held
	}
	held := damage(0)
	code, text := fxReconcile(t, e)
	t.Logf("flashsale reconcile (exit %d):\n%s", code, text)
	if code != 1 || !strings.Contains(text, "DIFFERENT") || !strings.Contains(text, held) {
		t.Errorf("flashsale reconcile exited %d, want 1 with the differences:\n%s", code, text)
	}
	code, js := fxReconcile(t, e, "--json")
	var rep fxReconcileReport
	if err := json.Unmarshal([]byte(js), &rep); err != nil || code != 1 || rep.Agree || rep.Differences == 0 {
		t.Errorf("flashsale reconcile --json exited %d (%v): %s", code, err, tail(js, 30))
	}
	code, text = fxReconcile(t, e, "--repair")
	t.Logf("flashsale reconcile --repair (exit %d):\n%s", code, text)
	if code != 0 {
		t.Errorf("flashsale reconcile --repair exited %d, want 0", code)
	}
	if v := c.sale(t, s.ID); v.Stock != want {
		t.Errorf("sale view after the repair %+v, want %+v", v.Stock, want)
	}
	fxReconcileAgrees(t, e, s.ID, want)

	// The stock cap: Redis counts 3 units more than the sold-out sale has
	// (on the segment of a new buyer), the buyer gets a 202, and MySQL
	// refuses the order: the ticket ends sold_out, /metrics counts the
	// refusal, and the sale is rebuilt in Redis from MySQL.
	const capped = "capped-buyer"
	if err := rdb.HIncrBy(ctx, redisstore.StockKey(e.NS, s.ID, capped, redisSegments()), "available", 3).Err(); err != nil {
		t.Fatal(err)
	}
	r := c.must(t, http.MethodPost, pathPurchase(s.ID), user(capped), nil)
	var a purchaseAnswer
	if r.Status != http.StatusAccepted || r.decode(&a) != nil {
		t.Fatalf("precondition: with 3 units more in Redis the purchase is admitted: %s", r)
	}
	if v := c.awaitFinal(t, []ticketRef{{User: capped, TicketID: a.TicketID}}, 30*time.Second)[a.TicketID]; v.Status != "sold_out" {
		t.Errorf("the ticket of a unit MySQL does not have: %+v, want sold_out", v)
	}
	if n := fxMetric(t, c, `flashsale_stock_cap_refusals_total{reason="sold_out"}`); n != 1 {
		t.Errorf(`flashsale_stock_cap_refusals_total{reason="sold_out"} = %v, want 1 (the one purchase MySQL refused)`, n)
	}
	eventually(t, 15*time.Second, "the sale rebuilt in Redis from MySQL", func() (bool, string) {
		v := c.sale(t, s.ID)
		return v.Stock == want, fmt.Sprintf("%+v", v.Stock)
	})
	fxReconcileAgrees(t, e, s.ID, want)

	// The background reconciler, on the same damage to another order: a
	// process reconciling every second shows the differences on /metrics by
	// kind (from its first pass), repairs them (a difference seen by two
	// passes), counts the repairs, and the differences go back to 0.
	p.Stop()
	damage(1)
	bg := e.start("all", map[string]string{"FLASHSALE_RECONCILE_INTERVAL": "1"})
	kinds := []string{"hold", "unordered_hold", "counters", "units", "oversold"}
	most := map[string]float64{}
	eventually(t, 60*time.Second, "the background reconciler's differences by kind on /metrics", func() (bool, string) {
		m := scrapeMetrics(t, bg.URL+"/metrics")
		for _, k := range kinds {
			most[k] = max(most[k], m[series("flashsale_reconcile_differences_by_kind", "kind", k)])
		}
		return most["hold"] >= 1 && most["counters"] >= 1, fmt.Sprintf("most seen by kind: %v", most)
	})
	t.Logf("flashsale_reconcile_differences_by_kind, most seen: %v", most)
	eventually(t, 30*time.Second, "the background reconciler repaired them: differences 0, repairs counted", func() (bool, string) {
		m := scrapeMetrics(t, bg.URL+"/metrics")
		diffs, _ := m.sum("flashsale_reconcile_differences_by_kind")
		repaired := m[series("flashsale_reconcile_repairs_total", "kind", "hold")]
		return diffs == 0 && repaired >= 1, fmt.Sprintf("differences %v, hold repairs %v", diffs, repaired)
	})
	if v := bg.client().sale(t, s.ID); v.Stock != want {
		t.Errorf("sale view after the background repair %+v, want %+v", v.Stock, want)
	}
	fxReconcileAgrees(t, e, s.ID, want)
}
