package mysqlstore

import (
	"context"
	"testing"

	"github.com/flashsale/flashsale"
	"github.com/flashsale/flashsale/internal/storetest"
)

// The book of record's suite, which mock.Book passes too.
func TestBookSuite(t *testing.T) {
	storetest.RunBook(t, func(t *testing.T, sales ...*flashsale.Sale) storetest.Book {
		s := newStore(t)
		for _, sale := range sales {
			if err := s.CreateSale(context.Background(), sale); err != nil {
				t.Fatal(err)
			}
		}
		return s
	})
}

// The suite again with each payment alone (Config.PayGroup 1): Settle's own
// transaction decides as the shared one does.
func TestBookSuitePaymentsAlone(t *testing.T) {
	storetest.RunBook(t, func(t *testing.T, sales ...*flashsale.Sale) storetest.Book {
		s := newStore(t)
		s.pays, s.binds = nil, nil
		for _, sale := range sales {
			if err := s.CreateSale(context.Background(), sale); err != nil {
				t.Fatal(err)
			}
		}
		return s
	})
}
