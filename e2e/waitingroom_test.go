package e2e

import (
	"crypto/sha256"
	"encoding/hex"
	"net/http"
	"strings"
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
