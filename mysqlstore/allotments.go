package mysqlstore

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"sort"
	"time"

	"github.com/google/uuid"

	"github.com/flashsale/flashsale"
)

// This file is the stock cap: MySQL's last word on how many units of a sale may
// be in orders, whatever state Redis is in.
//
// A sale's stock is split into per-shard allotments (table sale_allotments):
// shard i may have at most `allotted` units of the sale in its pending_payment and
// paid orders, and `used` counts them. The order transaction raises `used` only
// while it stays within `allotted` (one conditional row update per sale, shard and
// batch); expiry and cancel lower it in the transaction of the transition. With
// Σ allotted + units in flight == stock, no shard over its allotment means no
// oversell, and every check runs on the order's own shard, in the order's own
// transaction: no cross-database transaction anywhere.
//
// The initial split is deterministic (initialAllotment), so whichever process
// first needs a shard's row creates it and any second creation is ignored. When a
// shard has no room left, borrow moves part of the free allotment (allotted -
// used) of the shard that has the most, in two transactions on one shard each:
// the donor lowers its allotment and logs the transfer; the recipient logs the
// same transfer id (its primary key makes the credit happen once) and raises its
// own. A crash between the two leaves those units in flight, never on two
// shards; the next borrow of the sale completes the transfer, so units are never
// stranded for a buyer on a dry shard.

// errNoRoom: the fast path's conditional update found no room; the transaction
// is rolled back and redone with the allotment rows locked first.
var errNoRoom = errors.New("mysqlstore: allotment has no room")

// initialAllotment is shard i's share of a stock split over shards.
func initialAllotment(stock, shards, i int) int {
	a := stock / shards
	if i < stock%shards {
		a++
	}
	return a
}

type allotKey struct {
	shard int
	sale  string
}

// saleOf returns a sale from the in-process cache (sales never change), or reads
// it from the meta database.
func (s *Store) saleOf(ctx context.Context, id string) (*flashsale.Sale, error) {
	if v, ok := s.saleCache.Load(id); ok {
		return v.(*flashsale.Sale), nil
	}
	sale, err := s.GetSale(ctx, id)
	if err != nil {
		return nil, err
	}
	s.saleCache.Store(id, sale)
	return sale, nil
}

// ensureAllotment creates the sale's allotment row on shard unless it exists:
// the shard's share of the stock, with `used` counted from the orders already
// there (none for a new sale).
func (s *Store) ensureAllotment(ctx context.Context, shard int, sale *flashsale.Sale) error {
	k := allotKey{shard, sale.ID}
	if _, ok := s.allotted.Load(k); ok {
		return nil
	}
	db := s.shards[shard]
	var one int
	err := db.QueryRowContext(ctx, `SELECT 1 FROM sale_allotments WHERE sale_id = ?`, sale.ID).Scan(&one)
	if errors.Is(err, sql.ErrNoRows) {
		// A plain read, then the insert: INSERT ... SELECT would lock the
		// orders it reads against the order transactions of other sales. No
		// order of the sale commits here before the row exists (every order
		// transaction ensures it first); only orders from before the cap
		// existed are counted, and an expiry of one of those in between
		// leaves `used` one order too high: a unit short, never oversold.
		var used int
		if err = db.QueryRowContext(ctx, `SELECT COALESCE(SUM(quantity), 0) FROM orders
			WHERE sale_id = ? AND status IN ('pending_payment','paid')`, sale.ID).Scan(&used); err == nil {
			_, err = db.ExecContext(ctx, `INSERT IGNORE INTO sale_allotments (sale_id, allotted, used, updated_at) VALUES (?,?,?,?)`,
				sale.ID, initialAllotment(sale.Stock, len(s.shards), shard), used, time.Now().UTC())
		}
	}
	if err != nil {
		return fmt.Errorf("mysqlstore: allotment of sale %s on shard %d: %w", sale.ID, shard, err)
	}
	s.allotted.Store(k, struct{}{})
	return nil
}

// takeRoom raises the sale's `used` by n within its allotment, in tx. False: not
// enough room (nothing changed).
func takeRoom(ctx context.Context, tx *sql.Tx, saleID string, n int, now time.Time) (bool, error) {
	res, err := tx.ExecContext(ctx, `UPDATE sale_allotments SET used = used + ?, updated_at = ?
		WHERE sale_id = ? AND used + ? <= allotted`, n, now, saleID, n)
	if err != nil {
		return false, err
	}
	rows, err := res.RowsAffected()
	return rows == 1, err
}

// giveRoom lowers the sale's `used` by n in tx: units left an order (expiry,
// cancel). A sale without an allotment row on the shard (orders from before the
// cap existed) has nothing to lower; its row counts those orders when created.
func giveRoom(ctx context.Context, tx *sql.Tx, saleID string, n int, now time.Time) error {
	_, err := tx.ExecContext(ctx, `UPDATE sale_allotments SET used = used - ?, updated_at = ? WHERE sale_id = ?`, n, now, saleID)
	return err
}

// lockRoom locks the allotment rows of sales in tx (in key order) and returns
// each one's free room.
func lockRoom(ctx context.Context, tx *sql.Tx, saleIDs []string) (map[string]int, error) {
	sort.Strings(saleIDs)
	args := make([]any, len(saleIDs))
	for i, id := range saleIDs {
		args[i] = id
	}
	rows, err := tx.QueryContext(ctx, `SELECT sale_id, allotted - used FROM sale_allotments WHERE sale_id IN (`+
		marks(len(args))+`) ORDER BY sale_id FOR UPDATE`, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	room := make(map[string]int, len(saleIDs))
	for rows.Next() {
		var id string
		var free int
		if err := rows.Scan(&id, &free); err != nil {
			return nil, err
		}
		room[id] = free
	}
	return room, rows.Err()
}

// Cap reads the sale's stock cap on every shard (creating missing allotment
// rows: the initial split) for the reconciler's audit: per shard, its
// allotment, its used units and the units its orders have, all three from one
// consistent snapshot of the shard (a read-only REPEATABLE READ
// transaction), and the units in transfers not yet delivered. Σ Allotted +
// InFlight equals the sale's stock, and each shard's Used equals its
// InOrders, unless the bookkeeping is wrong; a borrow between two shards'
// reads shows for one look.
func (s *Store) Cap(ctx context.Context, saleID string) (flashsale.CapSnapshot, error) {
	var c flashsale.CapSnapshot
	sale, err := s.saleOf(ctx, saleID)
	if err != nil {
		return c, err
	}
	for i, db := range s.shards {
		if err := s.ensureAllotment(ctx, i, sale); err != nil {
			return c, err
		}
		sc := flashsale.ShardCap{Shard: i}
		var inFlight sql.NullInt64
		err := func() error {
			tx, err := db.BeginTx(ctx, &sql.TxOptions{Isolation: sql.LevelRepeatableRead, ReadOnly: true})
			if err != nil {
				return err
			}
			defer tx.Rollback()
			if err := tx.QueryRowContext(ctx, `SELECT allotted, used FROM sale_allotments WHERE sale_id = ?`, saleID).Scan(&sc.Allotted, &sc.Used); err != nil {
				return err
			}
			if err := tx.QueryRowContext(ctx, `SELECT COALESCE(SUM(quantity - returned), 0) FROM orders
				WHERE sale_id = ? AND status IN ('pending_payment','paid')`, saleID).Scan(&sc.InOrders); err != nil {
				return err
			}
			return tx.QueryRowContext(ctx, `SELECT SUM(units) FROM allotment_transfers
				WHERE sale_id = ? AND from_shard = ? AND delivered_at IS NULL`, saleID, i).Scan(&inFlight)
		}()
		if err != nil {
			return c, fmt.Errorf("mysqlstore: stock cap of sale %s on shard %d: %w", saleID, i, err)
		}
		c.Shards = append(c.Shards, sc)
		c.InFlight += int(inFlight.Int64)
	}
	return c, nil
}

// transfer is units of allotment moving from one shard to another.
type transfer struct {
	id       string
	saleID   string
	from, to int
	units    int
}

// borrow gives shard to room for need more units of the sale: it completes the
// sale's transfers in flight, then moves free allotment from the shards that
// have some, the one with the most first: need units, or half of that shard's
// free room if that is more (so that a dry shard does not come back for every
// batch), or all it has at that instant if that is less. It reports whether
// anything moved (the caller tries again); false means no shard had a free
// unit of the sale when asked.
func (s *Store) borrow(ctx context.Context, to int, sale *flashsale.Sale, need int) (bool, error) {
	delivered, err := s.completeTransfers(ctx, sale)
	if err != nil || delivered > 0 {
		return delivered > 0, err
	}
	if moved, err := s.borrowOnce(ctx, to, sale, need); err != nil || moved {
		return moved, err
	}
	// No donor had room. Another borrower may be moving units right now (its
	// donor's room is gone, its recipient's not raised yet): deliver what is in
	// flight, then look for room such a transfer already brought here.
	if delivered, err = s.completeTransfers(ctx, sale); err != nil || delivered > 0 {
		return delivered > 0, err
	}
	var room int
	if err := s.shards[to].QueryRowContext(ctx, `SELECT allotted - used FROM sale_allotments WHERE sale_id = ?`, sale.ID).Scan(&room); err != nil {
		return false, fmt.Errorf("mysqlstore: borrow: %w", err)
	}
	return room > 0, nil
}

// borrowOnce tries the donors once, the one with the most free room first.
func (s *Store) borrowOnce(ctx context.Context, to int, sale *flashsale.Sale, need int) (bool, error) {
	type donor struct{ shard, free int }
	var donors []donor
	for i, db := range s.shards {
		if i == to {
			continue
		}
		if err := s.ensureAllotment(ctx, i, sale); err != nil {
			return false, err
		}
		var f int
		if err := db.QueryRowContext(ctx, `SELECT allotted - used FROM sale_allotments WHERE sale_id = ?`, sale.ID).Scan(&f); err != nil {
			return false, fmt.Errorf("mysqlstore: borrow: %w", err)
		}
		if f > 0 {
			donors = append(donors, donor{i, f})
		}
	}
	sort.Slice(donors, func(a, b int) bool { return donors[a].free > donors[b].free })
	for _, d := range donors {
		t := transfer{id: uuid.NewString(), saleID: sale.ID, from: d.shard, to: to, units: min(d.free, max(need, (d.free+1)/2))}
		if err := s.debit(ctx, &t); err != nil {
			return false, err
		}
		if t.units == 0 {
			continue // its room went meanwhile
		}
		if err := s.deliver(ctx, sale, t); err != nil {
			// In flight: the next borrow of the sale completes it.
			return false, err
		}
		return true, nil
	}
	return false, nil
}

// debit lowers the donor's allotment by t.units, or by all its free room if
// that is less now, and logs t with the units it took, in one transaction on
// the donor's row. t.units is 0 when the donor had no free room left.
func (s *Store) debit(ctx context.Context, t *transfer) error {
	now := time.Now().UTC()
	want := t.units
	err := inTx(ctx, s.shards[t.from], func(tx *sql.Tx) error {
		t.units = 0
		var room int
		if err := tx.QueryRowContext(ctx, `SELECT allotted - used FROM sale_allotments WHERE sale_id = ? FOR UPDATE`, t.saleID).Scan(&room); err != nil {
			return err
		}
		if room <= 0 {
			return nil
		}
		t.units = min(want, room)
		if _, err := tx.ExecContext(ctx, `UPDATE sale_allotments SET allotted = allotted - ?, updated_at = ? WHERE sale_id = ?`,
			t.units, now, t.saleID); err != nil {
			return err
		}
		_, err := tx.ExecContext(ctx, `INSERT INTO allotment_transfers (transfer_id, sale_id, from_shard, to_shard, units, created_at)
			VALUES (?,?,?,?,?,?)`, t.id, t.saleID, t.from, t.to, t.units, now)
		return err
	})
	if err != nil {
		return fmt.Errorf("mysqlstore: debit allotment: %w", err)
	}
	return nil
}

// deliver credits t to its recipient, once, then marks it delivered on the donor.
func (s *Store) deliver(ctx context.Context, sale *flashsale.Sale, t transfer) error {
	if err := s.ensureAllotment(ctx, t.to, sale); err != nil {
		return err
	}
	now := time.Now().UTC()
	err := inTx(ctx, s.shards[t.to], func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, `INSERT IGNORE INTO allotment_transfers
			(transfer_id, sale_id, from_shard, to_shard, units, created_at, delivered_at) VALUES (?,?,?,?,?,?,?)`,
			t.id, t.saleID, t.from, t.to, t.units, now, now)
		if err != nil {
			return err
		}
		if n, err := res.RowsAffected(); err != nil || n == 0 {
			return err // credited before
		}
		_, err = tx.ExecContext(ctx, `UPDATE sale_allotments SET allotted = allotted + ?, updated_at = ? WHERE sale_id = ?`, t.units, now, t.saleID)
		return err
	})
	if err == nil {
		_, err = s.shards[t.from].ExecContext(ctx, `UPDATE allotment_transfers SET delivered_at = ?
			WHERE transfer_id = ? AND delivered_at IS NULL`, now, t.id)
	}
	if err != nil {
		return fmt.Errorf("mysqlstore: deliver allotment: %w", err)
	}
	return nil
}

// completeTransfers delivers the sale's transfers still in flight (a borrower
// died between debit and credit, or is delivering right now: delivering twice is
// harmless) and returns how many it found.
func (s *Store) completeTransfers(ctx context.Context, sale *flashsale.Sale) (int, error) {
	var pending []transfer
	for i, db := range s.shards {
		rows, err := db.QueryContext(ctx, `SELECT transfer_id, to_shard, units FROM allotment_transfers
			WHERE sale_id = ? AND delivered_at IS NULL AND from_shard = ?`, sale.ID, i)
		if err != nil {
			return 0, fmt.Errorf("mysqlstore: transfers in flight: %w", err)
		}
		for rows.Next() {
			t := transfer{saleID: sale.ID, from: i}
			if err := rows.Scan(&t.id, &t.to, &t.units); err != nil {
				rows.Close()
				return 0, err
			}
			pending = append(pending, t)
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return 0, err
		}
	}
	for _, t := range pending {
		if err := s.deliver(ctx, sale, t); err != nil {
			return 0, err
		}
	}
	return len(pending), nil
}

// CompleteTransfers delivers the sale's allotment transfers left in flight by a
// crash (the reconciler calls it; borrowers do it on their own).
func (s *Store) CompleteTransfers(ctx context.Context, saleID string) (int, error) {
	sale, err := s.saleOf(ctx, saleID)
	if err != nil {
		return 0, err
	}
	return s.completeTransfers(ctx, sale)
}
