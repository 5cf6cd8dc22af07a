package redisstore

import (
	"cmp"
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/flashsale/flashsale"
)

// mint claims a new ticket for user as the ingress does (the id minted by
// the claim) and returns the request the ingress would queue.
func mint(t *testing.T, s *Store, sale *flashsale.Sale, user, nonce string) *flashsale.PurchaseRequest {
	t.Helper()
	out, id, load, err := s.Claim(context.Background(), sale, user, flashsale.TicketClaim{Sales: []string{sale.ID}, Nonce: nonce}, 1)
	if err != nil || out != flashsale.Claimed {
		t.Fatalf("claim by %s: %v %v", user, out, err)
	}
	if !flashsale.MintedFor(id, user) {
		t.Fatalf("minted id %q does not carry %s's tag", id, user)
	}
	return &flashsale.PurchaseRequest{TicketID: id, SaleID: sale.ID, UserID: user, Quantity: 1, Loads: []int64{load}}
}

// flush deletes every key of the sale, as FLUSHALL or a restart without data
// would.
func flush(t *testing.T, s *Store, saleID string) {
	t.Helper()
	ctx := context.Background()
	for _, k := range allKeys(s, saleID) {
		if err := s.rdb.Del(ctx, k).Err(); err != nil {
			t.Fatal(err)
		}
	}
}

// allKeys lists every key of the sale: the home's and each segment's family.
func allKeys(s *Store, saleID string) []string {
	keys := []string{s.homeKey(saleID)}
	for j := range s.cfg.Segments {
		k := s.segKeys(saleID, j)
		keys = append(keys, k.stock, k.holds, k.live, k.units, k.claims, k.queue)
	}
	return keys
}

// A purchase retried after Redis lost everything, while its ticket is still
// only in the queue (MySQL never saw it), comes out as the same ticket; once
// MySQL decided the ticket, the next purchase is a new one.
func TestRetryAfterALossIsTheSameTicket(t *testing.T) {
	s, sale, src := newStore(t, 10, 1)
	ctx := context.Background()
	first := mint(t, s, sale, "alice", "n1")
	if err := s.Queued(ctx, first.Ticket(flashsale.TicketQueued)); err != nil {
		t.Fatal(err)
	}
	flush(t, s, sale.ID)
	again := mint(t, s, sale, "alice", "n2")
	if again.TicketID != first.TicketID {
		t.Fatalf("the retry after the loss is ticket %s, want the queued %s", again.TicketID, first.TicketID)
	}
	// The first message (claimed in the earlier load) and the retry's hold
	// the same ticket once.
	if h := holdOne(t, s, sale, first); h.Kind != flashsale.HoldHeld {
		t.Fatalf("hold of the first message = %+v", h)
	}
	if h := holdOne(t, s, sale, again); h.Kind != flashsale.HoldHeld {
		t.Fatalf("hold of the retry's message = %+v", h)
	}
	wantStock(t, s, flashsale.StockLevel{Total: 10, Available: 9, Held: 1})
	// MySQL recorded the ticket sold out (say), and Redis is lost again: the
	// next purchase is a new ticket.
	src.outcomes = []*flashsale.Ticket{first.Ticket(flashsale.TicketSoldOut)}
	flush(t, s, sale.ID)
	if next := mint(t, s, sale, "alice", "n3"); next.TicketID == first.TicketID {
		t.Fatalf("a purchase after the ticket was decided got its id %s again", next.TicketID)
	}
	// Another user's id differs, and does not carry alice's tag.
	if bob := mint(t, s, sale, "bob", "n4"); bob.TicketID == first.TicketID || flashsale.MintedFor(bob.TicketID, "alice") {
		t.Fatalf("bob's ticket %s", bob.TicketID)
	}
}

// A ticket given up after a failed publish (unclaim) never has its id minted
// again: the user's next purchase is a new ticket.
func TestGivenUpTicketIsNeverMintedAgain(t *testing.T) {
	s, sale, _ := newStore(t, 10, 1)
	ctx := context.Background()
	first := mint(t, s, sale, "alice", "n1")
	if err := s.Unclaim(ctx, flashsale.Part{SaleID: sale.ID, TicketID: first.TicketID, UserID: "alice"}); err != nil {
		t.Fatal(err)
	}
	if next := mint(t, s, sale, "alice", "n2"); next.TicketID == first.TicketID {
		t.Fatalf("the given-up ticket's id %s was minted again", next.TicketID)
	}
	// Its late message is refused.
	if h := holdOne(t, s, sale, first); h.Kind != flashsale.HoldRefused {
		t.Fatalf("hold of the given-up ticket = %+v, want refused", h)
	}
}

// A forced rebuild (MySQL refused units: Redis is behind) keeps the live
// entry and the claim of a ticket still in the queue: its user's next
// purchase finds it, and its message is held.
func TestResyncKeepsQueuedTickets(t *testing.T) {
	s, sale, src := newStore(t, 10, 1)
	ctx := context.Background()
	queued := mint(t, s, sale, "alice", "n1")
	if err := s.Queued(ctx, queued.Ticket(flashsale.TicketQueued)); err != nil {
		t.Fatal(err)
	}
	unconfirmed := mint(t, s, sale, "bob", "n2") // claimed, not yet marked published
	paid := &flashsale.Order{ID: "o-carol", SaleID: sale.ID, UserID: "carol", Quantity: 1, Status: flashsale.OrderPaid}
	src.orders = []*flashsale.Order{paid}
	if err := s.Resync(ctx, sale.ID); err != nil {
		t.Fatal(err)
	}
	if out, id, _, err := s.Claim(ctx, sale, "alice", flashsale.TicketClaim{Sales: []string{sale.ID}, Nonce: "n3"}, 1); err != nil || out != flashsale.Existing || id != queued.TicketID {
		t.Fatalf("alice's purchase after the resync: %v %s %v, want Existing %s", out, id, err, queued.TicketID)
	}
	if out, id, _, err := s.Claim(ctx, sale, "bob", flashsale.TicketClaim{Sales: []string{sale.ID}, Nonce: "n4"}, 1); err != nil || out != flashsale.Unconfirmed || id != unconfirmed.TicketID {
		t.Fatalf("bob's purchase after the resync: %v %s %v, want Unconfirmed %s", out, id, err, unconfirmed.TicketID)
	}
	for _, req := range []*flashsale.PurchaseRequest{queued, unconfirmed} {
		if h := holdOne(t, s, sale, req); h.Kind != flashsale.HoldHeld {
			t.Fatalf("hold of %s's queued ticket after the resync = %+v", req.UserID, h)
		}
	}
	wantStock(t, s, flashsale.StockLevel{Total: 10, Available: 7, Held: 2, Sold: 1})
}

// A family key lost on its own (evicted, deleted) makes the sale stale: the
// next script rebuilds it, so a user's live ticket is still found.
func TestALostFamilyKeyIsStale(t *testing.T) {
	s, sale, src := newStore(t, 10, 1)
	ctx := context.Background()
	req := mint(t, s, sale, "alice", "n1")
	holdOne(t, s, sale, req)
	src.orders = []*flashsale.Order{{ID: req.TicketID, SaleID: sale.ID, UserID: "alice", Quantity: 1, Status: flashsale.OrderPendingPayment}}
	k := s.keys(sale.ID, "alice")
	if err := s.rdb.Del(ctx, k.live).Err(); err != nil {
		t.Fatal(err)
	}
	if live, _, units, err := s.Holder(ctx, sale.ID, "alice"); err != nil || live != req.TicketID || units != 1 {
		t.Fatalf("holder after the live hash was lost: %q %d %v, want %s and 1", live, units, err, req.TicketID)
	}
}

// A rebuild cut short (its process died after freezing the sale, or after
// writing some segments but not the home) is redone by the next script, and
// the sale sells every unit.
func TestARebuildCutShortIsRedone(t *testing.T) {
	for _, cut := range []string{"frozen", "some segments written"} {
		t.Run(cut, func(t *testing.T) {
			s, sale, _ := newStore(t, 6, 1)
			ctx := context.Background()
			held := mint(t, s, sale, "u0", "n0")
			holdOne(t, s, sale, held)
			token := newLoadID()
			for _, k := range s.stockKeys(sale.ID) {
				if err := freezeScript.Run(ctx, s.rdb, []string{k}, token).Err(); err != nil {
					t.Fatal(err)
				}
			}
			if cut != "frozen" {
				oneSlotOnly := s.cfg.Segments == 1 // the merge of its one part is the whole rebuild
				total := -1
				if oneSlotOnly {
					total = sale.Stock
				}
				k := s.segKeys(sale.ID, 0)
				if err := mergeScript.Run(ctx, s.rdb, []string{k.stock, k.holds, k.live, k.units, k.claims, k.queue}, token, total, `{"d":{},"u":{}}`, sale.Stock).Err(); err != nil {
					t.Fatal(err)
				}
			}
			s.gens.Clear()
			sold := 1
			for i := 1; i < 20; i++ {
				out, id, load, err := s.Claim(ctx, sale, fmt.Sprintf("u%d", i), flashsale.TicketClaim{Sales: []string{sale.ID}, Nonce: "n"}, 1)
				if err != nil {
					t.Fatalf("claim %d: %v", i, err)
				}
				if out == flashsale.SoldOut {
					break
				}
				h := holdOne(t, s, sale, &flashsale.PurchaseRequest{TicketID: id, SaleID: sale.ID, UserID: fmt.Sprintf("u%d", i), Quantity: 1, Loads: []int64{load}})
				if h.Kind == flashsale.HoldHeld {
					sold++
				}
			}
			if sold != 6 {
				t.Fatalf("held %d of 6 units after the rebuild cut short", sold)
			}
			wantStock(t, s, flashsale.StockLevel{Total: 6, Available: 0, Held: 6})
		})
	}
}

// Confirm follows MySQL's paid order wherever Redis stands: a ticket Redis
// released (a rebuild read the order expired just before its late payment
// committed) is taken again as sold.
func TestConfirmFollowsAPaidOrder(t *testing.T) {
	s, sale, _ := newStore(t, 5, 1)
	ctx := context.Background()
	req := mint(t, s, sale, "alice", "n1")
	holdOne(t, s, sale, req)
	p := flashsale.Part{SaleID: sale.ID, TicketID: req.TicketID, UserID: "alice", Quantity: 1}
	if _, err := s.Release(ctx, p); err != nil {
		t.Fatal(err)
	}
	wantStock(t, s, flashsale.StockLevel{Total: 5, Available: 5})
	if h, err := s.Confirm(ctx, p); err != nil || h.Kind != flashsale.HoldReleased {
		t.Fatalf("confirm = %+v %v, want the state before: released", h, err)
	}
	wantStock(t, s, flashsale.StockLevel{Total: 5, Available: 4, Sold: 1})
	if h, _ := s.Confirm(ctx, p); h.Kind != flashsale.HoldSold {
		t.Fatalf("confirm again = %+v, want sold (no change)", h)
	}
	wantStock(t, s, flashsale.StockLevel{Total: 5, Available: 4, Sold: 1})
}

// Many scripts that find a sale lost at once (a crowd after a flush) wait for
// one rebuild, not for the lease one after another: each returns as soon as
// the sale is current again. Measured before: 120 of 300 claims gave up on
// the lease after 5 s with the sale in three segments.
func TestACrowdAfterALossWaitsForOneRebuild(t *testing.T) {
	s, sale, _ := newStore(t, 600, 1)
	ctx := context.Background()
	for i := range 50 {
		holdOne(t, s, sale, mint(t, s, sale, fmt.Sprintf("a%d", i), "n"))
	}
	flush(t, s, sale.ID)
	var wg sync.WaitGroup
	errs := make(chan error, 300)
	for i := range 300 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
			defer cancel()
			out, _, _, err := s.Claim(cctx, sale, fmt.Sprintf("b%d", i), flashsale.TicketClaim{Sales: []string{sale.ID}, Nonce: "n"}, 1)
			if err == nil && out != flashsale.Claimed {
				err = fmt.Errorf("claim of b%d: %v", i, out)
			}
			errs <- err
		}()
	}
	wg.Wait()
	close(errs)
	failed := 0
	var first error
	for err := range errs {
		if err != nil {
			failed++
			first = cmp.Or(first, err)
		}
	}
	if failed > 0 {
		t.Fatalf("%d of 300 claims after the loss failed, e.g. %v", failed, first)
	}
}

// A rebuild never counts more than the stock: when Redis holds, for tickets
// MySQL does not know yet, more units than MySQL's orders leave (Redis lost
// holds of orders that committed since, and handed their units to others),
// the merge keeps those holds only up to the stock. Measured before: a view
// of {Available:-6 Held:206} for a stock of 200 (TestStockCapRedisKeysLostMidCommit).
func TestARebuildNeverCountsMoreThanTheStock(t *testing.T) {
	s, sale, src := newStore(t, 5, 1)
	ctx := context.Background()
	for i := range 5 {
		holdOne(t, s, sale, mint(t, s, sale, fmt.Sprintf("new%d", i), "n")) // Redis's 5 units, to tickets not committed yet
	}
	for i := range 3 { // orders held in a Redis that was lost, committed since
		src.orders = append(src.orders, &flashsale.Order{ID: fmt.Sprintf("o%d", i), SaleID: sale.ID, UserID: fmt.Sprintf("old%d", i), Quantity: 1, Status: flashsale.OrderPendingPayment})
	}
	if err := s.Resync(ctx, sale.ID); err != nil {
		t.Fatal(err)
	}
	wantStock(t, s, flashsale.StockLevel{Total: 5, Available: 0, Held: 5})
	snap, err := s.Snapshot(ctx, sale.ID)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		if h := snap.Holds[fmt.Sprintf("o%d", i)]; h.Kind != flashsale.HoldHeld {
			t.Errorf("MySQL's order o%d: %+v, want held", i, h)
		}
	}
}

// saleSnapshot dumps every key of the sale and returns what puts them back
// as they were (keys absent then are deleted): the sale's keys gone back in
// time, as after a restart from an older snapshot (on the same server here,
// so no rebuild runs: what a rebuild keeps of Redis-only state is this).
func saleSnapshot(t *testing.T, s *Store, saleID string) (restore func()) {
	t.Helper()
	ctx := context.Background()
	dumps := map[string]string{}
	for _, k := range allKeys(s, saleID) {
		d, err := s.rdb.Dump(ctx, k).Result()
		if err != nil && err != redis.Nil {
			t.Fatal(err)
		}
		dumps[k] = d
	}
	return func() {
		t.Helper()
		for k, d := range dumps {
			var err error
			if d == "" {
				err = s.rdb.Del(ctx, k).Err()
			} else {
				err = s.rdb.RestoreReplace(ctx, k, 0, d).Err()
			}
			if err != nil {
				t.Fatal(err)
			}
		}
	}
}

// A refusal that Redis forgot before MySQL recorded it (the sale's keys went
// back to a moment when the ticket was only queued) is written again when the
// refused ticket's copy is: the user's next purchase neither finds the
// refused ticket as their live one nor mints its id again.
func TestARefusalRedisForgotIsSettledWithItsCopy(t *testing.T) {
	s, sale, src := newStore(t, 1, 1)
	ctx := context.Background()
	alice := mint(t, s, sale, "alice", "a1")
	if err := s.Queued(ctx, alice.Ticket(flashsale.TicketQueued)); err != nil {
		t.Fatal(err)
	}
	bob := mint(t, s, sale, "bob", "b1") // claimed after alice, held first
	if h := holdOne(t, s, sale, bob); h.Kind != flashsale.HoldHeld {
		t.Fatalf("bob's hold = %+v", h)
	}
	back := saleSnapshot(t, s, sale.ID)
	if h := holdOne(t, s, sale, alice); h.Kind != flashsale.HoldSoldOut {
		t.Fatalf("alice's hold = %+v, want sold out", h)
	}
	back() // Redis forgets the refusal; then MySQL records it and the worker writes the copy
	refused := alice.Ticket(flashsale.TicketSoldOut)
	src.outcomes = []*flashsale.Ticket{refused}
	if err := s.PutTickets(ctx, refused); err != nil {
		t.Fatal(err)
	}
	k := s.keys(sale.ID, "alice")
	if st, _ := s.rdb.HGet(ctx, k.holds, alice.TicketID).Result(); st != "X" {
		t.Fatalf("alice's refused ticket is %q in holds, want X", st)
	}
	out, id, _, err := s.Claim(ctx, sale, "alice", flashsale.TicketClaim{Sales: []string{sale.ID}, Nonce: "a2"}, 1)
	if err != nil || out != flashsale.SoldOut {
		t.Fatalf("alice's next purchase: %v %s %v, want sold out (her refused ticket is %s)", out, id, err, alice.TicketID)
	}
	// Units back: her next claim is a new ticket.
	if _, err := s.Release(ctx, flashsale.Part{SaleID: sale.ID, TicketID: bob.TicketID, UserID: "bob"}); err != nil {
		t.Fatal(err)
	}
	if next := mint(t, s, sale, "alice", "a3"); next.TicketID == alice.TicketID {
		t.Fatalf("alice's purchase after her refusal got the refused ticket's id %s again", next.TicketID)
	}
}

// A ticket refused by its hold stays its user's live ticket until its copy is
// written (after MySQL recorded the refusal), named as refused: a purchase
// meanwhile asks MySQL whether the refusal is final (admission), and never
// gets a second ticket while the first reads queued.
func TestARefusedTicketIsLiveUntilItsCopyIsWritten(t *testing.T) {
	s, sale, _ := newStore(t, 1, 1)
	ctx := context.Background()
	alice := mint(t, s, sale, "alice", "a1")
	if err := s.Queued(ctx, alice.Ticket(flashsale.TicketQueued)); err != nil {
		t.Fatal(err)
	}
	bob := mint(t, s, sale, "bob", "b1")
	if h := holdOne(t, s, sale, bob); h.Kind != flashsale.HoldHeld {
		t.Fatalf("bob's hold = %+v", h)
	}
	if h := holdOne(t, s, sale, alice); h.Kind != flashsale.HoldSoldOut {
		t.Fatalf("alice's hold = %+v, want sold out", h)
	}
	if _, err := s.Release(ctx, flashsale.Part{SaleID: sale.ID, TicketID: bob.TicketID, UserID: "bob"}); err != nil {
		t.Fatal(err)
	}
	claim := func(nonce string) (flashsale.ClaimOutcome, string) {
		out, id, _, err := s.Claim(ctx, sale, "alice", flashsale.TicketClaim{Sales: []string{sale.ID}, Nonce: nonce}, 1)
		if err != nil {
			t.Fatal(err)
		}
		return out, id
	}
	if out, id := claim("a2"); out != flashsale.Refused || id != alice.TicketID {
		t.Fatalf("alice's purchase before her refusal is written: %v %s, want her ticket %s, refused", out, id, alice.TicketID)
	}
	if live, refused, _, err := s.Holder(ctx, sale.ID, "alice"); err != nil || live != alice.TicketID || !refused {
		t.Fatalf("alice's standing before her refusal is written: %s refused %v %v, want her ticket, refused", live, refused, err)
	}
	if err := s.PutTickets(ctx, alice.Ticket(flashsale.TicketSoldOut)); err != nil {
		t.Fatal(err)
	}
	if out, id := claim("a3"); out != flashsale.Claimed || id == alice.TicketID {
		t.Fatalf("alice's purchase after her refusal is written: %v %s, want a new ticket", out, id)
	}
}
