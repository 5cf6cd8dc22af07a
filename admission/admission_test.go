package admission

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/flashsale/flashsale"
	"github.com/flashsale/flashsale/mock"
)

// stubStock is a stock store of claims only: available units per sale, no
// live tickets before the test's claims; it records the sales claimed.
type stubStock struct {
	mu        sync.Mutex
	available map[string]int
	claimed   []string
}

func (s *stubStock) Claim(_ context.Context, sale *flashsale.Sale, user string, want flashsale.TicketClaim, qty int) (flashsale.ClaimOutcome, string, int64, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.available[sale.ID] < qty {
		return flashsale.SoldOut, "", 0, nil
	}
	s.claimed = append(s.claimed, sale.ID)
	if want.ID != "" {
		return flashsale.Claimed, want.ID, 1, nil
	}
	return flashsale.Claimed, "t-" + user + "-" + want.Nonce, 1, nil
}

func (s *stubStock) claims() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.claimed)
}

func (*stubStock) Unclaim(context.Context, flashsale.Part) error          { return nil }
func (*stubStock) PutTickets(context.Context, ...*flashsale.Ticket) error { return nil }
func (*stubStock) Release(context.Context, flashsale.Part) (flashsale.Hold, error) {
	return flashsale.Hold{}, nil
}
func (*stubStock) Holder(context.Context, string, string) (string, bool, int, error) {
	return "", false, 0, nil
}
func (*stubStock) Queued(context.Context, ...*flashsale.Ticket) error { return nil }
func (*stubStock) GetTicket(context.Context, string) (*flashsale.Ticket, error) {
	return nil, flashsale.ErrNotFound
}

// queueFunc is a Queue of one function.
type queueFunc func(ctx context.Context, reqs []*flashsale.PurchaseRequest) error

func (f queueFunc) PublishPurchases(ctx context.Context, reqs []*flashsale.PurchaseRequest) error {
	return f(ctx, reqs)
}

// users is a set of users: the qualified ones (Qualifier) or the blocked
// ones (Strikes).
type users map[string]bool

func (u users) Qualified(_ context.Context, _ *flashsale.Sale, user string) (bool, error) {
	return u[user], nil
}

func (u users) Blocked(_ context.Context, user string, now time.Time) (bool, time.Time, error) {
	return u[user], now.Add(time.Hour), nil
}

// TestChecksAnswerInOrder: a line that fails several checks is answered by
// the first of them in the order the package documents, for one sale and in
// a bundle alike (a bundle's answer names the line's sale); a line refused by
// a check claims nothing.
func TestChecksAnswerInOrder(t *testing.T) {
	now := time.Date(2026, 12, 6, 12, 0, 0, 0, time.UTC)
	start := now
	sale := func(id string, from, to time.Duration) *flashsale.Sale {
		return &flashsale.Sale{ID: id, Stock: 10, PerUserLimit: 2, StartsAt: now.Add(from), EndsAt: now.Add(to),
			Inventory: flashsale.InventoryRedis}
	}
	sales := mock.Sales{"open": sale("open", -time.Hour, time.Hour), "open2": sale("open2", -time.Hour, time.Hour),
		"ended": sale("ended", -2*time.Hour, -time.Hour), "soon": sale("soon", time.Hour, 2*time.Hour),
		"reserved": sale("reserved", -time.Hour, time.Hour), "mysql": sale("mysql", -time.Hour, time.Hour),
		"gone": sale("gone", -time.Hour, time.Hour)}
	sales["reserved"].Reservation = &flashsale.Reservation{}
	sales["mysql"].Inventory = flashsale.InventoryMySQL
	stock := &stubStock{available: map[string]int{"open": 10, "open2": 10, "gone": 0}}
	a, err := New(Config{Sales: sales, Stock: stock, Book: mock.NewBook(nil),
		Queue:        queueFunc(func(context.Context, []*flashsale.PurchaseRequest) error { return nil }),
		Reservations: users{"fan": true}, Strikes: users{"striker": true}, LimitPerWindow: 1,
		UserPurchasesPerSecond: 100, Log: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	line := func(sale string, qty int) flashsale.Line { return flashsale.Line{SaleID: sale, Quantity: qty} }
	for _, c := range []struct {
		name  string
		user  string
		lines []flashsale.Line
		want  string // the answer's code, then its message's start for a bundle
	}{
		{"an unknown sale", "u", []flashsale.Line{line("nope", 0)}, "not_found"},
		{"ended before the quantity", "u", []flashsale.Line{line("ended", 0)}, "ended"},
		{"not started before the quantity", "u", []flashsale.Line{line("soon", 9)}, "not_started"},
		{"the quantity before the qualification", "striker", []flashsale.Line{line("reserved", 3)}, "invalid_quantity"},
		{"the qualification before the strikes", "striker", []flashsale.Line{line("reserved", 1)}, "not_qualified"},
		{"the strikes", "striker", []flashsale.Line{line("open", 1)}, "blocked"},
		{"a reserved user is qualified", "fan", []flashsale.Line{line("reserved", 1)}, "sold_out"},
		{"a bundle: mysql inventory before the strikes", "striker", []flashsale.Line{line("mysql", 1), line("open", 1)},
			`invalid: sale "mysql"`},
		{"a bundle: its second line by the same checks", "u", []flashsale.Line{line("open", 1), line("ended", 1)},
			`ended: sale "ended"`},
		{"a bundle: the first line refused decides", "u", []flashsale.Line{line("soon", 1), line("nope", 1)},
			`not_started: sale "soon"`},
	} {
		now = now.Add(10 * time.Millisecond) // a window of its own: the window decides none of these
		t.Run(c.name, func(t *testing.T) {
			before := stock.claims()
			tk, _, err := a.Admit(context.Background(), Request{User: c.user, Lines: c.lines, Now: now})
			var fe *flashsale.Error
			if !errors.As(err, &fe) || !strings.HasPrefix(string(fe.Code)+": "+fe.Message, c.want) {
				t.Fatalf("answered %v, %v; want %s", tk, err, c.want)
			}
			if fe.Code != flashsale.CodeSoldOut && stock.claims() != before {
				t.Errorf("a line refused by a check claimed %v", stock.claimed[before:])
			}
		})
	}

	// The sold-out memory comes before the window: a sale this node saw sold
	// out answers sold_out, not 429, in a window already full; the strikes
	// come before both.
	later := start.Add(time.Second)
	for i, want := range []flashsale.Code{flashsale.CodeSoldOut, flashsale.CodeSoldOut, flashsale.CodeBlocked} {
		user := []string{"u1", "u2", "striker"}[i]
		_, _, err := a.Admit(context.Background(), Request{User: user, Lines: []flashsale.Line{line("gone", 1)}, Now: later})
		var fe *flashsale.Error
		if !errors.As(err, &fe) || fe.Code != want {
			t.Errorf("purchase %d of a sold-out sale in one window: %v, want %s", i+1, err, want)
		}
	}
	// The window: the first of two users in one 10 ms window is admitted,
	// the second is 429.
	for i, want := range []string{"202", "rate_limited"} {
		tk, fresh, err := a.Admit(context.Background(), Request{User: []string{"w1", "w2"}[i],
			Lines: []flashsale.Line{line("open2", 1)}, Now: later})
		got := "202"
		var fe *flashsale.Error
		switch {
		case errors.As(err, &fe):
			got = string(fe.Code)
		case err != nil || !fresh || tk == nil:
			got = "unexpected"
		}
		if got != want {
			t.Errorf("purchase %d in one window: %v %v %v, want %s", i+1, tk, fresh, err, want)
		}
	}
}
