package main

import (
	"flag"
	"fmt"
	"log/slog"
	"os"
	"strconv"
	"strings"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
)

// config is every FLASHSALE_* setting; flags of the same name (lower case, dashes)
// override the environment.
type config struct {
	HTTPAddr   string
	RedisAddrs []string
	// RedisSegments is how many parts each sale's stock is split into in
	// Redis (see redisstore.Config.Segments); the same on every process.
	RedisSegments  int
	AMQPURLs       []string
	MetaDSN        string
	ShardDSNs      []string
	Namespace      string
	AdminToken     string
	PaymentSecrets []string
	LimitPerWindow int
	// PublishGroups is how many groups of purchases an ingress may have
	// awaiting the broker's confirm at once (see ingress.Config.PublishGroups).
	PublishGroups int
	// MaxConns caps the connections the ingress's listener holds open at
	// once (see service.HTTP.MaxConns); 0: no cap.
	MaxConns int
	// WorkerHandlers and WorkerBatch: how many batches of purchase messages
	// a worker handles at once, and the most messages in one (see
	// queue.ConsumerConfig.Handlers and BatchSize).
	WorkerHandlers  int
	WorkerBatch     int
	PprofAddr       string
	LogLevel        slog.Level
	ShutdownGrace   time.Duration
	SweepInterval   time.Duration
	OutboxRetention time.Duration
	// ReconcileInterval is the time between background reconciliation passes.
	ReconcileInterval time.Duration
	// RetryBudget is how long every consumer tries a failing message again
	// before it hands it back to the queue (see queue.Retry.Budget).
	RetryBudget time.Duration
	// Cmdline is the process's command line with the values of secret flags
	// redacted: what /debug/pprof/cmdline answers.
	Cmdline []string
	// Security settings (identities, fairness, strikes): see security.go.
	security
}

func env(name, def string) string {
	if v, ok := os.LookupEnv(name); ok && v != "" {
		return v
	}
	return def
}

func splitList(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}

// loadConfig reads the environment, then flags in args, and validates.
func loadConfig(fs *flag.FlagSet, args []string) (*config, error) {
	httpAddr := fs.String("http-addr", env("FLASHSALE_HTTP_ADDR", "127.0.0.1:8080"), "ingress listen address")
	redisAddrs := fs.String("redis-addrs", env("FLASHSALE_REDIS_ADDRS", "127.0.0.1:6379"), "Redis address, or several for a cluster")
	// Secret settings (and those holding passwords) are shown redacted in
	// usage and errors (see secretValue); prefer the environment for them: a
	// command line is visible to every local user.
	amqpURL := secretFlag(fs, "amqp-url", "FLASHSALE_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/",
		"RabbitMQ `URL`, or the URLs of a cluster's nodes, comma-separated", redactList(redactURL))
	meta := secretFlag(fs, "mysql-meta-dsn", "FLASHSALE_MYSQL_META_DSN", "root@tcp(127.0.0.1:3306)/flashsale_meta",
		"meta database `DSN`", redactDSN)
	shards := secretFlag(fs, "mysql-shard-dsns", "FLASHSALE_MYSQL_SHARD_DSNS",
		"root@tcp(127.0.0.1:3306)/flashsale_s0,root@tcp(127.0.0.1:3306)/flashsale_s1", "order shard `DSNs`, comma-separated", redactList(redactDSN))
	ns := fs.String("namespace", env("FLASHSALE_NAMESPACE", "flashsale"), "prefix of Redis keys and RabbitMQ names")
	token := secretFlag(fs, "admin-token", "FLASHSALE_ADMIN_TOKEN", "", "bearer `token` of admin endpoints", nil)
	secrets := secretFlag(fs, "payment-secret", "FLASHSALE_PAYMENT_SECRET", "", "payment webhook HMAC `secrets`, comma-separated", nil)
	segments := fs.String("redis-segments", env("FLASHSALE_REDIS_SEGMENTS", "1"), "parts each sale's stock is split into in Redis (several Redis Cluster slots); the same on every process")
	limit := fs.String("limit-per-window", env("FLASHSALE_LIMIT_PER_WINDOW", "50"), "purchases per sale per node per 10 ms; 0 disables")
	groups := fs.String("publish-groups", env("FLASHSALE_PUBLISH_GROUPS", "4"), "groups of purchases an ingress may have awaiting the broker's confirm at once")
	maxConns := fs.String("max-conns", env("FLASHSALE_MAX_CONNS", "20000"), "connections the ingress's listener holds open at once; past it new ones wait to be accepted; 0: no cap")
	handlers := fs.String("worker-handlers", env("FLASHSALE_WORKER_HANDLERS", "32"), "batches of purchase messages a worker handles at once")
	batch := fs.String("worker-batch", env("FLASHSALE_WORKER_BATCH", "300"), "the most purchase messages in one of a worker's batches")
	pprofAddr := fs.String("pprof-addr", env("FLASHSALE_PPROF_ADDR", ""), "serve net/http/pprof on this address (off when empty)")
	level := fs.String("log-level", env("FLASHSALE_LOG_LEVEL", "info"), "debug, info, warn or error")
	grace := fs.String("shutdown-grace", env("FLASHSALE_SHUTDOWN_GRACE_SECONDS", "20"), "seconds to finish in-flight work on SIGTERM")
	sweep := fs.String("sweep-interval", env("FLASHSALE_SWEEP_INTERVAL", "5"), "seconds between sweeps for overdue unpaid orders")
	retention := fs.String("outbox-retention", env("FLASHSALE_OUTBOX_RETENTION_HOURS", "24"), "hours sent outbox rows are kept")
	reconcileEvery := fs.String("reconcile-interval", env("FLASHSALE_RECONCILE_INTERVAL", "30"), "seconds between background reconciliation passes")
	retryBudget := fs.String("retry-budget", env("FLASHSALE_RETRY_BUDGET_SECONDS", "120"), "seconds a consumer (purchases, dead letters, order.created, expiry) retries a failing message before handing it back to the queue")
	sec := securityFlags(fs)
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	c := &config{HTTPAddr: *httpAddr, RedisAddrs: splitList(*redisAddrs), AMQPURLs: splitList(*amqpURL), MetaDSN: *meta,
		ShardDSNs: splitList(*shards), Namespace: *ns, AdminToken: *token, PaymentSecrets: splitList(*secrets),
		PprofAddr: *pprofAddr, Cmdline: cmdline(fs, args)}
	var err error
	if c.LimitPerWindow, err = strconv.Atoi(*limit); err != nil || c.LimitPerWindow < 0 {
		return nil, fmt.Errorf("FLASHSALE_LIMIT_PER_WINDOW must be a whole number >= 0, got %q", *limit)
	}
	if c.RedisSegments, err = strconv.Atoi(*segments); err != nil || c.RedisSegments < 1 || c.RedisSegments > 64 {
		return nil, fmt.Errorf("FLASHSALE_REDIS_SEGMENTS must be a whole number from 1 to 64, got %q", *segments)
	}
	if c.PublishGroups, err = strconv.Atoi(*groups); err != nil || c.PublishGroups < 1 || c.PublishGroups > 1024 {
		return nil, fmt.Errorf("FLASHSALE_PUBLISH_GROUPS must be a whole number from 1 to 1024, got %q", *groups)
	}
	if c.MaxConns, err = strconv.Atoi(*maxConns); err != nil || c.MaxConns < 0 {
		return nil, fmt.Errorf("FLASHSALE_MAX_CONNS must be a whole number >= 0 (0: no cap), got %q", *maxConns)
	}
	if c.WorkerHandlers, err = strconv.Atoi(*handlers); err != nil || c.WorkerHandlers < 1 || c.WorkerHandlers > 512 {
		return nil, fmt.Errorf("FLASHSALE_WORKER_HANDLERS must be a whole number from 1 to 512, got %q", *handlers)
	}
	if c.WorkerBatch, err = strconv.Atoi(*batch); err != nil || c.WorkerBatch < 1 || c.WorkerBatch > 1000 {
		return nil, fmt.Errorf("FLASHSALE_WORKER_BATCH must be a whole number from 1 to 1000, got %q", *batch)
	}
	for _, d := range []struct {
		name, val string
		unit      time.Duration
		into      *time.Duration
	}{
		{"FLASHSALE_SHUTDOWN_GRACE_SECONDS", *grace, time.Second, &c.ShutdownGrace},
		{"FLASHSALE_SWEEP_INTERVAL", *sweep, time.Second, &c.SweepInterval},
		{"FLASHSALE_OUTBOX_RETENTION_HOURS", *retention, time.Hour, &c.OutboxRetention},
		{"FLASHSALE_RECONCILE_INTERVAL", *reconcileEvery, time.Second, &c.ReconcileInterval},
		{"FLASHSALE_RETRY_BUDGET_SECONDS", *retryBudget, time.Second, &c.RetryBudget},
	} {
		n, err := strconv.Atoi(d.val)
		if err != nil || n < 1 {
			return nil, fmt.Errorf("%s must be a whole number >= 1, got %q", d.name, d.val)
		}
		*d.into = time.Duration(n) * d.unit
	}
	if err := c.LogLevel.UnmarshalText([]byte(*level)); err != nil {
		return nil, fmt.Errorf("FLASHSALE_LOG_LEVEL must be debug, info, warn or error, got %q", *level)
	}
	if len(c.RedisAddrs) == 0 || len(c.ShardDSNs) == 0 || len(c.AMQPURLs) == 0 {
		return nil, fmt.Errorf("FLASHSALE_REDIS_ADDRS, FLASHSALE_AMQP_URL and FLASHSALE_MYSQL_SHARD_DSNS must not be empty")
	}
	for i, u := range c.AMQPURLs {
		if _, err := amqp.ParseURI(u); err != nil {
			return nil, fmt.Errorf("FLASHSALE_AMQP_URL: URL %d of %d does not parse: %v", i+1, len(c.AMQPURLs), urlError(err))
		}
	}
	if c.Namespace == "" || strings.ContainsAny(c.Namespace, " {}") {
		return nil, fmt.Errorf("FLASHSALE_NAMESPACE must be non-empty, without spaces or braces")
	}
	if c.security, err = sec.load(c); err != nil {
		return nil, err
	}
	return c, nil
}
