package lifecycle

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/flashsale/flashsale"
	"github.com/flashsale/flashsale/mock"
)

// These tests drive the lifecycle's ordering with fakes of its Book and Stock
// (package mock): MySQL first, then the stock store follows; a late payment
// takes units in the stock store first and gives them back when MySQL does
// not revive.

// strikes records the orders counted as expired unpaid.
type strikes struct {
	mu  sync.Mutex
	got []flashsale.OrderRef
}

func (s *strikes) Record(_ context.Context, ref flashsale.OrderRef, _ time.Time) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.got = append(s.got, ref)
	return nil
}

// fixture is a Service over a book holding one order, o1 of user u1, and a
// stock store holding its units.
type fixture struct {
	svc     *Service
	book    *mock.Book
	stock   *mock.Stock
	strikes *strikes
	now     time.Time
}

// bundleOrder is o1 of u1: 2 units of sale a and 1 of sale b, pay_by at payBy.
func bundleOrder(status flashsale.OrderStatus, payBy time.Time) *flashsale.Order {
	o := &flashsale.Order{ID: "o1", UserID: "u1", Status: status, PayBy: payBy}
	o.SetItems([]flashsale.OrderItem{{SaleID: "a", Quantity: 2, AmountCents: 200}, {SaleID: "b", Quantity: 1, AmountCents: 50}})
	return o
}

// newFixture stores o; available is the stock left in each sale besides o's
// units, which are held for it when o is pending and sold when it is paid.
// The book knows sales a and b (10 units each; a user may buy 2 of a, 1 of b).
func newFixture(t *testing.T, o *flashsale.Order, available map[string]int) *fixture {
	t.Helper()
	f := &fixture{book: mock.NewBook(nil), stock: mock.NewStock(available, nil), strikes: &strikes{},
		now: time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)}
	f.book.Sales = mock.Sales{"a": {ID: "a", Stock: 10, PerUserLimit: 2}, "b": {ID: "b", Stock: 10, PerUserLimit: 1}}
	f.book.Put(o)
	for _, p := range o.Parts() {
		k := [2]string{p.SaleID, p.TicketID}
		switch o.Status {
		case flashsale.OrderPendingPayment:
			f.stock.Holds[k] = flashsale.Hold{Kind: flashsale.HoldHeld, Quantity: p.Quantity}
		case flashsale.OrderPaid:
			f.stock.Holds[k] = flashsale.Hold{Kind: flashsale.HoldSold, Quantity: p.Quantity}
		}
	}
	svc, err := New(Config{Book: f.book, Stock: f.stock, Strikes: f.strikes, Now: func() time.Time { return f.now }})
	if err != nil {
		t.Fatal(err)
	}
	f.svc = svc
	return f
}

var o1 = flashsale.OrderRef{User: "u1", Order: "o1"}

// isDependencyError reports whether err is a failed dependency (not one of
// the coded outcomes), which the HTTP edge answers 503 and a consumer retries.
func isDependencyError(err error) bool {
	var fe *flashsale.Error
	return err != nil && !errors.As(err, &fe)
}

func TestExpireNotDueYetChangesNothing(t *testing.T) {
	now := time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)
	f := newFixture(t, bundleOrder(flashsale.OrderPendingPayment, now.Add(time.Second)), map[string]int{"a": 3})
	o, err := f.svc.Expire(context.Background(), o1)
	if err != nil || o.Status != flashsale.OrderPendingPayment {
		t.Fatalf("expire before pay_by: %+v %v, want still pending_payment", o, err)
	}
	if f.stock.Steps.String() != "[]" || f.stock.Available["a"] != 3 || len(f.strikes.got) != 0 {
		t.Errorf("steps %v, available a %d, strikes %v: want nothing released or counted", f.stock.Steps, f.stock.Available["a"], f.strikes.got)
	}
	if got := f.book.Order("o1").Status; got != flashsale.OrderPendingPayment {
		t.Errorf("stored order %s, want pending_payment", got)
	}
}

func TestExpireDueReleasesTheUnitsAndCountsAStrike(t *testing.T) {
	now := time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)
	f := newFixture(t, bundleOrder(flashsale.OrderPendingPayment, now), map[string]int{"a": 3, "b": 0})
	o, err := f.svc.Expire(context.Background(), o1)
	if err != nil || o.Status != flashsale.OrderExpired {
		t.Fatalf("expire at pay_by: %+v %v, want expired", o, err)
	}
	if f.stock.Available["a"] != 5 || f.stock.Available["b"] != 1 {
		t.Errorf("available a %d b %d, want the order's units back (5, 1)", f.stock.Available["a"], f.stock.Available["b"])
	}
	if want := "[release a release b]"; f.stock.Steps.String() != want {
		t.Errorf("steps %v, want %s", f.stock.Steps, want)
	}
	if tk := f.stock.Tickets["o1"]; tk == nil || tk.Status != flashsale.TicketExpired || tk.PayBy != nil {
		t.Errorf("ticket copy %+v, want expired without pay_by", tk)
	}
	if fmt.Sprint(f.strikes.got) != fmt.Sprint([]flashsale.OrderRef{o1}) {
		t.Errorf("strikes %v, want one for o1", f.strikes.got)
	}
	// Again (a redelivery, the sweeper after the queue): nothing more.
	f.stock.Steps.Reset()
	o, err = f.svc.Expire(context.Background(), o1)
	if err != nil || o.Status != flashsale.OrderExpired || f.stock.Available["a"] != 5 || len(f.strikes.got) != 1 {
		t.Errorf("expire again: %+v %v, available a %d, strikes %d; want expired, nothing more", o, err, f.stock.Available["a"], len(f.strikes.got))
	}
}

func TestExpireOfAFinalOrderLeavesIt(t *testing.T) {
	now := time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)
	for _, st := range []flashsale.OrderStatus{flashsale.OrderPaid, flashsale.OrderCancelled} {
		f := newFixture(t, bundleOrder(st, now.Add(-time.Hour)), map[string]int{"a": 3})
		o, err := f.svc.Expire(context.Background(), o1)
		if err != nil || o.Status != st {
			t.Errorf("expire of a %s order: %+v %v, want it unchanged", st, o, err)
		}
		if f.book.Order("o1").Status != st || len(f.strikes.got) != 0 || f.stock.Available["a"] != 3 {
			t.Errorf("%s: stored %s, strikes %v, available a %d; want nothing changed", st, f.book.Order("o1").Status, f.strikes.got, f.stock.Available["a"])
		}
	}
}

func TestExpireUnknownOrderIsNotFound(t *testing.T) {
	f := newFixture(t, bundleOrder(flashsale.OrderPendingPayment, time.Time{}), nil)
	for _, ref := range []flashsale.OrderRef{{User: "u1", Order: "nope"}, {User: "u2", Order: "o1"}} {
		if _, err := f.svc.Expire(context.Background(), ref); !errors.Is(err, flashsale.ErrNotFound) {
			t.Errorf("expire %+v: %v, want not_found", ref, err)
		}
	}
}

// untouchedStock is a Stock that refuses every call and counts them.
type untouchedStock struct{ calls int }

func (u *untouchedStock) refuse() error { u.calls++; return errors.New("the stock store was called") }
func (u *untouchedStock) Release(context.Context, flashsale.Part) (flashsale.Hold, error) {
	return flashsale.Hold{}, u.refuse()
}
func (u *untouchedStock) Confirm(context.Context, flashsale.Part) (flashsale.Hold, error) {
	return flashsale.Hold{}, u.refuse()
}
func (u *untouchedStock) Retake(context.Context, flashsale.Part) (flashsale.Hold, bool, error) {
	return flashsale.Hold{}, false, u.refuse()
}
func (u *untouchedStock) Return(context.Context, flashsale.Part) (flashsale.Hold, error) {
	return flashsale.Hold{}, u.refuse()
}
func (u *untouchedStock) PutTickets(context.Context, ...*flashsale.Ticket) error { return u.refuse() }
func (u *untouchedStock) GetTicket(context.Context, string) (*flashsale.Ticket, error) {
	return nil, u.refuse()
}

// ExpireInBook is the sweeper's MySQL part of an expiry: the order expires
// in the book and its strike is counted once, and the stock store is not
// asked anything (its units stay held, no copy is written) until Refollow
// makes it follow.
func TestExpireInBookLeavesTheStockStore(t *testing.T) {
	now := time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)
	f := newFixture(t, bundleOrder(flashsale.OrderPendingPayment, now), map[string]int{"a": 3, "b": 0})
	stock := &untouchedStock{}
	svc, err := New(Config{Book: f.book, Stock: stock, Strikes: f.strikes, Now: func() time.Time { return now }})
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 2; i++ { // again: nothing more
		o, err := svc.ExpireInBook(context.Background(), o1)
		if err != nil || o.Status != flashsale.OrderExpired || f.book.Order("o1").Status != flashsale.OrderExpired {
			t.Fatalf("expire in the book at pay_by (%d): %+v %v, want expired", i, o, err)
		}
	}
	if fmt.Sprint(f.strikes.got) != fmt.Sprint([]flashsale.OrderRef{o1}) {
		t.Errorf("strikes %v, want one for o1", f.strikes.got)
	}
	if stock.calls != 0 {
		t.Errorf("%d calls to the stock store, want none", stock.calls)
	}
	// The fixture's service, over the stock store still holding the units,
	// makes it follow.
	if did, err := f.svc.Refollow(context.Background(), f.book.Order("o1")); !did || err != nil {
		t.Fatalf("refollow: %v %v, want it made to follow", did, err)
	}
	if f.stock.Available["a"] != 5 || f.stock.Available["b"] != 1 || f.stock.Tickets["o1"].Status != flashsale.TicketExpired {
		t.Errorf("after refollow: available a %d b %d, copy %+v; want the units back and the copy expired", f.stock.Available["a"], f.stock.Available["b"], f.stock.Tickets["o1"])
	}
}

// Redis away after the commit: the expiry stands in MySQL and the call
// fails (the expiry message is retried); the retry releases the units.
func TestExpireWithRedisAwayIsCompletedByTheRetry(t *testing.T) {
	now := time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)
	f := newFixture(t, bundleOrder(flashsale.OrderPendingPayment, now), map[string]int{"a": 0, "b": 0})
	f.stock.Fail("release b", 1)
	if _, err := f.svc.Expire(context.Background(), o1); !isDependencyError(err) {
		t.Fatalf("expire with Redis away: %v, want the dependency's error", err)
	}
	if f.book.Order("o1").Status != flashsale.OrderExpired || f.stock.Available["b"] != 0 {
		t.Fatalf("after the failure: stored %s, b available %d; want expired in MySQL, b still held", f.book.Order("o1").Status, f.stock.Available["b"])
	}
	o, err := f.svc.Expire(context.Background(), o1)
	if err != nil || o.Status != flashsale.OrderExpired || f.stock.Available["a"] != 2 || f.stock.Available["b"] != 1 {
		t.Errorf("the retry: %+v %v, available a %d b %d; want expired with every unit back", o, err, f.stock.Available["a"], f.stock.Available["b"])
	}
	if len(f.strikes.got) != 1 {
		t.Errorf("strikes %v, want one (the retry changed nothing in MySQL)", f.strikes.got)
	}
}

func TestCancelReleasesTheUnitsOnceAndAgainIsUnchanged(t *testing.T) {
	now := time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)
	f := newFixture(t, bundleOrder(flashsale.OrderPendingPayment, now.Add(time.Hour)), map[string]int{"a": 0, "b": 0})
	for i := 0; i < 2; i++ {
		o, err := f.svc.Cancel(context.Background(), o1)
		if err != nil || o.Status != flashsale.OrderCancelled {
			t.Fatalf("cancel %d: %+v %v, want cancelled", i, o, err)
		}
		if f.stock.Available["a"] != 2 || f.stock.Available["b"] != 1 {
			t.Errorf("cancel %d: available a %d b %d, want the units back once (2, 1)", i, f.stock.Available["a"], f.stock.Available["b"])
		}
	}
	if tk := f.stock.Tickets["o1"]; tk == nil || tk.Status != flashsale.TicketCancelled {
		t.Errorf("ticket copy %+v, want cancelled", tk)
	}
	if len(f.strikes.got) != 0 {
		t.Errorf("strikes %v, want none for a cancel", f.strikes.got)
	}
}

func TestCancelOfAPaidOrderIsAlreadyPaid(t *testing.T) {
	f := newFixture(t, bundleOrder(flashsale.OrderPaid, time.Time{}), nil)
	if _, err := f.svc.Cancel(context.Background(), o1); !errors.Is(err, flashsale.ErrAlreadyPaid) {
		t.Fatalf("cancel of a paid order: %v, want already_paid", err)
	}
	if f.book.Order("o1").Status != flashsale.OrderPaid {
		t.Errorf("stored %s, want paid", f.book.Order("o1").Status)
	}
}

func TestCancelOfAnExpiredOrderReturnsItAsItIs(t *testing.T) {
	f := newFixture(t, bundleOrder(flashsale.OrderExpired, time.Time{}), map[string]int{"a": 2, "b": 1})
	o, err := f.svc.Cancel(context.Background(), o1)
	if err != nil || o.Status != flashsale.OrderExpired || f.stock.Available["a"] != 2 {
		t.Errorf("cancel of an expired order: %+v %v, available a %d; want it expired, nothing given twice", o, err, f.stock.Available["a"])
	}
}

func TestCancelWithRedisAwayIsCompletedByTheRetry(t *testing.T) {
	f := newFixture(t, bundleOrder(flashsale.OrderPendingPayment, time.Now().Add(time.Hour)), map[string]int{"a": 0, "b": 0})
	f.stock.Fail("release a", 1)
	if _, err := f.svc.Cancel(context.Background(), o1); !isDependencyError(err) {
		t.Fatalf("cancel with Redis away: %v, want the dependency's error (503)", err)
	}
	if f.book.Order("o1").Status != flashsale.OrderCancelled {
		t.Fatalf("stored %s, want cancelled: MySQL decided", f.book.Order("o1").Status)
	}
	if o, err := f.svc.Cancel(context.Background(), o1); err != nil || o.Status != flashsale.OrderCancelled || f.stock.Available["a"] != 2 {
		t.Errorf("the retry: %+v %v, available a %d; want cancelled with the units back", o, err, f.stock.Available["a"])
	}
}

func TestLatePaymentRetakesEveryItemThenPays(t *testing.T) {
	f := newFixture(t, bundleOrder(flashsale.OrderExpired, time.Time{}), map[string]int{"a": 2, "b": 1})
	out, o, err := f.svc.Pay(context.Background(), flashsale.Payment{PaymentID: "p", OrderID: "o1", AmountCents: 250, Succeeded: true})
	if err != nil || out != "paid" || o.Status != flashsale.OrderPaid || !f.book.Revived {
		t.Fatalf("pay = %q %+v %v (revive %v), want paid with revive", out, o, err, f.book.Revived)
	}
	if want := "[retake a retake b confirm a confirm b]"; f.stock.Steps.String() != want {
		t.Errorf("steps %v, want %s", f.stock.Steps, want)
	}
}

func TestLatePaymentWithAnItemGoneGivesTheOthersBack(t *testing.T) {
	f := newFixture(t, bundleOrder(flashsale.OrderExpired, time.Time{}), map[string]int{"a": 2, "b": 0})
	out, o, err := f.svc.Pay(context.Background(), flashsale.Payment{PaymentID: "p", OrderID: "o1", AmountCents: 250, Succeeded: true})
	if err != nil || out != "refund_required" || o.Status != flashsale.OrderExpired || f.book.Revived {
		t.Fatalf("pay = %q %+v %v (revive %v), want refund_required without revive", out, o, err, f.book.Revived)
	}
	if want := "[retake a short b release a]"; f.stock.Steps.String() != want {
		t.Errorf("steps %v, want %s", f.stock.Steps, want)
	}
}

func TestLatePaymentMySQLRefusesGivesEverythingBack(t *testing.T) {
	f := newFixture(t, bundleOrder(flashsale.OrderExpired, time.Time{}), map[string]int{"a": 2, "b": 1})
	f.book.CapFull = true
	out, _, err := f.svc.Pay(context.Background(), flashsale.Payment{PaymentID: "p", OrderID: "o1", AmountCents: 250, Succeeded: true})
	if err != nil || out != "refund_required" {
		t.Fatalf("pay = %q %v, want refund_required", out, err)
	}
	if want := "[retake a retake b release a release b]"; f.stock.Steps.String() != want {
		t.Errorf("steps %v, want %s", f.stock.Steps, want)
	}
}

func TestPaymentIDOfAnotherOrderIsAConflict(t *testing.T) {
	f := newFixture(t, bundleOrder(flashsale.OrderPendingPayment, time.Now().Add(time.Hour)), nil)
	f.book.Bound["p"] = "other"
	if _, _, err := f.svc.Pay(context.Background(), flashsale.Payment{PaymentID: "p", OrderID: "o1", AmountCents: 250, Succeeded: true}); flashsale.ErrorCode(err) != flashsale.CodeConflict {
		t.Fatalf("pay with another order's payment id: %v, want conflict", err)
	}
	if f.stock.Steps.String() != "[]" || f.book.Order("o1").Status != flashsale.OrderPendingPayment {
		t.Errorf("steps %v, order %s; want nothing changed", f.stock.Steps, f.book.Order("o1").Status)
	}
}

func TestReturnLowersEachReturnedItemToWhatMySQLKeeps(t *testing.T) {
	f := newFixture(t, bundleOrder(flashsale.OrderPaid, time.Time{}), nil)
	o, created, err := f.svc.Return(context.Background(), flashsale.ReturnRequest{ID: "r1", OrderID: "o1", Lines: []flashsale.Line{{SaleID: "a", Quantity: 1}}})
	if err != nil || !created || o.Items[0].Returned != 1 {
		t.Fatalf("return = %+v %v %v", o, created, err)
	}
	if want := "[confirm a return a keep 1 confirm b]"; f.stock.Steps.String() != want {
		t.Errorf("steps %v, want %s", f.stock.Steps, want)
	}
	f.stock.Steps.Reset()
	if _, created, err = f.svc.Return(context.Background(), flashsale.ReturnRequest{ID: "r1", OrderID: "o1", Lines: []flashsale.Line{{SaleID: "a", Quantity: 1}}}); err != nil || created {
		t.Fatalf("the same return again: created %v err %v, want a replay", created, err)
	}
	if want := "[confirm a return a keep 1 confirm b]"; f.stock.Steps.String() != want {
		t.Errorf("steps of the replay %v, want %s (it completes what a crash left)", f.stock.Steps, want)
	}
}

// Refollow (the sweeper's pass over closed orders): an expired order whose
// release failed after the commit (Redis away) still has its units held and
// a pending_payment copy. While Redis is away Refollow fails and changes
// nothing; once it answers, the units are released and the copy says
// expired. Again, the copy says expired: nothing is done.
func TestRefollowCompletesAnExpiryRedisMissed(t *testing.T) {
	now := time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)
	f := newFixture(t, bundleOrder(flashsale.OrderPendingPayment, now), map[string]int{"a": 3, "b": 0})
	f.stock.PutTickets(context.Background(), flashsale.TicketOf(f.book.Order("o1")))
	f.stock.Fail("release a", 1)
	if _, err := f.svc.Expire(context.Background(), o1); !isDependencyError(err) {
		t.Fatalf("expire with Redis away: %v, want the stock store's error", err)
	}
	o := f.book.Order("o1")
	if o.Status != flashsale.OrderExpired || f.stock.Tickets["o1"].Status != flashsale.TicketPendingPayment {
		t.Fatalf("after the failed release: order %s, copy %s; want expired, pending_payment", o.Status, f.stock.Tickets["o1"].Status)
	}

	f.stock.Steps.Reset()
	f.stock.Fail("get", 1)
	if did, err := f.svc.Refollow(context.Background(), o); did || err == nil || f.stock.Steps.String() != "[]" {
		t.Errorf("refollow with Redis away: %v %v, steps %v; want an error and nothing done", did, err, f.stock.Steps)
	}
	if did, err := f.svc.Refollow(context.Background(), o); !did || err != nil {
		t.Fatalf("refollow: %v %v, want done", did, err)
	}
	if f.stock.Available["a"] != 5 || f.stock.Available["b"] != 1 || f.stock.Tickets["o1"].Status != flashsale.TicketExpired {
		t.Errorf("available a %d b %d, copy %s; want 5, 1, expired", f.stock.Available["a"], f.stock.Available["b"], f.stock.Tickets["o1"].Status)
	}
	f.stock.Steps.Reset()
	if did, err := f.svc.Refollow(context.Background(), o); did || err != nil || f.stock.Steps.String() != "[]" {
		t.Errorf("refollow of a followed order: %v %v, steps %v; want nothing done", did, err, f.stock.Steps)
	}
}

// A closed order whose copy is gone (Redis lost it) is followed again:
// release is idempotent, and the copy is written.
func TestRefollowWithoutACopy(t *testing.T) {
	f := newFixture(t, bundleOrder(flashsale.OrderCancelled, time.Time{}), map[string]int{"a": 3, "b": 1})
	if did, err := f.svc.Refollow(context.Background(), f.book.Order("o1")); !did || err != nil {
		t.Fatalf("refollow: %v %v, want done", did, err)
	}
	if want := "[release a release b]"; f.stock.Steps.String() != want || f.stock.Available["a"] != 3 {
		t.Errorf("steps %v, available a %d; want %s and nothing given back twice", f.stock.Steps, f.stock.Available["a"], want)
	}
	if tk := f.stock.Tickets["o1"]; tk == nil || tk.Status != flashsale.TicketCancelled {
		t.Errorf("copy %+v, want cancelled", tk)
	}
}

// lookups counts how a payment found its order: the reads before its step
// (FindOrder, GetOrder) and its steps (Settle).
type lookups struct {
	*mock.Book
	find, get, settle int
}

func (b *lookups) FindOrder(ctx context.Context, id string) (*flashsale.Order, error) {
	b.find++
	return b.Book.FindOrder(ctx, id)
}

func (b *lookups) GetOrder(ctx context.Context, ref flashsale.OrderRef) (*flashsale.Order, error) {
	b.get++
	return b.Book.GetOrder(ctx, ref)
}

func (b *lookups) Settle(ctx context.Context, ref flashsale.OrderRef, p flashsale.Payment, now time.Time) (flashsale.PayOutcome, *flashsale.Order, error) {
	b.settle++
	return b.Book.Settle(ctx, ref, p, now)
}

// A payment goes to its order's step on the shard of the user its ticket's
// copy names, reading nothing before; without a copy, or with one that does
// not lead to the order, it looks on every shard first, and pays all the
// same.
func TestPaymentFindsTheOrderThroughItsTicket(t *testing.T) {
	ctx := context.Background()
	for _, tc := range []struct {
		name              string
		copyUser          string // "" no copy
		find, get, settle int
	}{
		{"no copy", "", 1, 0, 1},
		{"a copy", "u1", 0, 0, 1},
		{"a copy naming another user", "u2", 1, 0, 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o := bundleOrder(flashsale.OrderPendingPayment, time.Time{})
			f := newFixture(t, o, map[string]int{"a": 2, "b": 1})
			if tc.copyUser != "" {
				tk := flashsale.TicketOf(o)
				tk.UserID = tc.copyUser
				if err := f.stock.PutTickets(ctx, tk); err != nil {
					t.Fatal(err)
				}
			}
			book := &lookups{Book: f.book}
			svc, err := New(Config{Book: book, Stock: f.stock, Now: func() time.Time { return f.now }})
			if err != nil {
				t.Fatal(err)
			}
			out, got, err := svc.Pay(ctx, flashsale.Payment{PaymentID: "p", OrderID: "o1", AmountCents: 250, Succeeded: true})
			if err != nil || out != flashsale.PayPaid || got.Status != flashsale.OrderPaid {
				t.Fatalf("pay = %q %+v %v, want paid", out, got, err)
			}
			if book.find != tc.find || book.get != tc.get || book.settle != tc.settle {
				t.Errorf("FindOrder %d, GetOrder %d, Settle %d times; want %d, %d and %d", book.find, book.get, book.settle, tc.find, tc.get, tc.settle)
			}
		})
	}
}

// A payment of another amount, a failed payment and a payment of an unknown
// order change nothing and bind nothing; a failed one answers the order.
func TestPaymentsThatChangeNothing(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t, bundleOrder(flashsale.OrderPendingPayment, time.Time{}), map[string]int{"a": 2, "b": 1})
	if _, _, err := f.svc.Pay(ctx, flashsale.Payment{PaymentID: "p", OrderID: "o1", AmountCents: 249, Succeeded: true}); flashsale.ErrorCode(err) != flashsale.CodeAmountMismatch {
		t.Errorf("another amount: %v, want amount_mismatch", err)
	}
	if out, o, err := f.svc.Pay(ctx, flashsale.Payment{PaymentID: "p", OrderID: "o1", AmountCents: 250}); err != nil || out != flashsale.PayFailed || o == nil || o.Status != flashsale.OrderPendingPayment {
		t.Errorf("a failed payment: %q %+v %v, want failed with the pending order", out, o, err)
	}
	if _, _, err := f.svc.Pay(ctx, flashsale.Payment{PaymentID: "p", OrderID: "o2", AmountCents: 250, Succeeded: true}); flashsale.ErrorCode(err) != flashsale.CodeNotFound {
		t.Errorf("an unknown order: %v, want not_found", err)
	}
	if len(f.book.Bound) != 0 || f.stock.Steps.String() != "[]" || f.book.Order("o1").Status != flashsale.OrderPendingPayment {
		t.Errorf("bound %v, steps %v, order %s; want nothing changed", f.book.Bound, f.stock.Steps, f.book.Order("o1").Status)
	}
}
