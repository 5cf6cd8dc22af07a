package worker

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/flashsale/flashsale"
)

// finalBuckets bound flashsale_ticket_final_seconds: from a few milliseconds (an
// idle system) to the two minutes of the retry budget (a dependency away).
var finalBuckets = []float64{.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60, 120}

// initOpsMetrics creates the metrics the operations views read from the
// worker (flashsale_ticket_final_seconds) and the series that must exist before
// their first event (every reason of flashsale_stock_cap_refusals_total at 0),
// and registers them with the Registry, if any.
func (w *Worker) initOpsMetrics() {
	w.final = prometheus.NewHistogram(prometheus.HistogramOpts{Name: "flashsale_ticket_final_seconds",
		Help:    "Time from a purchase's admission (its 202, PurchaseRequest.AdmittedAt on the ingress's clock) to its ticket's final answer written by a worker: an order created (pending_payment), sold_out or failed.",
		Buckets: finalBuckets})
	w.refused.WithLabelValues("sold_out")
	w.refused.WithLabelValues("over_limit")
	if w.cfg.Registry != nil {
		w.cfg.Registry.MustRegister(w.final)
	}
}

// observeFinal records in flashsale_ticket_final_seconds the time from req's
// admission to now, when t (the ticket just written and acked) is the
// purchase's final answer: pending_payment (its order exists), sold_out or
// failed. A purchase dead-lettered after repeated failures is not observed (it
// is counted in flashsale_worker_messages_total{outcome="dead_letter_settled"}
// and alerts as tickets not final while it is stuck). A redelivered purchase whose ticket went further meanwhile (paid,
// expired, cancelled) is not observed; one redelivered after its ack was lost
// is observed again (rare: a connection lost between the ack and its arrival).
// The clocks of the ingress and the worker are assumed in step.
func (w *Worker) observeFinal(req *flashsale.PurchaseRequest, t *flashsale.Ticket) {
	if t == nil || req.AdmittedAt.IsZero() {
		return
	}
	switch t.Status {
	case flashsale.TicketPendingPayment, flashsale.TicketSoldOut, flashsale.TicketFailed:
		w.final.Observe(max(w.cfg.Now().Sub(req.AdmittedAt).Seconds(), 0))
	}
}
