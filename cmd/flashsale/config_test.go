package main

import (
	"flag"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/flashsale/flashsale/identity"
)

// Issue 28's settings: FLASHSALE_JWT_MAX_TTL reaches the identifier (a
// token living longer is refused) and a bad value stops the start;
// FLASHSALE_MAX_CONNS defaults to 20,000 (twice the 10,000 event streams TestManyTicketStreams holds on one ingress) and a bad value stops the start;
// jwt mode without an audience is warned about, with one it is not.
func TestHardeningSettings(t *testing.T) {
	load := func(vars map[string]string) (*config, error) {
		t.Helper()
		for k, v := range vars {
			t.Setenv(k, v)
		}
		return loadConfig(flag.NewFlagSet("flashsale all", flag.ContinueOnError), nil)
	}
	t.Run("defaults", func(t *testing.T) {
		c, err := load(nil)
		if err != nil {
			t.Fatal(err)
		}
		if c.MaxConns != 20000 || len(c.Warnings) != 0 {
			t.Errorf("MaxConns %d, warnings %q; want 20000 and none in header mode", c.MaxConns, c.Warnings)
		}
	})
	jwtMode := map[string]string{"FLASHSALE_USER_AUTH": "jwt", "FLASHSALE_JWT_SECRETS": "jwt-secret-0123456789abcdef"}
	t.Run("jwt without audience", func(t *testing.T) {
		c, err := load(jwtMode)
		if err != nil {
			t.Fatal(err)
		}
		if len(c.Warnings) != 1 || !strings.Contains(c.Warnings[0], "FLASHSALE_JWT_AUDIENCE") {
			t.Errorf("warnings %q, want one naming FLASHSALE_JWT_AUDIENCE", c.Warnings)
		}
	})
	t.Run("jwt with audience and a maximum lifetime", func(t *testing.T) {
		c, err := load(map[string]string{"FLASHSALE_USER_AUTH": "jwt", "FLASHSALE_JWT_SECRETS": "jwt-secret-0123456789abcdef",
			"FLASHSALE_JWT_AUDIENCE": "flashsale", "FLASHSALE_JWT_MAX_TTL": "1h", "FLASHSALE_MAX_CONNS": "0"})
		if err != nil {
			t.Fatal(err)
		}
		if len(c.Warnings) != 0 || c.MaxConns != 0 {
			t.Errorf("warnings %q, MaxConns %d; want none and 0", c.Warnings, c.MaxConns)
		}
		now := time.Now()
		tok := signHS256(t, "jwt-secret-0123456789abcdef", map[string]any{"sub": "alice", "aud": "flashsale",
			"iat": now.Unix(), "exp": now.Add(2 * time.Hour).Unix()})
		if _, err := c.Identity.(*identity.JWT).Verify(tok); err == nil || !strings.Contains(err.Error(), "lifetime") {
			t.Errorf("a 2 h token with FLASHSALE_JWT_MAX_TTL=1h: %v, want refused for its lifetime", err)
		}
	})
	for _, tc := range []struct{ name, value string }{
		{"FLASHSALE_JWT_MAX_TTL", "forever"},
		{"FLASHSALE_JWT_MAX_TTL", "-1h"},
		{"FLASHSALE_MAX_CONNS", "-1"},
		{"FLASHSALE_MAX_CONNS", "many"},
	} {
		t.Run(tc.name+"="+tc.value, func(t *testing.T) {
			vars := map[string]string{tc.name: tc.value}
			for k, v := range jwtMode {
				vars[k] = v
			}
			if _, err := load(vars); err == nil || !strings.Contains(err.Error(), tc.name) {
				t.Errorf("err = %v, want a refusal naming %s", err, tc.name)
			}
		})
	}
}

func signHS256(t *testing.T, secret string, claims map[string]any) string {
	t.Helper()
	s, err := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.MapClaims(claims)).SignedString([]byte(secret))
	if err != nil {
		t.Fatal(err)
	}
	return s
}
