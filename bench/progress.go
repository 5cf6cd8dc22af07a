package bench

import (
	"fmt"
	"io"
	"os"
	"sync"
	"time"

	"github.com/schollz/progressbar/v3"
	"golang.org/x/term"
)

// Phases shown by the progress display.
const (
	phaseReserve  = "reserve"
	phasePurchase = "purchase"
	phaseExpiry   = "expiry"
)

// progress shows the progress of one phase at a time on a writer (stderr): a live
// progress bar on a terminal, and a plain line at every tenth otherwise (CI logs do
// not render carriage returns). Increments for a phase other than the current one
// are ignored, so stragglers of a previous phase do not corrupt the current display.
// A nil or quiet progress does nothing.
type progress struct {
	w     io.Writer
	quiet bool
	tty   bool

	mu          sync.Mutex
	phase       string
	description string
	bar         *progressbar.ProgressBar
	max, done   int
	tenth       int
	started     time.Time
}

func newProgress(w io.Writer, quiet bool) *progress {
	p := &progress{w: w, quiet: quiet}
	if f, ok := w.(*os.File); ok && term.IsTerminal(int(f.Fd())) {
		p.tty = true
	}
	return p
}

// start finishes the current display and starts one for phase with max steps.
func (p *progress) start(phase, description string, max int) {
	if p == nil || p.quiet {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.finishLocked()
	p.phase, p.description, p.max, p.done, p.tenth, p.started = phase, description, max, 0, 0, time.Now()
	if !p.tty {
		fmt.Fprintf(p.w, "%s   0%% (0/%d)\n", description, max)
		return
	}
	p.bar = progressbar.NewOptions(max,
		progressbar.OptionSetWriter(p.w),
		progressbar.OptionSetDescription(description),
		progressbar.OptionSetWidth(30),
		progressbar.OptionShowCount(),
		progressbar.OptionShowIts(),
		progressbar.OptionSetItsString("users"),
		progressbar.OptionSetElapsedTime(true),
		progressbar.OptionSetPredictTime(false),
		progressbar.OptionThrottle(100*time.Millisecond),
		progressbar.OptionSetRenderBlankState(true),
	)
}

// add advances the display of phase by n.
func (p *progress) add(phase string, n int) {
	if p == nil || p.quiet {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.phase != phase || p.max <= 0 {
		return
	}
	p.done = min(p.done+n, p.max)
	if p.bar != nil {
		_ = p.bar.Add(n)
		return
	}
	if tenth := p.done * 10 / p.max; tenth > p.tenth {
		p.tenth = tenth
		fmt.Fprintf(p.w, "%s %3d%% (%d/%d) %s\n", p.description, p.done*100/p.max, p.done, p.max,
			time.Since(p.started).Round(100*time.Millisecond))
	}
}

// finish ends the current display, if any.
func (p *progress) finish() {
	if p == nil || p.quiet {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.finishLocked()
}

func (p *progress) finishLocked() {
	if p.bar != nil {
		if !p.bar.IsFinished() {
			_ = p.bar.Exit()
		}
		fmt.Fprintln(p.w)
	} else if p.phase != "" && p.done < p.max {
		fmt.Fprintf(p.w, "%s stopped at %d/%d\n", p.description, p.done, p.max)
	}
	p.bar, p.phase = nil, ""
}
