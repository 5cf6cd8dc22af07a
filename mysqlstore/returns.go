package mysqlstore

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"time"

	"github.com/flashsale/flashsale"
)

// Return gives back units of a paid order, in one transaction on the order's
// shard: each item's `returned` grows, the units leave the sale's stock cap
// (`used` goes down) and an order.returned outbox row is written. The same
// return id with the same order and lines again changes nothing (replay true);
// with another order or other lines it is flashsale.ErrConflict, on any shard.
// Errors: flashsale.ErrNotFound (unknown order), flashsale.ErrNotPaid, and
// invalid_quantity for more units than are left to return in an item (or a sale
// the order did not buy). The order is returned as it stands afterwards.
func (s *Store) Return(ctx context.Context, r flashsale.ReturnRequest, now time.Time) (o *flashsale.Order, replay bool, err error) {
	now = now.UTC().Truncate(time.Microsecond)
	orderID, returnID := r.OrderID, r.ID
	lines := append([]flashsale.Line(nil), r.Lines...)
	sort.Slice(lines, func(i, j int) bool { return lines[i].SaleID < lines[j].SaleID })
	body, err := json.Marshal(lines)
	if err != nil {
		return nil, false, err
	}
	found, err := s.FindOrder(ctx, orderID)
	if err != nil {
		return nil, false, err
	}
	request := orderID + " " + string(body)
	conflict := func() error {
		return flashsale.Errorf(flashsale.CodeConflict, "return %q was used with another order or other items", returnID)
	}
	owner, err := s.keyOwner(ctx, "return", returnID)
	if err != nil {
		return nil, false, err
	}
	switch owner {
	case request: // a repeat: the transaction finds it applied (or applies it)
	case "":
		// Checked before the key is bound, so that a request refused for its
		// content does not own the return id (the transaction checks again).
		if err := found.CheckReturn(lines); err != nil {
			return nil, false, err
		}
		if err := s.bindKey(ctx, "return", returnID, request, conflict); err != nil {
			return nil, false, err
		}
	default:
		return nil, false, conflict()
	}
	err = inTx(ctx, s.shards[s.ShardOf(found.UserID)], func(tx *sql.Tx) error {
		cur, err := lockOrder(ctx, tx, found.Ref())
		if err != nil {
			return err
		}
		o = cur
		var prior string
		err = tx.QueryRowContext(ctx, `SELECT items FROM order_returns WHERE return_id = ?`, returnID).Scan(&prior)
		if err == nil {
			replay = true
			return nil
		}
		if !errors.Is(err, sql.ErrNoRows) {
			return err
		}
		if err := cur.CheckReturn(lines); err != nil {
			return err
		}
		for _, l := range lines {
			if _, err := tx.ExecContext(ctx, `UPDATE orders SET returned = returned + ?, updated_at = ? WHERE order_id = ? AND sale_id = ?`,
				l.Quantity, now, orderID, l.SaleID); err != nil {
				return err
			}
			if err := giveRoom(ctx, tx, l.SaleID, l.Quantity, now); err != nil {
				return err
			}
			for i := range cur.Items {
				if cur.Items[i].SaleID == l.SaleID {
					cur.Items[i].Returned += l.Quantity
				}
			}
		}
		if _, err := tx.ExecContext(ctx, `INSERT INTO order_returns (return_id, order_id, items, created_at) VALUES (?,?,?,?)`,
			returnID, orderID, string(body), now); err != nil {
			return err
		}
		ev, payload, err := newEvent(flashsale.EventOrderReturned, cur, now)
		if err != nil {
			return err
		}
		ev.ReturnID, ev.Items = returnID, lines
		if payload, err = json.Marshal(ev); err != nil {
			return err
		}
		return insertEvents(ctx, tx, []flashsale.Event{ev}, [][]byte{payload})
	})
	if err != nil {
		if flashsale.ErrorCode(err) != flashsale.CodeInternal {
			return nil, false, err
		}
		if isMySQLError(err, errDupKey) { // the same return raced itself: the other one applied it
			return s.Return(ctx, r, now)
		}
		return nil, false, fmt.Errorf("mysqlstore: return: %w", err)
	}
	s.outboxWritten(s.ShardOf(found.UserID))
	return o, replay, nil
}
