package bench

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net/http"
	"time"

	"github.com/flashsale/flashsale/api/apiclient"
)

// Ticket statuses of the contract.
const (
	statusQueued         = "queued"
	statusWaiting        = "waiting" // in a waiting room's line
	statusPendingPayment = "pending_payment"
	statusPaid           = "paid"
	statusExpired        = "expired"
	statusCancelled      = "cancelled"
	statusSoldOut        = "sold_out"
	statusFailed         = "failed"
)

// terminalStatus reports a status a ticket never leaves.
func terminalStatus(s string) bool {
	switch s {
	case statusPaid, statusExpired, statusCancelled, statusSoldOut, statusFailed:
		return true
	}
	return false
}

// undecided reports a status the ticket leaves once the pipeline decided it:
// queued, or waiting in a waiting room's line ("" when not read yet).
func undecided(s string) bool {
	return s == "" || s == statusQueued || s == statusWaiting
}

// hasOrder reports a status that implies the ticket made an order.
func hasOrder(s string) bool {
	switch s {
	case statusPendingPayment, statusPaid, statusExpired, statusCancelled:
		return true
	}
	return false
}

// What a user does with an order once it exists.
const (
	intentPay    = "pay"
	intentCancel = "cancel"
	intentExpire = "expire"
)

// Outcomes of a user's purchase attempt, other than getting a ticket.
const (
	outcomeTicket       = "ticket"
	outcomeSoldOut      = "rejected_sold_out"
	outcomeNotStarted   = "not_started"
	outcomeEnded        = "ended"
	outcomeNotQualified = "not_qualified"
	outcomeLimitReached = "limit_reached"
	outcomeInvalidQty   = "invalid_quantity"
	outcomeNotReserved  = "not_reserved"
	outcomeGaveUp       = "gave_up"
	outcomeError        = "error"
)

// Retry bounds of one user.
const (
	maxPurchaseAttempts = 1000
	maxTransientErrors  = 20
	maxActionAttempts   = 6
	maxPollNotFound     = 20
	pollStart           = 50 * time.Millisecond
	pollCap             = 500 * time.Millisecond
	backoffStart        = 25 * time.Millisecond
	backoffCap          = 2 * time.Second
)

// simUser is one simulated user. Only its own goroutine touches it while the load
// runs; the verification reads it afterwards.
type simUser struct {
	n        int
	id       string
	rng      *rand.Rand
	reserved bool
	bundle   bool // buys one unit of each sale with POST /api/v1/purchases
	outcome  string
	detail   string // what went wrong, for outcomeError / outcomeGaveUp
	ticket   *ticketTrack
}

// ticketTrack is what the bench knows about one ticket it was given.
type ticketTrack struct {
	userID      string
	id          string
	accepted202 bool // the purchase answered 202 (not 200 for a live ticket)
	acceptedAt  time.Time
	resolvedAt  time.Time
	status      string
	orderID     string
	quantity    int
	payBy       time.Time // server clock
	createdAt   time.Time // the order's created_at (server clock); zero until read
	intent      string
	action      string // result of the pay/cancel action
	verified    bool   // status confirmed by the final verification
	bundle      bool   // a bundle ticket: one unit of each sale
	items       []apiclient.Line
	orderItems  []apiclient.OrderItem // the order's items, once read (bundles)
	orderRead   bool
}

// unitsIn is the units the ticket asks for in the first sale (second false) or
// in the second sale of the bundles (second true).
func (t *ticketTrack) unitsIn(second bool) int64 {
	switch {
	case t.bundle:
		return 1
	case second:
		return 0
	}
	return int64(t.quantity)
}

// noteOrder keeps what an order read tells about the ticket.
func (t *ticketTrack) noteOrder(ov apiclient.Order) {
	t.createdAt = ov.CreatedAt
	t.orderItems = append([]apiclient.OrderItem(nil), ov.Items...)
	t.orderRead = true
}

// jitter spreads d over [d/2, 3d/2).
func (u *simUser) jitter(d time.Duration) time.Duration {
	if d <= 0 {
		return 0
	}
	return d/2 + time.Duration(u.rng.Int64N(int64(d)))
}

// backoff returns the attempt-th exponential backoff delay (attempt counts from 1).
func backoff(attempt int) time.Duration {
	d := backoffStart
	for i := 1; i < attempt && d < backoffCap; i++ {
		d *= 2
	}
	return min(d, backoffCap)
}

// sleepCtx sleeps for d or until ctx is done; it reports whether it slept fully.
func sleepCtx(ctx context.Context, d time.Duration) bool {
	if d <= 0 {
		return ctx.Err() == nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

// simulate runs one user's whole journey.
func (r *run) simulate(ctx context.Context, u *simUser) {
	if r.cfg.Reservation {
		r.reserve(ctx, u)
		r.prog.add(phaseReserve, 1)
	}
	defer r.prog.add(phasePurchase, 1)
	select {
	case <-r.opened:
	case <-ctx.Done():
		if u.outcome == "" {
			u.outcome, u.detail = outcomeGaveUp, "run ended before the sale opened"
		}
		return
	}
	if r.cfg.Reservation && !u.reserved {
		if u.outcome == "" {
			u.outcome = outcomeNotReserved
		}
		return
	}
	// Arrive: burst users at the opening, ramp users spread over --ramp,
	// waiting-room users over the room's window (see roomArrival).
	var arrive time.Time
	switch r.cfg.Arrival {
	case arrivalRamp:
		arrive = r.local(r.sched.startsAt).Add(time.Duration(int64(r.cfg.Ramp) * int64(u.n) / int64(r.cfg.Users)))
	case arrivalWaitingRoom, arrivalEarly:
		arrive = r.local(r.sched.roomOpensAt).Add(roomArrival(r.cfg.roomWindow(), u.n, r.cfg.Users))
	}
	if !arrive.IsZero() && !sleepCtx(ctx, time.Until(arrive)) {
		u.outcome, u.detail = outcomeGaveUp, "run ended before arrival"
		return
	}
	t := r.purchase(ctx, u)
	if r.preload != nil {
		r.preload.answered.Add(1)
	}
	if t == nil {
		return
	}
	u.outcome = outcomeTicket
	u.ticket = t
	if r.preload != nil && !r.preload.waitWorkers(ctx) {
		return
	}
	if !r.followTicket(ctx, u, t) {
		return
	}
	if r.preload != nil {
		r.preload.final(time.Now())
	}
	if t.status != statusPendingPayment {
		return
	}
	r.act(ctx, u, t)
}

// reserve qualifies the user during the reservation window, in each sale the
// user buys from (both, for a bundle buyer).
func (r *run) reserve(ctx context.Context, u *simUser) {
	if !sleepCtx(ctx, time.Until(r.local(r.sched.opensAt))) {
		u.outcome, u.detail = outcomeGaveUp, "run ended before the reservation window"
		return
	}
	sales := []string{r.saleID}
	if u.bundle {
		sales = append(sales, r.saleB)
	}
	for _, id := range sales {
		if !r.reserveIn(ctx, u, id) {
			return
		}
	}
	u.reserved = true
}

// reserveIn reserves in one sale; on failure it sets the user's outcome and
// reports false.
func (r *run) reserveIn(ctx context.Context, u *simUser, saleID string) bool {
	transient := 0
	for attempt := 1; attempt <= maxPurchaseAttempts; attempt++ {
		resp, err := r.users.reserve(ctx, saleID, u.id)
		if ctx.Err() != nil {
			u.outcome, u.detail = outcomeGaveUp, "run ended while reserving"
			return false
		}
		if err != nil {
			transient++
			if transient > maxTransientErrors {
				u.outcome, u.detail = outcomeError, "reserve: "+err.Error()
				return false
			}
			sleepCtx(ctx, u.jitter(backoff(transient)))
			continue
		}
		switch {
		case resp.Status == http.StatusCreated || resp.Status == http.StatusOK:
			return true
		case resp.Status == http.StatusTooManyRequests:
			r.rec.count("reserve_retry_429", 1)
			sleepCtx(ctx, r.retryDelay(u, resp, attempt))
		case resp.Status == http.StatusConflict && resp.Code == "reservation_closed" && r.serverNow().Before(r.sched.closesAt):
			// Our clock runs ahead of the server's: the window is about to open.
			sleepCtx(ctx, u.jitter(50*time.Millisecond))
		case resp.Status >= 500:
			transient++
			r.rec.count("reserve_retry_5xx", 1)
			if transient > maxTransientErrors {
				u.outcome, u.detail = outcomeError, "reserve: "+resp.key()
				return false
			}
			sleepCtx(ctx, u.jitter(backoff(transient)))
		default:
			u.outcome, u.detail = outcomeNotReserved, "reserve: "+resp.key()
			return false
		}
	}
	u.outcome, u.detail = outcomeGaveUp, "reserve: too many attempts"
	return false
}

// retryDelay is how long to wait after a 429: never less than Retry-After (the
// server sends whole seconds), plus a random share of up to half of it again, so
// that the users rejected in one instant do not all come back in one instant; with
// no Retry-After, jittered exponential backoff.
func (r *run) retryDelay(u *simUser, resp *apiResponse, attempt int) time.Duration {
	return retryAfterDelay(u.rng, resp, attempt)
}

// earlyRetry is how long a user of --arrival early waits after a 409
// not_started: the answer's Retry-After, at least a second, plus up to a
// quarter of a second at random (users do not press in step).
func earlyRetry(rng *rand.Rand, resp *apiResponse) time.Duration {
	d := time.Second
	if resp.HasRetryAfter {
		d = max(d, resp.RetryAfter)
	}
	return d + time.Duration(rng.Int64N(int64(time.Second/4)))
}

func retryAfterDelay(rng *rand.Rand, resp *apiResponse, attempt int) time.Duration {
	if resp.HasRetryAfter {
		ra := max(resp.RetryAfter, 5*time.Millisecond)
		return ra + time.Duration(rng.Int64N(int64(ra)/2+1))
	}
	d := backoff(attempt)
	return d/2 + time.Duration(rng.Int64N(int64(d)))
}

// purchase asks for one unit until the server gives a ticket or a final "no".
func (r *run) purchase(ctx context.Context, u *simUser) *ticketTrack {
	transient := 0
	for attempt := 1; attempt <= maxPurchaseAttempts; attempt++ {
		var tv apiclient.PurchaseAnswer
		var resp *apiResponse
		var err error
		if u.bundle {
			one := 1
			tv, resp, err = r.users.purchaseBundle(ctx, u.id, []apiclient.BundleItem{{SaleId: r.saleID, Quantity: &one}, {SaleId: r.saleB, Quantity: &one}})
		} else {
			tv, resp, err = r.users.purchase(ctx, r.saleID, u.id, 1)
		}
		now := time.Now()
		if ctx.Err() != nil {
			u.outcome, u.detail = outcomeGaveUp, "run ended while purchasing"
			return nil
		}
		if err != nil && resp == nil {
			// The request may or may not have been queued; a retry is safe because a
			// live ticket is answered with 200 and the same ticket id.
			transient++
			r.rec.count("purchase_retry_network", 1)
			if transient > maxTransientErrors {
				u.outcome, u.detail = outcomeError, "purchase: "+err.Error()
				return nil
			}
			sleepCtx(ctx, u.jitter(backoff(transient)))
			continue
		}
		switch resp.Status {
		case http.StatusAccepted, http.StatusOK:
			if err != nil || tv.TicketId == "" {
				u.outcome, u.detail = outcomeError, fmt.Sprintf("purchase: %d without a ticket id", resp.Status)
				return nil
			}
			t := &ticketTrack{userID: u.id, id: tv.TicketId, acceptedAt: now, status: string(tv.Status), quantity: 1, bundle: u.bundle}
			if resp.Status == http.StatusAccepted {
				t.accepted202 = true
				r.rec.acceptedAt(now)
			} else {
				r.rec.count("purchase_200_live_ticket", 1)
			}
			return t
		case http.StatusTooManyRequests:
			r.rec.count("purchase_retry_429", 1)
			sleepCtx(ctx, r.retryDelay(u, resp, attempt))
		case http.StatusServiceUnavailable:
			transient++
			r.rec.count("purchase_retry_503", 1)
			if transient > maxTransientErrors {
				u.outcome, u.detail = outcomeGaveUp, "purchase: too many 503"
				return nil
			}
			sleepCtx(ctx, u.jitter(backoff(transient)))
		case http.StatusConflict:
			switch resp.Code {
			case "not_started":
				r.rec.count("purchase_retry_not_started", 1)
				if r.cfg.Arrival == arrivalEarly && r.serverNow().Before(r.sched.startsAt) {
					// Arrived early: press buy again in a second (or at the
					// answer's Retry-After), until the sale opens.
					sleepCtx(ctx, earlyRetry(u.rng, resp))
					break
				}
				// Clock skew: the sale opens in a moment.
				sleepCtx(ctx, u.jitter(40*time.Millisecond))
			case "sold_out":
				u.outcome = outcomeSoldOut
				return nil
			case "ended":
				u.outcome = outcomeEnded
				return nil
			case "limit_reached":
				u.outcome = outcomeLimitReached
				return nil
			default:
				u.outcome, u.detail = outcomeError, "purchase: "+resp.key()
				return nil
			}
		case http.StatusForbidden:
			u.outcome = outcomeNotQualified
			return nil
		case http.StatusUnprocessableEntity:
			u.outcome = outcomeInvalidQty
			return nil
		default:
			if resp.Status >= 500 {
				transient++
				r.rec.count("purchase_retry_5xx", 1)
				if transient <= maxTransientErrors {
					sleepCtx(ctx, u.jitter(backoff(transient)))
					continue
				}
			}
			u.outcome, u.detail = outcomeError, "purchase: "+resp.key()
			return nil
		}
	}
	u.outcome, u.detail = outcomeGaveUp, "purchase: too many attempts"
	return nil
}

// apply copies a ticket answer into t.
func (t *ticketTrack) apply(tv apiclient.Ticket) {
	if tv.Status != "" {
		t.status = string(tv.Status)
	}
	if tv.OrderId != nil && *tv.OrderId != "" {
		t.orderID = *tv.OrderId
	}
	if tv.Quantity != nil && *tv.Quantity > 0 {
		t.quantity = *tv.Quantity
	}
	if len(tv.Items) > 0 {
		t.items = append([]apiclient.Line(nil), tv.Items...)
	}
	if tv.PayBy != nil {
		t.payBy = *tv.PayBy
	}
}

// pollTicket polls the ticket until it leaves "queued", each poll after the
// poll_after_ms of the answer before (see nextPoll). It reports whether the
// ticket was resolved.
func (r *run) pollTicket(ctx context.Context, u *simUser, t *ticketTrack) bool {
	delay := pollStart
	notFound, transient := 0, 0
	for {
		// The first look comes pollStart after the 202: a ticket is never final at once.
		if !sleepCtx(ctx, u.jitter(delay)) {
			u.detail = "run ended while the ticket was queued"
			return false
		}
		tv, resp, err := r.users.getTicket(ctx, u.id, t.id)
		r.rec.count("ticket_polls", 1)
		delay = nextPoll(resp, delay)
		now := time.Now()
		if ctx.Err() != nil {
			u.detail = "run ended while the ticket was queued"
			return false
		}
		switch {
		case err == nil && resp.Status == http.StatusOK:
			t.apply(tv)
			if undecided(t.status) {
				continue
			}
			t.resolvedAt = now
			r.rec.resolved(t.acceptedAt, now, hasOrder(t.status))
			return true
		case resp != nil && resp.Status == http.StatusNotFound:
			// A ticket just accepted may take a moment to be readable.
			notFound++
			if notFound > maxPollNotFound {
				u.detail = "ticket: 404 not_found"
				return false
			}
		default:
			transient++
			if transient > maxTransientErrors {
				u.detail = "ticket: too many errors"
				return false
			}
		}
	}
}

// act pays, cancels or leaves the order to expire, according to the run's ratios.
func (r *run) act(ctx context.Context, u *simUser, t *ticketTrack) {
	k := r.ordersSeen.Add(1)
	if t.orderID == "" {
		// pending_payment without an order_id breaks the contract; nothing to act on.
		t.intent, t.action = intentExpire, "no order_id on the ticket"
		return
	}
	switch {
	case takeShare(k, r.cfg.PayRatio):
		t.intent = intentPay
		t.action = r.payOrder(ctx, u, t)
	case takeShare(r.unpaidSeen.Add(1), r.cfg.CancelRatio):
		t.intent = intentCancel
		t.action = r.cancelOrder(ctx, u, t)
	default:
		t.intent = intentExpire
	}
}

// payOrder reads the order's amount and posts a signed "succeeded" callback for it.
func (r *run) payOrder(ctx context.Context, u *simUser, t *ticketTrack) string {
	var order apiclient.Order
	for attempt := 1; ; attempt++ {
		ov, resp, err := r.users.getOrder(ctx, u.id, t.orderID)
		if err == nil && resp.Status == http.StatusOK {
			order = ov
			t.noteOrder(ov) // spares the verification one read
			break
		}
		if ctx.Err() != nil || attempt >= maxActionAttempts || (resp != nil && !resp.retryable() && resp.Status != http.StatusNotFound) {
			return "get order failed: " + describe(resp, err)
		}
		sleepCtx(ctx, u.jitter(backoff(attempt)))
	}
	cb := apiclient.PaymentNotice{
		PaymentId:   fmt.Sprintf("pay-%s-%d", r.id, u.n),
		OrderId:     t.orderID,
		AmountCents: order.AmountCents,
		Status:      apiclient.PaymentNoticeStatusSucceeded,
	}
	for attempt := 1; ; attempt++ {
		ans, resp, err := r.users.pay(ctx, cb, r.serverNow().Unix())
		if err == nil && resp.Status == http.StatusOK {
			r.rec.count("payment_"+string(ans.Status), 1)
			if ans.Status == statusPaid {
				t.status = statusPaid
			}
			return string(ans.Status)
		}
		if ctx.Err() != nil || attempt >= maxActionAttempts || (resp != nil && !resp.retryable()) {
			r.rec.count("payment_failed", 1)
			return "payment failed: " + describe(resp, err)
		}
		sleepCtx(ctx, u.jitter(backoff(attempt)))
	}
}

// cancelOrder cancels the unpaid order.
func (r *run) cancelOrder(ctx context.Context, u *simUser, t *ticketTrack) string {
	for attempt := 1; ; attempt++ {
		ov, resp, err := r.users.cancelOrder(ctx, u.id, t.orderID)
		if err == nil && resp.Status == http.StatusOK {
			if ov.Status != "" {
				t.status = string(ov.Status)
			}
			return string(ov.Status)
		}
		if ctx.Err() != nil || attempt >= maxActionAttempts || (resp != nil && !resp.retryable()) {
			return "cancel failed: " + describe(resp, err)
		}
		sleepCtx(ctx, u.jitter(backoff(attempt)))
	}
}

// describe renders a failed exchange for a report.
func describe(resp *apiResponse, err error) string {
	switch {
	case err != nil:
		return err.Error()
	case resp != nil:
		return resp.key()
	default:
		return "no response"
	}
}
