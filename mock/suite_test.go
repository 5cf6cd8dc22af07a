package mock_test

import (
	"testing"

	"github.com/flashsale/flashsale"
	"github.com/flashsale/flashsale/internal/storetest"
	"github.com/flashsale/flashsale/mock"
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
