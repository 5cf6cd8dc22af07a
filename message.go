package flashsale

import "context"

// Message is one delivery from a queue and the way to settle it. Every
// consumer of flashsale takes these; a handler settles each message it is
// given, explicitly, by what its effects became.
type Message interface {
	Body() []byte
	// Ack: its effects are committed; the queue forgets it.
	Ack() error
	// Retry: deliver it again later (counts towards the queue's delivery limit).
	Retry() error
	// DeadLetter: it can never succeed; it goes to the dead-letter queue.
	DeadLetter() error
}

// Handler processes a batch of messages and settles every one of them.
type Handler func(ctx context.Context, msgs []Message)

// QueueStat is one queue's depth as the broker reports it to a passive
// declare: messages ready for delivery (not those delivered and unacked) and
// consumers. The queue adapter reads it, the operations surface shows it.
type QueueStat struct {
	Name      string `json:"name"`
	Messages  int    `json:"messages"`
	Consumers int    `json:"consumers"`
}

// SaleFinder finds sales by id: the one read of the catalog every role needs.
// An unknown sale is an error wrapping ErrNotFound.
type SaleFinder interface {
	Get(ctx context.Context, id string) (*Sale, error)
}

// stageKey is the context key of WithStage.
type stageKey struct{}

// WithStage tags ctx with the stage of the purchase path the work is for
// ("admission": a purchase request being admitted; "worker": a queued one
// being held and ordered), so that adapters can count what each stage costs
// them (Redis round trips per admission, say).
func WithStage(ctx context.Context, stage string) context.Context {
	return context.WithValue(ctx, stageKey{}, stage)
}

// StageOf is ctx's stage (see WithStage), "other" when it has none.
func StageOf(ctx context.Context) string {
	if s, ok := ctx.Value(stageKey{}).(string); ok {
		return s
	}
	return "other"
}
