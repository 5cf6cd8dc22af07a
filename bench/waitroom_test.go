package bench

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

// A vector computed apart from Go:
// printf bench-u1 | openssl dgst -sha256 -mac HMAC -macopt hexkey:00…01
func TestDrawScoreVector(t *testing.T) {
	seed := make([]byte, 32)
	seed[31] = 1
	if got, want := drawScore(seed, "bench-u1"), "b0155784eb3b7e396b8575405106f783d8beb65ba6134d00f3bc3625e508d294"; got != want {
		t.Fatalf("drawScore = %s, want %s", got, want)
	}
}

// drawFixture is a revealed draw of n entrants, the entrants in the draw's
// order (lowest score first).
type drawFixture struct {
	seed, commitment string
	scores           []string
	ordered          []drawEntrant
}

func newDrawFixture(n int) drawFixture {
	seed := make([]byte, 32)
	for i := range seed {
		seed[i] = byte(7*i + 3)
	}
	sum := sha256.Sum256(seed)
	f := drawFixture{seed: hex.EncodeToString(seed), commitment: hex.EncodeToString(sum[:])}
	byScore := map[string]drawEntrant{}
	for i := range n {
		u := fmt.Sprintf("bench-r1-%d", i)
		s := drawScore(seed, u)
		f.scores = append(f.scores, s)
		byScore[s] = drawEntrant{User: u, Ticket: "t" + u}
	}
	slices.Sort(f.scores)
	for _, s := range f.scores {
		f.ordered = append(f.ordered, byScore[s])
	}
	return f
}

// winners marks the entrants at the given ranks (from 0) as winners and
// returns them in an order other than the draw's.
func (f drawFixture) winners(ranks ...int) []drawEntrant {
	out := slices.Clone(f.ordered)
	for _, r := range ranks {
		out[r].Won = true
	}
	slices.Reverse(out)
	return out
}

func TestJudgeDrawPrefixPasses(t *testing.T) {
	f := newDrawFixture(30)
	// 5 units, then 2 more that came back (expiry, cancel) to the next two.
	d := judgeDraw(f.commitment, f.seed, 30, f.scores, f.winners(0, 1, 2, 3, 4, 5, 6), 8)
	if !d.Pass || !d.CommitmentOK || d.Drawn != 30 || d.Winners != 7 || d.SkippedCount+d.JumpedCount != 0 {
		t.Fatalf("a prefix of the draw: %+v", d)
	}
	if c := drawCheck(&d); !c.Pass || c.Name != checkDrawName {
		t.Fatalf("check: %+v", c)
	}
}

func TestJudgeDrawOutOfOrderFails(t *testing.T) {
	f := newDrawFixture(30)
	// Rank 4 (the fifth) got nothing, rank 12 got its unit.
	d := judgeDraw(f.commitment, f.seed, 30, f.scores, f.winners(0, 1, 2, 3, 12), 8)
	if d.Pass || d.SkippedCount != 1 || d.JumpedCount != 1 {
		t.Fatalf("out of order: %+v", d)
	}
	for _, want := range []string{"rank 5 ticket " + f.ordered[4].Ticket, "rank 13 ticket " + f.ordered[12].Ticket} {
		if !strings.Contains(d.Detail, want) {
			t.Errorf("detail %q does not name %q", d.Detail, want)
		}
	}
}

func TestJudgeDrawCommitmentAndScores(t *testing.T) {
	f := newDrawFixture(10)
	if d := judgeDraw(strings.Repeat("0", 64), f.seed, 10, f.scores, f.winners(0), 5); d.Pass || d.CommitmentOK {
		t.Errorf("wrong commitment passed: %+v", d)
	}
	if d := judgeDraw(f.commitment, "zz", 10, f.scores, f.winners(0), 5); d.Pass {
		t.Errorf("a seed that is not hex passed: %+v", d)
	}
	extra := append(slices.Clone(f.scores), strings.Repeat("f", 64))
	if d := judgeDraw(f.commitment, f.seed, 11, extra, f.winners(0), 5); d.Pass || d.Unknown != 1 {
		t.Errorf("a score of nobody passed: %+v", d)
	}
	if d := judgeDraw(f.commitment, f.seed, 12, f.scores, f.winners(0), 5); d.Pass {
		t.Errorf("/draw's count disagreeing with the scores passed: %+v", d)
	}
}

func TestJudgeDrawLateEntrants(t *testing.T) {
	f := newDrawFixture(10)
	late := drawEntrant{User: "bench-r1-late", Ticket: "tlate", Won: true}
	// Drawn ranks 0..2 won, rank 3 (inside reach 5) lost, a late one won.
	if d := judgeDraw(f.commitment, f.seed, 10, f.scores, append(f.winners(0, 1, 2), late), 5); d.Pass || d.LateWinners != 1 {
		t.Errorf("a late entrant won before the drawn inside the reach: %+v", d)
	}
	// Every drawn ticket inside the reach got its unit: a late one may win.
	if d := judgeDraw(f.commitment, f.seed, 10, f.scores, append(f.winners(0, 1, 2, 3, 4), late), 5); !d.Pass || d.Late != 1 {
		t.Errorf("a late entrant after the reach: %+v", d)
	}
}

func TestRoomArrivalSpreadsBeforeTheOpening(t *testing.T) {
	w := 7 * time.Second
	if a := roomArrival(w, 0, 1000); a != 0 {
		t.Errorf("first arrival %v", a)
	}
	last := roomArrival(w, 999, 1000)
	if last < 4*time.Second || last > 5*time.Second {
		t.Errorf("last arrival %v: want spread over the window but its last 2s", last)
	}
	if a := roomArrival(2*time.Second, 999, 1000); a >= time.Second {
		t.Errorf("short window: last arrival %v, want before its second half", a)
	}
}

func TestWriteDrawText(t *testing.T) {
	var b strings.Builder
	writeDrawText(&b, nil)
	if b.Len() != 0 {
		t.Errorf("no draw printed %q", b.String())
	}
	f := newDrawFixture(3)
	d := judgeDraw(f.commitment, f.seed, 3, f.scores, f.winners(0), 1)
	writeDrawText(&b, &d)
	if !strings.Contains(b.String(), "Waiting room draw") || !strings.Contains(b.String(), f.seed) {
		t.Errorf("draw section: %q", b.String())
	}
	writeDrawText(io.Discard, &d)
}

// enterLocked is a purchase of a sale with a waiting room from its opening
// on: the user's live ticket (200), the line's bound once drawn, or a new
// waiting ticket (202).
func (f *fakeServer) enterLocked(w http.ResponseWriter, s *fakeSale, user string, qty int, now time.Time) {
	for _, tk := range f.tickets {
		if st := tk.view()["status"]; tk.sale == s.id && tk.user == user && (st == statusWaiting || st == statusQueued || st == statusPendingPayment) {
			writeJSON(w, http.StatusOK, map[string]any{"ticket_id": tk.id, "status": st})
			return
		}
	}
	if avail, _, _ := s.stockLocked(); s.drawn && len(s.line) >= avail+s.waitlist {
		writeErr(w, http.StatusConflict, "sold_out")
		return
	}
	f.seq++
	tk := &fakeTicket{id: fakeID(f.seq), sale: s.id, user: user, qty: qty, status: statusWaiting, created: now}
	f.tickets[tk.id] = tk
	s.line = append(s.line, tk)
	writeJSON(w, http.StatusAccepted, map[string]any{"ticket_id": tk.id, "status": statusWaiting})
}

// releaseLocked draws the line at starts_at (from its back with misdraw),
// then releases its first tickets to the queue while units are free, ends
// those past the waitlist sold_out once none is, and the rest at ends_at.
func (f *fakeServer) releaseLocked(s *fakeSale, now time.Time) {
	if now.Before(s.startsAt) {
		return
	}
	if !s.drawn {
		score := func(tk *fakeTicket) string { return drawScore(s.seed, tk.user) }
		slices.SortFunc(s.line, func(a, b *fakeTicket) int { return strings.Compare(score(a), score(b)) })
		for _, tk := range s.line {
			s.scores = append(s.scores, score(tk))
		}
		if f.misdraw {
			slices.Reverse(s.line)
		}
		s.drawn = true
	}
	if !now.Before(s.endsAt) {
		for _, tk := range s.line {
			tk.status = statusSoldOut
		}
		s.line = nil
		return
	}
	avail, _, _ := s.stockLocked()
	for _, tk := range s.queue {
		avail -= tk.qty
	}
	for len(s.line) > 0 && s.line[0].qty <= avail {
		tk := s.line[0]
		s.line = s.line[1:]
		tk.status, tk.created = statusQueued, now
		s.queue = append(s.queue, tk)
		avail -= tk.qty
	}
	if avail == 0 && len(s.line) > s.waitlist {
		for _, tk := range s.line[s.waitlist:] {
			tk.status = statusSoldOut
		}
		s.line = s.line[:s.waitlist]
	}
}

// drawSaleLocked is the sale of a draw request, or it answers the error.
func (f *fakeServer) drawSaleLocked(w http.ResponseWriter, r *http.Request) *fakeSale {
	now := time.Now()
	f.advanceLocked(now)
	s := f.sales[r.PathValue("id")]
	switch {
	case s == nil || !s.hasRoom:
		writeErr(w, http.StatusNotFound, "not_found")
	case now.Before(s.startsAt):
		writeErr(w, http.StatusConflict, "not_started")
	default:
		return s
	}
	return nil
}

func (f *fakeServer) getDraw(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if s := f.drawSaleLocked(w, r); s != nil {
		sum := sha256.Sum256(s.seed)
		writeJSON(w, http.StatusOK, map[string]any{"commitment": hex.EncodeToString(sum[:]), "seed": hex.EncodeToString(s.seed), "entries": len(s.scores)})
	}
}

func (f *fakeServer) getDrawScores(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	defer f.mu.Unlock()
	s := f.drawSaleLocked(w, r)
	if s == nil {
		return
	}
	limit := 1000
	if l := r.URL.Query().Get("limit"); l != "" {
		var err error
		if limit, err = strconv.Atoi(l); err != nil || limit < 1 || limit > 1000 {
			writeErr(w, http.StatusBadRequest, "invalid")
			return
		}
	}
	after := r.URL.Query().Get("after")
	i, _ := slices.BinarySearch(s.scores, after)
	for i < len(s.scores) && s.scores[i] <= after {
		i++
	}
	writeJSON(w, http.StatusOK, map[string]any{"scores": s.scores[i:min(i+limit, len(s.scores))]})
}

func TestMainWaitingRoomAgainstFake(t *testing.T) {
	for _, misdraw := range []bool{false, true} {
		t.Run(fmt.Sprintf("misdraw=%v", misdraw), func(t *testing.T) {
			f, srv := newFakeServer(t)
			f.misdraw = misdraw
			dir := t.TempDir()
			jsonPath, htmlPath := filepath.Join(dir, "r.json"), filepath.Join(dir, "r.html")
			code, out, errOut := runMainForTest(t, benchArgs(srv.URL,
				"--arrival", "waiting-room", "--room-window", "600ms", "--users", "40", "--stock", "8", "--waitlist", "4",
				"--pay-ratio", "0.5", "--payment-window", "2", "--duration", "40s", "--json", jsonPath, "--html", htmlPath))
			var rep Report
			readReport(t, jsonPath, &rep)
			var check *Check
			for i := range rep.Checks {
				if rep.Checks[i].Name == checkDrawName {
					check = &rep.Checks[i]
				}
			}
			if check == nil || rep.Draw == nil {
				t.Fatalf("no draw check or section (exit %d)\nstdout:\n%s\nstderr:\n%s", code, out, errOut)
			}
			d := rep.Draw
			if misdraw {
				if code == 0 || check.Pass || rep.Pass || d.SkippedCount == 0 || !strings.Contains(out, "FAIL  "+checkDrawName) {
					t.Fatalf("a draw admitted from its back passed (exit %d): %+v\n%s", code, d, out)
				}
				return
			}
			if code != 0 || !check.Pass || !rep.Pass {
				t.Fatalf("exit %d, draw %+v\nstdout:\n%s\nstderr:\n%s", code, d, out, errOut)
			}
			// 8 units, 4 of them left to expire go to the waitlist of 4. The
			// fake turns 6 users' first attempt away with a 429 and Retry-After:
			// 1 s; they come back after the draw (the line is open 600 ms) and
			// are refused at the line's bound, or (a slow box: after the first
			// expiry) join behind the draw.
			if !d.CommitmentOK || d.Drawn != 34 || d.Entries != 34 || d.Winners-d.LateWinners != 12 {
				t.Errorf("draw %+v: want 34 drawn, 12 winners among them (8 units + a waitlist of 4 after expiries)", d)
			}
			if want := int64(22 + d.Late - d.LateWinners); rep.Tickets[statusSoldOut] != want || rep.Config.Waitlist != 4 {
				t.Errorf("tickets %v (waitlist %d): want %d sold_out", rep.Tickets, rep.Config.Waitlist, want)
			}
			html, err := os.ReadFile(htmlPath)
			if err != nil || !strings.Contains(string(html), "Waiting room draw") {
				t.Errorf("HTML report lacks the draw section (%v)", err)
			}
			if !strings.Contains(out, "Waiting room draw") || !strings.Contains(out, "PASS  "+checkDrawName) {
				t.Errorf("summary lacks the draw:\n%s", out)
			}
		})
	}
}

// --arrival early: the crowd arrives as in a waiting room's window, without
// the room: each user presses buy before the opening (409 not_started) and
// again about once a second, not every 40 ms, until the sale opens; then
// the sale runs as a burst.
func TestMainEarlyArrivalAgainstFake(t *testing.T) {
	_, srv := newFakeServer(t)
	jsonPath := filepath.Join(t.TempDir(), "r.json")
	code, out, errOut := runMainForTest(t, benchArgs(srv.URL,
		"--arrival", "early", "--room-window", "3s", "--users", "20", "--stock", "8",
		"--pay-ratio", "1", "--duration", "20s", "--json", jsonPath))
	var rep Report
	readReport(t, jsonPath, &rep)
	if code != 0 || !rep.Pass {
		t.Fatalf("exit %d\nstdout:\n%s\nstderr:\n%s", code, out, errOut)
	}
	// Users arrive over the first 1.5 s of the 3 s window: each presses 2 or
	// 3 times before the opening (1.5 to 3 s early, a press a second).
	if n := rep.Counters["purchase_retry_not_started"]; n < 20 || n > 20*3 {
		t.Errorf("%d presses answered not_started, want 20..60 (each user about once a second from its arrival)", n)
	}
	if rep.Purchase.OrdersCreated != 8 || rep.Tickets[statusSoldOut] != 12 || rep.Draw != nil {
		t.Errorf("orders %d, tickets %v, draw %v: want 8 orders, 12 sold_out, no draw", rep.Purchase.OrdersCreated, rep.Tickets, rep.Draw)
	}
	if !strings.Contains(out, "arrival early (users arrive over the 3s before the opening") {
		t.Errorf("summary does not name the arrival:\n%s", out)
	}
}
