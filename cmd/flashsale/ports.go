package main

import (
	"github.com/flashsale/flashsale"
	"github.com/flashsale/flashsale/catalog"
	"github.com/flashsale/flashsale/delayq"
	"github.com/flashsale/flashsale/ingress"
	"github.com/flashsale/flashsale/inventory"
	"github.com/flashsale/flashsale/lifecycle"
	"github.com/flashsale/flashsale/mysqlstore"
	"github.com/flashsale/flashsale/ops"
	"github.com/flashsale/flashsale/payment"
	"github.com/flashsale/flashsale/queue"
	"github.com/flashsale/flashsale/reconcile"
	"github.com/flashsale/flashsale/redisstore"
	"github.com/flashsale/flashsale/relay"
	"github.com/flashsale/flashsale/reservation"
	"github.com/flashsale/flashsale/service"
	"github.com/flashsale/flashsale/worker"
)

// Where each adapter meets a role's interface, checked by the compiler in one
// list. It lives here because this is the one package that imports both
// sides: the roles declare the small interfaces they need and import no
// adapter, and the adapters import no role (design.md section 7), so neither
// could hold it without that dependency. The wiring in process.go makes the
// same assignments; this list names them. The fakes of package mock are
// checked against the same interfaces in mock/suite_test.go, and both sides
// pass the behavioural suites of internal/storetest.
var (
	// The book of record.
	_ worker.Orders       = (*mysqlstore.Store)(nil)
	_ lifecycle.Book      = (*mysqlstore.Store)(nil)
	_ ingress.Orders      = (*mysqlstore.Store)(nil)
	_ ingress.WaitingLine = (*mysqlstore.Store)(nil)
	_ delayq.Due          = (*mysqlstore.Store)(nil)
	_ relay.Outbox        = (*mysqlstore.Store)(nil)
	_ reservation.Book    = (*mysqlstore.Store)(nil)
	_ catalog.Store       = (*mysqlstore.Store)(nil)
	_ redisstore.Source   = (*mysqlstore.Store)(nil)
	_ inventory.MySQL     = (*mysqlstore.Store)(nil)
	_ reconcile.Book      = (*mysqlstore.Store)(nil)
	_ ops.Book            = (*mysqlstore.Store)(nil)
	_ ops.SaleLister      = (*mysqlstore.Store)(nil)

	// The stock store: Redis, and the router every role holds stock through.
	_ worker.Stock      = (*redisstore.Store)(nil)
	_ lifecycle.Stock   = (*redisstore.Store)(nil)
	_ ingress.Stock     = (*redisstore.Store)(nil)
	_ worker.Stock      = (*inventory.Router)(nil)
	_ lifecycle.Stock   = (*inventory.Router)(nil)
	_ ingress.Stock     = (*inventory.Router)(nil)
	_ ops.StockReader   = (*inventory.Router)(nil)
	_ reconcile.Stock   = (*redisstore.Store)(nil)
	_ catalog.StockInit = (*redisstore.Store)(nil)
	_ reservation.Cache = (*redisstore.Store)(nil)
	_ ingress.Strikes   = (*redisstore.Strikes)(nil)
	_ lifecycle.Strikes = (*redisstore.Strikes)(nil)
	_ service.Leases    = (*redisstore.Leases)(nil)
	_ service.Leases    = (*mysqlstore.Leases)(nil)

	// The broker.
	_ ingress.Queue   = (*queue.Publisher)(nil)
	_ delayq.Delayer  = (*queue.Publisher)(nil)
	_ relay.Publisher = (*queue.Publisher)(nil)

	// Roles that serve other roles.
	_ ingress.Lifecycle    = (*lifecycle.Service)(nil)
	_ payment.Payer        = (*lifecycle.Service)(nil)
	_ delayq.Expirer       = (*lifecycle.Service)(nil)
	_ ingress.Sales        = (*catalog.Catalog)(nil)
	_ flashsale.SaleFinder = (*catalog.Catalog)(nil)
	_ ingress.Reservations = (*reservation.Service)(nil)
)
