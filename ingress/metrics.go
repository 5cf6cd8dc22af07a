package ingress

import (
	"net/http"
	"sync"

	"github.com/gin-gonic/gin"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/flashsale/flashsale/httpapi"
)

// PurchaseOutcomes are the values of the outcome label of
// flashsale_purchases_total{sale,outcome} (contract section 2), in the order the
// live page shows them. admitted is a 202 (a new queued ticket), existing a 200
// (the user's live ticket again); the others are the error codes of the same
// name. Answers with any other code (bad input, not_started, ended,
// invalid_quantity, an unknown sale) are not counted: they say nothing about
// how the sale is going, and an unknown sale id must never become a label.
var PurchaseOutcomes = []string{"admitted", "existing", "rate_limited", "sold_out", "limit_reached", "not_qualified", "blocked", "unavailable"}

// purchaseCounter counts purchase answers by sale and outcome. Its sale label
// only ever takes ids of sales that exist (sales are created by admins, so the
// label set stays bounded); every outcome of a sale is created at 0 the first
// time the sale is counted, so that rates and alerts see the whole set.
// Series live as long as the process.
type purchaseCounter struct {
	total *prometheus.CounterVec
	mu    sync.Mutex
	sales map[string]bool // sales whose series exist
}

func newPurchaseCounter(reg prometheus.Registerer) *purchaseCounter {
	pc := &purchaseCounter{sales: map[string]bool{},
		total: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "flashsale_purchases_total",
			Help: "Purchase requests answered by this ingress, by sale and outcome (admitted: 202; existing: 200 with the user's live ticket; else the error code)."},
			[]string{"sale", "outcome"})}
	if reg != nil {
		reg.MustRegister(pc.total)
	}
	return pc
}

// outcomeOf maps a purchase answer to its outcome label, "" when not counted.
func outcomeOf(status int, code string) string {
	switch {
	case status == http.StatusAccepted:
		return "admitted"
	case status == http.StatusOK:
		return "existing"
	}
	for _, o := range PurchaseOutcomes[2:] {
		if o == code {
			return o
		}
	}
	return ""
}

// countPurchase is the purchase route's middleware: after the handler answered,
// it counts the answer once, whichever of the handler's return points gave it.
func (s *Server) countPurchase(c *gin.Context) {
	c.Next()
	s.CountPurchase(c, c.Param("id"), c.Writer.Status(), string(httpapi.CodeOf(c)))
}

// CountPurchase counts one purchase answer (status, and the error code when it
// is an error) for saleID in flashsale_purchases_total. A sale the catalog does
// not know is not counted. Handlers that answer for several sales (a bundle)
// call it once per sale.
func (s *Server) CountPurchase(c *gin.Context, saleID string, status int, code string) {
	outcome := outcomeOf(status, code)
	if outcome == "" || saleID == "" {
		return
	}
	pc := s.purchases
	pc.mu.Lock()
	known := pc.sales[saleID]
	pc.mu.Unlock()
	if !known {
		if _, err := s.cfg.Sales.Get(c.Request.Context(), saleID); err != nil {
			return
		}
		pc.mu.Lock()
		if !pc.sales[saleID] {
			pc.sales[saleID] = true
			for _, o := range PurchaseOutcomes {
				pc.total.WithLabelValues(saleID, o)
			}
		}
		pc.mu.Unlock()
	}
	pc.total.WithLabelValues(saleID, outcome).Inc()
}
