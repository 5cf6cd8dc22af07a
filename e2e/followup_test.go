package e2e

// Issue 22, case 2: Redis unreachable across pay_by. MySQL expires the order,
// and Redis must follow once it answers again (release the units, rewrite the
// ticket copy), within seconds, in both inventory modes: the step after a
// MySQL commit is retried by the one retry rule, and the sweeper's pass
// re-follows closed orders that Redis still counts.

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"
)

// TestRedisAwayAcrossPayBy: redis inventory (see followAcrossPayBy).
func TestRedisAwayAcrossPayBy(t *testing.T) { followAcrossPayBy(t, "redis", false) }

// TestRedisAwayAcrossPayByMySQLInventory: inventory mysql (see followAcrossPayBy).
func TestRedisAwayAcrossPayByMySQLInventory(t *testing.T) { followAcrossPayBy(t, "mysql", false) }

// TestRedisAwayAcrossPayByPassAlone: the retry budget is 1 s, so the expiry
// consumer hands the messages back within seconds, and they are dropped after
// the queue's delivery limit while Redis is still away (the outage lasts to
// pay_by + 30 s here: a message cycles for ~15 s at most, each of its six
// deliveries waiting for the other's budget on the one handler): only the
// sweeper's pass over closed orders can make Redis follow (see
// followAcrossPayBy). The metrics show it did: both orders followed by the
// pass, expiry messages handed back by the retry rule.
func TestRedisAwayAcrossPayByPassAlone(t *testing.T) { followAcrossPayBy(t, "redis", true) }

// followAcrossPayBy: a sale of 2 units with a 5 s payment window; alice and
// carol buy one each. The process reaches its own redis-server through a TCP
// proxy, which is cut from pay_by − 1 s to pay_by + 15 s (connections refused:
// Redis unreachable; + 30 s with passAlone). Within 10 s of Redis answering again: both tickets
// read expired, alice's purchase is a new ticket (202, not 200 with the
// expired one) that makes an order (pending_payment, or expired once its own
// 5 s pass), and bob's purchase gets the other unit likewise (a buyer whose
// ticket ended sold_out while only one unit was back tries again). The
// background reconciler is off (an hour apart), so none of it is its repair.
// With the default retry budget the expiry consumer tries its messages again
// through the outage and hands none back to the queue (the metrics say so);
// whichever of it and the sweeper's pass comes first after Redis answers
// makes Redis follow.
func followAcrossPayBy(t *testing.T, inventory string, passAlone bool) {
	e := newEnv(t)
	rs := startPrivateRedis(t, "redis")
	px := newProxy(t, rs.Addr)
	e.setVar("FLASHSALE_REDIS_ADDRS", px.Addr)
	vars := map[string]string{"FLASHSALE_RECONCILE_INTERVAL": "3600"}
	if passAlone {
		vars["FLASHSALE_RETRY_BUDGET_SECONDS"] = "1"
	}
	p := e.start("all", vars)
	c := p.client()
	spec := openSale(2, 1, 1000)
	spec.PaymentWindowSeconds = 5
	spec.Inventory = inventory
	id := c.createSale(t, spec)

	first := map[string]string{} // user -> first ticket
	var refs []ticketRef
	for _, u := range []string{"alice", "carol"} {
		var a purchaseAnswer
		r := c.must(t, http.MethodPost, pathPurchase(id), user(u), map[string]int{"quantity": 1})
		if r.Status != http.StatusAccepted || r.decode(&a) != nil {
			t.Fatalf("%s's purchase: %s, want 202", u, r)
		}
		first[u] = a.TicketID
		refs = append(refs, ticketRef{User: u, TicketID: a.TicketID})
	}
	views := c.awaitFinal(t, refs, 30*time.Second)
	var earliest, latest time.Time
	for _, ref := range refs {
		v := views[ref.TicketID]
		if v.Status != "pending_payment" || v.PayBy == nil {
			t.Fatalf("%s's ticket %s: %+v, want pending_payment with pay_by", ref.User, ref.TicketID, v)
		}
		if earliest.IsZero() || v.PayBy.Before(earliest) {
			earliest = *v.PayBy
		}
		if v.PayBy.After(latest) {
			latest = *v.PayBy
		}
	}

	// The outage, paced by the clock (pay_by is the database's clock, on
	// this machine).
	time.Sleep(time.Until(earliest.Add(-time.Second)))
	px.Down()
	down := time.Now()
	outage := 15 * time.Second
	if passAlone {
		outage = 30 * time.Second
	}
	time.Sleep(time.Until(latest.Add(outage)))
	px.Up()
	up := time.Now()
	t.Logf("Redis unreachable from %s to %s (pay_by %s .. %s)", down.Format("15:04:05.000"), up.Format("15:04:05.000"),
		earliest.Format("15:04:05.000"), latest.Format("15:04:05.000"))

	// Within 10 s of Redis answering: every ticket and answer as MySQL says.
	var second, bobs string // alice's new ticket, bob's
	state := func() (bool, string) {
		var st []string
		ok := true
		for _, ref := range refs {
			r := c.must(t, http.MethodGet, pathTicket(ref.TicketID), user(ref.User), nil)
			var v ticketView
			if r.Status != http.StatusOK || r.decode(&v) != nil || v.Status != "expired" {
				ok = false
			}
			st = append(st, fmt.Sprintf("%s's ticket: %s", ref.User, r))
		}
		buy := func(u string, ticket *string) {
			if *ticket == "" {
				ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				r, err := c.purchase(ctx, id, u, 1)
				cancel()
				var a purchaseAnswer
				if err == nil && r.Status == http.StatusAccepted && r.decode(&a) == nil && a.TicketID != first[u] {
					*ticket = a.TicketID
				}
				if err != nil {
					st = append(st, fmt.Sprintf("%s's purchase: %v", u, err))
				} else {
					st = append(st, fmt.Sprintf("%s's purchase: %s", u, r))
				}
			}
			if *ticket == "" {
				ok = false
				return
			}
			r := c.must(t, http.MethodGet, pathTicket(*ticket), user(u), nil)
			var v ticketView
			r.decode(&v)
			st = append(st, fmt.Sprintf("%s's new ticket: %s", u, r))
			switch v.Status {
			case "pending_payment", "expired": // an order, with the unit (the window is 5 s)
			case "sold_out", "failed":
				// Bought while only one unit was back: the user tries again.
				*ticket, ok = "", false
			default:
				ok = false
			}
		}
		buy("alice", &second)
		buy("bob", &bobs)
		v := c.sale(t, id)
		st = append(st, fmt.Sprintf("sale %s %+v", v.State, v.Stock))
		return ok, fmt.Sprintf("%s after Redis answered again: %s", time.Since(up).Round(100*time.Millisecond), strings.Join(st, "; "))
	}
	eventually(t, 10*time.Second, "Redis follows MySQL's expiry (tickets expired, both units back on sale)", state)
	_, final := state()
	t.Log(final)
	m := scrapeMetrics(t, p.URL+"/metrics")
	refollowed, _ := m.sum("flashsale_delayq_refollowed_total")
	again, _ := m.sum("flashsale_consumer_retries_total", "queue", e.NS+".expiry", "outcome", "again")
	handedBack, _ := m.sum("flashsale_consumer_retries_total", "queue", e.NS+".expiry", "outcome", "handed_back")
	t.Logf("closed orders followed by the sweeper's pass: %v; expiry messages tried again by the consumer: %v, handed back: %v",
		refollowed, again, handedBack)
	switch {
	case passAlone && (refollowed != 2 || handedBack == 0):
		t.Errorf("with a 1 s retry budget: %v orders followed by the pass, %v expiry messages handed back; want 2 and some", refollowed, handedBack)
	case !passAlone && (again == 0 || handedBack != 0):
		// The consumer held the messages through the outage (within its
		// budget) rather than burning their delivery limit.
		t.Errorf("expiry messages tried again by the consumer %v, handed back %v; want some, none", again, handedBack)
	}
}

// TestExpiryCarriesOnWhileRedisIsAway: the jobs whose work is in MySQL (each
// shard's outbox relay, the expiry sweeper) hold their leases in MySQL, so
// Redis away stops neither. The window is widened on purpose: alice's order
// is committed while no relay runs (its order.created event waits in the
// outbox), then Redis becomes unreachable, and only then does a relay start.
// Before pay_by + 10 s, with Redis still away, the order is expired in MySQL:
// the event went out, the delay ran, the expiry's MySQL step committed (its
// Redis step waits for Redis). With the leases in Redis the relay could not
// take its lease and the sweeper could not run: the order stayed unpaid past
// pay_by for as long as Redis was away. Once Redis answers, the unit is back
// on sale.
func TestExpiryCarriesOnWhileRedisIsAway(t *testing.T) {
	e := newEnv(t)
	rs := startPrivateRedis(t, "redis")
	px := newProxy(t, rs.Addr)
	e.setVar("FLASHSALE_REDIS_ADDRS", px.Addr)
	vars := map[string]string{"FLASHSALE_RECONCILE_INTERVAL": "3600"}
	ing := e.start("ingress", vars)
	e.startProc("worker", vars, false)
	e.startProc("delayq", vars, false)
	c := ing.client()
	spec := openSale(1, 1, 1000)
	spec.PaymentWindowSeconds = 8
	id := c.createSale(t, spec)
	var a purchaseAnswer
	if r := c.must(t, http.MethodPost, pathPurchase(id), user("alice"), map[string]int{"quantity": 1}); r.Status != http.StatusAccepted || r.decode(&a) != nil {
		t.Fatalf("alice's purchase: %s, want 202", r)
	}
	v := c.awaitFinal(t, []ticketRef{{User: "alice", TicketID: a.TicketID}}, 30*time.Second)[a.TicketID]
	if v.Status != "pending_payment" || v.PayBy == nil {
		t.Fatalf("alice's ticket: %+v, want pending_payment", v)
	}
	shard := e.shard(shardOf("alice", len(e.ShardDBs)))
	status := func() string {
		var st string
		if err := shard.QueryRow("SELECT status FROM orders WHERE order_id = ?", v.OrderID).Scan(&st); err != nil {
			t.Fatalf("read alice's order: %v", err)
		}
		return st
	}
	var unsent int
	if err := shard.QueryRow("SELECT COUNT(*) FROM outbox WHERE sent_at IS NULL").Scan(&unsent); err != nil || unsent == 0 {
		t.Fatalf("precondition: the order's event waits in the outbox (unsent %d, %v)", unsent, err)
	}
	px.Down()
	e.startProc("relay", vars, false)
	deadline := v.PayBy.Add(10 * time.Second)
	for st := status(); st != "expired"; st = status() {
		if time.Now().After(deadline) {
			t.Fatalf("alice's order is %s at pay_by + 10 s with Redis away, want expired", st)
		}
		time.Sleep(100 * time.Millisecond) // poll
	}
	t.Logf("expired in MySQL %s after pay_by, Redis away", time.Since(*v.PayBy).Round(time.Millisecond))
	px.Up()
	deadline = time.Now().Add(20 * time.Second)
	for {
		var view saleView
		if r := c.must(t, http.MethodGet, pathSale(id), nil, nil); r.Status == http.StatusOK && r.decode(&view) == nil && view.Stock.Available == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the expired order's unit is not back on sale 20 s after Redis answered")
		}
		time.Sleep(100 * time.Millisecond) // poll
	}
}
