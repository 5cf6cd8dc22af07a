package bench

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"slices"
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
