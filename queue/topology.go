// Package queue is the RabbitMQ adapter: the topology (declared in one place, under
// the namespace), a publisher that returns only after the broker confirmed, and a
// batching consumer with manual acks. Both reconnect with backoff on their own
// connection (a broker under memory alarm blocks publishers only) and re-declare
// the topology each time.
package queue

import (
	"fmt"
	"strconv"

	amqp "github.com/rabbitmq/amqp091-go"
)

// Topology names every exchange and queue of one namespace.
type Topology struct {
	Namespace string
	// DeliveryLimit is how often a purchase may be delivered before it is
	// dead-lettered. Default 5.
	DeliveryLimit int
}

// PurchaseExchange is the direct exchange purchases are published to.
func (t Topology) PurchaseExchange() string { return t.Namespace + ".purchase" }

// PurchaseQueue holds queued purchases (quorum, delivery limit, dead-lettered).
func (t Topology) PurchaseQueue() string { return t.Namespace + ".purchase" }

// DeadExchange receives what the purchase queue dead-letters.
func (t Topology) DeadExchange() string { return t.Namespace + ".dead" }

// DeadQueue holds dead-lettered purchases until a worker releases their holds.
func (t Topology) DeadQueue() string { return t.Namespace + ".purchase.dead" }

// EventsExchange is the topic exchange order events are published to, with the
// event type as routing key.
func (t Topology) EventsExchange() string { return t.Namespace + ".events" }

// ExpiryExchange receives expiry messages: dead-lettered from the delay buckets
// when their TTL ends, or published directly when an order is already due.
func (t Topology) ExpiryExchange() string { return t.Namespace + ".expiry" }

// ExpiryQueue is consumed by delayq to expire unpaid orders.
func (t Topology) ExpiryQueue() string { return t.Namespace + ".expiry" }

// retiredCreatedQueue is the queue through which delayq scheduled expiries
// from order.created events before the worker scheduled them itself
// (delayq.Scheduler). Declare deletes it: whatever it still held were events
// of orders whose expiry the worker that made them did not schedule, and
// the sweeper expires those within a sweep of their pay_by.
func (t Topology) retiredCreatedQueue() string { return t.Namespace + ".delayq.created" }

// DelayBucket is the queue that delays messages by seconds: it has a queue-wide
// TTL and no consumers, and dead-letters into the expiry exchange. One bucket per
// delay length, because a per-message TTL only expires at the head of a queue.
func (t Topology) DelayBucket(seconds int) string {
	return t.Namespace + ".delay." + itoa(seconds) + "s"
}

// DeclareDelayBucket declares the bucket for seconds on ch.
func (t Topology) DeclareDelayBucket(ch *amqp.Channel, seconds int) error {
	_, err := ch.QueueDeclare(t.DelayBucket(seconds), true, false, false, false, quorumArgs(amqp.Table{
		"x-message-ttl":          int64(seconds) * 1000,
		"x-dead-letter-exchange": t.ExpiryExchange(),
		"x-dead-letter-strategy": "at-least-once",
		"x-overflow":             "reject-publish",
	}))
	if err != nil {
		return fmt.Errorf("queue: declare delay bucket %ds: %w", seconds, err)
	}
	return nil
}

// PurchaseKey is the routing key of purchases.
const PurchaseKey = "purchase"

func quorumArgs(extra amqp.Table) amqp.Table {
	args := amqp.Table{"x-queue-type": "quorum"}
	for k, v := range extra {
		args[k] = v
	}
	return args
}

type queueSpec struct {
	name, exchange, key string
	args                amqp.Table
}

// Declare declares the whole topology on ch (delay buckets are declared on
// first use). It is idempotent, and it is called on every (re)connect, so a
// deleted queue comes back.
func (t Topology) Declare(ch *amqp.Channel) error {
	limit := t.DeliveryLimit
	if limit == 0 {
		limit = 5
	}
	exchanges := []struct{ name, kind string }{
		{t.PurchaseExchange(), amqp.ExchangeDirect},
		{t.DeadExchange(), amqp.ExchangeDirect},
		{t.EventsExchange(), amqp.ExchangeTopic},
		{t.ExpiryExchange(), amqp.ExchangeFanout},
	}
	for _, e := range exchanges {
		if err := ch.ExchangeDeclare(e.name, e.kind, true, false, false, false, nil); err != nil {
			return fmt.Errorf("queue: declare exchange %s: %w", e.name, err)
		}
	}
	// A consumer retries a failing message itself for its retry budget
	// (Retry) before each hand-back. Expiry messages are also swept from
	// MySQL (delayq's sweeper: overdue unpaid orders, and closed orders Redis
	// has not followed), so one that still fails after the delivery limit is
	// dropped rather than dead-lettered.
	expiry := quorumArgs(amqp.Table{"x-delivery-limit": int64(limit)})
	queues := []queueSpec{
		{t.DeadQueue(), t.DeadExchange(), PurchaseKey, quorumArgs(nil)},
		{t.PurchaseQueue(), t.PurchaseExchange(), PurchaseKey, quorumArgs(amqp.Table{
			"x-delivery-limit":          int64(limit),
			"x-dead-letter-exchange":    t.DeadExchange(),
			"x-dead-letter-routing-key": PurchaseKey,
			"x-dead-letter-strategy":    "at-least-once",
			"x-overflow":                "reject-publish",
		})},
		{t.ExpiryQueue(), t.ExpiryExchange(), "", expiry},
	}
	for _, q := range queues {
		if _, err := ch.QueueDeclare(q.name, true, false, false, false, q.args); err != nil {
			return fmt.Errorf("queue: declare queue %s: %w", q.name, err)
		}
		if err := ch.QueueBind(q.name, q.key, q.exchange, false, nil); err != nil {
			return fmt.Errorf("queue: bind queue %s: %w", q.name, err)
		}
	}
	// Deleting a queue that does not exist is no error.
	if _, err := ch.QueueDelete(t.retiredCreatedQueue(), false, false, false); err != nil {
		return fmt.Errorf("queue: delete the retired queue %s: %w", t.retiredCreatedQueue(), err)
	}
	return nil
}

// itoa is strconv.Itoa, kept short for queue names.
func itoa(n int) string { return strconv.Itoa(n) }
