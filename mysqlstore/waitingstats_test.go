package mysqlstore

import (
	"context"
	"testing"
	"time"
)

// LineReleased counts the released rows, before and after the releaser saw
// them decided, and neither the waiting nor the ended ones.
func TestLineReleasedCountsReleasedRows(t *testing.T) {
	s := openTestStore(t)
	ctx := context.Background()
	now := time.Now().UTC().Truncate(time.Microsecond)
	sale := roomSale(t, s, "released", now.Add(-time.Minute))
	var ids []string
	for _, u := range []string{"u1", "u2", "u3", "u4", "u5"} {
		tk := lineTicket(sale, u)
		if _, _, err := s.EnterLine(ctx, tk, sale.LineKey(u, tk.ID, now), now, -1); err != nil {
			t.Fatal(err)
		}
		ids = append(ids, tk.ID)
	}
	count := func() int {
		t.Helper()
		n, err := s.LineReleased(ctx, sale.ID)
		if err != nil {
			t.Fatal(err)
		}
		return n
	}
	if n := count(); n != 0 {
		t.Fatalf("released before any release: %d, want 0", n)
	}
	if err := s.LeaveLineAs(ctx, sale.ID, ids[:3], "queued", now); err != nil {
		t.Fatal(err)
	}
	if err := s.LeaveLineAs(ctx, sale.ID, ids[3:4], "sold_out", now); err != nil {
		t.Fatal(err)
	}
	if err := s.MarkAdmitted(ctx, ids[:2]); err != nil {
		t.Fatal(err)
	}
	if n := count(); n != 3 {
		t.Errorf("released: %d, want 3 (2 admitted, 1 in flight; not the ended nor the waiting)", n)
	}
	if n, err := s.LineEntries(ctx, sale.ID); err != nil || n != 1 {
		t.Errorf("entries: %d %v, want 1", n, err)
	}
}
