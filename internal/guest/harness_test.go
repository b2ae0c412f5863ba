package guest

import (
	"bytes"
	"context"
	"os"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/blixard/blixard/internal/guest/wire"
)

// testReaper is the one Reaper of the test process: two reapers would take
// each other's children.
var testReaper *Reaper

// prSetChildSubreaper is prctl's PR_SET_CHILD_SUBREAPER: orphans of the
// test's tasks come to the test process, as they come to PID 1 in a guest.
const prSetChildSubreaper = 36

func TestMain(m *testing.M) {
	if _, _, errno := syscall.RawSyscall(syscall.SYS_PRCTL, prSetChildSubreaper, 1, 0); errno != 0 {
		panic("prctl(PR_SET_CHILD_SUBREAPER): " + errno.Error())
	}
	testReaper = NewReaper()
	code := m.Run()
	testReaper.Close()
	os.Exit(code)
}

// deadline bounds every wait of these tests.
const deadline = 20 * time.Second

// console is the host's side of an agent's console: what the agent wrote,
// read back as items.
type console struct {
	t     *testing.T
	items chan wire.Item
}

// newConsole returns a Console writing into a pipe and the host's reader of
// that pipe.
func newConsole(t *testing.T) (*Console, *console) {
	t.Helper()
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { w.Close() })
	c := &console{t: t, items: make(chan wire.Item, 1024)}
	go func() {
		defer r.Close()
		defer close(c.items)
		wr := wire.NewReader(r)
		for {
			it, err := wr.Next()
			if err != nil {
				return
			}
			c.items <- it
		}
	}()
	return NewConsole(w), c
}

// next returns the next item that is not a heartbeat.
func (c *console) next() wire.Item {
	c.t.Helper()
	timeout := time.After(deadline)
	for {
		select {
		case it, ok := <-c.items:
			if !ok {
				c.t.Fatal("the console closed")
			}
			if it.Frame != nil && it.Frame.Kind == wire.KindHeartbeat {
				continue
			}
			return it
		case <-timeout:
			c.t.Fatalf("nothing on the console for %v", deadline)
		}
	}
}

// frame returns the next frame, which must be of kind, decoded into v;
// text lines before it are returned.
func (c *console) frame(kind wire.Kind, v any) (texts []string) {
	c.t.Helper()
	for {
		it := c.next()
		if it.Text != nil {
			texts = append(texts, string(it.Text))
		}
		if it.Frame == nil {
			continue
		}
		if it.Frame.Kind != kind {
			c.t.Fatalf("got a %s frame %s, want %s (texts before it: %q)", it.Frame.Kind, it.Frame.Body, kind, texts)
		}
		if err := it.Frame.Decode(v); err != nil {
			c.t.Fatal(err)
		}
		return texts
	}
}

// task is what a task's frames said.
type task struct {
	stdout, stderr bytes.Buffer
	// chunks: the size of each output frame's data.
	chunks []int
	exit   wire.Exit
	texts  []string
}

// task reads output frames up to and including the exit frame.
func (c *console) task() *task {
	c.t.Helper()
	var tk task
	for {
		it := c.next()
		if it.Text != nil {
			tk.texts = append(tk.texts, string(it.Text))
		}
		if it.Frame == nil {
			continue
		}
		switch it.Frame.Kind {
		case wire.KindOutput:
			var o wire.Output
			if err := it.Frame.Decode(&o); err != nil {
				c.t.Fatal(err)
			}
			tk.chunks = append(tk.chunks, len(o.Data))
			switch o.Stream {
			case "stdout":
				tk.stdout.Write(o.Data)
			case "stderr":
				tk.stderr.Write(o.Data)
			default:
				c.t.Fatalf("output frame for stream %q", o.Stream)
			}
		case wire.KindExit:
			if err := it.Frame.Decode(&tk.exit); err != nil {
				c.t.Fatal(err)
			}
			return &tk
		default:
			c.t.Fatalf("a %s frame during a task", it.Frame.Kind)
		}
	}
}

// agentHarness runs an Agent on pipes, as Main runs it on the console.
type agentHarness struct {
	*console
	t        *testing.T
	in       *os.File
	poweroff chan string
	served   chan error
}

func startAgent(t *testing.T, taskFile string) *agentHarness {
	t.Helper()
	con, host := newConsole(t)
	inR, inW, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	h := &agentHarness{console: host, t: t, in: inW, poweroff: make(chan string, 1), served: make(chan error, 1)}
	a := &Agent{
		Console:           con,
		Input:             inR,
		Runner:            &Runner{Console: con, Reaper: testReaper},
		Kernel:            "6.1.0-test",
		Uptime:            func() time.Duration { return 1500 * time.Millisecond },
		TaskFile:          taskFile,
		HeartbeatInterval: 20 * time.Millisecond,
		Poweroff:          func(reason string) { h.poweroff <- reason },
	}
	ctx, cancel := context.WithCancel(context.Background())
	go func() { h.served <- a.Serve(ctx) }()
	t.Cleanup(func() {
		cancel()
		inW.Close()
		select {
		case <-h.served:
		case <-time.After(deadline):
			t.Errorf("Serve did not return %v after its context ended", deadline)
		}
		inR.Close()
	})
	return h
}

func (h *agentHarness) send(kind wire.Kind, v any) {
	h.t.Helper()
	if err := wire.Write(h.in, kind, v); err != nil {
		h.t.Fatal(err)
	}
}

// poweredOff waits until the agent has powered off and Serve has returned.
func (h *agentHarness) poweredOff() string {
	h.t.Helper()
	var reason string
	select {
	case reason = <-h.poweroff:
	case <-time.After(deadline):
		h.t.Fatalf("no power-off within %v", deadline)
	}
	select {
	case err := <-h.served:
		if err != nil {
			h.t.Fatalf("Serve: %v after power-off", err)
		}
		h.served <- nil // for the cleanup
	case <-time.After(deadline):
		h.t.Fatalf("Serve did not return after power-off")
	}
	return reason
}

// threadSafeBuffer collects writes from several goroutines.
type threadSafeBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *threadSafeBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *threadSafeBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// containsLine reports whether a line of texts contains substr.
func containsLine(texts []string, substr string) bool {
	for _, s := range texts {
		if strings.Contains(s, substr) {
			return true
		}
	}
	return false
}
