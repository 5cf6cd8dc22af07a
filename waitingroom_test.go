package flashsale

import (
	"strings"
	"testing"
	"time"
)

func TestNewTicketIDIsMintedForItsUser(t *testing.T) {
	id := NewTicketID("alice")
	if !MintedFor(id, "alice") || MintedFor(id, "bob") || NewTicketID("alice") == id {
		t.Fatalf("NewTicketID(alice) = %q: want a fresh id MintedFor alice only", id)
	}
}

func TestLineKeyOrdersDrawnBeforeLate(t *testing.T) {
	start := time.Date(2026, 12, 6, 12, 0, 0, 0, time.UTC)
	s := &Sale{StartsAt: start, WaitingRoom: &WaitingRoom{Seed: make([]byte, DrawSeedBytes)}}
	drawn := s.LineKey("zed", "t1", start.Add(-time.Millisecond))
	if drawn != "0"+DrawScore(s.WaitingRoom.Seed, "zed") {
		t.Errorf("pre-start key %q: want 0 + the draw score", drawn)
	}
	late1, late2 := s.LineKey("a", "t2", start), s.LineKey("b", "t3", start.Add(time.Microsecond))
	if !(drawn < late1 && late1 < late2) || !strings.HasSuffix(late1, "t2") {
		t.Errorf("keys %q %q %q: want drawn < late in arrival order", drawn, late1, late2)
	}
	// RFC 4231 test case 2 shape: HMAC-SHA256 with a known key and message.
	if got := DrawScore([]byte("Jefe"), "what do ya want for nothing?"); got != "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843" {
		t.Errorf("DrawScore = %s, want RFC 4231's HMAC-SHA256", got)
	}
}
