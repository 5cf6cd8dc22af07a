package mysqlstore

import (
	"context"
	"errors"
	"fmt"
	"os"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/flashsale/flashsale"
	"github.com/flashsale/flashsale/internal/testenv"
)

// roomSale stores a sale with a waiting room that starts at startsAt.
func roomSale(t *testing.T, s *Store, id string, startsAt time.Time) *flashsale.Sale {
	t.Helper()
	sale := &flashsale.Sale{ID: id, SKU: "k", Name: "n", Stock: 10, PriceCents: 100, PerUserLimit: 1,
		StartsAt: startsAt, EndsAt: startsAt.Add(time.Hour), PaymentWindowSeconds: 60,
		Inventory: flashsale.InventoryRedis, CreatedAt: time.Now().UTC().Truncate(time.Microsecond),
		WaitingRoom: &flashsale.WaitingRoom{OpensAt: startsAt.Add(-time.Hour), Seed: make([]byte, flashsale.DrawSeedBytes)}}
	if err := s.CreateSale(context.Background(), sale); err != nil {
		t.Fatal(err)
	}
	got, err := s.GetSale(context.Background(), id)
	if err != nil || got.WaitingRoom == nil || len(got.WaitingRoom.Seed) != flashsale.DrawSeedBytes {
		t.Fatalf("the sale read back: %+v %v, want its waiting room and seed", got, err)
	}
	return sale
}

func lineTicket(sale *flashsale.Sale, user string) *flashsale.Ticket {
	t := &flashsale.Ticket{ID: flashsale.NewTicketID(user), UserID: user, Status: flashsale.TicketWaiting}
	t.SetLines([]flashsale.Line{{SaleID: sale.ID, Quantity: 1}})
	return t
}

// TestEnterLineBoundIsExact: 200 users race into a line bounded at 50
// waiting: exactly 50 enter, the others are sold_out, the count agrees, and a
// user entering twice gets their one waiting ticket back.
func TestEnterLineBoundIsExact(t *testing.T) {
	s := openTestStore(t)
	ctx := context.Background()
	sale := roomSale(t, s, "bound", time.Now().UTC().Add(-time.Minute).Truncate(time.Microsecond))
	var entered, soldOut sync.Map
	var wg sync.WaitGroup
	for i := range 200 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			u := fmt.Sprintf("u%03d", i)
			tk := lineTicket(sale, u)
			_, fresh, err := s.EnterLine(ctx, tk, sale.LineKey(u, tk.ID, time.Now()), time.Now(), 50)
			switch {
			case errors.Is(err, flashsale.ErrSoldOut):
				soldOut.Store(u, true)
			case err != nil:
				t.Error(err)
			case fresh:
				entered.Store(u, tk.ID)
			}
		}()
	}
	wg.Wait()
	n := 0
	entered.Range(func(any, any) bool { n++; return true })
	if count, err := s.LineEntries(ctx, sale.ID); n != 50 || count != 50 || err != nil {
		t.Fatalf("%d entered, count %d (%v); want exactly 50", n, count, err)
	}
	var u string
	var id any
	entered.Range(func(k, v any) bool { u, id = k.(string), v; return false })
	again := lineTicket(sale, u)
	got, fresh, err := s.EnterLine(ctx, again, sale.LineKey(u, again.ID, time.Now()), time.Now(), -1)
	if err != nil || fresh || got.ID != id {
		t.Errorf("%s entering again: %+v fresh=%v %v; want their ticket %s", u, got, fresh, err, id)
	}
}

// TestEnterLineOneTicketPerUser: a user's 50 entries race (so several share
// a batch of EnterLine's group commit): exactly one is fresh, every one
// answers that ticket, and the line counts one.
func TestEnterLineOneTicketPerUser(t *testing.T) {
	s := openTestStore(t)
	ctx := context.Background()
	sale := roomSale(t, s, "twice", time.Now().UTC().Add(time.Hour).Truncate(time.Microsecond))
	var mu sync.Mutex
	ids := map[string]int{}
	fresh := 0
	var wg sync.WaitGroup
	for range 50 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			tk := lineTicket(sale, "alice")
			got, f, err := s.EnterLine(ctx, tk, sale.LineKey("alice", tk.ID, time.Now()), time.Now(), -1)
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				t.Error(err)
				return
			}
			ids[got.ID]++
			if f {
				fresh++
			}
		}()
	}
	wg.Wait()
	n, err := s.LineEntries(ctx, sale.ID)
	if len(ids) != 1 || fresh != 1 || n != 1 || err != nil {
		t.Errorf("tickets %v, %d fresh, the line counts %d (%v); want one ticket, fresh once, counted once", ids, fresh, n, err)
	}
}

// wrEntries is FLASHSALE_WR_ENTRIES: the size of TestWaitingLineAtScale's
// line (the issue asks for 1,000,000); unset, the test is skipped.
func wrEntries(t *testing.T) int {
	n, err := strconv.Atoi(os.Getenv("FLASHSALE_WR_ENTRIES"))
	if err != nil || n <= 0 {
		t.Skip("FLASHSALE_WR_ENTRIES is not set: the line-at-scale measurement does not run")
	}
	return n
}

// TestWaitingLineAtScale measures a line of FLASHSALE_WR_ENTRIES entries on
// the meta database: loading it (bulk inserts of the rows the entries would
// write), the draw checked by paging through every score (ascending, one per
// entry), the releaser's reads (the next 500 waiting, the last one's
// position), ending all but a waitlist of 1,000 sold_out at once, and the
// table's size and this process's Go memory. Run it under the box lock:
//
//	FLASHSALE_WR_ENTRIES=1000000 flock /work/wt/heavy.lock go test -count=1 -v -run TestWaitingLineAtScale ./mysqlstore/
func TestWaitingLineAtScale(t *testing.T) {
	n := wrEntries(t)
	s := openTestStore(t)
	ctx := context.Background()
	start := time.Now().UTC().Truncate(time.Microsecond)
	sale := roomSale(t, s, "million", start)
	var m0 runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&m0)

	t0 := time.Now()
	const batch = 2000
	for i := 0; i < n; i += batch {
		var sb strings.Builder
		var args []any
		for j := i; j < min(i+batch, n); j++ {
			if j > i {
				sb.WriteString(",")
			}
			sb.WriteString("(?,?,?,1,?,'waiting',?,?)")
			u := fmt.Sprintf("user-%08d", j)
			args = append(args, flashsale.NewTicketID(u), sale.ID, u, sale.LineKey(u, "", start.Add(-time.Second)), start, u)
		}
		if _, err := s.meta.ExecContext(ctx, `INSERT INTO waiting_line (ticket_id, sale_id, user_id, quantity, line_key, status, entered_at, live_user) VALUES `+sb.String(), args...); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := s.meta.ExecContext(ctx, `UPDATE waiting_counts SET n = ? WHERE sale_id = ?`, n, sale.ID); err != nil {
		t.Fatal(err)
	}
	load := time.Since(t0)

	t0 = time.Now()
	drawn, err := s.DrawnEntries(ctx, sale)
	if err != nil || drawn != n {
		t.Fatalf("drawn entries %d (%v), want %d", drawn, err, n)
	}
	count := time.Since(t0)
	t0 = time.Now()
	seen, after := 0, ""
	for {
		page, err := s.DrawScores(ctx, sale, after, 1000)
		if err != nil {
			t.Fatal(err)
		}
		if !slices.IsSorted(page) || len(page) > 0 && page[0] <= after {
			t.Fatalf("a page of scores out of order after %q", after)
		}
		seen += len(page)
		if len(page) < 1000 {
			break
		}
		after = page[len(page)-1]
	}
	if seen != n {
		t.Fatalf("%d scores paged through, want %d", seen, n)
	}
	pages := time.Since(t0)

	t0 = time.Now()
	next, err := s.NextWaiting(ctx, sale.ID, 500)
	if err != nil || len(next) != 500 {
		t.Fatalf("next waiting: %d %v", len(next), err)
	}
	head := time.Since(t0)
	last, err := s.lineTickets(ctx, `SELECT `+lineColumns+` FROM waiting_line WHERE sale_id = ? ORDER BY line_key DESC LIMIT 1`, sale.ID)
	if err != nil {
		t.Fatal(err)
	}
	t0 = time.Now()
	pos, err := s.LinePosition(ctx, sale.ID, last[0].ID)
	if err != nil || pos != n {
		t.Fatalf("the last one's position %d (%v), want %d", pos, err, n)
	}
	position := time.Since(t0)

	t0 = time.Now()
	ended, err := s.EndWaiting(ctx, sale.ID, 1000, time.Now())
	if err != nil || ended != n-1000 {
		t.Fatalf("ended %d (%v), want %d", ended, err, n-1000)
	}
	end := time.Since(t0)
	if c, err := s.LineEntries(ctx, sale.ID); err != nil || c != 1000 {
		t.Errorf("entries after the end: %d (%v), want 1000", c, err)
	}
	var m1 runtime.MemStats
	runtime.ReadMemStats(&m1)
	var size int64
	if err := s.meta.QueryRowContext(ctx, `SELECT data_length + index_length FROM information_schema.TABLES
		WHERE table_schema = DATABASE() AND table_name = 'waiting_line'`).Scan(&size); err != nil {
		t.Fatal(err)
	}
	t.Logf("%d entries: loaded in %s (bulk, %d rows a statement); drawn count %s; every score paged (%d pages of 1,000) %s; next 500 waiting %s; the last one's position %s; all but 1,000 ended sold_out %s; table %.0f MiB; Go heap in use %.1f MiB (allocated %.0f MiB in all)",
		n, load.Round(time.Millisecond), batch, count.Round(time.Millisecond), (n+999)/1000, pages.Round(time.Millisecond),
		head.Round(time.Millisecond), position.Round(time.Millisecond), end.Round(time.Millisecond), float64(size)/(1<<20),
		float64(m1.HeapInuse)/(1<<20), float64(m1.TotalAlloc-m0.TotalAlloc)/(1<<20))
}

// TestEnterLineRate measures entries per second into one line before its
// starts_at with 64 writers for FLASHSALE_WR_RATE_SECONDS (unset: skipped),
// the way an ingress enters a crowd: one transaction per entry. Run it under
// the box lock:
//
//	FLASHSALE_WR_RATE_SECONDS=5 flock /work/wt/heavy.lock go test -count=1 -v -run TestEnterLineRate ./mysqlstore/
func TestEnterLineRate(t *testing.T) {
	secs, err := strconv.Atoi(os.Getenv("FLASHSALE_WR_RATE_SECONDS"))
	if err != nil || secs <= 0 {
		t.Skip("FLASHSALE_WR_RATE_SECONDS is not set: the entering rate is not measured")
	}
	s := openTestStore(t)
	ctx := context.Background()
	sale := roomSale(t, s, "rate", time.Now().UTC().Add(time.Hour).Truncate(time.Microsecond))
	deadline := time.Now().Add(time.Duration(secs) * time.Second)
	var mu sync.Mutex
	entered := 0
	var wg sync.WaitGroup
	for w := range 64 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; time.Now().Before(deadline); i++ {
				u := fmt.Sprintf("w%02d-%06d", w, i)
				tk := lineTicket(sale, u)
				if _, _, err := s.EnterLine(ctx, tk, sale.LineKey(u, tk.ID, time.Now()), time.Now(), -1); err != nil {
					t.Error(err)
					return
				}
				mu.Lock()
				entered++
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	n, err := s.LineEntries(ctx, sale.ID)
	if err != nil || n != entered {
		t.Fatalf("the line counts %d (%v), want the %d entered", n, err, entered)
	}
	t.Logf("%d entries in %d s with 64 writers: %.0f entries/s", entered, secs, float64(entered)/float64(secs))
}

// TestLinePositionDeepInALine: in a line of 3,000, a position near the front
// is counted, one deep in it comes from the line's snapshot and is the same;
// the first 1,500 released still count ahead; once they are seen decided,
// both positions show it within a few seconds (the snapshot is read again
// when a second old), and a ticket that left has none.
func TestLinePositionDeepInALine(t *testing.T) {
	s := openTestStore(t)
	ctx := context.Background()
	sale := roomSale(t, s, "deep", time.Now().UTC().Add(time.Hour).Truncate(time.Microsecond))
	const n = 3000
	var args []any
	var sb strings.Builder
	keys := make([]string, n)
	ids := map[string]string{}
	for i := range n {
		u := fmt.Sprintf("user-%05d", i)
		id := flashsale.NewTicketID(u)
		keys[i] = sale.LineKey(u, id, sale.StartsAt.Add(-time.Minute))
		ids[keys[i]] = id
		if i > 0 {
			sb.WriteString(",")
		}
		sb.WriteString("(?,?,?,1,?,'waiting',?,?)")
		args = append(args, id, sale.ID, u, keys[i], sale.StartsAt.Add(-time.Minute), u)
	}
	if _, err := s.meta.ExecContext(ctx, `INSERT INTO waiting_line (ticket_id, sale_id, user_id, quantity, line_key, status, entered_at, live_user) VALUES `+sb.String(), args...); err != nil {
		t.Fatal(err)
	}
	slices.Sort(keys)
	position := func(i int) int {
		t.Helper()
		p, err := s.LinePosition(ctx, sale.ID, ids[keys[i]])
		if err != nil {
			t.Fatal(err)
		}
		return p
	}
	for _, i := range []int{0, 10, countedBelow + 5, n - 1} {
		if p := position(i); p != i+1 {
			t.Errorf("place %d: position %d, want %d", i, p, i+1)
		}
	}
	var gone []string
	for _, k := range keys[:n/2] {
		gone = append(gone, ids[k])
	}
	if err := s.LeaveLineAs(ctx, sale.ID, gone, flashsale.TicketQueued, time.Now()); err != nil {
		t.Fatal(err)
	}
	// Released, not yet seen decided: still ahead.
	if p, q := position(n-1), position(n/2+10); p != n || q != n/2+11 {
		t.Errorf("after %d were released: positions %d and %d, want %d and %d unchanged", n/2, p, q, n, n/2+11)
	}
	if err := s.MarkAdmitted(ctx, gone); err != nil {
		t.Fatal(err)
	}
	testenv.Eventually(t, 10*time.Second, "the positions after the front was decided", func() bool {
		return position(n-1) == n/2 && position(n/2+10) == 11
	})
	if p := position(0); p != 0 {
		t.Errorf("a ticket that left: position %d, want 0", p)
	}
}

// TestWaitingPlaces: the places of a line's tickets from the shared
// snapshot are their positions (keys seen through GetLineTicket or read in
// one batch alike); a ticket released or left has 0 once the snapshot is
// read again; one entered after the snapshot is -1 until the next one; a
// ticket of no line has 0.
func TestWaitingPlaces(t *testing.T) {
	s := openTestStore(t)
	ctx := context.Background()
	sale := roomSale(t, s, "places", time.Now().UTC().Add(time.Hour).Truncate(time.Microsecond))
	const n = 20
	keys := make([]string, n)
	ids := map[string]string{}
	for i := range n {
		u := fmt.Sprintf("user-%03d", i)
		tk := &flashsale.Ticket{ID: flashsale.NewTicketID(u), SaleID: sale.ID, UserID: u, Quantity: 1, Status: flashsale.TicketWaiting}
		keys[i] = sale.LineKey(u, tk.ID, sale.StartsAt.Add(-time.Minute))
		ids[keys[i]] = tk.ID
		if _, _, err := s.EnterLine(ctx, tk, keys[i], time.Now(), -1); err != nil {
			t.Fatal(err)
		}
	}
	slices.Sort(keys)
	ordered := make([]string, n)
	for i, k := range keys {
		ordered[i] = ids[k]
	}
	places := func(ids ...string) []int {
		t.Helper()
		p, err := s.WaitingPlaces(ctx, sale.ID, ids)
		if err != nil {
			t.Fatal(err)
		}
		return p
	}
	// Entered before any snapshot: known once the first is read.
	testenv.Eventually(t, 5*time.Second, "the line's places", func() bool {
		return slices.Equal(places(ordered...), []int{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20})
	})
	// A process that never saw the keys reads them in one batch.
	s.ranks.mu.Lock()
	s.ranks.seen = nil
	s.ranks.mu.Unlock()
	if p := places(ordered[19], ordered[3], "no-such-ticket"); !slices.Equal(p, []int{20, 4, 0}) {
		t.Errorf("places of keys read in a batch: %v, want [20 4 0]", p)
	}
	if err := s.LeaveLineAs(ctx, sale.ID, ordered[:2], flashsale.TicketQueued, time.Now()); err != nil {
		t.Fatal(err)
	}
	leaver := ordered[10]
	lt, err := s.GetLineTicket(ctx, leaver)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.LeaveLine(ctx, lt.UserID, leaver, time.Now()); err != nil {
		t.Fatal(err)
	}
	// Released ones are no longer waiting but still ahead; the leaver is gone.
	testenv.Eventually(t, 5*time.Second, "the places after 2 released and 1 left", func() bool {
		p := places(ordered[0], ordered[1], ordered[5], leaver, ordered[19])
		return slices.Equal(p, []int{0, 0, 6, 0, 19})
	})
	late := &flashsale.Ticket{ID: flashsale.NewTicketID("late"), SaleID: sale.ID, UserID: "late", Quantity: 1, Status: flashsale.TicketWaiting}
	if _, _, err := s.EnterLine(ctx, late, "1"+strings.Repeat("9", 30), time.Now(), -1); err != nil {
		t.Fatal(err)
	}
	if p := places(late.ID); p[0] != -1 {
		t.Errorf("a ticket entered after the snapshot: place %d, want -1 (not known yet)", p[0])
	}
	testenv.Eventually(t, 5*time.Second, "the late ticket's place", func() bool { return places(late.ID)[0] == 20 })
}

// TestLeavingTheLineLocksOnlyItsTickets: moving most of a line's tickets out
// of it (an ending, a release) while another transaction holds one other
// ticket of the line goes through: it locks the tickets it moves, not the
// line. Planned as a scan of the table, the update waited for the other
// ticket's lock (and, in the waiting-room bench, timed out on every pass).
func TestLeavingTheLineLocksOnlyItsTickets(t *testing.T) {
	s := openTestStore(t)
	ctx := context.Background()
	sale := roomSale(t, s, "leave-locks", time.Now().UTC().Add(time.Hour).Truncate(time.Microsecond))
	var ids []string
	for i := range 30 {
		u := fmt.Sprintf("u%02d", i)
		tk := lineTicket(sale, u)
		if _, _, err := s.EnterLine(ctx, tk, sale.LineKey(u, tk.ID, time.Now()), time.Now(), -1); err != nil {
			t.Fatal(err)
		}
		ids = append(ids, tk.ID)
	}
	other, err := s.meta.BeginTx(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer other.Rollback()
	var held string
	if err := other.QueryRowContext(ctx, `SELECT ticket_id FROM waiting_line WHERE ticket_id = ? FOR UPDATE`, ids[0]).Scan(&held); err != nil {
		t.Fatal(err)
	}
	leave, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if err := s.LeaveLineAs(leave, sale.ID, ids[10:], flashsale.TicketSoldOut, time.Now()); err != nil {
		t.Fatalf("20 of the line's 30 tickets left as sold_out while another transaction held a 21st: %v", err)
	}
	if err := s.MarkAdmitted(leave, ids[1:10]); err != nil {
		t.Fatalf("marking 9 tickets admitted while another transaction held a 10th: %v", err)
	}
	if n, err := s.LineEntries(ctx, sale.ID); err != nil || n != 10 {
		t.Fatalf("entries after 20 left: %d (%v), want 10", n, err)
	}
}

// TestEndWaitingKeepsTheFirst: ending a line but its first keep ends exactly
// the others (from its back), and keeps the first keep by line order.
func TestEndWaitingKeepsTheFirst(t *testing.T) {
	s := openTestStore(t)
	ctx := context.Background()
	sale := roomSale(t, s, "end-keep", time.Now().UTC().Add(time.Hour).Truncate(time.Microsecond))
	keys := map[string]string{} // ticket id -> key
	for i := range 25 {
		u := fmt.Sprintf("u%02d", i)
		tk := lineTicket(sale, u)
		key := fmt.Sprintf("0%02d", (i*7)%25) // entered out of line order
		if _, _, err := s.EnterLine(ctx, tk, key, time.Now(), -1); err != nil {
			t.Fatal(err)
		}
		keys[tk.ID] = key
	}
	ended, err := s.EndWaiting(ctx, sale.ID, 10, time.Now())
	if err != nil || ended != 15 {
		t.Fatalf("ended %d (%v), want 15", ended, err)
	}
	kept, err := s.NextWaiting(ctx, sale.ID, 100)
	if err != nil || len(kept) != 10 {
		t.Fatalf("kept %d (%v), want 10", len(kept), err)
	}
	for i, tk := range kept {
		if want := fmt.Sprintf("0%02d", i); keys[tk.ID] != want {
			t.Errorf("kept #%d has key %s, want %s (the first 10 by line order)", i, keys[tk.ID], want)
		}
	}
	if ended, err := s.EndWaiting(ctx, sale.ID, 10, time.Now()); err != nil || ended != 0 {
		t.Errorf("a second ending ended %d (%v), want 0", ended, err)
	}
	if ended, err := s.EndWaiting(ctx, sale.ID, 0, time.Now()); err != nil || ended != 10 {
		t.Errorf("ending all ended %d (%v), want 10", ended, err)
	}
}
