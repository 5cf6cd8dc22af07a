package bench

import (
	"cmp"
	"fmt"
	"math"
	"net"
	"net/url"
	"slices"
	"strconv"
	"strings"

	"github.com/go-sql-driver/mysql"
	"github.com/prometheus/procfs"
)

// The CPU side of the "Cost of an order" section: the CPU seconds (user +
// system, from /proc/<pid>/stat) each process of the deployment used between
// the two readings, per order and per 1,000 purchase requests. The processes
// are found on this host:
//   - the flashsale processes of the deployment under test: the one listening
//     on --url's port, and every other flashsale process of the same
//     FLASHSALE_NAMESPACE (its roles run as separate processes), each named by
//     its role ("flashsale all", "flashsale worker", ...);
//   - the services, by process name: mariadbd (or mysqld), redis-server, and
//     RabbitMQ's beam.smp, those listening on the port the deployment uses
//     (from its environment, else the standard ports; a service shared with
//     other work counts that work too);
//   - the bench itself.
// A process kind that is not on this host reads "not measured".

// Process kinds of the section, in the order the report lists them (the
// flashsale roles come first, named "flashsale <role>").
const (
	procMariaDB = "mariadbd"
	procRedis   = "redis-server"
	procRabbit  = "beam.smp"
	procBench   = "bench (this process)"
)

var serviceKinds = []string{procMariaDB, procRedis, procRabbit}

// serviceComms maps a process name (/proc/<pid>/comm) to its kind.
var serviceComms = map[string]string{
	"mariadbd":     procMariaDB,
	"mysqld":       procMariaDB,
	"redis-server": procRedis,
	"beam.smp":     procRabbit,
}

// procCPU is one process at one reading.
type procCPU struct {
	kind    string  // "flashsale all", "mariadbd", ...
	seconds float64 // user + system CPU since the process started
	start   uint64  // start time in clock ticks since boot (tells a reused pid)
}

// procReading is the CPU of the watched processes at one instant, by pid, and
// why the deployment's flashsale processes could not be found ("" when they
// were).
type procReading struct {
	procs     map[int]procCPU
	serverWhy string
}

// procProbe reads the processes' CPU from a /proc file system.
type procProbe struct {
	fs   procfs.FS
	self int    // the bench's own pid
	host string // --url's host
	port uint64 // --url's port
}

// newProcProbe prepares reading /proc for the deployment behind target (the
// bench's --url). It fails when /proc cannot be read (not Linux).
func newProcProbe(mount string, self int, target string) (*procProbe, error) {
	fs, err := procfs.NewFS(mount)
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", mount, err)
	}
	u, err := url.Parse(target)
	if err != nil {
		return nil, err
	}
	port := u.Port()
	if port == "" {
		port = map[string]string{"https": "443"}[u.Scheme]
		if port == "" {
			port = "80"
		}
	}
	p, err := strconv.ParseUint(port, 10, 16)
	if err != nil {
		return nil, fmt.Errorf("port of %s: %w", target, err)
	}
	return &procProbe{fs: fs, self: self, host: u.Hostname(), port: p}, nil
}

// local says whether host names this machine: loopback, "localhost", or one
// of its interfaces' addresses.
func local(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	if ip == nil {
		return false
	}
	if ip.IsLoopback() || ip.IsUnspecified() {
		return true
	}
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		return false
	}
	for _, a := range addrs {
		if n, ok := a.(*net.IPNet); ok && n.IP.Equal(ip) {
			return true
		}
	}
	return false
}

// read takes one reading. Processes that vanish while it reads are skipped.
func (p *procProbe) read() (procReading, error) {
	all, err := p.fs.AllProcs()
	if err != nil {
		return procReading{}, fmt.Errorf("listing processes: %w", err)
	}
	out := procReading{procs: map[int]procCPU{}}
	var flashsale, services []procfs.Proc
	for _, pr := range all {
		comm, err := pr.Comm()
		if err != nil {
			continue
		}
		switch {
		case pr.PID == p.self:
			if c, ok := cpuOf(pr, procBench); ok {
				out.procs[pr.PID] = c
			}
		case strings.HasPrefix(comm, "flashsale"):
			flashsale = append(flashsale, pr)
		case serviceComms[comm] != "":
			services = append(services, pr)
		}
	}
	listening := p.listening()
	roles, env, why := p.deployment(flashsale, listening)
	out.serverWhy = why
	for _, pr := range flashsale {
		if role, ok := roles[pr.PID]; ok {
			if c, ok := cpuOf(pr, "flashsale "+role); ok {
				out.procs[pr.PID] = c
			}
		}
	}
	// A service counts when it listens on the port the deployment uses (a
	// second redis-server of a test, or the Erlang VM of a rabbitmqctl, does
	// not).
	ports := servicePorts(env)
	for _, pr := range services {
		comm, _ := pr.Comm()
		kind := serviceComms[comm]
		if listensOn(pr, listening, ports[kind]) {
			if c, ok := cpuOf(pr, kind); ok {
				out.procs[pr.PID] = c
			}
		}
	}
	return out, nil
}

// reread reads again the CPU of the processes of full (a reading of read),
// one stat file each: nothing is looked for, and a process that exited (or
// whose pid was reused) is left out.
func (p *procProbe) reread(full procReading) procReading {
	out := procReading{procs: make(map[int]procCPU, len(full.procs)), serverWhy: full.serverWhy}
	for pid, was := range full.procs {
		pr, err := p.fs.Proc(pid)
		if err != nil {
			continue
		}
		if c, ok := cpuOf(pr, was.kind); ok && c.start == was.start {
			out.procs[pid] = c
		}
	}
	return out
}

// listening maps the "socket:[inode]" of every listening TCP socket to its
// port.
func (p *procProbe) listening() map[string]uint64 {
	out := map[string]uint64{}
	for _, list := range []func() (procfs.NetTCP, error){p.fs.NetTCP, p.fs.NetTCP6} {
		lines, err := list()
		if err != nil {
			continue
		}
		for _, l := range lines {
			if l.St == tcpListen {
				out[fmt.Sprintf("socket:[%d]", l.Inode)] = l.LocalPort
			}
		}
	}
	return out
}

// listensOn says whether the process holds a listening socket on one of ports.
func listensOn(pr procfs.Proc, listening map[string]uint64, ports map[uint64]bool) bool {
	fds, err := pr.FileDescriptorTargets()
	if err != nil {
		return false
	}
	return slices.ContainsFunc(fds, func(t string) bool {
		port, ok := listening[t]
		return ok && ports[port]
	})
}

// servicePorts is the port of each service the deployment uses, from a
// flashsale process's environment (FLASHSALE_REDIS_ADDRS, FLASHSALE_AMQP_URL,
// FLASHSALE_MYSQL_META_DSN and FLASHSALE_MYSQL_SHARD_DSNS), else the
// services' standard ports.
func servicePorts(env []string) map[string]map[uint64]bool {
	ports := map[string]map[uint64]bool{
		procMariaDB: {3306: true},
		procRedis:   {6379: true},
		procRabbit:  {5672: true},
	}
	vars := map[string]string{}
	for _, kv := range env {
		if k, v, ok := strings.Cut(kv, "="); ok {
			vars[k] = v
		}
	}
	set := func(kind, list string, port func(string) string) {
		got := map[uint64]bool{}
		for _, item := range strings.Split(list, ",") {
			if n, err := strconv.ParseUint(port(strings.TrimSpace(item)), 10, 16); err == nil {
				got[n] = true
			}
		}
		if len(got) > 0 {
			ports[kind] = got
		}
	}
	set(procRedis, vars["FLASHSALE_REDIS_ADDRS"], func(a string) string {
		_, port, _ := net.SplitHostPort(a)
		return port
	})
	set(procRabbit, vars["FLASHSALE_AMQP_URL"], func(a string) string {
		u, err := url.Parse(a)
		if err != nil {
			return ""
		}
		return cmp.Or(u.Port(), "5672")
	})
	set(procMariaDB, vars["FLASHSALE_MYSQL_META_DSN"]+","+vars["FLASHSALE_MYSQL_SHARD_DSNS"], func(dsn string) string {
		cfg, err := mysql.ParseDSN(dsn)
		if err != nil || cfg.Net != "tcp" {
			return ""
		}
		_, port, _ := net.SplitHostPort(cfg.Addr)
		return port
	})
	return ports
}

func cpuOf(pr procfs.Proc, kind string) (procCPU, bool) {
	st, err := pr.Stat()
	if err != nil {
		return procCPU{}, false
	}
	return procCPU{kind: kind, seconds: st.CPUTime(), start: st.Starttime}, true
}

// deployment picks, of the flashsale processes, those of the deployment under
// test, with their roles: the one listening on the port, and the others of
// its namespace; env is the listening one's environment. why says why none
// was picked.
func (p *procProbe) deployment(procs []procfs.Proc, listening map[string]uint64) (roles map[int]string, env []string, why string) {
	if !local(p.host) {
		return nil, nil, "--url's host " + p.host + " is not this host"
	}
	var server *procfs.Proc
	for _, pr := range procs {
		if pr.PID != p.self && listensOn(pr, listening, map[uint64]bool{p.port: true}) {
			server = &pr
			break
		}
	}
	if server == nil {
		return nil, nil, fmt.Sprintf("no flashsale process of this host listens on port %d", p.port)
	}
	env, _ = server.Environ()
	namespace := namespaceOf(*server)
	roles = map[int]string{}
	for _, pr := range procs {
		if pr.PID == p.self || namespaceOf(pr) != namespace {
			continue
		}
		args, err := pr.CmdLine()
		if err != nil {
			continue
		}
		role := "all"
		if len(args) > 1 && !strings.HasPrefix(args[1], "-") {
			role = args[1]
		}
		if role == "bench" {
			continue
		}
		roles[pr.PID] = role
	}
	return roles, env, ""
}

// tcpListen is the LISTEN state in /proc/net/tcp.
const tcpListen = 0x0A

// namespaceOf is a flashsale process's FLASHSALE_NAMESPACE (its flag
// --namespace, else the variable, else the default "flashsale").
func namespaceOf(pr procfs.Proc) string {
	if args, err := pr.CmdLine(); err == nil {
		for i, a := range args {
			if v, ok := strings.CutPrefix(a, "--namespace="); ok {
				return v
			}
			if (a == "--namespace" || a == "-namespace") && i+1 < len(args) {
				return args[i+1]
			}
		}
	}
	env, _ := pr.Environ()
	for _, kv := range env {
		if v, ok := strings.CutPrefix(kv, "FLASHSALE_NAMESPACE="); ok {
			return v
		}
	}
	return "flashsale"
}

// ProcessCost is the CPU one kind of process used over the run.
type ProcessCost struct {
	// Name is the kind: "flashsale <role>", "mariadbd", "redis-server",
	// "beam.smp" or "bench (this process)".
	Name string `json:"name"`
	// Measured is false when no such process is on this host; Reason says why.
	Measured bool   `json:"measured"`
	Reason   string `json:"reason,omitempty"`
	// PIDs are the processes counted.
	PIDs []int `json:"pids,omitempty"`
	// CPUSeconds is their user + system CPU between the readings.
	CPUSeconds float64 `json:"cpu_seconds"`
	// CPUMsPerOrder is CPUSeconds in ms over the run's orders;
	// CPUSecondsPer1000Purchases is CPUSeconds over the purchase requests
	// (POST /purchase and /purchases, every answer) in thousands. Absent when
	// the divisor is 0.
	CPUMsPerOrder              *float64 `json:"cpu_ms_per_order,omitempty"`
	CPUSecondsPer1000Purchases *float64 `json:"cpu_seconds_per_1000_purchase_requests,omitempty"`
}

// processCosts is the CPU each kind used between the readings. A process in
// the second reading only (or whose pid was reused) is counted from its start;
// one in the first only exited and its CPU since is lost (said in the notes).
func processCosts(before, after procReading, orders, purchases int64) ([]ProcessCost, []string) {
	byKind := map[string]*ProcessCost{}
	var notes []string
	for pid, a := range after.procs {
		used := a.seconds
		if b, ok := before.procs[pid]; ok && b.start == a.start {
			used -= b.seconds
		} else {
			notes = append(notes, fmt.Sprintf("%s (pid %d) started during the run: counted from its start", a.kind, pid))
		}
		c := byKind[a.kind]
		if c == nil {
			c = &ProcessCost{Name: a.kind, Measured: true}
			byKind[a.kind] = c
		}
		c.PIDs = append(c.PIDs, pid)
		c.CPUSeconds += used
	}
	for pid, b := range before.procs {
		if a, ok := after.procs[pid]; !ok || a.start != b.start {
			notes = append(notes, fmt.Sprintf("%s (pid %d) exited during the run: its CPU after the first reading is not counted", b.kind, pid))
		}
	}
	var out []ProcessCost
	for _, c := range byKind {
		slices.Sort(c.PIDs)
		c.CPUSeconds = round3(c.CPUSeconds)
		c.CPUMsPerOrder = ratioPtr(c.CPUSeconds*1000, float64(orders), 3)
		c.CPUSecondsPer1000Purchases = ratioPtr(c.CPUSeconds*1000, float64(purchases), 3)
		out = append(out, *c)
	}
	if !slices.ContainsFunc(out, func(c ProcessCost) bool { return strings.HasPrefix(c.Name, "flashsale ") }) {
		why := cmp.Or(after.serverWhy, before.serverWhy, "none found")
		out = append(out, ProcessCost{Name: "flashsale", Reason: "not measured: " + why})
	}
	for _, k := range serviceKinds {
		if _, ok := byKind[k]; !ok {
			out = append(out, ProcessCost{Name: k, Reason: "not measured: no " + k + " process on this host (remote?)"})
		}
	}
	// The flashsale roles first, then the services, then the bench.
	rank := func(name string) int {
		switch {
		case strings.HasPrefix(name, "flashsale"):
			return 0
		case name == procBench:
			return 2
		}
		return 1
	}
	slices.SortFunc(out, func(a, b ProcessCost) int {
		return cmp.Or(cmp.Compare(rank(a.Name), rank(b.Name)), cmp.Compare(a.Name, b.Name))
	})
	slices.Sort(notes)
	return out, notes
}

// ratioPtr is a/b rounded to digits decimals, nil when b is 0.
func ratioPtr(a, b float64, digits int) *float64 {
	if b == 0 {
		return nil
	}
	v := roundTo(a/b, digits)
	return &v
}

func roundTo(v float64, digits int) float64 {
	p := math.Pow(10, float64(digits))
	return math.Round(v*p) / p
}

func round3(v float64) float64 { return roundTo(v, 3) }
