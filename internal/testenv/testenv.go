// Package testenv finds the real services for integration tests, through the
// FLASHSALE_* variables with the contract's defaults. When a service does not
// answer, a test fails if CI is set and skips otherwise.
package testenv

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"net"
	"os"
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

// Require fails (CI) or skips the test unless every addr accepts TCP connections.
func Require(t testing.TB, addrs ...string) {
	t.Helper()
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
