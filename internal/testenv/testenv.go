// Package testenv finds the real services for integration tests, through the
// FLASHSALE_* variables with the contract's defaults. When a service does not
// answer, a test fails if CI is set and skips otherwise.
//
// Tests come in two tiers. The unit tier is `go test -short ./...` (make
// unit): every test that needs no service, in well under a minute, on a
// machine with nothing installed but Go. Under -short, a test that needs a
// service (Require) or an installed tool (Tool) skips, whatever CI says, and
// the e2e package runs nothing. The full tier is `go test ./...` without
// -short (make test runs make unit first, then this): there those tests run,
// and fail when CI is set and what they need is missing. So under CI no
// test that needs a service is ever skipped: it runs in the full tier.
package testenv

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"net"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// Env returns the variable or its default.
func Env(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}

// RedisAddr is the Redis used by tests.
func RedisAddr() string { return strings.Split(Env("FLASHSALE_REDIS_ADDRS", "127.0.0.1:6379"), ",")[0] }

// MySQLServer is the host:port of the MariaDB used by tests.
func MySQLServer() string { return "127.0.0.1:3306" }

// Require skips the test in the unit tier (-short); otherwise it fails (CI)
// or skips the test unless every addr accepts TCP connections.
func Require(t testing.TB, addrs ...string) {
	t.Helper()
	Unit(t, "it needs a service")
	for _, a := range addrs {
		c, err := net.DialTimeout("tcp", a, 2*time.Second)
		if err != nil {
			if os.Getenv("CI") != "" {
				t.Fatalf("service %s is not reachable (CI is set, so this fails): %v", a, err)
			}
			t.Skipf("service %s is not reachable: %v (run deploy/services.sh)", a, err)
		}
		c.Close()
	}
}

// Unit skips the test in the unit tier (-short), saying why it belongs to the
// full tier: it needs a service, an installed tool, or minutes.
func Unit(t testing.TB, why string) {
	t.Helper()
	if testing.Short() {
		t.Skipf("not in the unit tier (-short): %s", why)
	}
}

// Tool returns the path of an installed program the test needs (promtool,
// podman). It skips the test in the unit tier (-short); otherwise, when the
// program is missing, it fails (CI) or skips the test, naming install, what
// installs it.
func Tool(t testing.TB, name, install string) string {
	t.Helper()
	Unit(t, "it needs "+name)
	p, err := exec.LookPath(name)
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("%s is not installed (CI is set, so this fails; %s installs it): %v", name, install, err)
		}
		t.Skipf("%s is not installed (%s installs it): %v", name, install, err)
	}
	return p
}

// Name returns prefix followed by 8 random hex characters: a namespace or
// database name of its own for one test.
func Name(prefix string) string {
	b := make([]byte, 4)
	rand.Read(b)
	return prefix + hex.EncodeToString(b)
}

// Eventually polls cond every interval until it returns true or timeout passes.
func Eventually(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		select {
		case <-ctx.Done():
			t.Fatalf("timed out after %v waiting for %s", timeout, what)
		case <-tick.C:
		}
	}
}
