package e2e

// The end of the soak (see TestSoak): once the crowd and the faults stopped,
// every guarantee is checked on the quiet system, and the summary is printed.

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"
)

// soakFinal is what the watch and the end of the soak found.
type soakFinal struct {
	sqlPolls, sqlErrs int
	sqlLastErr        error
	ticketPolls       int

	settleTook   time.Duration
	statuses     map[string]int // tickets by status at the end
	orderCount   map[string]int // orders by status at the end
	orderUnits   map[string]int
	secondsOK    int // purchases sent again answered with another ticket once the first was not live
	unattributed int // orders of a ticket whose 202 answer was lost on the way
	reconcileOut string
}

// soakOrder is one order row, read directly from its shard.
type soakOrder struct {
	ID, Sale, User, Status string
	Qty, Shard             int
	Created, Updated       time.Time
	Paid                   sql.NullTime
}

// settle checks the quiet system; every breach is a violation.
func (s *soak) settle() {
	t0 := time.Now()
	s.followUps.Wait() // the checks the last faults left running
	s.checkProcs()
	tks := s.ticketsSnapshot()

	// Guarantee 2: every accepted ticket reaches a final status (for a
	// purchase: past queued), and is known (never 404) when read.
	s.awaitTickets(tks, 3*time.Minute, "decided", func(tk *soakTicket, v ticketView) bool { return v.Status != "queued" })

	// Guarantee 4 while orders are still pending: the views equal the orders.
	s.viewsMatchOrders("with orders still pending", 30*time.Second)

	// Guarantee 5: every unpaid order expires (the watch also flags any
	// order pending soakExpiryLate past its pay_by).
	s.awaitNoPending()

	// Tickets follow their orders; every order is an accepted ticket's.
	orders := s.readOrders()
	byID := map[string]*soakOrder{}
	for _, o := range orders {
		if prev, dup := byID[o.ID]; dup {
			s.violate("order-twice", "order %s on shard %d and shard %d", o.ID, prev.Shard, o.Shard)
		}
		byID[o.ID] = o
		if want := shardOf(o.User, len(s.e.ShardDBs)); o.Shard != want {
			s.violate("order-shard", "order %s of %s on shard %d, want %d", o.ID, o.User, o.Shard, want)
		}
	}
	s.awaitTickets(tks, time.Minute, "agreeing with MySQL", func(tk *soakTicket, v ticketView) bool {
		if o := byID[tk.ID]; o != nil {
			return v.Status == o.Status && v.OrderID == o.ID
		}
		return (v.Status == "sold_out" || v.Status == "failed") && v.OrderID == ""
	})
	s.mu.Lock()
	for _, o := range orders {
		if s.tickets[o.ID] != nil {
			if tk := s.tickets[o.ID]; tk.User != o.User || tk.Sale != o.Sale {
				s.mu.Unlock()
				s.violate("order-of-ticket", "order %s is %s/%s, its ticket %s/%s", o.ID, o.User, o.Sale, tk.User, tk.Sale)
				s.mu.Lock()
			}
			continue
		}
		if s.lostReply[o.User+"/"+o.Sale] {
			// The user's purchase got no answer (a restart, a timeout): the
			// order is theirs, the test just never learnt its ticket.
			s.final.unattributed++
			continue
		}
		s.mu.Unlock()
		s.violate("order-without-ticket", "order %s (%s, %d units) of %s in sale %s: no purchase of theirs was accepted with this ticket, none lost its answer",
			o.ID, o.Status, o.Qty, o.User, o.Sale)
		s.mu.Lock()
	}
	s.mu.Unlock()

	// Guarantee 4, quiet: the views equal the orders, and reconcile agrees.
	s.viewsMatchOrders("quiet", 30*time.Second)
	s.runReconcile()
	s.judgeSeconds(byID)

	// Guarantees 1 and 3 once more on the final rows, and no failed ticket
	// the test cannot explain.
	s.final.orderCount, s.final.orderUnits = map[string]int{}, map[string]int{}
	for _, o := range orders {
		s.final.orderCount[o.Status]++
		s.final.orderUnits[o.Status] += o.Qty
	}
	s.finalTickets(tks, orders)

	// Guarantee 4: every unit not sold is back on sale.
	s.unitsBackOnSale()
	s.final.settleTook = time.Since(t0)
}

// soakTicketRead is one GET of a ticket.
type soakTicketRead struct {
	code int // 0: no answer
	v    ticketView
	body string
}

// readTickets reads every ticket as its owner, 16 at a time.
func (s *soak) readTickets(tks []*soakTicket) map[string]soakTicketRead {
	out := make(map[string]soakTicketRead, len(tks))
	var mu sync.Mutex
	soakEach(tks, func(tk *soakTicket) {
		ctx, cancel := ctx5()
		r, err := s.c.send(ctx, http.MethodGet, pathTicket(tk.ID), user(tk.User), nil)
		cancel()
		rd := soakTicketRead{code: r.Status, body: r.String()}
		if err != nil {
			rd = soakTicketRead{body: err.Error()}
		} else if r.Status == http.StatusOK {
			if r.decode(&rd.v) != nil {
				rd.code = -1
			} else {
				s.observe(tk, rd.v)
			}
		}
		mu.Lock()
		out[tk.ID] = rd
		mu.Unlock()
	})
	return out
}

// soakEach calls f on every item, 16 at a time, and returns when all are
// done.
func soakEach[T any](items []T, f func(T)) {
	work := make(chan T)
	var wg sync.WaitGroup
	for range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for it := range work {
				f(it)
			}
		}()
	}
	for _, it := range items {
		work <- it
	}
	close(work)
	wg.Wait()
}

// awaitTickets polls the tickets until done holds for each; a 404 is a lost
// ticket (a violation, not polled again); at the deadline every ticket not
// done is a violation.
func (s *soak) awaitTickets(tks []*soakTicket, timeout time.Duration, what string, done func(*soakTicket, ticketView) bool) {
	pending := tks
	var reads map[string]soakTicketRead
	if poll(timeout, 200*time.Millisecond, func() bool {
		reads = s.readTickets(pending)
		var next []*soakTicket
		for _, tk := range pending {
			rd := reads[tk.ID]
			switch {
			case rd.code == http.StatusOK && done(tk, rd.v):
			case tk.reported:
			case rd.code == http.StatusNotFound:
				tk.reported = true
				s.violate("ticket-lost", "accepted ticket %s of %s (sale %s, accepted %.2fs, last fault before: %s) answers %s at the end",
					tk.ID, tk.User, tk.Sale, tk.At.Sub(s.start).Seconds(), tk.After, rd.body)
			default:
				next = append(next, tk)
			}
		}
		pending = next
		return len(pending) == 0
	}) {
		return
	}
	for i, tk := range pending {
		tk.reported = true
		rd := reads[tk.ID]
		evidence := ""
		if i < 5 {
			evidence = "\n" + s.evidence(tk, 12)
		}
		s.violate("ticket-not-"+strings.ReplaceAll(what, " ", "-"), "ticket %s of %s (sale %s, %d units, accepted %.2fs via %d, last fault before: %s) not %s after %s: %s%s",
			tk.ID, tk.User, tk.Sale, tk.Qty, tk.At.Sub(s.start).Seconds(), tk.Via, tk.After, what, timeout, rd.body, evidence)
	}
}

// readOrders reads every order of the soak's sales from both shards.
func (s *soak) readOrders() []*soakOrder {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var out []*soakOrder
	err := s.inSnapshot(ctx, func(tx *sql.Tx) error {
		return soakRows(ctx, tx, "SELECT order_id, sale_id, user_id, status, quantity, shard, created_at, updated_at, paid_at FROM ("+
			s.union("order_id, sale_id, user_id, status, quantity, created_at, updated_at, paid_at", "1=1")+") x",
			func(rs *sql.Rows) error {
				o := &soakOrder{}
				if err := rs.Scan(&o.ID, &o.Sale, &o.User, &o.Status, &o.Qty, &o.Shard, &o.Created, &o.Updated, &o.Paid); err != nil {
					return err
				}
				out = append(out, o)
				return nil
			})
	})
	if err != nil {
		s.t.Fatalf("read the orders: %v", err)
	}
	return out
}

// unitsBySale returns pending and paid units per sale, in one snapshot.
func (s *soak) unitsBySale() (pending, paid map[string]int) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	pending, paid = map[string]int{}, map[string]int{}
	err := s.inSnapshot(ctx, func(tx *sql.Tx) error {
		return soakRows(ctx, tx, "SELECT sale_id, status, SUM(quantity) FROM ("+s.union("sale_id, status, quantity", soakLive)+") x GROUP BY sale_id, status",
			func(rs *sql.Rows) error {
				var id, st string
				var n int
				if err := rs.Scan(&id, &st, &n); err != nil {
					return err
				}
				if st == "paid" {
					paid[id] = n
				} else {
					pending[id] = n
				}
				return nil
			})
	})
	if err != nil {
		s.t.Errorf("read the orders: %v", err) // not Fatalf: the watch calls it too
	}
	return pending, paid
}

// viewsMatchOrders polls until every sale view equals its orders (held =
// pending units, sold = paid units, available = the rest), for timeout at most.
func (s *soak) viewsMatchOrders(when string, timeout time.Duration) {
	var wrong []string
	if poll(timeout, 200*time.Millisecond, func() bool {
		pending, paid := s.unitsBySale()
		wrong = nil
		for _, sl := range s.sales {
			want := stockView{Total: sl.Stock, Available: sl.Stock - pending[sl.ID] - paid[sl.ID], Held: pending[sl.ID], Sold: paid[sl.ID]}
			ctx, cancel := ctx5()
			r, err := s.c.send(ctx, http.MethodGet, pathSale(sl.ID), nil, nil)
			cancel()
			var v saleView
			if err == nil && r.Status == http.StatusOK {
				err = r.decode(&v)
			}
			if err != nil || r.Status != http.StatusOK {
				wrong = append(wrong, fmt.Sprintf("sale %s: %s %v", sl.ID, r, err))
			} else if v.Stock != want {
				wrong = append(wrong, fmt.Sprintf("sale %s: view %+v, orders say %+v", sl.ID, v.Stock, want))
			}
		}
		return len(wrong) == 0
	}) {
		return
	}
	for _, w := range wrong {
		s.violate("view-vs-orders", "%s, after %s: %s", when, timeout, w)
	}
}

// awaitNoPending waits until no order is pending_payment: each expires by
// its pay_by (plus soakExpiryLate at most) unless paid or cancelled.
func (s *soak) awaitNoPending() {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	// The deadline moves out to the latest pay_by (plus soakExpiryLate) seen:
	// when poll gives up before it, poll on.
	until := time.Now().Add(10 * time.Second)
	var n int
	var example sql.NullString
	for !poll(time.Until(until), 500*time.Millisecond, func() bool {
		var last sql.NullTime
		err := s.inSnapshot(ctx, func(tx *sql.Tx) error {
			return tx.QueryRowContext(ctx, "SELECT COUNT(*), MAX(pay_by), MIN(CONCAT(order_id, ' of ', user_id, ' in ', sale_id, ', pay_by ', pay_by)) FROM ("+
				s.union("order_id, user_id, sale_id, pay_by", "status = 'pending_payment'")+") x").Scan(&n, &last, &example)
		})
		if err != nil {
			s.t.Fatalf("read the pending orders: %v", err)
		}
		if last.Valid && last.Time.Add(soakExpiryLate).After(until) {
			until = last.Time.Add(soakExpiryLate)
		}
		return n == 0
	}) {
		if time.Now().After(until) {
			s.violate("pending-stuck", "%d orders still pending_payment %s after the last pay_by, e.g. %s",
				n, soakExpiryLate, example.String)
			return
		}
	}
}

// runReconcile runs `flashsale reconcile --json`: exit 0 and agreement.
func (s *soak) runReconcile() {
	code, out := fxReconcile(s.t, s.e, "--json")
	s.mu.Lock()
	s.reconcile = code
	s.mu.Unlock()
	var rep fxReconcileReport
	jsonErr := json.Unmarshal([]byte(out), &rep)
	if code != 0 || jsonErr != nil || !rep.Agree || rep.Differences != 0 {
		_, text := fxReconcile(s.t, s.e)
		s.final.reconcileOut = text
		s.violate("reconcile", "flashsale reconcile --json exit %d (agree %v, differences %d, %v); plain run:\n%s",
			code, rep.Agree, rep.Differences, jsonErr, tail(text, 40))
	}
}

// finalTickets counts the tickets by status; every failed ticket is a
// violation. None of the soak's faults may fail one (guarantee 2: a
// dependency away for less than 60 s, a process killed, any state Redis comes
// back in); the crowd never sends a purchase that MySQL would refuse while
// Redis admits it. The message says which of the user's orders of the sale
// were live around it (an unpaid one, or units that with this purchase exceed
// per_user_limit, point at Redis having forgotten them), with the evidence.
func (s *soak) finalTickets(tks []*soakTicket, orders []*soakOrder) {
	byUserSale := map[string][]*soakOrder{}
	for _, o := range orders {
		byUserSale[o.User+"/"+o.Sale] = append(byUserSale[o.User+"/"+o.Sale], o)
	}
	s.final.statuses = map[string]int{}
	s.mu.Lock()
	type failed struct {
		tk     *soakTicket
		reason string
	}
	var all []failed
	for _, tk := range tks {
		s.final.statuses[tk.last]++
		if tk.last != "failed" {
			continue
		}
		sl := s.saleByID[tk.Sale]
		from, to := tk.At.Add(-2*time.Second), tk.decidedAt.Add(2*time.Second)
		if tk.decidedAt.IsZero() {
			to = time.Now()
		}
		units, unpaid := 0, false
		var seen []string
		for _, o := range byUserSale[tk.User+"/"+tk.Sale] {
			if o.ID == tk.ID || o.Created.After(to) {
				continue
			}
			liveTo, unpaidTo := time.Now().Add(time.Hour), time.Now().Add(time.Hour)
			switch o.Status {
			case "expired", "cancelled":
				liveTo, unpaidTo = o.Updated, o.Updated
			case "paid":
				if o.Paid.Valid {
					unpaidTo = o.Paid.Time
				}
			}
			if liveTo.Before(from) {
				continue
			}
			units += o.Qty
			unpaid = unpaid || !unpaidTo.Before(from)
			seen = append(seen, fmt.Sprintf("%s %s %d units created %s", o.ID, o.Status, o.Qty, o.Created.Format("15:04:05.000")))
		}
		reason := fmt.Sprintf("the user's other live orders of the sale then: %v", seen)
		switch {
		case unpaid:
			reason = "the user had an unpaid order of the sale (Redis had forgotten it?): " + reason
		case units+tk.Qty > sl.Limit:
			reason = "over per_user_limit with the user's live orders (Redis had forgotten them?): " + reason
		}
		all = append(all, failed{tk, reason})
	}
	s.mu.Unlock()
	for i, f := range all {
		evidence := ""
		if i < 5 {
			evidence = "\n" + s.evidence(f.tk, 12)
		}
		s.violate("failed-ticket", "ticket %s of %s (sale %s, %d units, accepted %.2fs, last fault before: %s) ended failed; %s%s",
			f.tk.ID, f.tk.User, f.tk.Sale, f.tk.Qty, f.tk.At.Sub(s.start).Seconds(), f.tk.After, f.reason, evidence)
	}
}

// judgeSeconds checks every purchase sent again while its ticket read queued
// and answered with another ticket: that is a second live ticket unless the
// first had stopped being live before the answer came: its order expired or
// was cancelled by then (MySQL's times say when), or it never had an order
// and Redis had refused it already (its hold "X" sold out or "F" failed, read
// right after the answer: the hold script decides a refusal in Redis before
// the worker records it in MySQL, and a new claim mints past a refused
// ticket).
func (s *soak) judgeSeconds(byID map[string]*soakOrder) {
	s.mu.Lock()
	seconds := append([]soakSecond(nil), s.seconds...)
	s.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	for _, p := range seconds {
		first := p.First
		var until time.Time // when the first stopped being live; zero: it still was
		what := ""
		if o := byID[first.ID]; o != nil {
			what = fmt.Sprintf("its order is %s (created %s, updated %s)", o.Status, o.Created.Format("15:04:05.000"), o.Updated.Format("15:04:05.000"))
			if o.Status == "expired" || o.Status == "cancelled" {
				until = o.Updated
			}
		} else {
			db := s.e.ShardDBs[shardOf(first.User, len(s.e.ShardDBs))]
			var st string
			var at time.Time
			err := s.direct.QueryRowContext(ctx, fmt.Sprintf("SELECT status, created_at FROM `%s`.ticket_outcomes WHERE ticket_id = ?", db), first.ID).Scan(&st, &at)
			switch {
			case err != nil:
				what = fmt.Sprintf("no order, no decision (%v)", err)
			default:
				what = fmt.Sprintf("decided %s at %s", st, at.Format("15:04:05.000"))
				if st != "ordered" {
					until = at
				}
				if st != "ordered" && (p.FirstHold == "X" || p.FirstHold == "F") {
					until = p.At.Add(-time.Microsecond) // refused in Redis already
				}
			}
		}
		if !until.IsZero() && until.Before(p.At) {
			s.mu.Lock()
			s.final.secondsOK++
			s.mu.Unlock()
			continue
		}
		s.violate("second-live-ticket", "user %s, sale %s: the purchase sent again while ticket %s read queued got %s at %s, while the first was still live: %s; its hold in Redis then: %q\n%s",
			first.User, first.Sale, first.ID, p.Answer, p.At.Format("15:04:05.000"), what, p.FirstHold, s.evidence(first, 8))
	}
}

// unitsBackOnSale checks, with no order pending any more, that every unit not
// sold is on sale again: Redis holds nothing (no ticket's hold "H:", no part
// counting units held, none frozen), and fresh users can buy exactly the
// units MySQL says are free, in every sale, after which it is sold out.
func (s *soak) unitsBackOnSale() {
	var held []string
	if !poll(30*time.Second, 500*time.Millisecond, func() bool {
		held = s.redisHeld()
		return len(held) == 0
	}) {
		s.violate("held-without-order", "with no order pending, Redis still holds: %s", strings.Join(held, "; "))
	}
	pending, paid := s.unitsBySale()
	var wg sync.WaitGroup
	for _, sl := range s.sales {
		wg.Add(1)
		go func() {
			defer wg.Done()
			s.buyTheRest(sl, sl.Stock-pending[sl.ID]-paid[sl.ID])
		}()
	}
	wg.Wait()
}

// redisHeld lists what Redis holds in the soak's sales: tickets whose hold
// is "H:" and parts whose held counter is not 0, or that are frozen.
func (s *soak) redisHeld() []string {
	c := s.rs.client()
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var out []string
	for _, sl := range s.sales {
		for _, k := range s.saleKeys(sl.ID) {
			name := strings.TrimPrefix(k, s.e.NS+":")
			switch {
			case strings.HasSuffix(k, ":holds"):
				h, err := c.HGetAll(ctx, k).Result()
				if err != nil {
					out = append(out, fmt.Sprintf("%s: %v", name, err))
				}
				var tids []string
				for tid, st := range h {
					if strings.HasPrefix(st, "H:") {
						tids = append(tids, tid+"="+st)
					}
				}
				if len(tids) > 0 {
					sort.Strings(tids)
					out = append(out, fmt.Sprintf("%s: %d tickets held: %v", name, len(tids), tids[:min(len(tids), 10)]))
				}
			case strings.HasSuffix(k, ":stock"), strings.HasSuffix(k, ":pool"):
				v, err := c.HMGet(ctx, k, "held", "rebuild").Result()
				if err != nil {
					out = append(out, fmt.Sprintf("%s: %v", name, err))
				} else if (v[0] != nil && v[0] != "0") || v[1] != nil {
					out = append(out, fmt.Sprintf("%s: held %v, rebuild %v", name, v[0], v[1]))
				}
			}
		}
	}
	return out
}

// buyTheRest has fresh users buy the free units of the sale (per_user_limit
// each, the last one the rest), 16 at a time, retrying 503: every purchase
// must be accepted and get its units, and one more purchase must then be
// answered sold out.
func (s *soak) buyTheRest(sl *soakSale, free int) {
	type buyer struct {
		u string
		q int
	}
	var buyers []buyer
	for left := free; left > 0; left -= sl.Limit {
		buyers = append(buyers, buyer{fmt.Sprintf("rest-%s-%04d", sl.ID, len(buyers)), min(sl.Limit, left)})
	}
	answers := newTally()
	var mu sync.Mutex
	var tks []*soakTicket
	soakEach(buyers, func(b buyer) {
		var r reply
		var err error
		poll(soakBuyFor, 200*time.Millisecond, func() bool {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			r, err = s.c.purchase(ctx, sl.ID, b.u, b.q)
			return err == nil && r.Status != http.StatusServiceUnavailable
		})
		answers.add(outcome(r, err), fmt.Sprintf("%s q%d: %s", b.u, b.q, r))
		var a purchaseAnswer
		if err == nil && r.Status == http.StatusAccepted && r.decode(&a) == nil {
			mu.Lock()
			tks = append(tks, &soakTicket{ID: a.TicketID, User: b.u, Sale: sl.ID, Qty: b.q, At: time.Now(), After: "none (the end's purchase of the rest)", Via: 202, last: "queued"})
			mu.Unlock()
		}
	})
	s.awaitTickets(tks, 2*time.Minute, "decided", func(tk *soakTicket, v ticketView) bool { return v.Status != "queued" })
	got, statuses := 0, map[string]int{}
	reads := s.readTickets(tks)
	for _, tk := range tks {
		st := reads[tk.ID].v.Status
		statuses[st]++
		if st == "pending_payment" || st == "expired" || st == "paid" { // it had its order
			got += tk.Qty
		}
	}
	if answers.get("202") != len(buyers) || got != free {
		s.violate("unit-not-on-sale", "sale %s: MySQL says %d units are free; %d fresh buyers got %d units (answers %s; tickets %v)",
			sl.ID, free, len(buyers), got, answers, statuses)
	}
	// One more: sold out, unless units came back meanwhile (an order of the
	// rest already expired).
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	r, err := s.c.purchase(ctx, sl.ID, "rest-last-"+sl.ID, 1)
	cancel()
	last := outcome(r, err)
	if last != "409 sold_out" {
		if pending, paid := s.unitsBySale(); pending[sl.ID]+paid[sl.ID] >= sl.Stock {
			s.violate("beyond-stock", "sale %s: every unit is in an order, and a purchase is answered %s", sl.ID, r)
		}
	}
	s.mu.Lock()
	s.sweep = append(s.sweep, fmt.Sprintf("%s: %d units free by MySQL, %d bought by %d fresh users (tickets %s), then %s",
		sl.ID, free, got, len(buyers), soakCounts(statuses), last))
	s.mu.Unlock()
}

// grepLogs returns the log lines of the processes that mention needle, in
// time order: all of them up to n, else the first and the last n/2.
func (s *soak) grepLogs(needle string, n int) string {
	var out []string
	for _, p := range s.procs() {
		b, err := os.ReadFile(p.logPath)
		if err != nil {
			continue
		}
		for _, line := range strings.Split(string(b), "\n") {
			if strings.Contains(line, needle) {
				out = append(out, line+"  ["+p.Role+"]")
			}
		}
	}
	if len(out) == 0 {
		return "    (no log line mentions it)"
	}
	sort.Strings(out) // slog lines start with time=<RFC 3339>
	if len(out) > n {
		skipped := fmt.Sprintf("... %d more lines ...", len(out)-n)
		out = append(append(out[:n/2:n/2], skipped), out[len(out)-(n-n/2):]...)
	}
	return "    " + strings.Join(out, "\n    ")
}

// keepLogs copies the processes' logs (and the private Redis's) to
// FLASHSALE_SOAK_LOGDIR, or to a new directory under $TMPDIR when the test
// failed, and says where.
func (s *soak) keepLogs() {
	dir := os.Getenv("FLASHSALE_SOAK_LOGDIR")
	if dir == "" && !s.t.Failed() {
		return
	}
	var err error
	if dir == "" {
		dir, err = os.MkdirTemp("", fmt.Sprintf("flashsale-soak-%d-", s.seed))
	} else {
		err = os.MkdirAll(dir, 0o755)
	}
	if err != nil {
		s.t.Logf("keep logs: %v", err)
		return
	}
	cp := func(src, name string) {
		in, err := os.Open(src)
		if err != nil {
			return
		}
		defer in.Close()
		out, err := os.Create(filepath.Join(dir, name))
		if err != nil {
			return
		}
		defer out.Close()
		io.Copy(out, in)
	}
	for i, p := range s.procs() {
		cp(p.logPath, fmt.Sprintf("%d-%s.log", i, p.Role))
	}
	cp(filepath.Join(s.rs.Dir, "redis.log"), "redis-server.log")
	cp(filepath.Join(s.replica.Dir, "redis.log"), "redis-replica.log")
	s.logf("process logs kept in %s", dir)
}

// summary prints the soak's figures (test log and stdout).
func (s *soak) summary() {
	faults, nFaults := s.faultSummary()
	s.mu.Lock()
	defer s.mu.Unlock()
	var b strings.Builder
	w := func(format string, args ...any) { fmt.Fprintf(&b, format+"\n", args...) }
	pc := s.purchases.counts
	attempted := 0
	for _, n := range pc {
		attempted += n
	}
	w("==================== flashsale soak summary ====================")
	w("duration          %s of crowd and faults; the last users were done %s later; then %s settling",
		s.dur, s.lastUsers.Round(time.Second), s.final.settleTook.Round(time.Second))
	w("seed              %d   (again: FLASHSALE_SOAK_SEED=%d FLASHSALE_SOAK_SECONDS=%d make soak)", s.seed, s.seed, int(s.dur.Seconds()))
	w("redis segments    %d (FLASHSALE_SOAK_SEGMENTS)", s.segments)
	w("faults            %d: %s", nFaults, faults)
	w("users             %d arrived; %d double clicks, %d of them answered with two tickets (judged as a purchase sent again)", s.users.Load(), s.doubles, s.doubleTickets)
	w("purchases         %d attempted: 202 %d, 200 %d, 503 %d, 409 sold_out %d, 409 limit_reached %d, no answer %d; %d given up after %s of 503/no answer",
		attempted, pc["202"], pc["200"], pc["503 unavailable"], pc["409 sold_out"], pc["409 limit_reached"], pc["transport error"], s.gaveUp, soakBuyFor)
	var other []string
	for k, n := range pc {
		switch k {
		case "202", "200", "503 unavailable", "409 sold_out", "409 limit_reached", "transport error":
		default:
			other = append(other, fmt.Sprintf("%s %d", k, n))
		}
	}
	if len(other) > 0 {
		sort.Strings(other)
		w("  other answers   %s", strings.Join(other, ", "))
	}
	w("tickets           %d accepted; final: %s", len(s.ticketList), soakCounts(s.final.statuses,
		"paid", "expired", "cancelled", "sold_out", "failed", "pending_payment", "queued"))
	w("failed tickets    %d (each one a violation)", s.final.statuses["failed"])
	w("sent again        purchases sent again while the ticket read queued: %s; another ticket after the first was no longer live: %d",
		soakCounts(s.retries.counts), s.final.secondsOK)
	w("late pairs        two expired orders of one user paid at the same moment: %s", soakCounts(s.latePairs.counts))
	var lags []string
	for _, d := range s.followLag {
		lags = append(lags, d.Round(100*time.Millisecond).String())
	}
	w("pay_by outages    Redis back → every ticket of an order due inside read as MySQL says after: %v (at most %s)", lags, soakFollowWithin)
	for i, line := range s.sweep {
		head := ""
		if i == 0 {
			head = "back on sale"
		}
		w("%-17s %s", head, line)
	}
	w("orders            %s (units: %s); %d of a ticket whose answer was lost",
		soakCounts(s.final.orderCount, "paid", "expired", "cancelled", "pending_payment"),
		soakCounts(s.final.orderUnits, "paid", "expired", "cancelled", "pending_payment"), s.final.unattributed)
	w("payments          %s", soakCounts(s.pays.counts))
	w("cancels           %s", soakCounts(s.cancels.counts))
	w("per sale          %-16s %6s %5s %6s %9s %9s %9s  %s", "sale", "stock", "limit", "window", "max units", "max ratio", "lowest av", "views answered")
	for _, sl := range s.sales {
		w("                  %-16s %6d %5d %5ds %9d %9.3f %9d  %s", sl.ID, sl.Stock, sl.Limit, sl.WindowS, sl.maxUnits,
			float64(sl.maxUnits)/float64(sl.Stock), sl.minAvail, soakCounts(sl.views))
	}
	w("watch             %d order snapshots (%d failed%s), %d ticket reads by the watcher", s.final.sqlPolls, s.final.sqlErrs,
		soakErrSuffix(s.final.sqlLastErr), s.final.ticketPolls)
	w("ticket regressions %d (a read older than an earlier one; reported, not a failure) %v", s.regress, s.regressEx)
	nv := 0
	var kinds []string
	for k, v := range s.viol {
		nv += v.n
		kinds = append(kinds, fmt.Sprintf("%s %d", k, v.n))
	}
	sort.Strings(kinds)
	w("violations        %d %v", nv, kinds)
	w("reconcile         exit %d", s.reconcile)
	w("================================================================")
	fmt.Print(b.String())
	s.t.Log("\n" + b.String())
	if s.final.sqlErrs > 0 {
		s.t.Errorf("%d of %d order snapshots failed: the invariants went unchecked then (last: %v)", s.final.sqlErrs, s.final.sqlPolls, s.final.sqlLastErr)
	}
	if s.final.sqlPolls == 0 {
		s.t.Errorf("no order snapshot was taken")
	}
}

func soakErrSuffix(err error) string {
	if err == nil {
		return ""
	}
	return ", last: " + err.Error()
}

// soakCounts formats counts: the keys of first in that order, then the rest
// sorted.
func soakCounts(m map[string]int, first ...string) string {
	var parts []string
	done := map[string]bool{}
	for _, k := range first {
		done[k] = true
		if m[k] > 0 || len(first) > 0 {
			parts = append(parts, fmt.Sprintf("%s %d", k, m[k]))
		}
	}
	var rest []string
	for k, n := range m {
		if !done[k] {
			rest = append(rest, fmt.Sprintf("%s %d", k, n))
		}
	}
	sort.Strings(rest)
	parts = append(parts, rest...)
	if len(parts) == 0 {
		return "none"
	}
	return strings.Join(parts, ", ")
}
