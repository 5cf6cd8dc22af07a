package mysqlstore

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/flashsale/flashsale"
)

// dbNow is the database's clock (UTC, microseconds): the one clock of every
// time decision about orders.
func dbNow(ctx context.Context, q interface {
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
}) (time.Time, error) {
	var now time.Time
	err := q.QueryRowContext(ctx, `SELECT UTC_TIMESTAMP(6)`).Scan(&now)
	return now.UTC(), err
}

// dbClock is the database's clock read once and advanced by this process's
// monotonic clock: later readings cost no round trip (one inside a transaction
// would lengthen the hold of its locks) and never run ahead of the database's
// clock (the time since the reading counts from its answer, which came after
// the database read its clock).
type dbClock struct {
	at   time.Time // the database's clock, as read
	read time.Time // when the answer came, with its monotonic reading
}

// readDBClock reads the database's clock.
func readDBClock(ctx context.Context, db *sql.DB) (dbClock, error) {
	at, err := dbNow(ctx, db)
	return dbClock{at: at, read: time.Now()}, err
}

// Now is the database's clock now, to the microsecond (DATETIME(6)).
func (c dbClock) Now() time.Time {
	return c.at.Add(time.Since(c.read)).Truncate(time.Microsecond)
}

// lockOrder reads the order ref names (every item's row) FOR UPDATE in tx,
// or flashsale.ErrNotFound.
func lockOrder(ctx context.Context, tx *sql.Tx, ref flashsale.OrderRef) (*flashsale.Order, error) {
	orders, err := queryOrders(ctx, tx, `SELECT `+orderColumns+` FROM orders WHERE order_id = ? AND user_id = ? FOR UPDATE`, ref.Order, ref.User)
	if err != nil {
		return nil, err
	}
	if len(orders) == 0 {
		return nil, flashsale.Errorf(flashsale.CodeNotFound, "no order %q", ref.Order)
	}
	return orders[0], nil
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
// afterwards and whether this call changed it. With dueOnly, an order that is
// not Due by the database's clock is left alone (see flashsale's expiry.go).
func (s *Store) closeOrder(ctx context.Context, ref flashsale.OrderRef, to flashsale.OrderStatus, typ flashsale.EventType, dueOnly bool) (*flashsale.Order, bool, error) {
	var out *flashsale.Order
	var changed bool
	err := inTx(ctx, s.shards[s.ShardOf(ref.User)], func(tx *sql.Tx) error {
		changed = false
		now, err := dbNow(ctx, tx)
		if err != nil {
			return err
		}
		o, err := lockOrder(ctx, tx, ref)
		if err != nil {
			return err
		}
		out = o
		if o.Status != flashsale.OrderPendingPayment || (dueOnly && !o.Due(now)) {
			return nil
		}
		if _, err := tx.ExecContext(ctx, `UPDATE orders SET status = ?, updated_at = ? WHERE order_id = ? AND status = 'pending_payment'`,
			string(to), now, ref.Order); err != nil {
			return err
		}
		for _, l := range o.Lines() {
			if err := giveRoom(ctx, tx, l.SaleID, l.Quantity, now); err != nil {
				return err
			}
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
	if changed {
		s.outboxWritten(s.ShardOf(ref.User))
	}
	return out, changed, nil
}

// Expire marks the order expired if it is still unpaid and due. now is
// ignored: the order is due by the database's clock, which set its pay_by (a
// caller on a host whose clock runs ahead never expires an order early).
func (s *Store) Expire(ctx context.Context, ref flashsale.OrderRef, _ time.Time) (*flashsale.Order, bool, error) {
	return s.closeOrder(ctx, ref, flashsale.OrderExpired, flashsale.EventOrderExpired, true)
}

// Cancel marks the order cancelled if it is still unpaid.
func (s *Store) Cancel(ctx context.Context, ref flashsale.OrderRef, _ time.Time) (*flashsale.Order, bool, error) {
	return s.closeOrder(ctx, ref, flashsale.OrderCancelled, flashsale.EventOrderCancelled, false)
}

// FindOrder looks an order up by id alone, on every shard (the payment provider
// does not know the user).
func (s *Store) FindOrder(ctx context.Context, orderID string) (*flashsale.Order, error) {
	for _, db := range s.shards {
		orders, err := queryOrders(ctx, db, `SELECT `+orderColumns+` FROM orders WHERE order_id = ?`, orderID)
		if err != nil {
			return nil, fmt.Errorf("mysqlstore: find order: %w", err)
		}
		if len(orders) > 0 {
			return orders[0], nil
		}
	}
	return nil, flashsale.Errorf(flashsale.CodeNotFound, "no order %q", orderID)
}

// Pay applies a succeeded payment to the order in one transaction: a
// pending order becomes paid (with order.paid); so does an expired one when
// revive is set (the caller took its units again in the stock store) and the
// sale's stock cap and the user's per_user_limit still have room for every item,
// which it then takes. With revive the transaction holds the user's lock in
// each of the order's sales, as the order transaction does, so two late
// payments of one user, or a late payment and a new order, are decided one
// after the other and never pass the limit together; the one decided second
// over the limit is refund_required. Any other order is left as it is and
// order.refund_required is written, once per payment id. A payment id seen before returns its first
// outcome and changes nothing. An amount that differs from the order's is
// flashsale.ErrAmountMismatch and changes nothing. A payment id is bound to one
// order by BindPayment (or Settle), which the caller runs first.
//
// Pay is the late payment's step after Settle (lifecycle.Service.Pay): each
// call has a transaction of its own.
func (s *Store) Pay(ctx context.Context, ref flashsale.OrderRef, paymentID string, amount int64, revive bool, now time.Time) (flashsale.PayOutcome, *flashsale.Order, error) {
	return s.pay(ctx, payCall{ref: ref, paymentID: paymentID, amount: amount, succeeded: true, now: now}, revive, false, false)
}

// Settle applies payment notification p to the order ref names, deciding on
// the order as its transaction locks it (no read before): an unknown order is
// flashsale.ErrNotFound, another amount flashsale.ErrAmountMismatch, a failed
// payment flashsale.PayFailed with the order; a succeeded one binds its
// payment id (as BindPayment, on the meta database, while the order is
// locked: flashsale.ErrConflict) and is applied as Pay without revive
// applies it, except on an expired order: flashsale.ErrNeedsRevive with the
// order, nothing written (the caller takes its units again and calls Pay).
// Nothing but the payment id's binding is written for a payment answered an
// error, PayFailed or ErrNeedsRevive.
//
// Payments on one shard that come together share transactions (payGroup,
// Config.PayGroup), each decided as it would be alone and one after the
// other; should a shared transaction fail, each of its payments is applied
// alone.
func (s *Store) Settle(ctx context.Context, ref flashsale.OrderRef, p flashsale.Payment, now time.Time) (flashsale.PayOutcome, *flashsale.Order, error) {
	c := payCall{ref: ref, paymentID: p.PaymentID, amount: p.AmountCents, succeeded: p.Succeeded, now: now.UTC().Truncate(time.Microsecond)}
	if s.pays == nil {
		return s.pay(ctx, c, false, true, false)
	}
	a, err := s.pays[s.ShardOf(ref.User)].Do(ctx, c)
	switch {
	case err == nil || errors.Is(err, flashsale.ErrNeedsRevive) || flashsale.ErrorCode(err) != flashsale.CodeInternal:
		return a.outcome, a.order, err // the payment's own answer
	case ctx.Err() != nil:
		return "", nil, ctx.Err()
	}
	// A payment id seen before among them, or anything else: alone, as before.
	return s.pay(ctx, c, false, true, false)
}

// pay is Pay, or with settle Settle (never with revive). A payment id is
// nearly always new, so the first attempt does not look for its row: it
// inserts it, and a payment id seen before fails that insert (its primary
// key) and rolls everything back; then, as after a race of the same payment
// id with itself, seen reads the first outcome before anything else.
func (s *Store) pay(ctx context.Context, c payCall, revive, settle, seen bool) (flashsale.PayOutcome, *flashsale.Order, error) {
	ref, paymentID, amount, now := c.ref, c.paymentID, c.amount, c.now
	now = now.UTC().Truncate(time.Microsecond)
	shard := s.ShardOf(ref.User)
	// A revival raises the user's units in the order's sales: it takes their
	// (sale, user) locks first (see userlocks.go), and needs the order's
	// sales for that before its transaction (they never change).
	var locks []userSale
	if revive {
		o, err := s.GetOrder(ctx, ref) // its errors are wrapped or coded already
		if err != nil {
			return "", nil, err
		}
		locks = userSalesOf(o)
	}
	var outcome flashsale.PayOutcome
	var out *flashsale.Order
	var expired bool          // settle: an expired order, left for the caller to revive
	short := map[string]int{} // units of sales whose allotment had no room here
	for round := 0; ; round++ {
		clear(short)
		err := inTx(ctx, s.shards[shard], func(tx *sql.Tx) error {
			outcome, expired = "", false
			if revive {
				if err := lockUserSales(ctx, tx, locks); err != nil {
					return err
				}
			}
			o, err := lockOrder(ctx, tx, ref)
			if err != nil {
				return err
			}
			out = o
			if o.AmountCents != amount {
				return flashsale.Errorf(flashsale.CodeAmountMismatch, "amount %d differs from the order's %d", amount, o.AmountCents)
			}
			if settle {
				if !c.succeeded {
					outcome = flashsale.PayFailed
					return nil
				}
				if err := s.BindPayment(ctx, ref, paymentID); err != nil {
					return err
				}
				if o.Status == flashsale.OrderExpired {
					expired = true
					return nil
				}
			}
			if seen {
				var prior string
				err = tx.QueryRowContext(ctx, `SELECT outcome FROM payments WHERE payment_id = ?`, paymentID).Scan(&prior)
				if err == nil {
					outcome = flashsale.PayOutcome(prior)
					return nil
				}
				if !errors.Is(err, sql.ErrNoRows) {
					return err
				}
			}
			outcome = flashsale.PayRefundRequired
			switch {
			case o.Status == flashsale.OrderPendingPayment:
				outcome = flashsale.PayPaid
			case o.Status == flashsale.OrderExpired && revive:
				ok, err := s.retake(ctx, tx, o, short, now)
				if err != nil {
					return err
				}
				if len(short) > 0 {
					return errNoRoom // roll back what was taken; borrow, then try again
				}
				if ok {
					outcome = flashsale.PayPaid
				}
			}
			if _, err := tx.ExecContext(ctx, `INSERT INTO payments (payment_id, order_id, amount_cents, outcome, created_at) VALUES (?,?,?,?,?)`,
				paymentID, ref.Order, amount, string(outcome), now); err != nil {
				return err
			}
			if outcome == flashsale.PayRefundRequired {
				// The event names the payment to refund; the order keeps its status.
				snap := *o
				snap.PaymentID = &paymentID
				return writeEvent(ctx, tx, flashsale.EventOrderRefundRequired, &snap, now)
			}
			if _, err := tx.ExecContext(ctx, `UPDATE orders SET status = 'paid', paid_at = ?, payment_id = ?, updated_at = ?
				WHERE order_id = ? AND status = ?`, now, paymentID, now, ref.Order, string(o.Status)); err != nil {
				return err
			}
			o.Status, o.PaidAt, o.PaymentID = flashsale.OrderPaid, &now, &paymentID
			return writeEvent(ctx, tx, flashsale.EventOrderPaid, o, now)
		})
		if errors.Is(err, errNoRoom) {
			err = nil
		}
		if err != nil {
			if flashsale.ErrorCode(err) != flashsale.CodeInternal {
				return "", nil, err
			}
			if isMySQLError(err, errDupKey) { // seen before, or the same payment id raced itself: the other one won
				return s.pay(ctx, c, revive, settle, true)
			}
			return "", nil, fmt.Errorf("mysqlstore: pay: %w", err)
		}
		switch {
		case expired:
			return "", out, flashsale.ErrNeedsRevive
		case outcome == flashsale.PayFailed:
			return outcome, out, nil
		}
		if len(short) == 0 {
			s.outboxWritten(shard)
			return outcome, out, nil
		}
		// Borrow room for the sales this shard lacked; with none anywhere the
		// units are gone, and the next round answers refund_required.
		any := false
		for saleID, n := range short {
			sale, err := s.saleOf(ctx, saleID)
			if err != nil {
				return "", nil, err
			}
			moved := false
			if round < maxCreateRounds {
				if moved, err = s.borrow(ctx, shard, sale, n); err != nil {
					return "", nil, err
				}
			}
			any = any || moved
		}
		if !any {
			revive = false
		}
	}
}

// retake takes, in tx, the room of an expired order's items again: within the
// user's per_user_limit in each sale (read under the user's locks, which tx
// holds), and within the stock cap on this shard.
// False: over the limit (nothing taken). Sales whose allotment has no room are
// added to short (nothing taken either; the caller borrows and tries again).
func (s *Store) retake(ctx context.Context, tx *sql.Tx, o *flashsale.Order, short map[string]int, now time.Time) (bool, error) {
	for _, it := range o.Items {
		sale, err := s.saleOf(ctx, it.SaleID)
		if err != nil {
			return false, err
		}
		var units int
		if err := tx.QueryRowContext(ctx, `SELECT COALESCE(SUM(quantity - returned), 0) FROM orders
			WHERE sale_id = ? AND user_id = ? AND status IN ('pending_payment','paid')`, it.SaleID, o.UserID).Scan(&units); err != nil {
			return false, err
		}
		if units+it.Quantity > sale.PerUserLimit {
			return false, nil
		}
		if err := s.ensureAllotment(ctx, s.ShardOf(o.UserID), sale); err != nil {
			return false, err
		}
	}
	for _, it := range o.Items {
		ok, err := takeRoom(ctx, tx, it.SaleID, it.Quantity, now)
		if err != nil {
			return false, err
		}
		if !ok {
			short[it.SaleID] = it.Quantity
		}
	}
	return len(short) == 0, nil
}

// BindPayment binds paymentID to the order ref names, across every shard (on
// the meta database: ref.User is not read), unless it is bound already: to
// another order it is flashsale.ErrConflict.
//
// Payment ids bound at once share one statement (bindPayments,
// Config.PayGroup), each bound as it would be alone and one after the other;
// should that fail, each is bound alone.
func (s *Store) BindPayment(ctx context.Context, ref flashsale.OrderRef, paymentID string) error {
	if s.binds != nil {
		_, err := s.binds.Do(ctx, bindCall{paymentID: paymentID, orderID: ref.Order})
		switch {
		case err == nil || flashsale.ErrorCode(err) != flashsale.CodeInternal:
			return err // nil or paymentConflict
		case ctx.Err() != nil:
			return ctx.Err()
		}
	}
	return s.bindKey(ctx, "payment", paymentID, ref.Order, func() error { return paymentConflict(paymentID) })
}

// paymentConflict is the error of a payment id bound to another order.
func paymentConflict(paymentID string) error {
	return flashsale.Errorf(flashsale.CodeConflict, "payment %q was used for another order", paymentID)
}

// keyOwner returns the request that owns kind's key id, or "" when none does.
func (s *Store) keyOwner(ctx context.Context, kind, id string) (string, error) {
	var owner string
	err := s.meta.QueryRowContext(ctx, `SELECT request FROM request_keys WHERE kind = ? AND key_id = ?`, kind, id).Scan(&owner)
	if errors.Is(err, sql.ErrNoRows) {
		return "", nil
	}
	if err != nil {
		return "", fmt.Errorf("mysqlstore: %s key: %w", kind, err)
	}
	return owner, nil
}

// bindKey makes request the owner of kind's key id unless another request owns
// it, which is the error conflict returns.
func (s *Store) bindKey(ctx context.Context, kind, id, request string, conflict func() error) error {
	res, err := s.meta.ExecContext(ctx, `INSERT IGNORE INTO request_keys (kind, key_id, request, created_at) VALUES (?,?,?,?)`,
		kind, id, request, time.Now().UTC())
	if err != nil {
		return fmt.Errorf("mysqlstore: bind %s key: %w", kind, err)
	}
	if n, err := res.RowsAffected(); err == nil && n == 1 {
		return nil // the key is new: this request owns it
	}
	owner, err := s.keyOwner(ctx, kind, id)
	if err != nil {
		return err
	}
	if owner != request {
		return conflict()
	}
	return nil
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

// ClosedOrders returns up to limit whole orders of shard that were expired or
// cancelled after mark and at least settle before the database's now, in the
// order of their change (updated_at, then order id), with the mark of each:
// marks[i] is orders[i]'s. An order that changed again since (a late payment)
// is returned as it stands now. It reads the (status, updated_at) index.
func (s *Store) ClosedOrders(ctx context.Context, shard int, mark flashsale.OrderMark, settle time.Duration, limit int) ([]*flashsale.Order, []flashsale.OrderMark, error) {
	db := s.shards[shard]
	at := mark.At.UTC()
	rows, err := db.QueryContext(ctx, `SELECT DISTINCT updated_at, order_id FROM orders
		WHERE status IN ('expired','cancelled') AND (updated_at > ? OR (updated_at = ? AND order_id > ?))
		AND updated_at <= UTC_TIMESTAMP(6) - INTERVAL ? MICROSECOND
		ORDER BY updated_at, order_id LIMIT ?`, at, at, mark.OrderID, settle.Microseconds(), limit)
	if err != nil {
		return nil, nil, fmt.Errorf("mysqlstore: closed orders: %w", err)
	}
	var marks []flashsale.OrderMark
	for rows.Next() {
		var m flashsale.OrderMark
		if err := rows.Scan(&m.At, &m.OrderID); err != nil {
			rows.Close()
			return nil, nil, fmt.Errorf("mysqlstore: closed orders: %w", err)
		}
		m.At = m.At.UTC()
		marks = append(marks, m)
	}
	rows.Close()
	if err := rows.Err(); err != nil || len(marks) == 0 {
		return nil, nil, err
	}
	args := make([]any, len(marks))
	for i, m := range marks {
		args[i] = m.OrderID
	}
	found, err := queryOrders(ctx, db, `SELECT `+orderColumns+` FROM orders WHERE order_id IN `+placeholders(1, len(args)), args...)
	if err != nil {
		return nil, nil, fmt.Errorf("mysqlstore: closed orders: %w", err)
	}
	byID := make(map[string]*flashsale.Order, len(found))
	for _, o := range found {
		byID[o.ID] = o
	}
	orders := make([]*flashsale.Order, 0, len(marks))
	kept := marks[:0]
	for _, m := range marks {
		if o := byID[m.OrderID]; o != nil {
			orders = append(orders, o)
			kept = append(kept, m)
		}
	}
	return orders, kept, nil
}
