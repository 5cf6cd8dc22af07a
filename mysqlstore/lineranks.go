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
	seen  map[string]*seenKeys // per sale: the keys of tickets this process saw waiting
}

// seenKeys are the line keys (rankWidth bytes) of a sale's tickets this
// process saw waiting, each with when it last saw it so (see WaitingPlaces),
// and when they were last asked for.
type seenKeys struct {
	keys  map[string]seenKey
	asked time.Time
}

type seenKey struct {
	key string
	at  time.Time
}

// rankSnapshot is one line's waiting keys (rankWidth bytes each, ascending)
// as read at `at`, in `took`. ready is closed once the read ended (err set
// when it failed).
type rankSnapshot struct {
	ready chan struct{}
	at    time.Time
	took  time.Duration
	keys  []byte
	state []byte // per key: 'w' waiting, 'q' queued (released)
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
	for id, k := range lr.seen {
		if now.Sub(k.asked) > rankForget {
			delete(lr.seen, id)
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
		rows, err := s.meta.QueryContext(ctx, `SELECT LEFT(line_key, ?), status FROM waiting_line
			WHERE sale_id = ? AND status IN (?, ?) ORDER BY line_key`,
			rankWidth, saleID, string(flashsale.TicketWaiting), string(flashsale.TicketQueued))
		if err != nil {
			r.err = fmt.Errorf("mysqlstore: line ranks: %w", err)
			return
		}
		defer rows.Close()
		var key, status []byte
		for rows.Next() {
			if err := rows.Scan(&key, &status); err != nil {
				r.err = fmt.Errorf("mysqlstore: line ranks: %w", err)
				return
			}
			r.keys = append(r.keys, rankPrefix(string(key))...)
			st := byte('w')
			if string(status) == string(flashsale.TicketQueued) {
				st = 'q'
			}
			r.state = append(r.state, st)
		}
		if err := rows.Err(); err != nil {
			r.err = fmt.Errorf("mysqlstore: line ranks: %w", err)
			return
		}
		r.at, r.took = start, time.Since(start)
	}()
	return r
}

// saw records that this process saw the tickets of keys (ticket id -> line
// key) waiting in the sale's line at `at`.
func (s *Store) saw(saleID string, keys map[string]string, at time.Time) {
	if len(keys) == 0 {
		return
	}
	lr := &s.ranks
	lr.mu.Lock()
	defer lr.mu.Unlock()
	if lr.seen == nil {
		lr.seen = map[string]*seenKeys{}
	}
	sk := lr.seen[saleID]
	if sk == nil {
		sk = &seenKeys{keys: map[string]seenKey{}}
		lr.seen[saleID] = sk
	}
	sk.asked = at
	for id, k := range keys {
		sk.keys[id] = seenKey{key: string(rankPrefix(k)), at: at}
	}
}

// seenOf returns the keys this process saw waiting of those of ids it knows,
// and the ids it does not know.
func (s *Store) seenOf(saleID string, ids []string) (map[string]seenKey, []string) {
	lr := &s.ranks
	lr.mu.Lock()
	defer lr.mu.Unlock()
	known := make(map[string]seenKey, len(ids))
	var unknown []string
	sk := lr.seen[saleID]
	if sk != nil {
		sk.asked = time.Now()
	}
	for _, id := range ids {
		if k, ok := sk.lookup(id); ok {
			known[id] = k
		} else {
			unknown = append(unknown, id)
		}
	}
	return known, unknown
}

func (sk *seenKeys) lookup(id string) (seenKey, bool) {
	if sk == nil {
		return seenKey{}, false
	}
	k, ok := sk.keys[id]
	return k, ok
}

// WaitingPlaces returns, for each of ids (tickets of the sale's line), its
// place as this process's snapshot of the line has it (see lineRanks): for
// a ticket waiting there, 1 + the keys ahead of its own waiting or released
// (a position, like LinePosition's deep ones: it lags the line by about a
// second and never grows); 0 for a ticket that is no longer waiting (the
// snapshot shows it released, or it is no longer in the line: left, ended,
// decided) or that never entered this line; -1 while the snapshot is older
// than this process's last sight of the ticket waiting (a ticket that has
// just entered: the next snapshot will tell).
//
// It reads no row per ticket: the line is read once per snapshot for all
// the process's askers, and a ticket's key comes from its entry, its lookup
// (GetLineTicket) or its position (LinePosition) in this process; only the
// keys of tickets seen by none of these are read, in one query for all of
// them. What it does not do: tell a ticket released from one that left the
// line another way, or see a change newer than the snapshot (its caller reads
// the ticket for that).
func (s *Store) WaitingPlaces(ctx context.Context, saleID string, ids []string) ([]int, error) {
	known, unknown := s.seenOf(saleID, ids)
	if len(unknown) > 0 {
		args := []any{saleID, string(flashsale.TicketWaiting)}
		for _, id := range unknown {
			args = append(args, id)
		}
		found := map[string]string{}
		err := queryRows(ctx, s.meta, func(r scanner) error {
			var id, key string
			if err := r.Scan(&id, &key); err != nil {
				return err
			}
			found[id] = key
			return nil
		}, `SELECT ticket_id, line_key FROM waiting_line WHERE sale_id = ? AND status = ? AND ticket_id IN (`+marks(len(unknown))+`)`, args...)
		if err != nil {
			return nil, fmt.Errorf("mysqlstore: waiting places: %w", err)
		}
		at := time.Now() // each was waiting at this time or before
		s.saw(saleID, found, at)
		for id, key := range found {
			known[id] = seenKey{key: string(rankPrefix(key)), at: at}
		}
	}
	out := make([]int, len(ids))
	if len(known) == 0 {
		return out, nil
	}
	snap, err := s.snapshot(ctx, saleID)
	if err != nil {
		return nil, fmt.Errorf("mysqlstore: waiting places: %w", err)
	}
	for i, id := range ids {
		k, ok := known[id]
		if !ok {
			continue // not waiting in this line
		}
		out[i] = snap.place(k)
	}
	return out, nil
}

// place is the place of a ticket seen waiting with key k in the snapshot
// (see WaitingPlaces).
func (r *rankSnapshot) place(k seenKey) int {
	ahead := r.ahead(k.key)
	n := len(r.keys) / rankWidth
	switch {
	case ahead < n && string(r.keys[ahead*rankWidth:(ahead+1)*rankWidth]) == k.key:
		if r.state[ahead] != 'w' {
			return 0 // released
		}
		return ahead + 1
	case !r.at.After(k.at):
		return -1 // entered after the snapshot was read, perhaps
	}
	return 0
}
