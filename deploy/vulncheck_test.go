package deploy

import (
	"errors"
	"net"
	"os"
	"os/exec"
	"strings"
	"testing"
)

// TestVulncheckWithoutDatabaseSaysSo: make vulncheck where neither
// vuln.go.dev nor the Go module proxy answers exits 2 with a message saying
// no database could be reached and where to read how to run it; it never
// passes without having checked.
func TestVulncheckWithoutDatabaseSaysSo(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := "http://" + ln.Addr().String()
	ln.Close() // nothing answers there now
	cmd := exec.Command("bash", "vulncheck.sh")
	cmd.Env = append(os.Environ(), "VULNDB_URL="+closed, "FLASHSALE_VULNDB=", "GOPROXY=off",
		"GOMODCACHE="+t.TempDir(), "GOFLAGS=-mod=mod")
	out, err := cmd.CombinedOutput()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 2 {
		t.Fatalf("exit %v, want 2; output:\n%s", err, out)
	}
	for _, want := range []string{"no vulnerability database can be reached", closed, "docs/security.md"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("the output lacks %q:\n%s", want, out)
		}
	}
}
