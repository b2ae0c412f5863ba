package cli

import (
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/spf13/cobra"
	"golang.org/x/sys/unix"
)

// Progress lines of long waits: --wait, image build, dev's start-up.
//
// A wait shows on the command's stderr what it waits for (its subject, "vm
// web") and the state that is in ("starting", with a detail such as the
// reason). stdout never carries progress: it stays the command's result,
// which scripts read (-o json).
//
// When stderr is a terminal, the wait is one line rewritten in place
// ("\r", then erase to the end of the line): a spinner, the subject, the
// state it came from and the one it is in ("scheduled → starting (booting
// (tcg))"), and the time since the wait began. It is redrawn about five
// times a second (every progressRedrawEvery; two draws are never closer
// than progressMinGap, a note aside) and cut to the terminal's width,
// since a line that wrapped could not be rewritten. When the wait ends the
// line is finished with its last state and the time taken, and a newline
// (or erased, when what follows says how the wait ended).
//
// Anywhere else (a pipe, a file, CI, tests) it is one plain line per change
// of state, "vm web: starting (booting (tcg))", and nothing between: no
// carriage returns, no spinner, no lines per tick.
//
// -q/--quiet hides progress: the lines of waits and their notes. Results,
// errors and what a command must say in any case still print.

// progressRedrawEvery is how often a terminal progress line is redrawn
// while nothing changes, to move its spinner and its seconds: five times a
// second.
const progressRedrawEvery = 200 * time.Millisecond

// progressMinGap is the least time between two draws of a terminal
// progress line, whatever asks for them: a little under
// progressRedrawEvery, as a ticker's ticks may come early.
const progressMinGap = progressRedrawEvery * 9 / 10

// progressDefaultWidth is the width, in columns, a terminal progress line
// is cut to when $COLUMNS does not say.
const progressDefaultWidth = 80

// The seams the tests replace: whether a writer is a terminal, the clock,
// and how often a terminal line is redrawn while nothing changes (0: only
// when something does, which the tests use to draw deterministically).
var (
	progressTerminal = isTerminal
	progressNow      = time.Now
	progressRedraw   = progressRedrawEvery
)

// progressSpinner is the spinner's frames, ASCII so that any terminal
// shows them.
const progressSpinner = `|/-\`

// progressConfig is how one command shows progress.
type progressConfig struct {
	w        io.Writer // the command's stderr
	terminal bool      // w is a terminal: rewrite one line in place
	quiet    bool      // show nothing (-q)
	now      func() time.Time
	// redraw is how often a terminal line is redrawn to move the spinner
	// and the seconds; 0: only on Update.
	redraw time.Duration
	width  int // columns a terminal line may use
}

// progressFor is the progress of cmd: on its stderr, quiet with -q.
func progressFor(cmd *cobra.Command) progressConfig {
	pc := progressTo(cmd.ErrOrStderr())
	pc.quiet = quietFlag(cmd)
	return pc
}

// progressTo is progress on w, not quiet.
func progressTo(w io.Writer) progressConfig {
	return progressConfig{
		w:        w,
		terminal: progressTerminal(w),
		now:      progressNow,
		redraw:   progressRedraw,
		width:    terminalWidth(w),
	}
}

// quietFlag reports whether the root's --quiet is set on cmd's command
// line.
func quietFlag(cmd *cobra.Command) bool {
	f := cmd.Flag("quiet")
	return f != nil && f.Value.String() == "true"
}

// isTerminal reports whether w is a terminal (a character device) that can
// rewrite a line: not when $TERM is "dumb".
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok || os.Getenv("TERM") == "dumb" {
		return false
	}
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}

// terminalWidth is the width of the terminal w is, as the terminal says
// (shells do not export $COLUMNS); else $COLUMNS if it is a sane width;
// else progressDefaultWidth.
func terminalWidth(w io.Writer) int {
	if f, ok := w.(*os.File); ok {
		if ws, err := unix.IoctlGetWinsize(int(f.Fd()), unix.TIOCGWINSZ); err == nil && ws.Col >= 20 {
			return int(ws.Col)
		}
	}
	if n, err := strconv.Atoi(os.Getenv("COLUMNS")); err == nil && n >= 20 && n <= 1000 {
		return n
	}
	return progressDefaultWidth
}

// printable makes text from the cluster (a reason, an error) safe to show
// on one line: newlines, tabs and other control characters become spaces,
// so that no escape sequence or line break reaches the terminal.
func printable(s string) string {
	return strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f || (r >= 0x80 && r < 0xa0) {
			return ' '
		}
		return r
	}, s)
}

// progress reports one wait. Its methods may be called from any goroutine;
// Done (or Clear) must be called when the wait ends, which stops the
// terminal's redraws.
type progress struct {
	cfg     progressConfig
	subject string
	started time.Time

	mu sync.Mutex
	// has: Update was called; state and detail are what it last said, prev
	// the state before state ("" if none).
	has                    bool
	prev, state, detail    string
	drawn                  bool // a terminal line is on screen
	lastDraw               time.Time
	frame                  int // the spinner's
	ended                  bool
	stopTicker, tickerGone chan struct{} // nil until the ticker runs
}

// start begins reporting a wait for subject ("vm web", "image build").
// It shows nothing until the first Update.
func (pc progressConfig) start(subject string) *progress {
	return &progress{cfg: pc, subject: subject, started: pc.now()}
}

// Update says the subject is now in state, with detail (a reason, a node,
// a path; may be ""). Nothing is shown if both are what they were.
func (p *progress) Update(state, detail string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	state, detail = printable(state), printable(detail)
	if p.ended || p.cfg.quiet || (p.has && state == p.state && detail == p.detail) {
		return
	}
	if p.has && state != p.state {
		p.prev = p.state
	}
	p.has, p.state, p.detail = true, state, detail
	if !p.cfg.terminal {
		fmt.Fprintf(p.cfg.w, "%s: %s\n", p.subject, withReason(state, detail))
		return
	}
	p.runTicker()
	// Too soon after the last draw, the next tick (or Done) shows it.
	if now := p.cfg.now(); !p.drawn || now.Sub(p.lastDraw) >= progressMinGap {
		p.draw(now)
	}
}

// Note prints a line of its own about the wait ("image default built on
// node 1"), above the terminal's progress line.
func (p *progress) Note(format string, args ...any) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cfg.quiet {
		return
	}
	if p.drawn {
		io.WriteString(p.cfg.w, "\r\x1b[K")
	}
	fmt.Fprintf(p.cfg.w, format+"\n", args...)
	if p.drawn && !p.ended {
		p.draw(p.cfg.now())
	}
}

// Done ends the wait. On a terminal the line is finished with the last
// state and the time taken, and a newline; elsewhere every state has been
// printed already. Calling it again does nothing.
func (p *progress) Done() { p.end(true) }

// Clear ends the wait and erases the terminal's line, for a caller that
// prints how the wait ended itself. Calling it again does nothing.
func (p *progress) Clear() { p.end(false) }

func (p *progress) end(keep bool) {
	p.mu.Lock()
	if p.ended {
		p.mu.Unlock()
		return
	}
	p.ended = true
	if p.drawn {
		io.WriteString(p.cfg.w, "\r\x1b[K")
		if keep {
			fmt.Fprintf(p.cfg.w, "%s: %s [%s]\n", p.subject, withReason(p.state, p.detail), elapsedText(p.cfg.now().Sub(p.started)))
		}
		p.drawn = false
	}
	stop, gone := p.stopTicker, p.tickerGone
	p.mu.Unlock()
	if stop != nil {
		close(stop)
		<-gone
	}
}

// tick redraws the terminal's line, to move the spinner and the seconds
// and to show a state that came too soon after the last draw.
func (p *progress) tick() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.ended || !p.drawn {
		return
	}
	if now := p.cfg.now(); now.Sub(p.lastDraw) >= progressMinGap {
		p.draw(now)
	}
}

// draw writes the terminal's line: "\r", erase, spinner, subject, states,
// time. The caller holds p.mu.
func (p *progress) draw(now time.Time) {
	text := p.subject + ": "
	if p.prev != "" {
		text += p.prev + " → "
	}
	text += withReason(p.state, p.detail)
	spin := string(progressSpinner[p.frame%len(progressSpinner)]) + " "
	took := " [" + elapsedText(now.Sub(p.started)) + "]"
	// The last column stays free: some terminals wrap a line that fills
	// the width.
	room := max(p.cfg.width-1-len(spin)-len(took), 10)
	// On a very narrow terminal the whole line is cut to fit as well.
	fmt.Fprintf(p.cfg.w, "\r\x1b[K%s", truncate(spin+truncate(text, room)+took, max(p.cfg.width-1, 10)))
	p.frame++
	p.drawn, p.lastDraw = true, now
}

// runTicker starts the goroutine that redraws the terminal's line every
// cfg.redraw, unless it runs already or cfg.redraw is 0. The caller holds
// p.mu.
func (p *progress) runTicker() {
	if p.stopTicker != nil || p.cfg.redraw <= 0 {
		return
	}
	p.stopTicker, p.tickerGone = make(chan struct{}), make(chan struct{})
	go func(stop, gone chan struct{}, every time.Duration) {
		defer close(gone)
		t := time.NewTicker(every)
		defer t.Stop()
		for {
			select {
			case <-stop:
				return
			case <-t.C:
				p.tick()
			}
		}
	}(p.stopTicker, p.tickerGone, p.cfg.redraw)
}

// elapsedText shows a wait's length in whole seconds: "7s", "2m05s",
// "1h02m".
func elapsedText(d time.Duration) string {
	s := int64(max(d, 0) / time.Second)
	switch {
	case s < 60:
		return fmt.Sprintf("%ds", s)
	case s < 3600:
		return fmt.Sprintf("%dm%02ds", s/60, s%60)
	}
	return fmt.Sprintf("%dh%02dm", s/3600, s%3600/60)
}
