package e2e

// Evidence for the soak's violations (see TestSoak): what MySQL, Redis and
// the process logs say about one ticket, so that a report can be acted on
// without running the soak again.

import (
	"context"
	"database/sql"
	"fmt"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// evidence describes the ticket as MySQL has it (order row, decision row,
// outbox events, payments, on the user's shard), as Redis has it (the fast
// copy and the sale's hold of the ticket) and the log lines that name it.
func (s *soak) evidence(tk *soakTicket, logLines int) string {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	var b strings.Builder
	w := func(format string, args ...any) { fmt.Fprintf(&b, "    "+format+"\n", args...) }
	shard := shardOf(tk.User, len(s.e.ShardDBs))
	db := s.e.ShardDBs[shard]
	ts := func(t sql.NullTime) string {
		if !t.Valid {
			return "-"
		}
		return t.Time.Format("15:04:05.000")
	}

	var status, payment sql.NullString
	var created, updated, payBy, paid sql.NullTime
	err := s.direct.QueryRowContext(ctx, fmt.Sprintf("SELECT status, created_at, updated_at, pay_by, paid_at, payment_id FROM `%s`.orders WHERE order_id = ?", db),
		tk.ID).Scan(&status, &created, &updated, &payBy, &paid, &payment)
	switch {
	case err == sql.ErrNoRows:
		w("MySQL shard %d: no order", shard)
	case err != nil:
		w("MySQL shard %d: order: %v", shard, err)
	default:
		w("MySQL shard %d: order %s, created %s, updated %s, pay_by %s, paid %s, payment %s", shard, status.String,
			ts(created), ts(updated), ts(payBy), ts(paid), payment.String)
	}
	var decision sql.NullString
	var decided sql.NullTime
	err = s.direct.QueryRowContext(ctx, fmt.Sprintf("SELECT status, created_at FROM `%s`.ticket_outcomes WHERE ticket_id = ?", db),
		tk.ID).Scan(&decision, &decided)
	switch {
	case err == sql.ErrNoRows:
		w("MySQL shard %d: no ticket_outcomes row", shard)
	case err != nil:
		w("MySQL shard %d: ticket_outcomes: %v", shard, err)
	default:
		w("MySQL shard %d: ticket_outcomes %s at %s", shard, decision.String, ts(decided))
	}
	if rows, err := s.direct.QueryContext(ctx, fmt.Sprintf("SELECT event_type, created_at, sent_at FROM `%s`.outbox WHERE order_id = ? ORDER BY id", db), tk.ID); err == nil {
		var evs []string
		for rows.Next() {
			var typ string
			var at, sent sql.NullTime
			if rows.Scan(&typ, &at, &sent) == nil {
				evs = append(evs, fmt.Sprintf("%s at %s (sent %s)", typ, ts(at), ts(sent)))
			}
		}
		rows.Close()
		w("MySQL shard %d: outbox: %s", shard, strings.Join(evs, ", "))
	}
	if rows, err := s.direct.QueryContext(ctx, fmt.Sprintf("SELECT payment_id, outcome, created_at FROM `%s`.payments WHERE order_id = ?", db), tk.ID); err == nil {
		var ps []string
		for rows.Next() {
			var id, outcome string
			var at sql.NullTime
			if rows.Scan(&id, &outcome, &at) == nil {
				ps = append(ps, fmt.Sprintf("%s %s at %s", id, outcome, ts(at)))
			}
		}
		rows.Close()
		if len(ps) > 0 {
			w("MySQL shard %d: payments: %s", shard, strings.Join(ps, ", "))
		}
	}

	c := s.rs.client()
	defer c.Close()
	key := s.e.NS + ":ticket:{" + tk.ID + "}"
	copy, err := c.HGetAll(ctx, key).Result()
	ttl, _ := c.TTL(ctx, key).Result()
	w("Redis %s: %v (ttl %s, err %v)", key, copy, ttl, err)
	// The sale's parts (one, or the home and each segment): the ticket's
	// hold, the user's live ticket and units, and each stock hash.
	var parts []string
	for _, k := range s.saleKeys(tk.Sale) {
		name := strings.TrimPrefix(k, s.e.NS+":")
		var v any
		var err error
		switch {
		case strings.HasSuffix(k, ":holds"), strings.HasSuffix(k, ":claims"):
			v, err = c.HGet(ctx, k, tk.ID).Result()
		case strings.HasSuffix(k, ":live"), strings.HasSuffix(k, ":units"):
			v, err = c.HGet(ctx, k, tk.User).Result()
		case strings.HasSuffix(k, ":stock"), strings.HasSuffix(k, ":pool"):
			v, err = c.HGetAll(ctx, k).Result()
		default:
			continue
		}
		if err == redis.Nil {
			continue
		}
		if err != nil {
			v = err
		}
		parts = append(parts, fmt.Sprintf("%s %v", name, v))
	}
	w("Redis sale %s (the ticket's hold and claim, the user's live ticket and units, the stock): %s", tk.Sale, strings.Join(parts, "; "))

	s.mu.Lock()
	w("crowd: purchases of %s in %s: %s", tk.User, tk.Sale, strings.Join(s.history[tk.User+"/"+tk.Sale], "; "))
	w("crowd: accepted %.2fs (via %d), first seen decided %s, last read %q; last fault before it: %s",
		tk.At.Sub(s.start).Seconds(), tk.Via, soakSince(s.start, tk.decidedAt), tk.last, strings.TrimSpace(tk.After))
	s.mu.Unlock()
	b.WriteString(s.grepLogs(tk.ID, logLines))
	return b.String()
}

func soakSince(start, t time.Time) string {
	if t.IsZero() {
		return "never"
	}
	return fmt.Sprintf("%.2fs", t.Sub(start).Seconds())
}
