package admission

import (
	"context"
	"sync"
	"time"

	"github.com/flashsale/flashsale"
	"github.com/flashsale/flashsale/internal/tokenbucket"
)

// userBudget is the fairness rule of admission: a purchase request spends a
// slot of its sale's 10 ms window only while its user has budget left on this
// node. Each (sale, user) has a token bucket of rate tokens per second holding
// at most rate tokens: a user hammering the button spends at most rate slots
// per second of the sale's window, however fast they send, so the window stays
// for everyone else. A request over the budget never reaches the window nor
// the claim, so it can never be admitted: it is answered the user's live
// ticket (200, a double click or a retry must get its ticket), read without a
// claim (see holdingOf), or, when they have none to answer, 429 rate_limited
// as if the window were full. It is in memory and per node, like the window
// itself: no network round trip, and a user spread over n nodes gets n
// budgets.
//
// A double click's burst (a user's 20 simultaneous requests) must still get
// one ticket and 200s, not 429s for the requests over the budget that arrive
// while the first ones are being claimed and queued. So the budget also knows
// the requests in flight that had budget, per (sale, user): a request over
// the budget first waits until none is (see Take), then reads the ticket they
// made.
//
// Buckets live in two generations of maps, swapped every second: a bucket
// untouched for a whole generation is full again anyway, so it is dropped, and
// memory is bounded by the users active in the last two seconds.
type userBudget struct {
	rate float64 // tokens per second and bucket size; <= 0 disables

	mu        sync.Mutex
	gen       int64 // index of the current generation (unix seconds)
	cur, prev map[budgetKey]*tokenbucket.Bucket
	flights   map[budgetKey]*flight // requests with budget not answered yet
}

// flight is the requests of one (sale, user) that had budget and are not
// answered yet; done is closed when the last one is.
type flight struct {
	n    int
	done chan struct{}
}

type budgetKey struct{ sale, user string }

// withinBudget lets a line reach the sale's window only while its user has
// budget left for the sale on this node. Over it, the line neither spends a
// slot of the window nor reaches the claim: it is answered the user's live
// ticket, read without a claim once their requests in flight here that had
// budget are answered (a double click's burst), or 429 as if the window were
// full. So hammering the button can neither take the others' slots nor skip
// the window to be admitted. A bundle does not wait: two bundles of one user
// naming the same sales in another order could wait for each other. A line
// that took a token keeps its flight until the purchase is decided (see
// purchase.leave).
func (a *Admission) withinBudget(ctx context.Context, p *purchase, l *line) decision {
	leave, idle, ok := a.budget.Take(l.sale.ID, p.User, p.Now)
	if ok {
		l.leave = leave
		return next
	}
	if idle != nil && !p.bundle {
		select {
		case <-idle:
			l.read = false // read what they made
		case <-ctx.Done():
			return refuse(ctx.Err())
		}
	}
	if !l.read {
		l.held, l.heldErr = a.holdingOf(ctx, l.sale.ID, p.User, p.Now)
	}
	if l.heldErr == nil && l.held.ticket != nil {
		return answer(l.held.ticket)
	}
	return refuse(flashsale.ErrRateLimited)
}

func newUserBudget(perSecond int) *userBudget {
	return &userBudget{rate: float64(perSecond), cur: map[budgetKey]*tokenbucket.Bucket{}, prev: map[budgetKey]*tokenbucket.Bucket{},
		flights: map[budgetKey]*flight{}}
}

// Take takes one token of user's bucket for sale at now. With one (ok) the
// request is in flight until leave is called (once, when it is answered).
// Without, idle is closed when none of the user's requests in flight for the
// sale is left (nil: none is now). Both in one step, so a request over the
// budget never misses one that took a token before it.
func (b *userBudget) Take(sale, user string, now time.Time) (leave func(), idle <-chan struct{}, ok bool) {
	if b.rate <= 0 {
		return func() {}, nil, true
	}
	k := budgetKey{sale, user}
	b.mu.Lock()
	defer b.mu.Unlock()
	if !b.allow(k, now) {
		if f := b.flights[k]; f != nil {
			return nil, f.done, false
		}
		return nil, nil, false
	}
	f := b.flights[k]
	if f == nil {
		f = &flight{done: make(chan struct{})}
		b.flights[k] = f
	}
	f.n++
	var once sync.Once
	return func() { once.Do(func() { b.land(k, f) }) }, nil, true
}

// land ends one request of flight f.
func (b *userBudget) land(k budgetKey, f *flight) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if f.n--; f.n == 0 {
		close(f.done)
		delete(b.flights, k)
	}
}

// allow takes one token of k's bucket at now and reports whether there was
// one. b.mu is held.
func (b *userBudget) allow(k budgetKey, now time.Time) bool {
	if g := now.Unix(); g != b.gen {
		if g == b.gen+1 {
			b.prev, b.cur = b.cur, b.prev
			clear(b.cur)
		} else if g > b.gen {
			clear(b.prev)
			clear(b.cur)
		}
		b.gen = max(b.gen, g)
	}
	bk := b.cur[k]
	if bk == nil {
		bk = b.prev[k]
		if bk == nil {
			bk = &tokenbucket.Bucket{Tokens: b.rate, At: now}
		}
		b.cur[k] = bk
	}
	ok, _ := bk.Take(now, b.rate, b.rate)
	return ok
}
