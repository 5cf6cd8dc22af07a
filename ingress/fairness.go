package ingress

import (
	"sync"
	"time"
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
// Buckets live in two generations of maps, swapped every second: a bucket
// untouched for a whole generation is full again anyway, so it is dropped, and
// memory is bounded by the users active in the last two seconds.
type userBudget struct {
	rate float64 // tokens per second and bucket size; <= 0 disables

	mu        sync.Mutex
	gen       int64 // index of the current generation (unix seconds)
	cur, prev map[budgetKey]*bucket
}

type budgetKey struct{ sale, user string }

type bucket struct {
	tokens float64
	at     time.Time // when tokens was computed
}

func newUserBudget(perSecond int) *userBudget {
	return &userBudget{rate: float64(perSecond), cur: map[budgetKey]*bucket{}, prev: map[budgetKey]*bucket{}}
}

// Allow takes one token of user's bucket for sale at now and reports whether
// there was one.
func (b *userBudget) Allow(sale, user string, now time.Time) bool {
	if b.rate <= 0 {
		return true
	}
	k := budgetKey{sale, user}
	b.mu.Lock()
	defer b.mu.Unlock()
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
			bk = &bucket{tokens: b.rate, at: now}
		}
		b.cur[k] = bk
	}
	if d := now.Sub(bk.at); d > 0 {
		bk.tokens = min(b.rate, bk.tokens+d.Seconds()*b.rate)
		bk.at = now
	}
	if bk.tokens < 1 {
		return false
	}
	bk.tokens--
	return true
}
