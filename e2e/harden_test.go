package e2e

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/google/uuid"
)

// Safe to deploy as shipped (issue 28): secrets are never printed, the
// shipped placeholders are refused, and a client cannot fake 5xx answers or
// WARN lines.

// distinctSecrets are FLASHSALE_* secret settings with values that appear
// nowhere else, and the marks that must never be printed.
func distinctSecrets() (vars map[string]string, marks []string) {
	id := randHex(4)
	vars = map[string]string{
		"FLASHSALE_ADMIN_TOKEN":      "ADMINSECRET" + id + "-0123456789",
		"FLASHSALE_PAYMENT_SECRET":   "PAYSECRETA" + id + "-0123456789,PAYSECRETB" + id + "-0123456789",
		"FLASHSALE_JWT_SECRETS":      "JWTSECRET" + id + "-0123456789",
		"FLASHSALE_MYSQL_META_DSN":   "fs:METAPW" + id + "@tcp(127.0.0.1:1)/m",
		"FLASHSALE_MYSQL_SHARD_DSNS": "fs:SHARDPW" + id + "@tcp(127.0.0.1:1)/s0",
		"FLASHSALE_AMQP_URL":         "amqp://fs:AMQPPW" + id + "@127.0.0.1:1/",
	}
	for _, m := range []string{"ADMINSECRET", "PAYSECRETA", "PAYSECRETB", "JWTSECRET", "METAPW", "SHARDPW", "AMQPPW"} {
		marks = append(marks, m+id)
	}
	return vars, marks
}

// TestFlagErrorsPrintNoSecret: with every secret setting in the environment,
// a mistyped flag, a flag without its value and -h print the usage (the
// secrets' defaults as "(set)", DSNs and URLs with the password masked) and
// none of the secrets, for every command that reads the configuration.
func TestFlagErrorsPrintNoSecret(t *testing.T) {
	if buildErr != nil {
		t.Fatalf("cannot build the binary: %v", buildErr)
	}
	vars, marks := distinctSecrets()
	for _, tc := range []struct {
		args []string
		exit int
	}{
		{[]string{"all", "--typo"}, 2},
		{[]string{"all", "-h"}, 0},
		{[]string{"ingress", "--admin-token"}, 2},
		{[]string{"migrate", "--typo"}, 2},
		{[]string{"reconcile", "--typo"}, 2},
	} {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		cmd := exec.CommandContext(ctx, binPath, tc.args...)
		cmd.Env = processEnv(vars)
		out, _ := cmd.CombinedOutput()
		cancel()
		if code := cmd.ProcessState.ExitCode(); code != tc.exit {
			t.Errorf("%v: exit %d, want %d\n%s", tc.args, code, tc.exit, out)
		}
		if !strings.Contains(string(out), "(default (set))") || !strings.Contains(string(out), "fs:xxxxx@tcp(127.0.0.1:1)/m") {
			t.Errorf("%v: no usage with the secrets shown as (set) and the DSN's password masked:\n%s", tc.args, out)
		}
		for _, m := range marks {
			if strings.Contains(string(out), m) {
				t.Errorf("%v printed the secret %s:\n%s", tc.args, m, out)
			}
		}
	}
}

// TestPprofCmdlineHidesSecretFlags: secrets given as flags do not show in
// /debug/pprof/cmdline, neither on the operations listener nor on the pprof
// listener (FLASHSALE_PPROF_ADDR); the other arguments do.
func TestPprofCmdlineHidesSecretFlags(t *testing.T) {
	e := newEnv(t)
	vars := e.Vars()
	delete(vars, "FLASHSALE_ADMIN_TOKEN")
	delete(vars, "FLASHSALE_PAYMENT_SECRET")
	httpAddr, opsAddr := freeAddr(t), freeAddr(t)
	vars["FLASHSALE_HTTP_ADDR"], vars["FLASHSALE_OPS_ADDR"] = httpAddr, opsAddr
	token, pay := "ADMINFLAG"+randHex(8), "PAYFLAG"+randHex(8)
	pprofAddr := freeAddr(t)
	cmd := exec.Command(binPath, "ingress", "--admin-token", token, "--payment-secret="+pay, "-pprof-addr", pprofAddr, "--log-level", "info")
	cmd.Env = processEnv(vars)
	logFile, err := os.Create(t.TempDir() + "/ingress.log")
	if err != nil {
		t.Fatal(err)
	}
	defer logFile.Close()
	cmd.Stdout, cmd.Stderr = logFile, logFile
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { cmd.Wait(); close(done) }()
	defer func() {
		cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-done:
		case <-time.After(30 * time.Second):
			cmd.Process.Kill()
			<-done
		}
	}()
	get := func(url string) (int, string) {
		resp, err := http.Get(url)
		if err != nil {
			return 0, err.Error()
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	eventually(t, 60*time.Second, "the operations listener and pprof answer", func() (bool, string) {
		c1, b1 := get("http://" + opsAddr + "/readyz")
		c2, b2 := get("http://" + pprofAddr + "/debug/pprof/")
		return c1 == 200 && c2 == 200, fmt.Sprintf("ops /readyz %d %.200s; pprof %d %.100s", c1, b1, c2, b2)
	})
	for _, addr := range []string{opsAddr, pprofAddr} {
		code, body := get("http://" + addr + "/debug/pprof/cmdline")
		args := strings.Split(body, "\x00")
		if code != 200 || strings.Contains(body, token) || strings.Contains(body, pay) {
			t.Errorf("%s/debug/pprof/cmdline: %d %q: shows a secret", addr, code, args)
		}
		if !strings.Contains(body, "\x00ingress\x00--admin-token\x00(set)\x00--payment-secret=(set)\x00-pprof-addr\x00"+pprofAddr) {
			t.Errorf("%s/debug/pprof/cmdline: %q, want the command line with the secrets as (set)", addr, args)
		}
	}
}

// TestPlaceholderSecretRefused: an admin token or a payment secret left at
// the placeholder the env example used to ship stops the binary at start,
// exit 2, with a message naming the setting (the placeholder is public: with
// it anyone could sign a payment or call the admin endpoints).
func TestPlaceholderSecretRefused(t *testing.T) {
	e := newEnv(t)
	for _, name := range []string{"FLASHSALE_PAYMENT_SECRET", "FLASHSALE_ADMIN_TOKEN"} {
		vars := e.Vars()
		vars[name] = "CHANGE-ME-at-least-16-bytes"
		vars["FLASHSALE_HTTP_ADDR"] = freeAddr(t)
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		cmd := exec.CommandContext(ctx, binPath, "all")
		cmd.Env = processEnv(vars)
		out, err := cmd.CombinedOutput()
		cancel()
		if code := cmd.ProcessState.ExitCode(); code != 2 || !strings.Contains(string(out), name) || !strings.Contains(string(out), "placeholder") {
			t.Errorf("%s at the shipped placeholder: exit %d (%v), want 2 with a message naming it; output:\n%s", name, code, err, tail(string(out), 10))
		}
	}
}

// TestClientHangupsAreNot5xx: 100 clients that hang up while the ingress
// waits on MySQL (GET of unknown sale ids, the meta database slowed to 300 ms
// by a proxy of the test's own) move no 5xx counter and log no WARN line;
// they are counted 499. 20 lookups of fresh random ticket ids, with a user id
// each, log no WARN either. A real outage (the meta database's proxy down)
// still answers 503, counts it and logs it at WARN.
func TestClientHangupsAreNot5xx(t *testing.T) {
	e := newEnv(t)
	base, err := mysqlBase()
	if err != nil {
		t.Fatal(err)
	}
	px := newProxy(t, base.Addr)
	var latency atomic.Int64 // the meta database's added latency, ns
	px.upstream = func(dst io.Writer, src io.Reader) {
		buf := make([]byte, 32<<10)
		for {
			n, err := src.Read(buf)
			if n > 0 {
				time.Sleep(time.Duration(latency.Load())) // a slow dependency, not a wait for an effect
				if _, werr := dst.Write(buf[:n]); werr != nil {
					return
				}
			}
			if err != nil {
				return
			}
		}
	}
	p := e.start("ingress", map[string]string{"FLASHSALE_MYSQL_META_DSN": proxiedDSN(px.Addr, e.MetaDB)})
	const route = "/api/v1/sales/:id"
	byStatus := func() map[string]float64 {
		out := map[string]float64{}
		for k, v := range scrapeMetrics(t, p.URL+"/metrics") {
			if strings.HasPrefix(k, "flashsale_http_requests_total{") && strings.Contains(k, `route="`+route+`"`) {
				_, st, _ := strings.Cut(k, `status="`)
				st, _, _ = strings.Cut(st, `"`)
				out[st] += v
			}
		}
		return out
	}
	fives := func(m map[string]float64) (n float64) {
		for st, v := range m {
			if strings.HasPrefix(st, "5") {
				n += v
			}
		}
		return n
	}
	total := func(m map[string]float64) (n float64) {
		for _, v := range m {
			n += v
		}
		return n
	}
	logFrom := func(offset int64) string {
		b, _ := os.ReadFile(p.logPath)
		return string(b[min(offset, int64(len(b))):])
	}
	warnLines := func(log string) (lines []string) {
		for _, l := range strings.Split(log, "\n") {
			if strings.Contains(l, "level=WARN") {
				lines = append(lines, l)
			}
		}
		return lines
	}
	logSize := func() int64 {
		fi, err := os.Stat(p.logPath)
		if err != nil {
			t.Fatal(err)
		}
		return fi.Size()
	}

	before, logAt := byStatus(), logSize()
	latency.Store(int64(300 * time.Millisecond))
	const hangups = 100
	hc := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}
	var answered atomic.Int32
	var wg sync.WaitGroup
	for i := 0; i < hangups; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
			defer cancel()
			req, _ := http.NewRequestWithContext(ctx, http.MethodGet, p.URL+pathSale("nosuch-"+randHex(6)), nil)
			if resp, err := hc.Do(req); err == nil {
				resp.Body.Close()
				answered.Add(1)
			} else if !errors.Is(err, context.DeadlineExceeded) {
				t.Errorf("a hang-up: %v", err)
			}
		}()
	}
	wg.Wait()
	latency.Store(0)
	if n := answered.Load(); n > 0 {
		t.Errorf("%d of %d requests were answered within 100 ms despite MySQL's 300 ms: they did not hang up mid-request", n, hangups)
	}
	var after map[string]float64
	eventually(t, 30*time.Second, "the ingress recorded every hung-up request", func() (bool, string) {
		after = byStatus()
		return total(after)-total(before) >= hangups, fmt.Sprintf("by status before %v, now %v", before, after)
	})
	if d := fives(after) - fives(before); d != 0 {
		t.Errorf("%d client hang-ups moved the 5xx counters by %v (by status before %v, after %v)", hangups, d, before, after)
	}
	if d := after["499"] - before["499"]; d != hangups {
		t.Errorf("499 counted %v times, want %d (by status %v)", d, hangups, after)
	}

	users := make([]string, 20)
	for i := range users {
		users[i] = "fresh-" + randHex(6)
		r := p.client().must(t, http.MethodGet, pathTicket(uuid.Must(uuid.NewV7()).String()), user(users[i]), nil)
		if r.Status != http.StatusServiceUnavailable && r.Status != http.StatusNotFound {
			t.Errorf("a fresh random ticket id: %s, want 503 (it may still be queued) or 404", r)
		}
	}
	if w := warnLines(logFrom(logAt)); len(w) > 0 {
		t.Errorf("%d hang-ups and 20 fresh ticket ids logged %d WARN lines, want none:\n%s", hangups, len(w), strings.Join(w[:min(5, len(w))], "\n"))
	}

	// A real outage: the meta database away.
	logAt = logSize()
	before = byStatus()
	px.Down()
	r := p.client().must(t, http.MethodGet, pathSale("nosuch-"+randHex(6)), nil, nil)
	checkError(t, "an unknown sale id with the meta database away", r, http.StatusServiceUnavailable, "unavailable")
	after = byStatus()
	if d := fives(after) - fives(before); d != 1 {
		t.Errorf("an outage's 503 moved the 5xx counters by %v, want 1 (by status %v)", d, after)
	}
	eventually(t, 10*time.Second, "the outage's 503 logged at WARN", func() (bool, string) {
		w := warnLines(logFrom(logAt))
		return len(w) > 0 && strings.Contains(strings.Join(w, "\n"), "answering 503"), fmt.Sprintf("WARN lines %q", w)
	})
}
