// Package storetest holds the behavioural suites every implementation of the
// roles' two stores must pass: the book of record (RunBook: mysqlstore.Store
// and mock.Book) and the stock store (RunStock: redisstore.Store and
// mock.Stock). A fake that passes the same suite as the adapter it stands for
// behaves like it wherever the roles look, so a role's unit test on the fake
// says something about the real thing.
//
// Each suite is a list of named cases run as subtests, each on a fresh store
// from the constructor it is given (the shape of watermill's universal
// Pub/Sub suite). The implementations run it from their own test files, so
// the suites import the roles' interfaces and nothing of the stores: no
// import cycle. A case covers what the roles rely on, through the methods the
// roles call, never an implementation's internals; a store's own corners
// (MySQL's allotments and borrowing, Redis's rebuilds and segments) stay in
// its package's tests.
package storetest

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/flashsale/flashsale"
)

// testCase is one named case of a suite.
type testCase[C any] struct {
	name string
	run  func(t *testing.T, newStore C)
}

// run runs each case as a subtest with the suite's constructor.
func run[C any](t *testing.T, newStore C, cases []testCase[C]) {
	t.Helper()
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) { c.run(t, newStore) })
	}
}

// saleOf is a sale open now with the given stock and per-user limit, priced
// 100 cents a unit, payable for 60 s.
func saleOf(id string, stock, limit int) *flashsale.Sale {
	now := time.Now().UTC().Truncate(time.Second)
	return &flashsale.Sale{ID: id, SKU: "sku-" + id, Name: "sale " + id, Stock: stock, PriceCents: 100, PerUserLimit: limit,
		StartsAt: now.Add(-time.Minute), EndsAt: now.Add(time.Hour), PaymentWindowSeconds: 60,
		Inventory: flashsale.InventoryRedis, CreatedAt: now}
}

// code is err's code, for messages and comparisons.
func code(err error) flashsale.Code {
	if err == nil {
		return ""
	}
	return flashsale.ErrorCode(err)
}

// wantCode fails the test unless err has code want.
func wantCode(t *testing.T, what string, err error, want flashsale.Code) {
	t.Helper()
	if code(err) != want {
		t.Fatalf("%s: error %v, want code %s", what, err, want)
	}
}

// must fails the test on err.
func must(t *testing.T, what string, err error) {
	t.Helper()
	if err != nil {
		t.Fatalf("%s: %v", what, err)
	}
}

var ctx = context.Background()

// holdString prints a hold as the stock store records it ("H:2", "R").
func holdString(h flashsale.Hold) string {
	switch h.Kind {
	case flashsale.HoldNone:
		return "none"
	case flashsale.HoldHeld, flashsale.HoldSold:
		return fmt.Sprintf("%c:%d", h.Kind, h.Quantity)
	}
	return string(rune(h.Kind))
}
