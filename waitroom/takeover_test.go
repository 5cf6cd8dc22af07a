package waitroom_test

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/flashsale/flashsale"
	"github.com/flashsale/flashsale/internal/testenv"
	"github.com/flashsale/flashsale/mock"
	"github.com/flashsale/flashsale/mysqlstore"
	"github.com/flashsale/flashsale/redisstore"
	"github.com/flashsale/flashsale/waitroom"
	"github.com/flashsale/flashsale/worker"
)

// A line on the real stores: the line and the orders in MySQL, the stock in
// Redis, the real worker deciding what the releaser publishes. The queue is
// the one stand-in: it keeps the published purchases until the test hands
// them to the worker (the broker's delivery, in the order the test chooses).

type published struct {
	mu   sync.Mutex
	reqs []*flashsale.PurchaseRequest
}

func (q *published) PublishPurchases(_ context.Context, reqs []*flashsale.PurchaseRequest) error {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.reqs = append(q.reqs, reqs...)
	return nil
}

// take returns the purchases published since the last take.
func (q *published) take() []*flashsale.PurchaseRequest {
	q.mu.Lock()
	defer q.mu.Unlock()
	out := q.reqs
	q.reqs = nil
	return out
}

// delivery is one message of the broker's; the worker settles it.
type delivery struct {
	body    []byte
	settled string
}

func (d *delivery) Body() []byte      { return d.body }
func (d *delivery) Ack() error        { d.settled = "ack"; return nil }
func (d *delivery) Retry() error      { d.settled = "retry"; return nil }
func (d *delivery) DeadLetter() error { d.settled = "dead"; return nil }

// sales is the worker's catalog: the book's sales.
type sales struct{ book *mysqlstore.Store }

func (s sales) Get(ctx context.Context, id string) (*flashsale.Sale, error) {
	return s.book.GetSale(ctx, id)
}

// dying is the queue of a releaser's holder that dies at its publish: with
// published, right after the broker confirmed it; else right before. Every
// later step of the pass fails (its context is cancelled), as a killed
// process takes none.
type dying struct {
	q         *published
	published bool
	kill      context.CancelFunc
}

func (d dying) PublishPurchases(ctx context.Context, reqs []*flashsale.PurchaseRequest) error {
	defer d.kill()
	if !d.published {
		return errors.New("killed before the publish")
	}
	return d.q.PublishPurchases(ctx, reqs)
}

type lineFixture struct {
	t     *testing.T
	ctx   context.Context
	ns    string
	book  *mysqlstore.Store
	rs    *redisstore.Store
	w     *worker.Worker
	q     *published
	sale  *flashsale.Sale
	order []*flashsale.Ticket // the draw's order
	quiet *slog.Logger
}

// newLineFixture stores a drawn sale of stock units with a waiting room
// (waitlist) and has users enter its line before starts_at, each asking
// quantities[i] units (by place in the draw; 1 when not given).
func newLineFixture(t *testing.T, stock, waitlist, users int, quantities ...int) *lineFixture {
	t.Helper()
	testenv.Require(t, testenv.RedisAddr())
	dbs := testenv.NewDatabases(t, 2)
	cfg := mysqlstore.Config{MetaDSN: dbs.MetaDSN(), ShardDSNs: dbs.ShardDSNs()}
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	ctx := context.Background()
	if err := mysqlstore.Migrate(ctx, cfg, quiet); err != nil {
		t.Fatal(err)
	}
	book, err := mysqlstore.Open(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { book.Close() })
	ns := testenv.Name("wr")
	rs, err := redisstore.New(redisstore.Config{Addrs: []string{testenv.RedisAddr()}, Namespace: ns, Source: book, Log: quiet})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		keys, _ := rs.Client().Keys(ctx, ns+":*").Result()
		for _, k := range keys {
			rs.Client().Del(ctx, k)
		}
		rs.Close()
	})
	now := time.Now().UTC().Truncate(time.Microsecond)
	seed := make([]byte, flashsale.DrawSeedBytes)
	copy(seed, uuid.New().String())
	sale := &flashsale.Sale{ID: "sale-" + uuid.NewString()[:8], SKU: "k", Name: "n", Stock: stock, PriceCents: 100,
		PerUserLimit: 4, StartsAt: now.Add(-time.Minute), EndsAt: now.Add(time.Hour), PaymentWindowSeconds: 600,
		Inventory: flashsale.InventoryRedis, CreatedAt: now.Add(-2 * time.Hour),
		WaitingRoom: &flashsale.WaitingRoom{OpensAt: now.Add(-time.Hour), Waitlist: waitlist, Seed: seed}}
	if err := book.CreateSale(ctx, sale); err != nil {
		t.Fatal(err)
	}
	if err := rs.InitSale(ctx, sale); err != nil {
		t.Fatal(err)
	}
	w, err := worker.New(worker.Config{Sales: sales{book}, Stock: rs, Orders: book, Expiries: &mock.Expiries{}, Log: quiet})
	if err != nil {
		t.Fatal(err)
	}
	f := &lineFixture{t: t, ctx: ctx, ns: ns, book: book, rs: rs, w: w, q: &published{}, sale: sale, quiet: quiet}
	ids := make([]string, users)
	for i := range ids {
		ids[i] = uuid.NewString()
	}
	sort.Slice(ids, func(i, j int) bool { return flashsale.DrawScore(seed, ids[i]) < flashsale.DrawScore(seed, ids[j]) })
	entered := sale.StartsAt.Add(-time.Second)
	for i, u := range ids { // the draw's order
		q := 1
		if i < len(quantities) {
			q = quantities[i]
		}
		tk := &flashsale.Ticket{ID: flashsale.NewTicketID(u), UserID: u, Status: flashsale.TicketWaiting}
		tk.SetLines([]flashsale.Line{{SaleID: sale.ID, Quantity: q}})
		if _, _, err := book.EnterLine(ctx, tk, sale.LineKey(u, tk.ID, entered), entered, -1); err != nil {
			t.Fatal(err)
		}
		f.order = append(f.order, tk)
	}
	return f
}

// releaser returns a releaser of the fixture's stores publishing to q.
func (f *lineFixture) releaser(q waitroom.Queue) *waitroom.Releaser {
	f.t.Helper()
	r, err := waitroom.New(waitroom.Config{Sales: f.book, Line: f.book, Stock: f.rs, Book: f.book, Queue: q,
		Leases: f.rs.Leases(), Namespace: "unused", Log: f.quiet})
	if err != nil {
		f.t.Fatal(err)
	}
	return r
}

// flushRedis deletes every key of the fixture's namespace: Redis lost them.
func (f *lineFixture) flushRedis() {
	f.t.Helper()
	keys, err := f.rs.Client().Keys(f.ctx, f.ns+":*").Result()
	if err != nil {
		f.t.Fatal(err)
	}
	for _, k := range keys {
		if err := f.rs.Client().Del(f.ctx, k).Err(); err != nil {
			f.t.Fatal(err)
		}
	}
}

// deliver hands every purchase published so far to the worker, as the
// broker delivers them, and checks that it settled each.
func (f *lineFixture) deliver() {
	f.t.Helper()
	reqs := f.q.take()
	if len(reqs) == 0 {
		return
	}
	msgs := make([]flashsale.Message, len(reqs))
	for i, r := range reqs {
		b, err := json.Marshal(r)
		if err != nil {
			f.t.Fatal(err)
		}
		msgs[i] = &delivery{body: b}
	}
	f.w.HandlePurchases(f.ctx, msgs)
	for i, m := range msgs {
		if s := m.(*delivery).settled; s != "ack" {
			f.t.Fatalf("the worker settled ticket %s's purchase with %q, want ack", reqs[i].TicketID, s)
		}
	}
}

// status is the ticket's status as a user reads it: its order or recorded
// outcome, else its line row.
func (f *lineFixture) status(tk *flashsale.Ticket) flashsale.TicketStatus {
	f.t.Helper()
	got, err := f.book.GetTicket(f.ctx, flashsale.TicketRef{User: tk.UserID, Ticket: tk.ID})
	if errors.Is(err, flashsale.ErrNotFound) {
		got, err = f.book.GetLineTicket(f.ctx, tk.ID)
	}
	if err != nil {
		f.t.Fatalf("ticket %s: %v", tk.ID, err)
	}
	return got.Status
}

// settle runs passes of r, delivering what each publishes, until a pass
// changes nothing (at most 20).
func (f *lineFixture) settle(r *waitroom.Releaser) {
	f.t.Helper()
	for range 20 {
		if err := r.Pass(f.ctx); err != nil {
			f.t.Fatalf("pass: %v", err)
		}
		reqs := f.q.take()
		n, err := f.book.LineEntries(f.ctx, f.sale.ID)
		if err != nil {
			f.t.Fatal(err)
		}
		released, err := f.book.ReleasedTickets(f.ctx, f.sale.ID)
		if err != nil {
			f.t.Fatal(err)
		}
		if len(reqs) == 0 && len(released) == 0 && n <= f.sale.WaitingRoom.Waitlist {
			return
		}
		f.q.mu.Lock()
		f.q.reqs = append(reqs, f.q.reqs...)
		f.q.mu.Unlock()
		f.deliver()
	}
	f.t.Fatal("the line still moves after 20 passes")
}

// checkLine asserts each ticket's status by its place in the draw: the
// first admitted have orders, the next waiting keep waiting, the rest ended
// sold_out.
func (f *lineFixture) checkLine(admitted, waiting int) {
	f.t.Helper()
	for i, tk := range f.order {
		want := flashsale.TicketSoldOut
		switch {
		case i < admitted:
			want = flashsale.TicketPendingPayment
		case i < admitted+waiting:
			want = flashsale.TicketWaiting
		}
		if got := f.status(tk); got != want {
			f.t.Errorf("draw place %d (asking %d): %s, want %s", i+1, tk.Quantity, got, want)
		}
	}
}

// TestANewHolderFinishesAReleaseCutShort: the releaser's holder dies in the
// middle of releasing the first tickets of the line (right after the broker
// confirmed their purchases, or right before), Redis perhaps losing the
// deployment's keys too; the worker then decides every purchase published.
// The next holder must take none of the released tickets for one still
// waiting (the waitlist would be counted from the front of the line, and
// the tickets the draw put right after the winners would end sold_out), and
// must get every one of them decided.
func TestANewHolderFinishesAReleaseCutShort(t *testing.T) {
	const stock, waitlist, users = 3, 2, 8
	for _, c := range []struct {
		name             string
		published, flush bool
	}{
		{"killed after its publish", true, false},
		{"killed after its publish, Redis lost its keys", true, true},
		{"killed before its publish", false, false},
		{"killed before its publish, Redis lost its keys", false, true},
	} {
		t.Run(c.name, func(t *testing.T) {
			f := newLineFixture(t, stock, waitlist, users)
			ctx, kill := context.WithCancel(f.ctx)
			_ = f.releaser(dying{f.q, c.published, kill}).Pass(ctx) // what it answers, nobody hears
			if n := len(f.q.reqs); c.published != (n > 0) {
				t.Fatalf("the holder killed published %d purchases", n)
			}
			if c.flush {
				f.flushRedis()
			}
			f.deliver() // the worker holds a unit for each purchase published
			f.settle(f.releaser(f.q))
			f.checkLine(stock, waitlist)
		})
	}
}
