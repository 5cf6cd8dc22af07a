package e2e

// The soak (make soak): a few minutes of a steady crowd on six sales of a
// deployment of separate processes, with a random fault every ~6 s, and the
// guarantees of contract section 4 checked at every poll while it runs and
// once more when the system is quiet. Helpers live in soak_*_test.go; their
// names start with soak.

import (
	"context"
	"database/sql"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// TestSoak runs the soak. It is not part of `make test`: it is skipped unless
// FLASHSALE_SOAK=1 (`make soak` sets it), and it takes the time it is given.
//
// Settings (environment):
//   - FLASHSALE_SOAK_SECONDS: how long the crowd buys and faults are injected
//     (default 240); settling afterwards takes up to a few minutes more.
//   - FLASHSALE_SOAK_SEED: the seed of the fault schedule and of the crowd's
//     choices (default: random, printed at the start and in the summary).
//   - FLASHSALE_SOAK_USERS_PER_SECOND: new users arriving each second (default 40).
//   - FLASHSALE_SOAK_SEGMENTS: FLASHSALE_REDIS_SEGMENTS of the deployment
//     (default 3: every sale's stock in three segments; 1 runs the one-slot
//     sales).
//   - FLASHSALE_SOAK_FAULTS: the fault kinds to draw from, comma-separated
//     (default: every kind).
//   - FLASHSALE_SOAK_LOGDIR: copy the process logs there at the end (they are
//     copied to a fresh directory under $TMPDIR anyway when the test fails).
//
// The deployment: one ingress, two workers, one relay, one delayq, each its own
// process of the binary; Redis is a private redis-server of the test (so it can
// be frozen, saved, restarted from an older snapshot, made to follow a
// replica), which every process reaches through a TCP proxy that can be cut; a
// private replica follows it until the test cuts it off. Every process reaches
// MySQL (meta and shards) through a TCP proxy of its own, which can be cut, and
// which can hold back a statement to catch the process that sent it. The test
// itself reads the shards and Redis directly.
//
// The crowd: new users keep arriving; each buys quantity 1..per_user_limit of
// one sale (sometimes with a double click; an impatient user sends the
// purchase again every 1–3 s while the ticket reads queued), waits for the
// ticket's decision, then pays (signed webhook), pays late (after pay_by),
// cancels, or lets the order expire; some buy again after a final status.
// Some let their first order expire, buy again at once, let that one expire
// too and then pay both at the same moment (concurrent late payments).
//
// Faults, one at a time, every ~6 s, drawn from a shuffled bag of every kind:
// SIGKILL a worker, the relay or delayq (then start it again), restart the
// ingress (SIGTERM, start), cut MySQL for 5 s, freeze Redis for 5 s
// (SIGSTOP/SIGCONT), delete the namespace's Redis keys, restart Redis from an
// older snapshot (SAVE at an earlier tick, then SHUTDOWN NOSAVE and start);
// and the recovery faults of issue 22 (soak_recovery_test.go): stop both
// workers so that a backlog of queued tickets builds while users retry, then
// FLUSHALL or a restart from the snapshot of that moment, then start the
// workers; Redis unreachable for 15–20 s across the pay_by of pending orders;
// a REPLICAOF round trip (the Redis follows the replica cut off earlier, then
// REPLICAOF NO ONE: same run_id, older data); a process SIGKILLed in the
// middle of rebuilding a sale (a sale's keys damaged, every rebuild's read of
// MySQL held at the proxies, the first process caught killed while held or
// a few milliseconds after).
//
// Checked at every poll (~250 ms), per sale: units in pending_payment + paid
// orders <= stock and units per user <= per_user_limit, read from both shards
// in one consistent snapshot; no order still pending 60 s after its pay_by; the
// sale view, whenever it answers, has available + held + sold == total == stock
// and no counter below zero. Also, whenever the crowd or a watcher reads an
// accepted ticket: never 404; a double click never gets two tickets; two late
// payments at once never pay more than per_user_limit. After a pay_by outage:
// every ticket of an order due inside reads as MySQL says within 60 s of
// Redis answering again. Checked at the end (faults stopped, system quiet):
// every accepted ticket final and known, tickets agree with MySQL's orders,
// every order comes from a ticket the crowd was given, each sale view equals
// its orders (held = pending units, sold = paid units), `flashsale reconcile`
// exits 0, no ticket `failed` (every one is a violation), a purchase sent again
// while queued never answered with another ticket while the first was live,
// every unit back on sale (Redis holds nothing once no order is pending, and
// fresh users buy exactly the units MySQL says are free, then sold out), every
// role stops gracefully. Every violation is recorded with its time and the
// fault in progress; the test fails at the end if there is any.
func TestSoak(t *testing.T) {
	if os.Getenv("FLASHSALE_SOAK") != "1" {
		t.Skip("the soak runs only with FLASHSALE_SOAK=1 (make soak); it is not part of make test")
	}
	dur := time.Duration(soakEnvInt(t, "FLASHSALE_SOAK_SECONDS", 240)) * time.Second
	rate := soakEnvInt(t, "FLASHSALE_SOAK_USERS_PER_SECOND", 40)
	var seed uint64
	if v := os.Getenv("FLASHSALE_SOAK_SEED"); v != "" {
		n, err := strconv.ParseUint(v, 10, 64)
		if err != nil {
			t.Fatalf("FLASHSALE_SOAK_SEED=%q: %v", v, err)
		}
		seed = n
	} else {
		seed = rand.Uint64() % 1_000_000_000
	}
	s := soakDeploy(t, seed, dur)
	s.logf("soak: seed %d, %s, %d new users/s (FLASHSALE_SOAK_SEED=%d FLASHSALE_SOAK_SECONDS=%d reproduce the fault schedule)",
		seed, dur, rate, seed, int(dur.Seconds()))
	defer s.keepLogs()

	s.createSales()
	s.saveSnapshot("before the crowd")

	s.start = time.Now()
	s.setPhase("run")
	end := s.start.Add(dur)
	stopWatch := s.startWatch()
	crowdDone := make(chan struct{})
	go func() {
		defer close(crowdDone)
		s.crowd(rate, end)
	}()

	s.faultLoop(rand.New(rand.NewPCG(seed, 0xfa017)), end)
	s.setPhase("last users")
	s.logf("%7.2fs faults stopped; no new users; the last ones finish what they started", s.elapsed())
	<-crowdDone
	s.lastUsers = time.Since(end)
	s.setPhase("settling")
	s.logf("%7.2fs the last users are done; settling", s.elapsed())

	s.settle()
	stopWatch()
	s.stopAll()
	s.summary()
	s.failOnViolations()
}

// soak is one soak run: its deployment, its crowd's tickets and everything
// it observed.
type soak struct {
	t     *testing.T
	e     *env
	seed  uint64
	dur   time.Duration
	start time.Time

	segments int           // FLASHSALE_REDIS_SEGMENTS of the deployment
	rs       *privateRedis // the deployment's Redis; the test reaches it directly
	redisPx  *tcpProxy     // every process reaches rs through it (cut: Redis unreachable)
	replica  *privateRedis // follows rs until cut off (see soakReplica)
	repl     soakReplica
	mysqlPx  *tcpProxy   // MySQL of the commands the test runs (reconcile)
	procPx   []*tcpProxy // MySQL of each process, in the order of procs()
	catch    atomic.Pointer[soakCatch]
	ingress  *proc
	workers  []*proc
	relay    *proc
	delayq   *proc
	c        *client
	direct   *sql.DB // the MariaDB server of the shards, no database selected, no proxy

	sales    []*soakSale
	saleByID map[string]*soakSale

	stopping atomic.Bool // the crowd starts no new purchase
	sessions sync.WaitGroup
	users    atomic.Int64

	mu            sync.Mutex
	phase         string // the fault in progress, or "run" / "settling"
	lastKind      string // the kind of the last fault
	faultCount    map[string]int
	faultLog      []string
	lastSave      time.Time
	tickets       map[string]*soakTicket
	ticketList    []*soakTicket
	lostReply     map[string]bool     // user/sale: a purchase request of theirs got no answer
	history       map[string][]string // user/sale: the answers to their purchase requests
	purchases     *tally              // the answer of every purchase request
	pays          *tally
	cancels       *tally
	gaveUp        int // purchases given up after 30 s of 503 / no answer
	doubles       int
	doubleTickets int // double clicks answered with two tickets (judged like purchases sent again)
	viol          map[string]*soakViolations
	regress       int
	regressEx     []string
	reconcile     int           // exit code of flashsale reconcile at the end
	lastUsers     time.Duration // from the end of the crowd until its last user was done
	final         soakFinal

	retries   *tally          // purchases sent again while the ticket read queued, by answer
	seconds   []soakSecond    // a retry answered with another ticket than the queued one
	latePairs *tally          // two expired orders paid at once, by the pair of answers
	followUps sync.WaitGroup  // checks a fault left running (see checkFollowed)
	followLag []time.Duration // Redis back → every ticket of an order due in the outage reads as MySQL says
	sweep     []string        // the end's purchase of every unit left, per sale
}

// soakSaleDef is one sale of the soak.
type soakSaleDef struct {
	Stock, Limit, WindowS int
	Price                 int64
}

// The six sales: from a few units that are always sold out (units come back
// only by expiry and cancel) to a large stock that lasts most of the run.
var soakSaleDefs = []soakSaleDef{
	{Stock: 20, Limit: 1, WindowS: 20, Price: 1900},
	{Stock: 60, Limit: 2, WindowS: 25, Price: 2900},
	{Stock: 150, Limit: 3, WindowS: 30, Price: 990},
	{Stock: 400, Limit: 1, WindowS: 35, Price: 4900},
	{Stock: 1000, Limit: 2, WindowS: 40, Price: 1500},
	{Stock: 2500, Limit: 3, WindowS: 30, Price: 700},
}

type soakSale struct {
	soakSaleDef
	ID string

	// Written by the watch only.
	maxUnits int
	maxAt    float64
	views    map[string]int // sale view answers by outcome
	minAvail int
}

// soakTicket is one ticket the crowd was given (202, or 200 for a ticket it had
// not seen: the answer of an earlier request was lost).
type soakTicket struct {
	ID, User, Sale string
	Qty            int
	At             time.Time // first seen
	After          string    // the last fault injected before it was accepted
	Via            int       // 202 or 200

	// Guarded by soak.mu.
	rank      int       // highest status rank seen (see soakRank)
	last      string    // last status seen
	final     string    // the last final status seen (past pending_payment), if any
	decidedAt time.Time // first seen past queued
	lost      bool      // answered 404 (recorded once)
	reported  bool      // a violation of the end already names it
}

type soakViolations struct {
	n  int
	ex []string
}

// soakDeploy starts the deployment: a private Redis, a proxy in front of
// MariaDB, and the five processes.
func soakDeploy(t *testing.T, seed uint64, dur time.Duration) *soak {
	t.Helper()
	e := newEnv(t)
	s := &soak{t: t, e: e, seed: seed, dur: dur, phase: "setup", faultCount: map[string]int{},
		tickets: map[string]*soakTicket{}, lostReply: map[string]bool{}, history: map[string][]string{}, purchases: newTally(),
		pays: newTally(), cancels: newTally(), viol: map[string]*soakViolations{}, reconcile: -1,
		retries: newTally(), latePairs: newTally()}

	s.segments = soakEnvInt(t, "FLASHSALE_SOAK_SEGMENTS", 3)
	e.setVar("FLASHSALE_REDIS_SEGMENTS", strconv.Itoa(s.segments))
	s.rs = startPrivateRedis(t, "soak-redis")
	s.redisPx = newProxy(t, s.rs.Addr)
	e.setVar("FLASHSALE_REDIS_ADDRS", s.redisPx.Addr)
	s.replica = startPrivateRedis(t, "soak-replica", "--replicaof", "127.0.0.1", soakPort(s.rs.Addr))
	base, err := mysqlBase()
	if err != nil {
		t.Fatal(err)
	}
	s.mysqlPx = newProxy(t, base.Addr)
	e.setVar("FLASHSALE_MYSQL_META_DSN", proxiedDSN(s.mysqlPx.Addr, e.MetaDB))
	e.setVar("FLASHSALE_MYSQL_SHARD_DSNS", e.shardDSNsVia(s.mysqlPx.Addr))

	cfg := base.Clone()
	cfg.DBName, cfg.ParseTime, cfg.Loc = "", true, time.UTC
	s.direct, err = sql.Open("mysql", cfg.FormatDSN())
	if err != nil {
		t.Fatal(err)
	}
	s.direct.SetMaxOpenConns(8)
	t.Cleanup(func() { s.direct.Close() })

	// In the order of procs().
	s.ingress = s.startRole("ingress", true)
	s.c = s.ingress.client()
	s.relay = s.startRole("relay", false)
	s.delayq = s.startRole("delayq", false)
	s.workers = []*proc{s.startRole("worker", false), s.startRole("worker", false)}
	// Registered last, so it runs first: whatever fault a failed test left in
	// place is undone before the processes are stopped.
	t.Cleanup(func() {
		s.rs.soakSignal(soakSIGCONT)
		s.redisPx.Up()
		s.releaseCatch()
		for _, px := range append(s.procPx, s.mysqlPx) {
			px.Up()
		}
	})
	return s
}

// startRole starts one process of the deployment, reaching MySQL through a
// proxy of its own (see soakCatch), and waits for /readyz if serves.
func (s *soak) startRole(role string, serves bool) *proc {
	base, err := mysqlBase()
	if err != nil {
		s.t.Fatal(err)
	}
	px := newProxy(s.t, base.Addr)
	i := len(s.procPx)
	px.upstream = func(dst io.Writer, src io.Reader) { s.holdCaught(i, dst, src) }
	s.procPx = append(s.procPx, px)
	return s.e.startProc(role, map[string]string{
		"FLASHSALE_MYSQL_META_DSN":   proxiedDSN(px.Addr, s.e.MetaDB),
		"FLASHSALE_MYSQL_SHARD_DSNS": s.e.shardDSNsVia(px.Addr),
	}, serves)
}

// procs are the deployment's processes; the i-th reaches MySQL through
// procPx[i].
func (s *soak) procs() []*proc {
	return append([]*proc{s.ingress, s.relay, s.delayq}, s.workers...)
}

// soakPort is the port of a host:port address.
func soakPort(addr string) string { return addr[strings.LastIndex(addr, ":")+1:] }

// createSales creates the six sales, open from a minute ago for two hours.
func (s *soak) createSales() {
	t := s.t
	t.Helper()
	s.saleByID = map[string]*soakSale{}
	for i, d := range soakSaleDefs {
		spec := openSale(d.Stock, d.Limit, d.Price)
		spec.ID = fmt.Sprintf("soak%d-%s", i+1, randHex(3))
		spec.Name = fmt.Sprintf("soak sale %d", i+1)
		spec.EndsAt = spec.StartsAt.Add(2 * time.Hour)
		spec.PaymentWindowSeconds = d.WindowS
		sl := &soakSale{soakSaleDef: d, views: map[string]int{}, minAvail: d.Stock}
		sl.ID = s.c.createSale(t, spec)
		s.sales = append(s.sales, sl)
		s.saleByID[sl.ID] = sl
	}
}

func (s *soak) elapsed() float64 {
	if s.start.IsZero() {
		return 0
	}
	return time.Since(s.start).Seconds()
}

// logf logs to the test log and to stdout (go test -v shows both; stdout also
// reaches a terminal when the test log is buffered).
func (s *soak) logf(format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	s.t.Log(msg)
}

func (s *soak) setPhase(p string) {
	s.mu.Lock()
	s.phase = p
	s.mu.Unlock()
}

// violate records a breach of a guarantee: kind groups them in the summary,
// the message says what was seen. The first examples of each kind are logged
// at once with their time and the fault in progress.
func (s *soak) violate(kind, format string, args ...any) {
	s.mu.Lock()
	msg := fmt.Sprintf("%7.2fs [%s] %s", s.elapsed(), s.phase, fmt.Sprintf(format, args...))
	v := s.viol[kind]
	if v == nil {
		v = &soakViolations{}
		s.viol[kind] = v
	}
	v.n++
	logIt := len(v.ex) < 10
	if logIt {
		v.ex = append(v.ex, msg)
	}
	s.mu.Unlock()
	if logIt {
		s.t.Logf("VIOLATION %s: %s", kind, msg)
	}
}

func (s *soak) violations() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for _, v := range s.viol {
		n += v.n
	}
	return n
}

func (s *soak) failOnViolations() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for kind, v := range s.viol {
		s.t.Errorf("%d violations %q, first: %v", v.n, kind, v.ex)
	}
}

func soakEnvInt(t *testing.T, key string, def int) int {
	t.Helper()
	v := os.Getenv(key)
	if v == "" {
		return def
	}
	n, err := strconv.Atoi(v)
	if err != nil || n <= 0 {
		t.Fatalf("%s=%q: want a positive integer", key, v)
	}
	return n
}

// ctx5 is a context for one request of the test's own.
func ctx5() (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), 5*time.Second)
}
