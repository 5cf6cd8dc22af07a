package redisstore

import "github.com/redis/go-redis/v9"

// The per-sale keys, all sharing the hash tag {sale:<id>} so that every script
// runs unchanged on a Redis Cluster:
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

// claimScript gives the user a new live ticket unless they already have one.
// KEYS stock live units claims; ARGV user tid qty limit now_ms stale_ms.
// Returns {"claimed", tid} | {"existing", tid} | {"limit"} | {"sold_out"} | {"not_loaded"}.
// A claim whose publish never completed (older than stale_ms) is replaced.
var claimScript = redis.NewScript(`
if redis.call('EXISTS', KEYS[1]) == 0 then return {'not_loaded'} end
local cur = redis.call('HGET', KEYS[2], ARGV[1])
if cur then
  local at = redis.call('HGET', KEYS[4], cur)
  if (not at) or (tonumber(ARGV[5]) - tonumber(at) < tonumber(ARGV[6])) then
    return {'existing', cur}
  end
  redis.call('HDEL', KEYS[4], cur)
end
local q = tonumber(ARGV[3])
local units = tonumber(redis.call('HGET', KEYS[3], ARGV[1]) or '0')
if units + q > tonumber(ARGV[4]) then return {'limit'} end
if tonumber(redis.call('HGET', KEYS[1], 'available')) < q then return {'sold_out'} end
redis.call('HSET', KEYS[2], ARGV[1], ARGV[2])
redis.call('HSET', KEYS[4], ARGV[2], ARGV[5])
return {'claimed', ARGV[2]}
`)

// unclaimScript undoes a claim whose publish failed. KEYS live claims; ARGV user tid.
var unclaimScript = redis.NewScript(`
if redis.call('HGET', KEYS[1], ARGV[1]) == ARGV[2] then redis.call('HDEL', KEYS[1], ARGV[1]) end
redis.call('HDEL', KEYS[2], ARGV[2])
return 1
`)

// holdScript holds q units for ticket tid. KEYS stock holds live units claims;
// ARGV tid user q limit admitted_ms. Returns {"not_loaded"} or {"done", state}.
// The ticket must be the user's live ticket; a ticket with no live entry is held
// only if it was admitted before the stock was (re)loaded, when the live entry may
// have been lost with Redis; otherwise its claim was undone after a failed publish.
var holdScript = redis.NewScript(`
if redis.call('EXISTS', KEYS[1]) == 0 then return {'not_loaded'} end
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
if (not live) and tonumber(ARGV[5]) >= tonumber(redis.call('HGET', KEYS[1], 'epoch_ms') or '0') then
  return refuse('F')
end
local q = tonumber(ARGV[3])
if tonumber(redis.call('HGET', KEYS[4], ARGV[2]) or '0') + q > tonumber(ARGV[4]) then return refuse('F') end
if tonumber(redis.call('HGET', KEYS[1], 'available')) < q then return refuse('X') end
redis.call('HINCRBY', KEYS[1], 'available', -q)
redis.call('HINCRBY', KEYS[1], 'held', q)
redis.call('HINCRBY', KEYS[4], ARGV[2], q)
redis.call('HSET', KEYS[2], ARGV[1], 'H:' .. q)
redis.call('HSET', KEYS[3], ARGV[2], ARGV[1])
redis.call('HDEL', KEYS[5], ARGV[1])
return {'done', 'H:' .. q}
`)

// reassertScript makes sure a committed order's hold is counted: a no-op when the
// ticket has any state, else (Redis lost it and was rebuilt before the order
// committed) it holds q units without checking availability, because MySQL already
// has the order. KEYS stock holds live units; ARGV tid user q.
var reassertScript = redis.NewScript(`
if redis.call('EXISTS', KEYS[1]) == 0 then return {'not_loaded'} end
local st = redis.call('HGET', KEYS[2], ARGV[1])
if st then return {'done', st} end
local q = tonumber(ARGV[3])
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
var releaseScript = redis.NewScript(`
if redis.call('EXISTS', KEYS[1]) == 0 then return {'not_loaded'} end
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

// confirmScript moves a paid ticket's units from held to sold. KEYS stock holds live;
// ARGV tid user. Returns {"not_loaded"} or {"done", previous state or ""}.
var confirmScript = redis.NewScript(`
if redis.call('EXISTS', KEYS[1]) == 0 then return {'not_loaded'} end
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

var allScripts = []*redis.Script{claimScript, unclaimScript, holdScript, reassertScript, releaseScript, confirmScript}
