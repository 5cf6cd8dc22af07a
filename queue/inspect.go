package queue

import (
	"context"
	"fmt"
	"sync"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/flashsale/flashsale"
)

// Inspector reads the depth and consumer count of the namespace's fixed queues
// (purchase, dead letters, order.created for delayq, expiry) with passive
// declares on a connection of its own, opened on first use and again after it
// broke. The delay buckets are not inspected: their names depend on the
// payment windows in use, and their depth is the number of unpaid orders
// waiting for pay_by, not a backlog. Safe for concurrent use (calls are
// serialised).
type Inspector struct {
	cfg  Config
	mu   sync.Mutex
	conn *amqp.Connection
}

// NewInspector returns an Inspector; it connects on the first Stats.
func NewInspector(cfg Config) (*Inspector, error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	return &Inspector{cfg: cfg}, nil
}

// Queues are the names Stats reports on, in that order.
func (in *Inspector) Queues() []string {
	t := in.cfg.Topology
	return []string{t.PurchaseQueue(), t.DeadQueue(), t.ExpiryQueue()}
}

// Stats returns the depth of each of Queues. A queue that does not exist (yet)
// is left out; an error means the broker could not be asked.
func (in *Inspector) Stats(ctx context.Context) ([]flashsale.QueueStat, error) {
	in.mu.Lock()
	defer in.mu.Unlock()
	if in.conn == nil || in.conn.IsClosed() {
		conn, ch, err := in.cfg.dial() // declares the topology: the queues exist from here on
		if err != nil {
			return nil, err
		}
		ch.Close()
		in.conn = conn
	}
	var out []flashsale.QueueStat
	for _, name := range in.Queues() {
		if err := ctx.Err(); err != nil {
			return out, err
		}
		// A failed passive declare closes its channel: one channel per queue.
		ch, err := in.conn.Channel()
		if err != nil {
			in.conn.Close()
			return out, fmt.Errorf("queue: inspect: channel: %w", err)
		}
		q, err := ch.QueueDeclarePassive(name, true, false, false, false, nil)
		ch.Close()
		if err != nil {
			continue // not declared (yet)
		}
		out = append(out, flashsale.QueueStat{Name: name, Messages: q.Messages, Consumers: q.Consumers})
	}
	return out, nil
}

// Close closes the connection, if any.
func (in *Inspector) Close() error {
	in.mu.Lock()
	defer in.mu.Unlock()
	if in.conn != nil {
		return in.conn.Close()
	}
	return nil
}
