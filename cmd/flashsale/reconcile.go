package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/flashsale/flashsale/mysqlstore"
	"github.com/flashsale/flashsale/reconcile"
	"github.com/flashsale/flashsale/redisstore"
)

// newReconciler builds the reconciler on the process's stores.
func newReconciler(cfg *config, store *mysqlstore.Store, rs *redisstore.Store, log *slog.Logger, reg prometheus.Registerer) (*reconcile.Reconciler, error) {
	return reconcile.New(reconcile.Config{Book: store, Stock: rs, Leases: rs.Leases(),
		Namespace: cfg.Namespace, Interval: cfg.ReconcileInterval, Log: log, Registry: reg})
}

// reconcileMain is `flashsale reconcile`: one reconciliation over every sale.
// Exit status: 0 when Redis and MySQL agree (after repairs, with --repair), 1
// when a difference remains, 2 when the command could not run.
func reconcileMain(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("flashsale reconcile", flag.ContinueOnError)
	fs.SetOutput(stderr)
	asJSON := fs.Bool("json", false, "print the report as JSON")
	repair := fs.Bool("repair", false, "repair Redis from MySQL where a difference is seen in both looks")
	release := fs.Bool("release-unordered", false,
		"with --repair, also release holds without an order and fail their tickets (only when no purchase is in flight)")
	settle := fs.Duration("settle", 2*time.Second, "wait before the second look, when the first found differences")
	cfg, err := loadConfig(fs, args)
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		fmt.Fprintf(stderr, "flashsale reconcile: %v\n", err)
		return 2
	}
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: cfg.LogLevel})).With("role", "reconcile")
	rep, err := func() (*reconcile.Report, error) {
		store, err := openStore(ctx, cfg, log, false)
		if err != nil {
			return nil, err
		}
		defer store.Close()
		rs, err := redisstore.New(redisstore.Config{Addrs: cfg.RedisAddrs, Segments: cfg.RedisSegments, Namespace: cfg.Namespace, Source: store, Log: log})
		if err != nil {
			return nil, err
		}
		defer rs.Close()
		rec, err := newReconciler(cfg, store, rs, log, nil)
		if err != nil {
			return nil, err
		}
		rctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
		defer cancel()
		return rec.Once(rctx, reconcile.OnceOptions{Repair: *repair, ReleaseUnordered: *release, Settle: *settle})
	}()
	if rep != nil {
		if *asJSON {
			enc := json.NewEncoder(stdout)
			enc.SetIndent("", "  ")
			enc.Encode(rep)
		} else {
			fmt.Fprint(stdout, rep.Text())
		}
	}
	if err != nil {
		fmt.Fprintf(stderr, "flashsale reconcile: %v\n", err)
		return 2
	}
	if !rep.Agree {
		return 1
	}
	return 0
}
