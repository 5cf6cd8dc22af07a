package e2e

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
)

// TestBenchScript runs `make bench`'s script, deploy/bench.sh, as a fresh
// machine would: on a broker with no flashsale_bench queue at all (a clean
// state once broke its clean-up step with no message). A small scenario runs
// through to both reports passing; a step that fails stops the script with
// a line that names it; a missing binary is said plainly.
func TestBenchScript(t *testing.T) {
	requireServices(t)
	if buildErr != nil {
		t.Fatalf("building flashsale: %v", buildErr)
	}
	root, err := moduleRoot()
	if err != nil {
		t.Fatal(err)
	}
	deleteBenchQueues(t)
	t.Cleanup(func() { deleteBenchQueues(t) })
	run := func(out, bin string, args ...string) (string, error) {
		ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
		defer cancel()
		cmd := exec.CommandContext(ctx, "bash", append([]string{filepath.Join(root, "deploy", "bench.sh")}, args...)...)
		cmd.Env = append(os.Environ(), "FLASHSALE_BENCH_OUT="+out, "FLASHSALE_BENCH_ADDR="+freeAddr(t), "FLASHSALE_BIN="+bin)
		b, err := cmd.CombinedOutput()
		return string(b), err
	}

	out, err := run(t.TempDir(), filepath.Join(t.TempDir(), "no-such-flashsale"))
	if err == nil || !strings.Contains(out, "bench: no flashsale binary at") {
		t.Errorf("a missing binary: %v\n%s\nwant a non-zero exit that says so", err, tail(out, 10))
	}

	blocked := filepath.Join(t.TempDir(), "a-file")
	if err := os.WriteFile(blocked, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	out, err = run(filepath.Join(blocked, "reports"), binPath)
	if err == nil || !strings.Contains(out, `bench: stopped: "mkdir -p "$out"" failed`) {
		t.Errorf("reports directory under a file: %v\n%s\nwant a non-zero exit naming the step", err, tail(out, 10))
	}

	// Leftover queues of an interrupted run: the clean-up must delete every
	// one of them (it once deleted only the first: rabbitmqctl swallowed the
	// loop's list of names from its standard input).
	leftovers := []string{"flashsale_bench.leftover-a", "flashsale_bench.leftover-b", "flashsale_bench.leftover-c"}
	declareQueues(t, leftovers...)

	reports := t.TempDir()
	out, err = run(reports, binPath, "--users", "400", "--stock", "40", "--conns", "32", "--payment-window", "60", "--duration", "3m")
	t.Logf("deploy/bench.sh (small scenario):\n%s", tail(out, 40))
	if err != nil {
		t.Fatalf("deploy/bench.sh: %v, want exit 0", err)
	}
	if strings.Count(out, "RESULT: PASS") < 2 {
		t.Errorf("want both runs (redis and mysql) to pass")
	}
	for _, f := range []string{"bench.json", "bench.html"} {
		if st, err := os.Stat(filepath.Join(reports, f)); err != nil || st.Size() == 0 {
			t.Errorf("report %s: %v, want a non-empty file", f, err)
		}
	}
	for _, q := range leftovers {
		if _, ok := brokerQueue(t, q); ok {
			t.Errorf("leftover queue %s survived the clean-up", q)
		}
	}
	// The server's log (warnings and errors only: it may be empty).
	if _, err := os.Stat(filepath.Join(reports, "server.log")); err != nil {
		t.Errorf("server.log: %v", err)
	}
}

// deleteBenchQueues deletes the queues of the bench's namespace, as on a
// broker that never ran the bench.
func deleteBenchQueues(t *testing.T) {
	t.Helper()
	conn, err := amqp.DialConfig(amqpURL(), amqp.Config{Dial: amqp.DefaultDial(5 * time.Second)})
	if err != nil {
		t.Fatalf("rabbitmq: %v", err)
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	names, err := exec.CommandContext(ctx, "rabbitmqctl", "-q", "list_queues", "name").Output()
	if err != nil {
		t.Fatalf("rabbitmqctl list_queues: %v", err)
	}
	for _, q := range strings.Fields(string(names)) {
		if !strings.HasPrefix(q, "flashsale_bench.") {
			continue
		}
		ch, err := conn.Channel()
		if err != nil {
			t.Fatal(err)
		}
		if _, err := ch.QueueDelete(q, false, false, false); err != nil {
			t.Fatalf("delete queue %s: %v", q, err)
		}
		ch.Close()
	}
}

// brokerChannel opens a channel on a connection of its own, both closed when
// the test ends.
func brokerChannel(t *testing.T) *amqp.Channel {
	t.Helper()
	conn, err := amqp.DialConfig(amqpURL(), amqp.Config{Dial: amqp.DefaultDial(5 * time.Second)})
	if err != nil {
		t.Fatalf("rabbitmq: %v", err)
	}
	t.Cleanup(func() { conn.Close() })
	ch, err := conn.Channel()
	if err != nil {
		t.Fatal(err)
	}
	return ch
}

// declareQueues declares durable queues of these names, each holding one
// message, as an interrupted run leaves them.
func declareQueues(t *testing.T, names ...string) {
	t.Helper()
	ch := brokerChannel(t)
	for _, q := range names {
		if _, err := ch.QueueDeclare(q, true, false, false, false, nil); err != nil {
			t.Fatalf("declare queue %s: %v", q, err)
		}
		if err := ch.PublishWithContext(context.Background(), "", q, false, false, amqp.Publishing{Body: []byte("leftover")}); err != nil {
			t.Fatalf("publish to %s: %v", q, err)
		}
	}
}

// brokerQueue says whether the broker has a queue of this name, and how many
// messages it holds ready (a passive declare answers 404 NOT_FOUND, closing
// the channel, when it has none).
func brokerQueue(t *testing.T, name string) (messages int, ok bool) {
	t.Helper()
	q, err := brokerChannel(t).QueueDeclarePassive(name, true, false, false, false, nil)
	var ae *amqp.Error
	if errors.As(err, &ae) && ae.Code == amqp.NotFound {
		return 0, false
	}
	if err != nil {
		t.Fatalf("passive declare %s: %v", name, err)
	}
	return q.Messages, true
}
