// Package tokenbucket is the token bucket of the ingress's budgets (a
// user's purchases per sale, see admission; a user's lookups that find
// nothing, see ingress/guard.go): tokens refilled at a rate up to a size, one
// taken per request. A Bucket holds no lock: its users keep buckets in maps
// under locks of their own.
package tokenbucket

import "time"

// Bucket is one token bucket: Tokens as of At. The zero value is empty as of
// the zero time, so it is full at its first Take; a bucket made with Tokens
// set counts from At.
type Bucket struct {
	Tokens float64
	At     time.Time // when Tokens was computed
}

// Take refills b at rate tokens per second up to size, as of now, then takes
// one token. Without one it reports false and how long until one is back. A
// now before At refills nothing.
func (b *Bucket) Take(now time.Time, size, rate float64) (bool, time.Duration) {
	if d := now.Sub(b.At); d > 0 {
		b.Tokens = min(size, b.Tokens+d.Seconds()*rate)
		b.At = now
	}
	if b.Tokens < 1 {
		return false, time.Duration((1 - b.Tokens) / rate * float64(time.Second))
	}
	b.Tokens--
	return true, 0
}
