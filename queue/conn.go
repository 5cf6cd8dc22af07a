package queue

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
)

// Config says where the broker is.
type Config struct {
	// URL of the broker. Required.
	URL string
	// Topology names the exchanges and queues. Its Namespace is required.
	Topology Topology
	// Log receives connection notices. Default slog.Default().
	Log *slog.Logger
	// ReconnectMin and ReconnectMax bound the backoff between connection attempts.
	// Defaults 100 ms and 5 s.
	ReconnectMin, ReconnectMax time.Duration
	// Name is shown in the broker's connection list. Default "flashsale".
	Name string
}

func (c *Config) validate() error {
	if c.URL == "" {
		return errors.New("queue: URL is required")
	}
	if c.Topology.Namespace == "" {
		return errors.New("queue: Topology.Namespace is required")
	}
	if c.Log == nil {
		c.Log = slog.Default()
	}
	if c.ReconnectMin == 0 {
		c.ReconnectMin = 100 * time.Millisecond
	}
	if c.ReconnectMax == 0 {
		c.ReconnectMax = 5 * time.Second
	}
	if c.Name == "" {
		c.Name = "flashsale"
	}
	return nil
}

// dial opens a connection and a channel and declares the topology on it.
func (c *Config) dial() (*amqp.Connection, *amqp.Channel, error) {
	props := amqp.NewConnectionProperties()
	props.SetClientConnectionName(c.Name)
	conn, err := amqp.DialConfig(c.URL, amqp.Config{Heartbeat: 5 * time.Second, Properties: props,
		Dial: amqp.DefaultDial(3 * time.Second)})
	if err != nil {
		return nil, nil, fmt.Errorf("queue: dial: %w", err)
	}
	ch, err := conn.Channel()
	if err != nil {
		conn.Close()
		return nil, nil, fmt.Errorf("queue: channel: %w", err)
	}
	if err := c.Topology.Declare(ch); err != nil {
		conn.Close()
		return nil, nil, err
	}
	return conn, ch, nil
}

// backoff waits before the next connection attempt; false when ctx ended.
func backoff(ctx context.Context, d *time.Duration, max time.Duration) bool {
	t := time.NewTimer(*d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
	}
	*d = min(*d*2, max)
	return true
}
