package redisstore

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"strconv"
	"sync"
	"sync/atomic"

	"github.com/redis/go-redis/v9"

	"github.com/flashsale/flashsale"
)

// A sale's stock in segments (Config.Segments > 1), so that one hot sale's
// claims and holds use several Redis Cluster masters instead of one slot's.
//
// Each user belongs to one segment of every sale (a hash of the user id), and
// a segment is a whole sale's set of keys (stock, holds, live, units, claims, queue)
// under its own hash tag: every script of scripts.go runs unchanged on it, so one live
// ticket per user and the per-user limit hold within the user's segment, which
// is all the user ever touches. A segment's stock hash counts only its share:
// its total is the units it was given.
//
// The sale's home hash ({sale:<id>}:pool, in the slot a one-segment sale
// uses) keeps the units no segment holds (pool), and per segment the
// cumulative units granted to it (g<j>) and taken back from it (r<j>); a
// segment records the same from its side (in, out). Units move in two steps,
// each one script on one slot, and both idempotent because the figures are
// cumulative:
//
//	grant:   home   pool -= n, g<j> += n        segment j (receive): in := g<j>, available and total += the difference
//	collect: segment t (yield): out += n, available and total -= n        home: r<t> := out, pool += the difference
//
// A step lost between the two (a process killed) is completed by the next
// refill, which applies the segments' g and out again. A dry segment asks
// the pool for units before it answers sold out or refuses a hold (the
// scripts' "refill" reply); an empty pool first collects half of every other
// segment's available units. A script runs again after each refill, until the
// whole sale has fewer units available than it needs (Store.run, at most
// maxRefills times): so a sale answers sold out when the pool and every
// segment are dry, as with one slot.
//
// The figures of the whole sale: total is the home's, held and sold are the
// sums over segments, available is total - held - sold (the sale view's sums
// hold at every read although the segments are read one after the other).
// MySQL's stock cap stays the last word: whatever Redis hands out, no order
// beyond the stock commits.
//
// A segment or home that is missing, stale or of another load than the home
// rebuilds the whole sale (rebuild.go): each segment merges its users'
// tickets and counts what they hold, the pool gets every other unit, and the
// cumulative figures start again. Every part gets the rebuild's load id, and
// every script on a part is given the home's load (its gen argument, see
// scripts.go): a grant, a collect or a claim that read the figures of another
// load changes nothing and answers "gen", and a segment whose load is not the
// home's (a rebuild cut short) is rebuilt again.

// homeStateScript answers {"ok", total, pool, load, g0, g1, ...} for a
// loaded, current home, else why it must be rebuilt. KEYS home; ARGV
// segments gen ("": any load).
var homeStateScript = redis.NewScript(loadedCheck + `
local out = {'ok', redis.call('HGET', KEYS[1], 'total'), redis.call('HGET', KEYS[1], 'pool'), load}
for j = 0, tonumber(ARGV[1]) - 1 do
  table.insert(out, redis.call('HGET', KEYS[1], 'g' .. j) or '0')
end
return out
`)

// grantScript moves up to ARGV want (at least need, if the pool has them) units
// from the pool to segment ARGV seg. KEYS home; ARGV seg need want gen.
// Returns {"granted", n, g} (n may be 0: the pool is dry) or {"gen"}, or a
// rebuild reason.
var grantScript = redis.NewScript(loadedCheck + `
local pool = tonumber(redis.call('HGET', KEYS[1], 'pool'))
local n = math.min(pool, math.max(tonumber(ARGV[2]), tonumber(ARGV[3])))
if n > 0 then
  redis.call('HINCRBY', KEYS[1], 'pool', -n)
  redis.call('HINCRBY', KEYS[1], 'g' .. ARGV[1], n)
else
  n = 0 -- never "-0" to Redis
end
return {'granted', tostring(n), redis.call('HGET', KEYS[1], 'g' .. ARGV[1]) or '0'}
`)

// settleScript applies the home's cumulative grant ARGV g to a segment, then,
// with ARGV yield "1", gives back half its available units (rounded up).
// KEYS segment stock; ARGV g yield gen. Returns {"done", out, available} or
// {"gen"}, or a rebuild reason.
var settleScript = redis.NewScript(loadedCheck + `
local g, got = tonumber(ARGV[1]), tonumber(redis.call('HGET', KEYS[1], 'in') or '0')
if g > got then
  redis.call('HSET', KEYS[1], 'in', g)
  redis.call('HINCRBY', KEYS[1], 'total', g - got)
  redis.call('HINCRBY', KEYS[1], 'available', g - got)
end
local avail = tonumber(redis.call('HGET', KEYS[1], 'available'))
if ARGV[2] == '1' and avail > 0 then
  local n = avail - math.floor(avail / 2)
  redis.call('HINCRBY', KEYS[1], 'out', n)
  redis.call('HINCRBY', KEYS[1], 'total', -n)
  avail = redis.call('HINCRBY', KEYS[1], 'available', -n)
end
return {'done', redis.call('HGET', KEYS[1], 'out') or '0', tostring(avail)}
`)

// collectScript takes back into the pool what segments gave up: for each pair
// (seg, out) r<seg> becomes out where it is higher, the difference going to
// the pool. KEYS home; ARGV {seg out}* gen. Returns {"done", pool} or {"gen"},
// or a rebuild reason.
var collectScript = redis.NewScript(loadedCheck + `
for i = 1, #ARGV - 1, 2 do
  local r = tonumber(redis.call('HGET', KEYS[1], 'r' .. ARGV[i]) or '0')
  local out = tonumber(ARGV[i + 1])
  if out > r then
    redis.call('HSET', KEYS[1], 'r' .. ARGV[i], out)
    redis.call('HINCRBY', KEYS[1], 'pool', out - r)
  end
end
return {'done', redis.call('HGET', KEYS[1], 'pool')}
`)

// crc16 is the CRC16 (XMODEM) Redis Cluster hashes keys with.
func crc16(b string) uint16 {
	var crc uint16
	for i := 0; i < len(b); i++ {
		crc ^= uint16(b[i]) << 8
		for range 8 {
			if crc&0x8000 != 0 {
				crc = crc<<1 ^ 0x1021
			} else {
				crc <<= 1
			}
		}
	}
	return crc
}

// keySlot is the cluster slot of a hash tag.
func keySlot(tag string) int { return int(crc16(tag)) % 16384 }

// segmentTag is the hash tag of segment j of a sale in n: "sale:<id>" for a
// sale in one piece, else "sale:<id>:<j>.<k>" with the smallest k that puts
// it in the j-th n-th of the slot range, so that on a cluster whose masters
// own even ranges (what redis-cli --cluster create makes) the segments land
// on different masters. Every process computes the same tags.
func segmentTag(saleID string, j, n int) string {
	if n == 1 {
		return "sale:" + saleID
	}
	lo, hi := j*16384/n, (j+1)*16384/n
	for k := 0; ; k++ {
		tag := "sale:" + saleID + ":" + strconv.Itoa(j) + "." + strconv.Itoa(k)
		if sl := keySlot(tag); sl >= lo && sl < hi {
			return tag
		}
	}
}

// segmentOf is the user's segment of every sale in n: FNV-1a (32-bit) of the
// user id modulo n, without the finalizer flashsale.ShardOf adds. Plain
// FNV-1a's low bits are weak (the lowest is the parity of the bytes' lowest
// bits), so ids whose bytes keep that parity (a check-digit scheme) would
// crowd into some segments when n is even. That costs balance across Redis
// masters, never a guarantee: refills move units between segments and MySQL's
// stock cap has the last word. It stays as it is because changing it moves
// users between the segments of live sales: a process with the new function
// would look for a user's live ticket, units and claim in another segment,
// so the user could hold a second live ticket past per_user_limit there, and
// a queued ticket's hold, finding no live entry in a load that knows its
// claim, would be refused: an accepted purchase ending failed, for as long
// as old and new processes run side by side. Like Config.Segments, it could
// change only between sales. (Measured: ids "user-<n>", "u<n>" and
// "bench-u<n>" spread within 0.6% of even over 2 to 16 segments, random ids
// within 2%.)
func segmentOf(userID string, n int) int {
	if n == 1 {
		return 0
	}
	h := fnv.New32a()
	h.Write([]byte(userID))
	return int(h.Sum32() % uint32(n))
}

// StockKey is the key of the stock hash that counts the user's purchases of
// the sale, with the sale in segments segments: the key to look up to find
// the Redis Cluster master that serves the user in that sale.
func StockKey(namespace, saleID, userID string, segments int) string {
	return namespace + ":{" + segmentTag(saleID, segmentOf(userID, segments), segments) + "}:stock"
}

// segmentTags returns the hash tags of a sale's segments, cached.
func (s *Store) segmentTags(saleID string) []string {
	if v, ok := s.tags.Load(saleID); ok {
		return v.([]string)
	}
	tags := make([]string, s.cfg.Segments)
	for j := range tags {
		tags[j] = segmentTag(saleID, j, s.cfg.Segments)
	}
	s.tags.Store(saleID, tags)
	return tags
}

func (s *Store) segmentOf(userID string) int { return segmentOf(userID, s.cfg.Segments) }

// segKeys are the keys of one segment of a sale; with one segment, the sale's
// keys under the hash tag {sale:<id>}.
func (s *Store) segKeys(saleID string, seg int) saleKeys {
	tag := "sale:" + saleID
	if s.cfg.Segments > 1 {
		tag = s.segmentTags(saleID)[seg]
	}
	p := s.cfg.Namespace + ":{" + tag + "}:"
	return saleKeys{p + "stock", p + "holds", p + "live", p + "units", p + "claims", p + "queue"}
}

// keys are the keys of the user's segment of the sale.
func (s *Store) keys(saleID, userID string) saleKeys { return s.segKeys(saleID, s.segmentOf(userID)) }

// homeKey is a segmented sale's home hash (see above).
func (s *Store) homeKey(saleID string) string { return s.cfg.Namespace + ":{sale:" + saleID + "}:pool" }

// refillFlag is the last argument of the scripts that need units: "1" asks a
// segment short of them to answer {"refill", need} instead of deciding.
func (s *Store) refillFlag() string {
	if s.cfg.Segments > 1 {
		return "1"
	}
	return "0"
}

// refillGate lets one refill of a segment run at a time in this process; one
// that waited for another finished meanwhile does not refill again.
type refillGate struct {
	mu   sync.Mutex
	done atomic.Uint64
}

// refill brings units into a dry segment: from the pool, and when the pool is
// dry, first from every other segment (see above). It returns how many units
// it moved there: 0 when the sale has none left to move. One that waited for
// another refill of the segment returns 1 without moving any: the caller
// tries its script again.
func (s *Store) refill(ctx context.Context, saleID string, seg, need int) (int, error) {
	v, _ := s.gates.LoadOrStore(saleID+"\x00"+strconv.Itoa(seg), &refillGate{})
	g := v.(*refillGate)
	seen := g.done.Load()
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.done.Load() != seen {
		return 1, nil
	}
	defer g.done.Add(1)
	for attempt := 0; ; attempt++ {
		moved, err := s.refillOnce(ctx, saleID, seg, need)
		if !errors.Is(err, errRebuild) || attempt > 0 {
			return moved, err
		}
		if err := s.rebuild(ctx, saleID, "not_loaded"); err != nil {
			return 0, err
		}
	}
}

// errRebuild: a part of the sale needs a rebuild (or was rebuilt meanwhile).
var errRebuild = errors.New("sale needs a rebuild")

func (s *Store) refillOnce(ctx context.Context, saleID string, seg, need int) (int, error) {
	home, err := s.homeState(ctx, saleID)
	if err != nil {
		return 0, err
	}
	want := max(need, home.pool/s.cfg.Segments)
	if home.pool < need {
		// The pool is dry: every other segment settles its grants and gives
		// back half of what it has.
		var others []int
		for t := range s.cfg.Segments {
			if t != seg {
				others = append(others, t)
			}
		}
		cmds := make([]*redis.Cmd, len(others))
		_, _ = s.rdb.Pipelined(ctx, func(p redis.Pipeliner) error { // errors are the commands'
			for i, t := range others {
				cmds[i] = settleScript.Eval(ctx, p, []string{s.segKeys(saleID, t).stock}, home.g[t], "1", home.gen)
			}
			return nil
		})
		var args []any
		for i, t := range others {
			reply, err := cmds[i].StringSlice()
			if err != nil {
				return 0, fmt.Errorf("redisstore: settle segment %d of sale %s: %w", t, saleID, err)
			}
			if reply[0] != "done" {
				return 0, errRebuild
			}
			args = append(args, t, reply[1])
		}
		args = append(args, home.gen)
		reply, err := collectScript.Run(ctx, s.rdb, []string{s.homeKey(saleID)}, args...).StringSlice()
		if err != nil {
			return 0, fmt.Errorf("redisstore: collect of sale %s: %w", saleID, err)
		}
		if reply[0] != "done" {
			return 0, errRebuild
		}
		pool, _ := strconv.Atoi(reply[1])
		want = max(need, pool/s.cfg.Segments)
	}
	reply, err := grantScript.Run(ctx, s.rdb, []string{s.homeKey(saleID)}, seg, need, want, home.gen).StringSlice()
	if err != nil {
		return 0, fmt.Errorf("redisstore: grant to segment %d of sale %s: %w", seg, saleID, err)
	}
	if reply[0] != "granted" {
		return 0, errRebuild
	}
	moved, _ := strconv.Atoi(reply[1])
	reply, err = settleScript.Run(ctx, s.rdb, []string{s.segKeys(saleID, seg).stock}, reply[2], "0", home.gen).StringSlice()
	if err != nil {
		return 0, fmt.Errorf("redisstore: receive in segment %d of sale %s: %w", seg, saleID, err)
	}
	if reply[0] != "done" {
		return 0, errRebuild
	}
	return moved, nil
}

// hasUnits is whether the whole sale has at least need units available (an
// error counts as no: the script then decides).
func (s *Store) hasUnits(ctx context.Context, saleID string, need int) bool {
	st, err := s.segmentStock(ctx, saleID)
	return err == nil && st.Available >= need
}

// home is a segmented sale's home hash as read.
type home struct {
	total, pool int
	gen         string
	g           []string // per segment, the cumulative units granted to it
}

// homeState reads the home hash, or errRebuild.
func (s *Store) homeState(ctx context.Context, saleID string) (home, error) {
	reply, err := homeStateScript.Run(ctx, s.rdb, []string{s.homeKey(saleID)}, s.cfg.Segments, "").StringSlice()
	if err != nil {
		return home{}, fmt.Errorf("redisstore: home of sale %s: %w", saleID, err)
	}
	if reply[0] != "ok" || len(reply) != 4+s.cfg.Segments {
		return home{}, errRebuild
	}
	h := home{gen: reply[3]}
	h.total, _ = strconv.Atoi(reply[1])
	h.pool, _ = strconv.Atoi(reply[2])
	h.g = reply[4:]
	return h, nil
}

// segmentStock reads the whole of a segmented sale (see above): total from
// the home, held and sold summed over the segments. The parts are read at one
// instant where Redis allows it (atomicSegmentStock); part by part (a
// cluster, or a part to rebuild first), a hold released in one segment and
// its unit, moved through the pool, held again in another while the parts are
// read would be counted twice, so such a read is made again.
func (s *Store) segmentStock(ctx context.Context, saleID string) (flashsale.StockLevel, error) {
	if st, ok := s.atomicSegmentStock(ctx, saleID); ok {
		return st, nil
	}
	for tries := 1; ; tries++ {
		st, err := s.segmentStockByPart(ctx, saleID)
		if err != nil || st.Available >= 0 || tries == 5 {
			return st, err
		}
	}
}

// atomicSegmentStock reads every part of a segmented sale in one MULTI/EXEC,
// which no hold, release or refill interleaves with, when the sale lives on
// one Redis server (a cluster spreads the parts over masters). ok false: not
// one server, or a part must be rebuilt or read again first.
func (s *Store) atomicSegmentStock(ctx context.Context, saleID string) (flashsale.StockLevel, bool) {
	c, one := s.rdb.(*redis.Client)
	if !one {
		return flashsale.StockLevel{}, false
	}
	gen, err := s.genOf(ctx, saleID)
	if err != nil {
		return flashsale.StockLevel{}, false
	}
	parts := make([]*redis.Cmd, s.cfg.Segments)
	var home *redis.Cmd
	if _, err := c.TxPipelined(ctx, func(p redis.Pipeliner) error {
		for j := range parts {
			parts[j] = stockScript.EvalSha(ctx, p, []string{s.segKeys(saleID, j).stock}, gen)
		}
		home = homeStateScript.EvalSha(ctx, p, []string{s.homeKey(saleID)}, s.cfg.Segments, gen)
		return nil
	}); err != nil {
		return flashsale.StockLevel{}, false
	}
	var st flashsale.StockLevel
	for _, cmd := range parts {
		reply, err := cmd.StringSlice()
		if err != nil || len(reply) != 5 || reply[0] != "done" {
			return flashsale.StockLevel{}, false
		}
		held, _ := strconv.Atoi(reply[3])
		sold, _ := strconv.Atoi(reply[4])
		st.Held += held
		st.Sold += sold
	}
	reply, err := home.StringSlice()
	if err != nil || len(reply) < 2 || reply[0] != "ok" {
		return flashsale.StockLevel{}, false
	}
	st.Total, _ = strconv.Atoi(reply[1])
	st.Available = st.Total - st.Held - st.Sold
	return st, true
}

// segmentStockByPart reads a segmented sale part by part, rebuilding what must be.
func (s *Store) segmentStockByPart(ctx context.Context, saleID string) (flashsale.StockLevel, error) {
	var st flashsale.StockLevel
	for j := range s.cfg.Segments {
		k := s.segKeys(saleID, j)
		reply, err := s.run(ctx, scriptCall{saleID, j, stockScript, []string{k.stock}, nil})
		if err != nil {
			return flashsale.StockLevel{}, err
		}
		held, _ := strconv.Atoi(reply[3])
		sold, _ := strconv.Atoi(reply[4])
		st.Held += held
		st.Sold += sold
	}
	h, err := s.homeState(ctx, saleID)
	if errors.Is(err, errRebuild) {
		if err = s.rebuild(ctx, saleID, "not_loaded"); err == nil {
			h, err = s.homeState(ctx, saleID)
		}
	}
	if err != nil {
		return flashsale.StockLevel{}, err
	}
	st.Total = h.total
	st.Available = st.Total - st.Held - st.Sold
	return st, nil
}
