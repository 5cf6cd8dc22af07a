package bench

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
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
