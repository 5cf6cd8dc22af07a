package e2e

// The soak's recovery faults (see TestSoak and issue 22): Redis losing
// everything while the purchase queue has a backlog, Redis unreachable across
// orders' pay_by, a REPLICAOF round trip, and a process killed in the middle
// of rebuilding a sale. Each widens its dangerous window on purpose.

import (
	"context"
	"database/sql"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
)

const (
	// soakFollowWithin bounds how long after Redis answers again every
	// ticket of an order due during the outage may read other than MySQL
	// says (guarantee 4: "within seconds of the dependencies answering";
	// other faults go on meanwhile, one every ~6 s: the bound is that of an
	// expiry, soakExpiryLate).
	soakFollowWithin = soakExpiryLate
	// soakRebuildRead is a piece of the statement a rebuild reads MySQL with
	// once it froze the sale's parts in Redis (the tickets of the sale MySQL
	// decided, mysqlstore's SaleTickets); nothing else sends it.
	soakRebuildRead = "FROM ticket_outcomes WHERE sale_id"
)

// soakCatch holds back, at the MySQL proxy of every process, each statement
// that contains needle until release is closed, and reports the first process
// caught on caught.
type soakCatch struct {
	needle  string
	caught  chan soakCaught
	release chan struct{}
}

// soakCaught is a process whose statement a soakCatch holds.
type soakCaught struct {
	proc int    // its index in procs()
	stmt string // what it sent (the project interpolates parameters: the values are in it)
}

// holdCaught is the MySQL proxy of process i: it copies what the process
// sends, holding back what the armed catch (if any) looks for.
func (s *soak) holdCaught(i int, dst io.Writer, src io.Reader) {
	copyMySQLPackets(dst, src, func(pkt []byte) {
		c := s.catch.Load()
		if c == nil {
			return
		}
		stmt := mysqlStatement(pkt)
		if !strings.Contains(stmt, c.needle) {
			return
		}
		select {
		case c.caught <- soakCaught{i, stmt}:
		default:
		}
		<-c.release
	})
}

// releaseCatch disarms the catch and lets everything it held through.
// Idempotent.
func (s *soak) releaseCatch() {
	if c := s.catch.Swap(nil); c != nil {
		close(c.release)
	}
}

// killMidRebuild damages one sale's keys in Redis (all of them, its home, or
// one hash of one part), holds every process's rebuild read of MySQL, and
// SIGKILLs the first process caught rebuilding (this sale, or another one
// that was being rebuilt anyway): at once (every part frozen by its token,
// nothing merged), or a few milliseconds after letting its read through
// (somewhere in its merges). What it left of the sale it was rebuilding is
// read from Redis right after the kill and reported.
func (s *soak) killMidRebuild(rng *rand.Rand) string {
	sl := s.sales[rng.IntN(len(s.sales))]
	c := &soakCatch{needle: soakRebuildRead, caught: make(chan soakCaught, 1), release: make(chan struct{})}
	s.catch.Store(c)
	defer s.releaseCatch()
	what := s.damageSale(rng, sl)
	go func() { // the sale view's stock read is a script on the sale: it rebuilds it, if nothing else does first
		ctx, cancel := ctx5()
		defer cancel()
		s.c.send(ctx, http.MethodGet, pathSale(sl.ID), nil, nil)
	}()
	var caught soakCaught
	select {
	case caught = <-c.caught:
	case <-time.After(15 * time.Second):
		return what + "; no rebuild read MySQL within 15 s: nothing killed"
	}
	p := s.procs()[caught.proc]
	rebuilding := "an unknown sale"
	for _, x := range s.sales {
		if strings.Contains(caught.stmt, "'"+x.ID+"'") {
			rebuilding = x.ID
		}
	}
	where := "while its read of MySQL was held"
	switch rng.IntN(3) {
	case 1: // in the merges: once the first part it froze is written again
		stocks := s.stockKeys(rebuilding)
		c := s.rs.client()
		s.releaseCatch()
		t0 := time.Now()
		merged := poll(5*time.Second, 0, func() bool {
			ctx, cancel := ctx5()
			defer cancel()
			cmds, err := c.Pipelined(ctx, func(p redis.Pipeliner) error {
				for _, k := range stocks {
					p.HExists(ctx, k, "rebuild")
				}
				return nil
			})
			if err != nil {
				return false
			}
			for _, cmd := range cmds {
				if !cmd.(*redis.BoolCmd).Val() {
					return true
				}
			}
			return false
		})
		c.Close()
		where = fmt.Sprintf("once a part it froze was written again (%s after its read of MySQL was let through)", time.Since(t0).Round(10*time.Microsecond))
		if !merged {
			where = "5 s after its read of MySQL was let through, no part written again yet"
		}
	case 2: // anywhere after the read
		d := time.Duration(rng.Int64N(int64(20 * time.Millisecond)))
		s.releaseCatch()
		time.Sleep(d) // the kill lands in the read, in the merges or after them
		where = fmt.Sprintf("%s after its read of MySQL was let through", d.Round(10*time.Microsecond))
	}
	p.Kill()
	left, _ := s.partsOf(rebuilding)
	s.releaseCatch()
	down := time.Duration(rng.Int64N(int64(soakMaxKillDown)))
	time.Sleep(down) // the role stays down for a moment
	p.Start()
	return fmt.Sprintf("%s; %s SIGKILLed rebuilding sale %s %s; it left %s; started again after %s",
		what, p.Role, rebuilding, where, left, down.Round(time.Millisecond))
}

// saleKeys returns the Redis keys of one sale (its home slot's and every
// segment's), sorted. A scan that fails is made again, from the start, for up
// to 30 s: it may be called while a fault freezes Redis for longer than the
// client's read timeout (a soak run failed so on its own harness). An error
// past that fails the test (not at once: it is called from the checks'
// goroutines too).
func (s *soak) saleKeys(saleID string) []string {
	c := s.rs.client()
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for {
		keys, err := scanSale(ctx, c, s.e.NS, saleID)
		if err == nil {
			sort.Strings(keys)
			return keys
		}
		if ctx.Err() != nil {
			s.t.Errorf("scan the private redis: %v", err)
			return keys
		}
		select {
		case <-ctx.Done():
		case <-time.After(250 * time.Millisecond):
		}
	}
}

// scanSale lists the keys of one sale once.
func scanSale(ctx context.Context, c *redis.Client, ns, saleID string) ([]string, error) {
	var keys []string
	for _, pattern := range []string{ns + ":{sale:" + saleID + "}:*", ns + ":{sale:" + saleID + ":*"} {
		iter := c.Scan(ctx, 0, pattern, 1000).Iterator()
		for iter.Next(ctx) {
			keys = append(keys, iter.Val())
		}
		if err := iter.Err(); err != nil {
			return keys, err
		}
	}
	return keys, nil
}

// soakFamily are the suffixes of a sale part's hashes besides its stock (or a
// segmented sale's home, ":pool").
var soakFamily = []string{":holds", ":live", ":units", ":claims"}

// damageSale deletes, in one DEL, all of the sale's keys, or its home (the
// stock hash with one segment), or one family hash of one part, and says
// which.
func (s *soak) damageSale(rng *rand.Rand, sl *soakSale) string {
	keys := s.saleKeys(sl.ID)
	home := s.e.NS + ":{sale:" + sl.ID + "}:stock"
	if s.segments > 1 {
		home = s.e.NS + ":{sale:" + sl.ID + "}:pool"
	}
	var family []string
	for _, k := range keys {
		for _, f := range soakFamily {
			if strings.HasSuffix(k, f) {
				family = append(family, k)
			}
		}
	}
	var del []string
	var what string
	switch x := rng.IntN(3); {
	case x == 0 || len(family) == 0:
		del, what = keys, "every key"
	case x == 1:
		del, what = []string{home}, "the home"
	default:
		k := family[rng.IntN(len(family))]
		del, what = []string{k}, "the hash "+strings.TrimPrefix(k, s.e.NS+":")
	}
	n := int64(0)
	if len(del) > 0 {
		n, _ = s.rs.Do(append([]any{"DEL"}, anys(del)...)...).(int64)
	}
	return fmt.Sprintf("sale %s: %s deleted (%d keys)", sl.ID, what, n)
}

func anys(ss []string) []any {
	out := make([]any, len(ss))
	for i, v := range ss {
		out[i] = v
	}
	return out
}

// stockKeys are the stock hashes of a sale in Redis, the home first.
func (s *soak) stockKeys(saleID string) []string {
	var stocks []string
	for _, k := range s.saleKeys(saleID) {
		if strings.HasSuffix(k, ":stock") || strings.HasSuffix(k, ":pool") {
			stocks = append(stocks, k)
		}
	}
	sort.SliceStable(stocks, func(i, j int) bool {
		return strings.HasSuffix(stocks[i], ":pool") && !strings.HasSuffix(stocks[j], ":pool")
	})
	return stocks
}

// partsOf describes the stock hashes of a sale (home first), and reports
// whether they are one load with no rebuild's token.
func (s *soak) partsOf(saleID string) (string, bool) {
	stocks := s.stockKeys(saleID)
	want := s.segments
	if s.segments > 1 {
		want++ // the home
	}
	whole := len(stocks) == want
	loads := map[string]bool{}
	var parts []string
	for _, k := range stocks {
		v, _ := s.rs.Do("HMGET", k, "load", "rebuild").([]any)
		name := strings.TrimPrefix(k, s.e.NS+":")
		switch {
		case len(v) == 2 && v[1] != nil:
			parts = append(parts, name+" frozen")
			whole = false
		case len(v) == 2 && v[0] != nil:
			parts = append(parts, fmt.Sprintf("%s load %v", name, v[0]))
			loads[fmt.Sprint(v[0])] = true
		default:
			parts = append(parts, name+" without a load")
			whole = false
		}
	}
	if len(loads) > 1 {
		whole = false
	}
	return fmt.Sprintf("%d of %d stock hashes: %s", len(stocks), want, strings.Join(parts, ", ")), whole
}

// backlogLoss stops both workers (SIGTERM), so that the crowd's purchases
// pile up queued while impatient users send theirs again; Redis then loses
// everything (FLUSHALL, or a restart from the snapshot taken when the workers
// stopped); the users go on retrying, and the workers start again. Every
// retry must name the user's queued ticket, and every queued ticket must end
// with an order or sold out (never failed).
func (s *soak) backlogLoss(rng *rand.Rand) string {
	for _, w := range s.workers {
		s.awaitConsuming(w) // a SIGTERM before the signal handlers are set kills it
	}
	stopped := time.Now()
	for i, w := range s.workers {
		if code, err := w.terminate(40 * time.Second); err != nil || code != 0 {
			s.violate("graceful-stop", "worker %d SIGTERM: exit %d, %v\n%s", i+1, code, err, w.LogTail(20))
		}
	}
	snapshot := rng.IntN(2) == 0
	if snapshot {
		s.saveSnapshot("the workers stopped")
	}
	retried := s.retries.total()
	time.Sleep(3*time.Second + time.Duration(rng.Int64N(int64(3*time.Second)))) // the backlog builds
	queued := s.acceptedSince(stopped)
	loss := "FLUSHALL"
	if snapshot {
		s.rs.ShutdownNoSave()
		s.rs.Start()
		loss = "restarted from its snapshot of when the workers stopped"
	} else {
		s.rs.Do("FLUSHALL")
	}
	time.Sleep(2*time.Second + time.Duration(rng.Int64N(int64(2*time.Second)))) // users retry after the loss
	for _, w := range s.workers {
		w.Start()
	}
	return fmt.Sprintf("workers stopped (SIGTERM); %d tickets accepted into the backlog; Redis lost everything (%s); %d purchases sent again while queued; workers started again after %s",
		queued, loss, s.retries.total()-retried, time.Since(stopped).Round(time.Millisecond))
}

// awaitConsuming waits (up to 30 s) until the worker's log says it consumes
// since its last start.
func (s *soak) awaitConsuming(w *proc) {
	poll(30*time.Second, 50*time.Millisecond, func() bool {
		b, err := os.ReadFile(w.logPath)
		if err != nil {
			return false
		}
		log := string(b)
		return strings.Contains(log[strings.LastIndex(log, "=== e2e: start #"):], "msg=consuming")
	})
}

// acceptedSince counts the tickets the crowd was given since t.
func (s *soak) acceptedSince(t time.Time) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for i := len(s.ticketList) - 1; i >= 0 && s.ticketList[i].At.After(t); i-- {
		n++
	}
	return n
}

// soakDue is a pending order whose pay_by falls inside an outage.
type soakDue struct {
	ID, User, Sale string
	PayBy          time.Time
}

// payByOutage cuts every process off Redis for 15–20 s, from a moment when
// at least three pending orders have their pay_by inside the outage (waiting
// up to 20 s for one). MySQL expires those left unpaid meanwhile; once Redis
// answers, each of their tickets must read as MySQL says within
// soakFollowWithin (checkFollowed), and their units are back (the end's
// checks).
func (s *soak) payByOutage(rng *rand.Rand) string {
	d := 15*time.Second + time.Duration(rng.Int64N(int64(5*time.Second)))
	var due []soakDue
	t0 := time.Now()
	poll(20*time.Second, 500*time.Millisecond, func() bool {
		due = s.pendingDue(2*time.Second, d-3*time.Second)
		return len(due) >= 3
	})
	waited := time.Since(t0)
	s.redisPx.Down()
	time.Sleep(d) // the outage
	s.redisPx.Up()
	s.followUps.Add(1)
	go s.checkFollowed(due, time.Now())
	return fmt.Sprintf("Redis unreachable for %s (every process's connections cut) after %s waiting for orders due inside; %d pending orders' pay_by fell inside",
		d.Round(time.Millisecond), waited.Round(time.Millisecond), len(due))
}

// pendingDue reads the pending orders whose pay_by is between from and to
// from now (the database's clock, which sets pay_by).
func (s *soak) pendingDue(from, to time.Duration) []soakDue {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var out []soakDue
	err := s.inSnapshot(ctx, func(tx *sql.Tx) error {
		return soakRows(ctx, tx, "SELECT order_id, user_id, sale_id, pay_by FROM ("+s.union("order_id, user_id, sale_id, pay_by",
			fmt.Sprintf("status = 'pending_payment' AND pay_by > UTC_TIMESTAMP(6) + INTERVAL %d MICROSECOND AND pay_by < UTC_TIMESTAMP(6) + INTERVAL %d MICROSECOND",
				from.Microseconds(), to.Microseconds()))+") x",
			func(rs *sql.Rows) error {
				var o soakDue
				if err := rs.Scan(&o.ID, &o.User, &o.Sale, &o.PayBy); err != nil {
					return err
				}
				out = append(out, o)
				return nil
			})
	})
	if err != nil {
		s.t.Fatalf("read the pending orders: %v", err)
	}
	return out
}

// orderStatuses reads the orders' statuses from their shards.
func (s *soak) orderStatuses(ids []string) map[string]string {
	out := map[string]string{}
	if len(ids) == 0 {
		return out
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	in := "'" + strings.Join(ids, "','") + "'" // ticket ids: [A-Za-z0-9_-]
	err := s.inSnapshot(ctx, func(tx *sql.Tx) error {
		return soakRows(ctx, tx, "SELECT order_id, status FROM ("+s.union("order_id, status", "order_id IN ("+in+")")+") x",
			func(rs *sql.Rows) error {
				var id, st string
				if err := rs.Scan(&id, &st); err != nil {
					return err
				}
				out[id] = st
				return nil
			})
	})
	if err != nil {
		s.t.Errorf("read the orders' statuses: %v", err)
	}
	return out
}

// checkFollowed polls, from up (Redis answering again) for soakFollowWithin,
// until MySQL has closed each order (expired, paid, cancelled) and its ticket
// reads the same status; an order whose ticket does not by then is a
// violation. It records how long it took.
func (s *soak) checkFollowed(due []soakDue, up time.Time) {
	defer s.followUps.Done()
	left := due
	var mu sync.Mutex
	seen := map[string]string{} // order id -> MySQL's status and the ticket's, as last read
	poll(soakFollowWithin, time.Second, func() bool {
		ids := make([]string, len(left))
		for i, o := range left {
			ids[i] = o.ID
		}
		st := s.orderStatuses(ids)
		var next []soakDue
		soakEach(left, func(o soakDue) {
			v, ok := s.readTicket(s.ticketOf(o))
			if st[o.ID] != "pending_payment" && ok && v.Status == st[o.ID] {
				return
			}
			mu.Lock()
			defer mu.Unlock()
			next = append(next, o)
			if ok {
				seen[o.ID] = fmt.Sprintf("is %s in MySQL; its ticket read %q", st[o.ID], v.Status)
			} else if seen[o.ID] == "" {
				seen[o.ID] = fmt.Sprintf("is %s in MySQL; its ticket did not answer 200", st[o.ID])
			}
		})
		left = next
		return len(left) == 0
	})
	s.mu.Lock()
	s.followLag = append(s.followLag, time.Since(up))
	s.mu.Unlock()
	for i, o := range left {
		evidence := ""
		if i < 3 {
			evidence = "\n" + s.evidence(s.ticketOf(o), 12)
		}
		s.violate("ticket-behind-order", "order %s of %s (sale %s, pay_by %s, inside a Redis outage), %s after Redis answered again, %s%s",
			o.ID, o.User, o.Sale, o.PayBy.Format("15:04:05.000"), soakFollowWithin, seen[o.ID], evidence)
	}
}

// ticketOf is the crowd's ticket of an order (one made up when the crowd
// never learnt it: the answer of its purchase was lost).
func (s *soak) ticketOf(o soakDue) *soakTicket {
	s.mu.Lock()
	defer s.mu.Unlock()
	if tk := s.tickets[o.ID]; tk != nil {
		return tk
	}
	return &soakTicket{ID: o.ID, User: o.User, Sale: o.Sale, rank: 1, last: "pending_payment", After: "unknown (the answer was lost)"}
}

// soakReplica is the state of the soak's replica.
type soakReplica struct {
	cutAt time.Time // when it was cut off from rs (REPLICAOF NO ONE); zero: it follows rs
}

// cutReplica cuts the replica off rs if it is in sync with it (it then keeps
// rs's data as of now: what a partitioned replica keeps), and reports whether
// it did.
func (s *soak) cutReplica(why string) bool {
	st := s.replica.Info("replication")
	if st["role"] != "slave" || st["master_link_status"] != "up" || st["master_sync_in_progress"] != "0" {
		return false
	}
	s.replica.Do("REPLICAOF", "NO", "ONE")
	s.repl.cutAt = time.Now()
	if s.elapsed() > 0 {
		s.logf("%7.2fs the replica cut off (%s)", s.elapsed(), why)
	}
	return true
}

// replicaRoundTrip makes rs follow the replica cut off earlier (cut now and
// 2–6 s of writes later if it still follows), then REPLICAOF NO ONE: the same
// server process (run_id) with older data and a new replication id: a
// failback after a partition. The replica then follows rs again.
func (s *soak) replicaRoundTrip(rng *rand.Rand) string {
	t := s.t
	if s.repl.cutAt.IsZero() {
		if !poll(20*time.Second, 100*time.Millisecond, func() bool { return s.cutReplica("for this fault") }) {
			t.Fatalf("the replica did not catch up with the soak's Redis within 20 s: %v", s.replica.Info("replication"))
		}
		time.Sleep(2*time.Second + time.Duration(rng.Int64N(int64(4*time.Second)))) // writes the replica will not have
	}
	age := time.Since(s.repl.cutAt)
	runID := s.rs.Info("server")["run_id"]
	t0 := time.Now()
	s.rs.Do("REPLICAOF", "127.0.0.1", soakPort(s.replica.Addr))
	if !poll(30*time.Second, 20*time.Millisecond, func() bool {
		st := s.rs.Info("replication")
		return st["master_link_status"] == "up" && st["master_sync_in_progress"] == "0"
	}) {
		t.Fatalf("the soak's Redis did not sync from the replica within 30 s: %v", s.rs.Info("replication"))
	}
	s.rs.Do("REPLICAOF", "NO", "ONE")
	synced := time.Since(t0)
	same := s.rs.Info("server")["run_id"] == runID
	// A replica saves what it loads as its snapshot: rs's dump.rdb is now the
	// replica's data, so a later restart from the snapshot goes back to the cut.
	s.mu.Lock()
	s.lastSave = s.repl.cutAt
	s.mu.Unlock()
	s.replica.Do("REPLICAOF", "127.0.0.1", soakPort(s.rs.Addr))
	s.repl.cutAt = time.Time{}
	return fmt.Sprintf("Redis followed a replica cut off %s before (REPLICAOF, synced in %s), then REPLICAOF NO ONE; same run_id: %v",
		age.Round(time.Millisecond), synced.Round(time.Millisecond), same)
}

// stockSnapshot reads every stock and holds hash of the sale (its home and
// segments) in one MULTI (one instant of the Redis), for a view violation's
// message: the segments' held + sold against the home's total, each part's
// figures, and the tickets Redis holds ("H:") that have no live order in
// MySQL (read just after) with their units.
func (s *soak) stockSnapshot(saleID string) string {
	var keys []string
	for _, k := range s.saleKeys(saleID) {
		if strings.HasSuffix(k, ":stock") || strings.HasSuffix(k, ":pool") || strings.HasSuffix(k, ":holds") {
			keys = append(keys, k)
		}
	}
	c := s.rs.client()
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	cmds, err := c.TxPipelined(ctx, func(p redis.Pipeliner) error {
		for _, k := range keys {
			p.HGetAll(ctx, k)
		}
		return nil
	})
	if err != nil {
		return fmt.Sprintf("Redis at one instant: %v", err)
	}
	var parts []string
	total, inUse := "", 0
	held := map[string]int{} // ticket -> units held
	for i, cmd := range cmds {
		h, _ := cmd.(*redis.MapStringStringCmd).Result()
		name := strings.TrimPrefix(keys[i], s.e.NS+":")
		switch {
		case strings.HasSuffix(name, ":holds"):
			for tid, st := range h {
				if strings.HasPrefix(st, "H:") {
					var q int
					fmt.Sscan(st[2:], &q)
					held[tid] = q
				}
			}
			continue
		case strings.HasSuffix(name, ":pool") || s.segments == 1:
			total = h["total"]
		}
		if strings.HasSuffix(name, ":stock") {
			var held, sold int
			fmt.Sscan(h["held"], &held)
			fmt.Sscan(h["sold"], &sold)
			inUse += held + sold
		}
		delete(h, "srv")
		parts = append(parts, fmt.Sprintf("%s %v", name, h))
	}
	ids := make([]string, 0, len(held))
	for tid := range held {
		ids = append(ids, tid)
	}
	st := s.orderStatuses(ids)
	var without []string
	units := 0
	for _, tid := range ids {
		if st[tid] != "pending_payment" {
			units += held[tid]
			without = append(without, fmt.Sprintf("%s (%d, order %q)", tid, held[tid], st[tid]))
		}
	}
	sort.Strings(without)
	pending, paid := s.unitsBySale()
	return fmt.Sprintf("Redis at one instant: held + sold over the parts %d, total %s; %d tickets held (H) with no pending order in MySQL, %d units: %v; MySQL just after: pending %d, paid %d; %s",
		inUse, total, len(without), units, without[:min(len(without), 12)], pending[saleID], paid[saleID], strings.Join(parts, "; "))
}

// holdState is the ticket's entry in its sale's holds in Redis (any part),
// "" when none.
func (s *soak) holdState(tk *soakTicket) string {
	c := s.rs.client()
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	for _, k := range s.saleKeys(tk.Sale) {
		if strings.HasSuffix(k, ":holds") {
			if v, err := c.HGet(ctx, k, tk.ID).Result(); err == nil {
				return v
			}
		}
	}
	return ""
}
