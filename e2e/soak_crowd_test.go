package e2e

// The soak's crowd (see TestSoak): users arriving at a steady rate, each one
// a goroutine that buys, waits for its ticket, and pays, cancels or lets the
// order expire, sometimes buying again.

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net/http"
	"sort"
	"strings"
	"sync"
	"time"
)

// Per purchase decided pending_payment, what its user does next.
const (
	soakPPay     = 0.40 // pays within the first 60% of the payment window
	soakPLatePay = 0.05 // pays 1–6 s after pay_by (expired → paid, or refund_required)
	soakPCancel  = 0.15 // cancels within the first 60% of the window
	// the rest lets the order expire, watches it expire, and may buy again

	// soakPLatePair: of the orders decided first in a session, the share
	// whose user lets it expire, buys again at once, lets that one expire too
	// and then pays both at the same moment (concurrent late payments).
	soakPLatePair = 0.06

	soakPDouble    = 0.05 // a purchase sent twice at once (a double click)
	soakPImpatient = 0.30 // users who send their purchase again while its ticket reads queued
	soakPBuyAgain  = 0.40 // after a final status, buys again (up to soakMaxBuys)
	soakMaxBuys    = 4
	soakBuyFor     = 30 * time.Second  // a user retries 503 / no answer this long
	soakDecideFor  = 150 * time.Second // longer than the worker's retry budget (120 s)
	soakTicketPoll = 300 * time.Millisecond
)

// soakRank orders ticket statuses: queued < pending_payment < the rest.
func soakRank(status string) int {
	switch status {
	case "queued":
		return 0
	case "pending_payment":
		return 1
	}
	return 2
}

// crowd starts a user every 1/rate s until end, then waits for the users to
// finish what they started (they buy nothing new once the soak is stopping).
func (s *soak) crowd(rate int, end time.Time) {
	tick := time.NewTicker(time.Second / time.Duration(rate))
	n := 0
	for now := range tick.C {
		if now.After(end) {
			break
		}
		n++
		s.users.Add(1)
		s.sessions.Add(1)
		go s.session(n)
	}
	tick.Stop()
	s.stopping.Store(true)
	s.sessions.Wait()
}

// session is one user's visit.
func (s *soak) session(n int) {
	defer s.sessions.Done()
	rng := rand.New(rand.NewPCG(s.seed, uint64(n)))
	u := fmt.Sprintf("u%06d", n)
	sale := s.sales[rng.IntN(len(s.sales))]
	impatient := rng.Float64() < soakPImpatient
	var first *soakTicket // the expired first order of a late pair, waiting for its second
	defer func() {
		if first != nil { // its second never made an order: paid late alone
			s.pay(first, sale.Price*int64(first.Qty))
		}
	}()
	for buys := 0; buys < soakMaxBuys && !s.stopping.Load(); buys++ {
		if buys > 0 && first == nil {
			time.Sleep(time.Duration(500+rng.IntN(2500)) * time.Millisecond) // the user's pace
		}
		q := 1 + rng.IntN(sale.Limit)
		tk := s.buy(rng, sale, u, q)
		if tk == nil {
			if first == nil && rng.Float64() < 0.3 {
				continue // tries again a little later
			}
			return
		}
		v, ok := s.awaitDecided(rng, impatient, sale, tk)
		if !ok {
			return
		}
		switch {
		case v.Status != "pending_payment", tk == first: // (the latter: answered with its expired first order)
		case first != nil:
			if s.awaitExpired(tk, v) {
				s.payPairLate(sale, first, tk)
				first = nil
			}
		case buys == 0 && rng.Float64() < soakPLatePair:
			if s.awaitExpired(tk, v) {
				first = tk
				continue // buys again at once
			}
		default:
			s.act(rng, sale, tk, v)
		}
		if rng.Float64() >= soakPBuyAgain {
			return
		}
	}
}

// buy purchases until it has an answer that is not 503 or a transport error
// (for soakBuyFor at most) and returns the ticket, or nil (sold out, limit
// reached, gave up).
func (s *soak) buy(rng *rand.Rand, sale *soakSale, u string, q int) *soakTicket {
	// A user retrying with backoff (a load to drive, not a wait for an
	// effect): not through poll, whose pace is fixed.
	deadline := time.Now().Add(soakBuyFor)
	wait := 100 * time.Millisecond
	for {
		var r reply
		var err error
		if rng.Float64() < soakPDouble {
			r, err = s.doubleClick(sale, u, q)
		} else {
			r, err = s.purchaseOnce(sale, u, q)
		}
		switch {
		case err != nil:
			s.mu.Lock()
			s.lostReply[u+"/"+sale.ID] = true
			s.mu.Unlock()
		case r.Status == http.StatusAccepted || r.Status == http.StatusOK:
			return s.noteTicket(sale, u, q, r)
		case r.Status == http.StatusServiceUnavailable:
		case r.Status >= 500:
			s.violate("http-5xx", "purchase by %s of %d in sale %s: %s", u, q, sale.ID, r)
		case r.Status == http.StatusConflict && (r.errCode() == "sold_out" || r.errCode() == "limit_reached"):
			return nil
		default:
			s.violate("purchase-answer", "user %s, sale %s, quantity %d: %s", u, sale.ID, q, r)
			return nil
		}
		if time.Now().After(deadline) {
			s.mu.Lock()
			s.gaveUp++
			s.mu.Unlock()
			return nil
		}
		time.Sleep(wait) // the user's retry pace
		wait = min(2*wait, time.Second)
	}
}

func (s *soak) purchaseOnce(sale *soakSale, u string, q int) (reply, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	r, err := s.c.purchase(ctx, sale.ID, u, q)
	ex := fmt.Sprintf("%s %s q%d: %v", u, sale.ID, q, err)
	if err == nil {
		ex = fmt.Sprintf("%s %s q%d: %s", u, sale.ID, q, r)
	}
	s.purchases.add(outcome(r, err), ex)
	what := outcome(r, err)
	var a purchaseAnswer
	if err == nil && (r.Status == http.StatusAccepted || r.Status == http.StatusOK) && r.decode(&a) == nil {
		what += " " + a.TicketID + " " + a.Status
	}
	s.mu.Lock()
	if h := s.history[u+"/"+sale.ID]; len(h) < 40 {
		s.history[u+"/"+sale.ID] = append(h, fmt.Sprintf("%.2fs q%d: %s", s.elapsed(), q, what))
	}
	s.mu.Unlock()
	return r, err
}

// doubleClick sends the same purchase twice at once: both answers must name
// the same ticket when both carry one (never a second live ticket), unless
// the ticket answered first had stopped being live before the other answer
// came (refused by its hold in the meantime, say, on a sale with a unit given
// back): two tickets are recorded and judged at the end like a purchase sent
// again (judgeSeconds), so "live" means the same in both checks.
func (s *soak) doubleClick(sale *soakSale, u string, q int) (reply, error) {
	s.mu.Lock()
	s.doubles++
	s.mu.Unlock()
	type res struct {
		r   reply
		err error
		at  time.Time
	}
	ch := make(chan res, 1)
	go func() {
		r, err := s.purchaseOnce(sale, u, q)
		ch <- res{r, err, time.Now()}
	}()
	r1, err1 := s.purchaseOnce(sale, u, q)
	at1 := time.Now()
	o := <-ch
	ok := func(r reply, err error) bool {
		return err == nil && (r.Status == http.StatusAccepted || r.Status == http.StatusOK)
	}
	if ok(r1, err1) && ok(o.r, o.err) {
		var a, b purchaseAnswer
		if r1.decode(&a) == nil && o.r.decode(&b) == nil && a.TicketID != b.TicketID {
			first, second, at := r1, o.r, o.at
			if o.at.Before(at1) {
				first, second, at = o.r, r1, at1
			}
			firstTk := s.noteTicket(sale, u, q, first)
			hold := ""
			if firstTk != nil {
				hold = s.holdState(firstTk)
			}
			if secondTk := s.noteTicket(sale, u, q, second); firstTk != nil && secondTk != nil {
				s.mu.Lock()
				s.doubleTickets++
				s.seconds = append(s.seconds, soakSecond{First: firstTk, Second: secondTk, At: at,
					Answer: "(a double click) " + second.String(), FirstHold: hold})
				s.mu.Unlock()
			}
		}
	}
	if ok(r1, err1) || !ok(o.r, o.err) {
		return r1, err1
	}
	return o.r, o.err
}

// noteTicket records a ticket from a 202 or 200 answer and returns it.
func (s *soak) noteTicket(sale *soakSale, u string, q int, r reply) *soakTicket {
	var a purchaseAnswer
	if err := r.decode(&a); err != nil || a.TicketID == "" {
		s.violate("purchase-answer", "user %s, sale %s: %s without a ticket", u, sale.ID, r)
		return nil
	}
	if r.Status == http.StatusAccepted && a.Status != "queued" {
		s.violate("purchase-answer", "user %s, sale %s: 202 %s, want status queued", u, sale.ID, r)
	}
	if r.Status == http.StatusOK && a.Status != "queued" && a.Status != "pending_payment" {
		s.violate("purchase-answer", "user %s, sale %s: %s: a ticket that is not live (want queued or pending_payment)", u, sale.ID, r)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if tk, ok := s.tickets[a.TicketID]; ok {
		if tk.User != u || tk.Sale != sale.ID {
			s.mu.Unlock()
			s.violate("purchase-answer", "ticket %s given to %s/%s and to %s/%s", a.TicketID, tk.User, tk.Sale, u, sale.ID)
			s.mu.Lock()
		}
		if tk.final != "" { // the user saw it final: it is no live ticket of theirs
			final, last := tk.final, tk.last
			s.mu.Unlock()
			s.violate("final-ticket-answered", "user %s, sale %s: a purchase answered %s, naming a ticket they saw %s (last read: %s)\n%s",
				u, sale.ID, r, final, last, s.evidence(tk, 8))
			s.mu.Lock()
		}
		return tk
	}
	after := "none"
	if n := len(s.faultLog); n > 0 {
		after = s.faultLog[n-1]
	}
	tk := &soakTicket{ID: a.TicketID, User: u, Sale: sale.ID, Qty: q, At: time.Now(), After: after, Via: r.Status, last: "queued"}
	s.tickets[tk.ID] = tk
	s.ticketList = append(s.ticketList, tk)
	return tk
}

// readTicket reads the ticket as its owner and checks what it may check at
// any moment: never 404 (it was accepted), the view names the ticket, sale
// and a known status. It returns the view when the answer was 200.
func (s *soak) readTicket(tk *soakTicket) (ticketView, bool) {
	ctx, cancel := ctx5()
	defer cancel()
	r, err := s.c.send(ctx, http.MethodGet, pathTicket(tk.ID), user(tk.User), nil)
	// 503 during a fault; 429 when the user's lookups missed too often (a
	// ticket whose copy Redis lost, still queued, misses each time).
	if err != nil || r.Status == http.StatusServiceUnavailable || r.Status == http.StatusTooManyRequests {
		return ticketView{}, false
	}
	if r.Status >= 500 {
		s.violate("http-5xx", "GET ticket %s of %s: %s", tk.ID, tk.User, r)
		return ticketView{}, false
	}
	if r.Status == http.StatusNotFound {
		s.mu.Lock()
		first := !tk.lost
		tk.lost = true
		s.mu.Unlock()
		if first {
			s.violate("ticket-404", "accepted ticket %s of %s (sale %s, accepted %.2fs; last fault before: %s) answered %s",
				tk.ID, tk.User, tk.Sale, tk.At.Sub(s.start).Seconds(), tk.After, r)
		}
		return ticketView{}, false
	}
	var v ticketView
	if r.Status != http.StatusOK || r.decode(&v) != nil {
		s.violate("ticket-answer", "ticket %s of %s: %s", tk.ID, tk.User, r)
		return ticketView{}, false
	}
	if v.TicketID != tk.ID || v.SaleID != tk.Sale || !ticketStatuses[v.Status] {
		s.violate("ticket-answer", "ticket %s of %s (sale %s): %s", tk.ID, tk.User, tk.Sale, r)
	}
	if v.Status == "pending_payment" && v.PayBy == nil {
		s.violate("ticket-answer", "ticket %s pending_payment without pay_by: %s", tk.ID, r)
	}
	s.observe(tk, v)
	return v, true
}

// observe notes the status seen; a ticket that reads older than it did
// before (a status of a lower rank, or a final status other than expired
// changing) is counted as a regression for the summary.
func (s *soak) observe(tk *soakTicket, v ticketView) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if v.Quantity > 0 {
		tk.Qty = v.Quantity
	}
	rank := soakRank(v.Status)
	regressed := rank < tk.rank || (tk.rank == 2 && v.Status != tk.last && !(tk.last == "expired" && v.Status == "paid"))
	if regressed {
		s.regress++
		if len(s.regressEx) < 10 {
			s.regressEx = append(s.regressEx, fmt.Sprintf("%.2fs [%s] ticket %s of %s: %s after %s",
				s.elapsed(), s.phase, tk.ID, tk.User, v.Status, tk.last))
		}
	}
	if rank == 2 {
		tk.final = v.Status
	}
	if rank > 0 && tk.decidedAt.IsZero() {
		tk.decidedAt = time.Now()
	}
	tk.rank = max(tk.rank, rank)
	tk.last = v.Status
}

// awaitDecided polls the ticket until it is past queued (or soakDecideFor
// passes: the end of the soak then finds it). An impatient user sends the
// purchase again every 1–3 s while the ticket reads queued or does not
// answer (see retryQueued).
func (s *soak) awaitDecided(rng *rand.Rand, impatient bool, sale *soakSale, tk *soakTicket) (ticketView, bool) {
	var v ticketView
	pause := func() time.Duration { return time.Second + time.Duration(rng.IntN(2000))*time.Millisecond }
	next := time.Now().Add(pause())
	if !poll(soakDecideFor, soakTicketPoll, func() bool {
		var ok bool
		v, ok = s.readTicket(tk)
		if ok && v.Status != "queued" {
			return true
		}
		if impatient && time.Now().After(next) {
			s.retryQueued(sale, tk)
			next = time.Now().Add(pause())
		}
		return false
	}) {
		return ticketView{}, false
	}
	return v, true
}

// retryQueued sends the purchase of a ticket that reads queued again (a
// user reloading the page): the answer must name the same ticket (200, or
// 202 when Redis had lost it and it is queued again). Another ticket is
// recorded, and judged at the end against when the first one stopped being
// live (judgeSeconds); 409 and 503 are counted.
func (s *soak) retryQueued(sale *soakSale, tk *soakTicket) {
	r, err := s.purchaseOnce(sale, tk.User, tk.Qty)
	var a purchaseAnswer
	switch {
	case err != nil:
		s.retries.add("no answer", "")
		s.mu.Lock()
		s.lostReply[tk.User+"/"+sale.ID] = true
		s.mu.Unlock()
	case (r.Status == http.StatusOK || r.Status == http.StatusAccepted) && r.decode(&a) == nil && a.TicketID == tk.ID:
		s.retries.add(fmt.Sprintf("%d the same ticket", r.Status), "")
	case r.Status == http.StatusOK || r.Status == http.StatusAccepted:
		s.retries.add(fmt.Sprintf("%d another ticket", r.Status), tk.ID+" → "+a.TicketID)
		at := time.Now()
		hold := s.holdState(tk)
		if second := s.noteTicket(sale, tk.User, tk.Qty, r); second != nil {
			s.mu.Lock()
			s.seconds = append(s.seconds, soakSecond{First: tk, Second: second, At: at, Answer: r.String(), FirstHold: hold})
			s.mu.Unlock()
		}
	case r.Status == http.StatusServiceUnavailable:
		s.retries.add("503", "")
	case r.Status >= 500:
		s.violate("http-5xx", "purchase sent again by %s in sale %s: %s", tk.User, sale.ID, r)
	case r.Status == http.StatusConflict && (r.errCode() == "sold_out" || r.errCode() == "limit_reached"):
		s.retries.add(outcome(r, err), tk.ID)
	default:
		s.violate("purchase-answer", "purchase sent again by %s in sale %s while ticket %s read queued: %s", tk.User, sale.ID, tk.ID, r)
	}
}

// soakSecond is a purchase sent again while its ticket read queued and
// answered with another ticket.
type soakSecond struct {
	First, Second *soakTicket
	At            time.Time // when the answer came
	Answer        string
	FirstHold     string // the first ticket's hold in Redis right after the answer ("" none)
}

// awaitExpired waits out the order's payment window and looks at the ticket
// until it reads past pending_payment; it reports whether it expired.
func (s *soak) awaitExpired(tk *soakTicket, v ticketView) bool {
	payBy := time.Now().Add(time.Minute)
	if v.PayBy != nil {
		payBy = *v.PayBy
	}
	time.Sleep(time.Until(payBy.Add(time.Second))) // waits out the payment window
	poll(90*time.Second, time.Second, func() bool {
		var ok bool
		v, ok = s.readTicket(tk)
		return ok && v.Status != "pending_payment"
	})
	return v.Status == "expired"
}

// payPairLate pays two expired orders of one user at the same moment. Both
// are paid only if both fit in per_user_limit (else at least one is
// refund_required); the watch also checks the user's live units in MySQL.
func (s *soak) payPairLate(sale *soakSale, a, b *soakTicket) {
	var got [2]string
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i, tk := range []*soakTicket{a, b} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			got[i] = s.pay(tk, sale.Price*int64(tk.Qty))
		}()
	}
	close(start)
	wg.Wait()
	pair := []string{got[0], got[1]}
	sort.Strings(pair)
	s.latePairs.add(strings.Join(pair, "+"), a.ID+" "+b.ID)
	if got[0] == "paid" && got[1] == "paid" && a.Qty+b.Qty > sale.Limit {
		s.violate("late-pair-over-limit", "user %s paid expired orders %s (%d units) and %s (%d units) at once: both paid, per_user_limit %d",
			a.User, a.ID, a.Qty, b.ID, b.Qty, sale.Limit)
	}
}

// act is what the user does with a pending order.
func (s *soak) act(rng *rand.Rand, sale *soakSale, tk *soakTicket, v ticketView) {
	window := time.Duration(sale.WindowS) * time.Second
	payBy := time.Now().Add(window)
	if v.PayBy != nil {
		payBy = *v.PayBy
	}
	early := time.Duration(300+rng.IntN(int(window.Milliseconds()*6/10))) * time.Millisecond
	amount := sale.Price * int64(max(v.Quantity, 1))
	switch x := rng.Float64(); {
	case x < soakPPay:
		time.Sleep(early) // the user takes their time to pay
		s.pay(tk, amount)
	case x < soakPPay+soakPLatePay:
		time.Sleep(time.Until(payBy.Add(time.Duration(1000+rng.IntN(5000)) * time.Millisecond))) // pays too late
		s.pay(tk, amount)
	case x < soakPPay+soakPLatePay+soakPCancel:
		time.Sleep(early) // changes their mind
		s.cancel(tk)
	default:
		// Lets it expire, then looks at the ticket until it says so (the
		// user may buy again afterwards).
		time.Sleep(time.Until(payBy.Add(time.Second))) // waits out the payment window
		poll(90*time.Second, time.Second, func() bool {
			v, ok := s.readTicket(tk)
			return ok && v.Status != "pending_payment"
		})
	}
}

// pay sends the provider's signed "succeeded" notification for the order,
// retrying 503 and lost answers with the same payment id, and returns the
// status answered ("paid", "refund_required"; "" without one).
func (s *soak) pay(tk *soakTicket, amount int64) string {
	var status string
	body := notice("pay-"+tk.ID, tk.ID, amount, "succeeded").body()
	// Retried at the provider's pace; given up silently after soakBuyFor.
	poll(soakBuyFor, 200*time.Millisecond, func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		r, err := s.c.callback(ctx, body, sign(s.e.PaymentSecret, time.Now(), body))
		cancel()
		kind := outcome(r, err)
		if err == nil && r.Status == http.StatusOK {
			var a payAnswer
			if r.decode(&a) != nil || a.OrderID != tk.ID || (a.Status != "paid" && a.Status != "refund_required") {
				s.violate("pay-answer", "order %s: %s", tk.ID, r)
				return true
			}
			s.pays.add("200 "+a.Status, tk.ID)
			status = a.Status
			return true
		}
		s.pays.add(kind, fmt.Sprintf("%s: %v %s", tk.ID, err, r))
		if err == nil && r.Status >= 500 && r.Status != http.StatusServiceUnavailable {
			s.violate("http-5xx", "payment callback for order %s of %s: %s", tk.ID, tk.User, r)
		}
		if err != nil || r.Status >= 500 {
			return false
		}
		s.violate("pay-answer", "order %s of %s (amount %d): %s", tk.ID, tk.User, amount, r)
		return true
	})
	return status
}

// cancel cancels the order as its user, retrying 503 and lost answers.
func (s *soak) cancel(tk *soakTicket) {
	// Retried at the user's pace; given up silently after soakBuyFor.
	poll(soakBuyFor, 200*time.Millisecond, func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		r, err := s.c.send(ctx, http.MethodPost, pathOrder(tk.ID)+"/cancel", user(tk.User), nil)
		cancel()
		if err == nil && r.Status == http.StatusOK {
			var o orderView
			if r.decode(&o) != nil || o.OrderID != tk.ID || (o.Status != "cancelled" && o.Status != "expired") {
				s.violate("cancel-answer", "order %s: %s", tk.ID, r)
				return true
			}
			s.cancels.add("200 "+o.Status, tk.ID)
			return true
		}
		s.cancels.add(outcome(r, err), fmt.Sprintf("%s: %v %s", tk.ID, err, r))
		if err == nil && r.Status >= 500 && r.Status != http.StatusServiceUnavailable {
			s.violate("http-5xx", "cancel of order %s by %s: %s", tk.ID, tk.User, r)
		}
		if err != nil || r.Status >= 500 {
			return false
		}
		s.violate("cancel-answer", "order %s of %s: %s", tk.ID, tk.User, r)
		return true
	})
}

// ticketsSnapshot returns the tickets accepted so far.
func (s *soak) ticketsSnapshot() []*soakTicket {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]*soakTicket(nil), s.ticketList...)
}
