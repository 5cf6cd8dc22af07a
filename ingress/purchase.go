package ingress

import (
	"context"
	"errors"
	"net"
	"net/http"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/google/uuid"

	"github.com/flashsale/flashsale"
	"github.com/flashsale/flashsale/httpapi"
)

type purchaseInput struct {
	Quantity *int `json:"quantity"`
}

type bundleInput struct {
	Items []struct {
		SaleID   string `json:"sale_id"`
		Quantity *int   `json:"quantity"`
	} `json:"items"`
}

type ticketAnswer struct {
	TicketID string                 `json:"ticket_id"`
	Status   flashsale.TicketStatus `json:"status"`
}

// purchase is POST /sales/{id}/purchase: one sale.
func (s *Server) purchase(c *gin.Context) {
	var in purchaseInput
	if err := BindJSON(c, &in); err != nil {
		s.WriteError(c, err)
		return
	}
	s.purchaseLines(c, []flashsale.Line{{SaleID: c.Param("id"), Quantity: quantityOr1(in.Quantity)}})
}

// purchaseBundle is POST /purchases: 2 to flashsale.MaxLines sales, all or
// nothing, under one ticket.
func (s *Server) purchaseBundle(c *gin.Context) {
	var in bundleInput
	if err := BindJSON(c, &in); err != nil {
		s.WriteError(c, err)
		return
	}
	if len(in.Items) < 2 || len(in.Items) > flashsale.MaxLines {
		s.WriteError(c, flashsale.Errorf(flashsale.CodeInvalid, "items: 2 to %d sales (a single sale is bought at /sales/{id}/purchase)", flashsale.MaxLines))
		return
	}
	lines := make([]flashsale.Line, len(in.Items))
	seen := map[string]bool{}
	for i, it := range in.Items {
		if seen[it.SaleID] {
			s.WriteError(c, flashsale.Errorf(flashsale.CodeInvalid, "items: sale %q appears twice", it.SaleID))
			return
		}
		seen[it.SaleID] = true
		lines[i] = flashsale.Line{SaleID: it.SaleID, Quantity: quantityOr1(it.Quantity)}
	}
	s.purchaseLines(c, lines)
	// The bundle's one answer counts in each of its sales.
	for _, l := range lines {
		s.CountPurchase(c, l.SaleID, c.Writer.Status(), string(httpapi.CodeOf(c)))
	}
}

func quantityOr1(q *int) int {
	if q == nil {
		return 1
	}
	return *q
}

// purchaseLines checks each line as a purchase of its sale would be, in order
// (the first failing line decides the answer), then admits them under one ticket.
func (s *Server) purchaseLines(c *gin.Context, lines []flashsale.Line) {
	ctx := flashsale.WithStage(c.Request.Context(), "admission")
	user := userOf(c)
	now := s.cfg.Now()
	bundle := len(lines) > 1
	sales := make([]*flashsale.Sale, len(lines))
	var live *flashsale.Ticket // the first line's live ticket answered without a claim
	for i, l := range lines {
		sale, held, leave, err := s.checkLine(ctx, user, l, bundle, now)
		if leave != nil {
			defer leave() // once answered (see userBudget.Take)
		}
		if err != nil {
			s.WriteError(c, lineError(err, l, bundle))
			return
		}
		sales[i] = sale
		if live == nil {
			live = held
		}
	}
	if live != nil {
		c.JSON(http.StatusOK, ticketAnswer{TicketID: live.ID, Status: live.Status})
		return
	}
	ticket, fresh, err := s.admit(ctx, user, sales, lines, now)
	if err != nil {
		s.WriteError(c, err)
		return
	}
	code := http.StatusOK
	if fresh {
		code = http.StatusAccepted
	}
	c.JSON(code, ticketAnswer{TicketID: ticket.ID, Status: ticket.Status})
}

// checkLine checks one line as a purchase of its sale: the sale exists, is open
// by this server's clock, the quantity fits its per-user limit, the user
// qualifies and is not blocked, the sale is not remembered sold out, and the
// user's budget and this node's window for the sale have room. It returns the
// sale, or, for a purchase answered without a claim (sold out remembered, or
// the user over their budget), the user's live ticket there (200) when they
// have one. A line that took a token of the user's budget comes with leave,
// to be called once the request is answered.
func (s *Server) checkLine(ctx context.Context, user string, l flashsale.Line, bundle bool, now time.Time) (_ *flashsale.Sale, _ *flashsale.Ticket, leave func(), _ error) {
	sale, err := s.cfg.Sales.Get(ctx, l.SaleID)
	if err != nil {
		return nil, nil, nil, err
	}
	switch {
	case now.Before(sale.StartsAt):
		return nil, nil, nil, flashsale.ErrNotStarted
	case !now.Before(sale.EndsAt):
		return nil, nil, nil, flashsale.ErrEnded
	}
	if l.Quantity < 1 || l.Quantity > sale.PerUserLimit {
		return nil, nil, nil, flashsale.Errorf(flashsale.CodeInvalidQuantity, "quantity must be between 1 and %d", sale.PerUserLimit)
	}
	// A bundle's lines are held under one ticket id in each sale; the mysql
	// inventory keys its holds by ticket alone, so it sells one sale at a time.
	if bundle && sale.Inventory == flashsale.InventoryMySQL {
		return nil, nil, nil, flashsale.Errorf(flashsale.CodeInvalid, "inventory mysql sales are bought one at a time, not in a bundle")
	}
	if err := s.checkQualified(ctx, sale, user); err != nil {
		return nil, nil, nil, err
	}
	if err := s.checkBlocked(ctx, user, now); err != nil {
		return nil, nil, nil, err
	}
	// A sale this node just saw sold out is answered without a claim and
	// without spending its window (see soldOutMemory).
	var h holding
	var herr error
	read := false
	if s.soldOut.known(sale.ID, now) {
		h, herr = s.holdingOf(ctx, sale.ID, user)
		read = true
		if herr == nil {
			if h.ticket != nil {
				return sale, h.ticket, nil, nil
			}
			if err := soldOutAnswer(h, sale, l.Quantity); err != nil {
				return nil, nil, nil, err
			}
		}
	}
	// A user over their budget neither spends a slot of the sale's window nor
	// reaches the claim: they are answered their live ticket (200), read
	// without a claim once their requests in flight here that had budget are
	// answered (a double click's burst), or 429 as if the window were full.
	// So hammering the button can neither take the others' slots nor skip
	// the window to be admitted (see userBudget). A bundle does not wait: two
	// bundles of one user naming the same sales in another order could wait
	// for each other.
	leave, idle, ok := s.budget.Take(sale.ID, user, now)
	if !ok {
		if idle != nil && !bundle {
			select {
			case <-idle:
				read = false // what they made
			case <-ctx.Done():
				return nil, nil, nil, ctx.Err()
			}
		}
		if !read {
			h, herr = s.holdingOf(ctx, sale.ID, user)
		}
		if herr == nil && h.ticket != nil {
			return sale, h.ticket, nil, nil
		}
		return nil, nil, nil, flashsale.ErrRateLimited
	}
	if !s.limiter.Allow(sale.ID, now) {
		return nil, nil, leave, flashsale.ErrRateLimited
	}
	return sale, nil, leave, nil
}

// lineError names the line's sale in the message of a bundle's coded error.
func lineError(err error, l flashsale.Line, bundle bool) error {
	var fe *flashsale.Error
	if !bundle || !errors.As(err, &fe) {
		return err
	}
	if fe.Code == flashsale.CodeNotFound {
		return flashsale.Errorf(fe.Code, "no sale %q", l.SaleID)
	}
	return flashsale.Errorf(fe.Code, "sale %q: %s", l.SaleID, fe.Message)
}

// admit claims the user's live ticket in each line's sale and queues the
// ticket. It returns the new queued ticket (fresh), or the user's existing live
// ticket in the first sale that has one, with its current status. Whatever was
// claimed is undone when a later line is refused. The ticket's id is the one
// the first line's claim mints (see flashsale.TicketClaim): a purchase retried
// while its ticket is still queued gets the same ticket, even after Redis lost
// the claim.
func (s *Server) admit(ctx context.Context, user string, sales []*flashsale.Sale, lines []flashsale.Line, now time.Time) (t *flashsale.Ticket, fresh bool, err error) {
	ticket := &flashsale.Ticket{UserID: user, Status: flashsale.TicketQueued}
	ticket.SetLines(lines)
	want := flashsale.TicketClaim{Nonce: uuid.NewString()}
	for _, sale := range sales {
		want.Sales = append(want.Sales, sale.ID)
	}
	bundle := len(lines) > 1
	unclaim := func(n int) {
		bg := context.WithoutCancel(ctx)
		for _, sale := range sales[:n] {
			if err := s.cfg.Stock.Unclaim(bg, flashsale.Part{SaleID: sale.ID, TicketID: ticket.ID, UserID: user}); err != nil {
				s.log.Error("cannot undo a claim; it goes stale and is replaced on retry", "ticket", ticket.ID, "sale", sale.ID, "err", err)
			}
		}
	}
	loads := make([]int64, len(sales))
	for i, sale := range sales {
		want.ID = ticket.ID
		outcome, existing, load, err := s.claim(ctx, sale, user, want, ticket, lines[i].Quantity)
		loads[i] = load
		if err != nil {
			unclaim(i)
			return nil, false, err
		}
		switch outcome {
		case flashsale.Claimed:
			ticket.ID = existing.ID
			continue
		case flashsale.Existing:
			unclaim(i)
			return existing, false, nil
		case flashsale.LimitReached:
			unclaim(i)
			return nil, false, lineError(flashsale.ErrLimitReached, lines[i], bundle)
		default:
			s.soldOut.remember(sale.ID, now)
			unclaim(i)
			return nil, false, lineError(flashsale.ErrSoldOut, lines[i], bundle)
		}
	}
	// undo leaves nothing behind of a request answered 503: its decision
	// first, in MySQL (a publish that reached the broker after all then makes
	// no order; a claim that cannot be undone now because Redis is away is
	// freed by the user's next purchase, see claim), then its claims.
	undo := func() (stands bool) {
		if s.giveUp(ctx, ticket) {
			return true // queued after all, and already ordered
		}
		unclaim(len(sales))
		return false
	}
	req := &flashsale.PurchaseRequest{TicketID: ticket.ID, SaleID: ticket.SaleID, UserID: user, Quantity: ticket.Quantity,
		AdmittedAt: now.UTC(), Loads: loads}
	if bundle {
		req.Items = lines
	}
	if err := s.queuer.enqueue(req, ticket); err != nil && !undo() {
		return nil, false, unavailable(err)
	}
	return ticket, true, nil
}

// claim claims the user's slot in one sale for the ticket want names (t is
// the ticket being admitted: its id once a line minted it). With Claimed it
// returns the ticket's id (in a Ticket); with Existing the user's live ticket
// there: its fast copy, else its decision in MySQL, else its id with the
// status queued (its publish was confirmed: the claim is marked published;
// the copy was lost with Redis). A live claim whose publish is not confirmed
// (Unconfirmed) is being queued right now (a double click) or was left by an
// ingress that died between claim and publish, which nobody was told of: its
// id is not handed out until its copy is written (waited for up to the
// publish timeout); without one the answer is 503, the user retries, and an
// orphaned claim goes stale and is replaced, by the same ticket id (the
// stock store's ClaimStale). An existing claim whose ticket is final in MySQL
// (its publish failed and its claim could not be undone then, Redis away) is
// freed and the slot claimed again.
func (s *Server) claim(ctx context.Context, sale *flashsale.Sale, user string, want flashsale.TicketClaim, t *flashsale.Ticket, qty int) (flashsale.ClaimOutcome, *flashsale.Ticket, int64, error) {
	outcome, existing, load, err := s.cfg.Stock.Claim(ctx, sale, user, want, qty)
	if err != nil {
		return 0, nil, 0, s.claimFailed(ctx, t, err)
	}
	switch outcome {
	case flashsale.Claimed:
		return outcome, &flashsale.Ticket{ID: existing}, load, nil
	case flashsale.Existing:
	case flashsale.Unconfirmed:
		if cp := s.awaitCopy(ctx, existing); cp != nil {
			return flashsale.Existing, cp, 0, nil
		}
		return 0, nil, 0, flashsale.Unavailable(errors.New("the user's live ticket is not confirmed: still being queued, or its ingress died"),
			"your previous purchase is not confirmed yet; retry")
	default:
		return outcome, nil, load, nil
	}
	if cp, err := s.cfg.Stock.GetTicket(ctx, existing); err == nil {
		return outcome, cp, 0, nil
	}
	mt, merr := s.cfg.Orders.GetTicket(ctx, flashsale.TicketRef{User: user, Ticket: existing})
	switch {
	case merr == nil && mt.Status.Live():
		return outcome, mt, 0, nil
	case merr != nil: // still in the queue (or MySQL away): the id is enough
		return outcome, &flashsale.Ticket{ID: existing, Status: flashsale.TicketQueued}, 0, nil
	}
	// Final in MySQL: free the claim (its id is never minted again) and
	// claim again.
	if err := s.cfg.Stock.Unclaim(ctx, flashsale.Part{SaleID: sale.ID, TicketID: existing, UserID: user}); err != nil {
		return 0, nil, 0, flashsale.Unavailable(err, "the purchase could not be queued; nothing was kept, retry")
	}
	if outcome, existing, load, err = s.cfg.Stock.Claim(ctx, sale, user, want, qty); err != nil {
		return 0, nil, 0, s.claimFailed(ctx, t, err)
	}
	switch outcome {
	case flashsale.Existing, flashsale.Unconfirmed:
		return flashsale.Existing, &flashsale.Ticket{ID: existing, Status: flashsale.TicketQueued}, load, nil
	case flashsale.Claimed:
		return outcome, &flashsale.Ticket{ID: existing}, load, nil
	}
	return outcome, nil, load, nil
}

// awaitCopy returns the fast copy of a ticket being queued by another
// request, waiting for it up to the publish timeout; nil when none comes.
func (s *Server) awaitCopy(ctx context.Context, id string) *flashsale.Ticket {
	if cp, err := s.cfg.Stock.GetTicket(ctx, id); err == nil {
		return cp
	}
	ctx, cancel := context.WithTimeout(ctx, s.cfg.PublishTimeout)
	defer cancel()
	tick := time.NewTicker(25 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
		}
		if cp, err := s.cfg.Stock.GetTicket(ctx, id); err == nil {
			return cp
		}
	}
}

// claimFailed answers a claim of ticket t that failed on Redis. A claim that
// reached Redis may still run once Redis answers again (it was frozen, not
// gone): a ticket whose id is known (a bundle's later line) is recorded given
// up, so that such a claim is freed by the user's next purchase. A first
// line's claim that runs late leaves a claim nobody publishes, which goes
// stale and is claimed again under the same id (see claim). One that could not
// even connect never ran, and costs MySQL nothing.
func (s *Server) claimFailed(ctx context.Context, t *flashsale.Ticket, err error) error {
	var ne *net.OpError
	if t.ID != "" && (!errors.As(err, &ne) || ne.Op != "dial") {
		s.giveUp(ctx, t)
	}
	return unavailable(err)
}

// giveUp records in MySQL that ticket t, about to be answered 503, makes no
// order (the 503 and its cause are logged where it is answered); it reports
// whether the ticket made its order first (its publish reached the broker after
// all and a worker was quicker).
func (s *Server) giveUp(ctx context.Context, t *flashsale.Ticket) (ordered bool) {
	s.log.Info("purchase not queued; recording its ticket failed", "ticket", t.ID)
	gave := *t
	gave.Status = flashsale.TicketFailed
	ordered, err := s.cfg.Orders.GiveUp(context.WithoutCancel(ctx), &gave)
	if err != nil {
		s.log.Error("cannot record a purchase that was not queued as failed", "ticket", t.ID, "err", err)
	}
	return ordered
}

// unavailable is a purchase's 503: nothing of it was kept.
func unavailable(cause error) error {
	return flashsale.Unavailable(cause, "the purchase could not be queued; nothing was kept, retry")
}

// queuedGrace is how long after its id was minted a ticket found neither in
// Redis nor in MySQL may still be queued with its fast copy lost (Redis flushed,
// restarted or failed over): such a ticket answers 503, not 404.
const queuedGrace = 10 * time.Minute

// getTicket answers from the fast copy, falling back to MySQL when it is lost.
// Someone else's ticket is 404, as if it did not exist. A ticket in neither
// place that may still be queued (Redis unreachable, or an id minted within
// queuedGrace) is 503: the user retries, instead of being told it never existed.
func (s *Server) getTicket(c *gin.Context) {
	ctx, user, id := c.Request.Context(), userOf(c), c.Param("id")
	t, err := s.cfg.Stock.GetTicket(ctx, id)
	if err != nil { // lost or unreachable fast copy: MySQL has every ticket past queued
		copyErr := err
		t, err = s.cfg.Orders.GetTicket(ctx, flashsale.TicketRef{User: user, Ticket: id})
		if errors.Is(err, flashsale.ErrNotFound) {
			c.Set(missedKey, true) // a miss, whatever the answer (see lookupBudget)
		}
		if errors.Is(err, flashsale.ErrNotFound) && (!errors.Is(copyErr, flashsale.ErrNotFound) || mayBeQueued(id, user, time.Now())) {
			fe := &flashsale.Error{Code: flashsale.CodeUnavailable,
				Message: "the ticket cannot be read right now (it may still be queued); retry"}
			if errors.Is(copyErr, flashsale.ErrNotFound) {
				// Both stores answered: no failure to log at WARN (any
				// fresh id a client makes up lands here).
				s.log.Debug("a ticket in neither store may still be queued; answering 503", "ticket", id)
			} else {
				fe.Cause = copyErr // Redis unreachable: logged with the 503
			}
			err = fe
		}
	}
	if err == nil && t.UserID != user {
		err = flashsale.Errorf(flashsale.CodeNotFound, "no ticket %q", id)
	}
	if err != nil {
		s.WriteError(c, err)
		return
	}
	v := *t
	v.SetLines(t.Lines())
	if t.Status != flashsale.TicketPendingPayment {
		v.PayBy = nil
	}
	c.JSON(http.StatusOK, v)
}

// mayBeQueued reports whether id, found neither in Redis nor in MySQL, may be
// one of user's tickets still queued whose fast copy was lost: a ticket id
// minted for user (flashsale.MintedFor), or a UUIDv7 (what tickets were
// before ids were minted) minted within queuedGrace.
func mayBeQueued(id, user string, now time.Time) bool {
	return flashsale.MintedFor(id, user) || mintedWithin(id, queuedGrace, now)
}

// mintedWithin reports whether id is a UUIDv7 (what tickets are) whose time is
// within d before now.
func mintedWithin(id string, d time.Duration, now time.Time) bool {
	u, err := uuid.Parse(id)
	if err != nil || u.Version() != 7 {
		return false
	}
	sec, nsec := u.Time().UnixTime()
	age := now.Sub(time.Unix(sec, nsec))
	return age >= -time.Minute && age <= d
}
