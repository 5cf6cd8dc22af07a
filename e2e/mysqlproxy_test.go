package e2e

import (
	"bufio"
	"io"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"
)

// commitProxy is a tcpProxy in front of MariaDB that understands just enough
// of the MySQL client protocol to hold back COMMIT: it widens the window
// between a transaction's last statement and its commit, the window in which
// a Redis that goes back in time meets orders that are about to exist.
//
// Client→server traffic is a stream of packets: a 3-byte little-endian payload
// length, a 1-byte sequence id, the payload. A command starts a new sequence
// (id 0); COM_QUERY (0x03) is followed by the SQL text. go-sql-driver sends
// START TRANSACTION and COMMIT as COM_QUERY (the project also interpolates
// parameters, so every statement is a COM_QUERY; COM_STMT_PREPARE, 0x16, is
// read too in case that changes). The server's side is copied untouched.
type commitProxy struct {
	*tcpProxy

	mu        sync.Mutex
	on        bool
	orderOnly bool          // hold only COMMITs of transactions that inserted orders
	left      int           // COMMITs still to catch; < 0: every one
	maxDelay  time.Duration // a held COMMIT goes through after this at the latest
	release   chan struct{} // closed by Release
	holding   int           // COMMITs held right now
	held      int           // COMMITs held since the proxy started
	commits   int           // COMMITs seen since the proxy started
}

// newCommitProxy starts a commit-holding proxy in front of the MariaDB of
// FLASHSALE_MYSQL_META_DSN. It forwards everything at once until HoldCommits.
func newCommitProxy(t *testing.T) *commitProxy {
	t.Helper()
	base, err := mysqlBase()
	if err != nil {
		t.Fatalf("FLASHSALE_MYSQL_META_DSN: %v", err)
	}
	cp := &commitProxy{release: make(chan struct{})}
	cp.tcpProxy = newProxy(t, base.Addr)
	cp.tcpProxy.upstream = cp.copyUp
	// Never leave a connection of a process blocked after the test.
	t.Cleanup(cp.Release)
	return cp
}

// HoldCommits holds back, from now on, the next n COMMITs (n < 0: every one)
// of transactions that inserted into orders (orderOnly) or of any
// transaction, each until Release or for maxDelay at most.
func (cp *commitProxy) HoldCommits(n int, orderOnly bool, maxDelay time.Duration) {
	cp.mu.Lock()
	defer cp.mu.Unlock()
	cp.on, cp.orderOnly, cp.left, cp.maxDelay = true, orderOnly, n, maxDelay
	cp.release = make(chan struct{})
}

// Release forwards every held COMMIT now and stops holding. Idempotent.
func (cp *commitProxy) Release() {
	cp.mu.Lock()
	defer cp.mu.Unlock()
	if cp.on {
		cp.on = false
		close(cp.release)
	}
}

// Holding returns how many COMMITs are held back right now, how many were
// held in all, and how many COMMITs went through the proxy in all.
func (cp *commitProxy) Holding() (now, held, seen int) {
	cp.mu.Lock()
	defer cp.mu.Unlock()
	return cp.holding, cp.held, cp.commits
}

// DSN returns the DSN of database name through the proxy.
func (cp *commitProxy) DSN(name string) string { return proxiedDSN(cp.Addr, name) }

// proxiedDSN is the DSN of database name at addr, with the credentials and
// parameters of FLASHSALE_MYSQL_META_DSN, without TLS (commitProxy reads the
// protocol in the clear).
func proxiedDSN(addr, name string) string {
	cfg, err := mysqlBase()
	if err != nil {
		panic(err) // checked by requireServices first
	}
	cfg.Net, cfg.Addr, cfg.DBName = "tcp", addr, name
	cfg.TLSConfig, cfg.TLS = "false", nil
	return cfg.FormatDSN()
}

// shardDSNsVia returns FLASHSALE_MYSQL_SHARD_DSNS with every shard reached
// through addr.
func (e *env) shardDSNsVia(addr string) string {
	dsns := make([]string, len(e.ShardDBs))
	for i, db := range e.ShardDBs {
		dsns[i] = proxiedDSN(addr, db)
	}
	return strings.Join(dsns, ",")
}

var insertOrdersRe = regexp.MustCompile("(?is)^\\s*insert\\s+(ignore\\s+)?into\\s+`?orders`?[\\s(]")

// copyMySQLPackets copies what one MySQL client sends to the server, one
// whole packet at a time, calling each with every packet before it is
// forwarded (each may block: the packet waits). It returns when either side is
// gone.
func copyMySQLPackets(dst io.Writer, src io.Reader, each func(pkt []byte)) {
	r := bufio.NewReaderSize(src, 64<<10)
	var hdr [4]byte
	for {
		if _, err := io.ReadFull(r, hdr[:]); err != nil {
			return
		}
		n := int(hdr[0]) | int(hdr[1])<<8 | int(hdr[2])<<16
		pkt := make([]byte, 4+n)
		copy(pkt, hdr[:])
		if _, err := io.ReadFull(r, pkt[4:]); err != nil {
			return
		}
		each(pkt)
		if _, err := dst.Write(pkt); err != nil {
			return
		}
	}
}

// mysqlStatement is the SQL text of a packet that starts a query or prepares
// a statement (sequence id 0, COM_QUERY or COM_STMT_PREPARE), else "".
func mysqlStatement(pkt []byte) string {
	if len(pkt) > 5 && pkt[3] == 0 && (pkt[4] == 0x03 || pkt[4] == 0x16) {
		return strings.TrimSpace(string(pkt[5:]))
	}
	return ""
}

// copyUp copies one client's packets to the server, holding COMMITs back
// while holding is on. It returns when either side is gone.
func (cp *commitProxy) copyUp(dst io.Writer, src io.Reader) {
	ordersInTx := false // this connection's open transaction inserted orders
	copyMySQLPackets(dst, src, func(pkt []byte) {
		sql := mysqlStatement(pkt)
		switch {
		case sql == "":
		case pkt[4] == 0x03 && strings.EqualFold(sql, "COMMIT"):
			cp.commit(ordersInTx)
			ordersInTx = false
		case strings.EqualFold(sql, "ROLLBACK"), strings.EqualFold(sql, "START TRANSACTION"), strings.EqualFold(sql, "BEGIN"):
			ordersInTx = false
		case insertOrdersRe.MatchString(sql):
			ordersInTx = true
		}
	})
}

// commit is called before a COMMIT is forwarded; it blocks while the COMMIT is
// held back.
func (cp *commitProxy) commit(ofOrders bool) {
	cp.mu.Lock()
	cp.commits++
	if !cp.on || cp.left == 0 || (cp.orderOnly && !ofOrders) {
		cp.mu.Unlock()
		return
	}
	if cp.left > 0 {
		cp.left--
	}
	cp.holding++
	cp.held++
	release, maxDelay := cp.release, cp.maxDelay
	cp.mu.Unlock()

	timer := time.NewTimer(maxDelay)
	select {
	case <-release:
	case <-timer.C:
	}
	timer.Stop()
	cp.mu.Lock()
	cp.holding--
	cp.mu.Unlock()
}

// pacedWorker is the environment of a worker whose orders commit through
// cp, with the concurrency of 8 batches of up to 25 messages. A shard's
// order transactions run one at a time (the batches that arrive meanwhile
// share the next, up to 4: about 50 orders a shard), so with every COMMIT
// held at cp the drain lasts seconds, long enough for a test to watch places
// fall (the defaults, 32 of 300, drain 2,000 tickets in about a second even
// so).
func pacedWorker(e *env, cp *commitProxy) map[string]string {
	return map[string]string{"FLASHSALE_MYSQL_SHARD_DSNS": e.shardDSNsVia(cp.Addr),
		"FLASHSALE_WORKER_HANDLERS": "8", "FLASHSALE_WORKER_BATCH": "25"}
}
