package ingress

import (
	"context"
	"sync"
	"time"

	"github.com/flashsale/flashsale"
	"github.com/flashsale/flashsale/service"
)

// Decisions announces the tickets workers decide, and those a waiting room's
// line releases (status queued), to every ingress.
type Decisions interface {
	// FollowDecisions calls deliver with the tickets of each announcement
	// until ctx ends, and synced each time its subscription is made (the
	// first time and after every reconnection: announcements made meanwhile
	// were missed).
	FollowDecisions(ctx context.Context, deliver func([]*flashsale.Ticket), synced func()) error
}

// streams is what this ingress's ticket event streams share (see events.go):
// one subscription to the announcements of decided tickets, fanned out to the
// streams that follow each ticket; the sales' paces (paceBook, which GET
// answers use too); and, once a second, the places of every queued ticket
// followed, read per sale in one batch (Line.Places) when the sale's line
// moved (a decision heard) or every reread anyway, and handed to the streams
// whose place changed. A stream that misses an announcement (Redis pub/sub
// delivers at most once) reads its ticket again itself every reread, and every
// stream reads again when the subscription is made anew.
//
// It is a service.Service (Start runs the subscription and the ticker); the
// streams work without it running, only slower: each reads its ticket every
// reread. Close ends every open stream (the HTTP server's RegisterOnShutdown,
// so a graceful shutdown does not wait for streams that never end by
// themselves); the clients reconnect, to this node once it is back or to
// another.
type streams struct {
	service.Runner
	srv     *Server
	perUser int
	reread  time.Duration

	mu     sync.Mutex
	byID   map[string]map[*follower]struct{}
	users  map[string]int // open streams per user
	closed chan struct{}
	once   sync.Once
}

// follower is one stream's mailbox. The hub writes to its channels without
// blocking: each holds the latest news only.
type follower struct {
	ref  flashsale.TicketRef
	sale string // the sale of the ticket's place, once read ("" before)
	// news is the ticket announced (decided, or released from a waiting
	// room's line: queued), or nil: read the ticket again. It holds the two
	// latest, so that a release heard just before the decision is not lost.
	news chan *flashsale.Ticket
	// moved is the ticket's place as the last batch read it.
	moved chan int
	last  int // the place last handed over (hub side, under streams.mu)
}

func newStreams(srv *Server, perUser int, reread time.Duration) *streams {
	return &streams{srv: srv, perUser: perUser, reread: reread, byID: map[string]map[*follower]struct{}{},
		users: map[string]int{}, closed: make(chan struct{})}
}

// Start runs the subscription and the ticker until Stop.
func (st *streams) Start(ctx context.Context) error { return st.Go(ctx, st.run) }

func (st *streams) run(ctx context.Context, ready func()) {
	ready()
	if d := st.srv.cfg.Decisions; d != nil {
		go func() {
			for ctx.Err() == nil {
				if err := d.FollowDecisions(ctx, st.deliver, st.wakeAll); err != nil && ctx.Err() == nil {
					st.srv.log.Warn("listening to decided tickets failed; again in a second", "err", err)
					service.Sleep(ctx, time.Second)
				}
			}
		}()
	}
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	last := time.Now()
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-tick.C:
			st.srv.pace.forget(now)
			all := now.Sub(last) >= st.reread
			if all {
				last = now
			}
			// A line moves when its tickets are decided; given-up and
			// orphaned tickets leave it too, seen every reread.
			st.refresh(ctx, func(sale string) bool { return all || st.srv.pace.heardWithin(sale, 2*time.Second, now) })
		}
	}
}

// Close ends every open stream. Idempotent.
func (st *streams) Close() { st.once.Do(func() { close(st.closed) }) }

// open counts a new stream of user; false when the user has perUser open
// already. done must be called once the stream ends.
func (st *streams) open(user string) (done func(), ok bool) {
	st.mu.Lock()
	defer st.mu.Unlock()
	if st.users[user] >= st.perUser {
		return nil, false
	}
	st.users[user]++
	return func() {
		st.mu.Lock()
		defer st.mu.Unlock()
		if st.users[user]--; st.users[user] <= 0 {
			delete(st.users, user)
		}
	}, true
}

// follow registers a stream of ref's ticket; unfollow must be called once it
// ends.
func (st *streams) follow(ref flashsale.TicketRef) *follower {
	f := &follower{ref: ref, news: make(chan *flashsale.Ticket, 2), moved: make(chan int, 1)}
	st.mu.Lock()
	defer st.mu.Unlock()
	if st.byID[ref.Ticket] == nil {
		st.byID[ref.Ticket] = map[*follower]struct{}{}
	}
	st.byID[ref.Ticket][f] = struct{}{}
	return f
}

// placed tells the hub the sale of f's place and the place f showed.
func (st *streams) placed(f *follower, sale string, pos int) {
	st.mu.Lock()
	defer st.mu.Unlock()
	f.sale, f.last = sale, pos
}

func (st *streams) unfollow(f *follower) {
	st.mu.Lock()
	defer st.mu.Unlock()
	if fs := st.byID[f.ref.Ticket]; fs != nil {
		delete(fs, f)
		if len(fs) == 0 {
			delete(st.byID, f.ref.Ticket)
		}
	}
}

// deliver hands an announcement's tickets to the streams that follow them,
// and counts each sale's decisions in its pace (a release is none).
func (st *streams) deliver(tickets []*flashsale.Ticket) {
	now := time.Now()
	perSale := map[string]int{}
	for _, t := range tickets {
		if t.Status != flashsale.TicketQueued {
			perSale[t.Lines()[0].SaleID]++
		}
	}
	for sale, n := range perSale {
		st.srv.pace.heard(sale, n, now)
	}
	st.mu.Lock()
	defer st.mu.Unlock()
	for _, t := range tickets {
		for f := range st.byID[t.ID] {
			put(f.news, t)
		}
	}
}

// wake has the streams of ticket id read it again (its status changed
// through this node, unannounced: a waiting ticket left its line).
func (st *streams) wake(id string) {
	st.mu.Lock()
	defer st.mu.Unlock()
	for f := range st.byID[id] {
		put(f.news, nil)
	}
}

// wakeAll has every stream read its ticket again.
func (st *streams) wakeAll() {
	st.mu.Lock()
	defer st.mu.Unlock()
	for _, fs := range st.byID {
		for f := range fs {
			put(f.news, nil)
		}
	}
}

// refresh reads the places of the followed tickets of each sale that due
// says, in one batch per sale, and hands the changed ones to their streams.
func (st *streams) refresh(ctx context.Context, due func(sale string) bool) {
	line := st.srv.cfg.Line
	if line == nil {
		return
	}
	st.mu.Lock()
	bySale := map[string][]*follower{}
	for _, fs := range st.byID {
		for f := range fs {
			if f.sale != "" && due(f.sale) {
				bySale[f.sale] = append(bySale[f.sale], f)
			}
		}
	}
	st.mu.Unlock()
	for sale, fs := range bySale {
		refs := make([]flashsale.TicketRef, len(fs))
		for i, f := range fs {
			refs[i] = f.ref
		}
		rctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		places, err := line.Places(rctx, sale, refs)
		cancel()
		if err != nil {
			st.srv.log.Debug("reading the places of followed tickets failed; next second", "sale", sale, "err", err)
			continue
		}
		st.mu.Lock()
		for i, f := range fs {
			if p := max(places[i], 1); p != f.last {
				f.last = p
				put(f.moved, p)
			}
		}
		st.mu.Unlock()
	}
}

// put adds v to ch without blocking, dropping the oldest value when ch is
// full (only one goroutine writes to it at a time, under streams.mu).
func put[T any](ch chan T, v T) {
	select {
	case ch <- v:
		return
	default:
	}
	select {
	case <-ch:
	default:
	}
	ch <- v
}
