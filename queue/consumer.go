package queue

import (
	"context"
	"fmt"
	"sync"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/flashsale/flashsale"
	"github.com/flashsale/flashsale/service"
)

// Delivery is one consumed message. Its Ack/Retry/DeadLetter act on the channel it
// came from: after a reconnect they fail (the broker has already requeued it), so a
// stale delivery tag is never acked on a new channel.
type Delivery struct{ d amqp.Delivery }

// Body is the message payload.
func (d Delivery) Body() []byte { return d.d.Body }

// Ack settles the message: its effects are committed.
func (d Delivery) Ack() error { return d.d.Ack(false) }

// Retry hands the message back to be delivered again later; a quorum queue counts
// it towards the delivery limit, after which it is dead-lettered.
func (d Delivery) Retry() error { return d.d.Nack(false, true) }

// DeadLetter rejects the message for good: it goes to the dead-letter exchange.
func (d Delivery) DeadLetter() error { return d.d.Nack(false, false) }

// ConsumerConfig tunes a consumer.
type ConsumerConfig struct {
	// Queue to consume. Required.
	Queue string
	// Prefetch bounds unacked deliveries per connection. Default 256.
	Prefetch int
	// BatchSize is the most deliveries handed to Handler at once. Default 100.
	BatchSize int
	// BatchWait is how long a partial batch waits for more. Default 5 ms.
	BatchWait time.Duration
	// Handlers is how many batches are handled at once; each handler call
	// gets its own batch. Default 1. Deliveries of one connection spread over
	// several handlers, rather than several connections each with their own,
	// so that a process that dies hands each unacked message back once: a
	// quorum queue before RabbitMQ 4.3 counts every hand-back towards the
	// delivery limit, and connections torn down one after another would pass
	// the same messages from one dying consumer to the next.
	Handlers int
	// DeadExchange and DeadKey are where the queue dead-letters: a group
	// member that is dead-lettered alone is published there. Empty: such a
	// member is dropped (logged).
	DeadExchange, DeadKey string
}

// Consumer consumes a queue on a connection of its own, reconnecting with
// backoff, and hands batches to its handler: up to BatchSize messages, a
// group's members counted one by one (see GroupType). A message the handler
// retries is handled again under the retry rule of its Config (see Retry),
// the same for every consumer. It is a service.Service: Started is closed
// once it first consumes; Stop cancels the subscription, lets the batches in
// hand finish (a batch waiting to retry hands its failing messages back at
// once), and closes; unacked deliveries go back to the queue.
type Consumer struct {
	service.Runner
	qc  Config
	cfg ConsumerConfig
	h   flashsale.Handler
}

// NewConsumer returns a Consumer of cfg.Queue on the broker of qc; it
// connects once started.
func NewConsumer(qc Config, cfg ConsumerConfig, h flashsale.Handler) (*Consumer, error) {
	if err := qc.validate(); err != nil {
		return nil, err
	}
	if cfg.Queue == "" || h == nil {
		return nil, fmt.Errorf("queue: a consumer needs a queue and a handler")
	}
	if cfg.Prefetch == 0 {
		cfg.Prefetch = 256
	}
	if cfg.BatchSize == 0 {
		cfg.BatchSize = 100
	}
	if cfg.BatchWait == 0 {
		cfg.BatchWait = 5 * time.Millisecond
	}
	if cfg.Handlers == 0 {
		cfg.Handlers = 1
	}
	return &Consumer{qc: qc, cfg: cfg, h: h}, nil
}

// Start starts consuming.
func (c *Consumer) Start(ctx context.Context) error { return c.Go(ctx, c.run) }

func (c *Consumer) run(ctx context.Context, ready func()) {
	qc := c.qc
	wait := qc.ReconnectMin
	for ctx.Err() == nil {
		err := consumeOnce(ctx, qc, c.cfg, c.h, ready)
		if ctx.Err() != nil {
			return
		}
		qc.Log.Warn("consumer disconnected from rabbitmq", "queue", c.cfg.Queue, "err", err, "retry_in", wait)
		if !backoff(ctx, &wait, qc.ReconnectMax) {
			return
		}
		if err == nil {
			wait = qc.ReconnectMin
		}
	}
}

// consumeOnce consumes on one connection until ctx ends or the connection
// breaks; it calls ready once it consumes.
func consumeOnce(ctx context.Context, qc Config, cfg ConsumerConfig, h flashsale.Handler, ready func()) error {
	conn, ch, err := qc.dial()
	if err != nil {
		return err
	}
	defer conn.Close()
	closed := conn.NotifyClose(make(chan *amqp.Error, 1))
	// lost is closed when the connection is: its deliveries are void (the
	// broker requeued them), so a batch waiting to retry stops waiting.
	lost := make(chan struct{})
	go func() {
		for range closed {
		}
		close(lost)
	}()
	if err := ch.Qos(cfg.Prefetch, 0, false); err != nil {
		return fmt.Errorf("queue: qos: %w", err)
	}
	const tag = "flashsale-consumer"
	deliveries, err := ch.Consume(cfg.Queue, tag, false, false, false, false, nil)
	if err != nil {
		return fmt.Errorf("queue: consume %s: %w", cfg.Queue, err)
	}
	qc.Log.Info("consuming", "queue", cfg.Queue)
	ready()
	r := &republisher{conn: conn, queue: cfg.Queue, deadExchange: cfg.DeadExchange, deadKey: cfg.DeadKey, log: qc.Log, metrics: qc.Metrics}
	stopping := ctx.Done()
	// Handlers run with a context that is not cancelled: what was delivered
	// is handled to the end. The connection closes only after they returned.
	// The retry rule stops waiting when the consumer stops or the connection
	// is lost.
	hctx := context.WithoutCancel(ctx)
	stop := make(chan struct{})
	go func() {
		select {
		case <-ctx.Done():
		case <-lost:
		}
		close(stop)
	}()
	run := retryRun{rule: qc.Retry, h: h, stop: stop, queue: cfg.Queue, log: qc.Log, m: qc.Metrics}
	slots := make(chan struct{}, cfg.Handlers)
	var handling sync.WaitGroup
	defer handling.Wait()
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for {
		var batch []flashsale.Message
		select {
		case <-stopping:
			// Stop intake; what the broker already sent is drained below and
			// handled.
			ch.Cancel(tag, false)
			stopping = nil
			continue
		case d, ok := <-deliveries:
			if !ok {
				if stopping == nil {
					return nil
				}
				return fmt.Errorf("queue: deliveries of %s closed", cfg.Queue)
			}
			batch = append(make([]flashsale.Message, 0, cfg.BatchSize), members(d, r)...)
		}
		timer.Reset(cfg.BatchWait)
	fill:
		for len(batch) < cfg.BatchSize {
			select {
			case d, ok := <-deliveries:
				if !ok {
					break fill
				}
				batch = append(batch, members(d, r)...)
			case <-timer.C:
				break fill
			}
		}
		slots <- struct{}{} // wait for a free handler
		handling.Add(1)
		go func() {
			defer func() { <-slots; handling.Done() }()
			run.handle(hctx, batch)
		}()
	}
}
