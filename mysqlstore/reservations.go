package mysqlstore

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/flashsale/flashsale"
	"github.com/flashsale/flashsale/service"
)

// Reservations live in the meta database: one row per (sale, user) in
// reservations, and one counter row per sale in reservation_counts.
//
// The capacity is exact because both are written in one transaction: the
// reservation row is inserted (its primary key makes a user's second attempt a
// duplicate), then the counter is incremented only while it is below the
// capacity. The conditional UPDATE reads the latest committed counter under the
// row's exclusive lock, so however many transactions race, at most capacity of
// them commit; the others roll their reservation row back. Reservations are never
// deleted, so a full sale stays full. The counter row is created with n = 0 by
// the sale's first reservation (INSERT IGNORE, then the transaction runs again).
// The counter is the hot row of a reservation rush (~7k/s here); the reservation
// service stops sending transactions to a sale it saw full.

// errNoCounter: the sale has no counter row yet; it is created (outside the
// transaction, so that racing first reservations do not deadlock on it) and
// the transaction runs again.
var errNoCounter = errors.New("mysqlstore: no reservation counter yet")

// Reserve records r unless its user already reserved the sale, counting it
// against capacity (0 = unlimited). It returns the stored reservation and
// created=true, or the user's existing reservation and created=false. When the
// sale already has capacity reservations it returns an error with code
// reservations_full and records nothing. r.ReservedAt should be truncated to
// microseconds (the column's precision) so that the answer equals what a later
// read returns.
func (s *Store) Reserve(ctx context.Context, r *flashsale.UserReservation, capacity int) (*flashsale.UserReservation, bool, error) {
	backoff := 2 * time.Millisecond
	for attempt := 0; ; attempt++ {
		created, err := s.reserveOnce(ctx, r, capacity)
		switch {
		case err == nil && created:
			return r, true, nil
		case err == nil:
			existing, err := s.GetReservation(ctx, r.SaleID, r.UserID)
			if err != nil {
				return nil, false, err
			}
			return existing, false, nil
		case flashsale.ErrorCode(err) == flashsale.CodeReservationsFull:
			return nil, false, err
		case errors.Is(err, errNoCounter) && attempt < 8:
			_, err := s.meta.ExecContext(ctx, `INSERT IGNORE INTO reservation_counts (sale_id, n) VALUES (?, 0)`, r.SaleID)
			if err != nil && !isMySQLError(err, errDeadlock, errLockWait) {
				return nil, false, fmt.Errorf("mysqlstore: reserve: %w", err)
			}
		case isMySQLError(err, errDeadlock, errLockWait) && attempt < 8:
			if !service.Sleep(ctx, backoff) {
				return nil, false, ctx.Err()
			}
			backoff *= 2
		default:
			return nil, false, fmt.Errorf("mysqlstore: reserve: %w", err)
		}
	}
}

// reserveOnce runs the reservation transaction once. It returns created=false
// with a nil error when the user had already reserved.
//
// READ COMMITTED: the conditional UPDATE then takes no gap lock when the
// counter row does not exist yet, and it evaluates its condition on the latest
// committed counter (waiting for the row's lock when another transaction holds
// it, then re-reading), which is what makes the count exact.
func (s *Store) reserveOnce(ctx context.Context, r *flashsale.UserReservation, capacity int) (created bool, err error) {
	tx, err := s.meta.BeginTx(ctx, &sql.TxOptions{Isolation: sql.LevelReadCommitted})
	if err != nil {
		return false, err
	}
	defer func() {
		if !created {
			tx.Rollback()
		}
	}()
	_, err = tx.ExecContext(ctx, `INSERT INTO reservations (sale_id, user_id, reserved_at) VALUES (?,?,?)`,
		r.SaleID, r.UserID, r.ReservedAt)
	if isMySQLError(err, errDupKey) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	res, err := tx.ExecContext(ctx, `UPDATE reservation_counts SET n = n + 1
		WHERE sale_id = ? AND (? = 0 OR n < ?)`, r.SaleID, capacity, capacity)
	if err != nil {
		return false, err
	}
	n, err := res.RowsAffected()
	if err != nil {
		return false, err
	}
	if n == 0 {
		// Either the sale is full or this is its first reservation.
		var count int
		err := tx.QueryRowContext(ctx, `SELECT n FROM reservation_counts WHERE sale_id = ?`, r.SaleID).Scan(&count)
		switch {
		case errors.Is(err, sql.ErrNoRows):
			return false, errNoCounter
		case err != nil:
			return false, err
		case capacity > 0 && count >= capacity:
			return false, flashsale.Errorf(flashsale.CodeReservationsFull,
				"all %d reservations of sale %q are taken", capacity, r.SaleID)
		default:
			// The row was created after the UPDATE looked: run again.
			return false, errNoCounter
		}
	}
	if err := tx.Commit(); err != nil {
		return false, err
	}
	return true, nil
}

// GetReservation returns the user's reservation of the sale, or an error with
// code not_found.
func (s *Store) GetReservation(ctx context.Context, saleID, userID string) (*flashsale.UserReservation, error) {
	r := &flashsale.UserReservation{}
	err := s.meta.QueryRowContext(ctx, `SELECT sale_id, user_id, reserved_at FROM reservations
		WHERE sale_id = ? AND user_id = ?`, saleID, userID).Scan(&r.SaleID, &r.UserID, &r.ReservedAt)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, flashsale.Errorf(flashsale.CodeNotFound, "user has not reserved sale %q", saleID)
	}
	if err != nil {
		return nil, fmt.Errorf("mysqlstore: get reservation: %w", err)
	}
	r.ReservedAt = r.ReservedAt.UTC()
	return r, nil
}

// ReservedUsers returns up to limit ids of users who reserved the sale, in
// byte order, starting after the id after ("" for the first page).
func (s *Store) ReservedUsers(ctx context.Context, saleID, after string, limit int) ([]string, error) {
	users, err := queryStrings(ctx, s.meta, `SELECT user_id FROM reservations
		WHERE sale_id = ? AND user_id > ? ORDER BY user_id LIMIT ?`, saleID, after, limit)
	if err != nil {
		return nil, fmt.Errorf("mysqlstore: reserved users: %w", err)
	}
	return users, nil
}

// ReservationCount is how many users reserved the sale (0 when none did).
func (s *Store) ReservationCount(ctx context.Context, saleID string) (int, error) {
	var n int
	err := s.meta.QueryRowContext(ctx, `SELECT n FROM reservation_counts WHERE sale_id = ?`, saleID).Scan(&n)
	if errors.Is(err, sql.ErrNoRows) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("mysqlstore: reservation count: %w", err)
	}
	return n, nil
}
