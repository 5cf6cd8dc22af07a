package redisstore

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"

	"github.com/redis/go-redis/v9"

	"github.com/flashsale/flashsale"
)

// A sale's line: where each queued ticket stands, and the announcements of
// tickets leaving it.
//
// Each sale (each segment of it) keeps its queued tickets in a sorted set
// (queue, see scripts.go) scored by Redis's clock in µs at the claim: the
// claim script adds the ticket (one ZADD), and the ticket leaves the line
// when its decision is written (PutTickets: one ZREM per sale of the ticket,
// in the pipeline that writes the copies) or it is given up (Unclaim). A
// ticket's place is 1 + the entries scored below it, summed over the sale's
// segments (Places). Entries only ever leave, and a new one is scored later
// than every entry already there, so a waiting ticket's place never grows:
// a rebuild keeps the entries (with their scores) of the tickets MySQL does
// not know, as it keeps their claims. Extra cost per purchase: one ZADD in
// the claim script, one ZREM in the decision's pipeline (no extra round
// trip), and one ZSCORE in the claim's check of the family's marker.
//
// A claim whose publish never completed (its ingress died) would hold its
// place for ever: Places drops such entries from the head of the line (an
// unpublished claim older than Config.ClaimStale), and the claim script
// drops the orphan when the user comes back.
//
// Announcements: PutTickets publishes the tickets it decides, as a JSON array
// of tickets, on the channel <namespace>:decided, after their copies and in
// the same round trip; so does Released with the tickets a waiting room's
// line releases (status queued: not decided, not counted in a pace). Every
// ingress listens (FollowDecisions) to push them to the event streams it
// holds and to measure each sale's pace. Redis pub/sub
// delivers at most once and only to subscribers connected at that moment, so
// a listener reads what it follows again whenever its subscription is made
// anew (FollowDecisions' synced) and now and then anyway: announcements make
// streams fast, never correct.

// leavesLine reports whether a ticket written with status st has left its
// sale's line: the worker decided it (pending_payment, sold_out, failed).
// Paid, expired and cancelled follow an order, which left the line when it
// was created.
func leavesLine(st flashsale.TicketStatus) bool {
	switch st {
	case flashsale.TicketPendingPayment, flashsale.TicketSoldOut, flashsale.TicketFailed:
		return true
	}
	return false
}

// decidedChannel is the pub/sub channel of the announcements.
func (s *Store) decidedChannel() string { return s.cfg.Namespace + ":decided" }

// leaveLine returns what PutTickets adds to its pipeline for the tickets it
// decides: each leaves the line of each of its sales, and one message
// announces them all. nil when none is decided.
func (s *Store) leaveLine(ctx context.Context, tickets []*flashsale.Ticket) func(redis.Pipeliner) {
	var decided []*flashsale.Ticket
	for _, t := range tickets {
		if leavesLine(t.Status) {
			decided = append(decided, t)
		}
	}
	if len(decided) == 0 {
		return nil
	}
	return func(p redis.Pipeliner) {
		for _, t := range decided {
			for _, l := range t.Lines() {
				p.ZRem(ctx, s.keys(l.SaleID, t.UserID).queue, t.ID)
			}
		}
		if b, err := json.Marshal(decided); err == nil {
			p.Publish(ctx, s.decidedChannel(), b)
		}
	}
}

// FollowDecisions subscribes to the announcements of decided tickets (see
// above) and calls deliver with the tickets of each, until ctx ends; synced
// is called each time the subscription is made, the first time and after
// every reconnection (announcements made meanwhile were missed: the caller
// reads what it follows again). deliver and synced run on this goroutine, one
// at a time. It returns ctx's error.
func (s *Store) FollowDecisions(ctx context.Context, deliver func([]*flashsale.Ticket), synced func()) error {
	ps := s.rdb.Subscribe(ctx, s.decidedChannel())
	defer ps.Close()
	ch := ps.ChannelWithSubscriptions(redis.WithChannelSize(1024))
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case m, ok := <-ch:
			if !ok {
				return ctx.Err()
			}
			switch m := m.(type) {
			case *redis.Subscription:
				if m.Kind == "subscribe" {
					synced()
				}
			case *redis.Message:
				var tickets []*flashsale.Ticket
				if err := json.Unmarshal([]byte(m.Payload), &tickets); err != nil {
					s.log.Warn("an announcement of decided tickets does not parse; ignored", "err", err)
					continue
				}
				deliver(tickets)
			}
		}
	}
}

// placeChunk is the most tickets one script call places.
const placeChunk = 1000

// Places returns the place in the sale's line of each ticket (tickets[i]
// names a queued ticket of the sale and its user): 1 + the tickets of the
// sale ahead of it still in the line, over every segment; 0 for a ticket
// that is not in the line (decided meanwhile, given up, or its place lost
// with Redis). One script per segment and 1,000 tickets: the tickets of each
// segment are found in their segment, then, with segments, the others are
// counted by score. A sale lost or stale is rebuilt first.
func (s *Store) Places(ctx context.Context, saleID string, tickets []flashsale.TicketRef) ([]int, error) {
	places := make([]int, len(tickets))
	scores := make([]string, len(tickets))
	bySeg := make([][]int, s.cfg.Segments)
	for i, t := range tickets {
		j := s.segmentOf(t.User)
		bySeg[j] = append(bySeg[j], i)
	}
	stale := s.cfg.ClaimStale.Milliseconds()
	for j, idx := range bySeg {
		k := s.segKeys(saleID, j)
		for from := 0; from < len(idx); from += placeChunk {
			part := idx[from:min(from+placeChunk, len(idx))]
			args := []any{stale}
			for _, i := range part {
				args = append(args, tickets[i].Ticket)
			}
			reply, err := s.run(ctx, scriptCall{saleID, j, placeScript, []string{k.stock, k.queue, k.claims}, args})
			if err != nil {
				return nil, err
			}
			if len(reply) != 1+2*len(part) {
				return nil, fmt.Errorf("redisstore: places: unexpected reply of %d values for %d tickets", len(reply), len(part))
			}
			for n, i := range part {
				if scores[i] = reply[1+2*n]; scores[i] != "" {
					ahead, _ := strconv.Atoi(reply[2+2*n])
					places[i] = 1 + ahead
				}
			}
		}
	}
	for j := range bySeg {
		if s.cfg.Segments == 1 {
			break
		}
		var idx []int
		for i := range tickets {
			if scores[i] != "" && s.segmentOf(tickets[i].User) != j {
				idx = append(idx, i)
			}
		}
		k := s.segKeys(saleID, j)
		for from := 0; from < len(idx); from += placeChunk {
			part := idx[from:min(from+placeChunk, len(idx))]
			args := []any{stale}
			for _, i := range part {
				args = append(args, scores[i])
			}
			reply, err := s.run(ctx, scriptCall{saleID, j, aheadScript, []string{k.stock, k.queue, k.claims}, args})
			if err != nil {
				return nil, err
			}
			if len(reply) != 1+len(part) {
				return nil, fmt.Errorf("redisstore: places: unexpected reply of %d values for %d scores", len(reply), len(part))
			}
			for n, i := range part {
				ahead, _ := strconv.Atoi(reply[1+n])
				places[i] += ahead
			}
		}
	}
	return places, nil
}

// pruneHead opens the scripts that read a line (after loadedCheck): an
// unpublished claim older than ARGV[1] ms at the head of the line (an orphan:
// its ingress died before publishing) leaves it, up to 4 of them. KEYS[2] is
// the line, KEYS[3] the claims.
const pruneHead = `
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
for _, tid in ipairs(redis.call('ZRANGEBYSCORE', KEYS[2], 0, '+inf', 'LIMIT', 0, 4)) do
  local c = redis.call('HGET', KEYS[3], tid)
  local at = c and tonumber(string.match(c, '^(%d+)'))
  if not at or now - at < tonumber(ARGV[1]) then break end
  redis.call('ZREM', KEYS[2], tid)
end
`

// placeScript finds tickets in one segment's line: for each, its score and
// the entries scored below it ("" and "0" for a ticket not in the line),
// once the head is pruned (pruneHead). KEYS stock queue claims; ARGV stale_ms tid... gen. Returns {"done", score,
// ahead, ...} or a rebuild reason.
var placeScript = redis.NewScript(loadedCheck + pruneHead + `
local out = {'done'}
for i = 2, #ARGV - 1 do
  local sc = redis.call('ZSCORE', KEYS[2], ARGV[i])
  if sc then
    out[#out + 1] = sc
    out[#out + 1] = tostring(redis.call('ZCOUNT', KEYS[2], 0, '(' .. sc))
  else
    out[#out + 1] = ''
    out[#out + 1] = '0'
  end
end
return out
`)

// aheadScript counts, for each score, the entries of one segment's line
// scored below it, after pruning its head as placeScript does. KEYS stock
// queue claims; ARGV stale_ms score... gen. Returns {"done", count, ...} or a
// rebuild reason.
var aheadScript = redis.NewScript(loadedCheck + pruneHead + `
local out = {'done'}
for i = 2, #ARGV - 1 do
  out[#out + 1] = tostring(redis.call('ZCOUNT', KEYS[2], 0, '(' .. ARGV[i]))
end
return out
`)
