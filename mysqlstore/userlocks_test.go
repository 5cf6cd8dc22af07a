package mysqlstore

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/flashsale/flashsale"
	"github.com/flashsale/flashsale/internal/testenv"
)

// expiredOrders makes one order per user (one batch per shard), due as soon
// as it is made by the database's clock, and expires them all.
func expiredOrders(t *testing.T, s *Store, sale *flashsale.Sale, users []string) []*flashsale.Order {
	t.Helper()
	ctx := context.Background()
	orders := make([]*flashsale.Order, len(users))
	for i, u := range users {
		orders[i] = saleOrder(sale, u, 1)
		orders[i].PayBy = orders[i].CreatedAt.Add(-time.Second)
	}
	for shard, batch := range byShard(s, orders) {
		res, err := s.CreateOrders(ctx, shard, batch)
		if err != nil {
			t.Fatal(err)
		}
		for i, r := range res {
			if r.Outcome != flashsale.CreateNew {
				t.Fatalf("create %s: %v, want new", batch[i].ID, r.Outcome)
			}
		}
	}
	for _, o := range orders {
		if _, changed, err := s.Expire(ctx, o.Ref(), time.Now()); err != nil || !changed {
			t.Fatalf("expire %s: changed=%v %v", o.ID, changed, err)
		}
	}
	return orders
}

// byShard splits orders by their user's shard.
func byShard(s *Store, orders []*flashsale.Order) map[int][]*flashsale.Order {
	out := map[int][]*flashsale.Order{}
	for _, o := range orders {
		out[s.ShardOf(o.UserID)] = append(out[s.ShardOf(o.UserID)], o)
	}
	return out
}

// usersOnBoth returns n users, half on each of the two shards.
func usersOnBoth(s *Store, n int, prefix string) []string {
	return append(usersOn(s, 0, n/2, prefix), usersOn(s, 1, n-n/2, prefix)...)
}

// holdAllotments locks the sale's allotment row on every shard from the test's
// own connections, so the transactions that take room in the sale wait there
// with their limit reads done, until the returned release (also run at
// cleanup). It widens the window in which two transactions that decide one
// user's units overlap: without a lock per (sale, user) they always do.
func holdAllotments(t *testing.T, s *Store, saleID string) (release func()) {
	t.Helper()
	return testenv.LockRows(t, s.shards, `SELECT allotted FROM sale_allotments WHERE sale_id = ? FOR UPDATE`, saleID)
}

// awaitBlocked waits until n writes are in flight on the store's shard
// databases: all blocked, while holdAllotments holds.
func awaitBlocked(t *testing.T, s *Store, n int) {
	t.Helper()
	if got := testenv.AwaitWrites(s.meta, s.names[1:], n, 20*time.Second); got < n {
		t.Fatalf("%d writes waiting for a lock after 20 s, want %d", got, n)
	}
}

// checkOneUnitEach asserts that no user has more than the sale's
// per_user_limit of 1 in pending_payment and paid orders, and that the users
// have one unit each, n in all, within the cap.
func checkOneUnitEach(t *testing.T, s *Store, sale *flashsale.Sale, n int) {
	t.Helper()
	orders, err := s.HoldingOrders(context.Background(), sale.ID)
	if err != nil {
		t.Fatal(err)
	}
	units := map[string]int{}
	for _, o := range orders {
		units[o.UserID] += o.Quantity
	}
	over := 0
	for u, k := range units {
		if k > sale.PerUserLimit {
			over++
			t.Errorf("%s has %d units in pending and paid orders, per_user_limit %d", u, k, sale.PerUserLimit)
		}
	}
	if over > 0 {
		t.Errorf("%d of %d users over the limit", over, n)
	}
	if got := checkCap(t, s, sale); got != n {
		t.Errorf("%d units in orders, want %d (one per user)", got, n)
	}
}

// Two expired orders of each of 30 users (per_user_limit 1), both paid late at
// the same moment: exactly one of each user's payments is paid, the other
// refund_required, and no user has 2 units. "held": every transaction waits
// with its reads done (the sale's allotment rows held by the test), all 60 at
// once, then goes on together; "free": the same race with nothing held.
func TestConcurrentLatePaymentsKeepTheLimit(t *testing.T) {
	for _, held := range []bool{true, false} {
		name := map[bool]string{true: "held", false: "free"}[held]
		t.Run(name, func(t *testing.T) {
			s := newStore(t)
			ctx := context.Background()
			sale := createSale(t, s, "twice", 200, 1) // units for every payment: only the limit refuses
			users := usersOnBoth(s, 30, "twice")
			first := expiredOrders(t, s, sale, users)
			second := expiredOrders(t, s, sale, users) // the first expired: within the limit
			type result struct {
				out flashsale.PayOutcome
				err error
			}
			results := make([][2]result, len(users))
			release := func() {}
			if held {
				release = holdAllotments(t, s, sale.ID)
			}
			start := make(chan struct{})
			var wg sync.WaitGroup
			for i := range users {
				for k, o := range []*flashsale.Order{first[i], second[i]} {
					wg.Add(1)
					go func() {
						defer wg.Done()
						<-start
						out, _, err := s.Pay(ctx, o.Ref(), "late-"+o.ID, o.AmountCents, true, time.Now())
						results[i][k] = result{out, err}
					}()
				}
			}
			close(start)
			if held {
				awaitBlocked(t, s, 2*len(users))
				release()
			}
			wg.Wait()

			for i, u := range users {
				paid := 0
				for k, r := range results[i] {
					switch {
					case r.err != nil:
						t.Errorf("%s: late payment %d: %v", u, k+1, r.err)
					case r.out == flashsale.PayPaid:
						paid++
					case r.out != flashsale.PayRefundRequired:
						t.Errorf("%s: late payment %d: %v, want paid or refund_required", u, k+1, r.out)
					}
				}
				if paid != 1 {
					t.Errorf("%s: %d of 2 late payments paid, want 1 (the other refund_required)", u, paid)
				}
			}
			checkOneUnitEach(t, s, sale, len(users))
		})
	}
}

// The order transaction (a batch per shard with a new order of each of 30
// users) races a late payment of each user's expired order, all waiting with
// their reads done (the allotment rows held by the test), then going on
// together: for each user exactly one of them wins (the new order, and the
// payment is refund_required; or the payment, and the order is over the
// limit), and no user has 2 units.
func TestOrderTransactionRacesLatePayment(t *testing.T) {
	s := newStore(t)
	ctx := context.Background()
	sale := createSale(t, s, "race", 200, 1)
	users := usersOnBoth(s, 30, "race")
	expired := expiredOrders(t, s, sale, users)
	fresh := make([]*flashsale.Order, len(users))
	for i, u := range users {
		fresh[i] = saleOrder(sale, u, 1)
	}
	pays := make([]flashsale.PayOutcome, len(users))
	created := map[string]flashsale.CreateOutcome{}
	var mu sync.Mutex
	release := holdAllotments(t, s, sale.ID)
	start := make(chan struct{})
	var wg sync.WaitGroup
	for i, o := range expired {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			out, _, err := s.Pay(ctx, o.Ref(), "late-"+o.ID, o.AmountCents, true, time.Now())
			if err != nil {
				t.Errorf("late payment of %s: %v", o.UserID, err)
			}
			pays[i] = out
		}()
	}
	batches := byShard(s, fresh)
	for shard, batch := range batches {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			res, err := s.CreateOrders(ctx, shard, batch)
			if err != nil {
				t.Errorf("create orders on shard %d: %v", shard, err)
				return
			}
			mu.Lock()
			defer mu.Unlock()
			for i, r := range res {
				created[batch[i].UserID] = r.Outcome
			}
		}()
	}
	close(start)
	awaitBlocked(t, s, len(users)+len(batches))
	release()
	wg.Wait()

	wins := map[string]int{}
	for i, u := range users {
		paid, made := pays[i] == flashsale.PayPaid, created[u] == flashsale.CreateNew
		switch {
		case paid && made:
			t.Errorf("%s: the late payment was paid and the new order made too", u)
		case paid && created[u] != flashsale.CreateOverLimit:
			t.Errorf("%s: late payment paid, new order %v, want over limit", u, created[u])
		case made && pays[i] != flashsale.PayRefundRequired:
			t.Errorf("%s: new order made, late payment %v, want refund_required", u, pays[i])
		case !paid && !made:
			t.Errorf("%s: neither the late payment (%v) nor the new order (%v) won", u, pays[i], created[u])
		case paid:
			wins["late payment"]++
		default:
			wins["new order"]++
		}
	}
	t.Logf("won: %v", wins)
	checkOneUnitEach(t, s, sale, len(users))
}
