package reconcile

import (
	"context"
	"time"

	"github.com/flashsale/flashsale/service"
)

// OnceOptions tune Once.
type OnceOptions struct {
	// Since: sales that end after it are checked. Zero: every sale.
	Since time.Time
	// Settle is the wait before the second look when the first found
	// differences. Default 2 s.
	Settle time.Duration
	// Repair fixes the differences seen in both looks, except unordered holds.
	Repair bool
	// ReleaseUnordered, with Repair, also releases unordered holds seen in both
	// looks, in Redis and in mysql-inventory sales' rows (and marks their
	// tickets failed). Only safe when no purchase is in
	// flight: a purchase slower than Settle between its hold and its commit
	// would commit an order without units.
	ReleaseUnordered bool
}

// Once is one reconciliation: a look at every sale; when it found differences,
// a second look after Settle, keeping only the differences seen in both (the
// others were in flight); then, with Repair, their repair and a last look to
// confirm it. It returns ctx's error, and no report, when ctx ends during
// Settle; a report with an error when the repair or its confirmation failed.
func (r *Reconciler) Once(ctx context.Context, o OnceOptions) (*Report, error) {
	if o.Since.IsZero() {
		o.Since = time.Unix(0, 0)
	}
	if o.Settle == 0 {
		o.Settle = 2 * time.Second
	}
	first, err := r.Check(ctx, o.Since)
	if err != nil || first.Agree {
		return first, err
	}
	if !service.Sleep(ctx, o.Settle) {
		return nil, ctx.Err()
	}
	rep, err := r.Check(ctx, o.Since)
	if err != nil {
		return nil, err
	}
	keepSeenIn(first, rep)
	if !o.Repair || rep.Agree {
		return rep, nil
	}
	err = r.Repair(ctx, rep, func(d *Difference) bool { return !d.Kind.stray() || o.ReleaseUnordered })
	if err != nil {
		return rep, err
	}
	return rep, r.confirm(ctx, rep, o.Since)
}

// keepSeenIn keeps in rep only the differences first saw too; Transient
// counts the others, and those of first that rep no longer has.
func keepSeenIn(first, rep *Report) {
	seen := map[string]bool{}
	first.each(func(_ *SaleReport, d *Difference) { seen[d.sig] = true })
	kept := 0
	for _, s := range rep.Sales {
		ds := s.Differences[:0]
		for _, d := range s.Differences {
			if seen[d.sig] {
				ds = append(ds, d)
			} else {
				rep.Transient++ // new on the second look
			}
		}
		s.Differences = ds
		kept += len(ds)
	}
	rep.Transient += len(seen) - kept // gone on the second look
	rep.recount()
}

// confirm looks again at the sales that end after since: a repaired
// difference that is still there was not repaired.
func (r *Reconciler) confirm(ctx context.Context, rep *Report, since time.Time) error {
	after, err := r.Check(ctx, since)
	if err != nil {
		return err
	}
	still := map[string]bool{}
	after.each(func(_ *SaleReport, d *Difference) { still[d.sig] = true })
	rep.each(func(_ *SaleReport, d *Difference) {
		if d.Repaired && still[d.sig] {
			d.Repaired = false
		}
	})
	rep.recount()
	return nil
}

// Tick is one background pass: a look at the sales that end after
// now-Lookback, and the repair of every difference the previous Tick saw
// identically (unordered holds: seen for StrayAfter too).
func (r *Reconciler) Tick(ctx context.Context) (*Report, error) {
	now := r.cfg.Now()
	rep, err := r.Check(ctx, now.Add(-r.cfg.Lookback))
	if err != nil {
		return nil, err
	}
	r.passes.Inc()
	pick := r.remember(rep, now)
	if len(pick) == 0 {
		return rep, nil
	}
	err = r.Repair(ctx, rep, func(d *Difference) bool { return pick[d] })
	rep.each(func(_ *SaleReport, d *Difference) {
		if d.Repaired {
			delete(r.seen, d.sig)
		}
	})
	return rep, err
}

// remember replaces the memory of the previous pass with rep's differences,
// each with when it was first seen, sets the differences gauge, and returns
// the differences due for repair: seen in the previous pass too, and an
// unordered hold first seen StrayAfter before now at least.
func (r *Reconciler) remember(rep *Report, now time.Time) map[*Difference]bool {
	seen := map[string]time.Time{}
	pick := map[*Difference]bool{}
	total := 0
	rep.each(func(_ *SaleReport, d *Difference) {
		total++
		first, before := r.seen[d.sig]
		if !before {
			first = now
		}
		seen[d.sig] = first
		if before && (!d.Kind.stray() || now.Sub(first) >= r.cfg.StrayAfter) {
			pick[d] = true
		}
	})
	r.seen = seen
	r.diffs.Set(float64(total))
	r.setDiffsByKind(rep)
	return pick
}

// Forget drops the memory of earlier passes (the next Tick repairs nothing).
func (r *Reconciler) Forget() { r.seen = map[string]time.Time{} }

// Start starts the background reconciler: a Tick every Interval, while it
// holds the lease "<Namespace>:reconciler" (Started is closed once it
// competes for it; Stop ends it). A runner that loses the lease forgets what
// it saw, so a difference is repaired only after two passes of the same
// runner.
func (r *Reconciler) Start(ctx context.Context) error { return r.Go(ctx, r.run) }

func (r *Reconciler) run(ctx context.Context, ready func()) {
	leader := service.Leader{Leases: r.cfg.Leases, Key: r.cfg.Namespace + ":reconciler", TTL: 10 * time.Second, Log: r.log}
	ready()
	leader.Run(ctx, func(ctx context.Context) {
		// What was seen in earlier passes only counts while the lease is
		// held: another runner may have repaired meanwhile.
		defer r.Forget()
		for service.Sleep(ctx, r.cfg.Interval) {
			rep, err := r.Tick(ctx)
			if err != nil {
				if ctx.Err() == nil {
					r.log.Warn("reconciliation pass failed", "err", err)
				}
				continue
			}
			if rep.Repaired > 0 {
				r.log.Warn("reconciler repaired differences between Redis and MySQL", "repaired", rep.Repaired, "remaining", rep.Differences)
			}
		}
	})
}
