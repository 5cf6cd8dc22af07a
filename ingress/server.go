// Package ingress is the HTTP front door (gin): it admits purchase requests,
// queues them, and answers every read of sales, tickets and orders.
//
// A purchase is decided by package admission (its checks, in order, then the
// claims and the publish); ingress parses the request, identifies the user
// and answers the decision: a fresh ticket 202, the user's live ticket 200, a
// refusal in the one error shape (httpapi). Only a claimed ticket is
// published, and 202 is answered only after the broker confirmed it; a failed
// publish undoes the claim, so nothing is left behind and the user may retry.
//
// The router also serves the API's description and its reference page
// (package api): every route here is described there, and a test in
// api/apicheck compares the two both ways.
package ingress

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strconv"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/flashsale/flashsale"
	"github.com/flashsale/flashsale/admission"
	apidesc "github.com/flashsale/flashsale/api"
	"github.com/flashsale/flashsale/httpapi"
	"github.com/flashsale/flashsale/identity"
	"github.com/flashsale/flashsale/service"
)

// Sales creates and finds sales.
type Sales interface {
	// Create returns an error wrapping flashsale.ErrConflict for an existing id.
	Create(ctx context.Context, s *flashsale.Sale) error
	flashsale.SaleFinder
}

// Stock is the stock store: availability, and admission's live-ticket
// claims and ticket copies.
type Stock interface {
	Stock(ctx context.Context, saleID string) (flashsale.StockLevel, error)
	admission.Stock
}

// Orders is the book of record, read by user (and admission's part of it).
type Orders interface {
	GetOrder(ctx context.Context, ref flashsale.OrderRef) (*flashsale.Order, error)
	admission.Book
}

// Queue takes purchases durably (see admission.Queue).
type Queue = admission.Queue

// Strikes tells whether a user's recent unpaid expiries block their
// purchases (see admission.Strikes).
type Strikes = admission.Strikes

// Check is one readiness probe (see httpapi.Readyz).
type Check = httpapi.Check

// Config for a Server.
//
// Zero values: every numeric field follows one rule, 0 means the default and
// a negative value turns the feature off. (The operator's settings turn a
// limit off with 0; cmd maps that to -1.)
type Config struct {
	Sales  Sales  // required
	Stock  Stock  // required
	Orders Orders // required
	Queue  Queue  // required
	// Reservations handles the reservation phase (see reservations.go); nil
	// answers 409 no_reservation and treats every sale as open to all.
	Reservations Reservations
	// Orders lifecycle: cancel (see orders.go). Required.
	Lifecycle Lifecycle
	// Strikes blocks users whose orders keep expiring unpaid (see
	// admission/strikes.go); nil: nobody is blocked.
	Strikes Strikes
	// Identity identifies users; default identity.Header{} (X-User-ID).
	Identity identity.Identifier
	// AdminToken guards admin endpoints; empty: they answer 503.
	AdminToken string
	// Admin checks the admin token, counting and logging failures; when set
	// it takes the place of AdminToken (a process shares one with its live
	// page). Default httpapi.NewAdminAuth(AdminToken, Registry, Log).
	Admin *httpapi.AdminAuth
	// LimitPerWindow is purchases admitted per sale per 10 ms on this node.
	// Default 50; negative: no limit.
	LimitPerWindow int
	// UserPurchasesPerSecond is each user's budget of purchase requests per
	// sale on this node that may reach the sale's window (see
	// admission/fairness.go); over it, a request is answered the user's live
	// ticket or 429, never admitted. Default 5; negative: off. Off too when
	// LimitPerWindow is off (there is no window to protect).
	UserPurchasesPerSecond int
	// UnknownLookups is each user's budget, on this node, of ticket and order
	// lookups that reach MySQL and find nothing, per 10 s (see lookupBudget);
	// past it their lookups of ids Redis does not know as theirs are 429.
	// Default (0) 3; negative: off.
	UnknownLookups int
	// ReadDeadline bounds every API read (GET under /api/); past it the
	// read is answered 503. Default 3 s; negative: none.
	ReadDeadline time.Duration
	// WriteDeadline bounds every other API request under /api/ but purchases:
	// sale creation, cancel, returns, reservations, the payment callback (one
	// lookup and one short transaction each, every one safe to retry). Default
	// 10 s; negative: none.
	WriteDeadline time.Duration
	// PurchaseDeadline bounds a purchase (single or bundle), which may wait up
	// to PublishTimeout for the broker's confirm (or for a double click's
	// ticket copy) after its checks and claims. Default PublishTimeout + 5 s;
	// it must exceed PublishTimeout. Negative: none.
	PurchaseDeadline time.Duration
	// PublishTimeout bounds the wait for the broker's confirm. Default 5 s; must
	// stay below the stock store's stale-claim age.
	PublishTimeout time.Duration
	// PublishGroups is how many groups of purchases may await the broker's
	// confirm at once; the purchases admitted meanwhile gather into the next
	// group (see admission's queuer). Default 4.
	PublishGroups int
	// MaxGroup is the most purchases in one message. Default 128.
	MaxGroup int
	// SoldOutMemory is how long this node answers a sale it saw sold out
	// without a claim (see admission's soldOutMemory): the longest it may
	// answer sold_out after units came back. Default 100 ms; negative: off.
	SoldOutMemory time.Duration
	// Line gives queued tickets their place in their sale's line (see
	// place.go). nil (tests of other things): queued tickets carry a null
	// position and no estimate.
	Line Line
	// WaitingLine reads the waiting rooms' lines (see waitingroom.go); nil:
	// a waiting room's entries read 0 and its draw is not served (404).
	WaitingLine WaitingLine
	// Decisions announces decided tickets to the ticket event streams and
	// the sales' paces (see streams.go). nil: streams read their tickets
	// every StreamReread, and no ETA is known.
	Decisions Decisions
	// StreamsPerUser is how many ticket event streams one user may hold open
	// on this node at a time; beyond, 429 rate_limited. Default 4.
	StreamsPerUser int
	// StreamReread is how often an event stream reads its ticket again, and
	// the places of every followed ticket are read, whether or not anything
	// was announced (announcements may be missed). Default 10 s; 1 s when
	// Decisions is nil.
	StreamReread time.Duration
	// Ready are the readiness checks of /readyz.
	Ready []Check
	// Registry receives HTTP metrics; Gatherer serves /metrics. Both optional.
	Registry prometheus.Registerer
	Gatherer prometheus.Gatherer
	// OpsElsewhere: /metrics and /readyz are served by the operations listener
	// (FLASHSALE_OPS_ADDR), not by this server. Default false: they are here.
	OpsElsewhere bool
	// Log default slog.Default().
	Log *slog.Logger
	// Now is the clock; default time.Now.
	Now func() time.Time
}

// Server is the ingress HTTP handler.
type Server struct {
	cfg       Config
	log       *slog.Logger
	engine    *gin.Engine
	admission *admission.Admission
	missing   negativeCache
	lookups   *lookupBudget
	requests  *prometheus.CounterVec
	latency   *prometheus.HistogramVec
	// purchases counts purchase answers by sale and outcome (metrics.go).
	purchases *purchaseCounter
	// pace and streams: the sales' paces and the ticket event streams (see
	// place.go, streams.go); openStreams counts the streams open.
	pace *paceBook
	// drawn counts each drawn line once (see drawnEntries).
	drawn       drawCounts
	streams     *streams
	openStreams prometheus.Gauge
}

// New builds the router.
func New(cfg Config) (*Server, error) {
	if cfg.Sales == nil || cfg.Stock == nil || cfg.Orders == nil || cfg.Queue == nil || cfg.Lifecycle == nil {
		return nil, errors.New("ingress: Sales, Stock, Orders, Queue and Lifecycle are required")
	}
	if cfg.Log == nil {
		cfg.Log = slog.Default()
	}
	if cfg.Identity == nil {
		cfg.Identity = identity.Header{}
	}
	if cfg.ReadDeadline == 0 {
		cfg.ReadDeadline = 3 * time.Second
	}
	if cfg.PublishTimeout == 0 {
		cfg.PublishTimeout = admission.DefaultPublishTimeout
	}
	if cfg.UnknownLookups == 0 {
		cfg.UnknownLookups = defaultUnknownLookups
	}
	if cfg.WriteDeadline == 0 {
		cfg.WriteDeadline = 10 * time.Second
	}
	if cfg.PurchaseDeadline == 0 {
		cfg.PurchaseDeadline = cfg.PublishTimeout + 5*time.Second
	}
	if cfg.PurchaseDeadline > 0 && cfg.PurchaseDeadline <= cfg.PublishTimeout {
		return nil, fmt.Errorf("ingress: PurchaseDeadline %s must exceed PublishTimeout %s (a purchase waits that long for the broker)", cfg.PurchaseDeadline, cfg.PublishTimeout)
	}
	if cfg.StreamsPerUser == 0 {
		cfg.StreamsPerUser = 4
	}
	if cfg.StreamReread == 0 {
		cfg.StreamReread = 10 * time.Second
		if cfg.Decisions == nil {
			cfg.StreamReread = time.Second
		}
	}
	if cfg.StreamsPerUser < 0 || cfg.StreamReread < 0 {
		return nil, errors.New("ingress: StreamsPerUser and StreamReread must be positive")
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Admin == nil {
		cfg.Admin = httpapi.NewAdminAuth(cfg.AdminToken, cfg.Registry, cfg.Log)
	}
	if !cfg.Admin.Enabled() {
		cfg.Log.Warn("FLASHSALE_ADMIN_TOKEN is not set: admin endpoints answer 503")
	}
	adm, err := admission.New(withWaitingLine(admission.Config{Sales: cfg.Sales, Stock: cfg.Stock, Book: cfg.Orders, Queue: cfg.Queue,
		Reservations: cfg.Reservations, Strikes: cfg.Strikes, LimitPerWindow: cfg.LimitPerWindow,
		UserPurchasesPerSecond: cfg.UserPurchasesPerSecond, PublishTimeout: cfg.PublishTimeout, PublishGroups: cfg.PublishGroups,
		MaxGroup: cfg.MaxGroup, SoldOutMemory: cfg.SoldOutMemory, Registry: cfg.Registry, Log: cfg.Log},
		cfg.WaitingLine, cfg.Stock))
	if err != nil {
		return nil, fmt.Errorf("ingress: %w", err)
	}
	s := &Server{cfg: cfg, log: cfg.Log, admission: adm, lookups: newLookupBudget(cfg.UnknownLookups, 10*time.Second),
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "flashsale_http_requests_total",
			Help: "HTTP requests answered, by route and status."}, []string{"route", "status"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "flashsale_http_request_seconds",
			Help: "HTTP request latency by route.", Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5}},
			[]string{"route"}),
	}
	s.openStreams = prometheus.NewGauge(prometheus.GaugeOpts{Name: "flashsale_ticket_streams",
		Help: "Ticket event streams open on this ingress."})
	if cfg.Registry != nil {
		cfg.Registry.MustRegister(s.requests, s.latency, s.openStreams)
	}
	s.pace = newPaceBook()
	s.streams = newStreams(s, cfg.StreamsPerUser, cfg.StreamReread)
	s.purchases = newPurchaseCounter(cfg.Registry)
	gin.SetMode(gin.ReleaseMode)
	e := gin.New()
	e.HandleMethodNotAllowed = false
	e.Use(s.recover, s.observe, s.deadline)
	e.NoRoute(func(c *gin.Context) { s.WriteError(c, flashsale.Errorf(flashsale.CodeNotFound, "no such endpoint")) })
	e.GET("/healthz", func(c *gin.Context) { c.JSON(http.StatusOK, gin.H{"status": "ok"}) })
	if !cfg.OpsElsewhere {
		e.GET("/readyz", httpapi.Readyz(s.log, cfg.Ready))
	}
	if cfg.Gatherer != nil && !cfg.OpsElsewhere {
		e.GET("/metrics", gin.WrapH(promhttp.HandlerFor(cfg.Gatherer, promhttp.HandlerOpts{})))
	}
	api := e.Group("/api/v1")
	api.POST("/sales", s.admin, s.createSale)
	api.GET("/sales/:id", s.getSale)
	api.POST("/sales/:id/purchase", s.user, s.countPurchase, s.purchase)
	api.GET("/tickets/:id", s.user, s.knownID, s.getTicket)
	api.GET("/tickets/:id/events", s.user, s.knownID, s.ticketEvents)
	api.POST("/tickets/:id/cancel", s.user, s.knownID, s.leaveLine)
	api.GET("/orders/:id", s.user, s.knownID, s.getOrder)
	api.POST("/orders/:id/cancel", s.user, s.knownID, s.cancelOrder)
	api.POST("/orders/:id/returns", s.admin, s.knownID, s.returnOrder)
	api.POST("/purchases", s.user, s.purchaseBundle)
	api.POST("/sales/:id/reservations", s.user, s.reserve)
	api.GET("/sales/:id/reservations/me", s.user, s.myReservation)
	api.GET("/sales/:id/draw", s.getDraw)
	api.GET("/sales/:id/draw/scores", s.getDrawScores)
	buyer, err := newBuyerPage()
	if err != nil {
		return nil, err
	}
	buyer.register(s, e)
	// The description of all of the above (api/openapi.yaml) and its
	// reference page, on the same listener.
	if err := apidesc.Register(e, s.log); err != nil {
		return nil, err
	}
	s.engine = e
	return s, nil
}

// Handler is the HTTP handler to serve.
func (s *Server) Handler() http.Handler { return s.engine }

// Streams is the service behind the ticket event streams (the subscription
// to decided tickets and the places' ticker, see streams.go): start it before
// the listener.
func (s *Server) Streams() service.Service { return s.streams }

// CloseStreams ends every open ticket event stream (their clients
// reconnect): for the HTTP server's RegisterOnShutdown, which otherwise
// waits for them.
func (s *Server) CloseStreams() { s.streams.Close() }

// Router lets other roles (payment, lifecycle) add their endpoints under the same
// server, error shape and middleware.
func (s *Server) Router() *gin.Engine { return s.engine }

func (s *Server) recover(c *gin.Context) {
	defer func() {
		if r := recover(); r != nil {
			s.log.Error("panic in handler", "path", c.FullPath(), "panic", r)
			s.WriteError(c, flashsale.Errorf(flashsale.CodeInternal, "internal error"))
		}
	}()
	c.Next()
}

func (s *Server) observe(c *gin.Context) {
	start := time.Now()
	c.Next()
	route := c.FullPath()
	if route == "" {
		route = "unmatched"
	}
	s.requests.WithLabelValues(route, strconv.Itoa(c.Writer.Status())).Inc()
	s.latency.WithLabelValues(route).Observe(time.Since(start).Seconds())
}
