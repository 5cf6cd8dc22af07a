package e2e

// The soak's watch (see TestSoak): the invariants checked at every poll while
// the crowd buys and the faults land.

import (
	"context"
	"database/sql"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"time"
)

const (
	soakPollEvery = 250 * time.Millisecond
	// An order still pending this long after its pay_by breaks guarantee 5
	// ("expired within seconds"): the sweeper runs every 5 s and the longest
	// fault (Redis unreachable) lasts 20 s, so 60 s is beyond any honest
	// delay.
	soakExpiryLate = 60 * time.Second
)

// startWatch starts the pollers and returns the function that stops them.
func (s *soak) startWatch() (stop func()) {
	quit := make(chan struct{})
	var wg sync.WaitGroup
	loop := func(f func()) {
		defer wg.Done()
		tick := time.NewTicker(soakPollEvery)
		defer tick.Stop()
		for {
			f()
			select {
			case <-quit:
				return
			case <-tick.C:
			}
		}
	}
	wg.Add(2 + len(s.sales))
	go loop(s.pollOrders)
	go loop(s.pollTickets)
	for _, sl := range s.sales {
		go loop(func() { s.pollView(sl) })
	}
	return func() {
		close(quit)
		wg.Wait()
	}
}

// union is one SELECT of cols over the orders of every shard database, rows
// matching where: the shards are databases of one MariaDB server, so a
// statement (or a REPEATABLE READ transaction) reads them all in one snapshot,
// a real state of the system, never a unit freed on one shard and taken on the
// other counted twice.
func (s *soak) union(cols, where string) string {
	parts := make([]string, len(s.e.ShardDBs))
	for i, db := range s.e.ShardDBs {
		parts[i] = fmt.Sprintf("SELECT %s, %d AS shard FROM `%s`.orders WHERE %s", cols, i, db, where)
	}
	return strings.Join(parts, " UNION ALL ")
}

const soakLive = "status IN ('pending_payment', 'paid')"

// pollOrders checks, in one snapshot of both shards: units in live orders per
// sale <= stock, units per user and sale <= per_user_limit, and no order
// pending soakExpiryLate past its pay_by.
func (s *soak) pollOrders() {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	err := s.inSnapshot(ctx, func(tx *sql.Tx) error {
		units := map[string]int{}
		if err := soakRows(ctx, tx, "SELECT sale_id, SUM(quantity) FROM ("+s.union("sale_id, quantity", soakLive)+") x GROUP BY sale_id",
			func(rs *sql.Rows) error {
				var id string
				var n int
				if err := rs.Scan(&id, &n); err != nil {
					return err
				}
				units[id] = n
				return nil
			}); err != nil {
			return err
		}
		for _, sl := range s.sales {
			n := units[sl.ID]
			s.mu.Lock()
			if n > sl.maxUnits {
				sl.maxUnits, sl.maxAt = n, s.elapsed()
			}
			s.mu.Unlock()
			if n > sl.Stock {
				s.violate("oversell", "sale %s: %d units in pending_payment+paid orders, stock %d; %s",
					sl.ID, n, sl.Stock, s.describeSale(ctx, tx, sl.ID))
			}
		}
		if err := soakRows(ctx, tx, "SELECT sale_id, user_id, SUM(quantity) AS n, COUNT(*), GROUP_CONCAT(CONCAT(order_id, ':', status, ':', quantity)) FROM ("+
			s.union("sale_id, user_id, quantity, order_id, status", soakLive)+") x GROUP BY sale_id, user_id HAVING n > 1",
			func(rs *sql.Rows) error {
				var sale, u, orders string
				var n, c int
				if err := rs.Scan(&sale, &u, &n, &c, &orders); err != nil {
					return err
				}
				if sl := s.saleByID[sale]; sl != nil && n > sl.Limit {
					s.violate("over-limit", "sale %s: user %s has %d units in %d live orders (%s), per_user_limit %d",
						sale, u, n, c, orders, sl.Limit)
				}
				return nil
			}); err != nil {
			return err
		}
		return soakRows(ctx, tx, "SELECT order_id, sale_id, user_id, pay_by, TIMESTAMPDIFF(SECOND, pay_by, UTC_TIMESTAMP(6)) FROM ("+
			s.union("order_id, sale_id, user_id, pay_by", fmt.Sprintf("status = 'pending_payment' AND pay_by < UTC_TIMESTAMP(6) - INTERVAL %d SECOND",
				int(soakExpiryLate.Seconds())))+") x ORDER BY pay_by LIMIT 5",
			func(rs *sql.Rows) error {
				var id, sale, u string
				var payBy time.Time
				var late int
				if err := rs.Scan(&id, &sale, &u, &payBy, &late); err != nil {
					return err
				}
				s.violate("expiry-late", "order %s of %s (sale %s) still pending_payment %d s after its pay_by %s",
					id, u, sale, late, payBy.Format(time.RFC3339))
				return nil
			})
	})
	s.mu.Lock()
	defer s.mu.Unlock()
	s.final.sqlPolls++
	if err != nil {
		s.final.sqlErrs++
		s.final.sqlLastErr = err
	}
}

// describeSale is the MySQL side of a sale for a violation's message: live
// units per shard and each shard's allotment row.
func (s *soak) describeSale(ctx context.Context, tx *sql.Tx, saleID string) string {
	var parts []string
	for i, db := range s.e.ShardDBs {
		var pending, paid int
		tx.QueryRowContext(ctx, fmt.Sprintf("SELECT COALESCE(SUM(IF(status='pending_payment', quantity, 0)), 0), "+
			"COALESCE(SUM(IF(status='paid', quantity, 0)), 0) FROM `%s`.orders WHERE sale_id = ?", db), saleID).Scan(&pending, &paid)
		allot := "no allotment row"
		var allotted, used int
		if err := tx.QueryRowContext(ctx, fmt.Sprintf("SELECT allotted, used FROM `%s`.sale_allotments WHERE sale_id = ?", db),
			saleID).Scan(&allotted, &used); err == nil {
			allot = fmt.Sprintf("allotted %d used %d", allotted, used)
		} else if err != sql.ErrNoRows {
			allot = "allotment: " + err.Error()
		}
		parts = append(parts, fmt.Sprintf("shard %d: pending %d paid %d, %s", i, pending, paid, allot))
	}
	return strings.Join(parts, "; ")
}

// inSnapshot runs f in a read-only REPEATABLE READ transaction on the MariaDB
// of the shards (one snapshot for every statement of f).
func (s *soak) inSnapshot(ctx context.Context, f func(*sql.Tx) error) error {
	tx, err := s.direct.BeginTx(ctx, &sql.TxOptions{Isolation: sql.LevelRepeatableRead, ReadOnly: true})
	if err != nil {
		return err
	}
	defer tx.Rollback()
	return f(tx)
}

func soakRows(ctx context.Context, tx *sql.Tx, q string, each func(*sql.Rows) error) error {
	rs, err := tx.QueryContext(ctx, q)
	if err != nil {
		return err
	}
	defer rs.Close()
	for rs.Next() {
		if err := each(rs); err != nil {
			return err
		}
	}
	return rs.Err()
}

// pollView reads the sale view and checks it whenever it answers 200.
func (s *soak) pollView(sl *soakSale) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	r, err := s.c.send(ctx, http.MethodGet, pathSale(sl.ID), nil, nil)
	var v saleView
	if err == nil && r.Status == http.StatusOK {
		err = r.decode(&v)
	}
	s.mu.Lock()
	sl.views[outcome(r, err)]++
	if err == nil && r.Status == http.StatusOK && v.Stock.Available < sl.minAvail {
		sl.minAvail = v.Stock.Available
	}
	s.mu.Unlock()
	switch {
	case err != nil, r.Status == http.StatusServiceUnavailable:
		return // during a fault; counted
	case r.Status >= 500:
		s.violate("http-5xx", "GET sale %s: %s", sl.ID, r)
		return
	case r.Status != http.StatusOK:
		s.violate("view-answer", "sale %s: %s", sl.ID, r)
		return
	}
	st := v.Stock
	if st.Available+st.Held+st.Sold != st.Total || st.Total != sl.Stock {
		s.violate("view-sum", "sale %s: available %d + held %d + sold %d != total %d (stock %d); %s",
			sl.ID, st.Available, st.Held, st.Sold, st.Total, sl.Stock, s.stockSnapshot(sl.ID))
	}
	if st.Available < 0 || st.Held < 0 || st.Sold < 0 {
		s.violate("view-negative", "sale %s: %+v; %s", sl.ID, st, s.stockSnapshot(sl.ID))
	}
}

// pollTickets reads a few accepted tickets in turn (never 404, see readTicket),
// also those whose users went away.
func (s *soak) pollTickets() {
	tks := s.ticketsSnapshot()
	if len(tks) == 0 {
		return
	}
	s.mu.Lock()
	next := s.final.ticketPolls
	s.final.ticketPolls += 8
	s.mu.Unlock()
	for i := 0; i < 8 && i < len(tks); i++ {
		s.readTicket(tks[(next+i)%len(tks)])
	}
}
