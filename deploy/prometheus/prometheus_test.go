// Package prometheus_test checks the Prometheus configuration, the alerting
// rules and their unit tests in this directory with promtool (Debian's
// prometheus package; deploy/services.sh installs it). The queries of the rules
// and of the Grafana dashboard are run against a real Prometheus scraping a
// real process in e2e/ops_test.go.
package prometheus_test

import (
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// promtool returns promtool's path; without it the test fails when CI is set
// and skips otherwise.
func promtool(t *testing.T) string {
	t.Helper()
	p, err := exec.LookPath("promtool")
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("promtool not installed (CI is set, so this fails; deploy/services.sh installs Debian's prometheus): %v", err)
		}
		t.Skipf("promtool not installed (deploy/services.sh installs Debian's prometheus): %v", err)
	}
	return p
}

func run(t *testing.T, name string, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, name, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return string(out)
}

func TestPromtoolCheckConfig(t *testing.T) {
	out := run(t, promtool(t), "check", "config", "prometheus.yml")
	if !strings.Contains(out, "SUCCESS") {
		t.Fatalf("promtool check config did not report SUCCESS:\n%s", out)
	}
}

func TestPromtoolCheckRules(t *testing.T) {
	out := run(t, promtool(t), "check", "rules", "rules.yml")
	if !strings.Contains(out, "SUCCESS: 10 rules found") {
		t.Fatalf("promtool check rules: want 10 rules:\n%s", out)
	}
}

// TestPromtoolTestRules runs rules_test.yml and checks that it tests every
// alert of rules.yml: each one is shown to fire in its test.
func TestPromtoolTestRules(t *testing.T) {
	out := run(t, promtool(t), "test", "rules", "rules_test.yml")
	if !strings.Contains(out, "SUCCESS") {
		t.Fatalf("promtool test rules:\n%s", out)
	}
	rules, err := os.ReadFile("rules.yml")
	if err != nil {
		t.Fatal(err)
	}
	tests, err := os.ReadFile("rules_test.yml")
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, line := range strings.Split(string(rules), "\n") {
		name, ok := strings.CutPrefix(strings.TrimSpace(line), "- alert: ")
		if !ok {
			continue
		}
		n++
		// A firing expectation: the alert's name followed by a non-empty exp_alerts.
		if !strings.Contains(string(tests), "alertname: "+name+"\n        exp_alerts:\n          - exp_labels:") {
			t.Errorf("alert %s has no test in rules_test.yml that shows it firing", name)
		}
	}
	if n != 10 {
		t.Errorf("found %d alerts in rules.yml, want 10", n)
	}
}

// TestDashboardIsGrafanaJSON checks the dashboard's shape: panels with
// Prometheus queries, each with an expression and a refId.
func TestDashboardIsGrafanaJSON(t *testing.T) {
	b, err := os.ReadFile("grafana-dashboard.json")
	if err != nil {
		t.Fatal(err)
	}
	var d struct {
		UID    string `json:"uid"`
		Panels []struct {
			Title   string `json:"title"`
			Type    string `json:"type"`
			Targets []struct {
				Expr  string `json:"expr"`
				RefID string `json:"refId"`
			} `json:"targets"`
		} `json:"panels"`
	}
	if err := json.Unmarshal(b, &d); err != nil {
		t.Fatalf("grafana-dashboard.json: %v", err)
	}
	if d.UID == "" || len(d.Panels) < 10 {
		t.Fatalf("dashboard: uid %q, %d panels; want a uid and the live page's panels", d.UID, len(d.Panels))
	}
	for _, p := range d.Panels {
		if len(p.Targets) == 0 {
			t.Errorf("panel %q has no query", p.Title)
		}
		for _, q := range p.Targets {
			if q.Expr == "" || q.RefID == "" || !strings.Contains(q.Expr, "flashsale_") && !strings.Contains(q.Expr, "up{") {
				t.Errorf("panel %q: query %+v", p.Title, q)
			}
		}
	}
}
