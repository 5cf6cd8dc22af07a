package flashsale

import "time"

// Order expiry: the rule, here; the steps that apply it, elsewhere.
//
// An unpaid order expires at its pay_by: its creation plus the shortest
// payment window of its sales (PayBy), so a bundle is payable while every one
// of its sales' windows lasts. pay_by is fixed when the order is created,
// stored with it and carried by its events and its expiry message; it never
// changes. The
// order is due once pay_by is not after now (Due), now being the database's
// clock: the order transaction sets created_at and pay_by by that clock (the
// worker's clock only sets the window), and the expiry transaction decides by
// it too, so a process whose clock runs ahead never expires an order early.
//
// The steps, one file each:
//   - pay_by computed: worker/worker.go (PayBy), stored by the database's clock
//     in mysqlstore/orders.go (insertOrders);
//   - the expiry scheduled by the worker as it makes the order
//     (worker.scheduleExpiries through delayq.Scheduler), its delay buckets,
//     the expiry consumer and the sweeper of overdue orders:
//     delayq/delayq.go;
//   - the transition (MySQL first, then Redis releases the units, an unpaid
//     strike): lifecycle/lifecycle.go (Service.Expire);
//   - the conditional update that applies Due under the order's row lock, and
//     the sweeper's query of due orders (pay_by <= now):
//     mysqlstore/transitions.go (Store.Expire, Store.DueOrders).

// PaymentWindow is how long an order of this sale may stay unpaid.
func (s *Sale) PaymentWindow() time.Duration {
	return time.Duration(s.PaymentWindowSeconds) * time.Second
}

// PayBy is when an order of sales created at created expires unpaid: created
// plus the shortest of the sales' payment windows.
func PayBy(created time.Time, sales ...*Sale) time.Time {
	window := sales[0].PaymentWindow()
	for _, s := range sales[1:] {
		window = min(window, s.PaymentWindow())
	}
	return created.Add(window)
}

// Due reports whether the order, if still unpaid, expires at now (the
// database's clock): pay_by is not after now.
func (o *Order) Due(now time.Time) bool { return !o.PayBy.After(now) }
