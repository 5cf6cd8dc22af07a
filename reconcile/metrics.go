package reconcile

import "github.com/prometheus/client_golang/prometheus"

// allKinds are every Kind, for series that exist at 0 before their first event.
var allKinds = []Kind{KindHold, KindUnordered, KindCounters, KindUnits, KindOversold,
	KindCap, KindCapUsed, KindInventoryHold, KindInventoryUnordered, KindInventoryCounters}

// initOpsMetrics creates flashsale_reconcile_differences_by_kind{kind} and the
// series of every kind at 0 (also those of flashsale_reconcile_repairs_total),
// so that dashboards and alerts see them before the first difference, and
// registers the new gauge with the Registry, if any.
func (r *Reconciler) initOpsMetrics() {
	r.byKind = prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "flashsale_reconcile_differences_by_kind",
		Help: "Differences between Redis and MySQL (or in MySQL's stock cap and inventory rows) seen by the last background pass of this process (it must hold the reconciler lease), by kind. Differences already seen in two looks --settle apart, so not work in flight; they persist when the repairs do not take."},
		[]string{"kind"})
	for _, k := range allKinds {
		r.byKind.WithLabelValues(string(k))
		r.repaired.WithLabelValues(string(k))
	}
	if r.cfg.Registry != nil {
		r.cfg.Registry.MustRegister(r.byKind)
	}
}

// setDiffsByKind sets flashsale_reconcile_differences_by_kind from a pass.
func (r *Reconciler) setDiffsByKind(rep *Report) {
	n := map[Kind]int{}
	rep.each(func(_ *SaleReport, d *Difference) { n[d.Kind]++ })
	for _, k := range allKinds {
		r.byKind.WithLabelValues(string(k)).Set(float64(n[k]))
	}
}
