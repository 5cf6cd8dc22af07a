package relay

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/flashsale/flashsale"
	"github.com/flashsale/flashsale/mock"
	"github.com/flashsale/flashsale/service"
)

// memOutbox is an outbox of two shards in memory.
type memOutbox struct {
	mu     sync.Mutex
	unsent map[int][]flashsale.OutboxEvent
	sent   map[int][]int64
}

func (o *memOutbox) Shards() int { return 2 }

func (o *memOutbox) UnsentEvents(_ context.Context, shard, limit int) ([]flashsale.OutboxEvent, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	evs := o.unsent[shard]
	return append([]flashsale.OutboxEvent(nil), evs[:min(limit, len(evs))]...), nil
}

func (o *memOutbox) MarkSent(_ context.Context, shard int, ids []int64, _ time.Time) error {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.sent[shard] = append(o.sent[shard], ids...)
	o.unsent[shard] = o.unsent[shard][len(ids):]
	return nil
}

func (o *memOutbox) PurgeSent(context.Context, int, time.Time) (int64, error) { return 0, nil }

func (o *memOutbox) left() int {
	o.mu.Lock()
	defer o.mu.Unlock()
	return len(o.unsent[0]) + len(o.unsent[1])
}

// flakyPublisher confirms at most confirm events of each batch, and fails the
// batch when it confirmed fewer than it was given.
type flakyPublisher struct {
	mu        sync.Mutex
	confirm   int
	published []string // event ids, in publish order, confirmed or not
}

func (p *flakyPublisher) PublishEvents(_ context.Context, evs []flashsale.OutboxEvent) (int, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, ev := range evs {
		p.published = append(p.published, ev.EventID)
	}
	if n := min(p.confirm, len(evs)); n < len(evs) {
		return n, errors.New("nack")
	}
	return len(evs), nil
}

// Every shard's events are published in id order and marked sent once the
// broker confirmed them; a batch confirmed only in part marks that prefix and
// publishes the rest again (at least once, never a gap).
func TestRelayPublishesEachShardInOrderAtLeastOnce(t *testing.T) {
	out := &memOutbox{unsent: map[int][]flashsale.OutboxEvent{}, sent: map[int][]int64{}}
	for shard := 0; shard < 2; shard++ {
		for id := int64(1); id <= 7; id++ {
			out.unsent[shard] = append(out.unsent[shard], flashsale.OutboxEvent{ID: id, EventID: string(rune('a'+shard)) + string(rune('0'+id))})
		}
	}
	pub := &flakyPublisher{confirm: 3}
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
	for deadline := time.Now().Add(5 * time.Second); out.left() > 0 && time.Now().Before(deadline); {
		service.Sleep(ctx, time.Millisecond) // between two looks
	}
	if err := r.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	for shard := 0; shard < 2; shard++ {
		want := []int64{1, 2, 3, 4, 5, 6, 7}
		if got := out.sent[shard]; len(got) != len(want) || got[0] != 1 || got[6] != 7 {
			t.Errorf("shard %d marked sent %v, want %v in order", shard, got, want)
		}
	}
	if len(pub.published) <= 14 {
		t.Errorf("%d publishes, want the unconfirmed rest of each batch published again", len(pub.published))
	}
}
