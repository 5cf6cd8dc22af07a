package bench

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	mrand "math/rand/v2"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/flashsale/flashsale/api/apiclient"
)

// schedule is the sale's timeline, on the server's clock.
type schedule struct {
	opensAt  time.Time // reservation window; zero without one
	closesAt time.Time
	// roomOpensAt is the waiting room's opens_at, or --arrival early's
	// first arrival; zero without either.
	roomOpensAt time.Time
	startsAt    time.Time
	endsAt      time.Time
}

// run is one scenario against one sale.
type run struct {
	cfg    Config
	log    *slog.Logger
	id     string
	saleID string
	saleB  string     // the second sale of the bundles; "" without --bundle-ratio
	users  *apiClient // the crowd: at most cfg.Conns requests in flight
	ctl    *apiClient // sale creation and stock sampling, never queued behind the crowd
	checks *apiChecks // both clients' answers against the API's description
	// streams opens the users' ticket event streams (--follow stream).
	streams *streamClient
	rec     *recorder
	prog    *progress
	sched   schedule
	offset  time.Duration // server clock minus local clock; fixed before users start
	opened  chan struct{} // closed when the sale (or its waiting room) opens (by the server's clock)

	ordersSeen atomic.Int64 // orders created so far, to pick the paid share
	unpaidSeen atomic.Int64 // unpaid orders so far, to pick the cancelled share
	simUsers   []*simUser
	// finalSecond is the second sale's reading once quiet (settle); nil if none.
	finalSecond *StockSample

	// metrics reads the server's counters (nil with --metrics-url off, or until
	// the sale is set up); countersBefore receives the reading taken before
	// the opening, exactly once; countersAfter is the one after the load.
	metrics        *metricsScraper
	countersBefore chan counterReading
	countersAfter  *counterReading
	before         *counterReading // countersBefore's reading, once received

	// cost takes the "Cost of an order" readings at the same moments:
	// costBefore receives the first, exactly once; costAfter is the second.
	cost       *costProbe
	costBefore chan costReading
	costFirst  *costReading // costBefore's reading, once received
	costAfter  *costReading

	// preload runs --preload's phases (nil without it).
	preload *preloader
	// commitment is the draw_commitment the sale published at creation
	// (--arrival waiting-room); draw is the check of the draw once the run is
	// over (nil before, or without a waiting room).
	commitment string
	draw       *DrawReport
}

// firstPurchaseAt is when the first purchase may be made, on the server's
// clock: the waiting room's opening, or the sale's.
func (s schedule) firstPurchaseAt() time.Time {
	if !s.roomOpensAt.IsZero() {
		return s.roomOpensAt
	}
	return s.startsAt
}

// serverNow is the current time on the server's clock.
func (r *run) serverNow() time.Time { return time.Now().Add(r.offset) }

// local converts a server-clock time to the local clock.
func (r *run) local(t time.Time) time.Time { return t.Add(-r.offset) }

// newRunID returns a short id that is unique across runs: the time in ms, base 36,
// and 16 random bits.
func newRunID() string {
	var b [2]byte
	_, _ = rand.Read(b[:])
	return "r" + strconv.FormatInt(time.Now().UnixMilli(), 36) + hex.EncodeToString(b[:])
}

// runOnce runs the whole scenario once and returns its report; it never panics on
// a misbehaving server, it reports.
func runOnce(ctx context.Context, cfg Config, log *slog.Logger, progressOut io.Writer) *Report {
	begin := time.Now()
	r := &run{
		cfg:    cfg,
		id:     newRunID(),
		rec:    newRecorder(begin),
		prog:   newProgress(progressOut, cfg.Quiet),
		opened: make(chan struct{}),
	}
	r.saleID = "bench-" + r.id
	if cfg.bundles() {
		r.saleB = r.saleID + "-b"
	}
	r.log = log.With("run", r.id, "inventory", cfg.Inventory)
	r.checks = newAPIChecks()
	var err error
	if r.users, err = newAPIClient(cfg, r.rec, r.checks, cfg.Conns, true); err == nil {
		r.ctl, err = newAPIClient(cfg, r.rec, r.checks, 4, false)
	}
	if err != nil {
		r.log.Error("could not set up the clients", "err", err)
		return r.buildReport(begin, false, err.Error(), nil)
	}
	defer r.users.close()
	defer r.ctl.close()
	if cfg.Follow == followStream {
		r.streams = newStreamClient(cfg)
		defer r.streams.close()
	}

	loadCtx, cancelLoad := context.WithDeadline(ctx, begin.Add(cfg.loadBudget()))
	defer cancelLoad()
	verifyCtx, cancelVerify := context.WithDeadline(ctx, begin.Add(cfg.Duration))
	defer cancelVerify()

	if err := r.setup(loadCtx); err != nil {
		r.log.Error("could not set up the sale", "err", err)
		return r.buildReport(begin, false, err.Error(), nil)
	}
	if cfg.MetricsURL != "" {
		r.metrics = newMetricsScraper(cfg.MetricsURL)
		r.countersBefore = make(chan counterReading, 1)
		defer r.metrics.close()
	}
	r.cost = newCostProbe(cfg)
	r.costBefore = make(chan costReading, 1)
	defer r.cost.close()

	defer func() {
		if r.preload != nil {
			r.preload.stop()
		}
	}()
	samplerCtx, stopSampler := context.WithCancel(verifyCtx)
	samplerDone := make(chan struct{})
	go func() {
		defer close(samplerDone)
		r.sampleStock(samplerCtx)
	}()

	completed, reason := r.load(loadCtx)
	if completed && cfg.WaitExpiry {
		completed, reason = r.waitExpiry(loadCtx)
	}
	r.readCountersAfter(verifyCtx)
	r.log.Info("verifying")
	r.checks.checkAll()
	final := r.settle(verifyCtx)
	if cfg.waitingRoom() && verifyCtx.Err() == nil {
		r.checkDraw(verifyCtx)
	}
	stopSampler()
	<-samplerDone
	r.readCreatedAt(verifyCtx)
	if completed && verifyCtx.Err() != nil {
		completed, reason = false, "verification did not finish within --duration"
	}
	if !completed {
		r.log.Warn("run incomplete", "reason", reason)
	}
	return r.buildReport(begin, completed, reason, final)
}

// setup aligns on the server's clock, creates the sale and fixes the schedule.
func (r *run) setup(ctx context.Context) error {
	// A first look at the (not yet existing) sale checks that the server answers and
	// gives a coarse clock offset from the Date header (1 s resolution).
	t1 := time.Now()
	_, resp, err := r.ctl.getSale(ctx, r.saleID)
	t2 := time.Now()
	if resp == nil {
		return fmt.Errorf("cannot reach %s: %w", r.cfg.URL, err)
	}
	if !resp.Date.IsZero() {
		coarse := resp.Date.Add(500 * time.Millisecond).Sub(t1.Add(t2.Sub(t1) / 2))
		if coarse > 1500*time.Millisecond || coarse < -1500*time.Millisecond {
			r.offset = coarse
		}
	}

	base := r.serverNow().Truncate(time.Millisecond)
	if r.cfg.Reservation {
		r.sched.opensAt = base.Add(r.cfg.StartDelay)
		r.sched.closesAt = r.sched.opensAt.Add(r.cfg.reservationWindow())
		r.sched.startsAt = r.sched.closesAt.Add(r.cfg.StartDelay)
	} else if r.cfg.arrivesEarly() {
		r.sched.roomOpensAt = base.Add(r.cfg.StartDelay)
		r.sched.startsAt = r.sched.roomOpensAt.Add(r.cfg.roomWindow())
	} else {
		r.sched.startsAt = base.Add(r.cfg.StartDelay)
	}
	r.sched.endsAt = r.sched.startsAt.Add(r.cfg.Duration)
	if dl, ok := ctx.Deadline(); ok && r.cfg.waitingRoom() {
		// The waitlist keeps waiting until a unit comes back or the sale
		// ends: end it before the load's budget does, so that every
		// ticket is final within the run.
		r.sched.endsAt = dl.Add(r.offset - roomEndMargin)
	}

	inventory := apiclient.SaleInputInventory(r.cfg.Inventory)
	req := apiclient.SaleInput{
		Id:                   &r.saleID,
		Sku:                  "BENCH-" + r.id,
		Name:                 "flashsale bench " + r.id,
		Stock:                r.cfg.Stock,
		PriceCents:           r.cfg.priceCents,
		PerUserLimit:         &r.cfg.PerUserLimit,
		StartsAt:             r.sched.startsAt.UTC(),
		EndsAt:               r.sched.endsAt.UTC(),
		PaymentWindowSeconds: &r.cfg.PaymentWindow,
		Inventory:            &inventory,
	}
	if r.cfg.Reservation {
		req.Reservation = &apiclient.ReservationPhase{OpensAt: r.sched.opensAt.UTC(), ClosesAt: r.sched.closesAt.UTC()}
	}
	if r.cfg.waitingRoom() {
		req.WaitingRoom = &apiclient.WaitingRoomInput{OpensAt: r.sched.roomOpensAt.UTC(), Waitlist: &r.cfg.Waitlist}
	}
	if err := r.createSale(ctx, req); err != nil {
		return err
	}
	if r.saleB != "" {
		b := req
		b.Id, b.Sku, b.Name = &r.saleB, "BENCH-"+r.id+"-B", "flashsale bench "+r.id+" (bundle's second sale)"
		b.Stock, b.PriceCents = r.cfg.secondStock(), r.cfg.secondPriceCents
		if err := r.createSale(ctx, b); err != nil {
			return err
		}
	}

	// Refine the offset with server_time, keeping the sample with the shortest round trip.
	best := time.Duration(-1)
	for range 3 {
		t1 := time.Now()
		sv, resp, err := r.ctl.getSale(ctx, r.saleID)
		t2 := time.Now()
		if err != nil || resp.Status != http.StatusOK {
			continue
		}
		st := sv.ServerTime
		if sv.WaitingRoom != nil && r.commitment == "" {
			r.commitment = string(sv.WaitingRoom.DrawCommitment)
		}
		if rtt := t2.Sub(t1); best < 0 || rtt < best {
			best = rtt
			r.offset = st.Sub(t1.Add(rtt / 2))
		}
	}
	if best < 0 {
		return fmt.Errorf("sale %s was created but GET /api/v1/sales/%s does not answer 200 with a server_time", r.saleID, r.saleID)
	}
	if r.cfg.waitingRoom() && r.commitment == "" {
		return fmt.Errorf("sale %s was created with a waiting room but its view shows no waiting_room.draw_commitment", r.saleID)
	}
	r.log.Info("sale created", "sale", r.saleID, "second_sale", r.saleB, "bundle_ratio", r.cfg.BundleRatio, "stock", r.cfg.Stock, "users", r.cfg.Users,
		"opens_in", time.Until(r.local(r.sched.startsAt)).Round(time.Millisecond), "clock_offset", r.offset.Round(time.Millisecond))
	return nil
}

// createSale creates one sale, retrying transient failures a few times.
func (r *run) createSale(ctx context.Context, req apiclient.SaleInput) error {
	for attempt := 1; ; attempt++ {
		resp, err := r.ctl.createSale(ctx, req)
		if err == nil && resp.Status == http.StatusCreated {
			return nil
		}
		transient := err != nil || resp.Status == http.StatusInternalServerError || resp.Status == http.StatusBadGateway || resp.Status == http.StatusGatewayTimeout
		if !transient || attempt >= 3 || ctx.Err() != nil {
			if err != nil {
				return fmt.Errorf("creating sale %s: %w", *req.Id, err)
			}
			return fmt.Errorf("creating sale %s: %s %s", *req.Id, resp.key(), resp.Message)
		}
		sleepCtx(ctx, backoff(attempt+2))
	}
}

// load runs every user and waits for all of them. It reports whether they all
// finished before ctx ended.
func (r *run) load(ctx context.Context) (bool, string) {
	seed := r.cfg.Seed
	r.simUsers = make([]*simUser, r.cfg.Users)
	for i := range r.simUsers {
		r.simUsers[i] = &simUser{
			n:      i,
			id:     fmt.Sprintf("bench-%s-%d", r.id, i),
			rng:    mrand.New(mrand.NewPCG(seed, uint64(i))),
			bundle: r.saleB != "" && r.cfg.bundleUser(i),
		}
	}
	if r.cfg.Reservation {
		r.prog.start(phaseReserve, "reserving ", r.cfg.Users)
	}
	// The opening (of the waiting room, when there is one): read the
	// server's counters, switch the progress bar, then let the crowd in.
	go func() {
		r.readCountersBefore(ctx)
		if sleepCtx(ctx, time.Until(r.local(r.sched.firstPurchaseAt()))) {
			r.prog.start(phasePurchase, "purchasing", r.cfg.Users)
			close(r.opened)
		}
	}()
	if r.cfg.Preload > 0 {
		// Stopped when the run ends (runOnce), once the cost was read.
		r.preload = newPreloader(r.cfg, r.log, r.cost.procs)
		go r.preload.run(ctx)
	}
	var wg sync.WaitGroup
	for _, u := range r.simUsers {
		wg.Go(func() { r.simulate(ctx, u) })
	}
	wg.Wait()
	r.prog.finish()
	switch err := ctx.Err(); {
	case err == nil:
		r.log.Info("purchases settled", "orders_created", r.ordersSeen.Load())
		return true, ""
	case errors.Is(err, context.DeadlineExceeded):
		return false, "the load did not finish within --duration"
	default:
		return false, "interrupted"
	}
}

// readCountersBefore takes the first reading of the server's counters before
// the opening: at once (the sale is set up), or once the reservation window
// closed with --reservation; it must answer by the opening, so that no purchase
// falls before it.
// It sends exactly one reading on r.countersBefore (none without --metrics-url).
// It also takes the "Cost of an order" section's first reading, sent on
// r.costBefore (nothing when the run ended before the opening).
func (r *run) readCountersBefore(ctx context.Context) {
	if r.cost != nil {
		defer func() {
			if ctx.Err() == nil {
				r.costBefore <- r.cost.read(ctx)
			}
			close(r.costBefore)
		}()
	}
	if r.metrics == nil {
		if r.cfg.Reservation {
			sleepCtx(ctx, time.Until(r.local(r.sched.closesAt)))
		}
		return
	}
	reading := counterReading{err: errors.New("the run ended before the opening")}
	defer func() { r.countersBefore <- reading }()
	if r.cfg.Reservation && !sleepCtx(ctx, time.Until(r.local(r.sched.closesAt))) {
		return
	}
	rctx, cancel := context.WithDeadline(ctx, r.local(r.sched.firstPurchaseAt()))
	defer cancel()
	c, err := r.metrics.read(rctx, r.saleID)
	reading = counterReading{c: c, err: err, at: time.Now()}
	if err != nil {
		r.log.Warn("server metrics not available before the opening", "err", err)
	}
}

// readCountersAfter takes the second reading once the load is over (before the
// verification), unless the first one failed.
// The cost section's second reading is taken first (it is quick).
func (r *run) readCountersAfter(ctx context.Context) {
	if r.cost != nil {
		if b, ok := <-r.costBefore; ok {
			a := r.cost.read(ctx)
			r.costFirst, r.costAfter = &b, &a
		}
	}
	if r.metrics == nil {
		return
	}
	before := <-r.countersBefore
	r.before = &before
	if before.err != nil {
		return
	}
	c, err := r.metrics.read(ctx, r.saleID)
	r.countersAfter = &counterReading{c: c, err: err, at: time.Now()}
	if err != nil {
		r.log.Warn("server metrics not available after the load", "err", err)
	}
}

// sampleStock reads the sale's stock every cfg.sampleEvery until ctx ends.
func (r *run) sampleStock(ctx context.Context) {
	t := time.NewTicker(r.cfg.sampleEvery)
	defer t.Stop()
	for {
		r.sampleOnce(ctx)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// sampleOnce reads and records the sale's stock once (and the second sale's,
// with bundles; see sampleSecond).
func (r *run) sampleOnce(ctx context.Context) (StockSample, bool) {
	if r.saleB != "" {
		r.sampleSecond(ctx)
	}
	return r.sampleSale(ctx, r.saleID, r.rec.addStock)
}

// sampleSecond reads and records the second sale's stock once.
func (r *run) sampleSecond(ctx context.Context) (StockSample, bool) {
	return r.sampleSale(ctx, r.saleB, r.rec.addStockSecond)
}

// reservations is the sale view's count of reservations, nil without a
// reservation phase.
func reservations(n *int) *int64 {
	if n == nil {
		return nil
	}
	v := int64(*n)
	return &v
}

// sampleSale reads one sale's stock and records it with add.
func (r *run) sampleSale(ctx context.Context, id string, add func(StockSample)) (StockSample, bool) {
	sv, resp, err := r.ctl.getSale(ctx, id)
	if err != nil || resp.Status != http.StatusOK {
		return StockSample{}, false
	}
	s := StockSample{
		T:            r.rec.since(time.Now()),
		State:        string(sv.State),
		Total:        int64(sv.Stock.Total),
		Available:    int64(sv.Stock.Available),
		Held:         int64(sv.Stock.Held),
		Sold:         int64(sv.Stock.Sold),
		Reservations: reservations(sv.Reservations),
	}
	add(s)
	return s, true
}
