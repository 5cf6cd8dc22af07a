package redisstore

import (
	"testing"

	"github.com/flashsale/flashsale"
	"github.com/flashsale/flashsale/internal/storetest"
)

// The stock store's suite, which mock.Stock passes too; like every test of
// the package it runs with the sale in one slot and in three segments.
func TestStockSuite(t *testing.T) {
	storetest.RunStock(t, func(t *testing.T, sale *flashsale.Sale) storetest.Stock {
		s, _ := newStoreOf(t, sale, testSegments)
		return s
	})
}
