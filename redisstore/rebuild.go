package redisstore

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/bsm/redislock"
	"github.com/redis/go-redis/v9"

	"github.com/flashsale/flashsale"
	"github.com/flashsale/flashsale/service"
)

// The one rebuild protocol, for a sale in one slot and a sale in segments
// alike. A sale is rebuilt from MySQL when a script finds it not loaded,
// rebuilding or stale (see scripts.go), and when MySQL refused units Redis
// said were there (Resync: Redis is behind). A rebuild:
//
//  1. takes the sale's rebuild lease (redislock), so that one process
//     rebuilds while the others wait for it. The lease is no guarantee (it
//     expires during a slow rebuild); the token of step 2 is.
//  2. freezes every part of the sale, the home first, then each segment, by
//     writing a fresh token (a random id) into the part's stock hash: every
//     script on a frozen part answers "rebuilding" and runs again after the
//     rebuild. A later rebuilder's token replaces it, and from then on the
//     earlier rebuilder's writes are refused.
//  3. reads MySQL: the sale, and every ticket of the sale that MySQL decided
//     (orders in any status, and recorded outcomes: SaleTickets).
//  4. merges each segment (mergeScript, one script per slot, only under the
//     rebuilder's token): MySQL's decision wins for every ticket it knows;
//     Redis's entries for the tickets MySQL does not know survive (a hold
//     whose order is not committed yet, a refusal not recorded yet, a queued
//     ticket's live entry, claim and place in the line, with its score, so a
//     rebuild never moves a waiting ticket back); counters, per-user units and the
//     family's markers are derived from the result, and the part gets the
//     token as its new load id, which unfreezes it.
//  5. writes the home (segments only), last, under the same token: the pool
//     holds every unit no segment counts, and each segment's grant is its
//     total. Every script on a segment checks the home's load (its gen
//     argument), so a segment of the new load is used only once the home is.
//
// Nothing between the freeze and the write can change a frozen part, and
// every transition that commits in MySQL during the read has its Redis step
// retried after the rebuild (the step found the sale frozen), so the merge
// never writes over state newer than what it read. A rebuild cut short
// anywhere leaves parts frozen (a dead rebuilder's token) or of mixed loads,
// which the next script on the sale sees, and rebuilds again; a rebuild that
// fails on MySQL unfreezes what it froze, as it was.

// rebuildLease is how long one rebuilder keeps the others waiting.
const rebuildLease = 10 * time.Second

// Resync rebuilds the sale from the Source although its keys look current: MySQL
// refused units Redis said were there, so Redis is behind.
func (s *Store) Resync(ctx context.Context, saleID string) error {
	return s.rebuild(ctx, saleID, "behind")
}

// InitSale loads a new sale. It is a no-op when the sale is loaded.
func (s *Store) InitSale(ctx context.Context, sale *flashsale.Sale) error {
	return s.rebuild(ctx, sale.ID, "not_loaded")
}

// rebuild runs the protocol above. why is what the caller saw; anything but
// "behind" rebuilds only if the sale is still not current once the lease is
// held (a rebuild that ran meanwhile made it current).
func (s *Store) rebuild(ctx context.Context, saleID, why string) error {
	lock, err := s.rebuildLease(ctx, saleID, why != "behind")
	if lock == nil || err != nil {
		return err
	}
	defer lock.Release(context.WithoutCancel(ctx))
	s.gens.Delete(saleID)
	if why != "behind" {
		if ok, err := s.saleCurrent(ctx, saleID); err != nil || ok {
			return err
		}
	}
	token := newLoadID()
	parts := s.stockKeys(saleID)
	for _, k := range parts {
		if err := freezeScript.Run(ctx, s.rdb, []string{k}, token).Err(); err != nil {
			return fmt.Errorf("redisstore: freeze sale %s: %w", saleID, err)
		}
	}
	sale, tickets, err := s.readBook(ctx, saleID)
	if err != nil {
		for _, k := range parts {
			_ = unfreezeScript.Run(context.WithoutCancel(ctx), s.rdb, []string{k}, token).Err() // a part left frozen is rebuilt by its next script
		}
		return err
	}
	counted, err := s.mergeSegments(ctx, sale, tickets, token)
	if err != nil {
		return err
	}
	s.log.Warn("rebuilt sale stock from MySQL", "sale", saleID, "reason", why, "segments", s.cfg.Segments,
		"tickets", len(tickets), "held_and_sold", counted)
	return nil
}

// rebuildLease takes the sale's rebuild lease, waiting up to rebuildLease for
// it. While another process has it, a caller that only needs the sale current
// (ifNeeded) checks between tries whether it is, and returns a nil lease as
// soon as it is: the many scripts that found a sale lost all at once do not
// queue for the lease one by one once it is rebuilt.
func (s *Store) rebuildLease(ctx context.Context, saleID string, ifNeeded bool) (*redislock.Lock, error) {
	ctx, cancel := context.WithTimeout(ctx, rebuildLease)
	defer cancel()
	key := s.cfg.Namespace + ":{sale:" + saleID + "}:rebuild"
	for {
		lock, err := s.locker.Obtain(ctx, key, rebuildLease, nil)
		if err == nil {
			return lock, nil
		}
		if !errors.Is(err, redislock.ErrNotObtained) {
			return nil, fmt.Errorf("redisstore: rebuild lock for sale %s: %w", saleID, err)
		}
		if ifNeeded {
			if ok, err := s.saleCurrent(ctx, saleID); err == nil && ok {
				return nil, nil
			}
		}
		if !service.Sleep(ctx, 20*time.Millisecond) {
			return nil, fmt.Errorf("redisstore: rebuild lock for sale %s: %w", saleID, ctx.Err())
		}
	}
}

// stockKeys are the stock hashes of every part of the sale, in the order a
// rebuild freezes them: the home first (segments only), then each segment.
func (s *Store) stockKeys(saleID string) []string {
	if s.cfg.Segments == 1 {
		return []string{s.segKeys(saleID, 0).stock}
	}
	keys := []string{s.homeKey(saleID)}
	for j := range s.cfg.Segments {
		keys = append(keys, s.segKeys(saleID, j).stock)
	}
	return keys
}

// readBook reads the sale and every ticket of it MySQL decided.
func (s *Store) readBook(ctx context.Context, saleID string) (*flashsale.Sale, []*flashsale.Ticket, error) {
	sale, err := s.cfg.Source.GetSale(ctx, saleID)
	if err != nil {
		return nil, nil, err
	}
	tickets, err := s.cfg.Source.SaleTickets(ctx, saleID)
	if err != nil {
		return nil, nil, err
	}
	return sale, tickets, nil
}

// facts is what a segment's merge learns from MySQL: D, every decided
// ticket's state in the hold format ("H:q" unpaid order, "S:q" paid, "R"
// expired or cancelled, "X" sold out, "F" failed); U, the user of each order
// that holds units.
type facts struct {
	D map[string]string `json:"d"`
	U map[string]string `json:"u"`
}

// mergeSegments merges every segment (or the one slot) with MySQL's tickets,
// then writes the home; it returns the units held and sold in all.
func (s *Store) mergeSegments(ctx context.Context, sale *flashsale.Sale, tickets []*flashsale.Ticket, token string) (int, error) {
	per := make([]facts, s.cfg.Segments)
	for j := range per {
		per[j] = facts{D: map[string]string{}, U: map[string]string{}}
	}
	for _, t := range tickets {
		st := holdOf(t)
		if st == "" {
			continue
		}
		f := per[s.segmentOf(t.UserID)]
		f.D[t.ID] = st
		if st[0] == 'H' || st[0] == 'S' {
			f.U[t.ID] = t.UserID
		}
	}
	total := sale.Stock
	if s.cfg.Segments > 1 {
		total = -1 // a segment starts with what it counts; the pool has the rest
	}
	// room is what the stock leaves for the holds MySQL does not know yet,
	// shared by the segments in turn (see mergeScript).
	room := sale.Stock
	for _, f := range per {
		for _, st := range f.D {
			if st[0] == 'H' || st[0] == 'S' {
				n, _ := strconv.Atoi(st[2:])
				room -= n
			}
		}
	}
	room = max(room, 0)
	counted := 0
	segTotals := make([]int, s.cfg.Segments)
	for j, f := range per {
		body, err := json.Marshal(f)
		if err != nil {
			return 0, err
		}
		k := s.segKeys(sale.ID, j)
		reply, err := mergeScript.Run(ctx, s.rdb, []string{k.stock, k.holds, k.live, k.units, k.claims, k.queue}, token, total, string(body), room).StringSlice()
		if err != nil {
			return 0, fmt.Errorf("redisstore: merge segment %d of sale %s: %w", j, sale.ID, err)
		}
		if reply[0] != "done" {
			return 0, nil // another rebuilder took over: it finishes the sale
		}
		held, _ := strconv.Atoi(reply[1])
		sold, _ := strconv.Atoi(reply[2])
		kept, _ := strconv.Atoi(reply[3])
		room -= kept
		segTotals[j] = held + sold
		counted += held + sold
	}
	if s.cfg.Segments == 1 {
		return counted, nil
	}
	args := []any{token, sale.Stock, sale.Stock - counted}
	for _, n := range segTotals {
		args = append(args, n)
	}
	if err := homeMergeScript.Run(ctx, s.rdb, []string{s.homeKey(sale.ID)}, args...).Err(); err != nil {
		return 0, fmt.Errorf("redisstore: write home of sale %s: %w", sale.ID, err)
	}
	return counted, nil
}

// holdOf is a ticket's state as a rebuild writes it in holds ("" for a
// ticket not decided yet).
func holdOf(t *flashsale.Ticket) string {
	q := strconv.Itoa(t.Quantity)
	switch t.Status {
	case flashsale.TicketPendingPayment:
		return "H:" + q
	case flashsale.TicketPaid:
		return "S:" + q
	case flashsale.TicketExpired, flashsale.TicketCancelled:
		return "R"
	case flashsale.TicketSoldOut:
		return "X"
	case flashsale.TicketFailed:
		return "F"
	}
	return ""
}

// saleCurrent is whether every part of the sale is loaded, current and of
// one load.
func (s *Store) saleCurrent(ctx context.Context, saleID string) (bool, error) {
	gen := ""
	if s.cfg.Segments > 1 {
		h, err := s.homeState(ctx, saleID)
		if err == errRebuild {
			return false, nil
		}
		if err != nil {
			return false, err
		}
		gen = h.gen
	}
	for j := range s.cfg.Segments {
		k := s.segKeys(saleID, j)
		reply, err := saleStateScript.Run(ctx, s.rdb, []string{k.stock, k.holds, k.live, k.units, k.claims, k.queue}, gen).StringSlice()
		if err != nil {
			return false, fmt.Errorf("redisstore: %w", err)
		}
		if reply[0] != "ok" {
			return false, nil
		}
	}
	return true, nil
}

// newLoadID draws a load id: a random positive 63-bit number, in decimal (a
// purchase carries the load of its claim as a number).
func newLoadID() string {
	var b [8]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails (Go 1.24+)
	return strconv.FormatUint(binary.BigEndian.Uint64(b[:])>>1|1, 10)
}

// saleStateScript answers {"ok"} when a sale (or segment) is loaded and
// current, else why not. KEYS stock holds live units claims queue; ARGV gen.
var saleStateScript = redis.NewScript(loadedCheck + `return {'ok'}`)

// freezeScript marks a part of a sale as being rebuilt by the token ARGV[1]
// (creating its stock hash if it is gone). KEYS stock.
var freezeScript = redis.NewScript(`
redis.call('HSET', KEYS[1], 'rebuild', ARGV[1])
return 1
`)

// unfreezeScript takes a failed rebuild's token back, if it is still there.
// KEYS stock; ARGV token.
var unfreezeScript = redis.NewScript(`
if redis.call('HGET', KEYS[1], 'rebuild') == ARGV[1] then redis.call('HDEL', KEYS[1], 'rebuild') end
return 1
`)

// mergeScript writes one segment (or a sale in one slot) as the merge of
// what it holds and MySQL's facts (see above), if it is still frozen by the
// token. KEYS stock holds live units claims queue; ARGV token total
// facts_json room (total -1: the segment's total is what it counts). Returns
// {"done", held, sold, kept} or {"raced"}. The line keeps the entries (and
// scores) of the tickets MySQL does not know, and gets the load's marker.
//
// room is how many units the stock leaves beyond what MySQL's orders hold:
// the holds of tickets MySQL does not know are kept only up to it (kept).
// More would count more units than the stock (Redis lost some orders'
// holds, handed their units to others, and those orders committed since):
// MySQL's cap will refuse some of those tickets, and a hold left out here
// is taken again by its order's re-assert if MySQL accepts it after all. So
// available + held + sold is the stock after every rebuild, never less.
var mergeScript = redis.NewScript(serverID + `
local M, token = '!load', ARGV[1]
if redis.call('HGET', KEYS[1], 'rebuild') ~= token then return {'raced'} end
local f = cjson.decode(ARGV[3])
local function entries(key)
  local out, h = {}, redis.call('HGETALL', key)
  for i = 1, #h, 2 do if h[i] ~= M then out[h[i]] = h[i + 1] end end
  return out
end
local function holding(st) return st ~= nil and string.sub(st, 1, 2) == 'H:' end
local holds = entries(KEYS[2])
for tid, st in pairs(f.d) do holds[tid] = st end
local live, owner = {}, {}
for u, tid in pairs(entries(KEYS[3])) do
  local st = f.d[tid]
  if st == nil or holding(st) then
    live[u] = tid
    owner[tid] = u
  end
end
for tid, u in pairs(f.u) do
  owner[tid] = u
  if holding(f.d[tid]) then live[u] = tid end
end
local claims = {}
for tid, c in pairs(entries(KEYS[5])) do
  if f.d[tid] == nil then claims[tid] = c end
end
local line = {}
local z = redis.call('ZRANGE', KEYS[6], 0, -1, 'WITHSCORES')
for i = 1, #z, 2 do
  if string.sub(z[i], 1, 1) ~= '!' and f.d[z[i]] == nil then
    line[#line + 1] = z[i + 1]
    line[#line + 1] = z[i]
  end
end
local room, kept = tonumber(ARGV[4]), 0
for tid, st in pairs(holds) do
  local k = string.sub(st, 1, 2)
  if f.d[tid] == nil and (k == 'H:' or k == 'S:') then
    local q = tonumber(string.sub(st, 3))
    if q <= room then
      room, kept = room - q, kept + q
    else
      holds[tid] = nil -- beyond the stock: the cap refuses it, or its order re-asserts it
    end
  end
end
local held, sold, units = 0, 0, {}
for tid, st in pairs(holds) do
  local k = string.sub(st, 1, 2)
  if k == 'H:' or k == 'S:' then
    local q = tonumber(string.sub(st, 3))
    if k == 'H:' then held = held + q else sold = sold + q end
    local u = owner[tid]
    if u then units[u] = (units[u] or 0) + q end
  end
end
redis.call('DEL', KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6])
local function write(key, t)
  local args = {M, token}
  for k, v in pairs(t) do
    args[#args + 1] = k
    args[#args + 1] = v
    if #args >= 1000 then
      redis.call('HSET', key, unpack(args))
      args = {}
    end
  end
  if #args > 0 then redis.call('HSET', key, unpack(args)) end
end
write(KEYS[2], holds)
write(KEYS[3], live)
write(KEYS[4], units)
write(KEYS[5], claims)
redis.call('ZADD', KEYS[6], -1, '!load:' .. token)
for i = 1, #line, 1000 do
  redis.call('ZADD', KEYS[6], unpack(line, i, math.min(i + 999, #line)))
end
local total = tonumber(ARGV[2])
if total < 0 then total = held + sold end
redis.call('HSET', KEYS[1], 'total', total, 'available', total - held - sold, 'held', held, 'sold', sold,
  'in', total, 'out', 0, 'load', token, 'srv', serverID())
return {'done', tostring(held), tostring(sold), tostring(kept)}
`)

// homeMergeScript writes a segmented sale's home as a rebuild leaves it, if
// it is still frozen by the token: KEYS home; ARGV token total pool g0 g1 ...
// (each segment's grant: its total; nothing taken back yet). Returns {"done"}
// or {"raced"}.
var homeMergeScript = redis.NewScript(serverID + `
if redis.call('HGET', KEYS[1], 'rebuild') ~= ARGV[1] then return {'raced'} end
redis.call('DEL', KEYS[1])
redis.call('HSET', KEYS[1], 'total', ARGV[2], 'pool', ARGV[3], 'load', ARGV[1], 'srv', serverID())
for i = 4, #ARGV do
  redis.call('HSET', KEYS[1], 'g' .. (i - 4), ARGV[i], 'r' .. (i - 4), 0)
end
return {'done'}
`)

// ErrEvicting is the answer of CheckEviction for a Redis that may evict keys.
var ErrEvicting = errors.New("redisstore: Redis may evict keys (maxmemory-policy is not noeviction)")

// CheckEviction refuses a Redis whose maxmemory-policy lets it evict keys: an
// evicted key of a sale is detected (its family's marker is gone) and the
// sale rebuilt from MySQL, but under memory pressure that would rebuild hot
// sales again and again in the middle of a sale, and an evicted lease key
// (redislock) hands a singleton job to two runners; so the process refuses to
// start (ErrEvicting, naming the policy and each server), rather than fail
// slowly during a sale. A Redis that does not answer CONFIG GET (a managed
// service that renames it) or does not answer at all is not refused: the
// returned warning says it could not be checked.
func (s *Store) CheckEviction(ctx context.Context) (warning string, err error) {
	ctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	check := func(ctx context.Context, c *redis.Client) error {
		policy, err := c.ConfigGet(ctx, "maxmemory-policy").Result()
		if err != nil {
			warning = fmt.Sprintf("cannot read maxmemory-policy of %s (%v): make sure it is noeviction", c.Options().Addr, err)
			return nil
		}
		if p := policy["maxmemory-policy"]; p != "" && p != "noeviction" {
			return fmt.Errorf("%w: %s has %s; set maxmemory-policy noeviction", ErrEvicting, c.Options().Addr, p)
		}
		return nil
	}
	switch c := s.rdb.(type) {
	case *redis.ClusterClient:
		err = c.ForEachMaster(ctx, check)
	case *redis.Client:
		err = check(ctx, c)
	}
	if err != nil && !errors.Is(err, ErrEvicting) {
		return fmt.Sprintf("cannot check maxmemory-policy (%v): make sure it is noeviction", err), nil
	}
	return warning, err
}
