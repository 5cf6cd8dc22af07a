package ingress

import (
	"testing"
	"time"

	"github.com/google/uuid"
)

// A ticket id is a UUIDv7: one minted within the grace may still be queued
// (503 when found nowhere); an older one, a v4 or no UUID at all is 404.
func TestMintedWithin(t *testing.T) {
	now := time.Now()
	recent, _ := uuid.NewV7()
	for _, c := range []struct {
		id   string
		at   time.Time
		want bool
	}{
		{recent.String(), now, true},
		{recent.String(), now.Add(queuedGrace + time.Minute), false},
		{uuid.NewString(), now, false}, // v4: not a ticket id
		{"not-a-uuid", now, false},
	} {
		if got := mintedWithin(c.id, queuedGrace, c.at); got != c.want {
			t.Errorf("mintedWithin(%s, at +%s) = %v, want %v", c.id, c.at.Sub(now).Round(time.Minute), got, c.want)
		}
	}
}
