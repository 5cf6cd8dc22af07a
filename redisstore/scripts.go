package redisstore

import "github.com/redis/go-redis/v9"

// The per-sale keys, all sharing the hash tag {sale:<id>} so that every script
// runs unchanged on a Redis Cluster (with Config.Segments > 1, each segment of
// the sale has the same keys under a hash tag of its own; see segments.go):
//
//	stock   hash total, available, held, sold, epoch_ms (when it was loaded)
//	holds   hash ticket id -> "H:<q>" held | "S:<q>" sold | "R" released |
//	                          "X" refused, sold out | "F" refused, failed
//	live    hash user id -> the user's live ticket id
//	units   hash user id -> units the user holds or bought
//	claims  hash ticket id -> ms when the ingress claimed it; removed once the
//	        purchase message is known to be queued
//
// Every script checks the per-ticket state in holds first, so running it twice
// (a go-redis retry, a redelivered message) changes nothing the second time, and a
// ticket that was released or refused can never be held again.
//
// The stock hash also records `srv`, the run_id of the Redis server process that
// loaded the sale. Every script on a sale's keys starts with loadedCheck: a sale
// whose keys are gone is "not_loaded"; one whose srv is not the run_id of the
// server running the script is "stale": this server is not the process the sale
// was loaded on, so it may have come back older (a restart from an RDB snapshot
// or AOF, a failover to a replica that missed writes) with nothing missing. Both
// are rebuilt from MySQL before the script runs again (see Store.run). A
// restart or failover that lost nothing costs one rebuild per sale.

// loadedCheck opens every script on a sale's keys; KEYS[1] is its stock hash.
const loadedCheck = `
if redis.call('EXISTS', KEYS[1]) == 0 then return {'not_loaded'} end
if redis.call('HGET', KEYS[1], 'srv') ~= string.match(redis.call('INFO', 'server'), 'run_id:(%x+)') then
  return {'stale'}
end
`

// stampScript records in the sale's stock hash (KEYS[1]) the run_id of the
// server it is loaded on; with ARGV[1] "if_absent" only where none is recorded.
const stampScript = `
if ARGV[1] ~= 'if_absent' or redis.call('HEXISTS', KEYS[1], 'srv') == 0 then
  redis.call('HSET', KEYS[1], 'srv', string.match(redis.call('INFO', 'server'), 'run_id:(%x+)'))
end
return 1
`

// claimScript gives the user a new live ticket unless they already have one.
// KEYS stock live units claims; ARGV user tid qty limit stale_ms refill.
// Returns {"claimed", tid, load} | {"existing", tid} | {"unconfirmed", tid} |
// {"limit"} | {"sold_out"} | {"not_loaded"} | {"stale"}, or with refill "1"
// {"refill", qty} instead of "sold_out" (a segment asks for more units, see
// segments.go). "unconfirmed": the live
// claim is not marked published yet, and not stale. load is the sale's
// epoch_ms, which names the load of its stock the claim was made in (see
// holdScript). A claim whose publish never completed (older than stale_ms by
// Redis's own clock) is dropped, whatever the script then answers, and
// replaced when the user may claim. The same ticket claimed again (go-redis retried a claim whose
// reply was lost) is still "claimed": the caller goes on to publish it.
var claimScript = redis.NewScript(loadedCheck + `
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local load = redis.call('HGET', KEYS[1], 'epoch_ms') or '0'
local cur = redis.call('HGET', KEYS[2], ARGV[1])
if cur == ARGV[2] then return {'claimed', cur, load} end
if cur then
  local at = redis.call('HGET', KEYS[4], cur)
  if not at then return {'existing', cur} end
  if now - tonumber(at) < tonumber(ARGV[5]) then return {'unconfirmed', cur} end
  -- An orphan: gone whatever this claim decides, so that the user's next
  -- claim never finds it as their "existing" ticket.
  redis.call('HDEL', KEYS[4], cur)
  redis.call('HDEL', KEYS[2], ARGV[1])
end
local q = tonumber(ARGV[3])
local units = tonumber(redis.call('HGET', KEYS[3], ARGV[1]) or '0')
if units + q > tonumber(ARGV[4]) then return {'limit'} end
if tonumber(redis.call('HGET', KEYS[1], 'available')) < q then
  if ARGV[6] == '1' then return {'refill', ARGV[3]} end
  return {'sold_out'}
end
redis.call('HSET', KEYS[2], ARGV[1], ARGV[2])
redis.call('HSET', KEYS[4], ARGV[2], now)
return {'claimed', ARGV[2], load}
`)

// unclaimScript undoes a claim whose publish failed. KEYS live claims; ARGV user tid.
var unclaimScript = redis.NewScript(`
if redis.call('HGET', KEYS[1], ARGV[1]) == ARGV[2] then redis.call('HDEL', KEYS[1], ARGV[1]) end
redis.call('HDEL', KEYS[2], ARGV[2])
return 1
`)

// holdScript holds q units for ticket tid. KEYS stock holds live units claims;
// ARGV tid user q limit admitted_ms load refill. Returns {"done", state}, a
// rebuild reason, or with refill "1" {"refill", q} instead of refusing as sold
// out.
// The ticket must be the user's live ticket; a ticket with no live entry is held
// only if its claim was made in an earlier load of the stock (load differs from
// epoch_ms: the live entry may have been lost with Redis); claimed in this load,
// its claim was undone after a failed publish. No clocks are compared: load is
// the epoch_ms the claim script read. A message without load (0, queued before
// this rule) falls back to comparing its admission time with epoch_ms.
var holdScript = redis.NewScript(loadedCheck + `
local st = redis.call('HGET', KEYS[2], ARGV[1])
if st then return {'done', st} end
local function refuse(state)
  redis.call('HSET', KEYS[2], ARGV[1], state)
  redis.call('HDEL', KEYS[5], ARGV[1])
  if redis.call('HGET', KEYS[3], ARGV[2]) == ARGV[1] then redis.call('HDEL', KEYS[3], ARGV[2]) end
  return {'done', state}
end
local live = redis.call('HGET', KEYS[3], ARGV[2])
if live and live ~= ARGV[1] then return refuse('F') end
if not live then
  local epoch = redis.call('HGET', KEYS[1], 'epoch_ms') or '0'
  if ARGV[6] ~= '0' then
    if ARGV[6] == epoch then return refuse('F') end
  elseif tonumber(ARGV[5]) >= tonumber(epoch) then
    return refuse('F')
  end
end
local q = tonumber(ARGV[3])
if tonumber(redis.call('HGET', KEYS[4], ARGV[2]) or '0') + q > tonumber(ARGV[4]) then return refuse('F') end
if tonumber(redis.call('HGET', KEYS[1], 'available')) < q then
  if ARGV[7] == '1' then return {'refill', ARGV[3]} end
  return refuse('X')
end
redis.call('HINCRBY', KEYS[1], 'available', -q)
redis.call('HINCRBY', KEYS[1], 'held', q)
redis.call('HINCRBY', KEYS[4], ARGV[2], q)
redis.call('HSET', KEYS[2], ARGV[1], 'H:' .. q)
redis.call('HSET', KEYS[3], ARGV[2], ARGV[1])
redis.call('HDEL', KEYS[5], ARGV[1])
return {'done', 'H:' .. q}
`)

// reassertScript makes sure a committed order's hold is counted: a no-op when the
// ticket is held, sold or released, else (Redis lost it and was rebuilt before
// the order committed; or a retry of the purchase, after that loss, was refused
// as sold out or failed although its order was committed) it holds q units. MySQL already has the order, within the stock
// cap, so if Redis has fewer than q units available Redis is behind MySQL: the
// script takes nothing and answers {"behind"}, and the sale is rebuilt from
// MySQL (which counts the order); with refill "1" it asks for units first
// ({"refill", q}). KEYS stock holds live units; ARGV tid user q refill.
var reassertScript = redis.NewScript(loadedCheck + `
local st = redis.call('HGET', KEYS[2], ARGV[1])
if st and st ~= 'X' and st ~= 'F' then return {'done', st} end
local q = tonumber(ARGV[3])
if tonumber(redis.call('HGET', KEYS[1], 'available')) < q then
  if ARGV[4] == '1' then return {'refill', ARGV[3]} end
  return {'behind'}
end
redis.call('HINCRBY', KEYS[1], 'available', -q)
redis.call('HINCRBY', KEYS[1], 'held', q)
redis.call('HINCRBY', KEYS[4], ARGV[2], q)
redis.call('HSET', KEYS[2], ARGV[1], 'H:' .. q)
redis.call('HSET', KEYS[3], ARGV[2], ARGV[1])
return {'done', 'H:' .. q}
`)

// releaseScript gives a held ticket's units back (expiry, cancel, dead letter) and
// marks it released, so it can never be held again. KEYS stock holds live units;
// ARGV tid user. Returns {"not_loaded"} or {"done", previous state or ""}.
var releaseScript = redis.NewScript(loadedCheck + `
local st = redis.call('HGET', KEYS[2], ARGV[1]) or ''
if string.sub(st, 1, 2) == 'H:' then
  local q = tonumber(string.sub(st, 3))
  redis.call('HINCRBY', KEYS[1], 'available', q)
  redis.call('HINCRBY', KEYS[1], 'held', -q)
  redis.call('HINCRBY', KEYS[4], ARGV[2], -q)
  redis.call('HSET', KEYS[2], ARGV[1], 'R')
elseif st == '' then
  redis.call('HSET', KEYS[2], ARGV[1], 'R')
end
if redis.call('HGET', KEYS[3], ARGV[2]) == ARGV[1] then redis.call('HDEL', KEYS[3], ARGV[2]) end
return {'done', st}
`)

// confirmScript moves a paid ticket's units from held to sold. KEYS stock holds live units;
// ARGV tid user. Returns {"not_loaded"} or {"done", previous state or ""}.
var confirmScript = redis.NewScript(loadedCheck + `
local st = redis.call('HGET', KEYS[2], ARGV[1]) or ''
if string.sub(st, 1, 2) == 'H:' then
  local q = tonumber(string.sub(st, 3))
  redis.call('HINCRBY', KEYS[1], 'held', -q)
  redis.call('HINCRBY', KEYS[1], 'sold', q)
  redis.call('HSET', KEYS[2], ARGV[1], 'S:' .. q)
end
if redis.call('HGET', KEYS[3], ARGV[2]) == ARGV[1] then redis.call('HDEL', KEYS[3], ARGV[2]) end
return {'done', st}
`)

// retakeScript holds a released ticket's units again for a late payment of its
// expired order: R (or no state: a rebuild does not list closed orders) becomes
// H:q if q units are available. KEYS stock holds live units; ARGV tid user q refill.
// Returns {"done", previous state or ""} or {"short"} (with refill "1":
// {"refill", q}); a ticket held or sold already is left as it is.
var retakeScript = redis.NewScript(loadedCheck + `
local st = redis.call('HGET', KEYS[2], ARGV[1]) or ''
if st ~= 'R' and st ~= '' then return {'done', st} end
local q = tonumber(ARGV[3])
if tonumber(redis.call('HGET', KEYS[1], 'available')) < q then
  if ARGV[4] == '1' then return {'refill', ARGV[3]} end
  return {'short'}
end
redis.call('HINCRBY', KEYS[1], 'available', -q)
redis.call('HINCRBY', KEYS[1], 'held', q)
redis.call('HINCRBY', KEYS[4], ARGV[2], q)
redis.call('HSET', KEYS[2], ARGV[1], 'H:' .. q)
return {'done', st}
`)

// returnScript puts units of a paid ticket back on sale: its hold is lowered to
// keep (the order's units in the sale less everything returned so far, as MySQL
// has it after the return), and the difference moves from sold (or held, when
// the confirm has not reached Redis yet) to available. Because keep only ever
// goes down, a hold at or below keep is left as it is: a repeat, returns
// arriving out of order and a rebuild that read the return already all change
// nothing. KEYS stock holds live units; ARGV tid user keep. Returns {"done", previous state}.
var returnScript = redis.NewScript(loadedCheck + `
local st = redis.call('HGET', KEYS[2], ARGV[1]) or ''
local kind, n = string.sub(st, 1, 1), tonumber(string.sub(st, 3))
local keep = tonumber(ARGV[3])
if (kind ~= 'S' and kind ~= 'H') or n <= keep then return {'done', st} end
local d = n - keep
redis.call('HINCRBY', KEYS[1], 'available', d)
redis.call('HINCRBY', KEYS[1], kind == 'S' and 'sold' or 'held', -d)
redis.call('HINCRBY', KEYS[4], ARGV[2], -d)
redis.call('HSET', KEYS[2], ARGV[1], kind .. ':' .. keep)
return {'done', st}
`)

// The fast copy of a ticket (key <ns>:ticket:{<id>}, a hash of its fields)
// records, like a sale, the run_id of the server that wrote it: a copy read back
// from a Redis that restarted or failed over may be older than the ticket (a
// pending_payment copy of a cancelled order, a queued copy of a decided ticket),
// so it is not trusted; the ticket is then read from MySQL.

// putTicketScript writes a ticket's copy, unless the copy this server has is
// further along (queued < pending_payment < a final status): a worker that read
// the order before it was paid never writes it back to pending_payment.
// KEYS ticket key; ARGV ttl_s status field value... Returns 1 written, 0 kept.
var putTicketScript = redis.NewScript(`
local srv = string.match(redis.call('INFO', 'server'), 'run_id:(%x+)')
local function rank(st)
  if st == 'queued' then return 1 elseif st == 'pending_payment' then return 2 else return 3 end
end
local cur = redis.call('HMGET', KEYS[1], 'status', 'srv')
if cur[1] and cur[2] == srv and rank(ARGV[2]) < rank(cur[1]) then return 0 end
redis.call('HSET', KEYS[1], 'srv', srv, unpack(ARGV, 3))
redis.call('EXPIRE', KEYS[1], ARGV[1])
return 1
`)

// getTicketScript reads a ticket's copy: {} when there is none, {"stale"} when
// another server process wrote it, else {"done", field, value, ...}. KEYS ticket key.
var getTicketScript = redis.NewScript(`
local m = redis.call('HGETALL', KEYS[1])
if #m == 0 then return {} end
if redis.call('HGET', KEYS[1], 'srv') ~= string.match(redis.call('INFO', 'server'), 'run_id:(%x+)') then
  return {'stale'}
end
table.insert(m, 1, 'done')
return m
`)

// stockScript reads the sale's total, available, held and sold. KEYS stock.
var stockScript = redis.NewScript(loadedCheck + `
return {'done', unpack(redis.call('HMGET', KEYS[1], 'total', 'available', 'held', 'sold'))}
`)

var allScripts = []*redis.Script{claimScript, unclaimScript, holdScript, reassertScript, releaseScript, confirmScript, retakeScript, returnScript, stockScript}
