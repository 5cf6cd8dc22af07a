package e2e

// A RabbitMQ cluster of the test's own (issue 12): private nodes of the
// machine's rabbitmq-server (Debian's scripts under /usr/lib/rabbitmq/bin),
// each with its node name, AMQP and distribution ports, data and log
// directories under t.TempDir(), management off, one Erlang cookie of the
// cluster's, clustered with `rabbitmqctl join_cluster` as deploy/cluster.sh
// does. They share the machine's epmd (the Erlang port mapper, which any node
// starts if it is not running) and nothing else: the machine's broker
// (rabbit@localhost on 5672) is never touched. Every node is the test's child
// process, killed (SIGKILL) in t.Cleanup and also when the test binary dies.

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

const rabbitScripts = "/usr/lib/rabbitmq/bin"

// rabbitNode is one private RabbitMQ node.
type rabbitNode struct {
	t    *testing.T
	Name string // rabbit-<id>-<i>@localhost
	URL  string // amqp://guest:guest@127.0.0.1:<port>/
	Dir  string
	env  []string

	mu     sync.Mutex
	cmd    *exec.Cmd
	done   chan struct{}
	starts int
}

// rabbitCluster is the nodes of one private cluster.
type rabbitCluster struct {
	t     *testing.T
	Nodes []*rabbitNode
}

// URLs are the AMQP URLs of every node, comma-separated (FLASHSALE_AMQP_URL).
func (rc *rabbitCluster) URLs() string {
	urls := make([]string, len(rc.Nodes))
	for i, n := range rc.Nodes {
		urls[i] = n.URL
	}
	return strings.Join(urls, ",")
}

// portOf returns the port of a free loopback address.
func portOf(t *testing.T) int {
	t.Helper()
	addr := freeAddr(t)
	p, err := strconv.Atoi(addr[strings.LastIndex(addr, ":")+1:])
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// startRabbitCluster starts n private nodes at once, waits for each, and
// joins the others to the first. It fails the test (skips it without CI) when
// RabbitMQ is not installed.
func startRabbitCluster(t *testing.T, n int) *rabbitCluster {
	t.Helper()
	if _, err := os.Stat(filepath.Join(rabbitScripts, "rabbitmq-server")); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("rabbitmq-server not installed (CI is set, so this fails): %v", err)
		}
		t.Skipf("rabbitmq-server not installed: %v", err)
	}
	base := t.TempDir()
	cookie := filepath.Join(base, ".erlang.cookie")
	if err := os.WriteFile(cookie, []byte("flashsale-e2e-"+randHex(12)), 0o400); err != nil {
		t.Fatal(err)
	}
	id := randHex(3)
	rc := &rabbitCluster{t: t}
	for i := 1; i <= n; i++ {
		short := fmt.Sprintf("rabbit-e2e%s-%d", id, i)
		dir := filepath.Join(base, short)
		if err := os.MkdirAll(filepath.Join(dir, "log"), 0o755); err != nil {
			t.Fatal(err)
		}
		port, dist := portOf(t), portOf(t)
		files := map[string]string{
			// Its own config: the machine's /etc/rabbitmq binds 5672 and names the node.
			"rabbitmq.conf":     fmt.Sprintf("listeners.tcp.local = 127.0.0.1:%d\nloopback_users.guest = true\n", port),
			"enabled_plugins":   "[].\n", // management and every other plugin off
			"rabbitmq-env.conf": "ERL_EPMD_ADDRESS=127.0.0.1\n",
		}
		for name, body := range files {
			if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644); err != nil {
				t.Fatal(err)
			}
		}
		node := &rabbitNode{t: t, Name: short + "@localhost", URL: fmt.Sprintf("amqp://guest:guest@127.0.0.1:%d/", port), Dir: dir,
			env: append(processEnv(nil),
				"HOME="+base, // the cluster's cookie, for the nodes and the CLI
				"RABBITMQ_NODENAME="+short+"@localhost",
				"RABBITMQ_NODE_IP_ADDRESS=127.0.0.1",
				"RABBITMQ_NODE_PORT="+strconv.Itoa(port),
				"RABBITMQ_DIST_PORT="+strconv.Itoa(dist),
				// The CLI's own distribution port: any free one (the default
				// range is shared with every other rabbitmqctl on the machine).
				"RABBITMQ_CTL_DIST_PORT_MIN=0", "RABBITMQ_CTL_DIST_PORT_MAX=0",
				"RABBITMQ_CONF_ENV_FILE="+filepath.Join(dir, "rabbitmq-env.conf"),
				"RABBITMQ_CONFIG_FILE="+filepath.Join(dir, "rabbitmq.conf"),
				"RABBITMQ_ENABLED_PLUGINS_FILE="+filepath.Join(dir, "enabled_plugins"),
				"RABBITMQ_MNESIA_BASE="+filepath.Join(dir, "mnesia"),
				"RABBITMQ_LOG_BASE="+filepath.Join(dir, "log"),
				"RABBITMQ_PID_FILE="+filepath.Join(dir, "pid"),
				// One scheduler each: three nodes and the sale share two cores.
				"RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS=+S 1:1",
				// The start script execs the VM (no wrapper shell), so the
				// child is the node itself.
				"RUNNING_UNDER_SYSTEMD=true",
				"ERL_CRASH_DUMP_SECONDS=0",
			)}
		t.Cleanup(node.cleanup)
		rc.Nodes = append(rc.Nodes, node)
	}
	t0 := time.Now()
	for _, node := range rc.Nodes {
		node.launch()
	}
	var wg sync.WaitGroup
	errs := make([]error, len(rc.Nodes))
	for i, node := range rc.Nodes {
		wg.Add(1)
		go func() { defer wg.Done(); errs[i] = node.awaitReady(2 * time.Minute) }()
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("rabbitmq node %s: %v\n%s", rc.Nodes[i].Name, err, rc.Nodes[i].logTail())
		}
	}
	booted := time.Since(t0)
	seed := rc.Nodes[0].Name
	for _, node := range rc.Nodes[1:] {
		for _, args := range [][]string{{"stop_app"}, {"join_cluster", seed}, {"start_app"}} {
			if out, err := node.ctl(time.Minute, args...); err != nil {
				t.Fatalf("rabbitmqctl -n %s %v: %v\n%s", node.Name, args, err, out)
			}
		}
	}
	eventually(t, time.Minute, "every node runs in one cluster", func() (bool, string) {
		out, err := rc.Nodes[0].ctl(30*time.Second, "eval", "rabbit_nodes:all_running().")
		if err != nil {
			return false, err.Error()
		}
		for _, node := range rc.Nodes {
			if !strings.Contains(out, node.Name) {
				return false, "running: " + out
			}
		}
		return true, ""
	})
	t.Logf("rabbitmq: %d nodes booted in %s, clustered in %s", n, booted.Round(100*time.Millisecond), time.Since(t0).Round(100*time.Millisecond))
	return rc
}

func (n *rabbitNode) launch() {
	t := n.t
	t.Helper()
	f, err := os.OpenFile(filepath.Join(n.Dir, "log", "stdout.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	n.starts++
	fmt.Fprintf(f, "=== e2e: start #%d of %s at %s\n", n.starts, n.Name, time.Now().Format(time.RFC3339Nano))
	cmd := exec.Command(filepath.Join(rabbitScripts, "rabbitmq-server"))
	cmd.Dir = n.Dir // a node that fails leaves its erl_crash.dump here
	cmd.Env = n.env
	cmd.Stdout, cmd.Stderr = f, f
	// Gone with the test binary, whatever way it ends.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		f.Close()
		t.Fatalf("start rabbitmq node %s: %v", n.Name, err)
	}
	done := make(chan struct{})
	n.cmd, n.done = cmd, done
	go func() {
		cmd.Wait()
		fmt.Fprintf(f, "=== e2e: %s exited: %v\n", n.Name, cmd.ProcessState)
		f.Close()
		close(done)
	}()
}

// running reports whether the node's process is alive.
func (n *rabbitNode) running() bool {
	n.mu.Lock()
	done := n.done
	n.mu.Unlock()
	if done == nil {
		return false
	}
	select {
	case <-done:
		return false
	default:
		return true
	}
}

// ctl runs rabbitmqctl against the node and returns its output.
func (n *rabbitNode) ctl(timeout time.Duration, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, filepath.Join(rabbitScripts, "rabbitmqctl"), append([]string{"-q", "-n", n.Name}, args...)...)
	cmd.Env = n.env
	cmd.Dir = n.Dir
	out, err := cmd.CombinedOutput()
	return strings.TrimSpace(string(out)), err
}

// awaitReady retries `rabbitmqctl await_startup` (it fails at once while the
// node registers) until the node runs, or the process exits, or timeout.
func (n *rabbitNode) awaitReady(timeout time.Duration) error {
	var last string
	exited := false
	if poll(timeout, 200*time.Millisecond, func() bool {
		if !n.running() {
			exited = true
			return true
		}
		out, err := n.ctl(15*time.Second, "await_startup", "--timeout", "5")
		if err == nil {
			return true
		}
		last = fmt.Sprintf("%v: %s", err, tail(out, 3))
		return false
	}) && !exited {
		return nil
	}
	if exited {
		return fmt.Errorf("the node exited while starting")
	}
	return fmt.Errorf("not running within %s (last: %s)", timeout, last)
}

// Kill SIGKILLs the node and waits until it is gone.
func (n *rabbitNode) Kill() {
	n.mu.Lock()
	cmd, done := n.cmd, n.done
	n.mu.Unlock()
	cmd.Process.Signal(syscall.SIGKILL)
	<-done
}

// Start starts the node again (it rejoins its cluster from its data) and waits
// until it runs.
func (n *rabbitNode) Start() {
	n.t.Helper()
	if n.running() {
		n.t.Fatalf("rabbitmq node %s: Start while running", n.Name)
	}
	n.launch()
	if err := n.awaitReady(2 * time.Minute); err != nil {
		n.t.Fatalf("rabbitmq node %s after a restart: %v\n%s", n.Name, err, n.logTail())
	}
}

// clientConnections returns how many client connections the node has.
func (n *rabbitNode) clientConnections() int {
	n.t.Helper()
	out, err := n.ctl(30*time.Second, "list_connections", "name")
	if err != nil {
		n.t.Fatalf("rabbitmqctl -n %s list_connections: %v\n%s", n.Name, err, out)
	}
	return strings.Count(out, " -> ")
}

func (n *rabbitNode) logTail() string {
	var b strings.Builder
	for _, name := range []string{"stdout.log", n.Name + ".log"} {
		data, err := os.ReadFile(filepath.Join(n.Dir, "log", name))
		if err != nil {
			continue
		}
		fmt.Fprintf(&b, "--- %s %s, tail ---\n%s\n", n.Name, name, tail(string(data), 30))
	}
	return b.String()
}

func (n *rabbitNode) cleanup() {
	if n.running() {
		n.Kill() // our own child, by its pid; its data goes with t.TempDir()
	}
	if n.t.Failed() && n.starts > 0 {
		n.t.Log(n.logTail())
	}
}
