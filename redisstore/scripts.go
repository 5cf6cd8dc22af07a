package redisstore

import "github.com/redis/go-redis/v9"

// The per-sale keys, all sharing the hash tag {sale:<id>} so that every script
// runs unchanged on a Redis Cluster (with Config.Segments > 1, each segment of
// the sale has the same keys under a hash tag of its own; see segments.go):
//
//	stock   hash total, available, held, sold, load, srv (see below)
//	holds   hash ticket id -> "H:<q>" held | "S:<q>" sold | "R" released |
//	                          "X" refused, sold out | "F" refused, failed
//	live    hash user id -> the user's live ticket id
//	units   hash user id -> units the user holds or bought
//	claims  hash ticket id -> ms when the ingress claimed it; removed once the
//	        purchase message is known to be queued
//	queue   sorted set: the sale's line, ticket id scored by the µs of its
//	        claim by Redis's clock (TIME); added by the claim, removed when
//	        the ticket's decision is written (PutTickets) or it is given up
//	        (Unclaim), see line.go
//
// Every script checks the per-ticket state in holds first, so running it twice
// (a go-redis retry, a redelivered message) changes nothing the second time, and a
// ticket that was released or refused can never be held again.
//
// # What Redis state is trusted: one load of a sale
//
// A sale's keys are trusted only as one *load*: what one rebuild wrote (see
// rebuild.go), plus what scripts did since on the same server process and
// replication history. The stock hash records the load's id (`load`, a random
// number the rebuilder draws: never a host clock, so two loads never share it)
// and the server it was written on (`srv`: the server's run_id and
// master_replid; the replication id changes on a promotion and on every full
// resync, so a REPLICAOF round trip or a failover shows, and the run_id changes
// on a restart). Each other hash of the family (holds, live, units, claims)
// carries the load id in its field "!load" (no user or ticket id starts with
// "!"), and the queue a member "!load:<load id>" scored -1 (below every
// ticket's score, so never counted as one), so a family key lost on its own
// (evicted, deleted) shows too. A rebuild in progress marks the stock hash
// with its token (`rebuild`).
//
// Every script on a sale's keys starts with loadedCheck, which answers
// instead of running:
//   - {"not_loaded"}: no load (keys gone: a flush, a restart without data);
//   - {"rebuilding"}: a rebuild froze the sale (or died while it had it);
//   - {"stale"}: another server process or replication history, or a family
//     key without the load's marker;
//   - {"gen"}: the caller expected another load (the last ARGV: the home's
//     load of a sale in segments, see segments.go; "" for any).
// The first three rebuild the sale from MySQL before the script runs again
// (Store.run); "gen" re-reads the home's load. A restart or failover that lost
// nothing costs one rebuild per sale.

// loadMarker is the field of a family hash that holds its load's id.
const loadMarker = "!load"

// serverID is a Lua function naming this server process and its replication
// history: "<run_id>:<master_replid>". Both are 40 hex digits, so each is cut
// out after a plain find of its name: the check took 13.7 µs a script with a
// pattern match over the INFO text and takes 7.1 µs so (redis-benchmark,
// 2026-12-07; a script that only returns takes 1.4 µs).
const serverID = `
local function serverID()
  local info = redis.call('INFO', 'server', 'replication')
  local i = string.find(info, 'run_id:', 1, true)
  local j = string.find(info, 'master_replid:', 1, true)
  return string.sub(info, i + 7, i + 46) .. ':' .. (j and string.sub(info, j + 14, j + 53) or '')
end
`

// loadedCheck opens every script on a sale's keys; KEYS[1] is its stock hash,
// KEYS[2..] the other keys of the family it touches (hashes, and the queue:
// the key whose name ends in ":queue", a sorted set); the last ARGV is the
// load the caller expects ("" for any). It leaves the load id in load.
const loadedCheck = serverID + `
local st = redis.call('HMGET', KEYS[1], 'load', 'srv', 'rebuild')
if st[3] then return {'rebuilding'} end
if not st[1] then return {'not_loaded'} end
if st[2] ~= serverID() then return {'stale'} end
for i = 2, #KEYS do
  if string.sub(KEYS[i], -6) == ':queue' then
    if not redis.call('ZSCORE', KEYS[i], '!load:' .. st[1]) then return {'stale'} end
  elseif redis.call('HGET', KEYS[i], '!load') ~= st[1] then return {'stale'} end
end
if ARGV[#ARGV] ~= '' and ARGV[#ARGV] ~= st[1] then return {'gen'} end
local load = st[1]
`

// claimScript gives the user a new live ticket unless they already have one.
// KEYS stock live units claims holds queue; ARGV user tid seed nonce qty limit
// stale_ms refill gen. Returns {"claimed", tid, load} | {"existing", tid} |
// {"refused", tid} (the live ticket's hold refused it; see holdScript) |
// {"unconfirmed", tid} | {"limit"} | {"sold_out"}, a rebuild reason, or with
// refill "1" {"refill", qty} instead of "sold_out" (a segment asks for more
// units, see segments.go).
//
// The ticket's id: tid when given (a bundle's later lines), else minted from
// seed (the namespace and the ticket's sales), the user and n, the first
// number whose id this sale's holds do not know (mintTicket): a ticket is in
// holds once it is decided (held, refused, released) or given up (unclaim),
// and a rebuild writes every ticket MySQL decided. So while a ticket is only
// queued, every claim of its user mints its id again, whatever Redis lost
// meanwhile: a purchase retried after a flush, a restart or a failover comes
// out as the same ticket, and the worker's idempotency per ticket makes one
// order of it. A ticket's id ends with a tag of its user (ticketTag).
//
// "unconfirmed": the live claim is not marked published yet, and not stale.
// load names the load of the sale the claim was made in (see holdScript). A
// claim whose publish never completed (older than stale_ms by Redis's own
// clock) is dropped, whatever the script then answers, and replaced when the
// user may claim: by the same ticket id. A claim run again by the same
// request (go-redis retried a claim whose reply was lost: the same nonce) is
// still "claimed": the caller goes on to publish it.
//
// A new claim joins the sale's line (queue) at the back: scored by Redis's
// clock in µs, so that the tickets ahead of it are those claimed before it.
// An orphan dropped here leaves the line (its ticket, claimed again, joins it
// again at the back).
var claimScript = redis.NewScript(loadedCheck + mintTicket + `
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local tid = ARGV[2]
if tid == '' then tid = mintTicket(KEYS[5], ARGV[3], ARGV[1]) end
local cur = redis.call('HGET', KEYS[2], ARGV[1])
if cur then
  local c = redis.call('HGET', KEYS[4], cur)
  if not c then
    local st = redis.call('HGET', KEYS[5], cur)
    if st == 'X' or st == 'F' then return {'refused', cur} end
    return {'existing', cur}
  end
  local at, by = string.match(c, '^(%d+):?(.*)$')
  if cur == tid and by == ARGV[4] then return {'claimed', cur, load} end
  if now - tonumber(at) < tonumber(ARGV[7]) then return {'unconfirmed', cur} end
  -- An orphan: gone whatever this claim decides, so that the user's next
  -- claim never finds it as their "existing" ticket.
  redis.call('HDEL', KEYS[4], cur)
  redis.call('HDEL', KEYS[2], ARGV[1])
  redis.call('ZREM', KEYS[6], cur)
end
local q = tonumber(ARGV[5])
local units = tonumber(redis.call('HGET', KEYS[3], ARGV[1]) or '0')
if units + q > tonumber(ARGV[6]) then return {'limit'} end
if tonumber(redis.call('HGET', KEYS[1], 'available')) < q then
  if ARGV[8] == '1' then return {'refill', ARGV[5]} end
  return {'sold_out'}
end
redis.call('HSET', KEYS[2], ARGV[1], tid)
redis.call('HSET', KEYS[4], tid, now .. ':' .. ARGV[4])
redis.call('ZADD', KEYS[6], tonumber(t[1]) * 1000000 + tonumber(t[2]), tid)
return {'claimed', tid, load}
`)

// mintTicket is a Lua function: the id of the user's next ticket in a sale
// (see claimScript), formatted as a UUID of version 8 (RFC 9562's custom
// version): 20 hex digits of SHA-1(seed|user|n), then 12 of which the last 8
// are the user's tag (ticketTag in Go).
const mintTicket = `
local function mintTicket(holds, seed, user)
  local tag = string.sub(redis.sha1hex('u|' .. user), 1, 8)
  local n = 0
  while true do
    local h = redis.sha1hex(seed .. '|' .. user .. '|' .. n)
    local id = string.sub(h, 1, 8) .. '-' .. string.sub(h, 9, 12) .. '-8' .. string.sub(h, 13, 15) ..
      '-8' .. string.sub(h, 16, 18) .. '-' .. string.sub(h, 19, 22) .. tag
    if redis.call('HEXISTS', holds, id) == 0 then return id end
    n = n + 1
  end
end
`

// takeUnits is a Lua function of the scripts that count a ticket's units
// (hold, re-assert, confirm, retake), which share their keys' and
// arguments' layout: KEYS[1] stock, KEYS[2] holds, KEYS[4] units; ARGV[1]
// the ticket, ARGV[2] its user. It moves q units of the sale from available
// to held (kind "H") or sold (kind "S"), adds them to the user's units, and
// sets the ticket's state to kind:q; with fewer than q available it changes
// nothing and returns false (the script then answers refill, or decides).
const takeUnits = `
local function takeUnits(kind, q)
  if tonumber(redis.call('HGET', KEYS[1], 'available')) < q then return false end
  redis.call('HINCRBY', KEYS[1], 'available', -q)
  redis.call('HINCRBY', KEYS[1], kind == 'S' and 'sold' or 'held', q)
  redis.call('HINCRBY', KEYS[4], ARGV[2], q)
  redis.call('HSET', KEYS[2], ARGV[1], kind .. ':' .. q)
  return true
end
`

// forEachTicket makes the body of a script on one ticket (what follows
// loadedCheck, reading its arguments from ARGV) run once per ticket of a
// segment, in one script: ARGV is then w (the arguments per ticket), each
// ticket's w arguments in turn, and the load the caller expects (for
// loadedCheck). The reply lists each ticket's reply in order; a reply of
// loadedCheck is the whole script's. Each run pays once for the call and
// loadedCheck's reads and INFO, so the worker's holds and re-asserts of a
// batch run this way: one run per segment of a sale, not one per ticket.
func forEachTicket(body string) string {
	return `
local function one(ARGV)
` + body + `
end
local w, all, out = tonumber(ARGV[1]), ARGV, {}
for i = 2, #all - 1, w do
  out[#out + 1] = one({unpack(all, i, i + w - 1)})
end
return out
`
}

// unclaimScript undoes a claim whose publish failed, and records the ticket
// given up ("F") so that its id is never minted again (see claimScript); the
// ticket leaves the sale's line. KEYS live claims holds queue; ARGV user tid.
var unclaimScript = redis.NewScript(`
if redis.call('HGET', KEYS[1], ARGV[1]) == ARGV[2] then redis.call('HDEL', KEYS[1], ARGV[1]) end
redis.call('HDEL', KEYS[2], ARGV[2])
redis.call('ZREM', KEYS[4], ARGV[2])
if redis.call('HEXISTS', KEYS[3], ARGV[2]) == 0 then redis.call('HSET', KEYS[3], ARGV[2], 'F') end
return 1
`)

// holdScript holds q units for ticket tid. KEYS stock holds live units claims;
// ARGV tid user q limit load refill gen. Returns {"done", state}, a rebuild
// reason, or with refill "1" {"refill", q} instead of refusing as sold out.
// The ticket must be the user's live ticket; a ticket with no live entry is held
// only if its claim was made in another load of the sale (ARGV load is not
// this load: the live entry may have been lost with Redis); claimed in this
// load, its claim was undone after a failed publish. A refused ticket ("X",
// "F") stays its user's live ticket until its refusal is recorded in MySQL and
// its copy written (refusedScript then ends it): until then it reads queued,
// and a purchase meanwhile must be answered with it, not mint the next ticket.
var holdScript = redis.NewScript(loadedCheck + takeUnits + holdBody)

// holdManyScript is holdScript for many tickets of one segment (see forEachTicket).
var holdManyScript = redis.NewScript(loadedCheck + forEachTicket(takeUnits+holdBody))

const holdBody = `
local st = redis.call('HGET', KEYS[2], ARGV[1])
if st then return {'done', st} end
local function refuse(state)
  redis.call('HSET', KEYS[2], ARGV[1], state)
  redis.call('HDEL', KEYS[5], ARGV[1])
  return {'done', state}
end
local live = redis.call('HGET', KEYS[3], ARGV[2])
if live and live ~= ARGV[1] then return refuse('F') end
if not live and ARGV[5] == load then return refuse('F') end
local q = tonumber(ARGV[3])
if tonumber(redis.call('HGET', KEYS[4], ARGV[2]) or '0') + q > tonumber(ARGV[4]) then return refuse('F') end
if not takeUnits('H', q) then
  if ARGV[6] == '1' then return {'refill', ARGV[3]} end
  return refuse('X')
end
redis.call('HSET', KEYS[3], ARGV[2], ARGV[1])
redis.call('HDEL', KEYS[5], ARGV[1])
return {'done', 'H:' .. q}
`

// reassertScript makes sure a committed order's hold is counted: a no-op when the
// ticket is held, sold or released, else (Redis lost it and was rebuilt before
// the order committed; or a retry of the purchase, after that loss, was refused
// as sold out or failed although its order was committed) it holds q units. MySQL already has the order, within the stock
// cap, so if Redis has fewer than q units available Redis is behind MySQL: the
// script takes nothing and answers {"behind"}, and the sale is rebuilt from
// MySQL (which counts the order); with refill "1" it asks for units first
// ({"refill", q}). KEYS stock holds live units; ARGV tid user q refill.
var reassertScript = redis.NewScript(loadedCheck + takeUnits + reassertBody)

// reassertManyScript is reassertScript for many tickets of one segment (see
// forEachTicket).
var reassertManyScript = redis.NewScript(loadedCheck + forEachTicket(takeUnits+reassertBody))

const reassertBody = `
local st = redis.call('HGET', KEYS[2], ARGV[1])
if st and st ~= 'X' and st ~= 'F' then return {'done', st} end
local q = tonumber(ARGV[3])
if not takeUnits('H', q) then
  if ARGV[4] == '1' then return {'refill', ARGV[3]} end
  return {'behind'}
end
redis.call('HSET', KEYS[3], ARGV[2], ARGV[1])
return {'done', 'H:' .. q}
`

// refusedScript makes a sale's keys follow a refusal MySQL recorded (the
// ticket made no order: "X" sold out, "F" failed): the ticket gets that state
// unless it has one, and stops being its user's live ticket. The hold script
// marked the state when it refused, but the ticket stays live until this runs
// (its copy is written in the same round trip): a purchase meanwhile is
// answered with it. And Redis may have gone back in time in between (a
// restart from an older snapshot, a failover), a rebuild that read MySQL
// before the decision keeping the ticket's claim and live entry as Redis-only
// state. Without it the user's next purchase would find the refused ticket as
// their live one, or mint its id again. KEYS stock holds live; ARGV tid user
// state gen.
var refusedScript = redis.NewScript(loadedCheck + `
if not redis.call('HGET', KEYS[2], ARGV[1]) then redis.call('HSET', KEYS[2], ARGV[1], ARGV[3]) end
if redis.call('HGET', KEYS[3], ARGV[2]) == ARGV[1] then redis.call('HDEL', KEYS[3], ARGV[2]) end
return {'done'}
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

// confirmScript makes a paid ticket's units sold: held → sold, and, where
// Redis does not count them (released, refused or unknown: Redis lost the
// hold, or a rebuild read the order before its late payment committed), it
// takes q units as sold: MySQL has the order paid within its stock cap, so
// Redis follows. Fewer than q available: Redis is behind MySQL ({"behind"}:
// the sale is rebuilt; with refill "1", {"refill", q} first). KEYS stock holds
// live units; ARGV tid user q refill gen. Returns {"done", previous state or ""}.
var confirmScript = redis.NewScript(loadedCheck + takeUnits + `
local st = redis.call('HGET', KEYS[2], ARGV[1]) or ''
local k = string.sub(st, 1, 2)
if k == 'H:' then
  local q = tonumber(string.sub(st, 3))
  redis.call('HINCRBY', KEYS[1], 'held', -q)
  redis.call('HINCRBY', KEYS[1], 'sold', q)
  redis.call('HSET', KEYS[2], ARGV[1], 'S:' .. q)
elseif k ~= 'S:' and not takeUnits('S', tonumber(ARGV[3])) then
  if ARGV[4] == '1' then return {'refill', ARGV[3]} end
  return {'behind'}
end
if redis.call('HGET', KEYS[3], ARGV[2]) == ARGV[1] then redis.call('HDEL', KEYS[3], ARGV[2]) end
return {'done', st}
`)

// retakeScript holds a released ticket's units again for a late payment of its
// expired order: R (or no state) becomes H:q if q units are available. KEYS stock holds live units; ARGV tid user q refill.
// Returns {"done", previous state or ""} or {"short"} (with refill "1":
// {"refill", q}); a ticket held or sold already is left as it is.
var retakeScript = redis.NewScript(loadedCheck + takeUnits + `
local st = redis.call('HGET', KEYS[2], ARGV[1]) or ''
if st ~= 'R' and st ~= '' then return {'done', st} end
if not takeUnits('H', tonumber(ARGV[3])) then
  if ARGV[4] == '1' then return {'refill', ARGV[3]} end
  return {'short'}
end
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
// records, like a sale, the server that wrote it (serverID): a copy read back
// from a Redis that restarted or failed over may be older than the ticket (a
// pending_payment copy of a cancelled order, a queued copy of a decided ticket),
// so it is not trusted; the ticket is then read from MySQL. A pending_payment
// copy also keeps its order as created (field "unpaid", JSON; see
// flashsale.Ticket.Unpaid): every later write of the copy replaces it, with
// "" once the order is no longer unpaid.

// putTicketScript writes a ticket's copy, unless the copy this server has is
// further along (queued < pending_payment < the other final statuses < paid):
// a worker that read the order before it was paid never writes it back to
// pending_payment, and a step that read an order expired before its late
// payment revived it (the sweeper's re-follow, a retried expiry) never writes
// a paid order's copy back to expired; nothing follows paid but paid. KEYS
// ticket key; ARGV ttl_s status field value... Returns 1 written, 0 kept.
var putTicketScript = redis.NewScript(serverID + `
local srv = serverID()
local function rank(st)
  if st == 'queued' then return 1 elseif st == 'pending_payment' then return 2 elseif st == 'paid' then return 4 else return 3 end
end
local cur = redis.call('HMGET', KEYS[1], 'status', 'srv')
if cur[1] and cur[2] == srv and rank(ARGV[2]) < rank(cur[1]) then return 0 end
redis.call('HSET', KEYS[1], 'srv', srv, unpack(ARGV, 3))
redis.call('EXPIRE', KEYS[1], ARGV[1])
return 1
`)

// getTicketScript reads a ticket's copy: {} when there is none, {"stale"} when
// another server process wrote it, else {"done", field, value, ...}. KEYS ticket key.
var getTicketScript = redis.NewScript(serverID + `
local m = redis.call('HGETALL', KEYS[1])
if #m == 0 then return {} end
if redis.call('HGET', KEYS[1], 'srv') ~= serverID() then
  return {'stale'}
end
table.insert(m, 1, 'done')
return m
`)

// stockScript reads the sale's total, available, held and sold. KEYS stock;
// ARGV gen.
var stockScript = redis.NewScript(loadedCheck + `
return {'done', unpack(redis.call('HMGET', KEYS[1], 'total', 'available', 'held', 'sold'))}
`)

// holderScript reads the user's live ticket ("" when none), the units they
// hold or bought, and the live ticket's state in holds ("" when none). KEYS
// stock live units holds; ARGV user gen. Returns {"done", live, units,
// state} or a rebuild reason: a sale lost or stale is rebuilt before it
// answers, so a live ticket is never missed because Redis lost it (MySQL's
// unpaid orders are their users' live tickets after a rebuild).
var holderScript = redis.NewScript(loadedCheck + `
local live = redis.call('HGET', KEYS[2], ARGV[1])
local st = live and redis.call('HGET', KEYS[4], live) or ''
return {'done', live or '', redis.call('HGET', KEYS[3], ARGV[1]) or '0', st}
`)
