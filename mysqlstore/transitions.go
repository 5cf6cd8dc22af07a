package mysqlstore

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/flashsale/flashsale"
)

// lockOrder reads userID's order FOR UPDATE in tx, or flashsale.ErrNotFound.
func lockOrder(ctx context.Context, tx *sql.Tx, userID, orderID string) (*flashsale.Order, error) {
	o, err := scanOrder(tx.QueryRowContext(ctx, `SELECT `+orderColumns+` FROM orders WHERE order_id = ? AND user_id = ? FOR UPDATE`, orderID, userID))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, flashsale.Errorf(flashsale.CodeNotFound, "no order %q", orderID)
	}
	return o, err
}

// writeEvent inserts one outbox row in tx.
func writeEvent(ctx context.Context, tx *sql.Tx, typ flashsale.EventType, o *flashsale.Order, now time.Time) error {
	ev, body, err := newEvent(typ, o, now)
	if err != nil {
		return err
	}
	return insertEvents(ctx, tx, []flashsale.Event{ev}, [][]byte{body})
}

// closeOrder moves a pending_payment order to status to (expired or cancelled)
// with its outbox row, in one transaction. It returns the order as it stands
// afterwards and whether this call changed it. With dueOnly, an order whose pay_by
// is after now is left alone.
func (s *Store) closeOrder(ctx context.Context, userID, orderID string, to flashsale.OrderStatus, typ flashsale.EventType, now time.Time, dueOnly bool) (*flashsale.Order, bool, error) {
	now = now.UTC().Truncate(time.Microsecond)
	var out *flashsale.Order
	var changed bool
	err := inTx(ctx, s.shards[s.ShardOf(userID)], func(tx *sql.Tx) error {
		changed = false
		o, err := lockOrder(ctx, tx, userID, orderID)
		if err != nil {
			return err
		}
		out = o
		if o.Status != flashsale.OrderPendingPayment || (dueOnly && o.PayBy.After(now)) {
			return nil
		}
		if _, err := tx.ExecContext(ctx, `UPDATE orders SET status = ?, updated_at = ? WHERE order_id = ? AND status = 'pending_payment'`,
			string(to), now, orderID); err != nil {
			return err
		}
		if err := giveRoom(ctx, tx, o.SaleID, o.Quantity, now); err != nil {
			return err
		}
		o.Status, changed = to, true
		return writeEvent(ctx, tx, typ, o, now)
	})
	if err != nil {
		if flashsale.ErrorCode(err) != flashsale.CodeInternal {
			return nil, false, err
		}
		return nil, false, fmt.Errorf("mysqlstore: %s order: %w", to, err)
	}
	return out, changed, nil
}

// Expire marks userID's order expired if it is still unpaid and due at now.
func (s *Store) Expire(ctx context.Context, userID, orderID string, now time.Time) (*flashsale.Order, bool, error) {
	return s.closeOrder(ctx, userID, orderID, flashsale.OrderExpired, flashsale.EventOrderExpired, now, true)
}

// Cancel marks userID's order cancelled if it is still unpaid.
func (s *Store) Cancel(ctx context.Context, userID, orderID string, now time.Time) (*flashsale.Order, bool, error) {
	return s.closeOrder(ctx, userID, orderID, flashsale.OrderCancelled, flashsale.EventOrderCancelled, now, false)
}

// FindOrder looks an order up by id alone, on every shard (the payment provider
// does not know the user).
func (s *Store) FindOrder(ctx context.Context, orderID string) (*flashsale.Order, error) {
	for _, db := range s.shards {
		o, err := scanOrder(db.QueryRowContext(ctx, `SELECT `+orderColumns+` FROM orders WHERE order_id = ?`, orderID))
		if err == nil {
			return o, nil
		}
		if !errors.Is(err, sql.ErrNoRows) {
			return nil, fmt.Errorf("mysqlstore: find order: %w", err)
		}
	}
	return nil, flashsale.Errorf(flashsale.CodeNotFound, "no order %q", orderID)
}

// Pay applies a succeeded payment to userID's order in one transaction: a
// pending order becomes paid (with order.paid); any other order is left as it is
// and order.refund_required is written, once per payment id. A payment id seen
// before returns its first outcome and changes nothing. An amount that differs
// from the order's is flashsale.ErrAmountMismatch and changes nothing.
func (s *Store) Pay(ctx context.Context, userID, orderID, paymentID string, amount int64, now time.Time) (flashsale.PayOutcome, *flashsale.Order, error) {
	now = now.UTC().Truncate(time.Microsecond)
	var outcome flashsale.PayOutcome
	var out *flashsale.Order
	err := inTx(ctx, s.shards[s.ShardOf(userID)], func(tx *sql.Tx) error {
		o, err := lockOrder(ctx, tx, userID, orderID)
		if err != nil {
			return err
		}
		out = o
		if o.AmountCents != amount {
			return flashsale.Errorf(flashsale.CodeAmountMismatch, "amount %d differs from the order's %d", amount, o.AmountCents)
		}
		var prior string
		err = tx.QueryRowContext(ctx, `SELECT outcome FROM payments WHERE payment_id = ?`, paymentID).Scan(&prior)
		if err == nil {
			outcome = flashsale.PayOutcome(prior)
			return nil
		}
		if !errors.Is(err, sql.ErrNoRows) {
			return err
		}
		outcome = flashsale.PayRefundRequired
		if o.Status == flashsale.OrderPendingPayment {
			outcome = flashsale.PayPaid
		}
		if _, err := tx.ExecContext(ctx, `INSERT INTO payments (payment_id, order_id, amount_cents, outcome, created_at) VALUES (?,?,?,?,?)`,
			paymentID, orderID, amount, string(outcome), now); err != nil {
			return err
		}
		if outcome == flashsale.PayRefundRequired {
			// The event names the payment to refund; the order keeps its status.
			snap := *o
			snap.PaymentID = &paymentID
			return writeEvent(ctx, tx, flashsale.EventOrderRefundRequired, &snap, now)
		}
		if _, err := tx.ExecContext(ctx, `UPDATE orders SET status = 'paid', paid_at = ?, payment_id = ?, updated_at = ?
			WHERE order_id = ? AND status = 'pending_payment'`, now, paymentID, now, orderID); err != nil {
			return err
		}
		o.Status, o.PaidAt, o.PaymentID = flashsale.OrderPaid, &now, &paymentID
		return writeEvent(ctx, tx, flashsale.EventOrderPaid, o, now)
	})
	if err != nil {
		if flashsale.ErrorCode(err) != flashsale.CodeInternal {
			return "", nil, err
		}
		if isMySQLError(err, errDupKey) { // the same payment id raced itself: the other one won
			return s.Pay(ctx, userID, orderID, paymentID, amount, now)
		}
		return "", nil, fmt.Errorf("mysqlstore: pay: %w", err)
	}
	return outcome, out, nil
}

// DueOrders returns up to limit unpaid orders of shard whose pay_by is at or
// before now, oldest first.
func (s *Store) DueOrders(ctx context.Context, shard int, now time.Time, limit int) ([]*flashsale.Order, error) {
	orders, err := queryOrders(ctx, s.shards[shard], `SELECT `+orderColumns+` FROM orders
		WHERE status = 'pending_payment' AND pay_by <= ? ORDER BY pay_by LIMIT ?`, now.UTC(), limit)
	if err != nil {
		return nil, fmt.Errorf("mysqlstore: due orders: %w", err)
	}
	return orders, nil
}
