package flashsale

import (
	"testing"
	"time"
)

// A bundle is payable while the shortest of its sales' windows lasts, and an
// order is due from its pay_by on, not before.
func TestPayByAndDue(t *testing.T) {
	created := time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)
	long, short := &Sale{PaymentWindowSeconds: 900}, &Sale{PaymentWindowSeconds: 60}
	if got := PayBy(created, long); !got.Equal(created.Add(15 * time.Minute)) {
		t.Errorf("one sale: pay_by %v, want created + 900 s", got)
	}
	payBy := PayBy(created, long, short)
	if !payBy.Equal(created.Add(time.Minute)) {
		t.Errorf("bundle: pay_by %v, want created + the shorter window, 60 s", payBy)
	}
	o := &Order{PayBy: payBy}
	for _, c := range []struct {
		at   time.Time
		want bool
	}{{payBy.Add(-time.Microsecond), false}, {payBy, true}, {payBy.Add(time.Hour), true}} {
		if got := o.Due(c.at); got != c.want {
			t.Errorf("Due at pay_by%+v = %v, want %v", c.at.Sub(payBy), got, c.want)
		}
	}
}
