package ingress

import (
	"time"

	"github.com/flashsale/flashsale/internal/tokenbucket"
)

// bucket is the lookup budget's token bucket (see lookupBudget): a
// tokenbucket.Bucket under the field names guard.go uses.
type bucket struct {
	tokens float64
	at     time.Time // when tokens was computed
}

// take is tokenbucket.Bucket.Take on bk.
func (bk *bucket) take(now time.Time, size, rate float64) (bool, time.Duration) {
	tb := tokenbucket.Bucket{Tokens: bk.tokens, At: bk.at}
	ok, wait := tb.Take(now, size, rate)
	bk.tokens, bk.at = tb.Tokens, tb.At
	return ok, wait
}
