package mysqlstore

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/google/uuid"

	"github.com/flashsale/flashsale"
)

const orderColumns = `order_id, sale_id, user_id, quantity, amount_cents, status, created_at, pay_by, paid_at, payment_id`

func scanOrder(row scanner) (*flashsale.Order, error) {
	var o flashsale.Order
	var paidAt sql.NullTime
	var paymentID sql.NullString
	var status string
	if err := row.Scan(&o.ID, &o.SaleID, &o.UserID, &o.Quantity, &o.AmountCents, &status,
		&o.CreatedAt, &o.PayBy, &paidAt, &paymentID); err != nil {
		return nil, err
	}
	o.Status = flashsale.OrderStatus(status)
	if paidAt.Valid {
		o.PaidAt = &paidAt.Time
	}
	if paymentID.Valid {
		o.PaymentID = &paymentID.String
	}
	return &o, nil
}

// querier is a pool or a transaction.
type querier interface {
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
}

// queryOrders runs a query selecting orderColumns and scans every row.
func queryOrders(ctx context.Context, q querier, query string, args ...any) ([]*flashsale.Order, error) {
	rows, err := q.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []*flashsale.Order
	for rows.Next() {
		o, err := scanOrder(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, o)
	}
	return out, rows.Err()
}

// ordersOfSale reads the sale's orders matching cond from every shard.
func (s *Store) ordersOfSale(ctx context.Context, saleID, cond string) ([]*flashsale.Order, error) {
	var all []*flashsale.Order
	for i, db := range s.shards {
		orders, err := queryOrders(ctx, db, `SELECT `+orderColumns+` FROM orders WHERE sale_id = ?`+cond, saleID)
		if err != nil {
			return nil, fmt.Errorf("shard %d: %w", i, err)
		}
		all = append(all, orders...)
	}
	return all, nil
}

// newEvent builds the outbox row for a transition of o that happens at now.
func newEvent(typ flashsale.EventType, o *flashsale.Order, now time.Time) (flashsale.Event, []byte, error) {
	ev := flashsale.Event{EventID: uuid.NewString(), Type: typ, OccurredAt: now.UTC(), Order: flashsale.SnapshotOf(o)}
	body, err := json.Marshal(ev)
	return ev, body, err
}

// insertEvents writes one outbox row per event in tx.
func insertEvents(ctx context.Context, tx *sql.Tx, events []flashsale.Event, bodies [][]byte) error {
	if len(events) == 0 {
		return nil
	}
	args := make([]any, 0, len(events)*5)
	for i, ev := range events {
		args = append(args, ev.EventID, ev.Order.OrderID, string(ev.Type), bodies[i], ev.OccurredAt)
	}
	_, err := tx.ExecContext(ctx, `INSERT INTO outbox (event_id, order_id, event_type, payload, created_at) VALUES `+
		placeholders(len(events), 5), args...)
	return err
}

// CreateOrders commits new orders, all of users on shard shard, each with its
// order.created outbox row, in as few transactions as it can: one for the batch,
// or one per order when the batch hits a conflict. The result has one entry per
// order, in order. It is idempotent: an order id already stored is reported as
// flashsale.OrderExisted with its current state.
func (s *Store) CreateOrders(ctx context.Context, shard int, orders []*flashsale.Order) ([]flashsale.OrderResult, error) {
	db := s.shards[shard]
	results := make([]flashsale.OrderResult, len(orders))
	err := inTx(ctx, db, func(tx *sql.Tx) error {
		existing, err := selectOrders(ctx, tx, orders)
		if err != nil {
			return err
		}
		var fresh []*flashsale.Order
		for i, o := range orders {
			if cur, ok := existing[o.ID]; ok {
				results[i] = flashsale.OrderResult{Outcome: flashsale.OrderExisted, Current: cur}
			} else {
				results[i] = flashsale.OrderResult{Outcome: flashsale.OrderCreated, Current: o}
				fresh = append(fresh, o)
			}
		}
		return insertOrders(ctx, tx, fresh)
	})
	if err == nil {
		return results, nil
	}
	if !isMySQLError(err, errDupKey) || len(orders) == 1 {
		if isMySQLError(err, errDupKey) {
			return s.createOne(ctx, db, orders[0])
		}
		return nil, fmt.Errorf("mysqlstore: create orders: %w", err)
	}
	// A conflict somewhere in the batch: find it one order at a time.
	for i, o := range orders {
		r, err := s.createOne(ctx, db, o)
		if err != nil {
			return nil, err
		}
		results[i] = r[0]
	}
	return results, nil
}

// createOne commits one order, telling a redelivery (OrderExisted) from a second
// unpaid order of the same user (OrderLiveConflict).
func (s *Store) createOne(ctx context.Context, db *sql.DB, o *flashsale.Order) ([]flashsale.OrderResult, error) {
	err := inTx(ctx, db, func(tx *sql.Tx) error { return insertOrders(ctx, tx, []*flashsale.Order{o}) })
	if err == nil {
		return []flashsale.OrderResult{{Outcome: flashsale.OrderCreated, Current: o}}, nil
	}
	if !isMySQLError(err, errDupKey) {
		return nil, fmt.Errorf("mysqlstore: create order: %w", err)
	}
	cur, err := scanOrder(db.QueryRowContext(ctx, `SELECT `+orderColumns+` FROM orders WHERE order_id = ?`, o.ID))
	if errors.Is(err, sql.ErrNoRows) {
		return []flashsale.OrderResult{{Outcome: flashsale.OrderLiveConflict}}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("mysqlstore: create order: %w", err)
	}
	return []flashsale.OrderResult{{Outcome: flashsale.OrderExisted, Current: cur}}, nil
}

func selectOrders(ctx context.Context, tx *sql.Tx, orders []*flashsale.Order) (map[string]*flashsale.Order, error) {
	ids := make([]any, len(orders))
	for i, o := range orders {
		ids[i] = o.ID
	}
	existing, err := queryOrders(ctx, tx, `SELECT `+orderColumns+` FROM orders WHERE order_id IN (`+
		strings.TrimSuffix(strings.Repeat("?,", len(ids)), ",")+`)`, ids...)
	found := make(map[string]*flashsale.Order, len(existing))
	for _, o := range existing {
		found[o.ID] = o
	}
	return found, err
}

func insertOrders(ctx context.Context, tx *sql.Tx, orders []*flashsale.Order) error {
	if len(orders) == 0 {
		return nil
	}
	args := make([]any, 0, len(orders)*9)
	events := make([]flashsale.Event, len(orders))
	bodies := make([][]byte, len(orders))
	for i, o := range orders {
		args = append(args, o.ID, o.SaleID, o.UserID, o.Quantity, o.AmountCents, string(o.Status), o.CreatedAt, o.PayBy, o.CreatedAt)
		ev, body, err := newEvent(flashsale.EventOrderCreated, o, o.CreatedAt)
		if err != nil {
			return err
		}
		events[i], bodies[i] = ev, body
	}
	if _, err := tx.ExecContext(ctx, `INSERT INTO orders
		(order_id, sale_id, user_id, quantity, amount_cents, status, created_at, pay_by, updated_at) VALUES `+
		placeholders(len(orders), 9), args...); err != nil {
		return err
	}
	return insertEvents(ctx, tx, events, bodies)
}

// GetOrder returns userID's order, or flashsale.ErrNotFound when it does not
// exist or belongs to someone else.
func (s *Store) GetOrder(ctx context.Context, userID, orderID string) (*flashsale.Order, error) {
	db := s.shards[s.ShardOf(userID)]
	o, err := scanOrder(db.QueryRowContext(ctx, `SELECT `+orderColumns+` FROM orders WHERE order_id = ? AND user_id = ?`, orderID, userID))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, flashsale.Errorf(flashsale.CodeNotFound, "no order %q", orderID)
	}
	if err != nil {
		return nil, fmt.Errorf("mysqlstore: get order: %w", err)
	}
	return o, nil
}

// RecordOutcomes stores final statuses of tickets that made no order (sold_out,
// failed), all of users on shard shard. Recording one twice keeps the first.
func (s *Store) RecordOutcomes(ctx context.Context, shard int, tickets []*flashsale.Ticket) error {
	if len(tickets) == 0 {
		return nil
	}
	now := time.Now().UTC()
	args := make([]any, 0, len(tickets)*6)
	for _, t := range tickets {
		args = append(args, t.ID, t.SaleID, t.UserID, t.Quantity, string(t.Status), now)
	}
	err := inTx(ctx, s.shards[shard], func(tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx, `INSERT IGNORE INTO ticket_outcomes (ticket_id, sale_id, user_id, quantity, status, created_at) VALUES `+
			placeholders(len(tickets), 6), args...)
		return err
	})
	if err != nil {
		return fmt.Errorf("mysqlstore: record outcomes: %w", err)
	}
	return nil
}

// GetTicket rebuilds userID's ticket from MySQL: from its order, or from its
// recorded outcome. A ticket still queued is not in MySQL: flashsale.ErrNotFound.
func (s *Store) GetTicket(ctx context.Context, userID, ticketID string) (*flashsale.Ticket, error) {
	o, err := s.GetOrder(ctx, userID, ticketID)
	if err == nil {
		return flashsale.TicketOf(o), nil
	}
	if !errors.Is(err, flashsale.ErrNotFound) {
		return nil, err
	}
	t := flashsale.Ticket{ID: ticketID, UserID: userID}
	var status string
	err = s.shards[s.ShardOf(userID)].QueryRowContext(ctx,
		`SELECT sale_id, quantity, status FROM ticket_outcomes WHERE ticket_id = ? AND user_id = ?`, ticketID, userID).
		Scan(&t.SaleID, &t.Quantity, &status)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, flashsale.Errorf(flashsale.CodeNotFound, "no ticket %q", ticketID)
	}
	if err != nil {
		return nil, fmt.Errorf("mysqlstore: get ticket: %w", err)
	}
	t.Status = flashsale.TicketStatus(status)
	return &t, nil
}

// HoldingOrders returns the sale's pending_payment and paid orders from every
// shard: what holds or bought its stock. Redis's view is rebuilt from it.
func (s *Store) HoldingOrders(ctx context.Context, saleID string) ([]*flashsale.Order, error) {
	orders, err := s.ordersOfSale(ctx, saleID, ` AND status IN ('pending_payment','paid')`)
	if err != nil {
		return nil, fmt.Errorf("mysqlstore: holding orders: %w", err)
	}
	return orders, nil
}
