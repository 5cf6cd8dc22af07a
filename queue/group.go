package queue

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"sync"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/flashsale/flashsale"
)

// A group is one broker message carrying several messages: its body is a JSON
// array of their bodies and its type is GroupType. The broker stores, replicates
// and confirms it once, which is most of what a message costs; the consumer
// hands its members to the handler one by one, each settled on its own (see
// member), so a bad member is dead-lettered alone and the others complete.
//
// A group of one is published as a plain message: consumers take both shapes,
// and messages published before groups existed stay readable.
const GroupType = "flashsale.group"

// groupPublishing is the one message that carries bodies.
func groupPublishing(id string, bodies [][]byte) (amqp.Publishing, error) {
	if len(bodies) == 1 {
		return amqp.Publishing{ContentType: "application/json", MessageId: id, Body: bodies[0]}, nil
	}
	raw := make([]json.RawMessage, len(bodies))
	for i, b := range bodies {
		raw[i] = b
	}
	body, err := json.Marshal(raw)
	if err != nil {
		return amqp.Publishing{}, fmt.Errorf("queue: encode group: %w", err)
	}
	return amqp.Publishing{ContentType: "application/json", Type: GroupType, MessageId: id, Body: body}, nil
}

// members splits a delivery into what the handler gets: the delivery itself,
// or the members of a group. A group whose body is not an array of JSON values
// is handed over whole, and its handler dead-letters it as malformed.
func members(d amqp.Delivery, r *republisher) []flashsale.Message {
	if d.Type != GroupType {
		return []flashsale.Message{Delivery{d}}
	}
	var bodies []json.RawMessage
	if err := json.Unmarshal(d.Body, &bodies); err != nil || len(bodies) == 0 {
		return []flashsale.Message{Delivery{d}}
	}
	g := &group{d: d, r: r, left: len(bodies)}
	msgs := make([]flashsale.Message, len(bodies))
	for i, b := range bodies {
		msgs[i] = &member{g: g, body: b}
	}
	return msgs
}

// group is a delivered group whose members are being settled: it is acked
// once every member is, or handed back whole (the broker redelivers it; every
// handler is idempotent per member) when a member's settlement could not be
// published.
type group struct {
	d  amqp.Delivery
	r  *republisher
	mu sync.Mutex
	// left is how many members are not settled yet; lost is set when a
	// member's settlement failed.
	left int
	lost bool
}

// settled records one member's settlement and settles the delivery after the
// last one.
func (g *group) settled(err error) error {
	g.mu.Lock()
	g.left--
	g.lost = g.lost || err != nil
	last, lost := g.left == 0, g.lost
	g.mu.Unlock()
	switch {
	case !last:
		return err
	case lost:
		return g.d.Nack(false, true)
	default:
		return g.d.Ack(false)
	}
}

// member is one message of a group. Ack settles it; Retry and DeadLetter
// publish it alone (with a confirm) where the broker would have sent the whole
// delivery: Retry to the back of the same queue, as a plain message that counts
// its own deliveries from then on; DeadLetter to the queue's dead-letter
// exchange.
type member struct {
	g    *group
	body []byte
	once sync.Once
}

func (m *member) Body() []byte { return m.body }

func (m *member) Ack() error { return m.settle(nil) }

func (m *member) Retry() error {
	return m.settle(func() error { return m.g.r.publish("", m.g.r.queue, m.body) })
}

func (m *member) DeadLetter() error {
	if m.g.r.deadExchange == "" {
		m.g.r.log.Error("dropping a dead-lettered group member: its queue has no dead-letter exchange", "queue", m.g.r.queue, "body", string(m.body))
		return m.settle(nil)
	}
	return m.settle(func() error { return m.g.r.publish(m.g.r.deadExchange, m.g.r.deadKey, m.body) })
}

// settle settles the member once; publish (if any) is how.
func (m *member) settle(publish func() error) error {
	err := fmt.Errorf("queue: group member settled twice")
	m.once.Do(func() {
		var perr error
		if publish != nil {
			perr = publish()
		}
		err = m.g.settled(perr)
	})
	return err
}

// republisher publishes the members of a consumer's groups that go elsewhere
// alone, on a confirm channel of the consumer's connection opened on first use.
// If the connection is gone, so is the group's delivery: the broker hands it
// out again whole.
type republisher struct {
	conn                  *amqp.Connection
	queue                 string
	deadExchange, deadKey string
	log                   *slog.Logger
	metrics               *Metrics

	mu sync.Mutex
	ch *amqp.Channel
}

// republishTimeout bounds the wait for a republished member's confirm.
const republishTimeout = 10 * time.Second

func (r *republisher) publish(exchange, key string, body []byte) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.ch == nil || r.ch.IsClosed() {
		ch, err := r.conn.Channel()
		if err == nil {
			err = ch.Confirm(false)
		}
		if err != nil {
			return fmt.Errorf("queue: republish channel: %w", err)
		}
		r.ch = ch
	}
	ctx, cancel := context.WithTimeout(context.Background(), republishTimeout)
	defer cancel()
	dc, err := r.ch.PublishWithDeferredConfirmWithContext(ctx, exchange, key, true, false,
		amqp.Publishing{ContentType: "application/json", DeliveryMode: amqp.Persistent, Timestamp: time.Now(), Body: body})
	if err != nil {
		return fmt.Errorf("queue: republish: %w", err)
	}
	r.metrics.published("republish", 1)
	acked, err := dc.WaitContext(ctx)
	if err != nil || !acked {
		return fmt.Errorf("queue: republish not confirmed (acked %v): %v", acked, err)
	}
	return nil
}
