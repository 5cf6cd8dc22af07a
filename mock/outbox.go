package mock

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/flashsale/flashsale"
)

// Outbox is an in-memory outbox of N shards (relay.Outbox): Unsent holds
// each shard's events in id order, MarkSent moves the prefix it is given to
// Sent.
type Outbox struct {
	N      int
	mu     sync.Mutex
	Unsent map[int][]flashsale.OutboxEvent
	Sent   map[int][]int64
}

// NewOutbox returns an empty outbox of n shards.
func NewOutbox(n int) *Outbox {
	return &Outbox{N: n, Unsent: map[int][]flashsale.OutboxEvent{}, Sent: map[int][]int64{}}
}

// Add appends events to shard's unsent ones.
func (o *Outbox) Add(shard int, evs ...flashsale.OutboxEvent) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.Unsent[shard] = append(o.Unsent[shard], evs...)
}

// Shards returns N.
func (o *Outbox) Shards() int { return o.N }

// UnsentEvents returns up to limit of shard's unsent events, oldest first.
func (o *Outbox) UnsentEvents(_ context.Context, shard, limit int) ([]flashsale.OutboxEvent, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	evs := o.Unsent[shard]
	return append([]flashsale.OutboxEvent(nil), evs[:min(limit, len(evs))]...), nil
}

// MarkSent marks ids sent; they must be the oldest unsent, in order (as the
// relay marks them).
func (o *Outbox) MarkSent(_ context.Context, shard int, ids []int64, _ time.Time) error {
	o.mu.Lock()
	defer o.mu.Unlock()
	for i, id := range ids {
		if i >= len(o.Unsent[shard]) || o.Unsent[shard][i].ID != id {
			return errors.New("mock: marked sent out of order")
		}
	}
	o.Sent[shard] = append(o.Sent[shard], ids...)
	o.Unsent[shard] = o.Unsent[shard][len(ids):]
	return nil
}

// PurgeSent forgets nothing.
func (o *Outbox) PurgeSent(context.Context, int, time.Time) (int64, error) { return 0, nil }

// Left returns how many events are unsent on every shard.
func (o *Outbox) Left() int {
	o.mu.Lock()
	defer o.mu.Unlock()
	n := 0
	for _, evs := range o.Unsent {
		n += len(evs)
	}
	return n
}

// SentOn returns the ids marked sent on shard, in order.
func (o *Outbox) SentOn(shard int) []int64 {
	o.mu.Lock()
	defer o.mu.Unlock()
	return append([]int64(nil), o.Sent[shard]...)
}

// Publisher records published events (relay.Publisher). Confirm, when
// positive, is the most events of one batch the broker confirms: a batch of
// more is confirmed in part and fails.
type Publisher struct {
	Confirm   int
	mu        sync.Mutex
	published []string // event ids in publish order, confirmed or not
}

// PublishEvents records evs and confirms up to Confirm of them.
func (p *Publisher) PublishEvents(_ context.Context, evs []flashsale.OutboxEvent) (int, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, ev := range evs {
		p.published = append(p.published, ev.EventID)
	}
	if p.Confirm > 0 && p.Confirm < len(evs) {
		return p.Confirm, errors.New("mock: nack")
	}
	return len(evs), nil
}

// Published returns the ids of every event published, in order.
func (p *Publisher) Published() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]string(nil), p.published...)
}
