package bench

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"text/tabwriter"
	"time"
)

// --arrival waiting-room: the sale is created with a waiting room, the users
// enter its line spread over the room's window (roomArrival), follow their
// tickets through "waiting" like "queued" ones, and once the run is over the
// bench checks guarantee 6 from outside (checkDraw, judgeDraw): the seed
// revealed at the opening hashes to the commitment published at creation,
// the draw's scores are the HMACs of the bench's own entrants, and the
// tickets that got units are the first ones of the draw.

// roomEndMargin is how long before the load's budget runs out a waiting-room
// sale ends: its waitlist then ends sold_out within the run.
const roomEndMargin = 10 * time.Second

// checkDrawName is the check's name in the reports.
const checkDrawName = "waiting room draw honoured"

// drawPage is how many scores one GET /draw/scores asks for (the contract's
// maximum).
const drawPage = 1000

// roomArrival is when the n-th of users enters the line, from the waiting
// room's opening: spread evenly over the window but its last part (half of
// it, at most 2 s), so that no entry races the draw at starts_at (an entry
// still committing then is refused 503 and joins behind the drawn).
func roomArrival(window time.Duration, n, users int) time.Duration {
	span := window - min(window/2, 2*time.Second)
	if users <= 0 {
		return 0
	}
	return time.Duration(int64(span) * int64(n) / int64(users))
}

// DrawReport is the check of a waiting room's draw (JSON `draw`).
type DrawReport struct {
	Commitment string `json:"commitment"` // published at creation
	Seed       string `json:"seed"`       // revealed at the opening
	// CommitmentOK tells that SHA-256(seed) is the commitment.
	CommitmentOK bool `json:"commitment_ok"`
	// Entries is /draw's count; Scores the scores paged through.
	Entries int `json:"entries"`
	Scores  int `json:"scores"`
	// Drawn counts the bench's tickets whose score is in the draw; Late
	// those that are not (they joined behind it); Unknown the scores no
	// ticket of the bench accounts for.
	Drawn   int `json:"drawn"`
	Late    int `json:"late"`
	Unknown int `json:"unknown"`
	// Winners counts the tickets that got units (an order was made), among
	// them LateWinners not in the draw.
	Winners     int `json:"winners"`
	LateWinners int `json:"late_winners"`
	// Skipped are drawn tickets inside the draw's prefix of the winners'
	// size that got no units, Jumped the winners outside it: "rank N
	// ticket T" (the first few of each), with their counts.
	SkippedCount int      `json:"skipped_count"`
	JumpedCount  int      `json:"jumped_count"`
	Skipped      []string `json:"skipped,omitempty"`
	Jumped       []string `json:"jumped,omitempty"`
	Pass         bool     `json:"pass"`
	Detail       string   `json:"detail"`
}

// drawEntrant is one ticket of the bench in a waiting-room sale.
type drawEntrant struct {
	User   string
	Ticket string
	Won    bool // an order was made (pending_payment, paid, expired, cancelled)
}

// drawScore is HMAC-SHA256(key = seed, message = user id), lower-case hex.
func drawScore(seed []byte, user string) string {
	m := hmac.New(sha256.New, seed)
	m.Write([]byte(user))
	return hex.EncodeToString(m.Sum(nil))
}

// maxListed is how many skipped or jumped tickets a report names.
const maxListed = 5

// judgeDraw checks a draw from outside: the seed against the commitment, the
// scores against the entrants' recomputed HMACs, and the winners against the
// draw's order. The winners among the drawn must be exactly the draw's first
// ones (lowest score first) of the same count; the late entrants queue behind
// the draw, so one of them may win only once every drawn ticket won or lost
// for good (a drawn ticket past the waitlist: reach is stock + waitlist, the
// most drawn tickets that can hold or wait for a unit).
func judgeDraw(commitment, seedHex string, entries int, scores []string, entrants []drawEntrant, reach int) DrawReport {
	d := DrawReport{Commitment: commitment, Seed: seedHex, Entries: entries, Scores: len(scores)}
	var problems []string
	seed, err := hex.DecodeString(seedHex)
	if err == nil && len(seed) == 32 {
		sum := sha256.Sum256(seed)
		d.CommitmentOK = strings.EqualFold(hex.EncodeToString(sum[:]), commitment)
	}
	if !d.CommitmentOK {
		problems = append(problems, fmt.Sprintf("SHA-256(seed %q) is not the commitment %q published at creation", seedHex, commitment))
	}
	if entries != len(scores) {
		problems = append(problems, fmt.Sprintf("/draw counts %d entries, /draw/scores lists %d", entries, len(scores)))
	}
	inDraw := make(map[string]bool, len(scores))
	for _, s := range scores {
		inDraw[strings.ToLower(s)] = true
	}
	type drawn struct {
		score string
		e     drawEntrant
	}
	var line []drawn
	for _, e := range entrants {
		if e.Won {
			d.Winners++
		}
		s := drawScore(seed, e.User)
		if !inDraw[s] {
			d.Late++
			if e.Won {
				d.LateWinners++
			}
			continue
		}
		delete(inDraw, s)
		line = append(line, drawn{s, e})
	}
	d.Drawn, d.Unknown = len(line), len(inDraw)
	if d.Unknown > 0 {
		problems = append(problems, fmt.Sprintf("%d scores of the draw are no bench ticket's HMAC-SHA256(seed, user id)", d.Unknown))
	}
	slices.SortFunc(line, func(a, b drawn) int { return strings.Compare(a.score, b.score) })
	won := 0
	for _, l := range line {
		if l.e.Won {
			won++
		}
	}
	for rank, l := range line {
		switch {
		case rank < won && !l.e.Won:
			d.SkippedCount++
			if len(d.Skipped) < maxListed {
				d.Skipped = append(d.Skipped, fmt.Sprintf("rank %d ticket %s", rank+1, l.e.Ticket))
			}
		case rank >= won && l.e.Won:
			d.JumpedCount++
			if len(d.Jumped) < maxListed {
				d.Jumped = append(d.Jumped, fmt.Sprintf("rank %d ticket %s", rank+1, l.e.Ticket))
			}
		}
	}
	if d.SkippedCount > 0 {
		problems = append(problems, fmt.Sprintf("the winners are not the draw's first %d: %d of those got no unit (%s) and %d after them did (%s)",
			won, d.SkippedCount, strings.Join(d.Skipped, ", "), d.JumpedCount, strings.Join(d.Jumped, ", ")))
	}
	if d.LateWinners > 0 && won < min(len(line), reach) {
		problems = append(problems, fmt.Sprintf("%d tickets that joined behind the draw got units while only the draw's first %d of %d (reach %d) did", d.LateWinners, won, len(line), reach))
	}
	if len(line) == 0 && len(entrants) > 0 {
		problems = append(problems, "none of the bench's tickets is in the draw")
	}
	d.Pass = len(problems) == 0
	if d.Pass {
		d.Detail = fmt.Sprintf("SHA-256(seed) = commitment; %d drawn (all the bench's), %d behind; the %d winners among them are the draw's first %d",
			d.Drawn, d.Late, won, won)
		if d.LateWinners > 0 {
			d.Detail += fmt.Sprintf(", then %d behind the draw", d.LateWinners)
		}
	} else {
		d.Detail = strings.Join(problems, "; ")
	}
	return d
}

// checkDraw reads the revealed draw and its scores once the run is over and
// judges them against the bench's tickets (r.draw).
func (r *run) checkDraw(ctx context.Context) {
	fail := func(format string, a ...any) {
		r.draw = &DrawReport{Commitment: r.commitment, Detail: fmt.Sprintf(format, a...)}
	}
	dv, resp, err := r.ctl.getDraw(ctx, r.saleID)
	if err != nil || resp.Status != http.StatusOK {
		fail("GET /api/v1/sales/%s/draw: %s", r.saleID, answerOrError(resp, err))
		return
	}
	var scores []string
	for after := ""; ; {
		page, resp, err := r.ctl.getDrawScores(ctx, r.saleID, after, drawPage)
		if err != nil || resp.Status != http.StatusOK {
			fail("GET /api/v1/sales/%s/draw/scores after %q: %s", r.saleID, after, answerOrError(resp, err))
			return
		}
		scores = append(scores, page...)
		if len(page) < drawPage {
			break
		}
		after = page[len(page)-1]
	}
	var entrants []drawEntrant
	for _, t := range r.tickets() {
		entrants = append(entrants, drawEntrant{User: t.userID, Ticket: t.id, Won: hasOrder(t.status)})
	}
	d := judgeDraw(r.commitment, dv.Seed, dv.Entries, scores, entrants, r.cfg.Stock+r.cfg.Waitlist)
	r.draw = &d
}

// answerOrError names what a request got: its error, or its status and code.
func answerOrError(resp *apiResponse, err error) string {
	if err != nil {
		return err.Error()
	}
	if resp == nil {
		return "no answer"
	}
	return resp.key()
}

// drawCheck is the report's check of the draw.
func drawCheck(d *DrawReport) Check {
	if d == nil {
		return Check{Name: checkDrawName, Detail: "the draw was not read (the run ended before)"}
	}
	return Check{Name: checkDrawName, Pass: d.Pass, Detail: d.Detail}
}

// drawLines are the "Waiting room draw" section's rows, label and value,
// for the text and HTML reports (none without a draw).
func drawLines(d *DrawReport) [][2]string {
	if d == nil {
		return nil
	}
	return [][2]string{
		{"commitment", fmt.Sprintf("%s (SHA-256(seed) matches: %v)", d.Commitment, d.CommitmentOK)},
		{"seed", d.Seed},
		{"entries (draw / scores read)", fmt.Sprintf("%d / %d", d.Entries, d.Scores)},
		{"bench tickets drawn / behind / unknown scores", fmt.Sprintf("%d / %d / %d", d.Drawn, d.Late, d.Unknown)},
		{"winners (of them behind the draw)", fmt.Sprintf("%d (%d)", d.Winners, d.LateWinners)},
		{"skipped / jumped the draw's order", fmt.Sprintf("%d / %d", d.SkippedCount, d.JumpedCount)},
	}
}

// writeDrawText prints the "Waiting room draw" section (nothing without one).
func writeDrawText(w io.Writer, d *DrawReport) {
	lines := drawLines(d)
	if lines == nil {
		return
	}
	fmt.Fprintln(w, "\nWaiting room draw")
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	for _, l := range lines {
		fmt.Fprintf(tw, "  %s\t%s\n", l[0], l[1])
	}
	_ = tw.Flush()
}
