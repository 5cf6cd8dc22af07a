package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"slices"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/flashsale/flashsale/catalog"
	"github.com/flashsale/flashsale/delayq"
	"github.com/flashsale/flashsale/httpapi"
	"github.com/flashsale/flashsale/ingress"
	"github.com/flashsale/flashsale/inventory"
	"github.com/flashsale/flashsale/lifecycle"
	"github.com/flashsale/flashsale/mysqlstore"
	"github.com/flashsale/flashsale/ops"
	"github.com/flashsale/flashsale/payment"
	"github.com/flashsale/flashsale/queue"
	"github.com/flashsale/flashsale/redisstore"
	"github.com/flashsale/flashsale/relay"
	"github.com/flashsale/flashsale/reservation"
	"github.com/flashsale/flashsale/service"
	"github.com/flashsale/flashsale/waitroom"
	"github.com/flashsale/flashsale/worker"
)

// process is what the roles of one process share: the stores and routers
// every role builds on, the metrics registry, the operations surface.
type process struct {
	cfg          *config
	log          *slog.Logger
	reg          *prometheus.Registry
	qm           *queue.Metrics
	store        *mysqlstore.Store
	rs           *redisstore.Store
	sales        *catalog.Catalog
	reservations *reservation.Service
	stock        *inventory.Router // every role holds stock through it: Redis, or MySQL for sales with inventory "mysql"
	strikes      *redisstore.Strikes
	lc           *lifecycle.Service
	ops          *opsSurface
	storeChecks  []httpapi.Check    // the readiness checks of Redis and MySQL, named
	admin        *httpapi.AdminAuth // the admin endpoints' and the live page's
	closers      []func() error     // closed in reverse by close
}

// open builds the shared parts, once the shard list is the recorded one
// (openStore: it waits for MySQL until ctx ends). The process is to be closed
// even when open fails: it closes what was opened.
func open(ctx context.Context, cfg *config, ocfg opsConfig, roles []string, log *slog.Logger) (*process, error) {
	p := &process{cfg: cfg, log: log, reg: prometheus.NewRegistry()}
	p.reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	p.qm = queue.NewMetrics(p.reg)
	var err error
	if p.store, err = openStore(ctx, cfg, log, true); err != nil {
		return p, err
	}
	p.closers = append(p.closers, p.store.Close)
	p.rs, err = redisstore.New(redisstore.Config{Addrs: cfg.RedisAddrs, Segments: cfg.RedisSegments, Namespace: cfg.Namespace,
		Source: p.store, Log: log, Registry: p.reg})
	if err != nil {
		return p, err
	}
	p.closers = append(p.closers, p.rs.Close)
	if warning, err := p.rs.CheckEviction(context.Background()); err != nil {
		return p, err
	} else if warning != "" {
		log.Warn(warning)
	}
	if p.sales, err = catalog.New(catalog.Config{Store: p.store, Stock: p.rs}); err != nil {
		return p, err
	}
	if p.reservations, err = reservation.New(reservation.Config{Book: p.store, Cache: p.rs, Log: log}); err != nil {
		return p, err
	}
	if p.stock, err = inventory.New(p.rs, p.store, p.sales); err != nil {
		return p, err
	}
	p.strikes = p.rs.Strikes(cfg.UnpaidStrikes, cfg.UnpaidStrikeWindow)
	if p.lc, err = lifecycle.New(lifecycle.Config{Book: p.store, Stock: p.stock, Strikes: p.strikes, Log: log}); err != nil {
		return p, err
	}
	p.admin = httpapi.NewAdminAuth(cfg.AdminToken, p.reg, log)
	if p.ops, err = newOpsSurface(ocfg, cfg, roles, p.reg, p.admin, log); err != nil {
		return p, err
	}
	p.storeChecks = []httpapi.Check{httpapi.Named("redis", p.rs.Ping), httpapi.Named("mysql", p.store.Ping)}
	p.ops.ready = append(p.ops.ready, p.storeChecks...)
	return p, nil
}

// close closes what open opened, in reverse.
func (p *process) close() {
	for i := len(p.closers) - 1; i >= 0; i-- {
		p.closers[i]()
	}
}

// named is a service and the name the group logs it by.
type named struct {
	name string
	svc  service.Service
}

// A role contributes the services it needs, in the order they start, and
// its listeners, which start after every role's services (so that intake
// opens once what is behind it is ready, and closes first). Each role has its
// own broker connections (qc): a publisher blocked by a memory alarm never
// stalls a consumer.
type role func(p *process, g *service.Group, qc queue.Config) (services, listeners []named, err error)

var roleServices = map[string]role{
	"ingress": (*process).ingress,
	"worker":  (*process).worker,
	"delayq":  (*process).delayq,
	"relay":   (*process).relay,
}

// services is the process's list: the pprof listener, each role's services,
// the operations surface's, then the listeners.
func (p *process) services(g *service.Group, cmd string, roles []string) ([]named, error) {
	var list, listeners []named
	if p.cfg.PprofAddr != "" && p.cfg.PprofAddr != p.ops.cfg.Addr { // the operations listener serves pprof too
		list = append(list, named{"pprof", &pprofListener{addr: p.cfg.PprofAddr, cmdline: p.cfg.Cmdline, log: p.log}})
	}
	for _, r := range roles {
		s, l, err := roleServices[r](p, g, p.cfg.queue(p.log, r, p.qm, g.Stopping()))
		if err != nil {
			return nil, err
		}
		list, listeners = append(list, s...), append(listeners, l...)
	}
	s, l, err := p.ops.services(p, g, cmd)
	if err != nil {
		return nil, err
	}
	return append(append(append(list, s...), listeners...), l...), nil
}

func (p *process) ingress(g *service.Group, qc queue.Config) ([]named, []named, error) {
	cfg, ocfg := p.cfg, p.ops.cfg
	pub, err := queue.NewPublisher(qc)
	if err != nil {
		return nil, nil, err
	}
	pubReady := httpapi.Named("rabbitmq", func(context.Context) error { return pub.Ready() })
	srv, err := ingress.New(ingress.Config{Sales: p.sales, Stock: p.stock, Orders: p.store, Queue: pub, Lifecycle: p.lc,
		Reservations: p.reservations, AdminToken: cfg.AdminToken, Admin: p.admin, LimitPerWindow: offIfZero(cfg.LimitPerWindow),
		PublishGroups: cfg.PublishGroups, Registry: p.reg, Gatherer: p.reg, Log: p.log, Identity: cfg.Identity,
		UserPurchasesPerSecond: offIfZero(cfg.UserPurchasesPerSecond), Strikes: p.strikes, Line: p.rs, Decisions: p.rs, WaitingLine: p.store,
		Ready: append(slices.Clone(p.storeChecks), pubReady), OpsElsewhere: ocfg.Addr != ""})
	if err != nil {
		return nil, nil, err
	}
	pay, err := payment.New(payment.Config{Payer: p.lc, Secrets: cfg.PaymentSecrets, Log: p.log})
	if err != nil {
		return nil, nil, err
	}
	pay.Register(srv.Router())
	p.ops.ready = append(p.ops.ready, pubReady)
	hs := &http.Server{Addr: cfg.HTTPAddr, Handler: srv.Handler(), ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout: 10 * time.Second, WriteTimeout: 15 * time.Second, IdleTimeout: 60 * time.Second,
		MaxHeaderBytes: maxHeaderBytes, ErrorLog: slog.NewLogLogger(p.log.Handler(), slog.LevelWarn)}
	// Ticket event streams never end by themselves: closed on shutdown, their
	// clients reconnect.
	hs.RegisterOnShutdown(srv.CloseStreams)
	if ocfg.Addr == "" && p.ops.live != nil { // without an operations listener, the live page is here
		p.ops.live.Register(srv.Router())
		hs.RegisterOnShutdown(p.ops.live.Close)
	}
	p.log.Info("identities", "user_auth", cfg.UserAuth)
	return []named{{"ingress publisher", pub}, {"ticket streams", srv.Streams()}},
		[]named{{"listener", &service.HTTP{Server: hs, Fail: g.Fail, Log: p.log.With("listener", "ingress"), MaxConns: cfg.MaxConns}}}, nil
}

func (p *process) worker(_ *service.Group, qc queue.Config) ([]named, []named, error) {
	// One publisher: the expiries the worker schedules and the waiting
	// rooms' releases.
	pub, err := queue.NewPublisher(qc)
	if err != nil {
		return nil, nil, err
	}
	w, err := worker.New(worker.Config{Sales: p.sales, Stock: p.stock, Orders: p.store,
		Expiries: delayq.NewScheduler(pub, nil), Log: p.log, Registry: p.reg})
	if err != nil {
		return nil, nil, err
	}
	top := qc.Topology
	// One connection, FLASHSALE_WORKER_HANDLERS handlers (see
	// queue.ConsumerConfig.Handlers), 128 unacked deliveries each. A worker
	// waits on Redis and MySQL, not on its CPU: 10,000 purchases queued
	// before one worker started (bench --preload) became orders at 3,872/s
	// with 8 handlers of batches of 100 and 6,080/s with 32 of 300, the
	// defaults (BENCHMARKS.md, "Cost of an order").
	purchases, err := queue.NewConsumer(qc, queue.ConsumerConfig{Queue: top.PurchaseQueue(),
		Handlers: p.cfg.WorkerHandlers, BatchSize: p.cfg.WorkerBatch, Prefetch: min(128*p.cfg.WorkerHandlers, 65535),
		DeadExchange: top.DeadExchange(), DeadKey: queue.PurchaseKey}, w.HandlePurchases)
	if err != nil {
		return nil, nil, err
	}
	dead, err := queue.NewConsumer(qc, queue.ConsumerConfig{Queue: top.DeadQueue()}, w.HandleDeadLetters)
	if err != nil {
		return nil, nil, err
	}
	// The background reconciler runs in every worker process; a lease elects
	// one runner.
	rec, err := newReconciler(p.cfg, p.store, p.rs, p.log, p.reg)
	if err != nil {
		return nil, nil, err
	}
	// The waiting rooms' releaser, too: a lease elects one runner; it
	// publishes the lines' tickets as purchases.
	wr, err := waitroom.New(waitroom.Config{Sales: p.store, Line: p.store, Stock: p.stock, Book: p.store, Queue: pub,
		Leases: p.rs.Leases(), Namespace: p.cfg.Namespace, Log: p.log})
	if err != nil {
		return nil, nil, err
	}
	return []named{{"purchase consumer", purchases}, {"dead-letter consumer", dead}, {"reconciler", rec},
		{"worker publisher", pub}, {"waiting rooms' releaser", wr}}, nil, nil
}

func (p *process) delayq(_ *service.Group, qc queue.Config) ([]named, []named, error) {
	pub, err := queue.NewPublisher(qc)
	if err != nil {
		return nil, nil, err
	}
	dq, err := delayq.New(delayq.Config{Delayer: pub, Expirer: p.lc, Due: p.store, Leases: p.store.Leases(),
		Namespace: p.cfg.Namespace, SweepInterval: p.cfg.SweepInterval, Log: p.log, Registry: p.reg})
	if err != nil {
		return nil, nil, err
	}
	expiry, err := queue.NewConsumer(qc, queue.ConsumerConfig{Queue: qc.Topology.ExpiryQueue()}, dq.HandleExpiry)
	if err != nil {
		return nil, nil, err
	}
	return []named{{"delayq publisher", pub}, {"expiry consumer", expiry}, {"sweeper", dq}}, nil, nil
}

func (p *process) relay(_ *service.Group, qc queue.Config) ([]named, []named, error) {
	pub, err := queue.NewPublisher(qc)
	if err != nil {
		return nil, nil, err
	}
	host, _ := os.Hostname()
	r, err := relay.New(relay.Config{Outbox: p.store, Publisher: pub, Leases: p.store.Leases(), Namespace: p.cfg.Namespace,
		Owner: fmt.Sprintf("%s/%d", host, os.Getpid()), Retention: p.cfg.OutboxRetention, Written: p.store.OutboxWritten,
		Log: p.log, Registry: p.reg})
	if err != nil {
		return nil, nil, err
	}
	return []named{{"relay publisher", pub}, {"relay", r}}, nil, nil
}

// pprofListener serves net/http/pprof (FLASHSALE_PPROF_ADDR) on a listener of
// its own, never on the public API, with cmdline (secrets redacted) in place
// of pprof's os.Args. It is optional: an address it cannot bind, or a
// listener that fails, is logged, and the process goes on.
type pprofListener struct {
	service.Runner
	addr    string
	cmdline []string
	log     *slog.Logger
}

func (l *pprofListener) Start(ctx context.Context) error { return l.Go(ctx, l.serve) }

func (l *pprofListener) serve(ctx context.Context, ready func()) {
	defer ready()
	l.log.Info("pprof listening", "addr", l.addr)
	ln, err := net.Listen("tcp", l.addr)
	if err != nil {
		l.log.Warn("pprof stopped", "err", err)
		return
	}
	mux := http.NewServeMux()
	mux.Handle("/debug/pprof/cmdline", ops.Cmdline(l.cmdline))
	mux.Handle("/", http.DefaultServeMux)
	srv := &http.Server{Handler: mux}
	stop := context.AfterFunc(ctx, func() { srv.Close() })
	defer stop()
	ready()
	if err := srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
		l.log.Warn("pprof stopped", "err", err)
	}
}

// offIfZero maps a limit an operator turned off with 0 to the packages'
// "negative: off" (their 0 is the default).
func offIfZero(n int) int {
	if n == 0 {
		return -1
	}
	return n
}
