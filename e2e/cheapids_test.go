package e2e

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"
)

// queryCounter is a tcpProxy in front of MariaDB that counts the commands
// clients send (every packet that starts a command: sequence id 0 — queries,
// prepared statements, pings alike). The server's side is copied untouched.
type queryCounter struct {
	*tcpProxy
	commands atomic.Int64
}

func newQueryCounter(t *testing.T) *queryCounter {
	t.Helper()
	base, err := mysqlBase()
	if err != nil {
		t.Fatalf("FLASHSALE_MYSQL_META_DSN: %v", err)
	}
	qc := &queryCounter{}
	qc.tcpProxy = newProxy(t, base.Addr)
	qc.tcpProxy.upstream = qc.copyUp
	return qc
}

func (qc *queryCounter) copyUp(dst io.Writer, src io.Reader) {
	copyMySQLPackets(dst, src, func(pkt []byte) {
		if pkt[3] == 0 && len(pkt) > 4 {
			qc.commands.Add(1)
		}
	})
}

// TestUnknownIDsCostNoMySQL: 1,000 requests for random ticket ids, random
// order ids and unknown sales (GET and purchase, each sale id new), all 404
// not_found, and, among them, 100 fresh UUIDv7 ticket and order ids (the shape
// of real ones, new each time) from 3 users, cost fewer than 50 MySQL commands
// in all, counted on the wire by a proxy through which the ingress reaches
// every database. Random ids are random UUIDs (v4) and random strings; ticket
// and order ids are UUIDv7. The fresh ones reach MySQL only within each user's
// budget of lookups that miss; past it they are 429 rate_limited.
func TestUnknownIDsCostNoMySQL(t *testing.T) {
	e := newEnv(t)
	qc := newQueryCounter(t)
	p := e.start("ingress", map[string]string{
		"FLASHSALE_MYSQL_META_DSN":   proxiedDSN(qc.Addr, e.MetaDB),
		"FLASHSALE_MYSQL_SHARD_DSNS": e.shardDSNsVia(qc.Addr),
	})
	c := p.client()
	saleID := c.createSale(t, openSale(10, 1, 100)) // the sales table is not empty
	c.sale(t, saleID)

	before := qc.commands.Load()
	const n = 1000
	ta, craftedTa := newTally(), newTally()
	work := make(chan int)
	var wg sync.WaitGroup
	start := time.Now()
	for range 32 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range work {
				var method, path string
				var body any
				randomID := uuid.NewString()
				if i%2 == 1 {
					randomID = "x" + randHex(8)
				}
				crafted := i%10 == 9
				switch {
				case crafted: // a fresh UUIDv7 each time, from a few users
					id := uuid.Must(uuid.NewV7()).String()
					method, path = http.MethodGet, pathTicket(id)
					if i%20 == 19 {
						path = pathOrder(id)
					}
				case i%4 == 0 || i%4 == 1:
					method, path = http.MethodGet, pathTicket(randomID)
				case i%4 == 2:
					method, path = http.MethodGet, pathOrder(randomID)
				default:
					if i%8 == 3 {
						method, path = http.MethodGet, pathSale("nosale-"+randHex(6))
					} else {
						method, path, body = http.MethodPost, pathPurchase("nosale-"+randHex(6)), map[string]int{"quantity": 1}
					}
				}
				who, into := user(fmt.Sprintf("prober-%d", i%50)), ta
				if crafted {
					who, into = user(fmt.Sprintf("crafter-%d", i%3)), craftedTa
				}
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				r, err := c.send(ctx, method, path, who, body)
				cancel()
				into.add(outcome(r, err), method+" "+path+": "+r.String())
			}
		}()
	}
	for i := range n {
		work <- i
	}
	close(work)
	wg.Wait()
	used := qc.commands.Load() - before
	t.Logf("%d requests in %s: random ids and unknown sales %v; fresh UUIDv7s %v; MySQL commands: %d",
		n, time.Since(start).Round(time.Millisecond), ta, craftedTa, used)
	ta.only(t, "404 not_found")
	// A fresh ticket id may still be queued (503 until MySQL knows it, see
	// queuedGrace); past each crafter's budget of 3 misses, 429.
	craftedTa.only(t, "503 unavailable", "404 not_found", "429 rate_limited")
	if got := craftedTa.get("429 rate_limited"); got < n/10-3*10 {
		t.Errorf("%d of %d fresh UUIDv7 lookups from 3 users were 429, want all past each user's few misses", got, n/10)
	}
	if used >= 50 {
		t.Errorf("%d random/unknown-id requests cost %d MySQL commands, want fewer than 50", n, used)
	}
	t.Logf("FIGURES %d requests (random ticket ids, random order ids, unknown sales; %d fresh UUIDv7 ticket and order ids from 3 users): %d MySQL commands",
		n, n/10, used)
}

// TestRequestBounds: a 64 KiB request header is refused (431) while a 16 KiB
// one is read; a price over the bound, and a price × per_user_limit that
// would overflow an order's amount, are 400 invalid naming price_cents.
func TestRequestBounds(t *testing.T) {
	e := newEnv(t)
	p := e.start("ingress", nil)
	c := p.client()

	status := func(headerBytes int) int {
		conn, err := net.DialTimeout("tcp", p.Addr, 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		conn.SetDeadline(time.Now().Add(10 * time.Second))
		go func() { // the server may answer (and close) before reading it all
			fmt.Fprintf(conn, "GET /healthz HTTP/1.1\r\nHost: x\r\nX-Padding: %s\r\n\r\n", strings.Repeat("a", headerBytes))
		}()
		resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
		if err != nil {
			t.Fatalf("a %d-byte header: %v", headerBytes, err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if s := status(64 << 10); s != http.StatusRequestHeaderFieldsTooLarge {
		t.Errorf("a 64 KiB header: %d, want 431", s)
	}
	if s := status(16 << 10); s != http.StatusOK {
		t.Errorf("a 16 KiB header: %d, want 200", s)
	}

	for _, tc := range []struct {
		name  string
		price int64
		limit int
	}{
		{"price 2^63-1 × 2", 1<<63 - 1, 2},
		{"price 10^12+1", 1_000_000_000_001, 1},
		{"price 10^12 × per_user_limit 10^6", 1_000_000_000_000, 1_000_000},
	} {
		s := openSale(10, tc.limit, tc.price)
		r := c.must(t, http.MethodPost, "/api/v1/sales", c.admin(), s)
		checkError(t, tc.name, r, http.StatusBadRequest, "invalid")
		if !strings.Contains(string(r.Body), "price_cents") {
			t.Errorf("%s: message does not name price_cents: %s", tc.name, r)
		}
		if g := c.must(t, http.MethodGet, pathSale(s.ID), nil, nil); g.Status != http.StatusNotFound {
			t.Errorf("%s: the refused sale exists: %s", tc.name, g)
		}
	}
}
