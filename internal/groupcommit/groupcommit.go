// Package groupcommit gathers concurrent calls into batches served by one
// function call each: a group commit. No batch waits for company: a call
// that finds no batch running runs its own at once, and the calls that
// arrive while it runs form the next batch. So an idle caller pays nothing,
// and under load the batches grow by themselves to what arrives during one
// run (a transaction's round trips and its commit), up to Max.
package groupcommit

import (
	"context"
	"sync"
	"time"
)

// Group serves calls of In with results of Out through Run, one batch at a
// time.
type Group[In, Out any] struct {
	// Run serves a batch: it returns one result per input, in order, or an
	// error for the whole batch (each caller gets it). It runs on a context
	// that no caller's cancellation cuts short, with the earliest deadline
	// of the batch's callers.
	Run func(ctx context.Context, ins []In) ([]Result[Out], error)
	// Max bounds a batch; 0 is 500.
	Max int

	mu      sync.Mutex
	running bool
	queue   []*call[In, Out]
}

// Result is one input's outcome.
type Result[Out any] struct {
	Out Out
	Err error
}

type call[In, Out any] struct {
	ctx  context.Context
	in   In
	done chan Result[Out]
}

// Do serves in within a batch and returns its result, or ctx's error when
// ctx ends first. A call whose context ended before its batch ran is left
// out of it; one that ended while its batch ran may still have been served
// (the caller cannot know: the answer it gives must allow for both).
func (g *Group[In, Out]) Do(ctx context.Context, in In) (Out, error) {
	c := &call[In, Out]{ctx: ctx, in: in, done: make(chan Result[Out], 1)}
	g.mu.Lock()
	g.queue = append(g.queue, c)
	lead := !g.running
	g.running = true
	g.mu.Unlock()
	if lead {
		go g.drain(context.WithoutCancel(ctx))
	}
	select {
	case r := <-c.done:
		return r.Out, r.Err
	case <-ctx.Done():
		var zero Out
		return zero, ctx.Err()
	}
}

// drain runs batches until the queue is empty.
func (g *Group[In, Out]) drain(base context.Context) {
	max := g.Max
	if max <= 0 {
		max = 500
	}
	for {
		g.mu.Lock()
		var batch []*call[In, Out]
		for len(g.queue) > 0 && len(batch) < max {
			c := g.queue[0]
			g.queue = g.queue[1:]
			if c.ctx.Err() == nil {
				batch = append(batch, c)
			}
		}
		if len(batch) == 0 {
			g.running = false
			g.mu.Unlock()
			return
		}
		g.mu.Unlock()
		g.run(base, batch)
	}
}

// run serves one batch and hands each caller its result.
func (g *Group[In, Out]) run(base context.Context, batch []*call[In, Out]) {
	ctx := base
	var deadline time.Time
	ins := make([]In, len(batch))
	for i, c := range batch {
		ins[i] = c.in
		if d, ok := c.ctx.Deadline(); ok && (deadline.IsZero() || d.Before(deadline)) {
			deadline = d
		}
	}
	if !deadline.IsZero() {
		var cancel context.CancelFunc
		ctx, cancel = context.WithDeadline(base, deadline)
		defer cancel()
	}
	out, err := g.Run(ctx, ins)
	for i, c := range batch {
		switch {
		case err != nil:
			c.done <- Result[Out]{Err: err}
		default:
			c.done <- out[i]
		}
	}
}
