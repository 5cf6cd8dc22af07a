package e2e

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"math"
	"net/http"
	"os"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// The waiting room (contract section 2 "Waiting room", guarantee 6).

// waitingRoomSpec is the "waiting_room" block of a sale.
type waitingRoomSpec struct {
	OpensAt  time.Time `json:"opens_at"`
	Waitlist *int      `json:"waitlist,omitempty"`
}

// roomSaleSpec is a sale with a waiting room (and possibly a reservation phase).
type roomSaleSpec struct {
	saleSpec
	Reservation *reservationSpec `json:"reservation,omitempty"`
	WaitingRoom *waitingRoomSpec `json:"waiting_room"`
}

// roomSale is a sale whose waiting room opens opensIn from now and which
// starts startsIn from now, for an hour, with a waitlist of waitlist.
func roomSale(stock, waitlist int, opensIn, startsIn time.Duration) roomSaleSpec {
	now := time.Now().UTC()
	s := openSale(stock, 1, 1000)
	s.StartsAt, s.EndsAt = now.Add(startsIn), now.Add(startsIn+time.Hour)
	return roomSaleSpec{saleSpec: s, WaitingRoom: &waitingRoomSpec{OpensAt: now.Add(opensIn), Waitlist: &waitlist}}
}

// roomView is GET /sales/{id} with the waiting room's fields.
type roomView struct {
	State       string    `json:"state"`
	StartsAt    time.Time `json:"starts_at"`
	Stock       stockView `json:"stock"`
	WaitingRoom *struct {
		OpensAt        time.Time `json:"opens_at"`
		Waitlist       int       `json:"waitlist"`
		Entries        int       `json:"entries"`
		DrawCommitment string    `json:"draw_commitment"`
		DrawSeed       *string   `json:"draw_seed"`
	} `json:"waiting_room"`
}

func (c *client) roomView(t *testing.T, id string) roomView {
	t.Helper()
	c.sale(t, id) // the generic checks of a sale view
	r := c.must(t, http.MethodGet, pathSale(id), nil, nil)
	var v roomView
	if r.Status != http.StatusOK || r.decode(&v) != nil {
		t.Fatalf("GET sale %s: %s", id, r)
	}
	if v.WaitingRoom == nil {
		t.Fatalf("GET sale %s: no waiting_room in %s", id, r)
	}
	return v
}

// awaitRoomState polls the sale until its state is want.
func (c *client) awaitRoomState(t *testing.T, id, want string, timeout time.Duration) roomView {
	t.Helper()
	var v roomView
	if !poll(timeout, 20*time.Millisecond, func() bool {
		v = c.roomView(t, id)
		return v.State == want
	}) {
		t.Fatalf("sale %s: state %q after %s, want %q", id, v.State, timeout, want)
	}
	return v
}

type drawView struct {
	Commitment string `json:"commitment"`
	Seed       string `json:"seed"`
	Entries    int    `json:"entries"`
}

func pathDraw(saleID string) string { return pathSale(saleID) + "/draw" }

// TestWaitingRoomSaleAndDraw: a sale's waiting room is validated at
// creation (400 invalid naming the field), publishes a commitment at once,
// is scheduled before opens_at and waiting_room_open until starts_at, and
// reveals a seed whose SHA-256 is the commitment from starts_at on, in the
// sale view and at /draw; before then /draw and /draw/scores answer 409
// not_started, and a sale without a waiting room has no draw (404).
func TestWaitingRoomSaleAndDraw(t *testing.T) {
	e := newEnv(t)
	p := e.start("all", nil)
	c := p.client()

	bad := func(name, field string, s roomSaleSpec) {
		t.Helper()
		r := c.must(t, http.MethodPost, "/api/v1/sales", c.admin(), s)
		checkError(t, name, r, http.StatusBadRequest, "invalid")
		if !strings.Contains(string(r.Body), field) {
			t.Errorf("%s: message %s does not name %s", name, r.Body, field)
		}
	}
	late := roomSale(5, 0, time.Hour, time.Hour) // opens_at == starts_at
	late.WaitingRoom.OpensAt = late.StartsAt
	bad("opens_at at starts_at", "waiting_room.opens_at", late)
	neg := roomSale(5, -1, time.Minute, time.Hour)
	bad("negative waitlist", "waiting_room.waitlist", neg)
	res := roomSale(5, 0, time.Minute, time.Hour)
	now := time.Now().UTC()
	res.Reservation = &reservationSpec{OpensAt: now, ClosesAt: now.Add(2 * time.Minute)}
	bad("opens_at inside the reservation window", "waiting_room.opens_at", res)
	r := c.must(t, http.MethodPost, "/api/v1/sales", c.admin(), map[string]any{
		"sku": "s", "name": "n", "stock": 1, "price_cents": 1, "starts_at": now.Add(time.Hour),
		"ends_at": now.Add(2 * time.Hour), "waiting_room": map[string]any{"waitlist": 1}})
	checkError(t, "no opens_at", r, http.StatusBadRequest, "invalid")

	spec := roomSale(5, 3, 1500*time.Millisecond, 3*time.Second)
	r = c.must(t, http.MethodPost, "/api/v1/sales", c.admin(), spec)
	if r.Status != http.StatusCreated {
		t.Fatalf("create: %s", r)
	}
	v := c.roomView(t, spec.ID)
	wr := v.WaitingRoom
	if v.State != "scheduled" || wr.Waitlist != 3 || wr.Entries != 0 || wr.DrawSeed != nil ||
		!wr.OpensAt.Equal(spec.WaitingRoom.OpensAt.Truncate(time.Microsecond)) {
		t.Errorf("before opens_at: state %q, waiting_room %+v; want scheduled, waitlist 3, no entries, no seed", v.State, *wr)
	}
	commitment := wr.DrawCommitment
	if len(commitment) != 64 || strings.ToLower(commitment) != commitment {
		t.Errorf("draw_commitment %q: want 64 lower-case hex digits", commitment)
	}
	checkError(t, "draw before starts_at", c.must(t, http.MethodGet, pathDraw(spec.ID), nil, nil), http.StatusConflict, "not_started")
	checkError(t, "scores before starts_at", c.must(t, http.MethodGet, pathDraw(spec.ID)+"/scores", nil, nil), http.StatusConflict, "not_started")
	checkError(t, "limit 1001", c.must(t, http.MethodGet, pathDraw(spec.ID)+"/scores?limit=1001", nil, nil), http.StatusBadRequest, "invalid")
	checkError(t, "after not hex", c.must(t, http.MethodGet, pathDraw(spec.ID)+"/scores?after=XYZ", nil, nil), http.StatusBadRequest, "invalid")

	v = c.awaitRoomState(t, spec.ID, "waiting_room_open", 5*time.Second)
	if v.WaitingRoom.DrawSeed != nil || v.WaitingRoom.DrawCommitment != commitment {
		t.Errorf("line open: waiting_room %+v; want the same commitment and no seed", *v.WaitingRoom)
	}

	v = c.awaitRoomState(t, spec.ID, "open", 5*time.Second)
	if v.WaitingRoom.DrawSeed == nil {
		t.Fatalf("from starts_at: no draw_seed in %+v", *v.WaitingRoom)
	}
	seed, err := hex.DecodeString(*v.WaitingRoom.DrawSeed)
	sum := sha256.Sum256(seed)
	if err != nil || len(seed) != 32 || hex.EncodeToString(sum[:]) != commitment {
		t.Errorf("draw_seed %q: want 32 bytes whose SHA-256 is the commitment %s", *v.WaitingRoom.DrawSeed, commitment)
	}
	r = c.must(t, http.MethodGet, pathDraw(spec.ID), nil, nil)
	var d drawView
	if r.Status != http.StatusOK || r.decode(&d) != nil || d.Commitment != commitment || d.Seed != *v.WaitingRoom.DrawSeed || d.Entries != 0 {
		t.Errorf("GET draw: %s; want the commitment, the seed and 0 entries", r)
	}
	r = c.must(t, http.MethodGet, pathDraw(spec.ID)+"/scores?limit=10", nil, nil)
	if r.Status != http.StatusOK || strings.TrimSpace(string(r.Body)) != `{"scores":[]}` {
		t.Errorf("GET scores of an empty line: %s", r)
	}

	plain := c.createSale(t, openSale(1, 1, 100))
	checkError(t, "draw of a sale without a waiting room", c.must(t, http.MethodGet, pathDraw(plain), nil, nil), http.StatusNotFound, "not_found")
}

// roomTicket is GET /tickets/{id} of a waiting ticket, with its place.
type roomTicket struct {
	ticketView
	Position  *int `json:"position"`
	ETA       *int `json:"eta_seconds"`
	PollAfter *int `json:"poll_after_ms"`
}

func (c *client) roomTicket(t *testing.T, userID, id string) roomTicket {
	t.Helper()
	r := c.must(t, http.MethodGet, pathTicket(id), user(userID), nil)
	var v roomTicket
	if r.Status != http.StatusOK || r.decode(&v) != nil {
		t.Fatalf("GET ticket %s of %s: %s", id, userID, r)
	}
	return v
}

// enter purchases one unit of the sale as userID and returns the answer.
func (c *client) enter(t *testing.T, saleID, userID string) (int, purchaseAnswer) {
	t.Helper()
	r := c.must(t, http.MethodPost, pathPurchase(saleID), user(userID), map[string]int{"quantity": 1})
	var a purchaseAnswer
	if r.Status == http.StatusOK || r.Status == http.StatusAccepted {
		if err := r.decode(&a); err != nil {
			t.Fatal(err)
		}
	}
	return r.Status, a
}

// TestWaitingRoomEnterAndLeave: from opens_at to starts_at a purchase enters
// the line (202 waiting; the same user again 200 with the same ticket), a
// waiting ticket shows its status with a null position and a poll interval,
// the sale counts its entries, a user leaves the line (200 cancelled, again
// 200) and may enter again; a ticket not waiting cannot be cancelled (409)
// and someone else's is 404. At starts_at the draw's scores are exactly the
// HMACs of the users waiting then, recomputed from the revealed seed, in
// ascending order, and each waiting ticket's position is its rank among them;
// a late arrival beyond available + waitlist is 409 sold_out.
func TestWaitingRoomEnterAndLeave(t *testing.T) {
	e := newEnv(t)
	p := e.start("all", nil)
	c := p.client()

	early := roomSale(2, 1, time.Hour, 2*time.Hour)
	c.must(t, http.MethodPost, "/api/v1/sales", c.admin(), early)
	if st, _ := c.enter(t, early.ID, "u-early"); st != http.StatusConflict {
		t.Errorf("purchase before opens_at: %d, want 409 not_started", st)
	}

	spec := roomSale(2, 1, -time.Second, 6*time.Second)
	if r := c.must(t, http.MethodPost, "/api/v1/sales", c.admin(), spec); r.Status != http.StatusCreated {
		t.Fatalf("create: %s", r)
	}
	users := []string{"wr-ann", "wr-bob", "wr-cid", "wr-dee", "wr-eve"}
	tickets := map[string]string{}
	for _, u := range users {
		st, a := c.enter(t, spec.ID, u)
		if st != http.StatusAccepted || a.Status != "waiting" || a.TicketID == "" {
			t.Fatalf("enter %s: %d %+v, want 202 waiting", u, st, a)
		}
		tickets[u] = a.TicketID
	}
	if st, a := c.enter(t, spec.ID, "wr-ann"); st != http.StatusOK || a.TicketID != tickets["wr-ann"] || a.Status != "waiting" {
		t.Errorf("enter again: %d %+v, want 200 with ticket %s waiting", st, a, tickets["wr-ann"])
	}
	r := c.must(t, http.MethodPost, pathPurchase(spec.ID), user("wr-two"), map[string]int{"quantity": 2})
	checkError(t, "quantity over the limit", r, http.StatusUnprocessableEntity, "invalid_quantity")

	asked := time.Now()
	v := c.roomTicket(t, "wr-ann", tickets["wr-ann"])
	answered := time.Now()
	if v.Status != "waiting" || v.SaleID != spec.ID || v.Position != nil || v.PollAfter == nil {
		t.Fatalf("waiting ticket before the draw: %+v; want waiting, position null, poll_after_ms", v)
	}
	// Nothing moves before the draw: look again 0.5 to 1 s after starts_at
	// (50 ms for the two clocks' skew).
	pollAt := func(from time.Time) time.Time { return from.Add(time.Duration(*v.PollAfter) * time.Millisecond) }
	if early, late := spec.StartsAt.Add(450*time.Millisecond), spec.StartsAt.Add(1050*time.Millisecond); pollAt(answered).Before(early) || pollAt(asked).After(late) {
		t.Errorf("poll_after_ms %d before the draw, starts_at in %s: want the draw's reveal + 0.5..1 s", *v.PollAfter, spec.StartsAt.Sub(asked))
	}
	if got := c.roomView(t, spec.ID).WaitingRoom.Entries; got != len(users) {
		t.Errorf("entries %d, want %d", got, len(users))
	}
	checkError(t, "someone else's cancel", c.must(t, http.MethodPost, pathTicket(tickets["wr-eve"])+"/cancel", user("wr-ann"), nil),
		http.StatusNotFound, "not_found")
	for range 2 {
		r := c.must(t, http.MethodPost, pathTicket(tickets["wr-eve"])+"/cancel", user("wr-eve"), nil)
		var tv ticketView
		if r.Status != http.StatusOK || r.decode(&tv) != nil || tv.Status != "cancelled" {
			t.Errorf("leave the line: %s, want 200 cancelled", r)
		}
	}
	if got := c.roomView(t, spec.ID).WaitingRoom.Entries; got != len(users)-1 {
		t.Errorf("entries after a cancel %d, want %d", got, len(users)-1)
	}
	st, a := c.enter(t, spec.ID, "wr-eve")
	if st != http.StatusAccepted || a.TicketID == tickets["wr-eve"] {
		t.Errorf("enter after leaving: %d %+v, want 202 with a new ticket", st, a)
	}
	tickets["wr-eve"] = a.TicketID
	// wr-dee leaves for good.
	c.must(t, http.MethodPost, pathTicket(tickets["wr-dee"])+"/cancel", user("wr-dee"), nil)
	drawn := []string{"wr-ann", "wr-bob", "wr-cid", "wr-eve"}

	plain := c.createSale(t, openSale(5, 1, 100))
	st, a = c.enter(t, plain, "wr-plain")
	if st != http.StatusAccepted {
		t.Fatalf("ordinary purchase: %d", st)
	}
	checkError(t, "cancel an ordinary ticket", c.must(t, http.MethodPost, pathTicket(a.TicketID)+"/cancel", user("wr-plain"), nil),
		http.StatusConflict, "conflict")

	rv := c.awaitRoomState(t, spec.ID, "open", 10*time.Second)
	seed, _ := hex.DecodeString(*rv.WaitingRoom.DrawSeed)
	want := make([]string, len(drawn))
	rank := map[string]int{}
	for i, u := range drawn {
		want[i] = hmacHex(seed, u)
	}
	slices.Sort(want)
	for _, u := range drawn {
		rank[u] = slices.Index(want, hmacHex(seed, u)) + 1
	}
	r = c.must(t, http.MethodGet, pathDraw(spec.ID)+"/scores", nil, nil)
	var sc struct {
		Scores []string `json:"scores"`
	}
	if r.Status != http.StatusOK || r.decode(&sc) != nil || !slices.Equal(sc.Scores, want) {
		t.Errorf("draw scores %s, want %v", r, want)
	}
	r = c.must(t, http.MethodGet, pathDraw(spec.ID)+"/scores?limit=1&after="+want[1], nil, nil)
	if r.decode(&sc) != nil || !slices.Equal(sc.Scores, want[2:3]) {
		t.Errorf("a page of one after the second: %s, want %v", r, want[2:3])
	}
	var d drawView
	if r := c.must(t, http.MethodGet, pathDraw(spec.ID), nil, nil); r.decode(&d) != nil || d.Entries != len(drawn) {
		t.Errorf("draw entries %s, want %d", r, len(drawn))
	}
	for _, u := range drawn {
		v := c.roomTicket(t, u, tickets[u])
		if v.Status == "waiting" && (v.Position == nil || *v.Position > rank[u]) {
			t.Errorf("%s after the draw: position %v, want at most its rank %d", u, v.Position, rank[u])
		}
	}
	// 4 waiting >= available 2 + waitlist 1: a newcomer is told sold_out.
	checkError(t, "a late arrival beyond the line's bound", c.must(t, http.MethodPost, pathPurchase(spec.ID), user("wr-late"), nil),
		http.StatusConflict, "sold_out")
}

func hmacHex(key []byte, msg string) string {
	m := hmac.New(sha256.New, key)
	m.Write([]byte(msg))
	return hex.EncodeToString(m.Sum(nil))
}

// drawOrder returns users sorted by their draw score under seed.
func drawOrder(seed []byte, users []string) []string {
	out := slices.Clone(users)
	slices.SortFunc(out, func(a, b string) int { return strings.Compare(hmacHex(seed, a), hmacHex(seed, b)) })
	return out
}

// awaitTicketStatus polls a ticket until its status is want.
func (c *client) awaitTicketStatus(t *testing.T, userID, id, want string, timeout time.Duration) roomTicket {
	t.Helper()
	var v roomTicket
	if !poll(timeout, 50*time.Millisecond, func() bool {
		v = c.roomTicket(t, userID, id)
		return v.Status == want
	}) {
		t.Fatalf("ticket %s of %s: %q after %s, want %q", id, userID, v.Status, timeout, want)
	}
	return v
}

// TestWaitingRoomAdmitsTheLineInDrawOrder: 10 users enter a line for 3
// units with a waitlist of 2. After the opening the first 3 of the draw
// recomputed from the revealed seed get orders (pending_payment), the next 2
// keep waiting and the other 5 end sold_out; an order cancelled gives its unit
// to the first waiting ticket (the 4th of the draw), and at ends_at the
// ticket still waiting ends sold_out.
func TestWaitingRoomAdmitsTheLineInDrawOrder(t *testing.T) {
	e := newEnv(t)
	p := e.start("all", nil)
	c := p.client()
	spec := roomSale(3, 2, -time.Second, 4*time.Second)
	spec.EndsAt = spec.StartsAt.Add(15 * time.Second)
	if r := c.must(t, http.MethodPost, "/api/v1/sales", c.admin(), spec); r.Status != http.StatusCreated {
		t.Fatalf("create: %s", r)
	}
	users := userNames("wr-line", 10)
	tickets := map[string]string{}
	for _, u := range users {
		st, a := c.enter(t, spec.ID, u)
		if st != http.StatusAccepted {
			t.Fatalf("enter %s: %d", u, st)
		}
		tickets[u] = a.TicketID
	}
	if time.Now().After(spec.StartsAt) {
		t.Fatal("the entries took past starts_at: the box is too slow for this test's timing")
	}
	// Every ticket's event stream, followed to its end.
	hc := &http.Client{Transport: streamTransport()}
	streams := map[string]chan []streamEvent{}
	for _, u := range users {
		st, r, err := openTicketStream(hc, c.base, tickets[u], u, "")
		if err != nil || st == nil {
			t.Fatalf("stream of %s: %v %s", u, err, r)
		}
		ch := make(chan []streamEvent, 1)
		streams[u] = ch
		go func() {
			defer st.close()
			var evs []streamEvent
			for {
				ev, err := st.nextEvent()
				if err != nil {
					ch <- evs
					return
				}
				evs = append(evs, ev)
			}
		}()
	}
	rv := c.awaitRoomState(t, spec.ID, "open", 10*time.Second)
	seed, _ := hex.DecodeString(*rv.WaitingRoom.DrawSeed)
	order := drawOrder(seed, users)
	for _, u := range order[:3] {
		c.awaitTicketStatus(t, u, tickets[u], "pending_payment", 20*time.Second)
	}
	for _, u := range order[5:] {
		c.awaitTicketStatus(t, u, tickets[u], "sold_out", 20*time.Second)
	}
	for i, u := range order[3:5] {
		v := c.roomTicket(t, u, tickets[u])
		if v.Status != "waiting" || v.Position == nil || *v.Position != i+1 {
			t.Errorf("waitlisted %s (draw place %d): %+v, want waiting at position %d", u, 4+i, v, i+1)
		}
	}
	if v := c.roomView(t, spec.ID); v.Stock.Held != 3 || v.WaitingRoom.Entries != 2 {
		t.Errorf("sale after admission: stock %+v, entries %d; want 3 held, 2 waiting", v.Stock, v.WaitingRoom.Entries)
	}
	// The operators' live page shows the line: 2 waiting, 3 admitted (at a
	// pace seen above 0), the waitlist.
	paced := false
	for _, smp := range awaitLiveRoom(t, c, spec.ID, liveRoom{Entries: 2, Admitted: 3, Waitlist: 2}) {
		for _, s := range smp.Sales {
			paced = paced || s.ID == spec.ID && s.WaitingRoom != nil && s.WaitingRoom.Pace > 0
		}
	}
	if !paced {
		t.Errorf("the live page never showed the line's pace above 0 while 3 tickets were admitted")
	}
	first := c.roomTicket(t, order[0], tickets[order[0]])
	if r := c.must(t, http.MethodPost, pathOrder(first.OrderID)+"/cancel", user(order[0]), nil); r.Status != http.StatusOK {
		t.Fatalf("cancel the first winner's order: %s", r)
	}
	c.awaitTicketStatus(t, order[3], tickets[order[3]], "pending_payment", 20*time.Second)
	awaitLiveRoom(t, c, spec.ID, liveRoom{Entries: 1, Admitted: 4, Waitlist: 2})
	if v := c.roomTicket(t, order[4], tickets[order[4]]); v.Status != "waiting" {
		t.Errorf("the 5th of the draw after one unit came back: %q, want still waiting", v.Status)
	}
	c.awaitTicketStatus(t, order[4], tickets[order[4]], "sold_out", time.Until(spec.EndsAt)+15*time.Second)

	for i, u := range order {
		var evs []streamEvent
		select {
		case evs = <-streams[u]:
		case <-time.After(10 * time.Second):
			t.Errorf("the stream of %s (draw place %d) did not end after its ticket's decision", u, i+1)
			continue
		}
		// Every status the ticket passed through, in order, once each (the
		// events of one status repeat only while its position moves): the
		// first winner's stream too, although this test cancelled its order
		// right after pending_payment (its stream ends there).
		var statuses []string
		for _, ev := range evs {
			if n := len(statuses); n == 0 || statuses[n-1] != ev.View.Status {
				statuses = append(statuses, ev.View.Status)
			}
		}
		want := []string{"waiting", "sold_out"}
		if i < 4 {
			want = []string{"waiting", "queued", "pending_payment"}
		}
		if !slices.Equal(statuses, want) || evs[0].View.Position != nil {
			t.Errorf("stream of %s (draw place %d): %d events %+v; want the statuses %v, the first waiting with position null", u, i+1, len(evs), evs, want)
		}
	}
}

// wrUsers is how many users TestWaitingRoomFairAgainstFastClients sends
// into the line: FLASHSALE_E2E_WR_USERS, default the 20,000 (about
// a minute here: the crowd enters in 7 s, the line is admitted in ~40 s).
func wrUsers() int {
	if n, err := strconv.Atoi(os.Getenv("FLASHSALE_E2E_WR_USERS")); err == nil && n > 0 {
		return n
	}
	return 20000
}

// TestWaitingRoomFairAgainstFastClients: N users enter a line during a
// window of wrWindow (10 s). A third are "fast" clients: they enter in the
// first second and retry hard (3 requests each, at once); the rest are
// "slow" ones, spread over the whole window. After the opening the tickets
// that got units are exactly the first `stock` of the draw recomputed from
// the revealed seed, every other ticket ends sold_out (waitlist 0), and
// /draw/scores paged through gives each winner its own rank.
//
// The statistical test: if the draw ignores speed, the number X of fast
// clients among the n = stock winners is hypergeometric (N entrants, K fast,
// n drawn): mean nK/N, variance n(K/N)(1-K/N)(N-n)/(N-1). The test fails when
// X is more than 4 standard deviations from the mean (a fair draw fails it
// with probability below 1e-4); a race won by speed would give X = n.
func TestWaitingRoomFairAgainstFastClients(t *testing.T) {
	const wrWindow = 10 * time.Second
	e := newEnv(t)
	p := e.start("all", nil)
	c := p.client()
	n := wrUsers()
	stock := max(n/10, 1)
	spec := roomSale(stock, 0, -time.Second, wrWindow)
	spec.EndsAt = spec.StartsAt.Add(time.Hour)
	if r := c.must(t, http.MethodPost, "/api/v1/sales", c.admin(), spec); r.Status != http.StatusCreated {
		t.Fatalf("create: %s", r)
	}
	users := userNames("wr-fair", n)
	fast := map[string]bool{}
	for i, u := range users {
		if i%3 == 0 {
			fast[u] = true
		}
	}
	start := time.Now()
	var mu sync.Mutex
	tickets := map[string]string{}
	ta := newTally()
	var wg sync.WaitGroup
	sem := make(chan struct{}, 256)
	for i, u := range users {
		tries, at := 1, start.Add(time.Duration(i)*(wrWindow-3*time.Second)/time.Duration(n))
		if fast[u] {
			tries, at = 3, start.Add(time.Duration(i)*time.Second/time.Duration(n))
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			time.Sleep(time.Until(at)) // the client's own arrival time, not a wait for an effect
			sem <- struct{}{}
			defer func() { <-sem }()
			var inner sync.WaitGroup
			for range tries {
				inner.Add(1)
				go func() {
					defer inner.Done()
					ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
					defer cancel()
					r, err := c.purchase(ctx, spec.ID, u, 1)
					ta.add(outcome(r, err), u)
					var a purchaseAnswer
					if err == nil && (r.Status == http.StatusAccepted || r.Status == http.StatusOK) && r.decode(&a) == nil {
						mu.Lock()
						if old, ok := tickets[u]; ok && old != a.TicketID {
							t.Errorf("%s got two tickets %s and %s", u, old, a.TicketID)
						}
						tickets[u] = a.TicketID
						mu.Unlock()
					}
				}()
			}
			inner.Wait()
		}()
	}
	wg.Wait()
	t.Logf("%d users (%d fast) entered in %s: %s", n, len(fast), time.Since(start).Round(time.Millisecond), ta)
	ta.only(t, "202", "200")
	if len(tickets) != n || time.Now().After(spec.StartsAt) {
		t.Fatalf("%d of %d users entered, the last at %s of a %s window", len(tickets), n, time.Since(start), wrWindow)
	}

	rv := c.awaitRoomState(t, spec.ID, "sold_out", wrWindow+60*time.Second)
	seed, _ := hex.DecodeString(*rv.WaitingRoom.DrawSeed)
	refs := make([]ticketRef, 0, n)
	for _, u := range users {
		refs = append(refs, ticketRef{User: u, TicketID: tickets[u]})
	}
	final := c.awaitFinal(t, refs, 120*time.Second)
	order := drawOrder(seed, users)
	fastWinners := 0
	for i, u := range order {
		got := final[tickets[u]].Status
		want := map[bool]string{true: "pending_payment", false: "sold_out"}[i < stock]
		if got != want {
			t.Errorf("draw place %d (%s): %s, want %s", i+1, u, got, want)
		}
		if i < stock && fast[u] {
			fastWinners++
		}
	}
	N, K, m := float64(n), float64(len(fast)), float64(stock)
	mean := m * K / N
	sd := math.Sqrt(m * (K / N) * (1 - K/N) * (N - m) / (N - 1))
	t.Logf("fast clients: %.1f%% of entries, %d of %d units (%.1f%%); expected %.1f ± %.1f (sd)",
		100*K/N, fastWinners, stock, 100*float64(fastWinners)/m, mean, sd)
	if math.Abs(float64(fastWinners)-mean) > 4*sd {
		t.Errorf("fast clients won %d units, more than 4 sd from the %.1f a speed-blind draw gives", fastWinners, mean)
	}

	// Every winner counts its own rank from /draw/scores, page by page.
	var scores []string
	after := ""
	for {
		path := pathDraw(spec.ID) + "/scores"
		if after != "" {
			path += "?after=" + after
		}
		r := c.must(t, http.MethodGet, path, nil, nil)
		var page struct {
			Scores []string `json:"scores"`
		}
		if r.Status != http.StatusOK || r.decode(&page) != nil {
			t.Fatalf("scores: %s", r)
		}
		scores = append(scores, page.Scores...)
		if len(page.Scores) < 1000 {
			break
		}
		after = page.Scores[len(page.Scores)-1]
	}
	if len(scores) != n {
		t.Fatalf("%d scores, want %d", len(scores), n)
	}
	for range 2 { // counted once the draw settled, then remembered
		var d drawView
		if r := c.must(t, http.MethodGet, pathDraw(spec.ID), nil, nil); r.decode(&d) != nil || d.Entries != n {
			t.Errorf("GET draw: %s, want %d entries", r, n)
		}
	}
	for i, u := range order[:stock] {
		mine := hmacHex(seed, u)
		if rank := sort.SearchStrings(scores, mine); rank != i || scores[rank] != mine {
			t.Errorf("winner %s counts %d scores below its own, want %d", u, rank, i)
		}
	}
}

// TestWaitingRoomFaultsKeepTheDrawOrder: guarantee 6 through the faults of
// section 4 during a line: one of two ingresses is killed while users enter
// (they retry on the other); the releaser's holder (the only worker) is
// killed at the opening, Redis loses the deployment's keys, a new worker
// takes the lease over and is killed in turn as soon as units are held, and
// a third takes over. Then three winners cancel their orders. In the end the tickets with orders are exactly the
// first 33 of the draw (30 units, 3 given back), the next 2 keep waiting
// (a waitlist of 5, 3 of whom were admitted meanwhile), every other ticket
// ended sold_out, and no user has two tickets.
func TestWaitingRoomFaultsKeepTheDrawOrder(t *testing.T) {
	const users, stock, waitlist = 300, 30, 5
	e := newEnv(t)
	ingA, ingB := e.start("ingress", nil), e.start("ingress", nil)
	worker := e.startProc("worker", nil, false)
	a, b := ingA.client(), ingB.client()
	spec := roomSale(stock, waitlist, -time.Second, 15*time.Second)
	if r := b.must(t, http.MethodPost, "/api/v1/sales", b.admin(), spec); r.Status != http.StatusCreated {
		t.Fatalf("create: %s", r)
	}
	names := userNames("wr-fault", users)
	tickets := enterAll(t, spec.ID, names, func(i int) (*client, *client) {
		if i == users/2 {
			ingA.Kill() // requests in flight on it fail and are retried on b
		}
		if i%2 == 1 || i >= users/2 {
			return b, b
		}
		return a, b
	})
	if time.Now().After(spec.StartsAt) {
		t.Fatal("the entries took past starts_at: the box is too slow for this test's timing")
	}
	rv := b.awaitRoomState(t, spec.ID, "open", 20*time.Second)
	seed, _ := hex.DecodeString(*rv.WaitingRoom.DrawSeed)
	order := drawOrder(seed, names)

	// The holder dies at the opening, before its first release (2 s after
	// starts_at), Redis loses the deployment's keys, and a new worker takes
	// the lease over once it runs out; that one dies too as soon as units
	// are held, and a third takes over.
	worker.Kill()
	e.flushRedis(t)
	second := e.startProc("worker", nil, false)
	var at saleView
	if !poll(60*time.Second, 5*time.Millisecond, func() bool {
		at = b.sale(t, spec.ID)
		return at.Stock.Held > 0
	}) {
		t.Fatal("nothing held within 60 s of the opening")
	}
	second.Kill()
	t.Logf("the second holder killed at stock %+v", at.Stock)
	e.startProc("worker", nil, false)

	for _, u := range order[stock+waitlist:] {
		b.awaitTicketStatus(t, u, tickets[u], "sold_out", 90*time.Second)
	}
	b.cancelOrders(t, order[:3], tickets)
	for _, u := range order[stock : stock+3] {
		b.awaitTicketStatus(t, u, tickets[u], "pending_payment", 30*time.Second)
	}
	b.checkLine(t, order, tickets, 3, stock+3, waitlist-3)
	if v := b.sale(t, spec.ID); v.Stock.Held != stock {
		t.Errorf("stock %+v, want all %d held", v.Stock, stock)
	}
}

// enterAll has every user enter the sale's line, 16 at a time, in the order
// of names: via returns, for the i-th, the client to send to and the one to
// retry on when that one fails (a transport error or a 5xx). It returns each
// user's ticket and fails the test unless every answer is 202 (or 200) waiting.
func enterAll(t *testing.T, saleID string, names []string, via func(i int) (first, retry *client)) map[string]string {
	t.Helper()
	tickets := map[string]string{}
	var mu sync.Mutex
	work := make(chan int)
	var wg sync.WaitGroup
	for range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range work {
				u := names[i]
				c, retry := via(i)
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				r, err := c.purchase(ctx, saleID, u, 1)
				cancel()
				if err != nil || r.Status >= 500 {
					r, err = retry.purchase(context.Background(), saleID, u, 1)
				}
				var ans purchaseAnswer
				if err != nil || r.Status != http.StatusAccepted && r.Status != http.StatusOK || r.decode(&ans) != nil || ans.Status != "waiting" {
					t.Errorf("enter %s: %v %s", u, err, r)
					continue
				}
				mu.Lock()
				tickets[u] = ans.TicketID
				mu.Unlock()
			}
		}()
	}
	for i := range names {
		work <- i
	}
	close(work)
	wg.Wait()
	if t.Failed() {
		t.FailNow()
	}
	return tickets
}

// TestWaitingRoomBrokerOutage: the broker is away for 5 s from the opening
// (a proxy cut under ingress and worker), across the releaser's first
// publishes. Entering never needed it; the releaser's publishes fail and are
// made again once it is back; in the end the first 20 of the draw have
// orders, the next 3 wait, the rest ended sold_out.
func TestWaitingRoomBrokerOutage(t *testing.T) {
	const users, stock, waitlist = 120, 20, 3
	e := newEnv(t)
	px, viaProxy := amqpProxy(t)
	vars := map[string]string{"FLASHSALE_AMQP_URL": viaProxy}
	ing := e.start("ingress", vars)
	e.startProc("worker", vars, false)
	c := ing.client()
	spec := roomSale(stock, waitlist, -time.Second, 10*time.Second)
	if r := c.must(t, http.MethodPost, "/api/v1/sales", c.admin(), spec); r.Status != http.StatusCreated {
		t.Fatalf("create: %s", r)
	}
	names := userNames("wr-broker", users)
	tickets := enterAll(t, spec.ID, names, func(int) (*client, *client) { return c, c })
	if time.Now().After(spec.StartsAt) {
		t.Fatal("the entries took past starts_at: the box is too slow for this test's timing")
	}
	rv := c.awaitRoomState(t, spec.ID, "open", 20*time.Second)
	px.Down()
	back := time.Now().Add(5 * time.Second)
	seed, _ := hex.DecodeString(*rv.WaitingRoom.DrawSeed)
	order := drawOrder(seed, names)
	if v := c.roomView(t, spec.ID); v.Stock.Held != 0 {
		t.Errorf("units held while the broker is away: %+v", v.Stock)
	}
	time.Sleep(time.Until(back)) // the outage lasts 5 s
	px.Up()
	for _, u := range order[stock+waitlist:] {
		c.awaitTicketStatus(t, u, tickets[u], "sold_out", 90*time.Second)
	}
	c.checkLine(t, order, tickets, 0, stock, waitlist)
}

// TestWaitingRoomRedisOlderSnapshot: Redis (a private one) is snapshotted
// before the opening, the line is admitted, two winners cancel their orders
// and Redis comes back at once from the snapshot (no holds, the whole stock
// available, the given-back units' release lost or not). The releaser must
// neither admit past the units MySQL has free nor skip anyone: the draw's
// places 3 to 22 have orders, 23 waits (waitlist 3, two admitted), the rest
// ended sold_out.
func TestWaitingRoomRedisOlderSnapshot(t *testing.T) {
	const users, stock, waitlist = 80, 20, 3
	e := newEnv(t)
	rs := startPrivateRedis(t, "redis")
	e.setVar("FLASHSALE_REDIS_ADDRS", rs.Addr)
	p := e.start("all", nil)
	c := p.client()
	spec := roomSale(stock, waitlist, -time.Second, 10*time.Second)
	if r := c.must(t, http.MethodPost, "/api/v1/sales", c.admin(), spec); r.Status != http.StatusCreated {
		t.Fatalf("create: %s", r)
	}
	names := userNames("wr-snap", users)
	tickets := enterAll(t, spec.ID, names, func(int) (*client, *client) { return c, c })
	if time.Now().After(spec.StartsAt) {
		t.Fatal("the entries took past starts_at: the box is too slow for this test's timing")
	}
	c.sale(t, spec.ID) // the sale's stock loaded in Redis
	rs.Do("SAVE")
	rv := c.awaitRoomState(t, spec.ID, "open", 20*time.Second)
	seed, _ := hex.DecodeString(*rv.WaitingRoom.DrawSeed)
	order := drawOrder(seed, names)
	for _, u := range order[stock+waitlist:] {
		c.awaitTicketStatus(t, u, tickets[u], "sold_out", 60*time.Second)
	}
	c.cancelOrders(t, order[:2], tickets)
	rs.ShutdownNoSave()
	rs.Start()
	t.Log("Redis back from the snapshot taken before the opening")
	for _, u := range order[stock : stock+2] {
		c.awaitTicketStatus(t, u, tickets[u], "pending_payment", 60*time.Second)
	}
	c.checkLine(t, order, tickets, 2, stock+2, waitlist-2)
	if v := c.sale(t, spec.ID); v.Stock.Held != stock || v.Stock.Available != 0 {
		t.Errorf("stock %+v, want all %d held", v.Stock, stock)
	}
}

// cancelOrders has each user cancel the order their ticket made (awaited
// pending_payment first).
func (c *client) cancelOrders(t *testing.T, users []string, tickets map[string]string) {
	t.Helper()
	for _, u := range users {
		v := c.awaitTicketStatus(t, u, tickets[u], "pending_payment", 30*time.Second)
		if r := c.must(t, http.MethodPost, pathOrder(v.OrderID)+"/cancel", user(u), nil); r.Status != http.StatusOK {
			t.Fatalf("cancel %s's order: %s", u, r)
		}
	}
}

// checkLine asserts each ticket's status by its place in the draw's order:
// the first cancelled places cancelled, then pending_payment up to place
// admitted, then waiting ones waiting, and sold_out for every one after.
func (c *client) checkLine(t *testing.T, order []string, tickets map[string]string, cancelled, admitted, waiting int) {
	t.Helper()
	for i, u := range order {
		want := "sold_out"
		switch {
		case i < cancelled:
			want = "cancelled"
		case i < admitted:
			want = "pending_payment"
		case i < admitted+waiting:
			want = "waiting"
		}
		if v := c.roomTicket(t, u, tickets[u]); v.Status != want {
			t.Errorf("draw place %d (%s): %s, want %s", i+1, u, v.Status, want)
		}
	}
}
