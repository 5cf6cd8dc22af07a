package queue

import (
	"context"
	"io"
	"log/slog"
	"net/url"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/flashsale/flashsale"
	"github.com/flashsale/flashsale/internal/testenv"
)

// A publisher and a consumer start nothing when built; Start connects them,
// Started is closed once the publisher is connected and the consumer
// consumes, a message goes through, and Stop closes both.
func TestPublisherAndConsumerStartOnlyWhenStarted(t *testing.T) {
	amqpURL := testenv.Env("FLASHSALE_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/")
	u, err := url.Parse(amqpURL)
	if err != nil {
		t.Fatal(err)
	}
	testenv.Require(t, u.Host)
	ns := testenv.Name("qsvc")
	qc := Config{URLs: []string{amqpURL}, Topology: Topology{Namespace: ns},
		Log: slog.New(slog.NewTextHandler(io.Discard, nil))}
	t.Cleanup(func() { deleteTopology(t, amqpURL, qc.Topology) })
	ctx := context.Background()

	pub, err := NewPublisher(qc)
	if err != nil {
		t.Fatal(err)
	}
	got := make(chan string, 1)
	cons, err := NewConsumer(qc, ConsumerConfig{Queue: qc.Topology.PurchaseQueue()}, func(_ context.Context, msgs []flashsale.Message) {
		for _, m := range msgs {
			m.Ack()
			got <- string(m.Body())
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	if pub.Ready() == nil {
		t.Fatal("a publisher that was not started is connected")
	}
	for name, s := range map[string]<-chan struct{}{"publisher": pub.Started(), "consumer": cons.Started()} {
		select {
		case <-s:
			t.Fatalf("the %s is started before Start", name)
		default:
		}
	}

	for _, s := range []interface{ Start(context.Context) error }{pub, cons} {
		if err := s.Start(ctx); err != nil {
			t.Fatal(err)
		}
	}
	for name, s := range map[string]<-chan struct{}{"publisher": pub.Started(), "consumer": cons.Started()} {
		select {
		case <-s:
		case <-time.After(15 * time.Second):
			t.Fatalf("the %s is not ready 15 s after Start", name)
		}
	}
	if err := pub.Ready(); err != nil {
		t.Fatalf("started publisher: %v", err)
	}
	err = pub.Publish(ctx, qc.Topology.PurchaseExchange(), PurchaseKey, amqp.Publishing{Body: []byte("hello")})
	if err != nil {
		t.Fatal(err)
	}
	select {
	case body := <-got:
		if body != "hello" {
			t.Errorf("consumed %q, want hello", body)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the message was not consumed within 10 s")
	}
	if err := cons.Stop(ctx); err != nil {
		t.Errorf("consumer Stop: %v", err)
	}
	if err := pub.Stop(ctx); err != nil {
		t.Errorf("publisher Stop: %v", err)
	}
	if pub.Ready() == nil {
		t.Error("a stopped publisher is still connected")
	}
}

// deleteTopology deletes the namespace's queues and exchanges.
func deleteTopology(t *testing.T, amqpURL string, top Topology) {
	conn, err := amqp.Dial(amqpURL)
	if err != nil {
		t.Logf("cleanup: %v", err)
		return
	}
	defer conn.Close()
	ch, err := conn.Channel()
	if err != nil {
		t.Logf("cleanup: %v", err)
		return
	}
	for _, q := range []string{top.PurchaseQueue(), top.DeadQueue(), top.ExpiryQueue()} {
		if _, err := ch.QueueDelete(q, false, false, false); err != nil {
			t.Logf("cleanup: queue %s: %v", q, err)
		}
	}
	for _, x := range []string{top.PurchaseExchange(), top.DeadExchange(), top.EventsExchange(), top.ExpiryExchange()} {
		if err := ch.ExchangeDelete(x, false, false); err != nil {
			t.Logf("cleanup: exchange %s: %v", x, err)
		}
	}
}
