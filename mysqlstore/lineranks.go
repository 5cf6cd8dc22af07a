package mysqlstore

import (
	"bytes"
	"context"
	"fmt"
	"sort"
	"sync"
	"time"

	"github.com/flashsale/flashsale"
)

// A waiting ticket's position is the count of waiting keys up to its own,
// which costs MariaDB one index entry per ticket ahead: a line of 100,000
// pollers asking once every few seconds kept both cores busy counting. So
// positions deep in a line come from lineRanks, a per-process snapshot of
// each line's waiting keys read in one index scan, and only positions near
// the front (where the line moves and a user watches it) are counted.
const (
	// rankWidth is how much of each key a snapshot keeps. Keys sort by it
	// (a draw key's first 23 hex digits, an arrival's µs and 3 characters of
	// its id), and two keys sharing it are counted as one place: a deep
	// position may be short by such ties, none in practice.
	rankWidth = 24
	// countedBelow: a ticket with fewer than this many waiting ahead of it in
	// the snapshot has its position counted exactly.
	countedBelow = 1000
	// rankForget: a sale's snapshot not asked for this long is dropped.
	rankForget = time.Minute
)

// lineRanks holds the snapshots, one per sale: the keys of the tickets
// waiting or released and not yet seen decided (a position counts both).
// Safe for concurrent use.
type lineRanks struct {
	mu    sync.Mutex
	sales map[string]*rankSnapshot
}

// rankSnapshot is one line's waiting keys (rankWidth bytes each, ascending)
// as read at `at`, in `took`. ready is closed once the read ended (err set
// when it failed).
type rankSnapshot struct {
	ready chan struct{}
	at    time.Time
	took  time.Duration
	keys  []byte
	err   error

	next  *rankSnapshot // the read under way to replace this one, if any
	asked time.Time     // last asked for (under lineRanks.mu)
}

// ahead is how many keys of the snapshot sort before key.
func (r *rankSnapshot) ahead(key string) int {
	k := rankPrefix(key)
	n := len(r.keys) / rankWidth
	return sort.Search(n, func(i int) bool { return bytes.Compare(r.keys[i*rankWidth:(i+1)*rankWidth], k) >= 0 })
}

func rankPrefix(key string) []byte {
	k := make([]byte, rankWidth)
	copy(k, key)
	return k
}

// stale reports a snapshot due for a new read: older than a second, or than
// four times its read took (so reading a long line takes at most a fifth of
// a connection's time).
func (r *rankSnapshot) stale(now time.Time) bool {
	return now.Sub(r.at) > max(time.Second, 4*r.took)
}

// snapshot returns the sale's latest read snapshot, starting a new read when
// it is stale (the stale one answers meanwhile); the first one is waited for.
func (s *Store) snapshot(ctx context.Context, saleID string) (*rankSnapshot, error) {
	lr := &s.ranks
	now := time.Now()
	lr.mu.Lock()
	if lr.sales == nil {
		lr.sales = map[string]*rankSnapshot{}
	}
	for id, r := range lr.sales {
		if now.Sub(r.asked) > rankForget {
			delete(lr.sales, id)
		}
	}
	cur := lr.sales[saleID]
	if cur == nil {
		cur = s.readRanks(saleID)
		lr.sales[saleID] = cur
	}
	cur.asked = now
	select {
	case <-cur.ready:
		if cur.next == nil && (cur.err != nil || cur.stale(now)) {
			cur.next = s.readRanks(saleID)
			go func(old, next *rankSnapshot) {
				<-next.ready
				lr.mu.Lock()
				defer lr.mu.Unlock()
				if next.err == nil || old.err != nil {
					next.asked = old.asked
					lr.sales[saleID] = next
				}
				old.next = nil
			}(cur, cur.next)
		}
	default:
	}
	lr.mu.Unlock()
	select {
	case <-cur.ready:
		return cur, cur.err
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// readRanks starts reading the sale's keys (waiting and queued), detached from any
// request (a read of 1,000,000 keys outlives a request's deadline).
func (s *Store) readRanks(saleID string) *rankSnapshot {
	r := &rankSnapshot{ready: make(chan struct{})}
	go func() {
		defer close(r.ready)
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		start := time.Now()
		rows, err := s.meta.QueryContext(ctx, `SELECT LEFT(line_key, ?) FROM waiting_line
			WHERE sale_id = ? AND status IN (?, ?) ORDER BY line_key`,
			rankWidth, saleID, string(flashsale.TicketWaiting), string(flashsale.TicketQueued))
		if err != nil {
			r.err = fmt.Errorf("mysqlstore: line ranks: %w", err)
			return
		}
		defer rows.Close()
		var key []byte
		for rows.Next() {
			if err := rows.Scan(&key); err != nil {
				r.err = fmt.Errorf("mysqlstore: line ranks: %w", err)
				return
			}
			r.keys = append(r.keys, rankPrefix(string(key))...)
		}
		if err := rows.Err(); err != nil {
			r.err = fmt.Errorf("mysqlstore: line ranks: %w", err)
			return
		}
		r.at, r.took = start, time.Since(start)
	}()
	return r
}
