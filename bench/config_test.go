package bench

import (
	"errors"
	"flag"
	"io"
	"strings"
	"testing"
	"time"
)

func env(m map[string]string) func(string) string {
	return func(k string) string { return m[k] }
}

func TestParseConfigDefaultsAndEnv(t *testing.T) {
	c, err := parseConfig(nil, env(map[string]string{
		"FLASHSALE_ADMIN_TOKEN": "tok", "FLASHSALE_PAYMENT_SECRET": "new-secret, old-secret",
	}), io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if c.URL != "http://127.0.0.1:8080" || c.Users != 10000 || c.Stock != 1000 || c.PerUserLimit != 1 ||
		c.Conns != 256 || c.Arrival != arrivalBurst || c.PayRatio != 0.3 || c.CancelRatio != 0 ||
		c.PaymentWindow != 30 || c.Inventory != inventoryRedis || c.Duration != 5*time.Minute {
		t.Errorf("defaults: %+v", c)
	}
	if c.AdminToken != "tok" || c.PaymentSecret != "new-secret" {
		t.Errorf("env defaults: token %q secret %q", c.AdminToken, c.PaymentSecret)
	}
	c, err = parseConfig([]string{"--admin-token", "flag", "--payment-secret", "a,b", "--url", "http://h:1/"}, env(nil), io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if c.AdminToken != "flag" || c.PaymentSecret != "a" || c.URL != "http://h:1" {
		t.Errorf("flags: %+v", c)
	}
}

func TestParseConfigRejects(t *testing.T) {
	base := []string{"--admin-token", "t", "--payment-secret", "s"}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--users", "0"}, "--users"},
		{[]string{"--users", "100001"}, "--users"},
		{[]string{"--stock", "0"}, "--stock"},
		{[]string{"--conns", "0"}, "--conns"},
		{[]string{"--arrival", "ramp"}, "--ramp"},
		{[]string{"--ramp", "1s"}, "--ramp"},
		{[]string{"--pay-ratio", "1.5"}, "--pay-ratio"},
		{[]string{"--cancel-ratio", "-0.1"}, "--cancel-ratio"},
		{[]string{"--payment-window", "0"}, "--payment-window"},
		{[]string{"--inventory", "postgres"}, "--inventory"},
		{[]string{"--url", "ftp://x"}, "--url"},
		{[]string{"--url", "http://x/?q=1"}, "--url"},
		{[]string{"--duration", "0s"}, "--duration"},
		{[]string{"--duration", "40s", "--wait-expiry", "--payment-window", "60"}, "--wait-expiry"},
		{[]string{"--duration", "10s", "--arrival", "ramp", "--ramp", "20s"}, "--duration"},
		{[]string{"--reservation-window", "5s"}, "--reservation"},
		{[]string{"--arrival", "lottery"}, "waiting-room"},
		{[]string{"--waitlist", "5"}, "--waitlist"},
		{[]string{"--room-window", "5s"}, "--room-window"},
		{[]string{"--arrival", "waiting-room", "--waitlist", "-2"}, "--waitlist"},
		{[]string{"--arrival", "waiting-room", "--room-window", "2h"}, "--room-window"},
		{[]string{"--arrival", "waiting-room", "--ramp", "1s"}, "--ramp"},
		{[]string{"--arrival", "waiting-room", "--reservation"}, "--reservation"},
		{[]string{"--arrival", "waiting-room", "--bundle-ratio", "0.5"}, "--bundle-ratio"},
		{[]string{"--arrival", "waiting-room", "--preload", "10", "--workers-cmd", "true"}, "--preload"},
		{[]string{"--arrival", "waiting-room", "--room-window", "10s", "--duration", "25s"}, "--duration"},
	} {
		_, err := parseConfig(append(append([]string{}, base...), tc.args...), env(nil), io.Discard)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%v: err %v, want one naming %s", tc.args, err, tc.want)
		}
	}
	if _, err := parseConfig([]string{"--pay-ratio", "0.5"}, env(nil), io.Discard); err == nil ||
		!strings.Contains(err.Error(), "--admin-token") || !strings.Contains(err.Error(), "--payment-secret") {
		t.Errorf("missing credentials: %v", err)
	}
	if _, err := parseConfig([]string{"--admin-token", "t", "--pay-ratio", "0"}, env(nil), io.Discard); err != nil {
		t.Errorf("no secret is fine without payments: %v", err)
	}
	if _, err := parseConfig([]string{"-h"}, env(nil), io.Discard); !errors.Is(err, flag.ErrHelp) {
		t.Errorf("-h: %v", err)
	}
}

func TestReservationWindowAuto(t *testing.T) {
	c := Config{Reservation: true, Users: 10000}
	if got := c.reservationWindow(); got != 12*time.Second {
		t.Errorf("auto window for 10000 users = %v", got)
	}
	c.Users = 100000
	if got := c.reservationWindow(); got != time.Minute {
		t.Errorf("auto window capped = %v", got)
	}
	c.ReservationWindow = 3 * time.Second
	if got := c.reservationWindow(); got != 3*time.Second {
		t.Errorf("explicit window = %v", got)
	}
}

func TestParseConfigWaitingRoom(t *testing.T) {
	base := []string{"--admin-token", "t", "--payment-secret", "s"}
	c, err := parseConfig(append(base, "--arrival", "Waiting-Room", "--stock", "500", "--users", "5000"), env(nil), io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if !c.waitingRoom() || c.Waitlist != 50 || c.roomWindow() != 7*time.Second {
		t.Errorf("defaults: arrival %q waitlist %d window %v", c.Arrival, c.Waitlist, c.roomWindow())
	}
	c, err = parseConfig(append(base, "--arrival", "waiting-room", "--waitlist", "0", "--room-window", "3s"), env(nil), io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if c.Waitlist != 0 || c.roomWindow() != 3*time.Second || c.summary().RoomWindowSeconds != 3 {
		t.Errorf("flags: waitlist %d window %v", c.Waitlist, c.roomWindow())
	}
	c, err = parseConfig(base, env(nil), io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if c.waitingRoom() || c.Waitlist != 0 || c.roomWindow() != 0 {
		t.Errorf("burst: waitlist %d window %v", c.Waitlist, c.roomWindow())
	}
}
