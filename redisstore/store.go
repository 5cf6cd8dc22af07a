// Package redisstore is the hot path on Redis: each sale's stock and per-ticket
// holds (Lua scripts, idempotent per ticket), each user's live ticket, and a fast
// copy of every ticket's status.
//
// Redis is the truth about availability during a sale and follows MySQL for
// everything else. When a sale's keys are missing, the sale is "not loaded", never
// "sold out": the store rebuilds it from its Source under a redislock lease and
// runs the script again.
package redisstore

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/bsm/redislock"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"

	"github.com/flashsale/flashsale"
)

// Source is the book of record a lost sale is rebuilt from.
type Source interface {
	// GetSale returns the sale or an error wrapping flashsale.ErrNotFound.
	GetSale(ctx context.Context, id string) (*flashsale.Sale, error)
	// SaleTickets returns every ticket of the sale that MySQL decided: one
	// per order of the sale, in any status, with its quantity there (less
	// what was returned), and one per recorded outcome (sold_out, failed).
	// It reads the primaries: a rebuild must not read a lagging replica.
	SaleTickets(ctx context.Context, saleID string) ([]*flashsale.Ticket, error)
}

// Config says where Redis is and how keys are named.
type Config struct {
	// Addrs: one address for a single Redis, several for a Redis Cluster. Required.
	Addrs []string
	// Namespace prefixes every key. Required.
	Namespace string
	// Source rebuilds lost sales. Required.
	Source Source
	// Log receives rebuild notices. Default slog.Default().
	Log *slog.Logger
	// TicketTTL is how long the fast copy of a ticket is kept. Default 7 days;
	// after that GET falls back to MySQL.
	TicketTTL time.Duration
	// ClaimStale is how old an unpublished claim must be before a new purchase of
	// the same user replaces it (the ingress died between claim and publish).
	// Default 15 s; must exceed the publish timeout.
	ClaimStale time.Duration
	// Registry receives the round-trip counters (metrics.go); nil registers
	// nothing.
	Registry prometheus.Registerer
	// Segments is how many parts each sale's stock is split into, each under
	// a hash tag of its own, so that on a Redis Cluster one hot sale's claims
	// use several masters (segments.go). Default 1: a sale in one slot. Every
	// process must use the same value; change it only when no sale is live
	// (a sale loaded with another value is rebuilt from MySQL, and MySQL's
	// stock cap still refuses whatever Redis hands out twice). 1 to 64.
	Segments int
}

// Store is the Redis adapter. It is safe for concurrent use.
type Store struct {
	cfg    Config
	rdb    redis.UniversalClient
	locker *redislock.Client
	log    *slog.Logger
	tags   sync.Map // sale id -> []string, its segments' hash tags
	gates  sync.Map // sale id and segment -> *refillGate
	gens   sync.Map // sale id -> string, a segmented sale's home load as last read
}

// New connects (lazily) to Redis.
func New(cfg Config) (*Store, error) {
	if len(cfg.Addrs) == 0 || cfg.Addrs[0] == "" {
		return nil, errors.New("redisstore: at least one address is required")
	}
	if cfg.Namespace == "" {
		return nil, errors.New("redisstore: Namespace is required")
	}
	if cfg.Source == nil {
		return nil, errors.New("redisstore: Source is required")
	}
	if cfg.Log == nil {
		cfg.Log = slog.Default()
	}
	if cfg.TicketTTL == 0 {
		cfg.TicketTTL = 7 * 24 * time.Hour
	}
	if cfg.ClaimStale == 0 {
		cfg.ClaimStale = 15 * time.Second
	}
	if cfg.Segments == 0 {
		cfg.Segments = 1
	}
	if cfg.Segments < 1 || cfg.Segments > 64 {
		return nil, fmt.Errorf("redisstore: Segments must be 1 to 64, got %d", cfg.Segments)
	}
	var rdb redis.UniversalClient
	if len(cfg.Addrs) > 1 {
		// Built directly, not through UniversalOptions, which cannot set the
		// slot map's reload interval (60 s by default): a dead master never
		// answers MOVED, so the client would keep dialing it for up to a
		// minute after its replica took over.
		rdb = redis.NewClusterClient(&redis.ClusterOptions{Addrs: cfg.Addrs, PoolSize: 64, MinIdleConns: 8,
			DialTimeout: 2 * time.Second, ReadTimeout: 2 * time.Second, WriteTimeout: 2 * time.Second,
			ClusterStateReloadInterval: time.Second})
	} else {
		rdb = redis.NewClient(&redis.Options{Addr: cfg.Addrs[0], PoolSize: 64, MinIdleConns: 8,
			DialTimeout: 2 * time.Second, ReadTimeout: 2 * time.Second, WriteTimeout: 2 * time.Second})
	}
	if cfg.Registry != nil {
		rdb.AddHook(newCounter(cfg.Registry))
	}
	return &Store{cfg: cfg, rdb: rdb, locker: redislock.New(rdb), log: cfg.Log}, nil
}

// Client exposes the connection for other adapters of the same Redis (locks).
func (s *Store) Client() redis.UniversalClient { return s.rdb }

// Close closes the connection pool.
func (s *Store) Close() error { return s.rdb.Close() }

// Ping checks that Redis answers.
func (s *Store) Ping(ctx context.Context) error {
	if err := s.rdb.Ping(ctx).Err(); err != nil {
		return fmt.Errorf("redis not answering: %w", err)
	}
	return nil
}

type saleKeys struct{ stock, holds, live, units, claims, queue string }

func (s *Store) ticketKey(id string) string { return s.cfg.Namespace + ":ticket:{" + id + "}" }

// scriptCall is one script run on one segment of a sale. A script that
// needs units takes the refill flag as its last argument (see refillFlag).
type scriptCall struct {
	saleID string
	seg    int
	script *redis.Script
	keys   []string
	args   []any
}

// maxRefills bounds the refills one script run asks for: each moves units
// into the segment while the sale has any, but concurrent claims and holds of
// the segment may take them first, and a refill of another segment may take
// the pool this one collected.
const maxRefills = 16

// run runs the call with the load it expects appended (genOf), rebuilding
// the sale from the Source and trying again when the sale is not loaded,
// rebuilding, stale, or behind MySQL (see scripts.go and rebuild.go),
// re-reading the home's load when the call expected another one, and
// refilling a segment that asks for units and trying again, until the sale
// has fewer than the units asked for available in all (or maxRefills): then
// once more with the refill flag "0", so that the script decides. It returns
// the script's reply as strings.
func (s *Store) run(ctx context.Context, c scriptCall) ([]string, error) {
	for rebuilds, gens, refills := 0, 0, 0; ; {
		gen, err := s.genOf(ctx, c.saleID)
		reply := []string{"rebuilding"}
		if err == nil {
			args := append(append(make([]any, 0, len(c.args)+1), c.args...), gen)
			reply, err = c.script.Run(ctx, s.rdb, c.keys, args...).StringSlice()
		} else if !errors.Is(err, errRebuild) {
			return nil, err
		}
		if err != nil && !errors.Is(err, errRebuild) {
			return nil, fmt.Errorf("redisstore: %w", err)
		}
		switch {
		case len(reply) == 2 && reply[0] == "refill":
			need, _ := strconv.Atoi(reply[1])
			moved, err := s.refill(ctx, c.saleID, c.seg, need)
			if err != nil {
				return nil, err
			}
			if refills++; refills == maxRefills || (moved == 0 && !s.hasUnits(ctx, c.saleID, need)) {
				c.args = append(c.args[:len(c.args)-1:len(c.args)-1], "0")
			}
			continue
		case len(reply) == 1 && reply[0] == "gen" && gens < 2:
			s.gens.Delete(c.saleID) // another load since it was read: read it again
			gens++
			continue
		}
		why := rebuildReason(reply)
		if why == "" {
			return reply, nil
		}
		if rebuilds == 2 {
			return nil, fmt.Errorf("redisstore: sale %s still %s after a rebuild: %w", c.saleID, why, flashsale.ErrNotLoaded)
		}
		if err := s.rebuild(ctx, c.saleID, why); err != nil {
			return nil, err
		}
		rebuilds++
	}
}

// rebuildReason is why a script's reply asks for the sale to be rebuilt first
// (see scripts.go): "not_loaded", "rebuilding", "stale", "behind", or "gen"
// once the home's load was read again; "" when it does not.
func rebuildReason(reply []string) string {
	if len(reply) > 0 {
		switch reply[0] {
		case "not_loaded", "rebuilding", "stale", "behind", "gen":
			return reply[0]
		}
	}
	return ""
}

// genOf is the load a script on the sale expects (its gen argument): "" for
// a sale in one slot (its stock hash is the whole sale), else the home's
// load, cached until a script finds another (errRebuild: the home is not
// loaded, being rebuilt, or stale).
func (s *Store) genOf(ctx context.Context, saleID string) (string, error) {
	if s.cfg.Segments == 1 {
		return "", nil
	}
	if v, ok := s.gens.Load(saleID); ok {
		return v.(string), nil
	}
	h, err := s.homeState(ctx, saleID)
	if err != nil {
		return "", err
	}
	s.gens.Store(saleID, h.gen)
	return h.gen, nil
}

// Stock reads the sale's stock in one piece, rebuilding a lost or stale sale
// first.
func (s *Store) Stock(ctx context.Context, saleID string) (flashsale.StockLevel, error) {
	if s.cfg.Segments > 1 {
		return s.segmentStock(ctx, saleID)
	}
	reply, err := s.run(ctx, scriptCall{saleID, 0, stockScript, []string{s.segKeys(saleID, 0).stock}, nil})
	if err != nil {
		return flashsale.StockLevel{}, err
	}
	if len(reply) != 5 {
		return flashsale.StockLevel{}, fmt.Errorf("redisstore: stock: unexpected reply %q", reply)
	}
	n := make([]int, 4)
	for i, v := range reply[1:] {
		n[i], _ = strconv.Atoi(v)
	}
	return flashsale.StockLevel{Total: n[0], Available: n[1], Held: n[2], Sold: n[3]}, nil
}

// Claim makes the claim's ticket the user's live ticket for the sale unless
// they have one, checking the per-user limit and availability first. Without
// c.ID the ticket's id is minted from the sales, the user and what this sale
// knows of their earlier tickets (see claimScript), so a purchase retried while
// its ticket is queued is the same ticket after any loss of Redis. The claim
// is provisional until Queued; Unclaim undoes it. For Claimed, id is the
// ticket's and load names the load of the sale the claim was made in: the
// purchase carries it to the hold (see holdScript).
func (s *Store) Claim(ctx context.Context, sale *flashsale.Sale, userID string, c flashsale.TicketClaim, qty int) (outcome flashsale.ClaimOutcome, id string, load int64, err error) {
	seg := s.segmentOf(userID)
	k := s.segKeys(sale.ID, seg)
	seed := s.cfg.Namespace + "|" + strings.Join(c.Sales, ",")
	reply, err := s.run(ctx, scriptCall{sale.ID, seg, claimScript, []string{k.stock, k.live, k.units, k.claims, k.holds, k.queue},
		[]any{userID, c.ID, seed, c.Nonce, qty, sale.PerUserLimit, s.cfg.ClaimStale.Milliseconds(), s.refillFlag()}})
	if err != nil {
		return 0, "", 0, err
	}
	switch reply[0] {
	case "claimed":
		load, _ := strconv.ParseInt(reply[2], 10, 64)
		return flashsale.Claimed, reply[1], load, nil
	case "existing":
		return flashsale.Existing, reply[1], 0, nil
	case "refused":
		return flashsale.Refused, reply[1], 0, nil
	case "unconfirmed":
		return flashsale.Unconfirmed, reply[1], 0, nil
	case "limit":
		return flashsale.LimitReached, "", 0, nil
	case "sold_out":
		return flashsale.SoldOut, "", 0, nil
	}
	return 0, "", 0, fmt.Errorf("redisstore: claim: unexpected reply %v", reply)
}

// Holder reads the user's live ticket in the sale ("" when none) and the
// units they hold or bought there, in one script (no claim: the cheap
// answer of a sale known sold out, or of a user over their budget). A sale
// lost or stale is rebuilt first, so a live ticket that MySQL knows is never
// missed. refused: the live ticket's hold refused it (see holdScript), and
// whether that is final yet is for MySQL to say.
func (s *Store) Holder(ctx context.Context, saleID, userID string) (live string, refused bool, units int, err error) {
	seg := s.segmentOf(userID)
	k := s.segKeys(saleID, seg)
	reply, err := s.run(ctx, scriptCall{saleID, seg, holderScript, []string{k.stock, k.live, k.units, k.holds}, []any{userID}})
	if err != nil {
		return "", false, 0, err
	}
	units, _ = strconv.Atoi(reply[2])
	return reply[1], reply[3] == "X" || reply[3] == "F", units, nil
}

// Unclaim undoes a claim whose publish failed, so the user may simply retry,
// and records the ticket given up in the sale's holds (its id is never minted
// again); the ticket leaves the sale's line.
func (s *Store) Unclaim(ctx context.Context, p flashsale.Part) error {
	k := s.keys(p.SaleID, p.UserID)
	if err := unclaimScript.Run(ctx, s.rdb, []string{k.live, k.claims, k.holds, k.queue}, p.UserID, p.TicketID).Err(); err != nil {
		return fmt.Errorf("redisstore: unclaim: %w", err)
	}
	return nil
}

func parseHold(s string) flashsale.Hold {
	if s == "" {
		return flashsale.Hold{}
	}
	h := flashsale.Hold{Kind: flashsale.HoldKind(s[0])}
	if q, ok := strings.CutPrefix(s[1:], ":"); ok {
		h.Quantity, _ = strconv.Atoi(q)
	}
	return h
}

// runMany runs calls (each on one ticket, all with as many arguments) in one
// pipeline: one run of many (the calls' script in its forEachTicket form) per
// segment of a sale and maxTicketsPerRun tickets, each segment's tickets in
// their order, and returns each call's hold state. A call whose ticket, or
// whose whole run, found the sale not loaded or the segment short of units is
// run again on its own through run, which rebuilds the sale or refills the
// segment.
func (s *Store) runMany(ctx context.Context, many *redis.Script, calls []scriptCall) ([]flashsale.Hold, []error) {
	type segment struct {
		saleID string
		seg    int
	}
	var runs [][]int          // each run's calls, in their order
	open := map[segment]int{} // a segment's run that may take more calls
	for i, c := range calls {
		g := segment{c.saleID, c.seg}
		r, ok := open[g]
		if !ok || len(runs[r]) == maxTicketsPerRun {
			r = len(runs)
			runs = append(runs, nil)
			open[g] = r
		}
		runs[r] = append(runs[r], i)
	}
	cmds := make([]*redis.Cmd, len(runs))
	args := make([][]any, len(runs))
	s.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		for r, members := range runs {
			first := calls[members[0]]
			gen, err := s.genOf(ctx, first.saleID)
			if err != nil {
				continue // each call goes through run, which rebuilds
			}
			args[r] = append(make([]any, 0, 2+len(members)*len(first.args)), len(first.args))
			for _, i := range members {
				args[r] = append(args[r], calls[i].args...)
			}
			args[r] = append(args[r], gen)
			cmds[r] = many.EvalSha(ctx, p, first.keys, args[r]...)
		}
		return nil
	})
	holds := make([]flashsale.Hold, len(calls))
	errs := make([]error, len(calls))
	for r, members := range runs {
		var replies []any
		if cmds[r] != nil {
			v, err := cmds[r].Result()
			if redis.HasErrorPrefix(err, "NOSCRIPT") { // loaded by EVAL
				v, err = many.Run(ctx, s.rdb, calls[members[0]].keys, args[r]...).Result()
			}
			if err != nil {
				for _, i := range members {
					errs[i] = fmt.Errorf("redisstore: %w", err)
				}
				continue
			}
			replies, _ = v.([]any) // a reason of loadedCheck: a list of strings
		}
		for k, i := range members {
			var reply []string
			if k < len(replies) {
				reply = stringsOf(replies[k])
			}
			if len(reply) < 2 || reply[0] != "done" {
				var err error
				if reply, err = s.run(ctx, calls[i]); err != nil {
					errs[i] = err
					continue
				}
			}
			holds[i] = parseHold(reply[1])
		}
	}
	return holds, errs
}

// maxTicketsPerRun bounds the tickets of one forEachTicket run (runMany): a
// script blocks Redis while it runs, and a hundred holds of one segment took
// 1.9 to 2.8 ms (2026-12-07, on an idle Redis).
const maxTicketsPerRun = 100

// stringsOf is v, one ticket's reply in a forEachTicket script's, as strings;
// nil when it is not a list (the whole script answered a reason of
// loadedCheck).
func stringsOf(v any) []string {
	l, ok := v.([]any)
	if !ok {
		return nil
	}
	out := make([]string, len(l))
	for i, x := range l {
		out[i], _ = x.(string)
	}
	return out
}

// Hold holds each request's units for its ticket, or refuses, in one round trip.
// Idempotent per ticket. sales[i] is the sale of reqs[i].
func (s *Store) Hold(ctx context.Context, sales []*flashsale.Sale, reqs []*flashsale.PurchaseRequest) ([]flashsale.Hold, []error) {
	calls := make([]scriptCall, len(reqs))
	for i, req := range reqs {
		seg := s.segmentOf(req.UserID)
		k := s.segKeys(sales[i].ID, seg)
		calls[i] = scriptCall{sales[i].ID, seg, holdScript, []string{k.stock, k.holds, k.live, k.units, k.claims},
			[]any{req.TicketID, req.UserID, req.Quantity, sales[i].PerUserLimit, strconv.FormatInt(req.LoadOf(0), 10), s.refillFlag()}}
	}
	return s.runMany(ctx, holdManyScript, calls)
}

// Reassert counts committed orders' holds (one part per sale) where Redis lost them (see
// reassertScript), in one round trip.
func (s *Store) Reassert(ctx context.Context, parts []flashsale.Part) ([]flashsale.Hold, []error) {
	calls := make([]scriptCall, len(parts))
	for i, p := range parts {
		seg := s.segmentOf(p.UserID)
		k := s.segKeys(p.SaleID, seg)
		calls[i] = scriptCall{p.SaleID, seg, reassertScript, []string{k.stock, k.holds, k.live, k.units},
			[]any{p.TicketID, p.UserID, p.Quantity, s.refillFlag()}}
	}
	return s.runMany(ctx, reassertManyScript, calls)
}

// runPart runs a script on the keys of the segment of p's user: KEYS stock
// holds live units.
func (s *Store) runPart(ctx context.Context, p flashsale.Part, script *redis.Script, args ...any) ([]string, error) {
	seg := s.segmentOf(p.UserID)
	k := s.segKeys(p.SaleID, seg)
	return s.run(ctx, scriptCall{p.SaleID, seg, script, []string{k.stock, k.holds, k.live, k.units}, args})
}

// Release gives a ticket's held units back, once; it returns the state before.
func (s *Store) Release(ctx context.Context, p flashsale.Part) (flashsale.Hold, error) {
	reply, err := s.runPart(ctx, p, releaseScript, p.TicketID, p.UserID)
	if err != nil {
		return flashsale.Hold{}, err
	}
	return parseHold(reply[1]), nil
}

// Confirm makes a paid ticket's p.Quantity units sold, once (held → sold, or
// taken as sold where Redis does not count them: see confirmScript); it
// returns the state before.
func (s *Store) Confirm(ctx context.Context, p flashsale.Part) (flashsale.Hold, error) {
	reply, err := s.runPart(ctx, p, confirmScript, p.TicketID, p.UserID, p.Quantity, s.refillFlag())
	if err != nil {
		return flashsale.Hold{}, err
	}
	return parseHold(reply[1]), nil
}

// Retake holds a released ticket's p.Quantity units again if they are all
// available (a late payment of its expired order; see retakeScript). ok false:
// they are not.
func (s *Store) Retake(ctx context.Context, p flashsale.Part) (before flashsale.Hold, ok bool, err error) {
	reply, err := s.runPart(ctx, p, retakeScript, p.TicketID, p.UserID, p.Quantity, s.refillFlag())
	if err != nil {
		return flashsale.Hold{}, false, err
	}
	if reply[0] == "short" {
		return flashsale.Hold{}, false, nil
	}
	return parseHold(reply[1]), true, nil
}

// Return lowers a paid ticket's units in the sale to p.Quantity (what its order
// keeps there after its returns), putting the rest back on sale, once (see
// returnScript); it returns the state before.
func (s *Store) Return(ctx context.Context, p flashsale.Part) (flashsale.Hold, error) {
	reply, err := s.runPart(ctx, p, returnScript, p.TicketID, p.UserID, p.Quantity)
	if err != nil {
		return flashsale.Hold{}, err
	}
	return parseHold(reply[1]), nil
}

// PutTickets writes the fast copies of tickets in one round trip. A copy is
// never moved back (a final status is not overwritten by a live one). The
// tickets it decides (see decided) leave their sales' lines and are announced
// to every ingress, in the same round trip, after their copies (see line.go).
// A ticket refused without an order (sold_out, failed) is settled in each of
// its sales in the same round trip (see refusedScript), so its caller must
// have recorded the refusal in MySQL first; a sale that is not loaded as
// this server's answers a rebuild reason there and is settled through run,
// after its rebuild.
func (s *Store) PutTickets(ctx context.Context, tickets ...*flashsale.Ticket) error {
	if len(tickets) == 0 {
		return nil
	}
	type refusal struct {
		part  flashsale.Part
		state string
	}
	var refused []refusal
	for _, t := range tickets {
		state := ""
		switch {
		case t.OrderID != "":
		case t.Status == flashsale.TicketSoldOut:
			state = "X"
		case t.Status == flashsale.TicketFailed:
			state = "F"
		}
		if state == "" {
			continue
		}
		for _, l := range t.Lines() {
			refused = append(refused, refusal{flashsale.Part{SaleID: l.SaleID, TicketID: t.ID, UserID: t.UserID}, state})
		}
	}
	leave := s.leaveLine(ctx, tickets)
	settled := make([]*redis.Cmd, len(refused))
	err := s.putTickets(ctx, tickets, func(p redis.Pipeliner) {
		if leave != nil {
			leave(p)
		}
		for i, r := range refused {
			k := s.keys(r.part.SaleID, r.part.UserID)
			settled[i] = refusedScript.EvalSha(ctx, p, []string{k.stock, k.holds, k.live}, r.part.TicketID, r.part.UserID, r.state, "")
		}
	})
	if err != nil {
		return fmt.Errorf("redisstore: put tickets: %w", err)
	}
	for i, r := range refused {
		if reply, _ := settled[i].StringSlice(); rebuildReason(reply) == "" {
			continue
		}
		_, err := s.runPart(ctx, r.part, refusedScript, r.part.TicketID, r.part.UserID, r.state)
		if err != nil && !errors.Is(err, flashsale.ErrNotFound) { // an unknown sale has nothing to settle
			return fmt.Errorf("redisstore: settle ticket %s: %w", r.part.TicketID, err)
		}
	}
	return nil
}

// Queued records, in one round trip, that tickets' purchases are durably
// queued: each gets its fast copy (never moving one back, so a worker that
// was quicker keeps its final status) and each of its claims is marked
// published: never taken for a stale one (see ClaimStale).
func (s *Store) Queued(ctx context.Context, tickets ...*flashsale.Ticket) error {
	return s.queued(ctx, tickets, false)
}

// Released is Queued for tickets a waiting room's line released (see
// waitroom), announced as well, in the same round trip, on the channel of
// the decided tickets (see line.go): the event streams that follow them as
// waiting learn at once that they are queued, before their decision. An
// ordinary purchase needs no such announcement: its 202 says queued.
func (s *Store) Released(ctx context.Context, tickets ...*flashsale.Ticket) error {
	return s.queued(ctx, tickets, true)
}

func (s *Store) queued(ctx context.Context, tickets []*flashsale.Ticket, announce bool) error {
	if len(tickets) == 0 {
		return nil
	}
	err := s.putTickets(ctx, tickets, func(p redis.Pipeliner) {
		for _, t := range tickets {
			for _, l := range t.Lines() {
				p.HDel(ctx, s.keys(l.SaleID, t.UserID).claims, t.ID)
			}
		}
		if b, err := json.Marshal(tickets); announce && err == nil {
			p.Publish(ctx, s.decidedChannel(), b)
		}
	})
	if err != nil {
		return fmt.Errorf("redisstore: queued: %w", err)
	}
	return nil
}

// putTickets writes tickets' copies, and whatever more adds, in one pipeline.
func (s *Store) putTickets(ctx context.Context, tickets []*flashsale.Ticket, more func(redis.Pipeliner)) error {
	put := func() ([]redis.Cmder, error) {
		return s.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
			for _, t := range tickets {
				payBy := ""
				if t.PayBy != nil {
					payBy = t.PayBy.UTC().Format(time.RFC3339Nano)
				}
				items, unpaid := "", ""
				if len(t.Items) > 1 {
					b, _ := json.Marshal(t.Items)
					items = string(b)
				}
				if t.Unpaid != nil && t.Status == flashsale.TicketPendingPayment {
					b, _ := json.Marshal(t.Unpaid)
					unpaid = string(b)
				}
				putTicketScript.EvalSha(ctx, p, []string{s.ticketKey(t.ID)}, int(s.cfg.TicketTTL.Seconds()), string(t.Status),
					"sale", t.SaleID, "user", t.UserID, "qty", t.Quantity, "items", items, "status", string(t.Status), "order", t.OrderID, "pay_by", payBy, "unpaid", unpaid)
			}
			if more != nil {
				more(p)
			}
			return nil
		})
	}
	_, err := put()
	if err != nil && redis.HasErrorPrefix(err, "NOSCRIPT") {
		// Not cached on this server (it restarted): load them, once, and again.
		if err = putTicketScript.Load(ctx, s.rdb).Err(); err == nil {
			err = refusedScript.Load(ctx, s.rdb).Err()
		}
		if err == nil {
			_, err = put()
		}
	}
	return err
}

// GetTicket returns a ticket's fast copy, or flashsale.ErrNotFound when there
// is none or it was written by another Redis server process (see scripts.go).
func (s *Store) GetTicket(ctx context.Context, ticketID string) (*flashsale.Ticket, error) {
	reply, err := getTicketScript.Run(ctx, s.rdb, []string{s.ticketKey(ticketID)}).StringSlice()
	if err != nil {
		return nil, fmt.Errorf("redisstore: get ticket: %w", err)
	}
	if len(reply) < 2 || reply[0] != "done" {
		return nil, flashsale.Errorf(flashsale.CodeNotFound, "no ticket %q (or only an older copy)", ticketID)
	}
	m := make(map[string]string, len(reply)/2)
	for i := 1; i+1 < len(reply); i += 2 {
		m[reply[i]] = reply[i+1]
	}
	if m["status"] == "" {
		return nil, flashsale.Errorf(flashsale.CodeNotFound, "no ticket %q", ticketID)
	}
	t := &flashsale.Ticket{ID: ticketID, UserID: m["user"], Status: flashsale.TicketStatus(m["status"]), OrderID: m["order"]}
	qty, _ := strconv.Atoi(m["qty"])
	t.SetLines([]flashsale.Line{{SaleID: m["sale"], Quantity: qty}})
	if m["items"] != "" {
		var lines []flashsale.Line
		if err := json.Unmarshal([]byte(m["items"]), &lines); err != nil {
			return nil, fmt.Errorf("redisstore: ticket %s: items: %w", ticketID, err)
		}
		t.SetLines(lines)
	}
	if m["pay_by"] != "" {
		if p, err := time.Parse(time.RFC3339Nano, m["pay_by"]); err == nil {
			t.PayBy = &p
		}
	}
	if m["unpaid"] != "" && t.Status == flashsale.TicketPendingPayment {
		var o flashsale.Order
		if json.Unmarshal([]byte(m["unpaid"]), &o) == nil && o.ID == ticketID {
			t.Unpaid = &o
		}
	}
	return t, nil
}
