package e2e

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// processEnv is the environment of a child process: ours without any
// FLASHSALE_* variable, plus vars.
func processEnv(vars map[string]string) []string {
	var out []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "FLASHSALE_") {
			out = append(out, kv)
		}
	}
	keys := make([]string, 0, len(vars))
	for k := range vars {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		out = append(out, k+"="+vars[k])
	}
	return out
}

func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("free port: %v", err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// proc is one running role of the binary. It keeps its address and
// environment across restarts, and writes stdout+stderr to one log file under
// t.TempDir(), whose tail is printed when the test fails.
type proc struct {
	t       *testing.T
	Role    string
	Addr    string // FLASHSALE_HTTP_ADDR
	URL     string // http://Addr
	vars    map[string]string
	logPath string
	serves  bool // waits for /readyz on start

	mu     sync.Mutex
	cmd    *exec.Cmd
	done   chan struct{}
	starts int
	cli    *client
}

// start runs `flashsale <role>` with the deployment's variables plus
// overrides, on a free HTTP port. For "all" and "ingress" it waits until
// /readyz answers 200.
func (e *env) start(role string, overrides map[string]string) *proc {
	e.t.Helper()
	return e.startProc(role, overrides, role == "all" || role == "ingress")
}

// startProc is start with an explicit choice of waiting for /readyz.
func (e *env) startProc(role string, overrides map[string]string, waitReady bool) *proc {
	t := e.t
	t.Helper()
	vars := e.Vars()
	for k, v := range overrides {
		vars[k] = v
	}
	addr := freeAddr(t)
	if a, ok := overrides["FLASHSALE_HTTP_ADDR"]; ok {
		addr = a
	}
	vars["FLASHSALE_HTTP_ADDR"] = addr
	p := &proc{
		t:       t,
		Role:    role,
		Addr:    addr,
		URL:     "http://" + addr,
		vars:    vars,
		logPath: filepath.Join(t.TempDir(), role+".log"),
		serves:  waitReady,
	}
	t.Cleanup(p.cleanup)
	p.launch()
	return p
}

func (p *proc) launch() {
	t := p.t
	t.Helper()
	f, err := os.OpenFile(p.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		t.Fatalf("log file: %v", err)
	}
	p.mu.Lock()
	p.starts++
	fmt.Fprintf(f, "=== e2e: start #%d of %s at %s on %s\n", p.starts, p.Role, time.Now().Format(time.RFC3339Nano), p.Addr)
	cmd := exec.Command(binPath, p.Role)
	cmd.Env = processEnv(p.vars)
	cmd.Stdout = f
	cmd.Stderr = f
	if err := cmd.Start(); err != nil {
		p.mu.Unlock()
		f.Close()
		t.Fatalf("start %s: %v", p.Role, err)
	}
	done := make(chan struct{})
	p.cmd, p.done = cmd, done
	p.mu.Unlock()
	go func() {
		cmd.Wait()
		fmt.Fprintf(f, "=== e2e: %s exited: %v\n", p.Role, cmd.ProcessState)
		f.Close()
		close(done)
	}()
	if p.serves {
		p.waitReady(60 * time.Second)
	}
}

// Running reports whether the current process is still alive.
func (p *proc) Running() bool {
	p.mu.Lock()
	done := p.done
	p.mu.Unlock()
	select {
	case <-done:
		return false
	default:
		return true
	}
}

func (p *proc) waitReady(timeout time.Duration) {
	t := p.t
	t.Helper()
	hc := &http.Client{Timeout: 2 * time.Second}
	last := "no answer yet"
	if !poll(timeout, 50*time.Millisecond, func() bool {
		if !p.Running() {
			t.Fatalf("%s exited before /readyz answered 200 (%s)\n%s", p.Role, last, p.LogTail(60))
		}
		resp, err := hc.Get(p.URL + "/readyz")
		if err != nil {
			last = err.Error()
			return false
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		last = fmt.Sprintf("%d %s", resp.StatusCode, strings.TrimSpace(string(b)))
		return resp.StatusCode == http.StatusOK
	}) {
		t.Fatalf("%s: /readyz not 200 within %s (last: %s)\n%s", p.Role, timeout, last, p.LogTail(60))
	}
}

// Kill sends SIGKILL and waits for the process to be gone. Safe to call from
// any goroutine.
func (p *proc) Kill() {
	p.mu.Lock()
	cmd, done := p.cmd, p.done
	p.mu.Unlock()
	cmd.Process.Signal(syscall.SIGKILL)
	<-done
}

// Stop sends SIGTERM and asserts that the process exits 0 within 30 s (the
// contract's graceful stop).
func (p *proc) Stop() {
	t := p.t
	t.Helper()
	code, err := p.terminate(30 * time.Second)
	if err != nil {
		t.Errorf("%s: %v\n%s", p.Role, err, p.LogTail(40))
	} else if code != 0 {
		t.Errorf("%s exited %d on SIGTERM, want 0\n%s", p.Role, code, p.LogTail(40))
	}
}

// terminate sends SIGTERM, waits up to timeout, SIGKILLs after that, and
// returns the exit code.
//
// It first closes the test client's idle connections: Go's http.Server
// Shutdown waits up to 5 s for connections that never carried a request,
// which the client's transport leaves behind after a burst.
func (p *proc) terminate(timeout time.Duration) (int, error) {
	p.mu.Lock()
	cmd, done, cli := p.cmd, p.done, p.cli
	p.mu.Unlock()
	if cli != nil {
		cli.hc.CloseIdleConnections()
	}
	select {
	case <-done:
		return cmd.ProcessState.ExitCode(), fmt.Errorf("already exited (%v) before SIGTERM", cmd.ProcessState)
	default:
	}
	cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-done:
		return cmd.ProcessState.ExitCode(), nil
	case <-time.After(timeout):
		cmd.Process.Signal(syscall.SIGKILL)
		<-done
		return -1, fmt.Errorf("did not exit within %s of SIGTERM; killed", timeout)
	}
}

// Restart stops the process gracefully if it runs (asserting exit 0), then
// starts it again with the same address and environment.
func (p *proc) Restart() {
	p.t.Helper()
	if p.Running() {
		p.Stop()
	}
	p.launch()
}

// Start starts the process again after Kill or Stop.
func (p *proc) Start() {
	p.t.Helper()
	if p.Running() {
		p.t.Fatalf("%s: Start while running", p.Role)
	}
	p.launch()
}

// LogTail returns the last n lines of the process's log.
func (p *proc) LogTail(n int) string {
	b, err := os.ReadFile(p.logPath)
	if err != nil {
		return fmt.Sprintf("(no log: %v)", err)
	}
	return fmt.Sprintf("--- %s log (%s), tail ---\n%s\n--- end of %s log ---", p.Role, p.logPath, tail(string(b), n), p.Role)
}

func (p *proc) cleanup() {
	if p.Running() {
		t0 := time.Now()
		if code, err := p.terminate(20 * time.Second); err != nil || code != 0 {
			p.t.Logf("cleanup: %s exit %d: %v", p.Role, code, err)
		}
		if d := time.Since(t0); d > 3*time.Second {
			p.t.Logf("cleanup: %s took %s to stop on SIGTERM", p.Role, d.Round(time.Millisecond))
		}
	}
	if p.t.Failed() {
		p.t.Log(p.LogTail(80))
	}
	if p.t.Failed() || os.Getenv("FLASHSALE_E2E_KEEPLOGS") == "all" {
		p.keepLog()
	}
}

// keepLog copies the process's whole log under FLASHSALE_E2E_LOGDIR (when
// set) once its test failed (or whatever the outcome, with
// FLASHSALE_E2E_KEEPLOGS=all): the tail printed is often not enough.
func (p *proc) keepLog() {
	dir := os.Getenv("FLASHSALE_E2E_LOGDIR")
	if dir == "" {
		return
	}
	b, err := os.ReadFile(p.logPath)
	if err != nil {
		return
	}
	name := strings.NewReplacer("/", "_", " ", "_").Replace(p.t.Name())
	dst := filepath.Join(dir, fmt.Sprintf("%s-%s-%s-%s.log", name, time.Now().UTC().Format("150405"), p.Role, filepath.Base(filepath.Dir(p.logPath))))
	if err := os.MkdirAll(dir, 0o755); err == nil && os.WriteFile(dst, b, 0o644) == nil {
		p.t.Logf("%s log kept in %s", p.Role, dst)
	}
}

// client returns the HTTP client of this process (one per process, reused).
func (p *proc) client() *client {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cli == nil {
		p.cli = checkedClient(p.t, p.URL, p.vars["FLASHSALE_ADMIN_TOKEN"])
	}
	return p.cli
}
