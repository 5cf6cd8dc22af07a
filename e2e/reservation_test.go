package e2e

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// reservationSpec is the "reservation" block of a sale.
type reservationSpec struct {
	OpensAt  time.Time `json:"opens_at"`
	ClosesAt time.Time `json:"closes_at"`
	Capacity int       `json:"capacity"`
}

// reservedSaleSpec is a sale with a reservation phase.
type reservedSaleSpec struct {
	saleSpec
	Reservation *reservationSpec `json:"reservation"`
}

// reservedSale is a sale whose reservation window is [opensIn, closesIn) from
// now and which opens startsIn from now, for an hour.
func reservedSale(stock, capacity int, opensIn, closesIn, startsIn time.Duration) reservedSaleSpec {
	now := time.Now().UTC()
	s := openSale(stock, 1, 1000)
	s.StartsAt, s.EndsAt = now.Add(startsIn), now.Add(startsIn+time.Hour)
	return reservedSaleSpec{saleSpec: s,
		Reservation: &reservationSpec{OpensAt: now.Add(opensIn), ClosesAt: now.Add(closesIn), Capacity: capacity}}
}

func (c *client) createReservedSale(t *testing.T, s reservedSaleSpec) string {
	t.Helper()
	r := c.must(t, http.MethodPost, "/api/v1/sales", c.admin(), s)
	if r.Status != http.StatusCreated {
		t.Fatalf("create sale %+v: %s", s, r)
	}
	return s.ID
}

func pathReserve(saleID string) string   { return pathSale(saleID) + "/reservations" }
func pathMyReservation(id string) string { return pathSale(id) + "/reservations/me" }

type reservationView struct {
	SaleID     string    `json:"sale_id"`
	UserID     string    `json:"user_id"`
	ReservedAt time.Time `json:"reserved_at"`
}

// reserve sends POST /sales/{id}/reservations as user.
func (c *client) reserve(ctx context.Context, saleID, userID string) (reply, error) {
	return c.send(ctx, http.MethodPost, pathReserve(saleID), user(userID), nil)
}

// reservedSaleView is GET /sales/{id} with the reservation fields.
type reservedSaleView struct {
	State        string           `json:"state"`
	Stock        stockView        `json:"stock"`
	Reservation  *reservationSpec `json:"reservation"`
	Reservations *int             `json:"reservations"`
}

func (c *client) reservedSaleView(t *testing.T, id string) reservedSaleView {
	t.Helper()
	c.sale(t, id) // the generic checks of a sale view
	r := c.must(t, http.MethodGet, pathSale(id), nil, nil)
	var v reservedSaleView
	if r.Status != http.StatusOK || r.decode(&v) != nil {
		t.Fatalf("GET sale %s: %s", id, r)
	}
	return v
}

// awaitState polls GET sale until its state is want.
func (c *client) awaitState(t *testing.T, id, want string, timeout time.Duration) reservedSaleView {
	t.Helper()
	var v reservedSaleView
	if !poll(timeout, 50*time.Millisecond, func() bool {
		v = c.reservedSaleView(t, id)
		return v.State == want
	}) {
		t.Fatalf("sale %s: state %q after %s, want %q", id, v.State, timeout, want)
	}
	return v
}

type reserveResult struct {
	User  string
	Reply reply
	Err   error
}

// reserveBurst has every user reserve the sale, all goroutines released at once.
func (c *client) reserveBurst(saleID string, users []string) []reserveResult {
	res := make([]reserveResult, len(users))
	start := make(chan struct{})
	var wg sync.WaitGroup
	for i, u := range users {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			r, err := c.reserve(ctx, saleID, u)
			res[i] = reserveResult{User: u, Reply: r, Err: err}
		}()
	}
	close(start)
	wg.Wait()
	return res
}

// checkReservationBody asserts a 200/201 body names the sale and the user and
// has a reserved_at.
func checkReservationBody(t *testing.T, saleID, userID string, r reply) reservationView {
	t.Helper()
	var v reservationView
	if err := r.decode(&v); err != nil {
		t.Error(err)
		return v
	}
	if v.SaleID != saleID || v.UserID != userID || v.ReservedAt.IsZero() {
		t.Errorf("reservation body %s, want sale_id %q, user_id %q and a reserved_at", r, saleID, userID)
	}
	return v
}

// reservationRows reads the sale's reservations straight from the meta database.
func (e *env) reservationRows(t *testing.T, saleID string) []string {
	t.Helper()
	db, err := sql.Open("mysql", mysqlDSN(e.MetaDB))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	rows, err := db.QueryContext(ctx, "SELECT user_id FROM reservations WHERE sale_id = ?", saleID)
	if err != nil {
		t.Fatalf("query reservations: %v", err)
	}
	defer rows.Close()
	var users []string
	for rows.Next() {
		var u string
		if err := rows.Scan(&u); err != nil {
			t.Fatal(err)
		}
		users = append(users, u)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return users
}

// flushRedis deletes every Redis key of the deployment's namespace (never
// FLUSHALL: other tests share the Redis) and asserts none is left.
func (e *env) flushRedis(t *testing.T) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	rdb := newRedis()
	defer rdb.Close()
	scan := func(ctx context.Context, c *redis.Client) ([]string, error) {
		var keys []string
		iter := c.Scan(ctx, 0, e.NS+"*", 1000).Iterator()
		for iter.Next(ctx) {
			keys = append(keys, iter.Val())
		}
		return keys, iter.Err()
	}
	each := func(fn func(ctx context.Context, c *redis.Client) error) error {
		if cc, ok := rdb.(*redis.ClusterClient); ok {
			return cc.ForEachMaster(ctx, fn)
		}
		return fn(ctx, rdb.(*redis.Client))
	}
	deleted := 0
	err := each(func(ctx context.Context, c *redis.Client) error {
		keys, err := scan(ctx, c)
		if err != nil {
			return err
		}
		for _, k := range keys { // one by one: a cluster's DEL takes keys of one slot
			if err := c.Del(ctx, k).Err(); err != nil {
				return err
			}
			deleted++
		}
		return nil
	})
	if err != nil {
		t.Fatalf("flush namespace %s: %v", e.NS, err)
	}
	var left []string
	each(func(ctx context.Context, c *redis.Client) error {
		keys, err := scan(ctx, c)
		left = append(left, keys...)
		return err
	})
	if deleted == 0 || len(left) != 0 {
		t.Fatalf("flush namespace %s: %d keys deleted, %d left %q", e.NS, deleted, len(left), left)
	}
	t.Logf("deleted all %d Redis keys of namespace %s", deleted, e.NS)
}

// TestReservationCapacityExactUnderRace: 5,000 users reserve a sale with
// capacity 1,000 in the same moment: exactly 1,000 get 201 and MySQL holds
// exactly their 1,000 rows; once the sale opens each of them can buy, and
// nobody else can (403 not_qualified, nothing queued).
func TestReservationCapacityExactUnderRace(t *testing.T) {
	e := newEnv(t)
	p := e.start("all", map[string]string{"FLASHSALE_LIMIT_PER_WINDOW": "0"})
	c := p.client()
	const users, capacity = 5000, 1000
	spec := reservedSale(capacity, capacity, -time.Second, 10*time.Second, 10*time.Second)
	saleID := c.createReservedSale(t, spec)

	t0 := time.Now()
	res := c.reserveBurst(saleID, userNames("resv", users))
	t.Logf("%d reservations answered in %s", users, time.Since(t0).Round(time.Millisecond))
	ta := newTally()
	var winners []string
	for _, r := range res {
		k := outcome(r.Reply, r.Err)
		ta.add(k, fmt.Sprintf("%s: %s %v", r.User, r.Reply, r.Err))
		if k == "201" {
			checkReservationBody(t, saleID, r.User, r.Reply)
			winners = append(winners, r.User)
		}
	}
	t.Logf("answers: %s", ta)
	ta.only(t, "201", "409 reservations_full")
	if len(winners) != capacity {
		t.Errorf("%d answers 201, want exactly %d", len(winners), capacity)
	}
	for _, r := range res {
		if r.Err == nil && r.Reply.Status == http.StatusConflict {
			checkError(t, "reserve by "+r.User, r.Reply, http.StatusConflict, "reservations_full")
			break
		}
	}
	rows := e.reservationRows(t, saleID)
	slices.Sort(rows)
	slices.Sort(winners)
	if !slices.Equal(rows, winners) {
		t.Errorf("MySQL has %d reservation rows; want exactly the %d users answered 201", len(rows), len(winners))
	}
	if v := c.reservedSaleView(t, saleID); v.Reservations == nil || *v.Reservations != capacity {
		t.Errorf("sale view reservations %v, want %d", v.Reservations, capacity)
	}

	c.awaitState(t, saleID, "open", 30*time.Second)
	won := map[string]bool{}
	for _, u := range winners {
		won[u] = true
	}
	buys := c.burst(saleID, userNames("resv", users), true)
	refs, pta := accepted(t, buys)
	t.Logf("purchase answers: %s", pta)
	pta.only(t, "202", "403 not_qualified")
	checkErrorExample(t, buys, http.StatusForbidden, "not_qualified")
	for _, b := range buys {
		if got := b.Err == nil && b.Reply.Status == http.StatusAccepted; got != won[b.User] {
			t.Errorf("user %s (reserved: %v): purchase answered %s", b.User, won[b.User], b.Reply)
		}
	}
	final := c.awaitFinal(t, refs, 90*time.Second)
	for _, ref := range refs {
		if v := final[ref.TicketID]; v.Status != "pending_payment" {
			t.Errorf("ticket %s of %s ended %q, want pending_payment", ref.TicketID, ref.User, v.Status)
		}
	}
	orders := e.orders(t, saleID)
	live := checkOrderRows(t, orders, capacity, 1)
	if len(live) != capacity {
		t.Errorf("%d users have an order, want %d", len(live), capacity)
	}
	for u := range live {
		if !won[u] {
			t.Errorf("user %s has an order but did not reserve", u)
		}
	}
	p.Stop()
}

// TestReservationRules: one user's 20 simultaneous reservations make one;
// reserving outside the window is reservation_closed, reserving a sale without
// a phase is no_reservation, an unknown sale is not_found; a sale without a
// phase sells to anyone, and a reservation does not let anyone buy early.
func TestReservationRules(t *testing.T) {
	e := newEnv(t)
	p := e.start("all", nil)
	c := p.client()

	// One user, 20 requests at once.
	open := c.createReservedSale(t, reservedSale(10, 0, -time.Second, time.Hour, time.Hour))
	const u = "double-reserver"
	same := make([]string, 20)
	for i := range same {
		same[i] = u
	}
	res := c.reserveBurst(open, same)
	n201, n200 := 0, 0
	var first reservationView
	bodies := map[string]int{}
	for _, r := range res {
		if r.Err != nil {
			t.Fatalf("reserve: %v", r.Err)
		}
		switch r.Reply.Status {
		case http.StatusCreated:
			n201++
		case http.StatusOK:
			n200++
		default:
			t.Errorf("reserve: %s, want 201 or 200", r.Reply)
			continue
		}
		first = checkReservationBody(t, open, u, r.Reply)
		bodies[string(r.Reply.Body)]++
	}
	if n201 != 1 || n200 != 19 {
		t.Errorf("%d answers 201 and %d answers 200, want 1 and 19", n201, n200)
	}
	if len(bodies) != 1 {
		t.Errorf("the answers carry %d different bodies, want one: %v", len(bodies), bodies)
	}
	if rows := e.reservationRows(t, open); len(rows) != 1 {
		t.Errorf("%d reservation rows, want 1", len(rows))
	}
	r := c.must(t, http.MethodGet, pathMyReservation(open), user(u), nil)
	if r.Status != http.StatusOK {
		t.Errorf("GET my reservation: %s, want 200", r)
	} else if v := checkReservationBody(t, open, u, r); !v.ReservedAt.Equal(first.ReservedAt) {
		t.Errorf("GET my reservation: reserved_at %v, want %v", v.ReservedAt, first.ReservedAt)
	}
	checkError(t, "GET reservation of a user who did not reserve",
		c.must(t, http.MethodGet, pathMyReservation(open), user("someone-else"), nil), http.StatusNotFound, "not_found")
	again := c.must(t, http.MethodPost, pathReserve(open), user(u), nil)
	if again.Status != http.StatusOK || !json.Valid(again.Body) {
		t.Errorf("reserve again later: %s, want 200", again)
	}
	if v := c.reservedSaleView(t, open); v.State != "reservation_open" || v.Reservations == nil || *v.Reservations != 1 {
		t.Errorf("sale view: state %q reservations %v, want reservation_open and 1", v.State, v.Reservations)
	}
	// Reserved, but the sale has not started.
	checkError(t, "purchase before starts_at", c.must(t, http.MethodPost, pathPurchase(open), user(u), nil),
		http.StatusConflict, "not_started")

	// Before opens_at and after closes_at.
	early := c.createReservedSale(t, reservedSale(10, 0, time.Hour, 2*time.Hour, 2*time.Hour))
	checkError(t, "reserve before opens_at", c.must(t, http.MethodPost, pathReserve(early), user("u1"), nil),
		http.StatusConflict, "reservation_closed")
	if v := c.reservedSaleView(t, early); v.State != "scheduled" {
		t.Errorf("sale before its window: state %q, want scheduled", v.State)
	}
	late := c.createReservedSale(t, reservedSale(10, 0, -2*time.Hour, -time.Hour, time.Hour))
	checkError(t, "reserve after closes_at", c.must(t, http.MethodPost, pathReserve(late), user("u1"), nil),
		http.StatusConflict, "reservation_closed")
	if v := c.reservedSaleView(t, late); v.State != "upcoming" || v.Reservations == nil || *v.Reservations != 0 {
		t.Errorf("sale after its window: state %q reservations %v, want upcoming and 0", v.State, v.Reservations)
	}
	if rows := e.reservationRows(t, early); len(rows) != 0 {
		t.Errorf("%d rows for a refused reservation", len(rows))
	}

	// A sale without a reservation phase.
	plain := c.createSale(t, openSale(10, 1, 100))
	checkError(t, "reserve a sale without a phase", c.must(t, http.MethodPost, pathReserve(plain), user("u1"), nil),
		http.StatusConflict, "no_reservation")
	checkError(t, "GET reservation of a sale without a phase",
		c.must(t, http.MethodGet, pathMyReservation(plain), user("u1"), nil), http.StatusNotFound, "not_found")
	if r := c.must(t, http.MethodGet, pathSale(plain), nil, nil); r.Status != http.StatusOK || json.Valid(r.Body) && hasKey(r.Body, "reservations") {
		t.Errorf("a sale without a phase shows a reservation count: %s", r)
	}
	if r := c.must(t, http.MethodPost, pathPurchase(plain), user("anyone"), nil); r.Status != http.StatusAccepted {
		t.Errorf("purchase of a sale without a phase: %s, want 202", r)
	}

	// Unknown sale, no user.
	checkError(t, "reserve an unknown sale", c.must(t, http.MethodPost, pathReserve("no-such-sale"), user("u1"), nil),
		http.StatusNotFound, "not_found")
	checkError(t, "GET reservation of an unknown sale",
		c.must(t, http.MethodGet, pathMyReservation("no-such-sale"), user("u1"), nil), http.StatusNotFound, "not_found")
	checkError(t, "reserve without X-User-ID", c.must(t, http.MethodPost, pathReserve(open), nil, nil),
		http.StatusUnauthorized, "unauthorized")
	checkError(t, "reserve with a malformed body", c.must(t, http.MethodPost, pathReserve(open), user("u2"), "{"),
		http.StatusBadRequest, "bad_request")
	p.Stop()
}

func hasKey(body []byte, key string) bool {
	var m map[string]json.RawMessage
	if json.Unmarshal(body, &m) != nil {
		return false
	}
	_, ok := m[key]
	return ok
}

// TestReservationSurvivesRedisFlush: Redis loses everything between the
// reservation window and the sale; users who reserved can still buy and others
// still cannot, through two ingress processes rebuilding at once.
func TestReservationSurvivesRedisFlush(t *testing.T) {
	e := newEnv(t)
	p := e.start("all", nil)
	q := e.start("ingress", nil)
	c, c2 := p.client(), q.client()
	saleID := c.createReservedSale(t, reservedSale(100, 0, -time.Second, 2*time.Second, 4*time.Second))
	reserved, others := userNames("kept", 30), userNames("stranger", 30)
	for _, u := range reserved {
		r := c.must(t, http.MethodPost, pathReserve(saleID), user(u), nil)
		if r.Status != http.StatusCreated {
			t.Fatalf("reserve %s: %s", u, r)
		}
	}
	// Both processes have read the sale (and checked qualification would be
	// refused) before the flush: nothing they remember may stand in for Redis.
	for _, cl := range []*client{c, c2} {
		checkError(t, "purchase during the window", cl.must(t, http.MethodPost, pathPurchase(saleID), user(others[0]), nil),
			http.StatusConflict, "not_started")
	}

	c.awaitState(t, saleID, "upcoming", 20*time.Second)
	e.flushRedis(t)
	v := c.awaitState(t, saleID, "open", 20*time.Second)
	if v.Reservations == nil || *v.Reservations != len(reserved) {
		t.Errorf("sale view after the flush: reservations %v, want %d", v.Reservations, len(reserved))
	}

	// Everyone at once, half through each process: the first checks find the
	// qualified set missing and rebuild it from MySQL.
	everyone := append(slices.Clone(reserved), others...)
	var mu sync.Mutex
	var buys []purchaseResult
	var wg sync.WaitGroup
	for i, cl := range []*client{c, c2} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var mine []string
			for j, u := range everyone {
				if j%2 == i {
					mine = append(mine, u)
				}
			}
			got := cl.burst(saleID, mine, true)
			mu.Lock()
			buys = append(buys, got...)
			mu.Unlock()
		}()
	}
	wg.Wait()
	refs, ta := accepted(t, buys)
	t.Logf("purchase answers after the flush: %s", ta)
	ta.only(t, "202", "403 not_qualified")
	if len(refs) != len(reserved) || ta.get("403 not_qualified") != len(others) {
		t.Errorf("%d purchases accepted and %d refused, want %d and %d", len(refs), ta.get("403 not_qualified"), len(reserved), len(others))
	}
	for _, ref := range refs {
		if !slices.Contains(reserved, ref.User) {
			t.Errorf("user %s bought without a reservation", ref.User)
		}
	}
	final := c.awaitFinal(t, refs, 60*time.Second)
	for _, ref := range refs {
		if v := final[ref.TicketID]; v.Status != "pending_payment" {
			t.Errorf("ticket %s of %s ended %q, want pending_payment", ref.TicketID, ref.User, v.Status)
		}
	}
	// Still refused on a second try (the rebuilt set is complete and marked).
	checkError(t, "purchase by a user who did not reserve, again",
		c2.must(t, http.MethodPost, pathPurchase(saleID), user(others[1]), nil), http.StatusForbidden, "not_qualified")
	q.Stop()
	p.Stop()
}

// TestReservationStateProgression: GET sale moves scheduled →
// reservation_open → upcoming → open, and shows the reservation count.
func TestReservationStateProgression(t *testing.T) {
	e := newEnv(t)
	p := e.start("all", nil)
	c := p.client()
	spec := reservedSale(10, 5, 2*time.Second, 4*time.Second, 6*time.Second)
	saleID := c.createReservedSale(t, spec)
	var states []string
	reserved := 0
	if !poll(30*time.Second, 50*time.Millisecond, func() bool {
		v := c.reservedSaleView(t, saleID)
		if len(states) == 0 || states[len(states)-1] != v.State {
			states = append(states, v.State)
			t.Logf("state %s (reservations %v) at %s", v.State, ptrString(v.Reservations), time.Now().UTC().Format("15:04:05.000"))
		}
		if v.Reservation == nil || !v.Reservation.ClosesAt.Equal(spec.Reservation.ClosesAt.Truncate(time.Microsecond)) ||
			v.Reservation.Capacity != 5 {
			t.Fatalf("sale view reservation %+v, want %+v", v.Reservation, spec.Reservation)
		}
		if v.Reservations == nil || *v.Reservations != reserved {
			t.Fatalf("state %s: reservations %s, want %d", v.State, ptrString(v.Reservations), reserved)
		}
		if v.State == "reservation_open" && reserved == 0 {
			for _, u := range []string{"ada", "bob", "cyd"} {
				if r := c.must(t, http.MethodPost, pathReserve(saleID), user(u), nil); r.Status != http.StatusCreated {
					t.Fatalf("reserve %s: %s", u, r)
				}
			}
			reserved = 3
		}
		return v.State == "open"
	}) {
		t.Fatalf("sale did not open within 30 s; states seen %v", states)
	}
	if want := []string{"scheduled", "reservation_open", "upcoming", "open"}; !slices.Equal(states, want) {
		t.Errorf("states %v, want %v", states, want)
	}
	if r := c.must(t, http.MethodPost, pathPurchase(saleID), user("bob"), nil); r.Status != http.StatusAccepted {
		t.Errorf("purchase by a user who reserved: %s, want 202", r)
	}
	checkError(t, "purchase by a user who did not reserve", c.must(t, http.MethodPost, pathPurchase(saleID), user("eve"), nil),
		http.StatusForbidden, "not_qualified")
	p.Stop()
}

func ptrString(p *int) string {
	if p == nil {
		return "absent"
	}
	return fmt.Sprint(*p)
}
