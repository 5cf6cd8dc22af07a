package deploy

import (
	"bufio"
	"bytes"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
)

// unit is one parsed systemd unit file: section -> key -> values, in order.
type unit map[string]map[string][]string

func parseUnit(t *testing.T, path string) unit {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	u := unit{}
	section := ""
	sc := bufio.NewScanner(bytes.NewReader(b))
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		switch {
		case line == "" || strings.HasPrefix(line, "#") || strings.HasPrefix(line, ";"):
		case strings.HasPrefix(line, "[") && strings.HasSuffix(line, "]"):
			section = line[1 : len(line)-1]
			if u[section] == nil {
				u[section] = map[string][]string{}
			}
		default:
			k, v, ok := strings.Cut(line, "=")
			if !ok || section == "" {
				t.Fatalf("%s:%d: not a key=value in a section: %q", path, n, line)
			}
			u[section][k] = append(u[section][k], v)
		}
	}
	return u
}

func (u unit) get(section, key string) string {
	vs := u[section][key]
	if len(vs) == 0 {
		return ""
	}
	return vs[len(vs)-1]
}

// The grace a role has to stop on SIGTERM by default
// (FLASHSALE_SHUTDOWN_GRACE_SECONDS, cmd/flashsale/config.go).
const defaultShutdownGraceSeconds = 20

var roleUnits = []string{"ingress", "worker", "relay", "delayq"}

// TestSystemdUnits: a unit per role runs `flashsale <role>` with the shared
// EnvironmentFile, restarts on failure, gives the role's graceful stop more
// time than its grace before SIGKILL, and keeps the hardening that does not
// break a Go network service. The migrate unit is a oneshot. Where
// systemd-analyze is installed, `verify` accepts every unit without a warning
// and `security --offline` rates each role's exposure OK (at most 2.0).
func TestSystemdUnits(t *testing.T) {
	dir := "systemd"
	for _, role := range append(roleUnits, "migrate") {
		path := filepath.Join(dir, "flashsale-"+role+".service")
		u := parseUnit(t, path)
		if got, want := u.get("Service", "ExecStart"), "/usr/local/bin/flashsale "+role; got != want {
			t.Errorf("%s: ExecStart=%q, want %q", path, got, want)
		}
		if envs := u["Service"]["EnvironmentFile"]; len(envs) == 0 || envs[0] != "/etc/flashsale/flashsale.env" {
			t.Errorf("%s: EnvironmentFile=%v, want /etc/flashsale/flashsale.env first", path, envs)
		}
		for key, want := range map[string]string{"DynamicUser": "yes", "NoNewPrivileges": "yes", "ProtectSystem": "strict",
			"ProtectHome": "yes", "PrivateTmp": "yes", "CapabilityBoundingSet": "", "MemoryDenyWriteExecute": "yes"} {
			if vs, ok := u["Service"][key]; !ok || vs[len(vs)-1] != want {
				t.Errorf("%s: %s=%v, want %q", path, key, vs, want)
			}
		}
		if got := u.get("Install", "WantedBy"); got != "multi-user.target" {
			t.Errorf("%s: WantedBy=%q, want multi-user.target", path, got)
		}
		if role == "migrate" {
			if got := u.get("Service", "Type"); got != "oneshot" {
				t.Errorf("%s: Type=%q, want oneshot", path, got)
			}
			continue
		}
		if got := u.get("Service", "Restart"); got != "on-failure" {
			t.Errorf("%s: Restart=%q, want on-failure", path, got)
		}
		if got := u.get("Service", "KillSignal"); got != "SIGTERM" {
			t.Errorf("%s: KillSignal=%q, want SIGTERM (the roles' graceful stop)", path, got)
		}
		stop, err := strconv.Atoi(u.get("Service", "TimeoutStopSec"))
		if err != nil || stop <= defaultShutdownGraceSeconds+5 {
			t.Errorf("%s: TimeoutStopSec=%q, want seconds well above the %d s shutdown grace", path,
				u.get("Service", "TimeoutStopSec"), defaultShutdownGraceSeconds)
		}
		if !strings.Contains(u.get("Unit", "After"), "flashsale-migrate.service") {
			t.Errorf("%s: not ordered after flashsale-migrate.service", path)
		}
		if got := u.get("Unit", "StartLimitIntervalSec"); got != "0" {
			t.Errorf("%s: StartLimitIntervalSec=%q, want 0 (a role whose dependency is away keeps being restarted)", path, got)
		}
	}
	checkEnvExample(t, filepath.Join(dir, "flashsale.env.example"))
	systemdAnalyze(t, dir)
}

// checkEnvExample asserts that every variable of the example EnvironmentFile
// is a FLASHSALE_ setting docs/configuration.md documents.
func checkEnvExample(t *testing.T, path string) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	readme, err := os.ReadFile(filepath.Join("..", "docs", "configuration.md"))
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, line := range strings.Split(string(b), "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		k, _, ok := strings.Cut(line, "=")
		if !ok || !strings.HasPrefix(k, "FLASHSALE_") {
			t.Errorf("%s: %q is not a FLASHSALE_ setting", path, line)
			continue
		}
		if !bytes.Contains(readme, []byte("`"+k+"`")) {
			t.Errorf("%s: %s is not documented in docs/configuration.md", path, k)
		}
		n++
	}
	if n < 8 {
		t.Errorf("%s: only %d settings", path, n)
	}
}

// systemdAnalyze runs systemd-analyze verify and security on the units in a
// root of their own (the machine's units, the binary as an executable stub):
// nothing is installed on this machine.
func systemdAnalyze(t *testing.T, dir string) {
	t.Helper()
	sa, err := exec.LookPath("systemd-analyze")
	if err != nil {
		t.Logf("systemd-analyze is not installed: the units were checked by parsing only")
		return
	}
	root := t.TempDir()
	unitDir := filepath.Join(root, "etc", "systemd", "system")
	for _, d := range []string{unitDir, filepath.Join(root, "usr", "local", "bin"), filepath.Join(root, "etc", "flashsale")} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	// The targets the units name (network-online, multi-user, sysinit...).
	sys := "/lib/systemd/system"
	if _, err := os.Stat(sys); err != nil {
		sys = "/usr/lib/systemd/system"
	}
	if err := os.MkdirAll(filepath.Join(root, "lib", "systemd"), 0o755); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("cp", "-a", sys, filepath.Join(root, "lib", "systemd", "system")).CombinedOutput(); err != nil {
		t.Fatalf("copy %s: %v\n%s", sys, err, out)
	}
	if err := os.WriteFile(filepath.Join(root, "usr", "local", "bin", "flashsale"), []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	example, err := os.ReadFile(filepath.Join(dir, "flashsale.env.example"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(root, "etc", "flashsale", "flashsale.env"), example, 0o640); err != nil {
		t.Fatal(err)
	}
	var units []string
	for _, role := range append(roleUnits, "migrate") {
		name := "flashsale-" + role + ".service"
		b, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(unitDir, name), b, 0o644); err != nil {
			t.Fatal(err)
		}
		units = append(units, filepath.Join(unitDir, name))
	}
	cmd := exec.Command(sa, append([]string{"verify", "--man=no", "--root=" + root}, units...)...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil || stderr.Len() > 0 || stdout.Len() > 0 {
		t.Errorf("systemd-analyze verify: %v\n%s%s", err, stdout.String(), stderr.String())
	}
	exposure := regexp.MustCompile(`Overall exposure level for \S+: ([0-9.]+)`)
	for _, role := range roleUnits {
		out, err := exec.Command(sa, "security", "--offline=true", "--root="+root,
			filepath.Join(unitDir, "flashsale-"+role+".service")).CombinedOutput()
		m := exposure.FindSubmatch(out)
		if m == nil {
			t.Errorf("systemd-analyze security %s: %v, no exposure level in:\n%s", role, err, out)
			continue
		}
		level, _ := strconv.ParseFloat(string(m[1]), 64)
		t.Logf("flashsale-%s.service: exposure %.1f (systemd-analyze security)", role, level)
		if level > 2.0 {
			t.Errorf("flashsale-%s.service: exposure %.1f, want at most 2.0 (OK)", role, level)
		}
	}
}

// TestEnvExampleSafeAsShipped: copied unedited, the example EnvironmentFile
// can do no harm. Its secrets are empty (admin endpoints and the webhook
// answer 503 until they are set), every password in a DSN or URL holds the
// placeholder CHANGE-ME (which the binary refuses at start), and the
// operations listener, which serves pprof without authentication, is on
// loopback.
func TestEnvExampleSafeAsShipped(t *testing.T) {
	b, err := os.ReadFile(filepath.Join("systemd", "flashsale.env.example"))
	if err != nil {
		t.Fatal(err)
	}
	vars := map[string]string{}
	for _, line := range strings.Split(string(b), "\n") {
		if k, v, ok := strings.Cut(strings.TrimSpace(line), "="); ok && !strings.HasPrefix(k, "#") {
			vars[k] = v
		}
	}
	for _, k := range []string{"FLASHSALE_ADMIN_TOKEN", "FLASHSALE_PAYMENT_SECRET"} {
		if v, ok := vars[k]; !ok || v != "" {
			t.Errorf("%s=%q, want listed and empty", k, v)
		}
	}
	for _, k := range []string{"FLASHSALE_AMQP_URL", "FLASHSALE_MYSQL_META_DSN", "FLASHSALE_MYSQL_SHARD_DSNS"} {
		for _, item := range strings.Split(vars[k], ",") {
			if !strings.Contains(item, ":CHANGE-ME@") {
				t.Errorf("%s: %q has no CHANGE-ME password", k, item)
			}
		}
	}
	host, _, err := net.SplitHostPort(vars["FLASHSALE_OPS_ADDR"])
	if ip := net.ParseIP(host); err != nil || ip == nil || !ip.IsLoopback() {
		t.Errorf("FLASHSALE_OPS_ADDR=%q, want a loopback address", vars["FLASHSALE_OPS_ADDR"])
	}
}
