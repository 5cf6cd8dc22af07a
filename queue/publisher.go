package queue

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/flashsale/flashsale"
	"github.com/flashsale/flashsale/service"
)

// ErrUnavailable means the broker did not take the message: not connected, blocked
// by a resource alarm, nacked, or no confirm in time. The outcome is unknown (the
// message may still arrive), so consumers must be idempotent.
var ErrUnavailable = errors.New("queue: broker unavailable")

// Publisher publishes persistent, mandatory messages on one confirm-mode channel
// and waits for each confirm without serialising them: many publishes may be
// outstanding at once. It is a service.Service: Start connects (and
// reconnects) in the background, Started is closed once it is first
// connected, Stop closes the connection (outstanding publishes fail). While it
// is not connected, Publish fails at once with ErrUnavailable.
type Publisher struct {
	service.Runner
	cfg     Config
	mu      sync.Mutex // serialises writes to ch
	ch      *amqp.Channel
	blocked atomic.Bool
	ready   atomic.Bool
	buckets map[int]bool // delay buckets declared on ch; guarded by mu
}

// NewPublisher returns a Publisher; it connects once started.
func NewPublisher(cfg Config) (*Publisher, error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	return &Publisher{cfg: cfg}, nil
}

// Start starts connecting.
func (p *Publisher) Start(ctx context.Context) error { return p.Go(ctx, p.loop) }

// Ready reports nil when the publisher is connected and not blocked.
func (p *Publisher) Ready() error {
	if !p.ready.Load() {
		return fmt.Errorf("rabbitmq not connected: %w", ErrUnavailable)
	}
	if p.blocked.Load() {
		return fmt.Errorf("rabbitmq blocked by a resource alarm: %w", ErrUnavailable)
	}
	return nil
}

func (p *Publisher) loop(ctx context.Context, ready func()) {
	wait := p.cfg.ReconnectMin
	for ctx.Err() == nil {
		conn, ch, err := p.cfg.dial()
		if err == nil {
			err = ch.Confirm(false)
		}
		if err != nil {
			if conn != nil {
				conn.Close()
			}
			p.cfg.Log.Warn("publisher cannot connect to rabbitmq", "err", err, "retry_in", wait)
			if !backoff(ctx, &wait, p.cfg.ReconnectMax) {
				return
			}
			continue
		}
		wait = p.cfg.ReconnectMin
		// Every notification channel is drained until it is closed: an undrained
		// one stalls the connection's reader.
		closed := conn.NotifyClose(make(chan *amqp.Error, 1))
		chClosed := ch.NotifyClose(make(chan *amqp.Error, 1))
		blocked := conn.NotifyBlocked(make(chan amqp.Blocking, 4))
		returns := ch.NotifyReturn(make(chan amqp.Return, 64))
		go func() {
			for b := range blocked {
				p.blocked.Store(b.Active)
				p.cfg.Log.Warn("rabbitmq blocked publishing", "active", b.Active, "reason", b.Reason)
			}
		}()
		go func() {
			for r := range returns {
				// Events are published without mandatory; anything returned
				// is a topology fault.
				p.cfg.Log.Error("rabbitmq returned an unroutable message",
					"exchange", r.Exchange, "key", r.RoutingKey, "reply", r.ReplyText)
			}
		}()
		p.mu.Lock()
		p.ch, p.buckets = ch, map[int]bool{}
		p.mu.Unlock()
		p.blocked.Store(false)
		p.ready.Store(true)
		p.cfg.Log.Info("publisher connected to rabbitmq")
		ready()
		select {
		case <-ctx.Done():
		case err := <-closed:
			p.cfg.Log.Warn("publisher connection closed", "err", err)
		case err := <-chClosed:
			p.cfg.Log.Warn("publisher channel closed", "err", err)
		}
		p.ready.Store(false)
		p.mu.Lock()
		p.ch = nil
		p.mu.Unlock()
		conn.Close()
	}
}

// Publish sends body to exchange with key and waits for the broker's confirm
// (bounded by ctx). It returns nil only when the broker confirmed; otherwise an
// error wrapping ErrUnavailable.
func (p *Publisher) Publish(ctx context.Context, exchange, key string, msg amqp.Publishing) error {
	msg.DeliveryMode = amqp.Persistent
	if msg.Timestamp.IsZero() {
		msg.Timestamp = time.Now()
	}
	// A nack means the broker could not take it now: a quorum queue electing
	// its leader, just declared or after a node left. A channel that was
	// refused may stay refused (seen on a cluster whose dead node led the
	// queues: publishes on the channel opened just before the new leaders
	// were elected were nacked for as long as it lived, while a new channel
	// was served), so a nack also closes the channel and the publisher opens
	// a new one. The outcome is unknown, so the message is published again,
	// the same message id (consumers are idempotent), up to nackRetries times
	// (about 3 s) or until ctx ends. A broker that is away at the first
	// attempt fails at once instead.
	wait := 20 * time.Millisecond
	var err error
	for attempt := 0; ; attempt++ {
		var acked bool
		acked, err = p.publishOnce(ctx, exchange, key, msg)
		if acked {
			return nil
		}
		if err != nil && attempt == 0 {
			return err
		}
		if err == nil {
			err = fmt.Errorf("broker nacked: %w", ErrUnavailable)
		}
		if attempt == nackRetries || !service.Sleep(ctx, wait) {
			return err
		}
		wait = min(2*wait, 500*time.Millisecond)
	}
}

// nackRetries is how often a nacked message is published again.
const nackRetries = 8

// publishOnce publishes msg and waits for its confirm: acked false is a nack.
func (p *Publisher) publishOnce(ctx context.Context, exchange, key string, msg amqp.Publishing) (acked bool, err error) {
	if err := p.Ready(); err != nil {
		return false, err
	}
	p.mu.Lock()
	ch := p.ch
	if ch == nil {
		p.mu.Unlock()
		return false, fmt.Errorf("rabbitmq not connected: %w", ErrUnavailable)
	}
	dc, err := ch.PublishWithDeferredConfirmWithContext(ctx, exchange, key, true, false, msg)
	p.mu.Unlock()
	if err != nil {
		return false, fmt.Errorf("publish: %v: %w", err, ErrUnavailable)
	}
	acked, err = dc.WaitContext(ctx)
	if err != nil {
		return false, fmt.Errorf("no confirm: %v: %w", err, ErrUnavailable)
	}
	if !acked {
		p.renew(ch)
	}
	return acked, nil
}

// renew closes ch if it is still the publisher's channel, so that the loop
// opens a new connection and channel (see Publish). The close is not waited
// for: on a connection that is gone (its outstanding confirms end as nacks
// too) it would block until the connection's own end, and nothing may hold
// the publisher's lock that long.
func (p *Publisher) renew(ch *amqp.Channel) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.ch != ch {
		return // renewed already
	}
	p.ready.Store(false)
	p.ch = nil
	p.cfg.Log.Warn("the broker nacked a publish; opening a new channel")
	go ch.Close()
}

// PublishPurchases queues purchase requests in one message (a group, see
// GroupType, when there are several) with one confirm: nil only once the broker
// confirmed, and then every one of them is queued. The message id is the first
// ticket id.
func (p *Publisher) PublishPurchases(ctx context.Context, reqs []*flashsale.PurchaseRequest) error {
	bodies := make([][]byte, len(reqs))
	for i, req := range reqs {
		b, err := json.Marshal(req)
		if err != nil {
			return fmt.Errorf("queue: encode purchase: %w", err)
		}
		bodies[i] = b
	}
	msg, err := groupPublishing(reqs[0].TicketID, bodies)
	if err != nil {
		return err
	}
	p.cfg.Metrics.published("purchase", 1)
	p.cfg.Metrics.published("purchase_item", len(reqs))
	return p.Publish(ctx, p.cfg.Topology.PurchaseExchange(), PurchaseKey, msg)
}

// PublishEvents publishes outbox events to the events exchange, in order, with the
// event type as routing key and the event id as message id, and waits for their
// confirms. It returns how many events from the start were confirmed; on an
// error the rest must be published again (consumers de-duplicate by event id).
func (p *Publisher) PublishEvents(ctx context.Context, events []flashsale.OutboxEvent) (int, error) {
	if err := p.Ready(); err != nil {
		return 0, err
	}
	p.mu.Lock()
	ch := p.ch
	if ch == nil {
		p.mu.Unlock()
		return 0, fmt.Errorf("rabbitmq not connected: %w", ErrUnavailable)
	}
	confirms := make([]*amqp.DeferredConfirmation, 0, len(events))
	var pubErr error
	for _, e := range events {
		// Not mandatory: an event no queue subscribed to is normal (the
		// topology binds none of ours), and a mandatory one would come
		// back whole as a return.
		dc, err := ch.PublishWithDeferredConfirmWithContext(ctx, p.cfg.Topology.EventsExchange(), string(e.Type), false, false,
			amqp.Publishing{ContentType: "application/json", MessageId: e.EventID, DeliveryMode: amqp.Persistent,
				Timestamp: time.Now(), Type: string(e.Type), Body: e.Payload})
		if err != nil {
			pubErr = fmt.Errorf("publish: %v: %w", err, ErrUnavailable)
			break
		}
		confirms = append(confirms, dc)
	}
	p.mu.Unlock()
	p.cfg.Metrics.published("event", len(confirms))
	for i, dc := range confirms {
		acked, err := dc.WaitContext(ctx)
		if err != nil || !acked {
			return i, fmt.Errorf("event %s not confirmed: %w", events[i].EventID, ErrUnavailable)
		}
	}
	return len(confirms), pubErr
}

// PublishDelayed publishes bodies in one message (a group when there are
// several; the expiry consumer hands out its members) so that it reaches the
// expiry queue after seconds (at once when seconds <= 0), through the delay
// bucket of that length, declared on first use. nil only once the broker
// confirmed.
func (p *Publisher) PublishDelayed(ctx context.Context, msgID string, bodies [][]byte, seconds int) error {
	exchange, key := p.cfg.Topology.ExpiryExchange(), ""
	if seconds > 0 {
		exchange, key = "", p.cfg.Topology.DelayBucket(seconds)
		p.mu.Lock()
		if p.ch != nil && !p.buckets[seconds] {
			if err := p.cfg.Topology.DeclareDelayBucket(p.ch, seconds); err != nil {
				p.mu.Unlock()
				return fmt.Errorf("%v: %w", err, ErrUnavailable)
			}
			p.buckets[seconds] = true
		}
		p.mu.Unlock()
	}
	msg, err := groupPublishing(msgID, bodies)
	if err != nil {
		return err
	}
	p.cfg.Metrics.published("delay", 1)
	p.cfg.Metrics.published("delay_item", len(bodies))
	return p.Publish(ctx, exchange, key, msg)
}
