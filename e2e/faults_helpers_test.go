package e2e

// Helpers of the fault tests (faults_test.go): a sale with users arriving over
// a few seconds, the check of every guarantee of contract section 4 once the
// system is quiet, `flashsale reconcile`, and the faults themselves. Names
// start with fx so that they do not collide with other tests' helpers.

import (
	"bufio"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"database/sql"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
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

const fxPrice = 1500

// fxSale is one sale whose buyers arrive evenly over a spread of time, each
// buying one unit once. A buyer whose request fails at the transport or
// answers 503 retries with a backoff for up to retryFor, as a user whose page
// failed would.
type fxSale struct {
	t        *testing.T
	e        *env
	c        *client
	ID       string
	Stock    int
	retryFor time.Duration

	wg      sync.WaitGroup
	mu      sync.Mutex
	refs    []ticketRef
	seen    map[string]string // ticket id -> user
	ta      *tally
	retries map[string]int // answers that were retried, by outcome
	slow503 time.Duration  // the slowest 503 answer
}

// fxStartSale creates the sale (stock units, one per user) and starts the
// buyers; it returns at once.
func fxStartSale(t *testing.T, e *env, c *client, stock, users int, spread, retryFor time.Duration) *fxSale {
	t.Helper()
	s := &fxSale{t: t, e: e, c: c, Stock: stock, retryFor: retryFor, seen: map[string]string{}, ta: newTally(),
		retries: map[string]int{}}
	s.ID = c.createSale(t, openSale(stock, 1, fxPrice))
	names := userNames("fx", users)
	s.wg.Add(len(names))
	go func() {
		start := time.Now()
		for i, u := range names {
			if d := time.Until(start.Add(spread * time.Duration(i) / time.Duration(len(names)))); d > 0 {
				time.Sleep(d) // pacing the arrivals
			}
			go s.buy(u)
		}
	}()
	return s
}

func (s *fxSale) buy(u string) {
	defer s.wg.Done()
	// A user retrying with backoff (a load to drive, not a wait for an
	// effect): not through poll, whose pace is fixed.
	deadline := time.Now().Add(s.retryFor)
	wait := 50 * time.Millisecond
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		t0 := time.Now()
		r, err := s.c.purchase(ctx, s.ID, u, 1)
		took := time.Since(t0)
		cancel()
		if err == nil && r.Status == http.StatusServiceUnavailable {
			s.mu.Lock()
			s.slow503 = max(s.slow503, took)
			s.mu.Unlock()
		}
		if (err != nil || r.Status == http.StatusServiceUnavailable) && time.Now().Before(deadline) {
			s.mu.Lock()
			s.retries[outcome(r, err)]++
			s.mu.Unlock()
			time.Sleep(wait) // the user's retry pace
			wait = min(2*wait, time.Second)
			continue
		}
		s.record(u, r, err)
		return
	}
}

func (s *fxSale) record(u string, r reply, err error) {
	k := outcome(r, err)
	ex := fmt.Sprintf("%s: %v", u, err)
	if err == nil {
		ex = fmt.Sprintf("%s: %s", u, r)
	}
	s.ta.add(k, ex)
	if err != nil || (r.Status != http.StatusAccepted && r.Status != http.StatusOK) {
		return
	}
	var a purchaseAnswer
	if err := r.decode(&a); err != nil || a.TicketID == "" {
		s.t.Errorf("user %s: answer %s without a ticket", u, r)
		return
	}
	if r.Status == http.StatusAccepted && a.Status != "queued" {
		s.t.Errorf("user %s: 202 %s, want status queued", u, r)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if other, ok := s.seen[a.TicketID]; ok {
		if other != u {
			s.t.Errorf("ticket %s given to both %s and %s", a.TicketID, other, u)
		}
		return
	}
	s.seen[a.TicketID] = u
	s.refs = append(s.refs, ticketRef{User: u, TicketID: a.TicketID})
}

// accepted is how many tickets buyers hold so far.
func (s *fxSale) accepted() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.refs)
}

// retried returns how often buyers retried an answer of this outcome.
func (s *fxSale) retried(outcome string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.retries[outcome]
}

// view reads the sale view, or reports false (the ingress may be away).
func (s *fxSale) view() (saleView, bool) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	r, err := s.c.send(ctx, http.MethodGet, pathSale(s.ID), nil, nil)
	var v saleView
	if err != nil || r.Status != http.StatusOK || r.decode(&v) != nil {
		return v, false
	}
	return v, true
}

// awaitTaken waits until at least n units are held or sold and returns the
// sale view.
func (s *fxSale) awaitTaken(n int, timeout time.Duration) saleView {
	s.t.Helper()
	var v saleView
	if !poll(timeout, 10*time.Millisecond, func() bool {
		var ok bool
		v, ok = s.view()
		return ok && v.Stock.Held+v.Stock.Sold >= n
	}) {
		s.t.Fatalf("fewer than %d units taken within %s (stock %+v)", n, timeout, v.Stock)
	}
	return v
}

// midSale asserts that the sale is still selling: the fault lands in the
// middle of it.
func (s *fxSale) midSale(v saleView) {
	s.t.Helper()
	if v.Stock.Available == 0 {
		s.t.Fatalf("precondition: the sale sold out before the fault (%+v)", v.Stock)
	}
}

// awaitAccepted waits until buyers hold at least n tickets.
func (s *fxSale) awaitAccepted(n int, timeout time.Duration) {
	s.t.Helper()
	if !poll(timeout, 10*time.Millisecond, func() bool { return s.accepted() >= n }) {
		s.t.Fatalf("fewer than %d tickets accepted within %s (%d)", n, timeout, s.accepted())
	}
}

// fxOutcome is the quiet state after a sale: every ticket final, the orders.
type fxOutcome struct {
	refs  []ticketRef
	final map[string]ticketView
	rows  []orderRow
}

// settle waits for the buyers, then for every accepted ticket to be final,
// and checks every guarantee of contract section 4 and `flashsale reconcile`.
// allowed are the answers buyers may end with.
func (s *fxSale) settle(allowed ...string) *fxOutcome {
	t := s.t
	t.Helper()
	s.wg.Wait()
	s.mu.Lock()
	refs := append([]ticketRef(nil), s.refs...)
	t.Logf("answers: %s; retried: %v; slowest 503: %s", s.ta, s.retries, s.slow503)
	s.mu.Unlock()
	s.ta.only(t, allowed...)
	if len(refs) < s.Stock {
		t.Errorf("precondition: %d tickets accepted, fewer than the %d units: the sale did not sell out", len(refs), s.Stock)
	}
	// 2. Nothing accepted is lost.
	final := s.c.awaitFinal(t, refs, 2*time.Minute)
	out := &fxOutcome{refs: refs, final: final}
	s.check(out)
	return out
}

// check asserts the guarantees on the outcome (tickets final) and reads the
// order rows into it.
func (s *fxSale) check(out *fxOutcome) {
	t := s.t
	t.Helper()
	statuses := map[string]int{}
	for _, ref := range out.refs {
		v := out.final[ref.TicketID]
		statuses[v.Status]++
		switch v.Status {
		case "pending_payment", "paid", "expired", "cancelled":
			// One ticket makes at most one order, and the order's id is the ticket's.
			if v.OrderID != ref.TicketID {
				t.Errorf("ticket %s (%s) has order_id %q, want the ticket's id", ref.TicketID, v.Status, v.OrderID)
			}
		case "sold_out", "failed":
			if v.OrderID != "" {
				t.Errorf("ticket %s is %s with order %s", ref.TicketID, v.Status, v.OrderID)
			}
		default:
			t.Errorf("ticket %s ended %q", ref.TicketID, v.Status)
		}
	}
	t.Logf("final tickets: %v", statuses)

	// 1 and 3: no oversell, no user above the limit, no order twice, each
	// order on its user's shard.
	out.rows = s.e.orders(t, s.ID)
	checkOrderRows(t, out.rows, s.Stock, 1)
	byID := map[string]orderRow{}
	pending, paid := 0, 0
	for _, r := range out.rows {
		byID[r.OrderID] = r
		switch r.Status {
		case "pending_payment":
			pending += r.Quantity
		case "paid":
			paid += r.Quantity
		}
		// Every order comes from an accepted ticket of its user, and the
		// ticket says what the order says.
		u, ok := s.seen[r.OrderID]
		if !ok {
			t.Errorf("order %s of %s is no accepted ticket's order", r.OrderID, r.UserID)
			continue
		}
		if u != r.UserID {
			t.Errorf("order %s: user %s, ticket of %s", r.OrderID, r.UserID, u)
		}
		if v := out.final[r.OrderID]; v.Status != r.Status {
			t.Errorf("order %s is %s, its ticket %s", r.OrderID, r.Status, v.Status)
		}
	}
	for _, ref := range out.refs {
		if v := out.final[ref.TicketID]; v.OrderID != "" {
			if _, ok := byID[ref.TicketID]; !ok {
				t.Errorf("ticket %s is %s but MySQL has no order %s", ref.TicketID, v.Status, ref.TicketID)
			}
		}
	}
	if pending+paid == 0 {
		t.Errorf("no order was made")
	}

	// 4. Stock is conserved and Redis agrees with MySQL, once quiet.
	want := stockView{Total: s.Stock, Available: s.Stock - pending - paid, Held: pending, Sold: paid}
	var v saleView
	if !poll(30*time.Second, pollEvery, func() bool {
		v = s.c.sale(t, s.ID)
		return v.Stock == want
	}) {
		t.Errorf("sale view %+v, want %+v (MySQL: %d units pending, %d paid)", v.Stock, want, pending, paid)
	}
	fxReconcileAgrees(t, s.e, s.ID, want)
}

// payAndCancel pays n pending orders through the payment webhook and cancels
// n others as their users, then checks every guarantee again: paid units are
// sold, cancelled ones back on sale, and Redis still agrees with MySQL.
func (s *fxSale) payAndCancel(out *fxOutcome, n int) {
	t := s.t
	t.Helper()
	var pending []ticketRef
	for _, ref := range out.refs {
		if out.final[ref.TicketID].Status == "pending_payment" {
			pending = append(pending, ref)
		}
	}
	if len(pending) < 2*n {
		t.Fatalf("only %d pending orders, want %d to pay and cancel", len(pending), 2*n)
	}
	for i, ref := range pending[:2*n] {
		var r reply
		want := "paid"
		if i < n {
			body, _ := json.Marshal(map[string]any{"payment_id": "pay-" + ref.TicketID, "order_id": ref.TicketID,
				"amount_cents": fxPrice, "status": "succeeded"})
			ts := strconv.FormatInt(time.Now().Unix(), 10)
			mac := hmac.New(sha256.New, []byte(s.e.PaymentSecret))
			mac.Write([]byte(ts + "." + string(body)))
			r = s.c.must(t, http.MethodPost, "/api/v1/payments/callback",
				hdr{"X-Flashsale-Signature": "t=" + ts + ",v1=" + hex.EncodeToString(mac.Sum(nil))}, body)
		} else {
			want = "cancelled"
			r = s.c.must(t, http.MethodPost, pathOrder(ref.TicketID)+"/cancel", user(ref.User), nil)
		}
		var o struct {
			Status string `json:"status"`
		}
		if r.Status != http.StatusOK || r.decode(&o) != nil || o.Status != want {
			t.Errorf("%s order %s: %s", want, ref.TicketID, r)
		}
	}
	// The tickets follow their orders.
	changed := pending[:2*n]
	var wrong int
	var problems []string
	if !poll(30*time.Second, pollEvery, func() bool {
		var views map[string]ticketView
		views, problems = s.c.ticketStates(changed)
		wrong = 0
		for i, ref := range changed {
			want := "paid"
			if i >= n {
				want = "cancelled"
			}
			if v, ok := views[ref.TicketID]; ok && v.Status == want {
				out.final[ref.TicketID] = v
			} else {
				wrong++
			}
		}
		return wrong == 0
	}) {
		t.Fatalf("%d paid or cancelled orders' tickets do not follow them after 30s (%v)", wrong, problems)
	}
	s.check(out)
}

// fxNoRepairs asserts that the background reconciler of the processes ran and
// found nothing to repair: work in flight during a fault is no difference, and
// the system itself keeps Redis in step with MySQL.
func fxNoRepairs(t *testing.T, procs ...*proc) {
	t.Helper()
	for _, p := range procs {
		b, err := os.ReadFile(p.logPath)
		if err != nil {
			t.Fatal(err)
		}
		if n := strings.Count(string(b), "reconciler repaired a difference"); n > 0 {
			t.Errorf("%s: the background reconciler repaired %d differences:\n%s", p.Role, n, p.LogTail(60))
		}
	}
}

// fxReconcileReport is the part of `flashsale reconcile --json` the tests read.
type fxReconcileReport struct {
	Agree       bool `json:"agree"`
	Differences int  `json:"differences"`
	Sales       []struct {
		SaleID      string            `json:"sale_id"`
		Status      string            `json:"status"`
		Redis       *stockView        `json:"redis"`
		MySQL       *stockView        `json:"mysql"`
		Differences []json.RawMessage `json:"differences"`
	} `json:"sales"`
}

// fxReconcile runs `flashsale reconcile` with the deployment's variables and
// returns its exit code and output.
func fxReconcile(t *testing.T, e *env, args ...string) (int, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, binPath, append([]string{"reconcile"}, args...)...)
	cmd.Env = processEnv(e.Vars())
	var stdout, stderr strings.Builder
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	var ee *exec.ExitError
	switch {
	case err == nil:
		return 0, stdout.String()
	case errors.As(err, &ee):
		return ee.ExitCode(), stdout.String() + stderr.String()
	}
	t.Fatalf("flashsale reconcile: %v\n%s", err, stderr.String())
	return -1, ""
}

// fxReconcileAgrees asserts that `flashsale reconcile --json` exits 0 and
// reports the sale in agreement at stock want, in Redis and in MySQL.
func fxReconcileAgrees(t *testing.T, e *env, saleID string, want stockView) {
	t.Helper()
	code, out := fxReconcile(t, e, "--json")
	var rep fxReconcileReport
	if err := json.Unmarshal([]byte(out), &rep); err != nil {
		t.Errorf("flashsale reconcile --json exited %d with %v:\n%s", code, err, tail(out, 40))
		return
	}
	if code != 0 || !rep.Agree || rep.Differences != 0 {
		code, text := fxReconcile(t, e)
		t.Errorf("flashsale reconcile: Redis and MySQL do not agree (exit %d):\n%s", code, tail(text, 40))
		return
	}
	for _, s := range rep.Sales {
		if s.SaleID != saleID {
			continue
		}
		if s.Status != "agree" || s.Redis == nil || s.MySQL == nil || *s.Redis != want || *s.MySQL != want {
			t.Errorf("flashsale reconcile: sale %s %s, redis %+v mysql %+v, want both %+v", saleID, s.Status, s.Redis, s.MySQL, want)
		}
		return
	}
	t.Errorf("flashsale reconcile: sale %s not in the report:\n%s", saleID, tail(out, 40))
}

// fxDeleteRedisKeys deletes every key of the namespace at once: SCAN, then one
// DEL (atomic on a single Redis). For this deployment that is the loss of its
// Redis data. It returns the keys deleted.
func fxDeleteRedisKeys(t *testing.T, e *env) []string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	rdb := newRedis()
	defer rdb.Close()
	var keys []string
	switch c := rdb.(type) {
	case *redis.Client:
		iter := c.Scan(ctx, 0, e.NS+":*", 1000).Iterator()
		for iter.Next(ctx) {
			keys = append(keys, iter.Val())
		}
		if err := iter.Err(); err != nil {
			t.Fatalf("scan: %v", err)
		}
		if len(keys) > 0 {
			if err := c.Del(ctx, keys...).Err(); err != nil {
				t.Fatalf("del: %v", err)
			}
		}
	case *redis.ClusterClient:
		var mu sync.Mutex
		err := c.ForEachMaster(ctx, func(ctx context.Context, m *redis.Client) error {
			iter := m.Scan(ctx, 0, e.NS+":*", 1000).Iterator()
			for iter.Next(ctx) {
				mu.Lock()
				keys = append(keys, iter.Val())
				mu.Unlock()
			}
			return iter.Err()
		})
		if err != nil {
			t.Fatalf("scan: %v", err)
		}
		for _, k := range keys {
			c.Del(ctx, k)
		}
	}
	return keys
}

// fxDisruptive skips the test unless FLASHSALE_TEST_DISRUPTIVE=1 or CI is set:
// it disturbs every user of the machine's services.
func fxDisruptive(t *testing.T) {
	t.Helper()
	if os.Getenv("FLASHSALE_TEST_DISRUPTIVE") != "1" && os.Getenv("CI") == "" {
		t.Skip("disrupts every user of the local services; set FLASHSALE_TEST_DISRUPTIVE=1 (or CI) to run it")
	}
}

// fxRestartRedis shuts the local Redis down without saving (everything in it
// is lost) and starts it again, then waits until it answers PONG.
func fxRestartRedis(t *testing.T) time.Duration {
	t.Helper()
	if a := redisAddrs(); len(a) != 1 || a[0] != "127.0.0.1:6379" {
		t.Fatalf("restarting Redis needs the local one at 127.0.0.1:6379, not %v", a)
	}
	ping := func() bool {
		out, err := exec.Command("redis-cli", "-h", "127.0.0.1", "-p", "6379", "ping").Output()
		return err == nil && strings.TrimSpace(string(out)) == "PONG"
	}
	t0 := time.Now()
	// The connection closes as the server exits: an error here is expected.
	exec.Command("redis-cli", "-h", "127.0.0.1", "-p", "6379", "SHUTDOWN", "NOSAVE").Run()
	deadline := time.Now().Add(30 * time.Second) // for the exit and the restart together
	if !poll(time.Until(deadline), 20*time.Millisecond, func() bool { return !ping() }) {
		t.Fatalf("redis still answers 30s after SHUTDOWN NOSAVE")
	}
	// Each start is given half a second to answer PONG; no pause between them
	// beyond that.
	if !poll(time.Until(deadline), 0, func() bool {
		// Fails while the old server still holds the port: try again.
		exec.Command("redis-server", "--daemonize", "yes", "--bind", "127.0.0.1", "--port", "6379",
			"--save", "", "--appendonly", "no", "--dir", "/tmp").Run()
		return poll(500*time.Millisecond, 20*time.Millisecond, ping)
	}) {
		t.Fatalf("redis does not answer PONG 30s after its restart")
	}
	return time.Since(t0)
}

// fxKillShardConnections kills every MySQL connection to the test's shard
// databases and returns how many it killed.
func fxKillShardConnections(t *testing.T, e *env, admin *sql.DB) int {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	args := make([]any, len(e.ShardDBs))
	for i, db := range e.ShardDBs {
		args[i] = db
	}
	rows, err := admin.QueryContext(ctx, "SELECT id FROM information_schema.processlist WHERE db IN (?"+
		strings.Repeat(",?", len(args)-1)+")", args...)
	if err != nil {
		t.Fatalf("processlist: %v", err)
	}
	var ids []int64
	for rows.Next() {
		var id int64
		if err := rows.Scan(&id); err != nil {
			t.Fatal(err)
		}
		ids = append(ids, id)
	}
	rows.Close()
	killed := 0
	for _, id := range ids {
		// A connection that closed meanwhile is "unknown thread": not killed.
		if _, err := admin.ExecContext(ctx, fmt.Sprintf("KILL %d", id)); err == nil {
			killed++
		}
	}
	return killed
}

// fxPublish publishes body to the exchange with the routing key and waits for
// the broker's confirm.
func fxPublish(t *testing.T, exchange, key string, body []byte) {
	t.Helper()
	fxPublishMessage(t, exchange, key, amqp.Publishing{ContentType: "application/json", DeliveryMode: amqp.Persistent, Body: body})
}

// fxPublishMessage publishes msg to the exchange with the routing key and
// waits for the broker's confirm.
func fxPublishMessage(t *testing.T, exchange, key string, msg amqp.Publishing) {
	t.Helper()
	conn, err := amqp.DialConfig(amqpURL(), amqp.Config{Dial: amqp.DefaultDial(5 * time.Second)})
	if err != nil {
		t.Fatalf("rabbitmq: %v", err)
	}
	defer conn.Close()
	ch, err := conn.Channel()
	if err != nil {
		t.Fatal(err)
	}
	if err := ch.Confirm(false); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	dc, err := ch.PublishWithDeferredConfirmWithContext(ctx, exchange, key, true, false, msg)
	if err != nil {
		t.Fatalf("publish: %v", err)
	}
	if ok, err := dc.WaitContext(ctx); err != nil || !ok {
		t.Fatalf("publish not confirmed: %v %v", ok, err)
	}
}

// fxAwaitPurchaseQueuesDrained waits until the purchase and dead-letter
// queues are empty: every message, poison or not, was settled.
func fxAwaitPurchaseQueuesDrained(t *testing.T, e *env) {
	t.Helper()
	var queues map[string]int
	if !poll(30*time.Second, 200*time.Millisecond, func() bool {
		queues = fxQueueMessages(t, e)
		purchase, ok1 := queues[e.NS+".purchase"]
		dead, ok2 := queues[e.NS+".purchase.dead"]
		return ok1 && ok2 && purchase == 0 && dead == 0
	}) {
		t.Errorf("messages left: %v, want the purchase and dead-letter queues empty", queues)
	}
}

// fxQueueMessages returns the messages (ready + unacknowledged) of each
// queue of the namespace, from rabbitmqctl.
func fxQueueMessages(t *testing.T, e *env) map[string]int {
	t.Helper()
	vhost := "/"
	if u, err := amqp.ParseURI(amqpURL()); err == nil && u.Vhost != "" {
		vhost = u.Vhost
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, "rabbitmqctl", "-q", "-p", vhost, "list_queues", "name", "messages").Output()
	if err != nil {
		t.Fatalf("rabbitmqctl list_queues: %v", err)
	}
	got := map[string]int{}
	sc := bufio.NewScanner(strings.NewReader(string(out)))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) == 2 && strings.HasPrefix(f[0], e.NS+".") {
			got[f[0]], _ = strconv.Atoi(f[1])
		}
	}
	return got
}

// fxMetric returns the value of the Prometheus sample named exactly name
// (with its labels, as exposed) on the process's /metrics, 0 when absent.
func fxMetric(t *testing.T, c *client, name string) float64 {
	t.Helper()
	r := c.must(t, http.MethodGet, "/metrics", nil, nil)
	if r.Status != http.StatusOK {
		t.Fatalf("GET /metrics: %s", r)
	}
	for _, line := range strings.Split(string(r.Body), "\n") {
		if v, ok := strings.CutPrefix(line, name+" "); ok {
			f, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
			if err != nil {
				t.Fatalf("metric %s: %q", name, line)
			}
			return f
		}
	}
	return 0
}
