package mysqlstore

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/flashsale/flashsale"
)

// This file is the stock of sales with inventory "mysql": a row per sale held
// with `UPDATE ... SET available = available - n WHERE available >= n`, and a row
// per ticket that makes each operation idempotent.

// lockHold locks the sale's stock row, then reads a ticket's hold state
// (HoldNone if absent). Every transaction on a sale's holds takes the sale's row
// first: that serialises them (the hot row is the design being measured) and
// keeps gap locks on absent hold rows from deadlocking concurrent inserts.
func lockHold(ctx context.Context, tx *sql.Tx, saleID, ticketID string) (flashsale.Hold, error) {
	var one int
	if err := tx.QueryRowContext(ctx, `SELECT 1 FROM inventory WHERE sale_id = ? FOR UPDATE`, saleID).Scan(&one); err != nil {
		return flashsale.Hold{}, err
	}
	var state string
	var q int
	err := tx.QueryRowContext(ctx, `SELECT state, quantity FROM inventory_holds WHERE ticket_id = ?`, ticketID).Scan(&state, &q)
	if errors.Is(err, sql.ErrNoRows) {
		return flashsale.Hold{}, nil
	}
	if err != nil {
		return flashsale.Hold{}, err
	}
	return flashsale.Hold{Kind: flashsale.HoldKind(state[0]), Quantity: q}, nil
}

func setHold(ctx context.Context, tx *sql.Tx, saleID, ticketID string, q int, kind flashsale.HoldKind) error {
	_, err := tx.ExecContext(ctx, `INSERT INTO inventory_holds (ticket_id, sale_id, quantity, state, updated_at) VALUES (?,?,?,?,?)
		ON DUPLICATE KEY UPDATE state = VALUES(state), updated_at = VALUES(updated_at)`,
		ticketID, saleID, q, string(rune(kind)), time.Now().UTC())
	return err
}

// StockHold is one ticket's request for units of a mysql-inventory sale.
type StockHold struct {
	TicketID string
	Quantity int
}

// HoldStock holds units of the sale for each ticket, in order, or records it
// sold out, in one transaction: the sale's row is locked once, and each ticket
// not seen before runs `UPDATE inventory SET available = available - n WHERE
// sale_id = ? AND available >= n`. A ticket already seen returns its state
// unchanged. The i-th result belongs to the i-th ticket.
func (s *Store) HoldStock(ctx context.Context, saleID string, holds []StockHold) ([]flashsale.Hold, error) {
	out := make([]flashsale.Hold, len(holds))
	err := inTx(ctx, s.meta, func(tx *sql.Tx) error {
		for i, h := range holds {
			prior, err := lockHold(ctx, tx, saleID, h.TicketID)
			if err != nil {
				return err
			}
			if prior.Kind != flashsale.HoldNone {
				out[i] = prior
				continue
			}
			res, err := tx.ExecContext(ctx, `UPDATE inventory SET available = available - ?, held = held + ?
				WHERE sale_id = ? AND available >= ?`, h.Quantity, h.Quantity, saleID, h.Quantity)
			if err != nil {
				return err
			}
			out[i] = flashsale.Hold{Kind: flashsale.HoldSoldOut}
			if n, _ := res.RowsAffected(); n == 1 {
				out[i] = flashsale.Hold{Kind: flashsale.HoldHeld, Quantity: h.Quantity}
			}
			if err := setHold(ctx, tx, saleID, h.TicketID, h.Quantity, out[i].Kind); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("mysqlstore: hold stock: %w", err)
	}
	return out, nil
}

// moveHold applies a transition of a held ticket (release: H → R, confirm: H → S)
// to the sale's row, once, and returns the state before. A ticket never held is
// marked released when released, so it can never be held afterwards.
func (s *Store) moveHold(ctx context.Context, saleID, ticketID string, to flashsale.HoldKind) (flashsale.Hold, error) {
	var before flashsale.Hold
	err := inTx(ctx, s.meta, func(tx *sql.Tx) error {
		h, err := lockHold(ctx, tx, saleID, ticketID)
		if err != nil {
			return err
		}
		before = h
		switch {
		case h.Kind == flashsale.HoldHeld && to == flashsale.HoldReleased:
			_, err = tx.ExecContext(ctx, `UPDATE inventory SET available = available + ?, held = held - ? WHERE sale_id = ?`, h.Quantity, h.Quantity, saleID)
		case h.Kind == flashsale.HoldHeld && to == flashsale.HoldSold:
			_, err = tx.ExecContext(ctx, `UPDATE inventory SET held = held - ?, sold = sold + ? WHERE sale_id = ?`, h.Quantity, h.Quantity, saleID)
		case h.Kind == flashsale.HoldNone && to == flashsale.HoldReleased:
		default:
			return nil
		}
		if err != nil {
			return err
		}
		return setHold(ctx, tx, saleID, ticketID, h.Quantity, to)
	})
	if err != nil {
		return flashsale.Hold{}, fmt.Errorf("mysqlstore: move hold: %w", err)
	}
	return before, nil
}

// ReleaseStock gives a held ticket's units back, once.
func (s *Store) ReleaseStock(ctx context.Context, saleID, ticketID string) (flashsale.Hold, error) {
	return s.moveHold(ctx, saleID, ticketID, flashsale.HoldReleased)
}

// ConfirmStock moves a paid ticket's units from held to sold, once.
func (s *Store) ConfirmStock(ctx context.Context, saleID, ticketID string) (flashsale.Hold, error) {
	return s.moveHold(ctx, saleID, ticketID, flashsale.HoldSold)
}

// StockOf reads a mysql-inventory sale's stock.
func (s *Store) StockOf(ctx context.Context, saleID string) (flashsale.StockLevel, error) {
	var st flashsale.StockLevel
	err := s.meta.QueryRowContext(ctx, `SELECT total, available, held, sold FROM inventory WHERE sale_id = ?`, saleID).
		Scan(&st.Total, &st.Available, &st.Held, &st.Sold)
	if errors.Is(err, sql.ErrNoRows) {
		return st, flashsale.Errorf(flashsale.CodeNotFound, "no inventory for sale %q", saleID)
	}
	if err != nil {
		return st, fmt.Errorf("mysqlstore: stock: %w", err)
	}
	return st, nil
}

// RetakeStock holds a released ticket's units again (a late payment of an
// expired order), if they are all available; it returns the state before and
// whether the ticket is held (or sold) now. A ticket held or sold already is
// left as it is.
func (s *Store) RetakeStock(ctx context.Context, saleID, ticketID string) (before flashsale.Hold, ok bool, err error) {
	err = inTx(ctx, s.meta, func(tx *sql.Tx) error {
		h, err := lockHold(ctx, tx, saleID, ticketID)
		before, ok = h, h.Kind == flashsale.HoldHeld || h.Kind == flashsale.HoldSold
		if err != nil || h.Kind != flashsale.HoldReleased {
			return err
		}
		res, err := tx.ExecContext(ctx, `UPDATE inventory SET available = available - ?, held = held + ?
			WHERE sale_id = ? AND available >= ?`, h.Quantity, h.Quantity, saleID, h.Quantity)
		if err != nil {
			return err
		}
		if n, _ := res.RowsAffected(); n == 0 {
			return nil
		}
		ok = true
		return setHold(ctx, tx, saleID, ticketID, h.Quantity, flashsale.HoldHeld)
	})
	if err != nil {
		return flashsale.Hold{}, false, fmt.Errorf("mysqlstore: retake stock: %w", err)
	}
	return before, ok, nil
}

// ReturnStock puts a sold ticket's units back on sale down to keep units sold
// (its order's quantity less everything returned so far), once: a ticket
// already at or below keep is left as it is. It returns the state before.
func (s *Store) ReturnStock(ctx context.Context, saleID, ticketID string, keep int) (flashsale.Hold, error) {
	var before flashsale.Hold
	err := inTx(ctx, s.meta, func(tx *sql.Tx) error {
		h, err := lockHold(ctx, tx, saleID, ticketID)
		before = h
		if err != nil || h.Kind != flashsale.HoldSold || h.Quantity <= keep {
			return err
		}
		d := h.Quantity - keep
		if _, err := tx.ExecContext(ctx, `UPDATE inventory SET available = available + ?, sold = sold - ? WHERE sale_id = ?`, d, d, saleID); err != nil {
			return err
		}
		_, err = tx.ExecContext(ctx, `UPDATE inventory_holds SET quantity = ?, updated_at = ? WHERE ticket_id = ?`, keep, time.Now().UTC(), ticketID)
		return err
	})
	if err != nil {
		return flashsale.Hold{}, fmt.Errorf("mysqlstore: return stock: %w", err)
	}
	return before, nil
}

// Inventory reads a mysql-inventory sale's stock row and every ticket's hold
// in one consistent snapshot (a read-only REPEATABLE READ transaction), for
// the reconciler. A sale without a row is flashsale.ErrNotFound.
func (s *Store) Inventory(ctx context.Context, saleID string) (flashsale.InventorySnapshot, error) {
	inv := flashsale.InventorySnapshot{Holds: map[string]flashsale.Hold{}}
	err := func() error {
		tx, err := s.meta.BeginTx(ctx, &sql.TxOptions{Isolation: sql.LevelRepeatableRead, ReadOnly: true})
		if err != nil {
			return err
		}
		defer tx.Rollback()
		st := &inv.Stock
		err = tx.QueryRowContext(ctx, `SELECT total, available, held, sold FROM inventory WHERE sale_id = ?`, saleID).
			Scan(&st.Total, &st.Available, &st.Held, &st.Sold)
		if errors.Is(err, sql.ErrNoRows) {
			return flashsale.Errorf(flashsale.CodeNotFound, "no inventory for sale %q", saleID)
		}
		if err != nil {
			return err
		}
		rows, err := tx.QueryContext(ctx, `SELECT ticket_id, state, quantity FROM inventory_holds WHERE sale_id = ?`, saleID)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			var id, state string
			var q int
			if err := rows.Scan(&id, &state, &q); err != nil {
				return err
			}
			inv.Holds[id] = flashsale.Hold{Kind: flashsale.HoldKind(state[0]), Quantity: q}
		}
		return rows.Err()
	}()
	if err != nil {
		if flashsale.ErrorCode(err) != flashsale.CodeInternal {
			return inv, err
		}
		return inv, fmt.Errorf("mysqlstore: inventory: %w", err)
	}
	return inv, nil
}
