package mysqlstore

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/flashsale/flashsale"
)

const saleColumns = `id, sku, name, stock, price_cents, per_user_limit, starts_at, ends_at,
	payment_window_seconds, res_opens_at, res_closes_at, res_capacity, inventory, created_at,
	wr_opens_at, wr_waitlist, wr_seed`

// CreateSale inserts a sale (and, for inventory "mysql", its stock row). It
// returns flashsale.ErrConflict when the id exists.
func (s *Store) CreateSale(ctx context.Context, sale *flashsale.Sale) error {
	var opens, closes sql.NullTime
	var capacity sql.NullInt64
	if r := sale.Reservation; r != nil {
		opens = sql.NullTime{Time: r.OpensAt, Valid: true}
		closes = sql.NullTime{Time: r.ClosesAt, Valid: true}
		capacity = sql.NullInt64{Int64: int64(r.Capacity), Valid: true}
	}
	var wrOpens sql.NullTime
	var wrWaitlist sql.NullInt64
	var wrSeed []byte
	if w := sale.WaitingRoom; w != nil {
		if len(w.Seed) != flashsale.DrawSeedBytes {
			return fmt.Errorf("mysqlstore: create sale: a waiting room's seed has %d bytes, not %d", len(w.Seed), flashsale.DrawSeedBytes)
		}
		wrOpens = sql.NullTime{Time: w.OpensAt, Valid: true}
		wrWaitlist = sql.NullInt64{Int64: int64(w.Waitlist), Valid: true}
		wrSeed = w.Seed
	}
	err := inTx(ctx, s.meta, func(tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx, `INSERT INTO sales (`+saleColumns+`)
			VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)`,
			sale.ID, sale.SKU, sale.Name, sale.Stock, sale.PriceCents, sale.PerUserLimit,
			sale.StartsAt, sale.EndsAt, sale.PaymentWindowSeconds, opens, closes, capacity,
			string(sale.Inventory), sale.CreatedAt, wrOpens, wrWaitlist, wrSeed)
		if err == nil && sale.WaitingRoom != nil {
			_, err = tx.ExecContext(ctx, `INSERT INTO waiting_counts (sale_id, n) VALUES (?, 0)`, sale.ID)
		}
		if err != nil || sale.Inventory != flashsale.InventoryMySQL {
			return err
		}
		_, err = tx.ExecContext(ctx, `INSERT INTO inventory (sale_id, total, available, held, sold) VALUES (?,?,?,0,0)`,
			sale.ID, sale.Stock, sale.Stock)
		return err
	})
	if isMySQLError(err, errDupKey) {
		return flashsale.Errorf(flashsale.CodeConflict, "sale %q already exists", sale.ID)
	}
	if err != nil {
		return fmt.Errorf("mysqlstore: create sale: %w", err)
	}
	return nil
}

type scanner interface{ Scan(...any) error }

func scanSale(row scanner) (*flashsale.Sale, error) {
	var sale flashsale.Sale
	var opens, closes sql.NullTime
	var capacity sql.NullInt64
	var inventory string
	var wrOpens sql.NullTime
	var wrWaitlist sql.NullInt64
	var wrSeed []byte
	err := row.Scan(&sale.ID, &sale.SKU, &sale.Name, &sale.Stock, &sale.PriceCents, &sale.PerUserLimit,
		&sale.StartsAt, &sale.EndsAt, &sale.PaymentWindowSeconds, &opens, &closes, &capacity,
		&inventory, &sale.CreatedAt, &wrOpens, &wrWaitlist, &wrSeed)
	if err != nil {
		return nil, err
	}
	sale.Inventory = flashsale.Inventory(inventory)
	if opens.Valid {
		sale.Reservation = &flashsale.Reservation{OpensAt: opens.Time, ClosesAt: closes.Time, Capacity: int(capacity.Int64)}
	}
	if wrOpens.Valid {
		sale.WaitingRoom = &flashsale.WaitingRoom{OpensAt: wrOpens.Time, Waitlist: int(wrWaitlist.Int64), Seed: wrSeed}
	}
	return &sale, nil
}

// GetSale returns the sale or flashsale.ErrNotFound.
func (s *Store) GetSale(ctx context.Context, id string) (*flashsale.Sale, error) {
	sale, err := scanSale(s.meta.QueryRowContext(ctx, `SELECT `+saleColumns+` FROM sales WHERE id = ?`, id))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, flashsale.Errorf(flashsale.CodeNotFound, "no sale %q", id)
	}
	if err != nil {
		return nil, fmt.Errorf("mysqlstore: get sale: %w", err)
	}
	return sale, nil
}

// ListSales returns the sales that end after since, oldest first.
func (s *Store) ListSales(ctx context.Context, since time.Time) ([]*flashsale.Sale, error) {
	rows, err := s.meta.QueryContext(ctx, `SELECT `+saleColumns+` FROM sales WHERE ends_at > ? ORDER BY created_at`, since)
	if err != nil {
		return nil, fmt.Errorf("mysqlstore: list sales: %w", err)
	}
	defer rows.Close()
	var sales []*flashsale.Sale
	for rows.Next() {
		sale, err := scanSale(rows)
		if err != nil {
			return nil, fmt.Errorf("mysqlstore: list sales: %w", err)
		}
		sales = append(sales, sale)
	}
	return sales, rows.Err()
}
