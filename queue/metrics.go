package queue

import "github.com/prometheus/client_golang/prometheus"

// Metrics counts what the process publishes to the broker, by kind: purchase
// (a message of one purchase or a group of them), purchase_item (the purchases
// in them), event, delay (expiry scheduling: a message of one order or a
// group), republish (a group member settled alone). Messages per order is the
// sum of the message kinds over the orders created. One Metrics serves every
// publisher and consumer of a process; nil counts nothing.
type Metrics struct {
	messages *prometheus.CounterVec
}

// NewMetrics registers the counters with reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{messages: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "flashsale_broker_published_total",
		Help: "Messages published to RabbitMQ (and confirmed or not), by kind; purchase_item counts the purchases inside purchase messages."},
		[]string{"kind"})}
	for _, k := range []string{"purchase", "purchase_item", "event", "delay", "delay_item", "republish"} {
		m.messages.WithLabelValues(k)
	}
	reg.MustRegister(m.messages)
	return m
}

func (m *Metrics) published(kind string, n int) {
	if m != nil {
		m.messages.WithLabelValues(kind).Add(float64(n))
	}
}
