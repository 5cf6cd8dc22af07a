package queue

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"sync/atomic"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/flashsale/flashsale/service"
)

// Config says where the broker is.
type Config struct {
	// URLs of the broker: one node, or the nodes of one cluster. A connection
	// goes to the first node that answers, starting after the one used last,
	// so that a process whose node went away moves to another (quorum queues
	// keep working on the remaining majority). At least one; each must parse.
	URLs []string
	// next is where the next dial starts (shared by the copies of a Config
	// made after validate).
	next *atomic.Uint32
	// Topology names the exchanges and queues. Its Namespace is required.
	Topology Topology
	// Log receives connection notices. Default slog.Default().
	Log *slog.Logger
	// ReconnectMin and ReconnectMax bound the backoff between connection attempts.
	// Defaults 100 ms and 5 s.
	ReconnectMin, ReconnectMax time.Duration
	// Name is shown in the broker's connection list. Default "flashsale".
	Name string
	// Metrics counts what is published; nil counts nothing.
	Metrics *Metrics
	// Retry is the retry rule of every consumer built on this Config (see
	// Retry; its zero value has the defaults).
	Retry Retry
}

func (c *Config) validate() error {
	if len(c.URLs) == 0 {
		return errors.New("queue: at least one URL is required")
	}
	for _, u := range c.URLs {
		if _, err := amqp.ParseURI(u); err != nil {
			return fmt.Errorf("queue: bad URL %q: %w", redact(u), err)
		}
	}
	if c.next == nil {
		c.next = new(atomic.Uint32)
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
	return c.Retry.validate()
}

// dial opens a connection to the first node that answers (see Config.URLs)
// and a channel, and declares the topology on it.
func (c *Config) dial() (*amqp.Connection, *amqp.Channel, error) {
	props := amqp.NewConnectionProperties()
	props.SetClientConnectionName(c.Name)
	var conn *amqp.Connection
	var errs []error
	start := int(c.next.Load())
	for i := range c.URLs {
		n := (start + i) % len(c.URLs)
		var err error
		conn, err = amqp.DialConfig(c.URLs[n], amqp.Config{Heartbeat: 5 * time.Second, Properties: props,
			Dial: amqp.DefaultDial(3 * time.Second)})
		if err == nil {
			// The next dial (after this node went away) starts at the next node.
			c.next.Store(uint32(n + 1))
			if i > 0 {
				c.Log.Info("connected to another rabbitmq node", "node", redact(c.URLs[n]))
			}
			break
		}
		errs = append(errs, fmt.Errorf("%s: %w", redact(c.URLs[n]), err))
	}
	if conn == nil {
		return nil, nil, fmt.Errorf("queue: dial: %w", errors.Join(errs...))
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
	if !service.Sleep(ctx, *d) {
		return false
	}
	*d = min(*d*2, max)
	return true
}

// redact is u without its password, for logs and errors.
func redact(u string) string {
	p, err := url.Parse(u)
	if err != nil {
		return "(unparsable URL)"
	}
	return p.Redacted()
}
