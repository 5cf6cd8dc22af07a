package delayq

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/flashsale/flashsale"
)

// lagBuckets bound flashsale_expiry_lag_seconds: the queue path expires within
// about 2 s of pay_by, the sweeper within its interval, a backlog later.
var lagBuckets = []float64{.25, .5, 1, 2, 3, 5, 10, 20, 30, 60, 120, 300}

// initOpsMetrics creates flashsale_expiry_lag_seconds and the series of every
// path of flashsale_delayq_expired_total at 0, and registers the histogram with
// the Registry, if any.
func (q *Queue) initOpsMetrics() {
	q.lag = prometheus.NewHistogram(prometheus.HistogramOpts{Name: "flashsale_expiry_lag_seconds",
		Help:    "How long after its pay_by an unpaid order was expired by this process (queue or sweeper), by this process's clock.",
		Buckets: lagBuckets})
	q.expired.WithLabelValues("queue")
	q.expired.WithLabelValues("sweeper")
	if q.cfg.Registry != nil {
		q.cfg.Registry.MustRegister(q.lag)
	}
}

// observeLag records how late o, which the caller just saw expired, expired.
// An order another process expired first is observed again here: the lag is
// still how late it was when this process looked.
func (q *Queue) observeLag(o *flashsale.Order) {
	q.lag.Observe(max(q.cfg.Now().Sub(o.PayBy).Seconds(), 0))
}
