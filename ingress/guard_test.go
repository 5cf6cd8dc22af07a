package ingress

import (
	"testing"
	"time"

	"github.com/google/uuid"
)

// TestValidTicketID: only canonical UUIDv7 not minted in the future.
func TestValidTicketID(t *testing.T) {
	now := time.Now()
	v7 := uuid.Must(uuid.NewV7()).String()
	for id, want := range map[string]bool{
		v7:                                     true,
		uuid.NewString():                       false, // v4
		"no-such-ticket":                       false,
		"{" + v7 + "}":                         false,
		"urn:uuid:" + v7:                       false,
		v7[:35]:                                false,
		"01900000-0000-7000-8000-00000000000g": false,
	} {
		if got := validTicketID(id, now); got != want {
			t.Errorf("validTicketID(%q) = %v, want %v", id, got, want)
		}
	}
	if validTicketID(v7, now.Add(-2*time.Hour)) {
		t.Error("an id minted 2 hours in the future was accepted")
	}
}

// TestNegativeCache: remembered per user, for negativeTTL, bounded.
func TestNegativeCache(t *testing.T) {
	var n negativeCache
	now := time.Now()
	n.add("u", "id", now)
	if !n.has("u", "id", now.Add(time.Second)) || n.has("other", "id", now) || n.has("u", "id", now.Add(negativeTTL)) {
		t.Error("negative cache: wrong membership")
	}
	for i := range negativeMax + 5 {
		n.add("u", string(rune(i)), now)
	}
	if len(n.m) > negativeMax {
		t.Errorf("%d entries, want at most %d", len(n.m), negativeMax)
	}
}
