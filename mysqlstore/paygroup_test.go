package mysqlstore

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/flashsale/flashsale"
)

// payFixture is a store with one sale and pending orders of users on one
// shard.
type payFixture struct {
	t     *testing.T
	s     *Store
	shard int
}

func newPayFixture(t *testing.T) payFixture {
	s := newStore(t)
	createSale(t, s, "s1", 100, 5)
	return payFixture{t: t, s: s, shard: s.ShardOf("u")}
}

// orders creates n pending orders of users on the fixture's shard.
func (f payFixture) orders(n int) []flashsale.OrderRef {
	f.t.Helper()
	var orders []*flashsale.Order
	for i := 0; len(orders) < n; i++ {
		if o := order(fmt.Sprintf("u%d", i)); f.s.ShardOf(o.UserID) == f.shard {
			orders = append(orders, o)
		}
	}
	if _, err := f.s.CreateOrders(context.Background(), f.shard, orders); err != nil {
		f.t.Fatal(err)
	}
	refs := make([]flashsale.OrderRef, n)
	for i, o := range orders {
		refs[i] = o.Ref()
	}
	return refs
}

// expired creates an order of a user on the fixture's shard that is due, and
// expires it.
func (f payFixture) expired() flashsale.OrderRef {
	f.t.Helper()
	ctx := context.Background()
	o := order("late")
	for i := 0; f.s.ShardOf(o.UserID) != f.shard; i++ {
		o = order(fmt.Sprintf("late%d", i))
	}
	o.PayBy = o.CreatedAt.Add(-time.Second)
	if _, err := f.s.CreateOrders(ctx, f.shard, []*flashsale.Order{o}); err != nil {
		f.t.Fatal(err)
	}
	if got, changed, err := f.s.Expire(ctx, o.Ref(), time.Now()); err != nil || !changed || got.Status != flashsale.OrderExpired {
		f.t.Fatalf("expire: %+v changed %v, %v", got, changed, err)
	}
	return o.Ref()
}

// owner is the order payment id is bound to, "" none.
func (f payFixture) owner(paymentID string) string {
	f.t.Helper()
	owner, err := f.s.keyOwner(context.Background(), "payment", paymentID)
	if err != nil {
		f.t.Fatal(err)
	}
	return owner
}

// events lists ref's outbox rows' types after its order.created.
func (f payFixture) events(ref flashsale.OrderRef) []string {
	f.t.Helper()
	types, err := queryStrings(context.Background(), f.s.shards[f.shard],
		`SELECT event_type FROM outbox WHERE order_id = ? AND event_type <> 'order.created' ORDER BY id`, ref.Order)
	if err != nil {
		f.t.Fatal(err)
	}
	return types
}

// payments lists ref's payment rows as "payment_id outcome".
func (f payFixture) payments(ref flashsale.OrderRef) []string {
	f.t.Helper()
	rows, err := queryStrings(context.Background(), f.s.shards[f.shard],
		`SELECT CONCAT(payment_id, ' ', outcome) FROM payments WHERE order_id = ? ORDER BY payment_id`, ref.Order)
	if err != nil {
		f.t.Fatal(err)
	}
	return rows
}

// order reads ref's order and checks its status and payment id.
func (f payFixture) order(ref flashsale.OrderRef, status flashsale.OrderStatus, paymentID string) {
	f.t.Helper()
	o, err := f.s.GetOrder(context.Background(), ref)
	if err != nil {
		f.t.Fatal(err)
	}
	got := ""
	if o.PaymentID != nil {
		got = *o.PaymentID
	}
	if o.Status != status || got != paymentID || (status == flashsale.OrderPaid) != (o.PaidAt != nil) {
		f.t.Fatalf("order %s: %s paid by %q at %v, want %s by %q", ref.Order, o.Status, got, o.PaidAt, status, paymentID)
	}
}

// One shared transaction decides its payments one after the other, as
// sequential calls would be: a payment whose order is unknown, whose amount
// differs or whose payment id is another order's fails alone and changes
// nothing, a failed one is answered failed and binds nothing, one of an
// expired order is answered ErrNeedsRevive with the order and writes nothing
// but its binding, the same payment id twice is its first outcome twice with
// one row and one event, a second payment id of one order is refunded.
func TestPayGroupDecidesEachPaymentAsAlone(t *testing.T) {
	f := newPayFixture(t)
	refs := f.orders(4)
	a, b, c, d := refs[0], refs[1], refs[2], refs[3]
	e := f.expired()
	now := time.Now().UTC().Truncate(time.Microsecond)
	calls := []payCall{
		{ref: a, paymentID: "pa", amount: 100, succeeded: true, now: now},
		{ref: flashsale.OrderRef{User: a.User, Order: "nope"}, paymentID: "px", amount: 100, succeeded: true, now: now},
		{ref: flashsale.OrderRef{User: "someone-else", Order: b.Order}, paymentID: "py", amount: 100, succeeded: true, now: now},
		{ref: b, paymentID: "pb", amount: 99, succeeded: true, now: now},
		{ref: b, paymentID: "pb", amount: 100, succeeded: true, now: now},
		{ref: a, paymentID: "pa", amount: 100, succeeded: true, now: now},
		{ref: c, paymentID: "pc1", amount: 100, succeeded: true, now: now},
		{ref: c, paymentID: "pc2", amount: 100, succeeded: true, now: now},
		{ref: c, paymentID: "pc1", amount: 100, succeeded: true, now: now},
		{ref: d, paymentID: "pd", amount: 100, now: now},
		{ref: d, paymentID: "pa", amount: 100, succeeded: true, now: now},
		{ref: e, paymentID: "pe", amount: 100, succeeded: true, now: now},
	}
	answers, err := f.s.payGroup(context.Background(), f.shard, calls)
	if err != nil {
		t.Fatal(err)
	}
	type want struct {
		outcome flashsale.PayOutcome
		status  flashsale.OrderStatus
		code    flashsale.Code
	}
	wants := []want{
		{flashsale.PayPaid, flashsale.OrderPaid, ""},
		{"", "", flashsale.CodeNotFound},
		{"", "", flashsale.CodeNotFound},
		{"", "", flashsale.CodeAmountMismatch},
		{flashsale.PayPaid, flashsale.OrderPaid, ""},
		{flashsale.PayPaid, flashsale.OrderPaid, ""},
		{flashsale.PayPaid, flashsale.OrderPaid, ""},
		{flashsale.PayRefundRequired, flashsale.OrderPaid, ""},
		{flashsale.PayPaid, flashsale.OrderPaid, ""},
		{flashsale.PayFailed, flashsale.OrderPendingPayment, ""},
		{"", "", flashsale.CodeConflict},
		{"", flashsale.OrderExpired, ""}, // ErrNeedsRevive
	}
	for i, w := range wants {
		got := answers[i]
		switch {
		case w.code != "":
			if flashsale.ErrorCode(got.Err) != w.code {
				t.Errorf("call %d: %v, want %s", i, got.Err, w.code)
			}
		case w.outcome == "":
			if !errors.Is(got.Err, flashsale.ErrNeedsRevive) || got.Out.order == nil || got.Out.order.Status != w.status {
				t.Errorf("call %d: %+v, %v; want ErrNeedsRevive with the order %s", i, got.Out.order, got.Err, w.status)
			}
		case got.Err != nil || got.Out.outcome != w.outcome || got.Out.order == nil || got.Out.order.Status != w.status:
			t.Errorf("call %d: %s %+v, %v; want %s with the order %s", i, got.Out.outcome, got.Out.order, got.Err, w.outcome, w.status)
		}
	}
	for id, want := range map[string]string{"pa": a.Order, "pb": b.Order, "pc2": c.Order, "pe": e.Order, "px": "", "py": "", "pd": ""} {
		if got := f.owner(id); got != want {
			t.Errorf("payment id %s bound to %q, want %q", id, got, want)
		}
	}
	f.order(a, flashsale.OrderPaid, "pa")
	f.order(b, flashsale.OrderPaid, "pb")
	f.order(c, flashsale.OrderPaid, "pc1")
	f.order(d, flashsale.OrderPendingPayment, "")
	f.order(e, flashsale.OrderExpired, "")
	for _, x := range []struct {
		ref              flashsale.OrderRef
		payments, events []string
	}{
		{a, []string{"pa paid"}, []string{"order.paid"}},
		{b, []string{"pb paid"}, []string{"order.paid"}},
		{c, []string{"pc1 paid", "pc2 refund_required"}, []string{"order.paid", "order.refund_required"}},
		{d, nil, nil},
		{e, nil, []string{"order.expired"}},
	} {
		if got := f.payments(x.ref); !slices.Equal(got, x.payments) {
			t.Errorf("order %s: payments %q, want %q", x.ref.Order, got, x.payments)
		}
		if got := f.events(x.ref); !slices.Equal(got, x.events) {
			t.Errorf("order %s: events %q, want %q", x.ref.Order, got, x.events)
		}
	}
	// The same payments again, each alone now (seen before: the shared
	// transaction fails on its insert): their first outcomes, nothing new.
	_, err = f.s.payGroup(context.Background(), f.shard, calls[:1])
	if err == nil {
		t.Fatal("a payment id seen before: the shared transaction did not fail")
	}
	f.order(a, flashsale.OrderPaid, "pa")
}

// Payments sent together share transactions, and one whose payment id was
// seen before makes its transaction fail: each payment of it is then applied
// alone, so that one gets its first outcome and the others are paid.
func TestPayConcurrentWithOneSeenBefore(t *testing.T) {
	const n = 32
	f := newPayFixture(t)
	refs := f.orders(n)
	ctx := context.Background()
	if out, _, err := f.s.pay(ctx, payCall{ref: refs[0], paymentID: "p0", amount: 100, succeeded: true, now: time.Now()}, false, true, false); err != nil || out != flashsale.PayPaid {
		t.Fatalf("pay alone: %s, %v", out, err)
	}
	outcomes := make([]flashsale.PayOutcome, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i, ref := range refs { // those that come while one transaction runs share the next
		wg.Go(func() {
			var o *flashsale.Order
			outcomes[i], o, errs[i] = f.s.Settle(ctx, ref, flashsale.Payment{PaymentID: fmt.Sprintf("p%d", i), OrderID: ref.Order, AmountCents: 100, Succeeded: true}, time.Now())
			if errs[i] == nil && (o.ID != ref.Order || o.Status != flashsale.OrderPaid) {
				errs[i] = fmt.Errorf("answered the order %+v", o)
			}
		})
	}
	wg.Wait()
	for i := range refs {
		if errs[i] != nil || outcomes[i] != flashsale.PayPaid {
			t.Errorf("payment %d: %s, %v; want paid", i, outcomes[i], errs[i])
		}
		f.order(refs[i], flashsale.OrderPaid, fmt.Sprintf("p%d", i))
		if got := f.events(refs[i]); !slices.Equal(got, []string{"order.paid"}) {
			t.Errorf("order %d: events %q, want one order.paid", i, got)
		}
	}
}

// Payment ids bound in one statement are bound as one after the other would
// be: the first order to name a payment id owns it, the others conflict, and
// the same payment id of the same order again is fine.
func TestBindPaymentsAsAlone(t *testing.T) {
	s := newStore(t)
	ctx := context.Background()
	if err := s.bindKey(ctx, "payment", "p3", "E", func() error { return paymentConflict("p3") }); err != nil {
		t.Fatal(err)
	}
	for _, round := range []string{"new", "again"} {
		answers, err := s.bindPayments(ctx, []bindCall{{"p1", "A"}, {"p1", "B"}, {"p2", "C"}, {"p1", "A"}, {"p3", "D"}, {"p3", "E"}})
		if err != nil {
			t.Fatal(err)
		}
		for i, conflict := range []bool{false, true, false, false, true, false} {
			if err := answers[i].Err; (flashsale.ErrorCode(err) == flashsale.CodeConflict) != conflict || (!conflict && err != nil) {
				t.Errorf("%s: bind %d: %v, want conflict %v", round, i, err, conflict)
			}
		}
	}
	// Through BindPayment, at once.
	errs := make([]error, 2)
	var wg sync.WaitGroup
	for i, order := range []string{"A", "B"} {
		wg.Go(func() { errs[i] = s.BindPayment(ctx, flashsale.OrderRef{User: "u", Order: order}, "p4") })
	}
	wg.Wait()
	if (errs[0] == nil) == (errs[1] == nil) || flashsale.ErrorCode(errors.Join(errs...)) != flashsale.CodeConflict {
		t.Fatalf("one payment id for two orders at once: %v; want one bound, one conflict", errs)
	}
}
