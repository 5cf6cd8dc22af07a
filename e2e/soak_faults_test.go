package e2e

// The soak's faults (see TestSoak): one at a time, on the fault clock of the
// test goroutine.

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"
)

const (
	soakSIGSTOP = syscall.SIGSTOP
	soakSIGCONT = syscall.SIGCONT

	soakFaultEvery  = 6 * time.Second
	soakOutage      = 5 * time.Second // MySQL cut, Redis frozen
	soakMaxKillDown = 2 * time.Second // a killed role stays down up to this long
)

// The kinds of fault, in the order of the summary. The last four are the
// recovery faults of issue 22 (soak_recovery_test.go).
var soakFaultKinds = []string{
	"kill-worker", "kill-relay", "kill-delayq", "restart-ingress",
	"mysql-cut", "redis-freeze", "redis-keys-deleted", "redis-old-snapshot",
	"redis-loss-backlog", "redis-away-pay-by", "redis-replicaof-round-trip", "kill-mid-rebuild",
}

// soakKinds are the fault kinds of this run: FLASHSALE_SOAK_FAULTS (a
// comma-separated list) or every kind.
func soakKinds(t *testing.T) []string {
	v := os.Getenv("FLASHSALE_SOAK_FAULTS")
	if v == "" {
		return soakFaultKinds
	}
	var kinds []string
	for _, k := range strings.Split(v, ",") {
		if !slices.Contains(soakFaultKinds, strings.TrimSpace(k)) {
			t.Fatalf("FLASHSALE_SOAK_FAULTS: unknown fault %q (kinds: %v)", k, soakFaultKinds)
		}
		kinds = append(kinds, strings.TrimSpace(k))
	}
	return kinds
}

// soakSignal sends sig to the private redis-server (SIGSTOP freezes it,
// SIGCONT thaws it). Errors are returned, not fatal: the cleanup uses it too.
func (r *privateRedis) soakSignal(sig syscall.Signal) error {
	r.mu.Lock()
	cmd := r.cmd
	r.mu.Unlock()
	if cmd == nil || cmd.Process == nil {
		return fmt.Errorf("redis-server %s not started", r.Name)
	}
	return cmd.Process.Signal(sig)
}

// faultLoop injects a random fault every ~6 s (5–7 s apart; after one that
// lasted longer than 6 s, 5–7 s after its end) until end. The kinds are drawn
// from a shuffled bag of every kind, refilled when empty, so each kind comes
// once before any comes again, and never twice in a row. It runs on the test goroutine: restarting a
// process may fail the test.
func (s *soak) faultLoop(rng *rand.Rand, end time.Time) {
	next := time.Now().Add(soakFaultEvery)
	kinds := soakKinds(s.t)
	var bag []string
	for {
		if d := time.Until(next); d > 0 {
			time.Sleep(d) // the fault clock
		}
		if time.Now().After(end) {
			return
		}
		if len(bag) == 0 {
			bag = append(bag, kinds...)
			rng.Shuffle(len(bag), func(i, j int) { bag[i], bag[j] = bag[j], bag[i] })
		}
		kind := bag[0]
		if len(bag) > 1 && kind == s.lastKind {
			kind, bag[1] = bag[1], kind // never the same kind twice in a row (two Redis outages back to back are one long one)
		}
		bag = bag[1:]
		s.lastKind = kind
		t0, started := s.elapsed(), time.Now()
		s.setPhase(kind)
		detail := s.inject(kind, rng)
		s.setPhase("run")
		line := fmt.Sprintf("%7.2fs–%6.2fs %-19s %s", t0, s.elapsed(), kind, detail)
		s.mu.Lock()
		s.faultCount[kind]++
		s.faultLog = append(s.faultLog, line)
		s.mu.Unlock()
		s.logf("fault %s", line)
		s.checkProcs()
		// A snapshot now and then, so that a later restart from it goes back
		// 6–40 s in time.
		if rng.IntN(3) == 0 {
			s.saveSnapshot("after " + kind)
		}
		// The replica is cut off now and then, so that a later round trip
		// goes back 6–40 s in time.
		if s.repl.cutAt.IsZero() && rng.IntN(3) == 0 {
			s.cutReplica("after " + kind)
		}
		gap := soakFaultEvery - time.Second + time.Duration(rng.Int64N(int64(2*time.Second)))
		next = next.Add(gap)
		if time.Since(started) > soakOutage+time.Second {
			// After a long fault, a full gap of calm: faults fired back to
			// back to catch up would make one outage of several.
			next = time.Now().Add(gap)
		}
	}
}

// inject carries out one fault and returns what it did.
func (s *soak) inject(kind string, rng *rand.Rand) string {
	t := s.t
	t.Helper()
	down := time.Duration(rng.Int64N(int64(soakMaxKillDown)))
	kill := func(p *proc, name string) string {
		p.Kill()
		time.Sleep(down) // the role stays down for a moment
		p.Start()
		return fmt.Sprintf("%s SIGKILLed, started again after %s", name, down.Round(time.Millisecond))
	}
	switch kind {
	case "kill-worker":
		i := rng.IntN(len(s.workers))
		return kill(s.workers[i], fmt.Sprintf("worker %d", i+1))
	case "kill-relay":
		return kill(s.relay, "relay")
	case "kill-delayq":
		return kill(s.delayq, "delayq")
	case "restart-ingress":
		t0 := time.Now()
		code, err := s.ingress.terminate(30 * time.Second)
		if err != nil || code != 0 {
			s.violate("graceful-stop", "ingress SIGTERM: exit %d, %v", code, err)
		}
		stopped := time.Since(t0)
		s.ingress.Start() // waits for /readyz
		return fmt.Sprintf("ingress SIGTERM (exit %d after %s), ready again after %s", code,
			stopped.Round(time.Millisecond), time.Since(t0).Round(time.Millisecond))
	case "mysql-cut":
		pxs := append([]*tcpProxy{s.mysqlPx}, s.procPx...)
		for _, px := range pxs {
			px.Down()
		}
		time.Sleep(soakOutage) // the outage lasts 5 s
		for _, px := range pxs {
			px.Up()
		}
		return fmt.Sprintf("MySQL unreachable for %s (meta and shards)", soakOutage)
	case "redis-freeze":
		if err := s.rs.soakSignal(soakSIGSTOP); err != nil {
			t.Fatalf("SIGSTOP redis: %v", err)
		}
		time.Sleep(soakOutage) // the freeze lasts 5 s
		if err := s.rs.soakSignal(soakSIGCONT); err != nil {
			t.Fatalf("SIGCONT redis: %v", err)
		}
		return fmt.Sprintf("Redis frozen (SIGSTOP) for %s", soakOutage)
	case "redis-keys-deleted":
		n := s.deleteRedisKeys()
		return fmt.Sprintf("%d keys %s:* deleted (one DEL)", n, s.e.NS)
	case "redis-old-snapshot":
		s.mu.Lock()
		age := time.Since(s.lastSave)
		s.mu.Unlock()
		t0 := time.Now()
		s.rs.ShutdownNoSave()
		s.rs.Start()
		return fmt.Sprintf("Redis SHUTDOWN NOSAVE, started from its snapshot of %s ago; back after %s",
			age.Round(time.Second), time.Since(t0).Round(time.Millisecond))
	case "redis-loss-backlog":
		return s.backlogLoss(rng)
	case "redis-away-pay-by":
		return s.payByOutage(rng)
	case "redis-replicaof-round-trip":
		return s.replicaRoundTrip(rng)
	case "kill-mid-rebuild":
		return s.killMidRebuild(rng)
	}
	t.Fatalf("unknown fault %q", kind)
	return ""
}

// saveSnapshot makes the private Redis write its snapshot now (what a later
// "redis-old-snapshot" restarts from).
func (s *soak) saveSnapshot(why string) {
	s.rs.Do("SAVE")
	s.mu.Lock()
	s.lastSave = time.Now()
	s.mu.Unlock()
	if s.elapsed() > 0 {
		s.logf("%7.2fs Redis SAVE (%s)", s.elapsed(), why)
	}
}

// deleteRedisKeys deletes every key of the namespace on the private Redis in
// one DEL (atomic: the deployment loses its Redis data at one instant).
func (s *soak) deleteRedisKeys() int {
	t := s.t
	t.Helper()
	c := s.rs.client()
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var keys []string
	iter := c.Scan(ctx, 0, s.e.NS+":*", 1000).Iterator()
	for iter.Next(ctx) {
		keys = append(keys, iter.Val())
	}
	if err := iter.Err(); err != nil {
		t.Fatalf("scan the private redis: %v", err)
	}
	if len(keys) > 0 {
		if err := c.Del(ctx, keys...).Err(); err != nil {
			t.Fatalf("del on the private redis: %v", err)
		}
	}
	return len(keys)
}

// checkProcs records a role that exited on its own (not by a fault of the
// test) as a violation and starts it again.
func (s *soak) checkProcs() {
	for _, p := range s.procs() {
		if !p.Running() {
			s.violate("process-exited", "%s exited on its own:\n%s", p.Role, p.LogTail(30))
			p.Start()
		}
	}
}

// stopAll stops every role with SIGTERM: each must exit 0 (the contract's
// graceful stop).
func (s *soak) stopAll() {
	s.checkProcs()
	var wg = make(chan struct{}, len(s.procs()))
	for _, p := range s.procs() {
		go func() {
			defer func() { wg <- struct{}{} }()
			code, err := p.terminate(40 * time.Second)
			if err != nil || code != 0 {
				s.violate("graceful-stop", "%s SIGTERM at the end: exit %d, %v\n%s", p.Role, code, err, p.LogTail(20))
			}
		}()
	}
	for range s.procs() {
		<-wg
	}
}

// faultSummary is "kind n, ..." in the order of soakFaultKinds.
func (s *soak) faultSummary() (string, int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var parts []string
	total := 0
	for _, k := range soakFaultKinds {
		parts = append(parts, fmt.Sprintf("%s %d", k, s.faultCount[k]))
		total += s.faultCount[k]
	}
	return strings.Join(parts, ", "), total
}
