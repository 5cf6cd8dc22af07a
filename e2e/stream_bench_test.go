package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// followReport is the part of `flashsale bench --json` about following
// tickets (--follow), decoded independently of the bench package.
type followReport struct {
	Pass     bool `json:"pass"`
	Purchase struct {
		OrdersCreated int64 `json:"orders_created"`
		Resolve       struct {
			P50Ms float64 `json:"p50_ms"`
			P99Ms float64 `json:"p99_ms"`
		} `json:"resolve"`
	} `json:"purchase"`
	Follow struct {
		Mode             string   `json:"mode"`
		Polls            int64    `json:"polls"`
		Streams          int64    `json:"streams"`
		Events           int64    `json:"events"`
		Reconnects       int64    `json:"reconnects"`
		Fallbacks        int64    `json:"fallbacks"`
		Requests         int64    `json:"requests"`
		PollsPerOrder    *float64 `json:"polls_per_order"`
		StreamsPerOrder  *float64 `json:"streams_per_order"`
		RequestsPerOrder *float64 `json:"requests_per_order"`
	} `json:"follow"`
}

// procCPU returns a process's user + system CPU time (Linux /proc).
func procCPU(pid int) (time.Duration, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	// The fields after the command's closing parenthesis: utime and stime
	// are the 12th and 13th of them, in clock ticks (100 a second on Linux).
	s := string(b)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+2:])
	var ut, st int64
	if _, err := fmt.Sscan(f[11]+" "+f[12], &ut, &st); err != nil {
		return 0, err
	}
	return time.Duration(ut+st) * 10 * time.Millisecond, nil
}

// TestBenchFollowPollAndStream runs `flashsale bench` twice against one
// `flashsale all` (limiter at the contract's 50 per 10 ms), the crowd of
// TestBenchAgainstAll (3,000 users, 300 units), once polling at the
// poll_after_ms the answers give and once following every ticket through its
// event stream: both pass every check; polling polls, streaming polls nothing
// and opens about one stream per ticket. The figures (requests, polls and
// streams per order, 202 → final as the users saw it, the flashsale process's
// CPU per order) are logged side by side, not compared: at this scale, on a
// box shared with other test runs, they vary more from run to run than
// between the modes (the standard `make bench` is where they are measured).
func TestBenchFollowPollAndStream(t *testing.T) {
	e := newEnv(t)
	p := e.start("all", map[string]string{"FLASHSALE_LIMIT_PER_WINDOW": "50"})
	dir := t.ArtifactDir()
	runs := map[string]followReport{}
	cpu := map[string]time.Duration{}
	for _, mode := range []string{"poll", "stream"} {
		jsonPath := filepath.Join(dir, "bench-"+mode+".json")
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		cmd := exec.CommandContext(ctx, binPath, "bench", "--url", p.URL,
			"--users", fmt.Sprint(benchUsers), "--stock", fmt.Sprint(benchStock), "--conns", fmt.Sprint(benchConns),
			"--pay-ratio", fmt.Sprint(benchPayRatio), "--payment-window", "60", "--follow", mode,
			"--duration", "90s", "--quiet", "--json", jsonPath)
		cmd.Env = processEnv(map[string]string{"FLASHSALE_ADMIN_TOKEN": e.AdminToken, "FLASHSALE_PAYMENT_SECRET": e.PaymentSecret})
		var stdout, stderr bytes.Buffer
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		cpu0, err := procCPU(p.pid())
		if err != nil {
			t.Fatal(err)
		}
		err = cmd.Run()
		cancel()
		cpu1, _ := procCPU(p.pid())
		cpu[mode] = cpu1 - cpu0
		if err != nil {
			t.Fatalf("flashsale bench --follow %s: %v\n%s\n%s", mode, err, stdout.String(), tail(stderr.String(), 30))
		}
		data, err := os.ReadFile(jsonPath)
		if err != nil {
			t.Fatal(err)
		}
		var rep followReport
		if err := json.Unmarshal(data, &rep); err != nil {
			t.Fatal(err)
		}
		if !rep.Pass || rep.Follow.Mode != mode || rep.Purchase.OrdersCreated == 0 || rep.Follow.RequestsPerOrder == nil {
			t.Fatalf("bench --follow %s: pass %v, follow %+v\n%s", mode, rep.Pass, rep.Follow, stdout.String())
		}
		runs[mode] = rep
	}
	poll, stream := runs["poll"], runs["stream"]
	if poll.Follow.Polls == 0 || poll.Follow.Streams != 0 {
		t.Errorf("polling: %+v", poll.Follow)
	}
	if f := stream.Follow; f.Polls != 0 || f.Fallbacks != 0 || f.Streams < stream.Purchase.OrdersCreated || *f.StreamsPerOrder > 1.5 {
		t.Errorf("streaming: %+v (%d orders), want no poll and about one stream a ticket", f, stream.Purchase.OrdersCreated)
	}
	for _, mode := range []string{"poll", "stream"} {
		r := runs[mode]
		t.Logf("--follow %-6s  orders %d  requests/order %.2f  polls/order %.2f  streams/order %.2f (%d events, %d reconnects)  202->final seen p50 %.0f ms p99 %.0f ms  flashsale CPU %s (%.2f ms/order)",
			mode, r.Purchase.OrdersCreated, *r.Follow.RequestsPerOrder, *r.Follow.PollsPerOrder, *r.Follow.StreamsPerOrder, r.Follow.Events, r.Follow.Reconnects,
			r.Purchase.Resolve.P50Ms, r.Purchase.Resolve.P99Ms, cpu[mode].Round(10*time.Millisecond), float64(cpu[mode].Milliseconds())/float64(r.Purchase.OrdersCreated))
	}
}
