// Package mock has fakes of the small interfaces flashsale's roles depend on,
// for unit tests that run without Redis, RabbitMQ or MySQL (as wtf's mock
// package). A fake records what it was asked and answers with a function
// field, so each test says what the dependency does. The two stores the roles
// lean on most are in-memory instead, and kept honest: Book passes the book of
// record's suite that mysqlstore passes, Stock the stock store's suite that
// redisstore passes (internal/storetest), so where a role's unit test relies
// on a store's rule, the fake keeps it as the adapter does.
package mock

import (
	"context"
	"encoding/json"
	"slices"
	"sync"
	"time"

	"github.com/flashsale/flashsale"
	"github.com/flashsale/flashsale/service"
)

// Message is a flashsale.Message that records how it was settled.
type Message struct {
	Data    []byte
	mu      sync.Mutex
	settled string
}

// NewMessage returns a message whose body is v as JSON (or v itself when it
// is a []byte).
func NewMessage(v any) *Message {
	if b, ok := v.([]byte); ok {
		return &Message{Data: b}
	}
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	return &Message{Data: b}
}

func (m *Message) Body() []byte      { return m.Data }
func (m *Message) Ack() error        { return m.settle("ack") }
func (m *Message) Retry() error      { return m.settle("retry") }
func (m *Message) DeadLetter() error { return m.settle("dead") }

func (m *Message) settle(how string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.settled = how
	return nil
}

// Settled returns how the message was settled: "ack", "retry", "dead", or ""
// when it was not.
func (m *Message) Settled() string {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.settled
}

// Messages returns msgs as a batch.
func Messages(msgs ...*Message) []flashsale.Message {
	out := make([]flashsale.Message, len(msgs))
	for i, m := range msgs {
		out[i] = m
	}
	return out
}

// Sales is a store of sales over a map (flashsale.SaleFinder, ingress.Sales).
type Sales map[string]*flashsale.Sale

// Create adds the sale; an existing id is flashsale.ErrConflict.
func (s Sales) Create(_ context.Context, sale *flashsale.Sale) error {
	if s[sale.ID] != nil {
		return flashsale.Errorf(flashsale.CodeConflict, "sale %q exists", sale.ID)
	}
	s[sale.ID] = sale
	return nil
}

// Get returns the sale, or an error wrapping flashsale.ErrNotFound.
func (s Sales) Get(_ context.Context, id string) (*flashsale.Sale, error) {
	if sale := s[id]; sale != nil {
		return sale, nil
	}
	return nil, flashsale.Errorf(flashsale.CodeNotFound, "no sale %q", id)
}

// Delayer records delayed publishes (delayq.Delayer).
type Delayer struct {
	mu sync.Mutex
	// Published is every publish: the message id and the delay in seconds.
	Published []Delayed
	// Bodies is every message published, in order.
	Bodies [][]byte
	// Err, when set, is what PublishDelayed answers.
	Err error
}

// Delayed is one delayed publish: its message id, how many messages it
// carried and the delay in seconds.
type Delayed struct {
	MsgID    string
	Messages int
	Seconds  int
}

// PublishDelayed records the publish.
func (d *Delayer) PublishDelayed(_ context.Context, msgID string, bodies [][]byte, seconds int) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.Err != nil {
		return d.Err
	}
	d.Published = append(d.Published, Delayed{msgID, len(bodies), seconds})
	d.Bodies = append(d.Bodies, bodies...)
	return nil
}

// Expirer answers Expire with ExpireFn, ExpireInBook with ExpireInBookFn and
// Refollow with RefollowFn (delayq.Expirer).
type Expirer struct {
	ExpireFn       func(ctx context.Context, ref flashsale.OrderRef) (*flashsale.Order, error)
	ExpireInBookFn func(ctx context.Context, ref flashsale.OrderRef) (*flashsale.Order, error)
	RefollowFn     func(ctx context.Context, o *flashsale.Order) (bool, error)
}

// Expire calls ExpireFn.
func (e *Expirer) Expire(ctx context.Context, ref flashsale.OrderRef) (*flashsale.Order, error) {
	return e.ExpireFn(ctx, ref)
}

// ExpireInBook calls ExpireInBookFn.
func (e *Expirer) ExpireInBook(ctx context.Context, ref flashsale.OrderRef) (*flashsale.Order, error) {
	return e.ExpireInBookFn(ctx, ref)
}

// Refollow calls RefollowFn; without one, every order had followed.
func (e *Expirer) Refollow(ctx context.Context, o *flashsale.Order) (bool, error) {
	if e.RefollowFn == nil {
		return false, nil
	}
	return e.RefollowFn(ctx, o)
}

// Payer answers Pay with PayFn (payment.Payer) and records every payment it
// was given.
type Payer struct {
	PayFn func(ctx context.Context, p flashsale.Payment) (flashsale.PayOutcome, *flashsale.Order, error)
	mu    sync.Mutex
	Calls []flashsale.Payment
}

// Pay records p and calls PayFn.
func (p *Payer) Pay(ctx context.Context, pay flashsale.Payment) (flashsale.PayOutcome, *flashsale.Order, error) {
	p.mu.Lock()
	p.Calls = append(p.Calls, pay)
	p.mu.Unlock()
	return p.PayFn(ctx, pay)
}

// Due answers the sweeper's reads with DueFn and ClosedFn over Shards shards
// (delayq.Due).
type Due struct {
	N        int
	DueFn    func(ctx context.Context, shard int, now time.Time, limit int) ([]*flashsale.Order, error)
	ClosedFn func(ctx context.Context, shard int, mark flashsale.OrderMark, settle time.Duration, limit int) ([]*flashsale.Order, []flashsale.OrderMark, error)
}

// ClosedOrders calls ClosedFn; without one, no order closed.
func (d *Due) ClosedOrders(ctx context.Context, shard int, mark flashsale.OrderMark, settle time.Duration, limit int) ([]*flashsale.Order, []flashsale.OrderMark, error) {
	if d.ClosedFn == nil {
		return nil, nil, nil
	}
	return d.ClosedFn(ctx, shard, mark, settle, limit)
}

// Shards returns N.
func (d *Due) Shards() int { return d.N }

// DueOrders calls DueFn.
func (d *Due) DueOrders(ctx context.Context, shard int, now time.Time, limit int) ([]*flashsale.Order, error) {
	return d.DueFn(ctx, shard, now, limit)
}

// Leases is a service.Leases that always grants the lease (one process).
type Leases struct{}

// Obtain grants key.
func (Leases) Obtain(context.Context, string, time.Duration) (service.Lease, error) {
	return lease{}, nil
}

type lease struct{}

func (lease) Refresh(context.Context, time.Duration) error { return nil }
func (lease) Release(context.Context) error                { return nil }

// Expiries records the orders whose expiry is scheduled (worker.Expiries).
type Expiries struct {
	mu        sync.Mutex
	scheduled []string
	// Err, when set, is what Schedule answers.
	Err error
}

// Schedule records the orders' ids.
func (e *Expiries) Schedule(_ context.Context, orders []*flashsale.Order) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.Err != nil {
		return e.Err
	}
	for _, o := range orders {
		e.scheduled = append(e.scheduled, o.ID)
	}
	return nil
}

// Scheduled is the ids of the orders scheduled so far, in order.
func (e *Expiries) Scheduled() []string {
	e.mu.Lock()
	defer e.mu.Unlock()
	return slices.Clone(e.scheduled)
}
