package bench

import (
	"context"
	"fmt"
	"io"
	"math"
	"os"
	"strings"
	"text/tabwriter"
	"time"
)

// The "Cost of an order" section: what the run cost each process of the
// deployment in CPU (proccost.go) and the MySQL server in statements, fsyncs
// and row-lock waits (mysqlcost.go), per order and per 1,000 purchase
// requests. It is read at the same two moments as the server's counters:
// before the opening and once the load is over.

// OrderCost is the section.
type OrderCost struct {
	// WindowSeconds is the time between the two readings.
	WindowSeconds float64 `json:"window_seconds"`
	// Orders is the run's orders created; PurchaseRequests its purchase
	// requests (POST /purchase and /purchases, whatever the answer).
	Orders           int64 `json:"orders"`
	PurchaseRequests int64 `json:"purchase_requests"`
	// Processes is the CPU of each process kind (absent when /proc could not
	// be read: ProcessesReason says why).
	Processes       []ProcessCost `json:"processes,omitempty"`
	ProcessesReason string        `json:"processes_reason,omitempty"`
	// MeasuredCPUMsPerOrder is the measured processes' CPU in ms per order,
	// the bench's own left out.
	MeasuredCPUMsPerOrder *float64 `json:"measured_cpu_ms_per_order,omitempty"`
	// MySQL is the MySQL server's counters (absent with --mysql-dsn off).
	MySQL *MySQLCost `json:"mysql,omitempty"`
	Notes []string   `json:"notes,omitempty"`
}

// costProbe takes the section's readings.
type costProbe struct {
	procs    *procProbe
	procsErr error
	mysql    *mysqlProbe // nil with --mysql-dsn off
}

// costReading is one reading of the section.
type costReading struct {
	at        time.Time
	procs     procReading
	procsErr  error
	status    statusReading
	statusErr error
}

func newCostProbe(cfg Config) *costProbe {
	p := &costProbe{}
	p.procs, p.procsErr = newProcProbe("/proc", os.Getpid(), cfg.URL)
	if cfg.MySQLDSN != "" {
		// The DSN was validated with the flags.
		p.mysql, _ = newMySQLProbe(cfg.MySQLDSN)
	}
	return p
}

func (p *costProbe) close() {
	if p.mysql != nil {
		p.mysql.close()
	}
}

func (p *costProbe) read(ctx context.Context) costReading {
	r := costReading{procsErr: p.procsErr}
	if p.mysql != nil {
		r.status, r.statusErr = p.mysql.read(ctx)
	}
	if p.procs != nil {
		r.procs, r.procsErr = p.procs.read()
	}
	r.at = time.Now()
	return r
}

// orderCost computes the section from two readings.
func orderCost(p *costProbe, before, after costReading, orders, purchases int64) *OrderCost {
	c := &OrderCost{
		WindowSeconds:    math.Round(after.at.Sub(before.at).Seconds()*1000) / 1000,
		Orders:           orders,
		PurchaseRequests: purchases,
	}
	switch {
	case before.procsErr != nil:
		c.ProcessesReason = before.procsErr.Error()
	case after.procsErr != nil:
		c.ProcessesReason = after.procsErr.Error()
	default:
		c.Processes, c.Notes = processCosts(before.procs, after.procs, orders, purchases)
		var ms float64
		measured := false
		for _, pc := range c.Processes {
			if pc.Measured && pc.Name != procBench {
				ms, measured = ms+pc.CPUSeconds*1000, true
			}
		}
		if measured {
			c.MeasuredCPUMsPerOrder = ratioPtr(ms, float64(orders), 3)
		}
	}
	if p.mysql != nil {
		switch {
		case before.statusErr != nil:
			c.MySQL = &MySQLCost{Server: p.mysql.addr, Reason: "before the opening: " + before.statusErr.Error()}
		case after.statusErr != nil:
			c.MySQL = &MySQLCost{Server: p.mysql.addr, Reason: "after the load: " + after.statusErr.Error()}
		default:
			c.MySQL = mysqlCost(p.mysql.addr, before.status, after.status, orders)
		}
	}
	return c
}

// purchaseRequests counts the run's purchase requests (every answer).
func purchaseRequests(rep *Report) int64 {
	var n int64
	for _, e := range rep.Endpoints {
		if e.Name == string(epPurchase) || e.Name == string(epPurchases) {
			n += e.Requests
		}
	}
	return n
}

// orderCostRows renders the process table: name, CPU s, ms/order,
// s/1,000 purchase requests, pids (or why not measured).
func orderCostRows(c *OrderCost) [][5]string {
	var rows [][5]string
	for _, p := range c.Processes {
		if !p.Measured {
			rows = append(rows, [5]string{p.Name, "-", "-", "-", p.Reason})
			continue
		}
		pids := make([]string, len(p.PIDs))
		for i, pid := range p.PIDs {
			pids[i] = fmt.Sprint(pid)
		}
		rows = append(rows, [5]string{p.Name, fmt.Sprintf("%.2f", p.CPUSeconds), fmtOpt(p.CPUMsPerOrder, "%.3f"),
			fmtOpt(p.CPUSecondsPer1000Purchases, "%.3f"), "pid " + strings.Join(pids, ",")})
	}
	return rows
}

// mysqlCostLines renders the MySQL figures, a line each.
func mysqlCostLines(m *MySQLCost) []string {
	if m == nil {
		return []string{"mysql: not read (--mysql-dsn off)"}
	}
	if !m.Available {
		return []string{"mysql " + m.Server + ": not available (" + m.Reason + ")"}
	}
	var kinds []string
	for i, k := range m.Kinds {
		if i == 8 {
			kinds = append(kinds, "...")
			break
		}
		kinds = append(kinds, fmt.Sprintf("%s %.2f", k.Kind, k.PerOrder))
	}
	return []string{
		fmt.Sprintf("mysql statements / order: %s (%d statements: %s)", fmtOpt(m.StatementsPerOrder, "%.2f"), m.Statements, strings.Join(kinds, ", ")),
		fmt.Sprintf("mysql fsyncs / order: %s (%d fsyncs)", fmtOpt(m.FsyncsPerOrder, "%.2f"), m.Fsyncs),
		fmt.Sprintf("mysql row-lock waits: %d (%d ms waited)", m.RowLockWaits, m.RowLockTimeMs),
	}
}

func fmtOpt(v *float64, format string) string {
	if v == nil {
		return "n/a"
	}
	return fmt.Sprintf(format, *v)
}

// orderCostHeading is the section's first line.
func orderCostHeading(c *OrderCost) string {
	if c == nil {
		return "not read"
	}
	h := fmt.Sprintf("over %.1f s between the readings: %d orders, %d purchase requests; CPU is user + system from /proc; services shared with other work count that work too",
		c.WindowSeconds, c.Orders, c.PurchaseRequests)
	if c.MeasuredCPUMsPerOrder != nil {
		h += fmt.Sprintf("; measured processes but the bench: %.3f ms CPU / order", *c.MeasuredCPUMsPerOrder)
	}
	return h
}

// writeOrderCostText prints the section of the text summary.
func writeOrderCostText(w io.Writer, c *OrderCost) {
	if c == nil {
		return
	}
	fmt.Fprintln(w, "\nCost of an order")
	fmt.Fprintf(w, "  %s\n", orderCostHeading(c))
	if c.ProcessesReason != "" {
		fmt.Fprintf(w, "  processes: not measured (%s)\n", c.ProcessesReason)
	} else {
		tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, "  process\tCPU s\tCPU ms / order\tCPU s / 1000 purchase requests\t")
		for _, r := range orderCostRows(c) {
			fmt.Fprintf(tw, "  %s\t%s\t%s\t%s\t%s\n", r[0], r[1], r[2], r[3], r[4])
		}
		_ = tw.Flush()
	}
	for _, l := range mysqlCostLines(c.MySQL) {
		fmt.Fprintf(w, "  %s\n", l)
	}
	for _, n := range c.Notes {
		fmt.Fprintf(w, "  note: %s\n", n)
	}
}
