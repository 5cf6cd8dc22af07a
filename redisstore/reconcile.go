package redisstore

import (
	"context"
	"fmt"
	"strconv"

	"github.com/redis/go-redis/v9"

	"github.com/flashsale/flashsale"
)

// This file is what the reconciler reads and repairs. Reads are one atomic
// MULTI of the sale's hashes; repairs are one Lua script per sale that applies
// compare-and-set fixes and then derives the counters from the holds, so a hold
// or release that runs concurrently is never overwritten: it either ran before
// the script (and a fix whose expected state it changed is skipped) or after it.

// Snapshot reads the sale's stock, holds, live tickets and units at one instant.
// It does not rebuild a lost sale.
func (s *Store) Snapshot(ctx context.Context, saleID string) (flashsale.SaleSnapshot, error) {
	k := s.keys(saleID)
	var stock, holds, live, units *redis.MapStringStringCmd
	_, err := s.rdb.TxPipelined(ctx, func(p redis.Pipeliner) error {
		stock = p.HGetAll(ctx, k.stock)
		holds = p.HGetAll(ctx, k.holds)
		live = p.HGetAll(ctx, k.live)
		units = p.HGetAll(ctx, k.units)
		return nil
	})
	if err != nil {
		return flashsale.SaleSnapshot{}, fmt.Errorf("redisstore: snapshot of sale %s: %w", saleID, err)
	}
	st := stock.Val()
	if len(st) == 0 {
		return flashsale.SaleSnapshot{}, nil
	}
	atoi := func(v string) int { n, _ := strconv.Atoi(v); return n }
	snap := flashsale.SaleSnapshot{Loaded: true,
		Stock: flashsale.Stock{Total: atoi(st["total"]), Available: atoi(st["available"]), Held: atoi(st["held"]), Sold: atoi(st["sold"])},
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

// repairScript applies hold fixes (compare-and-set on the state), then units
// fixes (compare-and-set on the user's units, recomputed from the holds), then
// sets available/held/sold from the holds and total from ARGV.
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
redis.call('HSET', KEYS[1], 'total', total, 'available', total - held - sold, 'held', held, 'sold', sold)
return {'done', table.concat(hflags), table.concat(uflags), tostring(total - held - sold), tostring(held), tostring(sold)}
`)

// RepairSale applies the fixes to a loaded sale in one atomic script and sets
// its counters from its holds (total from the book of record): available =
// total - held - sold, held and sold the sums of the held and sold states.
// A fix whose expected value changed since it was computed is skipped (its flag
// is false); a sale that is not loaded is left alone (Loaded false).
func (s *Store) RepairSale(ctx context.Context, saleID string, total int, holds []flashsale.HoldFix, units []flashsale.UnitsFix) (flashsale.RepairResult, error) {
	k := s.keys(saleID)
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
		return flashsale.RepairResult{}, fmt.Errorf("redisstore: repair sale %s: %w", saleID, err)
	}
	if reply[0] == "not_loaded" {
		return flashsale.RepairResult{}, nil
	}
	if len(reply) != 6 || len(reply[1]) != len(holds) || len(reply[2]) != len(units) {
		return flashsale.RepairResult{}, fmt.Errorf("redisstore: repair sale %s: unexpected reply %q", saleID, reply)
	}
	res := flashsale.RepairResult{Loaded: true, Holds: make([]bool, len(holds)), Units: make([]bool, len(units))}
	for i := range holds {
		res.Holds[i] = reply[1][i] == '1'
	}
	for i := range units {
		res.Units[i] = reply[2][i] == '1'
	}
	res.Stock.Total = total
	res.Stock.Available, _ = strconv.Atoi(reply[3])
	res.Stock.Held, _ = strconv.Atoi(reply[4])
	res.Stock.Sold, _ = strconv.Atoi(reply[5])
	return res, nil
}
