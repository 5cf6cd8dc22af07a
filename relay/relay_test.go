package relay

import (
	"context"
	"io"
	"log/slog"
	"sync/atomic"
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

// countingOutbox counts the reads of the outbox.
type countingOutbox struct {
	*mock.Outbox
	reads atomic.Int64
}

func (o *countingOutbox) UnsentEvents(ctx context.Context, shard, limit int) ([]flashsale.OutboxEvent, error) {
	o.reads.Add(1)
	return o.Outbox.UnsentEvents(ctx, shard, limit)
}

// An idle relay reads the outbox less and less often (from Idle, doubling up
// to MaxIdle), and a token on Written makes it publish at once rather than at
// its next look.
func TestRelayIdleBacksOffAndWakesOnWritten(t *testing.T) {
	out := &countingOutbox{Outbox: mock.NewOutbox(1)}
	written := make(chan struct{}, 1)
	r, err := New(Config{Outbox: out, Publisher: &mock.Publisher{}, Leases: mock.Leases{}, Namespace: "t",
		Idle: 10 * time.Millisecond, MaxIdle: 10 * time.Second, Linger: time.Millisecond, LeaseTTL: time.Minute,
		Written: func(int) <-chan struct{} { return written },
		Log:     slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if err := r.Start(ctx); err != nil {
		t.Fatal(err)
	}
	defer r.Stop(ctx)
	<-r.Started()
	// Over 1.5 s idle: looks at 0, 10, 30, 70, 150, 310, 630, 1270 ms; a fixed
	// 10 ms wait would look 150 times.
	service.Sleep(ctx, 1500*time.Millisecond)
	if n := out.reads.Load(); n > 12 {
		t.Errorf("%d reads of an idle outbox in 1.5 s, want it backing off (about 8)", n)
	}
	// Its next look is seconds away: only the token can make it publish now.
	out.Add(0, flashsale.OutboxEvent{ID: 1, EventID: "e1"})
	written <- struct{}{}
	start := time.Now()
	for deadline := start.Add(time.Second); out.Left() > 0 && time.Now().Before(deadline); {
		service.Sleep(ctx, time.Millisecond) // between two looks
	}
	if out.Left() > 0 {
		t.Fatalf("the event written is not published 1 s after the token, want it out at once")
	}
	t.Logf("published %v after the token", time.Since(start).Round(time.Millisecond))
}
