package admission

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/flashsale/flashsale"
)

// gateQueue holds every publish until release is closed (or the publish's
// context ends), recording the size of each group.
type gateQueue struct {
	release chan struct{}
	mu      sync.Mutex
	groups  []int
	started chan struct{} // one token per publish started
}

func (g *gateQueue) PublishPurchases(ctx context.Context, reqs []*flashsale.PurchaseRequest) error {
	g.mu.Lock()
	g.groups = append(g.groups, len(reqs))
	g.mu.Unlock()
	g.started <- struct{}{}
	select {
	case <-g.release:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func newTestQueuer(q Queue, inFlight int, timeout time.Duration) *queuer {
	return newQueuer(Config{Queue: q, Stock: &stubStock{}, Log: slog.New(slog.NewTextHandler(io.Discard, nil)),
		PublishTimeout: timeout, MaxGroup: 128, PublishGroups: inFlight})
}

func enqueueAsync(q *queuer, n int) <-chan error {
	errs := make(chan error, n)
	for i := 0; i < n; i++ {
		go func() {
			id := string(rune('a' + i%26))
			errs <- q.enqueue(&flashsale.PurchaseRequest{TicketID: id}, &flashsale.Ticket{ID: id})
		}()
	}
	return errs
}

// While the one group allowed in flight awaits its confirm, the purchases
// admitted meanwhile gather into the next group: 1 message, then 1 for the
// other 9, and every caller learns its group's outcome.
func TestQueuerGathersPurchasesWhileAGroupAwaitsItsConfirm(t *testing.T) {
	g := &gateQueue{release: make(chan struct{}), started: make(chan struct{}, 16)}
	q := newTestQueuer(g, 1, 5*time.Second)
	first := enqueueAsync(q, 1)
	<-g.started // the first purchase is being published alone
	rest := enqueueAsync(q, 9)
	deadline := time.Now().Add(5 * time.Second)
	for {
		q.mu.Lock()
		n := len(q.pending)
		q.mu.Unlock()
		if n == 9 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d purchases pending, want 9", n)
		}
		time.Sleep(time.Millisecond) // polling the pending list, not waiting for an effect of time
	}
	close(g.release)
	if err := <-first; err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 9; i++ {
		if err := <-rest; err != nil {
			t.Fatal(err)
		}
	}
	if len(g.groups) != 2 || g.groups[0] != 1 || g.groups[1] != 9 {
		t.Errorf("groups %v, want [1 9]", g.groups)
	}
}

// A purchase waiting behind groups that the broker does not confirm gives up
// at its own publish timeout, never published; the stuck group fails at its
// deadline.
func TestQueuerPurchaseWaitingBehindAStuckGroupGivesUpInTime(t *testing.T) {
	g := &gateQueue{release: make(chan struct{}), started: make(chan struct{}, 16)}
	q := newTestQueuer(g, 1, 300*time.Millisecond)
	stuck := enqueueAsync(q, 1)
	<-g.started
	time.Sleep(150 * time.Millisecond) // the second purchase arrives half-way through the first's timeout
	start := time.Now()
	err := q.enqueue(&flashsale.PurchaseRequest{TicketID: "late"}, &flashsale.Ticket{ID: "late"})
	waited := time.Since(start)
	if !errors.Is(err, errNotPublished) && !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("the waiting purchase: %v, want an error", err)
	}
	if waited > 600*time.Millisecond {
		t.Errorf("the waiting purchase waited %s, want about its 300 ms timeout", waited)
	}
	if err := <-stuck; !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("the stuck group: %v, want its deadline", err)
	}
}
