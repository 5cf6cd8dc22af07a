package bench

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

// fakeProc is a /proc tree in a directory, for procfs.
type fakeProc struct {
	t    *testing.T
	root string
}

func newFakeProc(t *testing.T) *fakeProc {
	root := t.TempDir()
	return &fakeProc{t: t, root: root}
}

// proc writes one process: its comm, argv, environment, CPU (utime and stime
// in clock ticks of 1/100 s), start time and socket inodes.
func (f *fakeProc) proc(pid int, comm string, argv, env []string, utime, stime, start uint64, sockets ...uint64) {
	f.t.Helper()
	dir := filepath.Join(f.root, fmt.Sprint(pid))
	must := func(err error) {
		if err != nil {
			f.t.Fatal(err)
		}
	}
	must(os.MkdirAll(filepath.Join(dir, "fd"), 0o755))
	must(os.WriteFile(filepath.Join(dir, "comm"), []byte(comm+"\n"), 0o644))
	must(os.WriteFile(filepath.Join(dir, "cmdline"), []byte(strings.Join(argv, "\x00")+"\x00"), 0o644))
	must(os.WriteFile(filepath.Join(dir, "environ"), []byte(strings.Join(env, "\x00")+"\x00"), 0o644))
	// pid (comm) state ppid pgrp session tty tpgid flags minflt cminflt majflt
	// cmajflt utime stime cutime cstime priority nice threads itreal starttime ...
	stat := fmt.Sprintf("%d (%s) S 1 1 1 0 -1 0 0 0 0 0 %d %d 0 0 20 0 1 0 %d 1000 100", pid, comm, utime, stime, start)
	stat += strings.Repeat(" 0", 30) + "\n"
	must(os.WriteFile(filepath.Join(dir, "stat"), []byte(stat), 0o644))
	for i, inode := range sockets {
		must(os.Symlink(fmt.Sprintf("socket:[%d]", inode), filepath.Join(dir, "fd", fmt.Sprint(3+i))))
	}
}

// listen writes /proc/net/tcp with these listening ports, by inode.
func (f *fakeProc) listen(ports map[uint64]uint16) {
	f.t.Helper()
	var b strings.Builder
	b.WriteString("  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n")
	i := 0
	for inode, port := range ports {
		fmt.Fprintf(&b, "   %d: 0100007F:%04X 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 %d 1 0000000000000000 100 0 0 10 0\n", i, port, inode)
		i++
	}
	if err := os.MkdirAll(filepath.Join(f.root, "net"), 0o755); err != nil {
		f.t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(f.root, "net", "tcp"), []byte(b.String()), 0o644); err != nil {
		f.t.Fatal(err)
	}
}

// The probe finds the deployment behind --url (the flashsale process
// listening on its port, and the other roles of its namespace, not another
// deployment's nor a bench), the services by name and the bench itself, and
// reads their CPU.
func TestProcProbeReadsTheDeployment(t *testing.T) {
	f := newFakeProc(t)
	f.listen(map[uint64]uint16{111: 8090, 222: 8080, 333: 3307, 444: 6379, 555: 6390, 666: 3306})
	ns := []string{"FLASHSALE_NAMESPACE=flashsale_bench", "FLASHSALE_MYSQL_META_DSN=root@tcp(127.0.0.1:3307)/m",
		"FLASHSALE_MYSQL_SHARD_DSNS=root@tcp(127.0.0.1:3307)/s0,root@tcp(127.0.0.1:3307)/s1"}
	f.proc(100, "flashsale", []string{"./bin/flashsale", "ingress"}, ns, 150, 50, 10, 111)
	f.proc(101, "flashsale", []string{"./bin/flashsale", "worker"}, ns, 300, 100, 10)
	f.proc(102, "flashsale", []string{"./bin/flashsale", "--namespace", "other", "worker"}, ns, 900, 0, 10)
	f.proc(103, "flashsale", []string{"./bin/flashsale"}, []string{"FLASHSALE_NAMESPACE=someone_else"}, 900, 0, 10, 222)
	f.proc(104, "flashsale", []string{"./bin/flashsale", "bench"}, ns, 5, 5, 10)
	f.proc(200, "mariadbd", []string{"/usr/sbin/mariadbd"}, nil, 1000, 200, 5, 333)
	f.proc(201, "redis-server", []string{"redis-server", "127.0.0.1:6379"}, nil, 40, 10, 5, 444)
	// Not the deployment's: another Redis, a MariaDB on the standard port the
	// deployment does not use, an Erlang VM listening on nothing.
	f.proc(202, "redis-server", []string{"redis-server", "127.0.0.1:6390"}, nil, 40, 10, 5, 555)
	f.proc(203, "mariadbd", []string{"/usr/sbin/mariadbd"}, nil, 1000, 200, 5, 666)
	f.proc(204, "beam.smp", []string{"beam.smp", "rabbitmqctl"}, nil, 10, 10, 5)
	f.proc(300, "flashsale", []string{"./bin/flashsale", "bench", "--users", "10"}, ns, 70, 30, 20)
	f.proc(400, "sshd", []string{"sshd"}, nil, 1, 1, 1)

	p, err := newProcProbe(f.root, 300, "http://127.0.0.1:8090")
	if err != nil {
		t.Fatal(err)
	}
	got, err := p.read()
	if err != nil {
		t.Fatal(err)
	}
	want := map[int]procCPU{
		100: {kind: "flashsale ingress", seconds: 2, start: 10},
		101: {kind: "flashsale worker", seconds: 4, start: 10},
		200: {kind: procMariaDB, seconds: 12, start: 5},
		201: {kind: procRedis, seconds: 0.5, start: 5},
		300: {kind: procBench, seconds: 1, start: 20},
	}
	if got.serverWhy != "" || !reflect.DeepEqual(got.procs, want) {
		t.Errorf("read: %+v (%q)\nwant %+v", got.procs, got.serverWhy, want)
	}

	// A re-read takes the same processes' CPU again, nothing else: not the
	// one started since, not one that exited or whose pid was reused.
	f.proc(100, "flashsale", []string{"./bin/flashsale", "ingress"}, ns, 250, 50, 10) // its socket stays
	f.proc(101, "flashsale", []string{"./bin/flashsale", "worker"}, ns, 1, 0, 77)
	f.proc(105, "flashsale", []string{"./bin/flashsale", "relay"}, ns, 10, 0, 30)
	if err := os.RemoveAll(filepath.Join(f.root, "200")); err != nil {
		t.Fatal(err)
	}
	again := p.reread(got)
	want = map[int]procCPU{
		100: {kind: "flashsale ingress", seconds: 3, start: 10},
		201: {kind: procRedis, seconds: 0.5, start: 5},
		300: {kind: procBench, seconds: 1, start: 20},
	}
	if !reflect.DeepEqual(again.procs, want) {
		t.Errorf("reread: %+v\nwant %+v", again.procs, want)
	}

	// Nothing listens on the port: the flashsale processes are not measured.
	p.port = 9999
	got, _ = p.read()
	if !strings.Contains(got.serverWhy, "listens on port 9999") || len(got.procs) != 3 || got.procs[203].kind != procMariaDB {
		t.Errorf("no listener: %+v (%q), want the services on their standard ports and the bench only, and why", got.procs, got.serverWhy)
	}
	// A remote --url: not measured, said so.
	p, _ = newProcProbe(f.root, 300, "http://192.0.2.7:8090")
	got, _ = p.read()
	if !strings.Contains(got.serverWhy, "not this host") {
		t.Errorf("remote url: %q, want it said", got.serverWhy)
	}
}

// The CPU each kind used between the readings, per order and per 1,000
// purchase requests; a restarted process counts from its start, an exited
// one is noted; kinds not on the host read "not measured".
func TestProcessCostsArithmetic(t *testing.T) {
	before := procReading{procs: map[int]procCPU{
		1: {kind: "flashsale all", seconds: 10, start: 1},
		2: {kind: procMariaDB, seconds: 100, start: 1},
		3: {kind: procBench, seconds: 0.5, start: 2},
		4: {kind: "flashsale all", seconds: 3, start: 1}, // exits
		5: {kind: procRedis, seconds: 50, start: 1},      // pid reused below
	}}
	after := procReading{procs: map[int]procCPU{
		1: {kind: "flashsale all", seconds: 14, start: 1},
		2: {kind: procMariaDB, seconds: 101.5, start: 1},
		3: {kind: procBench, seconds: 2.5, start: 2},
		5: {kind: procRedis, seconds: 0.25, start: 9},
	}}
	got, notes := processCosts(before, after, 1000, 8000)
	ptr := func(v float64) *float64 { return &v }
	want := []ProcessCost{
		{Name: "flashsale all", Measured: true, PIDs: []int{1}, CPUSeconds: 4, CPUMsPerOrder: ptr(4), CPUSecondsPer1000Purchases: ptr(0.5)},
		{Name: procRabbit, Reason: "not measured: no beam.smp process on this host (remote?)"},
		{Name: procMariaDB, Measured: true, PIDs: []int{2}, CPUSeconds: 1.5, CPUMsPerOrder: ptr(1.5), CPUSecondsPer1000Purchases: ptr(0.188)},
		{Name: procRedis, Measured: true, PIDs: []int{5}, CPUSeconds: 0.25, CPUMsPerOrder: ptr(0.25), CPUSecondsPer1000Purchases: ptr(0.031)},
		{Name: procBench, Measured: true, PIDs: []int{3}, CPUSeconds: 2, CPUMsPerOrder: ptr(2), CPUSecondsPer1000Purchases: ptr(0.25)},
	}
	if len(got) != len(want) {
		t.Fatalf("got %d kinds: %+v, want %d", len(got), got, len(want))
	}
	byName := map[string]ProcessCost{}
	for _, c := range got {
		byName[c.Name] = c
	}
	for _, w := range want {
		if g := byName[w.Name]; !reflect.DeepEqual(g, w) {
			t.Errorf("%s: %+v\nwant %+v", w.Name, fmtCost(g), fmtCost(w))
		}
	}
	if !reflect.DeepEqual(names(got), names(want)) {
		t.Errorf("order: %v, want the roles first, then services, then the bench", names(got))
	}
	wantNotes := []string{
		"flashsale all (pid 4) exited during the run: its CPU after the first reading is not counted",
		"redis-server (pid 5) exited during the run: its CPU after the first reading is not counted",
		"redis-server (pid 5) started during the run: counted from its start",
	}
	if !reflect.DeepEqual(notes, wantNotes) {
		t.Errorf("notes: %q\nwant %q", notes, wantNotes)
	}

	// No order, no request: the ratios are absent; no flashsale process: said why.
	got, _ = processCosts(procReading{procs: map[int]procCPU{}, serverWhy: "gone"}, procReading{procs: map[int]procCPU{}, serverWhy: "gone"}, 0, 0)
	if got[0].Name != "flashsale" || got[0].Reason != "not measured: gone" || got[0].Measured {
		t.Errorf("no deployment: %+v", got[0])
	}
}

func names(cs []ProcessCost) []string {
	var out []string
	for _, c := range cs {
		out = append(out, c.Name)
	}
	return out
}

func fmtCost(c ProcessCost) string {
	return fmt.Sprintf("{%s measured=%v pids=%v cpu=%v ms/order=%s s/1000=%s %q}", c.Name, c.Measured, c.PIDs, c.CPUSeconds,
		fmtOpt(c.CPUMsPerOrder, "%v"), fmtOpt(c.CPUSecondsPer1000Purchases, "%v"), c.Reason)
}

// SHOW GLOBAL STATUS rows become statements by kind per order (a prepared
// statement's protocol steps, pings and SHOW STATUS left out), fsyncs and
// row-lock waits; a counter that went down (a restart) makes it unavailable.
func TestMySQLCostArithmetic(t *testing.T) {
	read := func(rows ...string) statusReading {
		r := statusReading{}
		for _, row := range rows {
			name, value, _ := strings.Cut(row, "=")
			addStatus(r, name, value)
		}
		return r
	}
	before := read("Com_select=100", "Com_insert=10", "Com_commit=5", "Com_stmt_execute=7", "Com_admin_commands=3",
		"Com_show_status=1", "Innodb_data_fsyncs=40", "Innodb_row_lock_waits=2", "Innodb_row_lock_time=9",
		"Uptime=77", "Innodb_buffer_pool_pages_data=5", "Com_update=0")
	if _, ok := before["Uptime"]; ok {
		t.Errorf("kept Uptime: %v", before)
	}
	after := read("Com_select=340", "Com_insert=310", "Com_commit=105", "Com_stmt_execute=700", "Com_admin_commands=90",
		"Com_show_status=2", "Innodb_data_fsyncs=240", "Innodb_os_log_fsyncs=60", "Innodb_row_lock_waits=3",
		"Innodb_row_lock_time=19", "Com_update=200")
	got := mysqlCost("127.0.0.1:3306", before, after, 200)
	ptr := func(v float64) *float64 { return &v }
	want := &MySQLCost{
		Server: "127.0.0.1:3306", Available: true,
		Statements: 840, StatementsPerOrder: ptr(4.2),
		Kinds: []StatementKind{
			{Kind: "insert", Count: 300, PerOrder: 1.5},
			{Kind: "select", Count: 240, PerOrder: 1.2},
			{Kind: "update", Count: 200, PerOrder: 1},
			{Kind: "commit", Count: 100, PerOrder: 0.5},
		},
		Fsyncs: 260, FsyncsPerOrder: ptr(1.3),
		RowLockWaits: 1, RowLockTimeMs: 10,
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("mysqlCost:\n%+v\nwant\n%+v", got, want)
	}
	lines := mysqlCostLines(got)
	if len(lines) != 3 || !strings.HasPrefix(lines[0], "mysql statements / order: 4.20 (840 statements: insert 1.50, select 1.20, update 1.00, commit 0.50)") {
		t.Errorf("lines: %q", lines)
	}

	restarted := mysqlCost("db:3306", after, before, 200)
	if restarted.Available || !strings.Contains(restarted.Reason, "went down") {
		t.Errorf("restart: %+v, want not available, saying why", restarted)
	}
	if none := mysqlCost("db:3306", before, before, 0); none.StatementsPerOrder != nil || none.Statements != 0 {
		t.Errorf("no orders: %+v", none)
	}
}

// The section renders in the text summary with its table and MySQL lines,
// and a process that is not measured says why.
func TestOrderCostText(t *testing.T) {
	ms := 0.5
	c := &OrderCost{
		WindowSeconds: 12.5, Orders: 100, PurchaseRequests: 900, MeasuredCPUMsPerOrder: &ms,
		Processes: []ProcessCost{
			{Name: "flashsale all", Measured: true, PIDs: []int{7}, CPUSeconds: 0.05, CPUMsPerOrder: &ms},
			{Name: procRabbit, Reason: "not measured: no beam.smp process on this host (remote?)"},
		},
	}
	var b bytes.Buffer
	writeOrderCostText(&b, c)
	out := b.String()
	for _, want := range []string{"Cost of an order", "100 orders, 900 purchase requests", "flashsale all", "0.500", "pid 7",
		"not measured: no beam.smp", "mysql: not read (--mysql-dsn off)", "0.500 ms CPU / order"} {
		if !strings.Contains(out, want) {
			t.Errorf("text lacks %q:\n%s", want, out)
		}
	}
}
