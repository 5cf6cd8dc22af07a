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
	_ "net/http/pprof" // registers on http.DefaultServeMux, served only on FLASHSALE_PPROF_ADDR
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/flashsale/flashsale/bench"
	"github.com/flashsale/flashsale/mysqlstore"
	"github.com/flashsale/flashsale/queue"
	"github.com/flashsale/flashsale/service"
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
	for _, w := range cfg.Warnings {
		log.Warn(w)
	}
	if err := run(ctx, cmd, want, cfg, ocfg, log); err != nil {
		if errors.Is(err, mysqlstore.ErrShardList) { // a bad setting, as far as this process can tell
			verb := "start"
			if cmd == "migrate" {
				verb = "migrate"
			}
			log.Error("refusing to "+verb+": the shard list is not the recorded one", "err", err)
			os.Exit(2)
		}
		log.Error("exiting", "err", err)
		os.Exit(1)
	}
}

func (c *config) mysql() mysqlstore.Config {
	return mysqlstore.Config{MetaDSN: c.MetaDSN, ShardDSNs: c.ShardDSNs}
}

// openStore opens the MySQL store and compares its shard list with the one
// recorded in the meta database (mysqlstore.Store.CheckShards) before anything
// uses it. A list that differs is an error wrapping mysqlstore.ErrShardList;
// nothing recorded yet is a warning (run migrate to record it). When MySQL
// does not answer the check, openStore retries every few seconds until ctx
// ends if wait is set (a role started during an outage starts once MySQL is
// back, as it would have before the check), and returns the error otherwise.
// The store is closed when openStore fails.
func openStore(ctx context.Context, cfg *config, log *slog.Logger, wait bool) (*mysqlstore.Store, error) {
	store, err := mysqlstore.Open(cfg.mysql())
	if err != nil {
		return nil, err
	}
	backoff := 250 * time.Millisecond
	for {
		cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		recorded, err := store.CheckShards(cctx)
		cancel()
		switch {
		case err == nil && !recorded:
			log.Warn("the shard list is not recorded in the meta database yet: run flashsale migrate to record it; " +
				"until then nothing refuses a process started with another FLASHSALE_MYSQL_SHARD_DSNS")
			return store, nil
		case err == nil:
			return store, nil
		case errors.Is(err, mysqlstore.ErrShardList) || !wait:
			store.Close()
			return nil, namedShardList(err)
		}
		log.Warn("cannot compare the shard list with the record yet; retrying", "err", err, "in", backoff)
		if !service.Sleep(ctx, backoff) {
			store.Close()
			return nil, fmt.Errorf("stopped before the shard list was checked: %w", ctx.Err())
		}
		backoff = min(2*backoff, 5*time.Second)
	}
}

// namedShardList names the setting in an error about the shard list.
func namedShardList(err error) error {
	if errors.Is(err, mysqlstore.ErrShardList) {
		return fmt.Errorf("FLASHSALE_MYSQL_SHARD_DSNS: %w", err)
	}
	return err
}

// queue is the broker configuration of one role: its consumers retry under
// the one rule (queue.Retry) with FLASHSALE_RETRY_BUDGET_SECONDS, handing
// their failing messages back at once when the process stops (stopping).
func (c *config) queue(log *slog.Logger, name string, m *queue.Metrics, stopping <-chan struct{}) queue.Config {
	return queue.Config{URLs: c.AMQPURLs, Topology: queue.Topology{Namespace: c.Namespace}, Log: log, Name: "flashsale " + name, Metrics: m,
		Retry: queue.Retry{Budget: c.RetryBudget, Stopping: stopping}}
}

// run migrates (migrate, all), then runs the process: the services of its
// roles, started in order and stopped in reverse, until ctx ends.
func run(ctx context.Context, cmd string, roles []string, cfg *config, ocfg opsConfig, log *slog.Logger) error {
	if cmd == "migrate" || cmd == "all" {
		mctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
		err := mysqlstore.Migrate(mctx, cfg.mysql(), log)
		cancel()
		if err != nil {
			return namedShardList(err)
		}
		log.Info("schema is up to date")
		if cmd == "migrate" {
			return nil
		}
	}
	p, err := open(ctx, cfg, ocfg, roles, log)
	defer p.close()
	if ctx.Err() != nil { // SIGINT/SIGTERM while open waited for MySQL: a graceful stop
		log.Info("stopped")
		return nil
	}
	if err != nil {
		return err
	}
	g := &service.Group{Log: log}
	list, err := p.services(g, cmd, roles)
	if err != nil {
		return err
	}
	for _, s := range list {
		g.Add(s.name, s.svc)
	}
	if err := g.Run(ctx, cfg.ShutdownGrace); err != nil {
		return err
	}
	log.Info("stopped")
	return nil
}
