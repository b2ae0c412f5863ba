package cli

import (
	"bytes"
	"io"
	"os"
	"strings"
	"testing"
	"time"
	"unicode/utf8"
)

// testClock is a clock that moves only when the test says.
type testClock struct{ t time.Time }

func newTestClock() *testClock { return &testClock{t: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)} }

func (c *testClock) now() time.Time          { return c.t }
func (c *testClock) advance(d time.Duration) { c.t = c.t.Add(d) }

// steppingClock is a clock that moves one second on every read: a
// terminal line is drawn on every change, and what it shows is fixed.
func steppingClock() func() time.Time {
	c := newTestClock()
	return func() time.Time {
		t := c.t
		c.advance(time.Second)
		return t
	}
}

// fakeTerminal makes every command of the rest of the test see a terminal
// on its stderr, with a stepping clock and no redraws between changes.
func fakeTerminal(t *testing.T) {
	oldTerminal, oldNow, oldRedraw := progressTerminal, progressNow, progressRedraw
	progressTerminal = func(io.Writer) bool { return true }
	progressNow = steppingClock()
	progressRedraw = 0
	t.Cleanup(func() { progressTerminal, progressNow, progressRedraw = oldTerminal, oldNow, oldRedraw })
}

// progressStep is one call on a progress: an Update, or a Note if note is
// set.
type progressStep struct {
	state, detail string
	note          string
}

// TestProgressPlain checks progress where stderr is no terminal: one line
// per change of state (or of its detail), none for a repeat, none after
// the end, nothing at all when quiet, and never a carriage return.
func TestProgressPlain(t *testing.T) {
	tests := []struct {
		name  string
		quiet bool
		steps []progressStep
		want  string
	}{
		{
			name: "a line per change, none for repeats",
			steps: []progressStep{
				{state: "pending", detail: "created; waiting for placement"},
				{state: "pending", detail: "created; waiting for placement"},
				{state: "scheduled", detail: "placed on node 2"},
				{state: "scheduled", detail: "placed on node 2"},
				{state: "scheduled", detail: "placed on node 2"},
				{state: "starting"},
				{state: "running", detail: "ready"},
				{state: "running", detail: "ready"},
			},
			want: "vm web: pending (created; waiting for placement)\n" +
				"vm web: scheduled (placed on node 2)\n" +
				"vm web: starting\n" +
				"vm web: running (ready)\n",
		},
		{
			name:  "a new detail is a change",
			steps: []progressStep{{state: "pending", detail: "no node has room"}, {state: "pending", detail: "no node offers image tools"}},
			want:  "vm web: pending (no node has room)\nvm web: pending (no node offers image tools)\n",
		},
		{
			name:  "the same detail after another state is a change",
			steps: []progressStep{{state: "starting"}, {state: "running"}, {state: "starting"}},
			want:  "vm web: starting\nvm web: running\nvm web: starting\n",
		},
		{
			name: "notes between",
			steps: []progressStep{
				{state: "scheduled", detail: "placed on node 1"},
				{note: "node 1 is building image default"},
				{state: "scheduled", detail: "placed on node 1"},
				{state: "running"},
			},
			want: "vm web: scheduled (placed on node 1)\nnode 1 is building image default\nvm web: running\n",
		},
		{
			name:  "quiet",
			quiet: true,
			steps: []progressStep{{state: "pending"}, {note: "a note"}, {state: "running"}},
			want:  "",
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var buf bytes.Buffer
			clock := newTestClock()
			p := progressConfig{w: &buf, quiet: tc.quiet, now: clock.now, redraw: progressRedrawEvery, width: 80}.start("vm web")
			for _, s := range tc.steps {
				clock.advance(time.Second)
				if s.note != "" {
					p.Note("%s", s.note)
				} else {
					p.Update(s.state, s.detail)
				}
			}
			p.Done()
			p.Update("failed", "after the end")
			p.Done()
			if buf.String() != tc.want {
				t.Errorf("printed\n%q\nwant\n%q", buf.String(), tc.want)
			}
			if strings.ContainsAny(buf.String(), "\r\x1b") {
				t.Errorf("printed %q: a carriage return or escape where no terminal is", buf.String())
			}
		})
	}
}

// TestProgressTerminal checks progress on a terminal, draw by draw: each
// draw rewrites the line ("\r", erase), with the spinner, the state it
// came from, the one it is in and the seconds; draws are at least
// progressMinGap apart; a note goes above the line; Done finishes it with
// a newline.
func TestProgressTerminal(t *testing.T) {
	var buf bytes.Buffer
	clock := newTestClock()
	p := progressConfig{w: &buf, terminal: true, now: clock.now, width: 80}.start("vm web")
	const erase = "\r\x1b[K"
	var want strings.Builder
	check := func(what string) {
		t.Helper()
		if buf.String() != want.String() {
			t.Fatalf("after %s: wrote\n%q\nwant\n%q", what, buf.String(), want.String())
		}
	}

	p.Update("pending", "created")
	want.WriteString(erase + "| vm web: pending (created) [0s]")
	check("the first update")

	clock.advance(100 * time.Millisecond)
	p.Update("scheduled", "placed on node 2")
	p.tick()
	check("an update and a tick too soon after the last draw")

	clock.advance(100 * time.Millisecond)
	p.tick()
	want.WriteString(erase + "/ vm web: pending → scheduled (placed on node 2) [0s]")
	check("a tick after the gap")

	clock.advance(time.Second)
	p.Update("starting", "booting (tcg)")
	want.WriteString(erase + "- vm web: scheduled → starting (booting (tcg)) [1s]")
	check("an update after the gap")

	clock.advance(100 * time.Millisecond)
	p.Note("image %s built on node %d", "default", 2)
	want.WriteString(erase + "image default built on node 2\n" + erase + "\\ vm web: scheduled → starting (booting (tcg)) [1s]")
	check("a note")

	clock.advance(11 * time.Second)
	p.Update("starting", "booting (tcg)")
	check("a repeated state")
	p.tick()
	want.WriteString(erase + "| vm web: scheduled → starting (booting (tcg)) [12s]")
	check("a tick, which moves the spinner and the seconds")

	clock.advance(time.Second)
	p.Update("running", "ready")
	want.WriteString(erase + "/ vm web: starting → running (ready) [13s]")
	check("the last update")

	clock.advance(50 * time.Second)
	p.Done()
	want.WriteString(erase + "vm web: running (ready) [1m03s]\n")
	check("Done")

	clock.advance(time.Second)
	p.Update("stopped", "")
	p.tick()
	p.Note("after the end")
	p.Done()
	want.WriteString("after the end\n")
	check("calls after Done, of which only a note prints")
}

// TestProgressTerminalEnds checks the ways a terminal line ends: Done
// finishes it with a newline, Clear erases it, and a wait that showed
// nothing writes nothing; quiet writes nothing at all.
func TestProgressTerminalEnds(t *testing.T) {
	tests := []struct {
		name   string
		quiet  bool
		update bool
		clear  bool
		want   string
	}{
		{name: "done", update: true, want: "\r\x1b[K| task 7: running [0s]\r\x1b[Ktask 7: running [0s]\n"},
		{name: "cleared", update: true, clear: true, want: "\r\x1b[K| task 7: running [0s]\r\x1b[K"},
		{name: "nothing shown, done", want: ""},
		{name: "nothing shown, cleared", clear: true, want: ""},
		{name: "quiet", quiet: true, update: true, want: ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var buf bytes.Buffer
			p := progressConfig{w: &buf, terminal: true, quiet: tc.quiet, now: newTestClock().now, width: 80}.start("task 7")
			if tc.update {
				p.Update("running", "")
			}
			if tc.clear {
				p.Clear()
			} else {
				p.Done()
			}
			if buf.String() != tc.want {
				t.Errorf("wrote %q, want %q", buf.String(), tc.want)
			}
		})
	}
}

// TestProgressTerminalWidth checks that a line drawn in place never fills
// the terminal's width, which would wrap it and leave its start behind on
// the next draw.
func TestProgressTerminalWidth(t *testing.T) {
	var buf bytes.Buffer
	clock := newTestClock()
	p := progressConfig{w: &buf, terminal: true, now: clock.now, width: 40}.start("vm a-rather-long-name")
	p.Update("pending", "no node has 8 GiB of memory free, and none offers image tools")
	clock.advance(time.Second)
	p.Update("scheduled", "placed on node 2")
	for _, line := range strings.Split(buf.String(), "\r\x1b[K")[1:] {
		if n := utf8.RuneCountInString(line); n > 39 || !strings.HasSuffix(line, "]") {
			t.Errorf("line %q: %d columns, want at most 39 ending with the seconds", line, n)
		}
	}
	if !strings.Contains(buf.String(), "...") {
		t.Errorf("wrote %q, want the long line cut with \"...\"", buf.String())
	}
}

// TestProgressTicker checks the terminal's redraws between changes: they
// come on their own, and stop with Done.
func TestProgressTicker(t *testing.T) {
	buf := &lockedBuffer{}
	p := progressConfig{w: buf, terminal: true, now: steppingClock(), redraw: time.Millisecond, width: 80}.start("image build")
	p.Update("kernel found", "/boot/vmlinuz")
	deadline := time.Now().Add(10 * time.Second)
	for strings.Count(buf.String(), "\r") < 3 {
		if time.Now().After(deadline) {
			t.Fatalf("no redraws in 10s: %q", buf.String())
		}
		<-time.After(time.Millisecond)
	}
	p.Done()
	out := buf.String()
	if !strings.HasSuffix(out, "]\n") || strings.Count(out, "\n") != 1 {
		t.Errorf("wrote %q, want redraws finished by one last line", out)
	}
}

func TestElapsedText(t *testing.T) {
	tests := []struct {
		d    time.Duration
		want string
	}{
		{-time.Second, "0s"},
		{0, "0s"},
		{999 * time.Millisecond, "0s"},
		{59*time.Second + 999*time.Millisecond, "59s"},
		{time.Minute, "1m00s"},
		{2*time.Minute + 5*time.Second, "2m05s"},
		{time.Hour + 2*time.Minute + 3*time.Second, "1h02m"},
	}
	for _, tc := range tests {
		if got := elapsedText(tc.d); got != tc.want {
			t.Errorf("elapsedText(%v) = %q, want %q", tc.d, got, tc.want)
		}
	}
}

func TestIsTerminal(t *testing.T) {
	f, err := os.CreateTemp(t.TempDir(), "stderr")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	defer w.Close()
	for _, tc := range []struct {
		name string
		w    io.Writer
	}{{"a buffer", &bytes.Buffer{}}, {"a file", f}, {"a pipe", w}} {
		if isTerminal(tc.w) {
			t.Errorf("isTerminal(%s) = true", tc.name)
		}
	}
}

// Text from the cluster reaches the terminal on one line, without escape
// sequences, and a narrow terminal's line never fills its width.
func TestProgressTextIsSafe(t *testing.T) {
	var buf bytes.Buffer
	p := progressConfig{w: &buf, now: newTestClock().now, width: 80}.start("vm web")
	p.Update("failed", "boot error:\nline two\x1b[31m red")
	p.Done()
	if got, want := buf.String(), "vm web: failed (boot error: line two [31m red)\n"; got != want {
		t.Errorf("plain line %q, want %q", got, want)
	}
	for _, width := range []int{14, 16, 20, 24, 40} {
		buf.Reset()
		p := progressConfig{w: &buf, terminal: true, now: newTestClock().now, width: width}.start("vm a-rather-long-name")
		p.Update("starting", "booting under tcg, which takes a while")
		for _, line := range strings.Split(buf.String(), "\r\x1b[K")[1:] {
			if n := utf8.RuneCountInString(strings.TrimSuffix(line, "\n")); n > width-1 {
				t.Errorf("width %d: line %q has %d columns", width, line, n)
			}
		}
		p.Clear()
	}
}
