package main

import (
	"bytes"
	"errors"
	"flag"
	"log/slog"
	"slices"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/flashsale/flashsale/httpapi"
)

// secretEnv sets every secret setting to a distinctive value and returns the
// values that must never be printed.
func secretEnv(t *testing.T) []string {
	t.Setenv("FLASHSALE_ADMIN_TOKEN", "ADMINSECRET-0123456789")
	t.Setenv("FLASHSALE_PAYMENT_SECRET", "PAYSECRET-A-0123456789,PAYSECRET-B-0123456789")
	t.Setenv("FLASHSALE_JWT_SECRETS", "JWTSECRET-0123456789")
	t.Setenv("FLASHSALE_MYSQL_META_DSN", "fs:METAPASSWORD@tcp(10.9.9.9:3306)/flashsale_meta")
	t.Setenv("FLASHSALE_MYSQL_SHARD_DSNS", "fs:SHARDPASSWORD0@tcp(10.9.9.10:3306)/s0,fs:SHARDPASSWORD1@tcp(10.9.9.11:3306)/s1")
	t.Setenv("FLASHSALE_AMQP_URL", "amqp://fs:AMQPPASSWORD@10.9.9.12:5672/fs")
	return []string{"ADMINSECRET", "PAYSECRET-A", "PAYSECRET-B", "JWTSECRET", "METAPASSWORD", "SHARDPASSWORD", "AMQPPASSWORD"}
}

// A flag error and -h print the usage with each flag's default, which is the
// environment's value: secret settings show "(set)", DSNs and URLs with their
// password masked, and no secret at all.
func TestUsageShowsNoSecret(t *testing.T) {
	secrets := secretEnv(t)
	for _, args := range [][]string{{"--typo"}, {"-h"}, {"--limit-per-window"}} {
		var out bytes.Buffer
		fs := flag.NewFlagSet("flashsale all", flag.ContinueOnError)
		fs.SetOutput(&out)
		_, err := loadConfig(fs, args)
		if err == nil {
			t.Fatalf("%v: no error", args)
		}
		text := out.String() + err.Error()
		for _, s := range secrets {
			if strings.Contains(text, s) {
				t.Errorf("%v: the output shows %s:\n%s", args, s, text)
			}
		}
		for _, want := range []string{"(default (set))", "fs:xxxxx@tcp(10.9.9.9:3306)/flashsale_meta", "amqp://fs:xxxxx@10.9.9.12:5672/fs"} {
			if !strings.Contains(text, want) {
				t.Errorf("%v: the usage lacks %q:\n%s", args, want, text)
			}
		}
		if args[0] == "-h" && !errors.Is(err, flag.ErrHelp) {
			t.Errorf("-h: %v, want flag.ErrHelp", err)
		}
	}
}

// An AMQP URL that does not parse is refused without quoting it (it may hold
// a password).
func TestBadAMQPURLNotQuoted(t *testing.T) {
	t.Setenv("FLASHSALE_AMQP_URL", "amqp://fs:AMQP%zzPASSWORD@host/")
	_, err := loadConfig(flag.NewFlagSet("flashsale all", flag.ContinueOnError), nil)
	if err == nil || !strings.Contains(err.Error(), "FLASHSALE_AMQP_URL") || strings.Contains(err.Error(), "PASSWORD") {
		t.Errorf("err = %v, want a refusal naming FLASHSALE_AMQP_URL without the URL", err)
	}
}

// Every secret setting holding the shipped placeholder (any case, anywhere
// in the value) stops the start with an error naming the setting; a short
// secret is only warned about.
func TestPlaceholderSecretsRefused(t *testing.T) {
	for _, tc := range []struct{ name, value string }{
		{"FLASHSALE_ADMIN_TOKEN", "CHANGE-ME-at-least-16-bytes"},
		{"FLASHSALE_PAYMENT_SECRET", "a-real-secret-0123456789,change-me-too"},
		{"FLASHSALE_JWT_SECRETS", "CHANGE-ME"},
		{"FLASHSALE_MYSQL_META_DSN", "flashsale:CHANGE-ME@tcp(10.0.3.10:3306)/flashsale_meta"},
		{"FLASHSALE_MYSQL_SHARD_DSNS", "root@tcp(127.0.0.1:3306)/s0,flashsale:CHANGE-ME@tcp(10.0.3.12:3306)/s1"},
		{"FLASHSALE_AMQP_URL", "amqp://flashsale:CHANGE-ME@10.0.2.11:5672/flashsale"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Setenv(tc.name, tc.value)
			_, err := loadConfig(flag.NewFlagSet("flashsale all", flag.ContinueOnError), nil)
			if err == nil || !strings.Contains(err.Error(), tc.name) || !strings.Contains(err.Error(), "placeholder") {
				t.Errorf("err = %v, want a refusal naming %s", err, tc.name)
			}
		})
	}
	t.Setenv("FLASHSALE_ADMIN_TOKEN", "short")
	c, err := loadConfig(flag.NewFlagSet("flashsale all", flag.ContinueOnError), nil)
	if err != nil || len(c.Weak) != 1 {
		t.Errorf("a short admin token: %v, weak %v; want accepted with a warning", err, c)
	}
}

// /debug/pprof/cmdline shows the command line with the values of secret
// flags replaced, in every form the flag package accepts.
func TestCmdlineRedactsSecretFlags(t *testing.T) {
	fs := flag.NewFlagSet("flashsale reconcile", flag.ContinueOnError)
	fs.Bool("repair", false, "")
	args := []string{"--repair", "-admin-token", "TOK1", "--payment-secret=PAY1", "-log-level", "debug",
		"--mysql-meta-dsn", "u:DBPW@tcp(h:3306)/m", "-amqp-url=amqp://u:AMQPPW@h/", "-jwt-secrets", "JWT1", "rest", "-admin-token", "x"}
	if _, err := loadConfig(fs, args); err != nil {
		t.Fatal(err)
	}
	got := redactArgs(fs, args)
	want := []string{"--repair", "-admin-token", "(set)", "--payment-secret=(set)", "-log-level", "debug",
		"--mysql-meta-dsn", "(set)", "-amqp-url=(set)", "-jwt-secrets", "(set)", "rest", "-admin-token", "x"}
	if !slices.Equal(got, want) {
		t.Errorf("redactArgs:\n got %q\nwant %q", got, want)
	}
}

// The operations surface warns at start when it is reachable from
// everywhere: on a public ingress listener without FLASHSALE_OPS_ADDR, or on
// an operations listener bound to every interface; not on loopback or a
// private address.
func TestOpsExposureWarnings(t *testing.T) {
	for _, tc := range []struct {
		http, ops string
		warn      bool
	}{
		{"0.0.0.0:8080", "", true},
		{"127.0.0.1:8080", "", false},
		{"0.0.0.0:8080", "0.0.0.0:9100", true},
		{"0.0.0.0:8080", ":9100", true},
		{"0.0.0.0:8080", "127.0.0.1:9100", false},
		{"0.0.0.0:8080", "10.0.1.21:9100", false},
	} {
		var logged bytes.Buffer
		log := slog.New(slog.NewTextHandler(&logged, nil))
		_, err := newOpsSurface(opsConfig{Addr: tc.ops}, &config{HTTPAddr: tc.http}, []string{"ingress"},
			prometheus.NewRegistry(), httpapi.NewAdminAuth("", nil, log), log)
		if err != nil {
			t.Fatal(err)
		}
		if got := strings.Contains(logged.String(), "level=WARN"); got != tc.warn {
			t.Errorf("http %q, ops %q: warned %v, want %v: %s", tc.http, tc.ops, got, tc.warn, logged.String())
		}
	}
}
