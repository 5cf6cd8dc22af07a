package redisstore

import (
	"context"
	"testing"
	"time"

	"github.com/flashsale/flashsale"
)

// TestStrikes: a user is blocked once limit expiries fall within the window,
// an order recorded twice counts once, and the block lifts when the oldest of
// them leaves the window; other users are untouched; limit 0 never blocks.
func TestStrikes(t *testing.T) {
	s, _, _ := newStore(t, 1, 1)
	ctx := context.Background()
	k := s.Strikes(2, time.Hour)
	t0 := time.Now().Truncate(time.Millisecond)
	if err := k.Record(ctx, flashsale.OrderRef{User: "u1", Order: "o1"}, t0.Add(-50*time.Minute)); err != nil {
		t.Fatal(err)
	}
	if err := k.Record(ctx, flashsale.OrderRef{User: "u1", Order: "o1"}, t0.Add(-50*time.Minute)); err != nil { // redelivered expiry
		t.Fatal(err)
	}
	if b, _, err := k.Blocked(ctx, "u1", t0); err != nil || b {
		t.Fatalf("one expiry (recorded twice): blocked %v, %v; want not blocked", b, err)
	}
	if err := k.Record(ctx, flashsale.OrderRef{User: "u1", Order: "o2"}, t0.Add(-10*time.Minute)); err != nil {
		t.Fatal(err)
	}
	b, until, err := k.Blocked(ctx, "u1", t0)
	if err != nil || !b {
		t.Fatalf("two expiries within the window: blocked %v, %v; want blocked", b, err)
	}
	if want := t0.Add(10 * time.Minute); !until.Equal(want) {
		t.Errorf("blocked until %v, want %v (the oldest expiry + the window)", until, want)
	}
	if b, _, _ := k.Blocked(ctx, "u1", t0.Add(11*time.Minute)); b {
		t.Error("still blocked after the oldest expiry left the window")
	}
	if b, _, _ := k.Blocked(ctx, "u2", t0); b {
		t.Error("another user is blocked")
	}
	if b, _, _ := s.Strikes(0, time.Hour).Blocked(ctx, "u1", t0); b {
		t.Error("blocked with strikes disabled")
	}
}
