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

// PurchaseKey is the routing key of purchases.
const PurchaseKey = "purchase"

func quorumArgs(extra amqp.Table) amqp.Table {
	args := amqp.Table{"x-queue-type": "quorum"}
	for k, v := range extra {
		args[k] = v
	}
	return args
}

// Declare declares the whole topology on ch. It is idempotent, and it is called
// on every (re)connect, so a deleted queue comes back.
func (t Topology) Declare(ch *amqp.Channel) error {
	limit := t.DeliveryLimit
	if limit == 0 {
		limit = 5
	}
	exchanges := []struct{ name, kind string }{
		{t.PurchaseExchange(), amqp.ExchangeDirect},
		{t.DeadExchange(), amqp.ExchangeDirect},
		{t.EventsExchange(), amqp.ExchangeTopic},
	}
	for _, e := range exchanges {
		if err := ch.ExchangeDeclare(e.name, e.kind, true, false, false, false, nil); err != nil {
			return fmt.Errorf("queue: declare exchange %s: %w", e.name, err)
		}
	}
	queues := []struct {
		name, exchange string
		args           amqp.Table
	}{
		{t.DeadQueue(), t.DeadExchange(), quorumArgs(nil)},
		{t.PurchaseQueue(), t.PurchaseExchange(), quorumArgs(amqp.Table{
			"x-delivery-limit":          int64(limit),
			"x-dead-letter-exchange":    t.DeadExchange(),
			"x-dead-letter-routing-key": PurchaseKey,
			"x-dead-letter-strategy":    "at-least-once",
			"x-overflow":                "reject-publish",
		})},
	}
	for _, q := range queues {
		if _, err := ch.QueueDeclare(q.name, true, false, false, false, q.args); err != nil {
			return fmt.Errorf("queue: declare queue %s: %w", q.name, err)
		}
		if err := ch.QueueBind(q.name, PurchaseKey, q.exchange, false, nil); err != nil {
			return fmt.Errorf("queue: bind queue %s: %w", q.name, err)
		}
	}
	return nil
}

// itoa is strconv.Itoa, kept short for queue names.
func itoa(n int) string { return strconv.Itoa(n) }
