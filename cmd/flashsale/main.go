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
	"os"
	"os/signal"
	"sync"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/flashsale/flashsale/bench"
	"github.com/flashsale/flashsale/catalog"
	"github.com/flashsale/flashsale/ingress"
	"github.com/flashsale/flashsale/mysqlstore"
	"github.com/flashsale/flashsale/queue"
	"github.com/flashsale/flashsale/redisstore"
	"github.com/flashsale/flashsale/worker"
)

const usage = `usage: flashsale <command> [flags]

commands:
  migrate    create or upgrade the schema on the meta database and every shard
  all        every role in one process (runs migrate first)
  ingress    the HTTP API
  worker     the purchase-queue consumer
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
	roles := map[string][]string{
		"all":     {"ingress", "worker"},
		"ingress": {"ingress"},
		"worker":  {"worker"},
		"migrate": nil,
	}
	want, ok := roles[cmd]
	if !ok {
		fmt.Fprintf(os.Stderr, "flashsale: unknown command %q\n\n%s", cmd, usage)
		os.Exit(2)
	}
	fs := flag.NewFlagSet("flashsale "+cmd, flag.ContinueOnError)
	cfg, err := loadConfig(fs, args)
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			os.Exit(0)
		}
		fmt.Fprintf(os.Stderr, "flashsale: %v\n", err)
		os.Exit(2)
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: cfg.LogLevel})).With("role", cmd)
	if err := run(ctx, cmd, want, cfg, log); err != nil {
		log.Error("exiting", "err", err)
		os.Exit(1)
	}
}

func (c *config) mysql() mysqlstore.Config {
	return mysqlstore.Config{MetaDSN: c.MetaDSN, ShardDSNs: c.ShardDSNs}
}

func (c *config) queue(log *slog.Logger, name string) queue.Config {
	return queue.Config{URL: c.AMQPURL, Topology: queue.Topology{Namespace: c.Namespace}, Log: log, Name: "flashsale " + name}
}

// run starts the roles and blocks until ctx ends, then stops them in order.
func run(ctx context.Context, cmd string, roles []string, cfg *config, log *slog.Logger) error {
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
	rs, err := redisstore.New(redisstore.Config{Addrs: cfg.RedisAddrs, Namespace: cfg.Namespace, Source: store, Log: log})
	if err != nil {
		return err
	}
	defer rs.Close()
	sales, err := catalog.New(catalog.Config{Store: store, Stock: rs})
	if err != nil {
		return err
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))

	// Intake (HTTP) stops first; consumers after it, so what was admitted during
	// shutdown is still processed or handed back to the queue.
	var intake, consumers []func(context.Context)
	var wg sync.WaitGroup
	errs := make(chan error, 4)
	workCtx, stopWork := context.WithCancel(context.WithoutCancel(ctx))
	defer stopWork()
	for _, role := range roles {
		switch role {
		case "ingress":
			pub, err := queue.NewPublisher(cfg.queue(log, "ingress"))
			if err != nil {
				return err
			}
			defer pub.Close()
			srv, err := ingress.New(ingress.Config{Sales: sales, Stock: rs, Orders: store, Queue: pub,
				AdminToken: cfg.AdminToken, LimitPerWindow: cfg.LimitPerWindow, Registry: reg, Gatherer: reg, Log: log,
				Ready: []ingress.Check{rs.Ping, func(context.Context) error { return pub.Ready() }, store.Ping}})
			if err != nil {
				return err
			}
			hs := &http.Server{Addr: cfg.HTTPAddr, Handler: srv.Handler(), ReadHeaderTimeout: 5 * time.Second,
				ReadTimeout: 10 * time.Second, WriteTimeout: 15 * time.Second, IdleTimeout: 60 * time.Second,
				ErrorLog: slog.NewLogLogger(log.Handler(), slog.LevelWarn)}
			wg.Add(1)
			go func() {
				defer wg.Done()
				log.Info("ingress listening", "addr", cfg.HTTPAddr)
				if err := hs.ListenAndServe(); err != nil && !errors.Is(err, http.ErrServerClosed) {
					errs <- fmt.Errorf("ingress: %w", err)
				}
			}()
			intake = append(intake, func(c context.Context) { hs.Shutdown(c) })
		case "worker":
			w, err := worker.New(worker.Config{Sales: sales, Stock: rs, Orders: store, Log: log, Registry: reg})
			if err != nil {
				return err
			}
			qc := cfg.queue(log, "worker")
			start := func(q string, h func(context.Context, []worker.Message)) {
				wg.Add(1)
				go func() {
					defer wg.Done()
					err := queue.Consume(workCtx, qc, queue.ConsumerConfig{Queue: q}, func(ctx context.Context, b []queue.Delivery) {
						msgs := make([]worker.Message, len(b))
						for i, d := range b {
							msgs[i] = d
						}
						h(ctx, msgs)
					})
					if err != nil {
						errs <- err
					}
				}()
			}
			for i := 0; i < 2; i++ {
				start(qc.Topology.PurchaseQueue(), w.HandlePurchases)
			}
			start(qc.Topology.DeadQueue(), w.HandleDeadLetters)
			consumers = append(consumers, func(context.Context) { stopWork() })
		}
	}
	var runErr error
	select {
	case <-ctx.Done():
		log.Info("shutting down")
	case runErr = <-errs:
	}
	grace, cancel := context.WithTimeout(context.Background(), time.Duration(cfg.ShutdownGrace)*time.Second)
	defer cancel()
	for _, stop := range append(intake, consumers...) {
		stop(grace)
	}
	stopWork()
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-grace.Done():
		log.Warn("in-flight work did not finish within the grace period; the broker requeues it")
	}
	if runErr == nil {
		log.Info("stopped")
	}
	return runErr
}
