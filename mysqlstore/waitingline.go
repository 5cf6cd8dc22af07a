package mysqlstore

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/flashsale/flashsale"
	"github.com/flashsale/flashsale/internal/groupcommit"
)

// The waiting rooms' lines live in the meta database, table waiting_line (see
// its migration for the columns): one row per ticket that entered a line, its
// line_key giving its place. The line is read in line_key order through
// ix_line; the tickets still waiting through ix_status.

// LineEntries counts the tickets waiting in the sale's line (its
// waiting_counts row; 0 for a sale without one).
func (s *Store) LineEntries(ctx context.Context, saleID string) (int, error) {
	var n int
	err := s.meta.QueryRowContext(ctx, `SELECT n FROM waiting_counts WHERE sale_id = ?`, saleID).Scan(&n)
	if errors.Is(err, sql.ErrNoRows) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("mysqlstore: line entries: %w", err)
	}
	return n, nil
}

// EnterLine records t (one sale, status waiting, a fresh id) in its sale's
// line with key, entered at `at`, unless its user already waits there. It
// returns the user's waiting ticket and whether it is t. With max >= 0 it
// refuses (flashsale.ErrSoldOut) an entry when max tickets already wait.
//
// Entries are written in batches (see enterLines): a crowd entering a line
// before its opening costs one transaction per batch, not one per entry.
func (s *Store) EnterLine(ctx context.Context, t *flashsale.Ticket, key string, at time.Time, max int) (*flashsale.Ticket, bool, error) {
	r, err := s.entries.Do(ctx, lineEntry{t: t, key: key, at: at, max: max})
	if err != nil {
		return nil, false, err
	}
	if r.fresh {
		s.saw(t.SaleID, map[string]string{t.ID: key}, time.Now())
	}
	return r.t, r.fresh, nil
}

// lineEntry is one EnterLine call; lineEntered its answer.
type lineEntry struct {
	t   *flashsale.Ticket
	key string
	at  time.Time
	max int
}

type lineEntered struct {
	t     *flashsale.Ticket
	fresh bool
}

// enterLines records a batch of entries in one transaction, per sale: it
// locks the sale's waiting_counts row (so the count, and with it every
// entry's bound, is exact however many processes enter), reads which of the
// batch's users already wait, then inserts the others in arrival order while
// the count stays below each entry's max, and adds them to the count. A
// user twice in the batch gets the first entry's ticket for both.
func (s *Store) enterLines(ctx context.Context, batch []lineEntry) ([]groupcommit.Result[lineEntered], error) {
	out := make([]groupcommit.Result[lineEntered], len(batch))
	bySale := map[string][]int{}
	for i, e := range batch {
		bySale[e.t.SaleID] = append(bySale[e.t.SaleID], i)
	}
	for saleID, idx := range bySale {
		err := inTx(ctx, s.meta, func(tx *sql.Tx) error {
			return enterSaleLine(ctx, tx, saleID, batch, idx, out)
		})
		if err != nil {
			err = fmt.Errorf("mysqlstore: enter line: %w", err)
			for _, i := range idx {
				out[i] = groupcommit.Result[lineEntered]{Err: err}
			}
		}
	}
	return out, nil
}

// enterSaleLine is enterLines' transaction for the entries idx of one sale;
// it fills their results in out (a retried transaction fills them again).
func enterSaleLine(ctx context.Context, tx *sql.Tx, saleID string, batch []lineEntry, idx []int, out []groupcommit.Result[lineEntered]) error {
	var n int
	err := tx.QueryRowContext(ctx, `SELECT n FROM waiting_counts WHERE sale_id = ? FOR UPDATE`, saleID).Scan(&n)
	if err != nil {
		return fmt.Errorf("the line's count: %w", err)
	}
	users := make([]any, 0, len(idx)+1)
	users = append(users, saleID)
	for _, i := range idx {
		users = append(users, batch[i].t.UserID)
	}
	waiting, err := scanLineTickets(tx.QueryContext(ctx, `SELECT `+lineColumns+` FROM waiting_line
		WHERE sale_id = ? AND live_user IN (`+marks(len(idx))+`)`, users...))
	if err != nil {
		return err
	}
	of := map[string]*flashsale.Ticket{}
	for _, t := range waiting {
		of[t.UserID] = t
	}
	var rows []any
	added := 0
	for _, i := range idx {
		e := batch[i]
		if t, ok := of[e.t.UserID]; ok {
			out[i] = groupcommit.Result[lineEntered]{Out: lineEntered{t: t}}
			continue
		}
		if e.max >= 0 && n+added >= e.max {
			out[i] = groupcommit.Result[lineEntered]{Err: flashsale.ErrSoldOut}
			continue
		}
		of[e.t.UserID] = e.t
		added++
		rows = append(rows, e.t.ID, e.t.SaleID, e.t.UserID, e.t.Quantity, e.key, string(flashsale.TicketWaiting), e.at, e.t.UserID)
		out[i] = groupcommit.Result[lineEntered]{Out: lineEntered{t: e.t, fresh: true}}
	}
	if added == 0 {
		return nil
	}
	_, err = tx.ExecContext(ctx, `INSERT INTO waiting_line
		(ticket_id, sale_id, user_id, quantity, line_key, status, entered_at, live_user)
		VALUES `+placeholders(added, 8), rows...)
	if err != nil {
		return err
	}
	_, err = tx.ExecContext(ctx, `UPDATE waiting_counts SET n = n + ? WHERE sale_id = ?`, added, saleID)
	return err
}

const lineColumns = `ticket_id, sale_id, user_id, quantity, status`

func scanLineTicket(row scanner) (*flashsale.Ticket, error) {
	var t flashsale.Ticket
	var status string
	if err := row.Scan(&t.ID, &t.SaleID, &t.UserID, &t.Quantity, &status); err != nil {
		return nil, err
	}
	t.Status = flashsale.TicketStatus(status)
	if status == lineAdmitted {
		t.Status = flashsale.TicketQueued // decided: the orders' book knows better
	}
	return &t, nil
}

// waitingTicket is the user's waiting ticket in the sale, or sql.ErrNoRows.
func (s *Store) waitingTicket(ctx context.Context, saleID, userID string) (*flashsale.Ticket, error) {
	return scanLineTicket(s.meta.QueryRowContext(ctx, `SELECT `+lineColumns+` FROM waiting_line
		WHERE sale_id = ? AND live_user = ?`, saleID, userID))
}

// GetLineTicket returns a ticket that entered a line, as the line has it
// (waiting, or the status it left with), or an error wrapping
// flashsale.ErrNotFound.
//
// A waiting ticket's key is remembered for WaitingPlaces.
func (s *Store) GetLineTicket(ctx context.Context, id string) (*flashsale.Ticket, error) {
	var key string
	t, err := scanLineTicket(scannerFunc(func(dest ...any) error {
		return s.meta.QueryRowContext(ctx, `SELECT `+lineColumns+`, line_key FROM waiting_line WHERE ticket_id = ?`, id).
			Scan(append(dest, &key)...)
	}))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, flashsale.Errorf(flashsale.CodeNotFound, "no ticket %q in a line", id)
	}
	if err != nil {
		return nil, fmt.Errorf("mysqlstore: line ticket: %w", err)
	}
	if t.Status == flashsale.TicketWaiting {
		s.saw(t.SaleID, map[string]string{t.ID: key}, time.Now())
	}
	return t, nil
}

// scannerFunc is a scanner of a function.
type scannerFunc func(dest ...any) error

func (f scannerFunc) Scan(dest ...any) error { return f(dest...) }

// LeaveLine makes the user's waiting ticket id cancelled and returns it; a
// ticket already cancelled is returned unchanged. A ticket of the line in any
// other status is flashsale.ErrConflict; one not in a line (or someone
// else's) flashsale.ErrNotFound.
func (s *Store) LeaveLine(ctx context.Context, userID, id string, at time.Time) (*flashsale.Ticket, error) {
	err := inTx(ctx, s.meta, func(tx *sql.Tx) error {
		var saleID string
		err := tx.QueryRowContext(ctx, `SELECT sale_id FROM waiting_line WHERE ticket_id = ? AND user_id = ? AND status = ? FOR UPDATE`,
			id, userID, string(flashsale.TicketWaiting)).Scan(&saleID)
		if errors.Is(err, sql.ErrNoRows) {
			return nil // not waiting: answered from the row below
		}
		if err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, `UPDATE waiting_line SET status = ?, live_user = NULL, left_at = ? WHERE ticket_id = ?`,
			string(flashsale.TicketCancelled), at, id); err != nil {
			return err
		}
		_, err = tx.ExecContext(ctx, `UPDATE waiting_counts SET n = n - 1 WHERE sale_id = ?`, saleID)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("mysqlstore: leave line: %w", err)
	}
	t, err := s.GetLineTicket(ctx, id)
	switch {
	case err != nil:
		return nil, err
	case t.UserID != userID:
		return nil, flashsale.Errorf(flashsale.CodeNotFound, "no ticket %q", id)
	case t.Status != flashsale.TicketCancelled:
		return nil, flashsale.Errorf(flashsale.CodeConflict, "ticket %q is %s, not waiting", id, t.Status)
	}
	return t, nil
}

// LinePosition returns the position of the waiting ticket id in its sale's
// line (0 when it is not waiting there): 1 + the line's tickets ahead of it
// still waiting or released and not yet seen decided (queued: they were
// released in line order, so all of them are ahead). Its key is read, then
// its rank in the line's snapshot (see lineRanks) gives the position, counted
// exactly over the index when that rank is near the front (or the snapshot
// cannot be read). Either way it never grows: a snapshot is replaced only by
// a later one, and tickets only leave the part of a line ahead of a key.
func (s *Store) LinePosition(ctx context.Context, saleID, id string) (int, error) {
	var key string
	err := s.meta.QueryRowContext(ctx, `SELECT line_key FROM waiting_line WHERE ticket_id = ? AND status = ?`,
		id, string(flashsale.TicketWaiting)).Scan(&key)
	if errors.Is(err, sql.ErrNoRows) {
		return 0, nil
	}
	if err == nil {
		s.saw(saleID, map[string]string{id: key}, time.Now())
		if snap, err := s.snapshot(ctx, saleID); err == nil {
			if ahead := snap.ahead(key); ahead >= countedBelow {
				return ahead + 1, nil
			}
		}
	}
	var n int
	if err == nil {
		err = s.meta.QueryRowContext(ctx, `SELECT COUNT(*) FROM waiting_line WHERE sale_id = ? AND status IN (?, ?) AND line_key <= ?`,
			saleID, string(flashsale.TicketWaiting), string(flashsale.TicketQueued), key).Scan(&n)
	}
	if err != nil {
		return 0, fmt.Errorf("mysqlstore: line position: %w", err)
	}
	return n, nil
}

// drawnKeys is the condition on line_key and left_at of a drawn entry of a
// sale that starts at the second argument: entered before starts_at (key
// '0' + score) and still in the line then.
const drawnKeys = `line_key < '1' AND (left_at IS NULL OR left_at >= ?)`

// DrawnEntries counts the entries of the sale's draw: the tickets waiting in
// its line at starts_at.
func (s *Store) DrawnEntries(ctx context.Context, sale *flashsale.Sale) (int, error) {
	var n int
	err := s.meta.QueryRowContext(ctx, `SELECT COUNT(*) FROM waiting_line WHERE sale_id = ? AND `+drawnKeys,
		sale.ID, sale.StartsAt).Scan(&n)
	if err != nil {
		return 0, fmt.Errorf("mysqlstore: drawn entries: %w", err)
	}
	return n, nil
}

// DrawScores returns at most limit scores of the sale's draw greater than
// after ("" for the first), in ascending order.
func (s *Store) DrawScores(ctx context.Context, sale *flashsale.Sale, after string, limit int) ([]string, error) {
	keys, err := queryStrings(ctx, s.meta, `SELECT line_key FROM waiting_line
		WHERE sale_id = ? AND line_key > ? AND `+drawnKeys+` ORDER BY line_key LIMIT ?`,
		sale.ID, "0"+after, sale.StartsAt, limit)
	if err != nil {
		return nil, fmt.Errorf("mysqlstore: draw scores: %w", err)
	}
	for i, k := range keys {
		keys[i] = k[1:]
	}
	return keys, nil
}

// lineAdmitted is the status of a line row whose ticket the releaser
// published and saw decided: the orders' book has it from then on (a lookup
// that reaches the line row anyway reads it as queued).
const lineAdmitted = "admitted"

// lineTickets runs a query of line rows.
func (s *Store) lineTickets(ctx context.Context, query string, args ...any) ([]*flashsale.Ticket, error) {
	return scanLineTickets(s.meta.QueryContext(ctx, query, args...))
}

// scanLineTickets reads the line rows of a query's answer.
func scanLineTickets(rows *sql.Rows, err error) ([]*flashsale.Ticket, error) {
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []*flashsale.Ticket
	for rows.Next() {
		t, err := scanLineTicket(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, t)
	}
	return out, rows.Err()
}

// ReleasedTickets returns the sale's line tickets the releaser published
// and has not seen decided yet (status queued).
func (s *Store) ReleasedTickets(ctx context.Context, saleID string) ([]*flashsale.Ticket, error) {
	ts, err := s.lineTickets(ctx, `SELECT `+lineColumns+` FROM waiting_line WHERE sale_id = ? AND status = ?`,
		saleID, string(flashsale.TicketQueued))
	if err != nil {
		return nil, fmt.Errorf("mysqlstore: released tickets: %w", err)
	}
	return ts, nil
}

// NextWaiting returns the first n tickets waiting in the sale's line, in
// line order.
func (s *Store) NextWaiting(ctx context.Context, saleID string, n int) ([]*flashsale.Ticket, error) {
	ts, err := s.lineTickets(ctx, `SELECT `+lineColumns+` FROM waiting_line WHERE sale_id = ? AND status = ?
		ORDER BY line_key LIMIT ?`, saleID, string(flashsale.TicketWaiting), n)
	if err != nil {
		return nil, fmt.Errorf("mysqlstore: next waiting: %w", err)
	}
	return ts, nil
}

// LeaveLineAs moves the sale's waiting tickets ids out of the line with
// status (queued: released into the pipeline; sold_out: ended by the
// releaser) at `at`; tickets no longer waiting are left alone.
func (s *Store) LeaveLineAs(ctx context.Context, saleID string, ids []string, status flashsale.TicketStatus, at time.Time) error {
	if len(ids) == 0 {
		return nil
	}
	args := []any{string(status), at, saleID, string(flashsale.TicketWaiting)}
	for _, id := range ids {
		args = append(args, id)
	}
	err := inTx(ctx, s.meta, func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, `UPDATE waiting_line `+byTicketIDs+` SET status = ?, left_at = ?, live_user = NULL
			WHERE sale_id = ? AND status = ? AND ticket_id IN (`+marks(len(ids))+`)`, args...)
		if err != nil {
			return err
		}
		n, err := res.RowsAffected()
		if err != nil || n == 0 {
			return err
		}
		_, err = tx.ExecContext(ctx, `UPDATE waiting_counts SET n = n - ? WHERE sale_id = ?`, n, saleID)
		return err
	})
	if err != nil {
		return fmt.Errorf("mysqlstore: leave line: %w", err)
	}
	return nil
}

// MarkAdmitted records that the released tickets ids were decided.
func (s *Store) MarkAdmitted(ctx context.Context, ids []string) error {
	if len(ids) == 0 {
		return nil
	}
	args := []any{lineAdmitted, string(flashsale.TicketQueued)}
	for _, id := range ids {
		args = append(args, id)
	}
	_, err := s.meta.ExecContext(ctx, `UPDATE waiting_line `+byTicketIDs+` SET status = ? WHERE status = ? AND ticket_id IN (`+marks(len(ids))+`)`, args...)
	if err != nil {
		return fmt.Errorf("mysqlstore: mark admitted: %w", err)
	}
	return nil
}

// byTicketIDs makes an UPDATE of a list of tickets find them by primary key.
// Given thousands of ids out of a line of a few times as many, MariaDB plans
// a scan of the whole table, which locks every row of the line until the
// update commits: the 16,000-user waiting-room bench's ending of 5,000
// tickets then waited on the line's own traffic and hit the connection's
// 30 s read timeout on every pass, leaving 14,400 tickets waiting.
const byTicketIDs = "FORCE INDEX (PRIMARY)"

// EndWaiting ends sold_out every ticket waiting in the sale's line but the
// first keep, and returns how many it ended. It ends them from the back of
// the line, 1,000 a transaction: the tickets near the front are the ones
// whose positions are counted exactly (see LinePosition), and a count over
// index entries an open transaction changed reads each one's older version.
// Ending the front first, 5,000 at a time, made those counts slow enough that
// the 16,000-user waiting-room bench's ending timed out on every pass.
func (s *Store) EndWaiting(ctx context.Context, saleID string, keep int, at time.Time) (int, error) {
	waiting := []any{saleID, string(flashsale.TicketWaiting)}
	ended := 0
	for {
		// The key of the last ticket kept, read again each batch (tickets
		// ahead may have left meanwhile); every key is greater than "".
		after := ""
		if keep > 0 {
			keys, err := queryStrings(ctx, s.meta, `SELECT line_key FROM waiting_line WHERE sale_id = ? AND status = ?
				ORDER BY line_key LIMIT ?, 1`, append(waiting, keep-1)...)
			if err != nil {
				return ended, fmt.Errorf("mysqlstore: end waiting: %w", err)
			}
			if len(keys) == 0 {
				return ended, nil // keep or fewer wait
			}
			after = keys[0]
		}
		ids, err := queryStrings(ctx, s.meta, `SELECT ticket_id FROM waiting_line WHERE sale_id = ? AND status = ? AND line_key > ?
			ORDER BY line_key DESC LIMIT 1000`, append(waiting, after)...)
		if err != nil {
			return ended, fmt.Errorf("mysqlstore: end waiting: %w", err)
		}
		if len(ids) == 0 {
			return ended, nil
		}
		if err := s.LeaveLineAs(ctx, saleID, ids, flashsale.TicketSoldOut, at); err != nil {
			return ended, err
		}
		ended += len(ids)
	}
}
