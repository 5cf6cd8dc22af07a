package mysqlstore

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/google/uuid"

	"github.com/flashsale/flashsale"
)

const orderColumns = `order_id, sale_id, user_id, quantity, amount_cents, status, created_at, pay_by, paid_at, payment_id, returned`

// scanOrder reads one row of orders: one item of an order (see groupOrders).
func scanOrder(row scanner) (*flashsale.Order, error) {
	var o flashsale.Order
	var paidAt sql.NullTime
	var paymentID sql.NullString
	var status string
	var it flashsale.OrderItem
	if err := row.Scan(&o.ID, &it.SaleID, &o.UserID, &it.Quantity, &it.AmountCents, &status,
		&o.CreatedAt, &o.PayBy, &paidAt, &paymentID, &it.Returned); err != nil {
		return nil, err
	}
	o.Status = flashsale.OrderStatus(status)
	if paidAt.Valid {
		o.PaidAt = &paidAt.Time
	}
	if paymentID.Valid {
		o.PaymentID = &paymentID.String
	}
	o.SetItems([]flashsale.OrderItem{it})
	return &o, nil
}

// groupOrders merges rows of the same order (one per item, see scanOrder) into
// one order each, in the order their first rows came.
func groupOrders(rows []*flashsale.Order) []*flashsale.Order {
	var out []*flashsale.Order
	byID := make(map[string]*flashsale.Order, len(rows))
	for _, r := range rows {
		o := byID[r.ID]
		if o == nil {
			byID[r.ID] = r
			out = append(out, r)
			continue
		}
		o.SetItems(append(o.Items, r.Items...))
	}
	return out
}

// querier is a pool or a transaction.
type querier interface {
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
}

// queryRowsOfOrders runs a query selecting orderColumns and scans every row,
// one item each.
func queryRowsOfOrders(ctx context.Context, q querier, query string, args ...any) ([]*flashsale.Order, error) {
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

// queryOrders runs a query selecting orderColumns and returns whole orders.
// The query must select every row of each order it selects any row of.
func queryOrders(ctx context.Context, q querier, query string, args ...any) ([]*flashsale.Order, error) {
	rows, err := queryRowsOfOrders(ctx, q, query, args...)
	return groupOrders(rows), err
}

// ordersOfSale reads from every shard the parts in one sale of the orders
// matching cond: one per order, with only that sale's item, and Quantity net of
// the units returned.
func (s *Store) ordersOfSale(ctx context.Context, saleID, cond string) ([]*flashsale.Order, error) {
	var all []*flashsale.Order
	for i, db := range s.shards {
		orders, err := queryRowsOfOrders(ctx, db, `SELECT `+orderColumns+` FROM orders WHERE sale_id = ?`+cond, saleID)
		if err != nil {
			return nil, fmt.Errorf("shard %d: %w", i, err)
		}
		for _, o := range orders {
			o.Quantity -= o.Items[0].Returned
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

// maxCreateRounds bounds how often CreateOrders borrows allotment for the same
// batch (each borrow moved units; other batches may have taken them first)
// before it calls the rest sold out.
const maxCreateRounds = 16

// CreateOrders commits new orders, all of users on shard shard, each with its
// order.created outbox row and its ticket's decision row, in as few transactions
// as it can. The result has one entry per order, in order. An order is refused,
// with nothing written for it, when the ticket already has an order
// (flashsale.CreateExisted, a redelivery) or a decision (flashsale.CreateDecided),
// the user has another unpaid order of the sale (flashsale.CreateLiveConflict),
// the user's pending and paid units of the sale would pass its per_user_limit
// (flashsale.CreateOverLimit), or the sale's stock cap has no room for it on any
// shard (flashsale.CreateSoldOut; see allotments.go). These checks hold whatever
// Redis said.
func (s *Store) CreateOrders(ctx context.Context, shard int, orders []*flashsale.Order) ([]flashsale.OrderResult, error) {
	sales := map[string]*flashsale.Sale{}
	for _, o := range orders {
		if len(o.Items) == 0 { // an order of one sale built without its item
			o.SetItems([]flashsale.OrderItem{{SaleID: o.SaleID, Quantity: o.Quantity, AmountCents: o.AmountCents}})
		}
		for _, it := range o.Items {
			if sales[it.SaleID] != nil {
				continue
			}
			sale, err := s.saleOf(ctx, it.SaleID)
			if err != nil {
				return nil, err
			}
			if err := s.ensureAllotment(ctx, shard, sale); err != nil {
				return nil, err
			}
			sales[it.SaleID] = sale
		}
	}
	// The orders inserted take created_at and pay_by from the database's
	// clock, the one expiry is decided by (closeOrder): the worker's clock
	// only sets the payment window (pay_by - created_at).
	now, err := readDBClock(ctx, s.shards[shard])
	if err != nil {
		return nil, fmt.Errorf("mysqlstore: create orders: %w", err)
	}
	results := make([]flashsale.OrderResult, len(orders))
	todo := make([]int, len(orders))
	for i := range todo {
		todo[i] = i
	}
	for round := 1; len(todo) > 0; round++ {
		short, err := s.createBatch(ctx, shard, sales, orders, todo, results, now)
		if err != nil {
			return nil, err
		}
		// The orders left are of sales without room on this shard: borrow room
		// from the others and try them again, or they are sold out.
		// A bundle that did not fit borrows for each of its sales (the room
		// it did have may be gone by the next round).
		need := map[string]int{}
		for _, i := range short {
			for _, it := range orders[i].Items {
				need[it.SaleID] += it.Quantity
			}
		}
		more := map[string]bool{}
		for id, n := range need {
			if round < maxCreateRounds {
				if more[id], err = s.borrow(ctx, shard, sales[id], n); err != nil {
					return nil, err
				}
			}
		}
		todo = todo[:0]
		for _, i := range short {
			again := true
			for _, it := range orders[i].Items {
				again = again && more[it.SaleID]
			}
			if again {
				todo = append(todo, i)
			} else {
				results[i] = flashsale.OrderResult{Outcome: flashsale.CreateSoldOut}
			}
		}
	}
	return results, nil
}

// createBatch commits orders[idx] in one transaction, or one transaction per
// order when the batch hits a duplicate key (another process wrote one of its
// rows meanwhile: the retry reads it and decides accordingly). It fills results
// at idx and returns the indexes that found no room in the allotment.
func (s *Store) createBatch(ctx context.Context, shard int, sales map[string]*flashsale.Sale, orders []*flashsale.Order, idx []int, results []flashsale.OrderResult, now dbClock) ([]int, error) {
	batch := make([]*flashsale.Order, len(idx))
	for j, i := range idx {
		batch[j] = orders[i]
	}
	res, short, err := s.createTx(ctx, s.shards[shard], sales, batch, now)
	if err == nil {
		for j, i := range idx {
			results[i] = res[j]
		}
		out := make([]int, len(short))
		for k, j := range short {
			out[k] = idx[j]
		}
		return out, nil
	}
	if !isMySQLError(err, errDupKey) {
		return nil, fmt.Errorf("mysqlstore: create orders: %w", err)
	}
	var out []int
	for _, i := range idx {
		for attempt := 0; ; attempt++ {
			res, short, err := s.createTx(ctx, s.shards[shard], sales, []*flashsale.Order{orders[i]}, now)
			if err == nil {
				results[i] = res[0]
				if len(short) > 0 {
					out = append(out, i)
				}
				break
			}
			if !isMySQLError(err, errDupKey) || attempt == 2 {
				return nil, fmt.Errorf("mysqlstore: create order: %w", err)
			}
		}
	}
	return out, nil
}

// createTx is one order transaction: it locks the batch's (sale, user) pairs (one
// statement, see userlocks.go), sorts batch out (classify), raises the
// allotments' `used` by what may be created, and inserts those orders with
// their outbox and decision rows. First optimistically (a conditional update of
// the allotment row); if a sale lacks room, again with the allotment rows locked
// first, inserting what fits. It returns one result per order and the indexes
// that did not fit.
//
// The orders are created at now.Now() read once every lock is held, just
// before they are inserted: a transaction that waited for a lock (the
// allotment row is every order transaction's of the shard) does not commit
// orders created before the wait, and created_at stays close to the commit
// that makes them visible (a ticket's pending_payment is streamed within 1 s
// of it; contract §2).
func (s *Store) createTx(ctx context.Context, db *sql.DB, sales map[string]*flashsale.Sale, batch []*flashsale.Order, now dbClock) ([]flashsale.OrderResult, []int, error) {
	var results []flashsale.OrderResult
	var short []int
	for careful := false; ; careful = true {
		err := inTx(ctx, db, func(tx *sql.Tx) error {
			results, short = make([]flashsale.OrderResult, len(batch)), nil
			// First: the per-user limit read by classify counts what every
			// late payment and order of these users committed before.
			if err := lockUserSales(ctx, tx, userSalesOf(batch...)); err != nil {
				return err
			}
			fresh, err := classify(ctx, tx, sales, batch, results)
			if err != nil || len(fresh) == 0 {
				return err
			}
			need := map[string]int{}
			for _, i := range fresh {
				for _, it := range batch[i].Items {
					need[it.SaleID] += it.Quantity
				}
			}
			ids := make([]string, 0, len(need))
			for id := range need {
				ids = append(ids, id)
			}
			sort.Strings(ids) // one lock order for every transaction
			if careful {
				room, err := lockRoom(ctx, tx, ids)
				if err != nil {
					return err
				}
				fits := fresh[:0:0]
				clear(need)
				for _, i := range fresh {
					o := batch[i]
					fit := true
					for _, it := range o.Items {
						fit = fit && room[it.SaleID] >= it.Quantity
					}
					if !fit {
						short = append(short, i)
						continue
					}
					for _, it := range o.Items {
						room[it.SaleID] -= it.Quantity
						need[it.SaleID] += it.Quantity
					}
					fits = append(fits, i)
				}
				fresh = fits
			}
			for _, id := range ids {
				if need[id] == 0 {
					continue
				}
				ok, err := takeRoom(ctx, tx, id, need[id], now.Now())
				if err != nil {
					return err
				}
				if !ok {
					return errNoRoom // only without the rows locked first
				}
			}
			insert := make([]*flashsale.Order, len(fresh))
			for k, i := range fresh {
				insert[k] = batch[i]
			}
			if err := insertOrders(ctx, tx, insert, now.Now()); err != nil {
				return err
			}
			for _, i := range fresh {
				results[i] = flashsale.OrderResult{Outcome: flashsale.CreateNew, Current: batch[i]}
			}
			return nil
		})
		if errors.Is(err, errNoRoom) && !careful {
			continue
		}
		return results, short, err
	}
}

// classify reads, in tx, what already exists for batch's tickets and users, fills
// results for the orders that will not be created, and returns the indexes of
// the others (within the per-user limit, no other unpaid order, in batch order).
// Its reads do not lock. The caller holds the batch's (sale, user) locks
// (lockUserSales), so no order or late payment of those users commits
// meanwhile; a ticket row another transaction commits meanwhile (a redelivery
// on another worker) makes the insert fail with a duplicate key, and the
// caller classifies again.
func classify(ctx context.Context, tx *sql.Tx, sales map[string]*flashsale.Sale, batch []*flashsale.Order, results []flashsale.OrderResult) ([]int, error) {
	ids := make([]any, len(batch))
	saleIDs := map[string]bool{}
	users := map[string]bool{}
	for i, o := range batch {
		ids[i] = o.ID
		users[o.UserID] = true
		for _, it := range o.Items {
			saleIDs[it.SaleID] = true
		}
	}
	decided := map[string]string{}
	if err := queryRows(ctx, tx, func(r scanner) error {
		var id, status string
		err := r.Scan(&id, &status)
		decided[id] = status
		return err
	}, `SELECT ticket_id, status FROM ticket_outcomes WHERE ticket_id IN (`+marks(len(ids))+`)`, ids...); err != nil {
		return nil, err
	}
	// Every order has its decision row (the migration added those of older
	// orders), so only a redelivery reads orders here.
	var ordered []*flashsale.Order
	for _, o := range batch {
		if decided[o.ID] == decisionOrdered {
			ordered = append(ordered, o)
		}
	}
	existing := map[string]*flashsale.Order{}
	if len(ordered) > 0 {
		var err error
		if existing, err = selectOrders(ctx, tx, ordered); err != nil {
			return nil, err
		}
	}
	args := make([]any, 0, len(saleIDs)+len(users))
	for id := range saleIDs {
		args = append(args, id)
	}
	for u := range users {
		args = append(args, u)
	}
	units := map[userSale]int{}
	live := map[userSale]bool{}
	if err := queryRows(ctx, tx, func(r scanner) error {
		var k userSale
		var status string
		var q int
		err := r.Scan(&k.sale, &k.user, &status, &q)
		units[k] += q
		live[k] = live[k] || status == string(flashsale.OrderPendingPayment)
		return err
	}, `SELECT sale_id, user_id, status, quantity - returned FROM orders WHERE sale_id IN (`+marks(len(saleIDs))+`)
		AND user_id IN (`+marks(len(users))+`) AND status IN ('pending_payment','paid')`, args...); err != nil {
		return nil, err
	}
	var fresh []int
	for i, o := range batch {
		// A bundle is refused as a whole for its first item refused.
		conflict, over := false, false
		for _, it := range o.Items {
			k := userSale{it.SaleID, o.UserID}
			conflict = conflict || live[k]
			over = over || units[k]+it.Quantity > sales[it.SaleID].PerUserLimit
		}
		switch d := decided[o.ID]; {
		case existing[o.ID] != nil:
			results[i] = flashsale.OrderResult{Outcome: flashsale.CreateExisted, Current: existing[o.ID]}
		case d != "" && d != decisionOrdered:
			results[i] = flashsale.OrderResult{Outcome: flashsale.CreateDecided, Decision: flashsale.TicketStatus(d)}
		case conflict:
			results[i] = flashsale.OrderResult{Outcome: flashsale.CreateLiveConflict}
		case over:
			results[i] = flashsale.OrderResult{Outcome: flashsale.CreateOverLimit}
		default:
			fresh = append(fresh, i)
			for _, it := range o.Items {
				k := userSale{it.SaleID, o.UserID}
				live[k] = true
				units[k] += it.Quantity
			}
		}
	}
	return fresh, nil
}

// decisionOrdered is the decision row of a ticket that made an order.
const decisionOrdered = "ordered"

// decisionArgs are the values of t's row of ticket_outcomes (ticket_id, sale_id,
// user_id, quantity, status, created_at, items): a bundle's row names its first
// sale and keeps every line in items.
func decisionArgs(t *flashsale.Ticket, at time.Time) []any {
	lines := t.Lines()
	var items any
	if len(lines) > 1 {
		b, _ := json.Marshal(lines)
		items = string(b)
	}
	return []any{t.ID, lines[0].SaleID, t.UserID, lines[0].Quantity, string(t.Status), at, items}
}

// marks returns "?,?,?" for n arguments.
func marks(n int) string { return strings.TrimSuffix(strings.Repeat("?,", n), ",") }

// queryRows runs query and hands each row to scan.
func queryRows(ctx context.Context, q querier, scan func(scanner) error, query string, args ...any) error {
	rows, err := q.QueryContext(ctx, query, args...)
	if err != nil {
		return err
	}
	defer rows.Close()
	for rows.Next() {
		if err := scan(rows); err != nil {
			return err
		}
	}
	return rows.Err()
}

func selectOrders(ctx context.Context, tx *sql.Tx, orders []*flashsale.Order) (map[string]*flashsale.Order, error) {
	ids := make([]any, len(orders))
	for i, o := range orders {
		ids[i] = o.ID
	}
	existing, err := queryOrders(ctx, tx, `SELECT `+orderColumns+` FROM orders WHERE order_id IN (`+marks(len(ids))+`)`, ids...)
	found := make(map[string]*flashsale.Order, len(existing))
	for _, o := range existing {
		found[o.ID] = o
	}
	return found, err
}

// insertOrders inserts orders with their order.created outbox rows and their
// tickets' decision rows ('ordered'), in tx. Each order is created at now (the
// database's clock) and keeps its payment window: its CreatedAt and PayBy are
// set so, and setting them again with the same now changes nothing.
func insertOrders(ctx context.Context, tx *sql.Tx, orders []*flashsale.Order, now time.Time) error {
	if len(orders) == 0 {
		return nil
	}
	for _, o := range orders {
		o.PayBy, o.CreatedAt = now.Add(o.PayBy.Sub(o.CreatedAt)), now
	}
	args := make([]any, 0, len(orders)*9)
	decisions := make([]any, 0, len(orders)*7)
	events := make([]flashsale.Event, len(orders))
	bodies := make([][]byte, len(orders))
	rows := 0
	for i, o := range orders {
		for _, it := range o.Items {
			args = append(args, o.ID, it.SaleID, o.UserID, it.Quantity, it.AmountCents, string(o.Status), o.CreatedAt, o.PayBy, o.CreatedAt)
			rows++
		}
		t := flashsale.TicketOf(o)
		t.Status = decisionOrdered
		decisions = append(decisions, decisionArgs(t, o.CreatedAt)...)
		ev, body, err := newEvent(flashsale.EventOrderCreated, o, o.CreatedAt)
		if err != nil {
			return err
		}
		events[i], bodies[i] = ev, body
	}
	if _, err := tx.ExecContext(ctx, `INSERT INTO ticket_outcomes (ticket_id, sale_id, user_id, quantity, status, created_at, items) VALUES `+
		placeholders(len(orders), 7), decisions...); err != nil {
		return err
	}
	if _, err := tx.ExecContext(ctx, `INSERT INTO orders
		(order_id, sale_id, user_id, quantity, amount_cents, status, created_at, pay_by, updated_at) VALUES `+
		placeholders(rows, 9), args...); err != nil {
		return err
	}
	return insertEvents(ctx, tx, events, bodies)
}

// GetOrder returns ref's order, or flashsale.ErrNotFound when it does not
// exist or belongs to another user. It reads through the shard's read pool.
func (s *Store) GetOrder(ctx context.Context, ref flashsale.OrderRef) (*flashsale.Order, error) {
	userID, orderID := ref.User, ref.Order
	db := s.readers[s.ShardOf(userID)]
	orders, err := queryOrders(ctx, db, `SELECT `+orderColumns+` FROM orders WHERE order_id = ? AND user_id = ?`, orderID, userID)
	if err != nil {
		return nil, fmt.Errorf("mysqlstore: get order: %w", err)
	}
	if len(orders) == 0 {
		return nil, flashsale.Errorf(flashsale.CodeNotFound, "no order %q", orderID)
	}
	return orders[0], nil
}

// RecordOutcomes stores final statuses of tickets that made no order (sold_out,
// failed), all of users on shard shard. A ticket's first decision stands: one
// recorded before (or the order it made) is kept. It returns the decisions
// that stand where they are not the ones given: an order the ticket made
// (flashsale.TicketPendingPayment: read the order), or an earlier outcome.
func (s *Store) RecordOutcomes(ctx context.Context, shard int, tickets []*flashsale.Ticket) (map[string]flashsale.TicketStatus, error) {
	if len(tickets) == 0 {
		return nil, nil
	}
	now := time.Now().UTC()
	args := make([]any, 0, len(tickets)*7)
	ids := make([]any, len(tickets))
	given := make(map[string]flashsale.TicketStatus, len(tickets))
	for i, t := range tickets {
		args = append(args, decisionArgs(t, now)...)
		ids[i], given[t.ID] = t.ID, t.Status
	}
	stand := map[string]flashsale.TicketStatus{}
	err := inTx(ctx, s.shards[shard], func(tx *sql.Tx) error {
		clear(stand)
		if _, err := tx.ExecContext(ctx, `INSERT IGNORE INTO ticket_outcomes (ticket_id, sale_id, user_id, quantity, status, created_at, items) VALUES `+
			placeholders(len(tickets), 7), args...); err != nil {
			return err
		}
		return queryRows(ctx, tx, func(r scanner) error {
			var id, status string
			err := r.Scan(&id, &status)
			if status == decisionOrdered {
				status = string(flashsale.TicketPendingPayment)
			}
			if flashsale.TicketStatus(status) != given[id] {
				stand[id] = flashsale.TicketStatus(status)
			}
			return err
		}, `SELECT ticket_id, status FROM ticket_outcomes WHERE ticket_id IN (`+marks(len(ids))+`)`, ids...)
	})
	if err != nil {
		return nil, fmt.Errorf("mysqlstore: record outcomes: %w", err)
	}
	return stand, nil
}

// GiveUp records that ticket t (status failed or sold_out) will make no order,
// unless a decision was recorded for it first, and reports whether that first
// decision is the order it made: then the order stands and nothing may be
// released for the ticket. Called before a hold of a ticket without an order is
// released, so a late commit of the same ticket loses to the release (its
// decision row is a duplicate key), never the other way round.
func (s *Store) GiveUp(ctx context.Context, t *flashsale.Ticket) (ordered bool, err error) {
	stand, err := s.RecordOutcomes(ctx, s.ShardOf(t.UserID), []*flashsale.Ticket{t})
	if err != nil {
		return false, err
	}
	return stand[t.ID] == flashsale.TicketPendingPayment, nil
}

// GetTicket rebuilds ref's ticket from MySQL: from its order, or from its
// recorded outcome, through the read pool. A ticket still queued is not in
// MySQL: flashsale.ErrNotFound.
func (s *Store) GetTicket(ctx context.Context, ref flashsale.TicketRef) (*flashsale.Ticket, error) {
	userID, ticketID := ref.User, ref.Ticket
	o, err := s.GetOrder(ctx, flashsale.OrderRef{User: userID, Order: ticketID})
	if err == nil {
		return flashsale.TicketOf(o), nil
	}
	if !errors.Is(err, flashsale.ErrNotFound) {
		return nil, err
	}
	t := flashsale.Ticket{ID: ticketID, UserID: userID}
	var status string
	var items sql.NullString
	err = s.readers[s.ShardOf(userID)].QueryRowContext(ctx,
		`SELECT sale_id, quantity, status, items FROM ticket_outcomes WHERE ticket_id = ? AND user_id = ? AND status <> '`+decisionOrdered+`'`, ticketID, userID).
		Scan(&t.SaleID, &t.Quantity, &status, &items)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, flashsale.Errorf(flashsale.CodeNotFound, "no ticket %q", ticketID)
	}
	if err != nil {
		return nil, fmt.Errorf("mysqlstore: get ticket: %w", err)
	}
	t.Status = flashsale.TicketStatus(status)
	t.SetLines([]flashsale.Line{{SaleID: t.SaleID, Quantity: t.Quantity}})
	if items.Valid {
		var lines []flashsale.Line
		if err := json.Unmarshal([]byte(items.String), &lines); err != nil {
			return nil, fmt.Errorf("mysqlstore: get ticket %s: items: %w", ticketID, err)
		}
		t.SetLines(lines)
	}
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
