package queue

import "github.com/prometheus/client_golang/prometheus"

// Metrics counts what the process publishes to the broker, by kind: purchase
// (a message of one purchase or a group of them), purchase_item (the purchases
// in them), event, delay (expiry scheduling: a message of one order or a
// group), republish (a group member settled alone). Messages per order is the
// sum of the message kinds over the orders created. It also counts what the
// consumers' retry rule (Retry) did with failing messages, by queue: again
// (tried again by the consumer after a wait) and handed_back (to the queue,
// once the budget was spent or the consumer stopped; not those whose
// connection was lost meanwhile: the broker requeued them itself). One Metrics serves
// every publisher and consumer of a process; nil counts nothing.
type Metrics struct {
	messages *prometheus.CounterVec
	retries  *prometheus.CounterVec
}

// NewMetrics registers the counters with reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{messages: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "flashsale_broker_published_total",
		Help: "Messages published to RabbitMQ (and confirmed or not), by kind; purchase_item counts the purchases inside purchase messages."},
		[]string{"kind"}),
		retries: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "flashsale_consumer_retries_total",
			Help: "Messages a handler could not complete, by queue and what the consumer's retry rule did: again (tried again after a wait) or handed_back (to the queue: the retry budget was spent, or the consumer stopped)."},
			[]string{"queue", "outcome"})}
	for _, k := range []string{"purchase", "purchase_item", "event", "delay", "delay_item", "republish"} {
		m.messages.WithLabelValues(k)
	}
	reg.MustRegister(m.messages, m.retries)
	return m
}

func (m *Metrics) published(kind string, n int) {
	if m != nil {
		m.messages.WithLabelValues(kind).Add(float64(n))
	}
}

func (m *Metrics) retried(queue, outcome string, n int) {
	if m != nil {
		m.retries.WithLabelValues(queue, outcome).Add(float64(n))
	}
}
