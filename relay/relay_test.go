package relay

import (
	"context"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/flashsale/flashsale"
	"github.com/flashsale/flashsale/mock"
	"github.com/flashsale/flashsale/service"
)

// Every shard's events are published in id order and marked sent once the
// broker confirmed them; a batch confirmed only in part marks that prefix and
// publishes the rest again (at least once, never a gap).
func TestRelayPublishesEachShardInOrderAtLeastOnce(t *testing.T) {
	out := mock.NewOutbox(2)
	for shard := 0; shard < 2; shard++ {
		for id := int64(1); id <= 7; id++ {
			out.Add(shard, flashsale.OutboxEvent{ID: id, EventID: string(rune('a'+shard)) + string(rune('0'+id))})
		}
	}
	pub := &mock.Publisher{Confirm: 3}
	r, err := New(Config{Outbox: out, Publisher: pub, Leases: mock.Leases{}, Namespace: "t", Batch: 5,
		Idle: time.Millisecond, LeaseTTL: 30 * time.Millisecond, Log: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if err := r.Start(ctx); err != nil {
		t.Fatal(err)
	}
	<-r.Started()
	for deadline := time.Now().Add(5 * time.Second); out.Left() > 0 && time.Now().Before(deadline); {
		service.Sleep(ctx, time.Millisecond) // between two looks
	}
	if err := r.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	for shard := 0; shard < 2; shard++ {
		want := []int64{1, 2, 3, 4, 5, 6, 7}
		if got := out.SentOn(shard); len(got) != len(want) || got[0] != 1 || got[6] != 7 {
			t.Errorf("shard %d marked sent %v, want %v in order", shard, got, want)
		}
	}
	if len(pub.Published()) <= 14 {
		t.Errorf("%d publishes, want the unconfirmed rest of each batch published again", len(pub.Published()))
	}
}
