// Command flashsale runs the flash-sale system: one binary, one subcommand per
// role (see usage). Only this package reads the environment; it builds every
// adapter and role from its documented Config and wires them together.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net/http"
	_ "net/http/pprof" // registers on http.DefaultServeMux, served only on FLASHSALE_PPROF_ADDR
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/flashsale/flashsale"
	"github.com/flashsale/flashsale/bench"
	"github.com/flashsale/flashsale/catalog"
	"github.com/flashsale/flashsale/delayq"
	"github.com/flashsale/flashsale/ingress"
	"github.com/flashsale/flashsale/inventory"
	"github.com/flashsale/flashsale/lifecycle"
	"github.com/flashsale/flashsale/mysqlstore"
	"github.com/flashsale/flashsale/payment"
	"github.com/flashsale/flashsale/queue"
	"github.com/flashsale/flashsale/redisstore"
	"github.com/flashsale/flashsale/relay"
	"github.com/flashsale/flashsale/reservation"
	"github.com/flashsale/flashsale/service"
	"github.com/flashsale/flashsale/worker"
)

const usage = `usage: flashsale <command> [flags]

commands:
  migrate    create or upgrade the schema on the meta database and every shard
  all        every role in one process (runs migrate first)
  ingress    the HTTP API (purchases, reads, cancel, payment webhook)
  worker     the purchase-queue consumer
  delayq     expiry of unpaid orders (delay queues + sweeper)
  relay      publishes the outbox to the events exchange
  reconcile  compares Redis with MySQL for every sale; --repair fixes Redis (flashsale reconcile -h)
  bench      the load generator (flashsale bench -h)

Configuration comes from FLASHSALE_* variables; flags override them (flashsale all -h).
`

func main() {
	if len(os.Args) < 2 {
		fmt.Fprint(os.Stderr, usage)
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	cmd, args := os.Args[1], os.Args[2:]
	if cmd == "bench" {
		os.Exit(bench.Main(ctx, args, os.Stdout, os.Stderr))
	}
	if cmd == "reconcile" {
		os.Exit(reconcileMain(ctx, args, os.Stdout, os.Stderr))
	}
	roles := map[string][]string{
		"all":     {"ingress", "worker", "delayq", "relay"},
		"ingress": {"ingress"},
		"worker":  {"worker"},
		"delayq":  {"delayq"},
		"relay":   {"relay"},
		"migrate": nil,
	}
	want, ok := roles[cmd]
	if !ok {
		fmt.Fprintf(os.Stderr, "flashsale: unknown command %q\n\n%s", cmd, usage)
		os.Exit(2)
	}
	fs := flag.NewFlagSet("flashsale "+cmd, flag.ContinueOnError)
	opsCfg := opsFlags(fs)
	cfg, err := loadConfig(fs, args)
	var ocfg opsConfig
	if err == nil {
		ocfg, err = opsCfg()
	}
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			os.Exit(0)
		}
		fmt.Fprintf(os.Stderr, "flashsale: %v\n", err)
		os.Exit(2)
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: cfg.LogLevel})).With("role", cmd)
	for _, w := range cfg.Weak {
		log.Warn("a secret is shorter than 16 bytes; anyone who can try it may guess it: use a longer one", "setting", w)
	}
	if err := run(ctx, cmd, want, cfg, ocfg, log); err != nil {
		log.Error("exiting", "err", err)
		os.Exit(1)
	}
}

func (c *config) mysql() mysqlstore.Config {
	return mysqlstore.Config{MetaDSN: c.MetaDSN, ShardDSNs: c.ShardDSNs}
}

func (c *config) queue(log *slog.Logger, name string, m *queue.Metrics) queue.Config {
	return queue.Config{URLs: c.AMQPURLs, Topology: queue.Topology{Namespace: c.Namespace}, Log: log, Name: "flashsale " + name, Metrics: m}
}

// consume adds a consumer (one connection), handing batches to h.
func consume(g *service.Group, name string, qc queue.Config, cc queue.ConsumerConfig, h flashsale.Handler) {
	g.Go(name, func(ctx context.Context) error { return queue.Consume(ctx, qc, cc, h) })
}

// closer adds a service that closes c when the group stops (after everything
// added later stopped).
func closer(g *service.Group, name string, c func() error) {
	g.Go(name, func(ctx context.Context) error { <-ctx.Done(); return c() })
}

// run starts the roles and blocks until ctx ends, then stops them in order.
func run(ctx context.Context, cmd string, roles []string, cfg *config, ocfg opsConfig, log *slog.Logger) error {
	if cmd == "migrate" || cmd == "all" {
		mctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
		err := mysqlstore.Migrate(mctx, cfg.mysql(), log)
		cancel()
		if err != nil {
			return err
		}
		log.Info("schema is up to date")
		if cmd == "migrate" {
			return nil
		}
	}
	store, err := mysqlstore.Open(cfg.mysql())
	if err != nil {
		return err
	}
	defer store.Close()
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	rs, err := redisstore.New(redisstore.Config{Addrs: cfg.RedisAddrs, Segments: cfg.RedisSegments, Namespace: cfg.Namespace, Source: store, Log: log, Registry: reg})
	if err != nil {
		return err
	}
	defer rs.Close()
	sales, err := catalog.New(catalog.Config{Store: store, Stock: rs})
	if err != nil {
		return err
	}
	reservations, err := reservation.New(reservation.Config{Book: store, Cache: rs, Log: log})
	if err != nil {
		return err
	}
	// Every role holds stock through the router: Redis, or MySQL for sales with
	// inventory "mysql".
	stock, err := inventory.New(rs, store, sales)
	if err != nil {
		return err
	}
	strikes := rs.Strikes(cfg.UnpaidStrikes, cfg.UnpaidStrikeWindow)
	lc, err := lifecycle.New(lifecycle.Config{Book: store, Stock: stock, Strikes: strikes, Log: log})
	if err != nil {
		return err
	}
	if cfg.PprofAddr != "" && cfg.PprofAddr != ocfg.Addr { // the operations listener serves pprof too
		// Profiles on a listener of their own, never on the public API.
		go func() {
			log.Info("pprof listening", "addr", cfg.PprofAddr)
			log.Warn("pprof stopped", "err", http.ListenAndServe(cfg.PprofAddr, nil))
		}()
	}
	opsSurf, err := newOpsSurface(ocfg, cfg, roles, reg, log)
	if err != nil {
		return err
	}
	opsSurf.ready = append(opsSurf.ready, rs.Ping, store.Ping)

	// The process is a list of services, started in order and stopped in
	// reverse: the roles' consumers and jobs first, the operations surface,
	// then the HTTP intake last (so it stops first).
	g := &service.Group{Log: log}
	qm := queue.NewMetrics(reg)
	var intake []service.Service
	for _, role := range roles {
		// Each role has its own broker connections: a publisher blocked by a
		// memory alarm never stalls a consumer.
		qc := cfg.queue(log, role, qm)
		switch role {
		case "ingress":
			pub, err := queue.NewPublisher(qc)
			if err != nil {
				return err
			}
			closer(g, "ingress publisher", pub.Close)
			srv, err := ingress.New(ingress.Config{Sales: sales, Stock: stock, Orders: store, Queue: pub, Lifecycle: lc, Reservations: reservations,
				AdminToken: cfg.AdminToken, LimitPerWindow: cfg.LimitPerWindow, PublishGroups: cfg.PublishGroups, Registry: reg, Gatherer: reg, Log: log,
				Identity: cfg.Identity, UserPurchasesPerSecond: cfg.UserPurchasesPerSecond, Strikes: strikes,
				Ready: []ingress.Check{rs.Ping, func(context.Context) error { return pub.Ready() }, store.Ping}, OpsElsewhere: ocfg.Addr != ""})
			if err != nil {
				return err
			}
			pay, err := payment.New(payment.Config{Payer: lc, Secrets: cfg.PaymentSecrets, Log: log})
			if err != nil {
				return err
			}
			pay.Register(srv.Router())
			opsSurf.ready = append(opsSurf.ready, func(context.Context) error { return pub.Ready() })
			if ocfg.Addr == "" && opsSurf.live != nil {
				opsSurf.live.Register(srv.Router()) // without an operations listener, the live page is here
			}
			hs := &http.Server{Addr: cfg.HTTPAddr, Handler: srv.Handler(), ReadHeaderTimeout: 5 * time.Second,
				ReadTimeout: 10 * time.Second, WriteTimeout: 15 * time.Second, IdleTimeout: 60 * time.Second,
				MaxHeaderBytes: maxHeaderBytes,
				ErrorLog:       slog.NewLogLogger(log.Handler(), slog.LevelWarn)}
			if ocfg.Addr == "" && opsSurf.live != nil {
				hs.RegisterOnShutdown(opsSurf.live.Close)
			}
			log.Info("identities", "user_auth", cfg.UserAuth)
			intake = append(intake, &service.HTTP{Server: hs, Fail: g.Fail, Log: log.With("listener", "ingress")})
		case "worker":
			w, err := worker.New(worker.Config{Sales: sales, Stock: stock, Orders: store, Log: log, Registry: reg,
				RetryBudget: cfg.RetryBudget, Stopping: g.Stopping()})
			if err != nil {
				return err
			}
			top := qc.Topology
			// One connection, eight handlers: see queue.ConsumerConfig.Handlers.
			consume(g, "purchase consumer", qc, queue.ConsumerConfig{Queue: top.PurchaseQueue(), Handlers: 8, Prefetch: 1024,
				DeadExchange: top.DeadExchange(), DeadKey: queue.PurchaseKey}, w.HandlePurchases)
			consume(g, "dead-letter consumer", qc, queue.ConsumerConfig{Queue: top.DeadQueue()}, w.HandleDeadLetters)
			// The background reconciler runs in every worker process; a lease
			// elects one runner.
			rec, err := newReconciler(cfg, store, rs, log, reg)
			if err != nil {
				return err
			}
			g.Go("reconciler", func(ctx context.Context) error { rec.Run(ctx); return nil })
		case "delayq":
			pub, err := queue.NewPublisher(qc)
			if err != nil {
				return err
			}
			closer(g, "delayq publisher", pub.Close)
			dq, err := delayq.New(delayq.Config{Delayer: pub, Expirer: lc, Due: store, Leases: rs.Leases(),
				Namespace: cfg.Namespace, SweepInterval: cfg.SweepInterval, Log: log, Registry: reg})
			if err != nil {
				return err
			}
			consume(g, "order.created consumer", qc, queue.ConsumerConfig{Queue: qc.Topology.CreatedQueue()}, dq.HandleCreated)
			consume(g, "expiry consumer", qc, queue.ConsumerConfig{Queue: qc.Topology.ExpiryQueue()}, dq.HandleExpiry)
			g.Go("sweeper", func(ctx context.Context) error { dq.RunSweeper(ctx); return nil })
		case "relay":
			pub, err := queue.NewPublisher(qc)
			if err != nil {
				return err
			}
			closer(g, "relay publisher", pub.Close)
			host, _ := os.Hostname()
			r, err := relay.New(relay.Config{Outbox: store, Publisher: pub, Leases: rs.Leases(), Namespace: cfg.Namespace,
				Owner: fmt.Sprintf("%s/%d", host, os.Getpid()), Retention: cfg.OutboxRetention, Log: log, Registry: reg})
			if err != nil {
				return err
			}
			g.Go("relay", func(ctx context.Context) error { r.Run(ctx); return nil })
		}
	}
	opsIntake, err := opsSurf.services(g, cmd, cfg, store, stock, reg, log)
	if err != nil {
		return err
	}
	for _, s := range append(intake, opsIntake...) {
		g.Add("listener", s)
	}
	if err := g.Run(ctx, cfg.ShutdownGrace); err != nil {
		return err
	}
	log.Info("stopped")
	return nil
}
