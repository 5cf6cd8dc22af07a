package mock_test

import (
	"testing"

	"github.com/flashsale/flashsale"
	"github.com/flashsale/flashsale/delayq"
	"github.com/flashsale/flashsale/ingress"
	"github.com/flashsale/flashsale/internal/storetest"
	"github.com/flashsale/flashsale/lifecycle"
	"github.com/flashsale/flashsale/mock"
	"github.com/flashsale/flashsale/payment"
	"github.com/flashsale/flashsale/relay"
	"github.com/flashsale/flashsale/service"
	"github.com/flashsale/flashsale/worker"
)

// Where each fake meets a role's interface (the adapters' list is
// cmd/flashsale/ports.go). It is here, in the external test package, because
// the roles' own tests import mock: mock importing a role would be a cycle.
var (
	_ worker.Orders        = (*mock.Book)(nil)
	_ lifecycle.Book       = (*mock.Book)(nil)
	_ ingress.Orders       = (*mock.Book)(nil)
	_ worker.Stock         = (*mock.Stock)(nil)
	_ lifecycle.Stock      = (*mock.Stock)(nil)
	_ relay.Outbox         = (*mock.Outbox)(nil)
	_ relay.Publisher      = (*mock.Publisher)(nil)
	_ delayq.Delayer       = (*mock.Delayer)(nil)
	_ delayq.Expirer       = (*mock.Expirer)(nil)
	_ delayq.Due           = (*mock.Due)(nil)
	_ payment.Payer        = (*mock.Payer)(nil)
	_ service.Leases       = mock.Leases{}
	_ ingress.Sales        = mock.Sales{}
	_ flashsale.SaleFinder = mock.Sales{}
)

// The fakes pass the suites the adapters they stand for pass (mysqlstore's
// and redisstore's suite_test.go), so a role's unit test on them says
// something about the real stores.

func TestBookSuite(t *testing.T) {
	storetest.RunBook(t, func(t *testing.T, sales ...*flashsale.Sale) storetest.Book {
		b := mock.NewBook(nil)
		for _, s := range sales {
			b.Sales[s.ID] = s
		}
		return b
	})
}

func TestStockSuite(t *testing.T) {
	storetest.RunStock(t, func(t *testing.T, sale *flashsale.Sale) storetest.Stock {
		return mock.NewStock(map[string]int{sale.ID: sale.Stock}, nil)
	})
}
