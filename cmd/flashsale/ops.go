package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"slices"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/flashsale/flashsale/httpapi"
	"github.com/flashsale/flashsale/ops"
	"github.com/flashsale/flashsale/queue"
	"github.com/flashsale/flashsale/service"
)

// opsConfig are the settings of the operations surface (package ops).
type opsConfig struct {
	// Addr (FLASHSALE_OPS_ADDR) is the operations listener: /metrics, /readyz,
	// /healthz, pprof and the live page, which then leave the public listener.
	// Empty (the default): they stay on FLASHSALE_HTTP_ADDR (pprof only on
	// FLASHSALE_PPROF_ADDR), and processes without the ingress role serve none
	// of them.
	Addr string
	// InsecureCookie (FLASHSALE_OPS_INSECURE_COOKIE) leaves the live page's
	// session cookie without Secure (see ops.LiveConfig.InsecureCookie).
	InsecureCookie bool
}

// opsFlags registers the operations settings on fs; the returned function
// validates them after fs was parsed.
func opsFlags(fs *flag.FlagSet) func() (opsConfig, error) {
	addr := fs.String("ops-addr", env("FLASHSALE_OPS_ADDR", ""),
		"serve /metrics, /readyz, /healthz, pprof and the live page on this address instead of the HTTP address (off when empty)")
	insecure := fs.String("ops-insecure-cookie", env("FLASHSALE_OPS_INSECURE_COOKIE", "false"),
		"true: the live page's session cookie is not Secure (a page reached over plain HTTP on a private network); false: Secure unless on loopback")
	return func() (opsConfig, error) {
		if *addr != "" {
			if _, _, err := net.SplitHostPort(*addr); err != nil {
				return opsConfig{}, fmt.Errorf("FLASHSALE_OPS_ADDR: %w", err)
			}
		}
		ins, err := strconv.ParseBool(*insecure)
		if err != nil {
			return opsConfig{}, fmt.Errorf("FLASHSALE_OPS_INSECURE_COOKIE must be true or false, got %q", *insecure)
		}
		return opsConfig{Addr: *addr, InsecureCookie: ins}, nil
	}
}

// opsSurface is the process's operations surface: the scrape-time collector,
// the live page (when something serves it) and the operations listener.
type opsSurface struct {
	cfg   opsConfig
	live  *ops.Live // nil: not served by this process
	ready []ops.Check
}

// newOpsSurface creates the live page when this process will serve it: on the
// operations listener, or on the ingress's listener. It warns when the
// surface is reachable from everywhere: on the public listener (no
// FLASHSALE_OPS_ADDR) bound beyond loopback, or on an operations listener
// bound to every interface (pprof has no authentication).
func newOpsSurface(ocfg opsConfig, cfg *config, roles []string, reg *prometheus.Registry, admin *httpapi.AdminAuth, log *slog.Logger) (*opsSurface, error) {
	o := &opsSurface{cfg: ocfg}
	ingress := slices.Contains(roles, "ingress")
	switch {
	case ocfg.Addr == "" && ingress && !loopback(cfg.HTTPAddr):
		log.Warn("FLASHSALE_OPS_ADDR is not set: /metrics, /readyz and the live page's login are served on the public listener; "+
			"set FLASHSALE_OPS_ADDR to a loopback or private-network address", "http_addr", cfg.HTTPAddr)
	case ocfg.Addr != "" && unspecified(ocfg.Addr):
		log.Warn("the operations listener (pprof without authentication, /metrics, the live page) is bound to every interface; "+
			"bind FLASHSALE_OPS_ADDR to a loopback or private-network address", "ops_addr", ocfg.Addr)
	}
	if ocfg.Addr != "" || ingress {
		live, err := ops.NewLive(ops.LiveConfig{Gatherer: reg, AdminToken: cfg.AdminToken, Admin: admin,
			InsecureCookie: ocfg.InsecureCookie, Log: log})
		if err != nil {
			return nil, err
		}
		o.live = live
	}
	return o, nil
}

// services registers the collector and returns the live page's sampler
// and, when FLASHSALE_OPS_ADDR is set, the operations listener (a listener:
// it starts with the intake). The queue inspector is closed with the process.
func (o *opsSurface) services(p *process, g *service.Group, cmd string) (services, listeners []named, err error) {
	insp, err := queue.NewInspector(p.cfg.queue(p.log, "ops", nil, nil))
	if err != nil {
		return nil, nil, err
	}
	p.closers = append(p.closers, insp.Close)
	col, err := ops.NewCollector(ops.CollectorConfig{Sales: p.store, Stock: p.stock, Book: p.store, Role: cmd, Ready: o.ready, Log: p.log,
		Queues: insp.Stats, Lines: p.store})
	if err != nil {
		return nil, nil, err
	}
	p.reg.MustRegister(col)
	if o.live != nil {
		services = append(services, named{"live page sampler", &service.Loop{Run: func(ctx context.Context) error { o.live.Run(ctx); return nil }}})
	}
	if o.cfg.Addr == "" {
		return services, nil, nil
	}
	h, err := ops.Handler(ops.HandlerConfig{Gatherer: p.reg, Ready: o.ready, Live: o.live, Pprof: true, Cmdline: p.cfg.Cmdline, Log: p.log})
	if err != nil {
		return nil, nil, err
	}
	hs := &http.Server{Addr: o.cfg.Addr, Handler: h, ReadHeaderTimeout: 5 * time.Second, ReadTimeout: 10 * time.Second,
		WriteTimeout: 60 * time.Second, IdleTimeout: 60 * time.Second, ErrorLog: slog.NewLogLogger(p.log.Handler(), slog.LevelWarn)}
	if o.live != nil {
		hs.RegisterOnShutdown(o.live.Close)
	}
	return services, []named{{"listener", &service.HTTP{Server: hs, Fail: g.Fail, Log: p.log.With("listener", "operations")}}}, nil
}

// loopback reports whether addr (host:port) is bound to a loopback address
// only.
func loopback(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return err == nil && ip != nil && ip.IsLoopback()
}

// unspecified reports whether addr (host:port) is bound to every interface.
func unspecified(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	ip := net.ParseIP(host)
	return err == nil && (host == "" || ip != nil && ip.IsUnspecified())
}
