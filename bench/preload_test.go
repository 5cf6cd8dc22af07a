package bench

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// With --preload every purchase is answered while no worker consumes (the
// fake keeps tickets queued until --workers-cmd ran), nobody reads a ticket
// before the last purchase was answered, then the command starts the workers, the queue drains, and the
// report says when the workers started and how long until the last ticket
// was final.
func TestPreloadQueuesThenStartsTheWorkers(t *testing.T) {
	f, srv := newFakeServer(t)
	started := filepath.Join(t.TempDir(), "workers-started")
	f.paused = func() bool { _, err := os.Stat(started); return err != nil }
	dir := t.TempDir()
	jsonPath := filepath.Join(dir, "r.json")
	code, out, errOut := runMainForTest(t, benchArgs(srv.URL,
		"--preload", "30", "--stock", "20", "--workers-cmd", "touch "+started, "--pay-ratio", "0", "--json", jsonPath))
	if code != 0 {
		t.Fatalf("exit %d\nstdout:\n%s\nstderr:\n%s", code, out, errOut)
	}
	for _, want := range []string{"Pipeline alone (--preload)", "30 purchases queued, then workers started: touch ",
		"orders / s by created_at (first -> last)", "workers' start -> last ticket final"} {
		if !strings.Contains(out, want) {
			t.Errorf("summary lacks %q:\n%s", want, out)
		}
	}
	var rep Report
	readReport(t, jsonPath, &rep)
	p := rep.Preload
	if p == nil || p.Error != "" || p.Purchases != 30 || rep.Config.Users != 30 {
		t.Fatalf("preload report %+v (users %d), want 30 purchases and the workers started", p, rep.Config.Users)
	}
	if p.WorkersStartedAt <= rep.SaleOpensAt || p.StartToLastFinalMs <= 0 || p.Orders != 20 {
		t.Errorf("preload report %+v (opened at %.3f s), want the workers started after the opening, 20 orders, a time to the last final ticket", p, rep.SaleOpensAt)
	}
	if p.DrainCPUWindowSeconds < 0 || !slices.ContainsFunc(p.DrainCPU, func(c ProcessCost) bool { return c.Name == procBench && c.Measured }) {
		t.Errorf("drain CPU %+v over %.3f s, want the bench measured", p.DrainCPU, p.DrainCPUWindowSeconds)
	}
	if !strings.Contains(out, "CPU ms / order over the drain (workers' start -> last order") {
		t.Errorf("summary lacks the drain's CPU:\n%s", out)
	}
	f.mu.Lock()
	first, last := f.firstTicketRead, f.lastPurchase
	f.mu.Unlock()
	if first.Before(last) {
		t.Errorf("a ticket was read %v before the last purchase was answered, want none before (the users wait for the workers)", last.Sub(first))
	}
}

// --preload needs the command, and only makes sense for a burst.
func TestPreloadFlags(t *testing.T) {
	base := []string{"--admin-token", "t", "--pay-ratio", "0"}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--preload", "10"}, "--preload needs --workers-cmd"},
		{[]string{"--workers-cmd", "true"}, "--workers-cmd only applies with --preload"},
		{[]string{"--preload", "10", "--workers-cmd", "true", "--arrival", "ramp"}, "not with --reservation or --arrival ramp"},
	} {
		_, err := parseConfig(append(append([]string{}, base...), tc.args...), env(nil), nil)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%v: %v, want %q", tc.args, err, tc.want)
		}
	}
}

// The drain's CPU runs from the first sample (the workers' start) to the
// first sample at or after the last order: a worker seen only from the
// second sample on is counted from its start, the bench by its difference.
func TestDrainCPUTakesTheSampleAfterTheLastOrder(t *testing.T) {
	t0 := time.Now()
	reading := func(bench, worker float64) procReading {
		r := procReading{procs: map[int]procCPU{1: {kind: procBench, seconds: bench, start: 5}}}
		if worker > 0 {
			r.procs[2] = procCPU{kind: "flashsale worker", seconds: worker, start: 9}
		}
		return r
	}
	p := &preloader{samples: []cpuSample{
		{at: t0, reading: reading(1.0, 0)},
		{at: t0.Add(100 * time.Millisecond), reading: reading(1.05, 0.02)},
		{at: t0.Add(200 * time.Millisecond), reading: reading(1.2, 0.1)},
		{at: t0.Add(300 * time.Millisecond), reading: reading(1.5, 0.3)},
	}}
	costs, window, notes := p.drainCPU(t0.Add(150*time.Millisecond), 100)
	got := map[string]float64{}
	for _, c := range costs {
		got[c.Name] = c.CPUSeconds
	}
	if window != 0.2 || got[procBench] != 0.2 || got["flashsale worker"] != 0.1 {
		t.Errorf("window %.3f s, CPU %v; want 0.2 s, the bench 0.2 s and the worker 0.1 s", window, got)
	}
	if len(notes) != 1 || !strings.Contains(notes[0], "flashsale worker (pid 2) started during the run") {
		t.Errorf("notes %v, want the worker counted from its start", notes)
	}
	if c, _, _ := (&preloader{}).drainCPU(t0, 1); c != nil {
		t.Errorf("without samples: %+v, want nothing", c)
	}
}
