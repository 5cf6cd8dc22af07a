package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"os"
	"os/exec"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// --preload: the pipeline alone. The deployment runs without workers (or
// with them stopped); every user purchases once and is answered (202: the
// purchase is queued); then --workers-cmd starts the workers and the users
// follow their tickets. The queue drains at the pipeline's own pace, with no
// crowd in front of it: the report gives the orders/s by created_at (first to
// last order), from the workers' start to the last order created, the time
// until the last ticket was final, and the CPU each process spent over the
// drain (drainCPU).

// preloader runs the phases of --preload for one run.
type preloader struct {
	cfg      Config
	log      *slog.Logger
	answered atomic.Int64  // users whose purchase was answered (whatever the answer)
	up       chan struct{} // closed once the workers' command started (or failed to)
	started  time.Time     // when it started
	startErr error

	// procs reads the processes' CPU (nil when /proc cannot be read).
	procs *procProbe

	mu        sync.Mutex
	lastFinal time.Time // the last ticket seen leave queued
	cmd       *exec.Cmd
	stopped   bool // stop was called: start nothing any more
	// samples are the CPU readings from the workers' start on (drainCPU).
	samples []cpuSample
}

// cpuSample is one reading of the processes' CPU and when it was taken.
type cpuSample struct {
	at      time.Time
	reading procReading
}

func newPreloader(cfg Config, log *slog.Logger, procs *procProbe) *preloader {
	return &preloader{cfg: cfg, log: log, up: make(chan struct{}), procs: procs}
}

// run waits until every user's purchase was answered, then starts the
// workers' command.
func (p *preloader) run(ctx context.Context) {
	defer close(p.up)
	for p.answered.Load() < int64(p.cfg.Users) {
		if !sleepCtx(ctx, 20*time.Millisecond) {
			p.startErr = ctx.Err()
			return
		}
	}
	cmd := exec.Command("sh", "-c", p.cfg.WorkersCmd)
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.stopped {
		p.startErr = errors.New("the run ended first")
		return
	}
	p.started = time.Now()
	if err := cmd.Start(); err != nil {
		p.startErr = fmt.Errorf("--workers-cmd: %w", err)
		p.log.Error("could not start the workers", "err", err)
		return
	}
	p.cmd = cmd
	p.log.Info("every purchase answered: workers started", "cmd", p.cfg.WorkersCmd)
	if p.procs != nil {
		go p.sampleCPU(ctx)
	}
}

// Sampling the drain's CPU: a full reading (every process of the deployment,
// found by its listening sockets and namespace) at the workers' start and
// every second, which finds the workers once they run; in between, every
// cpuSampleEvery, the processes of the last full reading are read again
// (one stat file each), so the sampling costs the box little while it drains.
const (
	cpuSampleEvery = 100 * time.Millisecond
	cpuFullEvery   = 10 // samples
)

// sampleCPU reads the processes' CPU from the workers' start until the run
// ends (ctx) or stop is called.
func (p *preloader) sampleCPU(ctx context.Context) {
	t := time.NewTicker(cpuSampleEvery)
	defer t.Stop()
	var full procReading
	for i := 0; ; i++ {
		var r procReading
		var err error
		if i%cpuFullEvery == 0 {
			if r, err = p.procs.read(); err == nil {
				full = r
			}
		} else {
			r = p.procs.reread(full)
		}
		p.mu.Lock()
		stopped := p.stopped
		if err == nil {
			p.samples = append(p.samples, cpuSample{at: time.Now(), reading: r})
		}
		p.mu.Unlock()
		if stopped {
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// drainCPU is the CPU each process spent from the workers' start to the
// first sample at or after end (the last order's creation, by the bench's
// clock), and that window's length; nil without samples.
func (p *preloader) drainCPU(end time.Time, orders int64) ([]ProcessCost, float64, []string) {
	if len(p.samples) == 0 {
		return nil, 0, nil
	}
	last := p.samples[len(p.samples)-1]
	for _, s := range p.samples {
		if !s.at.Before(end) {
			last = s
			break
		}
	}
	first := p.samples[0]
	costs, notes := processCosts(first.reading, last.reading, orders, 0)
	return costs, math.Round(last.at.Sub(first.at).Seconds()*1000) / 1000, notes
}

// waitWorkers waits until the workers started; false when the run ended
// first or they could not start.
func (p *preloader) waitWorkers(ctx context.Context) bool {
	select {
	case <-p.up:
		return p.startErr == nil
	case <-ctx.Done():
		return false
	}
}

// final records that a ticket was seen leave queued at t.
func (p *preloader) final(t time.Time) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if t.After(p.lastFinal) {
		p.lastFinal = t
	}
}

// stop ends the workers' command: SIGTERM to its process group, SIGKILL
// after 15 s.
func (p *preloader) stop() {
	p.mu.Lock()
	cmd := p.cmd
	p.stopped = true
	p.mu.Unlock()
	if cmd == nil {
		return
	}
	_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGTERM)
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(15 * time.Second):
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		<-done
	}
}

// PreloadReport is the pipeline alone (--preload).
type PreloadReport struct {
	// Purchases is --preload; WorkersCmd the command that started the workers.
	Purchases  int    `json:"purchases"`
	WorkersCmd string `json:"workers_cmd"`
	// Error says why the workers did not start.
	Error string `json:"error,omitempty"`
	// WorkersStartedAt is when the command started, in seconds since the run
	// started (like sale_opens_at).
	WorkersStartedAt float64 `json:"workers_started_at,omitempty"`
	// OrdersPerSecond is the orders over their first to last created_at
	// (purchase.server); FromStartOrdersPerSecond the orders over the
	// workers' start to the last created_at (server clock, by the offset);
	// StartToLastOrderMs that span.
	Orders                   int64   `json:"orders"`
	OrdersPerSecond          float64 `json:"orders_per_second"`
	FromStartOrdersPerSecond float64 `json:"from_start_orders_per_second"`
	StartToLastOrderMs       float64 `json:"start_to_last_order_ms"`
	// StartToLastFinalMs is from the workers' start to the last ticket the
	// bench saw leave queued.
	StartToLastFinalMs float64 `json:"start_to_last_final_ms"`
	// DrainCPU is the CPU each process of the deployment (and the bench)
	// spent over the drain: from the workers' start to the first reading at
	// or after the last order's created_at (readings every 100 ms), per
	// order; DrainCPUWindowSeconds that window. Absent when /proc could not
	// be read. Unlike the "Cost of an order" section it leaves out the
	// purchases' phase and the tickets' last polls.
	DrainCPU              []ProcessCost `json:"drain_cpu,omitempty"`
	DrainCPUWindowSeconds float64       `json:"drain_cpu_window_seconds,omitempty"`
	DrainCPUNotes         []string      `json:"drain_cpu_notes,omitempty"`
}

// report builds the section; since converts a local time to seconds since the
// run started, offset is the server's clock minus the bench's.
func (p *preloader) report(since func(time.Time) float64, s ServerOrderTiming, offset time.Duration) *PreloadReport {
	<-p.up
	p.mu.Lock()
	defer p.mu.Unlock()
	rep := &PreloadReport{Purchases: p.cfg.Preload, WorkersCmd: p.cfg.WorkersCmd, Orders: s.Orders, OrdersPerSecond: s.OrdersPerSecond}
	if p.startErr != nil || p.started.IsZero() {
		rep.Error = "the workers did not start"
		if p.startErr != nil {
			rep.Error += ": " + p.startErr.Error()
		}
		return rep
	}
	rep.WorkersStartedAt = math.Round(since(p.started)*1000) / 1000
	if s.LastCreatedAt != nil {
		span := s.LastCreatedAt.Sub(p.started.Add(offset))
		rep.StartToLastOrderMs = math.Round(float64(span.Microseconds())) / 1000
		if span > 0 {
			rep.FromStartOrdersPerSecond = math.Round(float64(s.Orders)/span.Seconds()*10) / 10
		}
		rep.DrainCPU, rep.DrainCPUWindowSeconds, rep.DrainCPUNotes = p.drainCPU(s.LastCreatedAt.Add(-offset), s.Orders)
	}
	if !p.lastFinal.IsZero() {
		rep.StartToLastFinalMs = math.Round(float64(p.lastFinal.Sub(p.started).Microseconds())) / 1000
	}
	return rep
}

// writePreloadText prints the section of the text summary.
func writePreloadText(w io.Writer, p *PreloadReport) {
	if p == nil {
		return
	}
	fmt.Fprintln(w, "\nPipeline alone (--preload)")
	fmt.Fprintf(w, "  %d purchases queued, then workers started: %s\n", p.Purchases, p.WorkersCmd)
	if p.Error != "" {
		fmt.Fprintf(w, "  %s\n", p.Error)
		return
	}
	for _, l := range preloadLines(p) {
		fmt.Fprintf(w, "  %s\n", l)
	}
}

// preloadLines are the section's figures, a line each (text and HTML).
func preloadLines(p *PreloadReport) []string {
	lines := []string{
		fmt.Sprintf("orders / s by created_at (first -> last): %s (%d orders)", fmtRate(p.OrdersPerSecond), p.Orders),
		fmt.Sprintf("orders / s from the workers' start to the last created_at: %s (%s)", fmtRate(p.FromStartOrdersPerSecond), fmtMs(p.StartToLastOrderMs)),
		fmt.Sprintf("workers' start -> last ticket final (seen by the bench): %s", fmtMs(p.StartToLastFinalMs)),
	}
	if len(p.DrainCPU) == 0 {
		return lines
	}
	var each []string
	var total float64
	for _, c := range p.DrainCPU {
		if !c.Measured {
			each = append(each, c.Name+" "+c.Reason)
			continue
		}
		each = append(each, fmt.Sprintf("%s %s", c.Name, fmtOpt(c.CPUMsPerOrder, "%.3f")))
		if c.CPUMsPerOrder != nil {
			total += *c.CPUMsPerOrder
		}
	}
	return append(lines, fmt.Sprintf("CPU ms / order over the drain (workers' start -> last order, %.1f s): %.3f in all: %s",
		p.DrainCPUWindowSeconds, total, strings.Join(each, ", ")))
}
