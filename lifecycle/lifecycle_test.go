package lifecycle

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/flashsale/flashsale"
)

// These tests drive the lifecycle's ordering with fakes of its Book and Stock:
// MySQL first, then the stock store follows; a late payment takes units in
// the stock store first and gives them back when MySQL does not revive.

type fakeBook struct {
	order    *flashsale.Order
	revives  bool // whether MySQL's cap lets a revived order be paid
	bound    map[string]string
	lastPay  bool // revive flag of the last Pay
	returned map[string]bool
}

func (b *fakeBook) Expire(context.Context, string, string, time.Time) (*flashsale.Order, bool, error) {
	return b.order, false, nil
}
func (b *fakeBook) Cancel(context.Context, string, string, time.Time) (*flashsale.Order, bool, error) {
	return b.order, false, nil
}
func (b *fakeBook) FindOrder(context.Context, string) (*flashsale.Order, error) {
	o := *b.order
	return &o, nil
}
func (b *fakeBook) BindPayment(_ context.Context, paymentID, orderID string) error {
	if b.bound[paymentID] != "" && b.bound[paymentID] != orderID {
		return flashsale.ErrConflict
	}
	b.bound[paymentID] = orderID
	return nil
}
func (b *fakeBook) Pay(_ context.Context, _, _, paymentID string, _ int64, revive bool, _ time.Time) (flashsale.PayOutcome, *flashsale.Order, error) {
	b.lastPay = revive
	o := *b.order
	if o.Status == flashsale.OrderPendingPayment || (o.Status == flashsale.OrderExpired && revive && b.revives) {
		o.Status, o.PaymentID = flashsale.OrderPaid, &paymentID
		b.order = &o
		return flashsale.PayPaid, &o, nil
	}
	return flashsale.PayRefundRequired, &o, nil
}
func (b *fakeBook) Return(_ context.Context, _, returnID string, lines []flashsale.Line, _ time.Time) (*flashsale.Order, bool, error) {
	if b.returned[returnID] {
		return b.order, true, nil
	}
	b.returned[returnID] = true
	o := *b.order
	o.Items = append([]flashsale.OrderItem(nil), o.Items...)
	for _, l := range lines {
		for i := range o.Items {
			if o.Items[i].SaleID == l.SaleID {
				o.Items[i].Returned += l.Quantity
			}
		}
	}
	b.order = &o
	return &o, false, nil
}

type fakeStock struct {
	available map[string]int
	log       []string
}

func (s *fakeStock) Release(_ context.Context, p flashsale.Part) (flashsale.Hold, error) {
	saleID := p.SaleID
	s.log = append(s.log, "release "+saleID)
	return flashsale.Hold{}, nil
}
func (s *fakeStock) Confirm(_ context.Context, p flashsale.Part) (flashsale.Hold, error) {
	saleID := p.SaleID
	s.log = append(s.log, "confirm "+saleID)
	return flashsale.Hold{}, nil
}
func (s *fakeStock) Retake(_ context.Context, p flashsale.Part) (flashsale.Hold, bool, error) {
	saleID, qty := p.SaleID, p.Quantity
	if s.available[saleID] < qty {
		s.log = append(s.log, "short "+saleID)
		return flashsale.Hold{}, false, nil
	}
	s.available[saleID] -= qty
	s.log = append(s.log, "retake "+saleID)
	return flashsale.Hold{}, true, nil
}
func (s *fakeStock) Return(_ context.Context, p flashsale.Part) (flashsale.Hold, error) {
	saleID, keep := p.SaleID, p.Quantity
	s.log = append(s.log, fmt.Sprintf("return %s keep %d", saleID, keep))
	return flashsale.Hold{}, nil
}
func (s *fakeStock) PutTickets(context.Context, ...*flashsale.Ticket) error { return nil }

func bundleOrder(status flashsale.OrderStatus) *flashsale.Order {
	o := &flashsale.Order{ID: "o1", UserID: "u1", Status: status}
	o.SetItems([]flashsale.OrderItem{{SaleID: "a", Quantity: 2, AmountCents: 200}, {SaleID: "b", Quantity: 1, AmountCents: 50}})
	return o
}

func newService(t *testing.T, b *fakeBook, s *fakeStock) *Service {
	t.Helper()
	b.bound, b.returned = map[string]string{}, map[string]bool{}
	svc, err := New(Config{Book: b, Stock: s})
	if err != nil {
		t.Fatal(err)
	}
	return svc
}

func TestLatePaymentRetakesEveryItemThenPays(t *testing.T) {
	b := &fakeBook{order: bundleOrder(flashsale.OrderExpired), revives: true}
	s := &fakeStock{available: map[string]int{"a": 2, "b": 1}}
	out, o, err := newService(t, b, s).Pay(context.Background(), Payment{PaymentID: "p", OrderID: "o1", AmountCents: 250, Succeeded: true})
	if err != nil || out != "paid" || o.Status != flashsale.OrderPaid || !b.lastPay {
		t.Fatalf("pay = %q %+v %v (revive %v), want paid with revive", out, o, err, b.lastPay)
	}
	if want := "[retake a retake b confirm a confirm b]"; fmt.Sprint(s.log) != want {
		t.Errorf("steps %v, want %s", s.log, want)
	}
}

func TestLatePaymentWithAnItemGoneGivesTheOthersBack(t *testing.T) {
	b := &fakeBook{order: bundleOrder(flashsale.OrderExpired), revives: true}
	s := &fakeStock{available: map[string]int{"a": 2, "b": 0}}
	out, o, err := newService(t, b, s).Pay(context.Background(), Payment{PaymentID: "p", OrderID: "o1", AmountCents: 250, Succeeded: true})
	if err != nil || out != "refund_required" || o.Status != flashsale.OrderExpired || b.lastPay {
		t.Fatalf("pay = %q %+v %v (revive %v), want refund_required without revive", out, o, err, b.lastPay)
	}
	if want := "[retake a short b release a]"; fmt.Sprint(s.log) != want {
		t.Errorf("steps %v, want %s", s.log, want)
	}
}

func TestLatePaymentMySQLRefusesGivesEverythingBack(t *testing.T) {
	b := &fakeBook{order: bundleOrder(flashsale.OrderExpired), revives: false}
	s := &fakeStock{available: map[string]int{"a": 2, "b": 1}}
	out, _, err := newService(t, b, s).Pay(context.Background(), Payment{PaymentID: "p", OrderID: "o1", AmountCents: 250, Succeeded: true})
	if err != nil || out != "refund_required" {
		t.Fatalf("pay = %q %v, want refund_required", out, err)
	}
	if want := "[retake a retake b release a release b]"; fmt.Sprint(s.log) != want {
		t.Errorf("steps %v, want %s", s.log, want)
	}
}

func TestPaymentIDOfAnotherOrderIsAConflict(t *testing.T) {
	b := &fakeBook{order: bundleOrder(flashsale.OrderPendingPayment)}
	s := &fakeStock{}
	svc := newService(t, b, s)
	b.bound["p"] = "other"
	if _, _, err := svc.Pay(context.Background(), Payment{PaymentID: "p", OrderID: "o1", AmountCents: 250, Succeeded: true}); flashsale.ErrorCode(err) != flashsale.CodeConflict {
		t.Fatalf("pay with another order's payment id: %v, want conflict", err)
	}
	if len(s.log) != 0 || b.order.Status != flashsale.OrderPendingPayment {
		t.Errorf("steps %v, order %s; want nothing changed", s.log, b.order.Status)
	}
}

func TestReturnLowersEachReturnedItemToWhatMySQLKeeps(t *testing.T) {
	b := &fakeBook{order: bundleOrder(flashsale.OrderPaid)}
	s := &fakeStock{}
	svc := newService(t, b, s)
	o, created, err := svc.Return(context.Background(), "o1", "r1", []flashsale.Line{{SaleID: "a", Quantity: 1}})
	if err != nil || !created || o.Items[0].Returned != 1 {
		t.Fatalf("return = %+v %v %v", o, created, err)
	}
	if want := "[confirm a return a keep 1 confirm b]"; fmt.Sprint(s.log) != want {
		t.Errorf("steps %v, want %s", s.log, want)
	}
	s.log = nil
	if _, created, err = svc.Return(context.Background(), "o1", "r1", []flashsale.Line{{SaleID: "a", Quantity: 1}}); err != nil || created {
		t.Fatalf("the same return again: created %v err %v, want a replay", created, err)
	}
	if want := "[confirm a return a keep 1 confirm b]"; fmt.Sprint(s.log) != want {
		t.Errorf("steps of the replay %v, want %s (it completes what a crash left)", s.log, want)
	}
}
