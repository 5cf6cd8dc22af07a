package redisstore

import (
	"context"
	"fmt"
	"maps"
	"strconv"

	"github.com/redis/go-redis/v9"

	"github.com/flashsale/flashsale"
)

// This file is what the reconciler reads and repairs. Reads are one atomic
// MULTI of the sale's hashes; repairs are one Lua script per sale that applies
// compare-and-set fixes and then derives the counters from the holds, so a hold
// or release that runs concurrently is never overwritten: it either ran before
// the script (and a fix whose expected state it changed is skipped) or after it.

// Snapshot reads the sale's stock, holds, live tickets and units at one instant
// (with segments, each segment at one instant, then the home; see
// segmentSnapshot). It does not rebuild a lost sale.
func (s *Store) Snapshot(ctx context.Context, saleID string) (flashsale.SaleSnapshot, error) {
	if s.cfg.Segments > 1 {
		return s.segmentSnapshot(ctx, saleID)
	}
	return s.snapshot(ctx, s.segKeys(saleID, 0))
}

// snapshot reads one sale's (or segment's) hashes in one MULTI.
func (s *Store) snapshot(ctx context.Context, k saleKeys) (flashsale.SaleSnapshot, error) {
	var stock, holds, live, units *redis.MapStringStringCmd
	_, err := s.rdb.TxPipelined(ctx, func(p redis.Pipeliner) error {
		stock = p.HGetAll(ctx, k.stock)
		holds = p.HGetAll(ctx, k.holds)
		live = p.HGetAll(ctx, k.live)
		units = p.HGetAll(ctx, k.units)
		return nil
	})
	if err != nil {
		return flashsale.SaleSnapshot{}, fmt.Errorf("redisstore: snapshot of %s: %w", k.stock, err)
	}
	st := stock.Val()
	if len(st) == 0 {
		return flashsale.SaleSnapshot{}, nil
	}
	atoi := func(v string) int { n, _ := strconv.Atoi(v); return n }
	for _, m := range []map[string]string{holds.Val(), live.Val(), units.Val()} {
		delete(m, loadMarker)
	}
	snap := flashsale.SaleSnapshot{Loaded: true,
		Stock: flashsale.StockLevel{Total: atoi(st["total"]), Available: atoi(st["available"]), Held: atoi(st["held"]), Sold: atoi(st["sold"])},
		Holds: make(map[string]flashsale.Hold, len(holds.Val())),
		Live:  live.Val(),
		Units: make(map[string]int, len(units.Val())),
	}
	for id, v := range holds.Val() {
		snap.Holds[id] = parseHold(v)
	}
	for u, v := range units.Val() {
		snap.Units[u] = atoi(v)
	}
	return snap, nil
}

// segmentSnapshot merges the segments' snapshots, then reads the home. Total
// is the home's; available counts what the segments have, the pool and the
// units moving between them (granted not yet received, given back not yet
// collected), so that a segment whose counters drifted shows as a difference.
func (s *Store) segmentSnapshot(ctx context.Context, saleID string) (flashsale.SaleSnapshot, error) {
	all := flashsale.SaleSnapshot{Loaded: true, Holds: map[string]flashsale.Hold{}, Live: map[string]string{}, Units: map[string]int{}}
	moving := 0
	for j := range s.cfg.Segments {
		k := s.segKeys(saleID, j)
		snap, err := s.snapshot(ctx, k)
		if err != nil {
			return flashsale.SaleSnapshot{}, err
		}
		if !snap.Loaded {
			return flashsale.SaleSnapshot{}, nil
		}
		flows, err := s.rdb.HMGet(ctx, k.stock, "in", "out").Result()
		if err != nil {
			return flashsale.SaleSnapshot{}, fmt.Errorf("redisstore: snapshot of %s: %w", k.stock, err)
		}
		moving += -atoiAny(flows[0]) + atoiAny(flows[1])
		all.Stock.Available += snap.Stock.Available
		all.Stock.Held += snap.Stock.Held
		all.Stock.Sold += snap.Stock.Sold
		maps.Copy(all.Holds, snap.Holds)
		maps.Copy(all.Live, snap.Live)
		maps.Copy(all.Units, snap.Units)
	}
	h, err := s.rdb.HGetAll(ctx, s.homeKey(saleID)).Result()
	if err != nil {
		return flashsale.SaleSnapshot{}, fmt.Errorf("redisstore: snapshot of the home of sale %s: %w", saleID, err)
	}
	if len(h) == 0 {
		return flashsale.SaleSnapshot{}, nil
	}
	for j := range s.cfg.Segments {
		moving += atoiAny(h["g"+strconv.Itoa(j)]) - atoiAny(h["r"+strconv.Itoa(j)])
	}
	all.Stock.Total = atoiAny(h["total"])
	all.Stock.Available += atoiAny(h["pool"]) + moving
	return all, nil
}

// atoiAny reads a number Redis answered as a string (0 for nil or junk).
func atoiAny(v any) int {
	str, _ := v.(string)
	n, _ := strconv.Atoi(str)
	return n
}

// repairScript applies hold fixes (compare-and-set on the state), then units
// fixes (compare-and-set on the user's units, recomputed from the holds), then
// sets available/held/sold from the holds and total from ARGV (a segment keeps
// its own: total -1).
// KEYS stock holds live units; ARGV total nh {tid from to user}*nh nu {user observed nt tid*nt}*nu.
var repairScript = redis.NewScript(`
if redis.call('EXISTS', KEYS[1]) == 0 then return {'not_loaded'} end
local function counted(st)
  if not st then return nil, 0 end
  local k = string.sub(st, 1, 2)
  if k == 'H:' then return 'held', tonumber(string.sub(st, 3)) end
  if k == 'S:' then return 'sold', tonumber(string.sub(st, 3)) end
  return nil, 0
end
local i = 3
local hflags = {}
for n = 1, tonumber(ARGV[2]) do
  local tid, from, to, user = ARGV[i], ARGV[i+1], ARGV[i+2], ARGV[i+3]
  i = i + 4
  if (redis.call('HGET', KEYS[2], tid) or '') == from then
    if to == '' then redis.call('HDEL', KEYS[2], tid) else redis.call('HSET', KEYS[2], tid, to) end
    if user ~= '' then
      local live = redis.call('HGET', KEYS[3], user)
      if string.sub(to, 1, 2) == 'H:' then
        if not live then redis.call('HSET', KEYS[3], user, tid) end
      elseif live == tid then
        redis.call('HDEL', KEYS[3], user)
      end
    end
    hflags[n] = '1'
  else
    hflags[n] = '0'
  end
end
local uflags = {}
local nu = tonumber(ARGV[i])
i = i + 1
for n = 1, nu do
  local user, observed, nt = ARGV[i], tonumber(ARGV[i+1]), tonumber(ARGV[i+2])
  i = i + 3
  if tonumber(redis.call('HGET', KEYS[4], user) or '0') == observed then
    local sum = 0
    for m = 0, nt - 1 do
      local _, q = counted(redis.call('HGET', KEYS[2], ARGV[i+m]))
      sum = sum + q
    end
    redis.call('HSET', KEYS[4], user, sum)
    uflags[n] = '1'
  else
    uflags[n] = '0'
  end
  i = i + nt
end
local held, sold = 0, 0
for _, st in ipairs(redis.call('HVALS', KEYS[2])) do
  local k, q = counted(st)
  if k == 'held' then held = held + q elseif k == 'sold' then sold = sold + q end
end
local total = tonumber(ARGV[1])
if total < 0 then total = tonumber(redis.call('HGET', KEYS[1], 'total')) end
redis.call('HSET', KEYS[1], 'total', total, 'available', total - held - sold, 'held', held, 'sold', sold)
return {'done', table.concat(hflags), table.concat(uflags), tostring(total - held - sold), tostring(held), tostring(sold), tostring(total)}
`)

// RepairSale applies the fixes to a loaded sale in one atomic script and sets
// its counters from its holds (total from the book of record): available =
// total - held - sold, held and sold the sums of the held and sold states.
// A fix whose expected value changed since it was computed is skipped (its flag
// is false); a sale that is not loaded is left alone (Loaded false).
//
// With segments, each segment is repaired in one script with the fixes of its
// users (a hold fix of no known user goes to every segment, and applies where
// the ticket is), keeping the segment's total; the stock returned is then
// the sale's: total, the segments' held and sold, and total - held - sold.
func (s *Store) RepairSale(ctx context.Context, saleID string, total int, holds []flashsale.HoldFix, units []flashsale.UnitsFix) (flashsale.RepairResult, error) {
	if s.cfg.Segments == 1 {
		return s.repair(ctx, s.segKeys(saleID, 0), total, holds, units)
	}
	res := flashsale.RepairResult{Loaded: true, Holds: make([]bool, len(holds)), Units: make([]bool, len(units))}
	for j := range s.cfg.Segments {
		var hs []flashsale.HoldFix
		var hi, ui []int
		for i, f := range holds {
			if f.UserID == "" || s.segmentOf(f.UserID) == j {
				hs, hi = append(hs, f), append(hi, i)
			}
		}
		var us []flashsale.UnitsFix
		for i, f := range units {
			if s.segmentOf(f.UserID) == j {
				us, ui = append(us, f), append(ui, i)
			}
		}
		r, err := s.repair(ctx, s.segKeys(saleID, j), -1, hs, us)
		if err != nil {
			return flashsale.RepairResult{}, err
		}
		if !r.Loaded {
			return flashsale.RepairResult{}, nil
		}
		for n, i := range hi {
			res.Holds[i] = res.Holds[i] || r.Holds[n]
		}
		for n, i := range ui {
			res.Units[i] = r.Units[n]
		}
		res.Stock.Held += r.Stock.Held
		res.Stock.Sold += r.Stock.Sold
	}
	res.Stock.Total = total
	res.Stock.Available = total - res.Stock.Held - res.Stock.Sold
	return res, nil
}

// repair runs repairScript on one sale's (or segment's) keys.
func (s *Store) repair(ctx context.Context, k saleKeys, total int, holds []flashsale.HoldFix, units []flashsale.UnitsFix) (flashsale.RepairResult, error) {
	args := make([]any, 0, 3+4*len(holds)+3*len(units))
	args = append(args, total, len(holds))
	for _, f := range holds {
		args = append(args, f.TicketID, flashsale.FormatHold(f.From), flashsale.FormatHold(f.To), f.UserID)
	}
	args = append(args, len(units))
	for _, f := range units {
		args = append(args, f.UserID, f.Observed, len(f.Tickets))
		for _, t := range f.Tickets {
			args = append(args, t)
		}
	}
	reply, err := repairScript.Run(ctx, s.rdb, []string{k.stock, k.holds, k.live, k.units}, args...).StringSlice()
	if err != nil {
		return flashsale.RepairResult{}, fmt.Errorf("redisstore: repair %s: %w", k.stock, err)
	}
	if reply[0] == "not_loaded" {
		return flashsale.RepairResult{}, nil
	}
	if len(reply) != 7 || len(reply[1]) != len(holds) || len(reply[2]) != len(units) {
		return flashsale.RepairResult{}, fmt.Errorf("redisstore: repair %s: unexpected reply %q", k.stock, reply)
	}
	res := flashsale.RepairResult{Loaded: true, Holds: make([]bool, len(holds)), Units: make([]bool, len(units))}
	for i := range holds {
		res.Holds[i] = reply[1][i] == '1'
	}
	for i := range units {
		res.Units[i] = reply[2][i] == '1'
	}
	res.Stock.Total, _ = strconv.Atoi(reply[6])
	res.Stock.Available, _ = strconv.Atoi(reply[3])
	res.Stock.Held, _ = strconv.Atoi(reply[4])
	res.Stock.Sold, _ = strconv.Atoi(reply[5])
	return res, nil
}
