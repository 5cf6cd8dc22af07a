package mysqlstore

import (
	"context"
	"database/sql"
	"fmt"
	"strings"
	"time"

	"github.com/flashsale/flashsale"
	"github.com/flashsale/flashsale/internal/groupcommit"
)

// payCall is one payment notification of a shared payment transaction (see
// payGroup), or one payment applied alone (see Store.pay).
type payCall struct {
	ref       flashsale.OrderRef
	paymentID string
	amount    int64
	succeeded bool
	now       time.Time // UTC, microseconds
}

// payAnswer is what one payment of a shared transaction did: what Settle
// returns.
type payAnswer struct {
	outcome flashsale.PayOutcome
	order   *flashsale.Order
}

// payGroup applies payment notifications (Settle) of orders on shard in one
// transaction with one statement per step for all of them: the orders
// locked FOR UPDATE, the payment ids of the succeeded ones bound (one
// statement on the meta database, bindPayments, while the orders are
// locked), the payment rows inserted, the paid orders updated, the outbox
// rows inserted. Each payment is decided as Settle decides it alone, one
// after the other in the order given, on the orders as the payments before
// it left them: a second payment of an order is refunded, and the same
// payment id again is answered the first's outcome and changes nothing. A
// payment whose order is missing, whose amount differs or whose payment id
// is another order's gets its own error (its Result's) and changes nothing;
// a failed one is answered PayFailed; one of an expired order is answered
// flashsale.ErrNeedsRevive with the order (its Result has both) and writes
// nothing but its binding; the others go on. The group's error (any
// statement failing, a payment id seen before among them: its insert fails)
// rolls every payment back: the caller then applies each alone.
func (s *Store) payGroup(ctx context.Context, shard int, calls []payCall) ([]groupcommit.Result[payAnswer], error) {
	var answers []groupcommit.Result[payAnswer]
	var events int
	err := inTx(ctx, s.shards[shard], func(tx *sql.Tx) error {
		answers, events = make([]groupcommit.Result[payAnswer], len(calls)), 0
		ids := make([]any, 0, len(calls))
		for _, c := range calls {
			ids = append(ids, c.ref.Order)
		}
		orders, err := queryOrders(ctx, tx, `SELECT `+orderColumns+` FROM orders WHERE order_id IN `+placeholders(1, len(ids))+` FOR UPDATE`, ids...)
		if err != nil {
			return err
		}
		byID := make(map[string]*flashsale.Order, len(orders))
		for _, o := range orders {
			byID[o.ID] = o
		}
		var binds []bindCall
		var bound []int // the calls binds are for
		for i, c := range calls {
			o := byID[c.ref.Order]
			switch {
			case o == nil || o.UserID != c.ref.User:
				answers[i].Err = flashsale.Errorf(flashsale.CodeNotFound, "no order %q", c.ref.Order)
			case o.AmountCents != c.amount:
				answers[i].Err = flashsale.Errorf(flashsale.CodeAmountMismatch, "amount %d differs from the order's %d", c.amount, o.AmountCents)
			case !c.succeeded:
				answers[i].Out = payAnswer{outcome: flashsale.PayFailed, order: copyOrder(o)}
			default:
				binds, bound = append(binds, bindCall{paymentID: c.paymentID, orderID: c.ref.Order}), append(bound, i)
			}
		}
		if len(binds) == 0 {
			return nil
		}
		owned, err := s.bindPayments(ctx, binds)
		if err != nil {
			return err
		}
		decided := map[string]flashsale.PayOutcome{} // payment ids applied in this transaction
		var payRows, paidAt, paymentIDs, paidIDs []any
		var evs []flashsale.Event
		var bodies [][]byte
		for j, i := range bound {
			c, o := calls[i], byID[calls[i].ref.Order]
			if err := owned[j].Err; err != nil {
				answers[i].Err = err
				continue
			}
			if o.Status == flashsale.OrderExpired {
				answers[i] = groupcommit.Result[payAnswer]{Out: payAnswer{order: copyOrder(o)}, Err: flashsale.ErrNeedsRevive}
				continue
			}
			if prior, ok := decided[c.paymentID]; ok {
				answers[i].Out = payAnswer{outcome: prior, order: copyOrder(o)}
				continue
			}
			outcome, snap := flashsale.PayRefundRequired, copyOrder(o)
			typ := flashsale.EventOrderRefundRequired
			if o.Status == flashsale.OrderPendingPayment {
				outcome, typ = flashsale.PayPaid, flashsale.EventOrderPaid
				o.Status, o.PaidAt, o.PaymentID = flashsale.OrderPaid, &c.now, &c.paymentID
				snap = o
				paidAt = append(paidAt, c.ref.Order, c.now)
				paymentIDs = append(paymentIDs, c.ref.Order, c.paymentID)
				paidIDs = append(paidIDs, c.ref.Order)
			} else {
				snap.PaymentID = &c.paymentID // the event names the payment to refund; the order keeps its status
			}
			ev, body, err := newEvent(typ, snap, c.now)
			if err != nil {
				return err
			}
			evs, bodies = append(evs, ev), append(bodies, body)
			payRows = append(payRows, c.paymentID, c.ref.Order, c.amount, string(outcome), c.now)
			decided[c.paymentID] = outcome
			answers[i].Out = payAnswer{outcome: outcome, order: copyOrder(o)}
		}
		if len(payRows) == 0 {
			return nil
		}
		if _, err := tx.ExecContext(ctx, `INSERT INTO payments (payment_id, order_id, amount_cents, outcome, created_at) VALUES `+
			placeholders(len(payRows)/5, 5), payRows...); err != nil {
			return err
		}
		if len(paidIDs) > 0 {
			args := make([]any, 0, len(paidAt)*2+len(paymentIDs)+len(paidIDs))
			args = append(append(append(append(args, paidAt...), paidAt...), paymentIDs...), paidIDs...)
			if _, err := tx.ExecContext(ctx, `UPDATE orders SET status = 'paid', paid_at = `+caseOfOrder(len(paidIDs))+
				`, updated_at = `+caseOfOrder(len(paidIDs))+`, payment_id = `+caseOfOrder(len(paidIDs))+
				` WHERE order_id IN `+placeholders(1, len(paidIDs))+` AND status = 'pending_payment'`, args...); err != nil {
				return err
			}
		}
		events = len(evs)
		return insertEvents(ctx, tx, evs, bodies)
	})
	if err != nil {
		return nil, fmt.Errorf("mysqlstore: pay %d together: %w", len(calls), err)
	}
	if events > 0 {
		s.outboxWritten(shard)
	}
	return answers, nil
}

// caseOfOrder is a value chosen by order id for n orders: its arguments are
// n pairs of an order id and its value.
func caseOfOrder(n int) string {
	return "CASE order_id" + strings.Repeat(" WHEN ? THEN ?", n) + " END"
}

// copyOrder is a copy of o that later changes of o's status and payment leave
// as it is (its items are shared: nothing here changes them).
func copyOrder(o *flashsale.Order) *flashsale.Order {
	c := *o
	return &c
}

// bindCall is one payment id to bind to its order (see bindPayments).
type bindCall struct{ paymentID, orderID string }

// bindPayments binds payment ids to orders as BindPayment does, with one
// statement for all of them (and a second that reads the owners when any
// was bound before): each answer's error is nil or paymentConflict. Rows of one
// INSERT IGNORE go in as listed, so the same payment id twice is bound to the
// first's order, as by two calls one after the other.
func (s *Store) bindPayments(ctx context.Context, calls []bindCall) ([]groupcommit.Result[struct{}], error) {
	now := time.Now().UTC()
	args := make([]any, 0, 4*len(calls))
	ids := make([]any, 0, 1+len(calls))
	ids = append(ids, "payment")
	for _, c := range calls {
		args = append(args, "payment", c.paymentID, c.orderID, now)
		ids = append(ids, c.paymentID)
	}
	res, err := s.meta.ExecContext(ctx, `INSERT IGNORE INTO request_keys (kind, key_id, request, created_at) VALUES `+
		placeholders(len(calls), 4), args...)
	if err != nil {
		return nil, fmt.Errorf("mysqlstore: bind %d payment keys: %w", len(calls), err)
	}
	answers := make([]groupcommit.Result[struct{}], len(calls))
	if n, err := res.RowsAffected(); err == nil && n == int64(len(calls)) {
		return answers, nil // every key is new: each call owns its own
	}
	rows, err := s.meta.QueryContext(ctx, `SELECT key_id, request FROM request_keys WHERE kind = ? AND key_id IN `+
		placeholders(1, len(calls)), ids...)
	if err != nil {
		return nil, fmt.Errorf("mysqlstore: payment keys: %w", err)
	}
	defer rows.Close()
	owners := make(map[string]string, len(calls))
	for rows.Next() {
		var id, owner string
		if err := rows.Scan(&id, &owner); err != nil {
			return nil, fmt.Errorf("mysqlstore: payment keys: %w", err)
		}
		owners[id] = owner
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("mysqlstore: payment keys: %w", err)
	}
	for i, c := range calls {
		if owners[c.paymentID] != c.orderID {
			answers[i].Err = paymentConflict(c.paymentID)
		}
	}
	return answers, nil
}
