package e2e

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// privateRedis is a redis-server of the test's own, on a free port, its data
// in a directory of the test: it can be saved, shut down, restarted from its
// snapshot or made a replica without disturbing anyone else on the machine.
// Automatic snapshots and the AOF are off: the server writes dump.rdb only on
// SAVE, and loads it when it starts.
type privateRedis struct {
	t    *testing.T
	Name string
	Addr string
	Dir  string
	args []string

	mu   sync.Mutex
	cmd  *exec.Cmd
	done chan struct{}
}

// startPrivateRedis starts a private redis-server; extra are more arguments
// (e.g. "--replicaof", host, port). It fails the test (skips it without CI)
// when redis-server is not installed.
func startPrivateRedis(t *testing.T, name string, extra ...string) *privateRedis {
	t.Helper()
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("redis-server not installed (CI is set, so this fails): %v", err)
		}
		t.Skipf("redis-server not installed: %v", err)
	}
	dir := filepath.Join(t.TempDir(), name)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	addr := freeAddr(t)
	if slices.Contains(extra, "--cluster-enabled") {
		addr = freeClusterAddr(t)
	}
	port := addr[strings.LastIndex(addr, ":")+1:]
	r := &privateRedis{t: t, Name: name, Addr: addr, Dir: dir,
		args: append([]string{"--bind", "127.0.0.1", "--port", port, "--dir", dir, "--save", "", "--appendonly", "no",
			"--logfile", filepath.Join(dir, "redis.log")}, extra...)}
	r.args = append([]string{bin}, r.args...)
	t.Cleanup(r.cleanup)
	r.Start()
	return r
}

// freeClusterAddr is a free address whose port a Redis Cluster node can take:
// the node also listens on its cluster bus port, the port + 10000, which must
// exist and be free too (a port picked alone once found its bus port taken
// by another connection: "bind: Address already in use", and the node exited).
func freeClusterAddr(t *testing.T) string {
	t.Helper()
	for range 100 {
		addr := freeAddr(t)
		port, _ := strconv.Atoi(addr[strings.LastIndex(addr, ":")+1:])
		if port+10000 > 65535 {
			continue
		}
		if ln, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", port+10000)); err == nil {
			ln.Close()
			return addr
		}
	}
	t.Fatal("no free port with a free cluster bus port (+10000) in 100 tries")
	return ""
}

// Start runs the server (again, after ShutdownNoSave: it loads the dump.rdb
// of its directory, if any) and waits until it answers PING.
func (r *privateRedis) Start() {
	t := r.t
	t.Helper()
	r.mu.Lock()
	cmd := exec.Command(r.args[0], r.args[1:]...)
	if err := cmd.Start(); err != nil {
		r.mu.Unlock()
		t.Fatalf("start redis-server %s: %v", r.Name, err)
	}
	done := make(chan struct{})
	r.cmd, r.done = cmd, done
	r.mu.Unlock()
	go func() { cmd.Wait(); close(done) }()
	c := r.client()
	defer c.Close()
	var err error
	if !poll(20*time.Second, 20*time.Millisecond, func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		err = c.Ping(ctx).Err()
		cancel()
		if err == nil {
			return true
		}
		select {
		case <-done:
			t.Fatalf("redis-server %s exited at start: %v\n%s", r.Name, cmd.ProcessState, r.logTail())
		default:
		}
		return false
	}) {
		t.Fatalf("redis-server %s does not answer PING within 20s: %v\n%s", r.Name, err, r.logTail())
	}
}

func (r *privateRedis) client() *redis.Client {
	return redis.NewClient(&redis.Options{Addr: r.Addr, MaxRetries: -1, DialTimeout: time.Second})
}

// Do runs one command on the server and fails the test on an error.
func (r *privateRedis) Do(args ...any) any {
	r.t.Helper()
	c := r.client()
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	v, err := c.Do(ctx, args...).Result()
	if err != nil {
		r.t.Fatalf("redis %s %v: %v", r.Name, args, err)
	}
	return v
}

// Info returns the fields of one INFO section.
func (r *privateRedis) Info(section string) map[string]string {
	r.t.Helper()
	out := map[string]string{}
	for _, line := range strings.Split(fmt.Sprint(r.Do("INFO", section)), "\n") {
		if k, v, ok := strings.Cut(strings.TrimSpace(line), ":"); ok {
			out[k] = v
		}
	}
	return out
}

// InfoInt returns one numeric INFO field, -1 when absent.
func (r *privateRedis) InfoInt(section, field string) int64 {
	r.t.Helper()
	v, err := strconv.ParseInt(r.Info(section)[field], 10, 64)
	if err != nil {
		return -1
	}
	return v
}

// ShutdownNoSave stops the server without writing a snapshot (whatever it
// holds since its last SAVE is lost) and waits for it to exit.
func (r *privateRedis) ShutdownNoSave() {
	t := r.t
	t.Helper()
	c := r.client()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	c.ShutdownNoSave(ctx) // the connection closes as the server exits: an error is expected
	cancel()
	c.Close()
	r.mu.Lock()
	done := r.done
	r.mu.Unlock()
	select {
	case <-done:
	case <-time.After(20 * time.Second):
		t.Fatalf("redis-server %s still runs 20s after SHUTDOWN NOSAVE", r.Name)
	}
}

// Pause stops the server with SIGSTOP: it keeps its connections and its data
// but answers nothing (clients see their reads time out) until Resume. A
// cluster node paused for longer than its cluster-node-timeout is failed over.
func (r *privateRedis) Pause() { r.signal(syscall.SIGSTOP) }

// Resume continues a paused server (SIGCONT): it handles what its clients sent
// meanwhile, in order.
func (r *privateRedis) Resume() { r.signal(syscall.SIGCONT) }

func (r *privateRedis) signal(sig syscall.Signal) {
	r.t.Helper()
	r.mu.Lock()
	cmd := r.cmd
	r.mu.Unlock()
	if err := cmd.Process.Signal(sig); err != nil { // our own child, by its pid
		r.t.Fatalf("redis-server %s: %v: %v", r.Name, sig, err)
	}
}

func (r *privateRedis) cleanup() {
	r.mu.Lock()
	cmd, done := r.cmd, r.done
	r.mu.Unlock()
	if cmd == nil {
		return
	}
	select {
	case <-done:
		return
	default:
	}
	cmd.Process.Kill() // our own child, by its pid (SIGKILL ends a paused one too)
	<-done
}

func (r *privateRedis) logTail() string {
	b, err := os.ReadFile(filepath.Join(r.Dir, "redis.log"))
	if err != nil {
		return fmt.Sprintf("(no log: %v)", err)
	}
	return tail(string(b), 20)
}
