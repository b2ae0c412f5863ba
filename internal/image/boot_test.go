package image

import (
	"bytes"
	"encoding/json"
	"io"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/blixard/blixard/internal/guest/wire"
)

// These tests boot real guests: QEMU's microvm machine under TCG (this
// machine has no usable KVM), the Debian kernel in /boot, the agent built
// from this tree. Each boot takes a few seconds.

// bootDeadline bounds every wait on a guest.
const bootDeadline = 60 * time.Second

// qemuBinary is the hypervisor the tests boot with.
const qemuBinary = "qemu-system-x86_64"

// vm is a guest booted by a test.
type vm struct {
	t       testing.TB
	cmd     *exec.Cmd
	stdin   io.WriteCloser
	started time.Time
	items   chan wire.Item
	// console keeps every text line, for failure messages.
	console  *lockedLines
	exited   chan struct{}
	exitCode int
}

type lockedLines struct {
	mu    sync.Mutex
	lines []string
}

func (l *lockedLines) add(s string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.lines = append(l.lines, s)
}

func (l *lockedLines) tail(n int) string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return strings.Join(l.lines[max(0, len(l.lines)-n):], "\n")
}

// boot starts QEMU with kernel and initrd and memMiB of memory; the test's
// cleanup kills it.
func boot(t testing.TB, kernel, initrd string, memMiB uint64) *vm {
	t.Helper()
	qemu, err := exec.LookPath(qemuBinary)
	if err != nil {
		t.Fatalf("%s is needed to boot guests: apt-get install qemu-system-x86 (%v)", qemuBinary, err)
	}
	cmdline, err := TCGCmdline()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(qemu,
		"-M", "microvm", "-accel", "tcg", "-m", strconv.FormatUint(memMiB, 10), "-smp", "1",
		"-nodefaults", "-no-user-config", "-nographic", "-no-reboot",
		"-kernel", kernel, "-initrd", initrd, "-append", cmdline,
		"-serial", "stdio")
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	v := &vm{t: t, cmd: cmd, stdin: stdin, items: make(chan wire.Item, 4096), console: &lockedLines{}, exited: make(chan struct{})}
	v.started = time.Now()
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", qemu, err)
	}
	readDone := make(chan struct{})
	go func() {
		defer close(readDone)
		defer close(v.items)
		r := wire.NewReader(stdout)
		for {
			it, err := r.Next()
			if err != nil {
				return
			}
			if it.Text != nil {
				v.console.add(string(it.Text))
			}
			v.items <- it
		}
	}()
	go func() {
		<-readDone
		err := cmd.Wait()
		v.exitCode = cmd.ProcessState.ExitCode()
		if err != nil && stderr.Len() > 0 {
			v.console.add("qemu stderr: " + stderr.String())
		}
		close(v.exited)
	}()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-v.exited
	})
	return v
}

// frame returns the next frame that is not a heartbeat; it must be of kind.
func (v *vm) frame(kind wire.Kind) wire.Frame {
	v.t.Helper()
	timeout := time.After(bootDeadline)
	for {
		select {
		case it, ok := <-v.items:
			if !ok {
				v.t.Fatalf("the guest's console closed while waiting for a %s frame; console:\n%s", kind, v.console.tail(40))
			}
			if it.Frame == nil || it.Frame.Kind == wire.KindHeartbeat {
				continue
			}
			if it.Frame.Kind != kind {
				v.t.Fatalf("got a %s frame %s, want %s; console:\n%s", it.Frame.Kind, it.Frame.Body, kind, v.console.tail(40))
			}
			return *it.Frame
		case <-timeout:
			v.t.Fatalf("no %s frame within %v; console:\n%s", kind, bootDeadline, v.console.tail(40))
		}
	}
}

// ready waits for the ready frame and returns it and the time since QEMU
// started.
func (v *vm) ready() (wire.Ready, time.Duration) {
	v.t.Helper()
	f := v.frame(wire.KindReady)
	took := time.Since(v.started)
	var r wire.Ready
	if err := f.Decode(&r); err != nil {
		v.t.Fatal(err)
	}
	return r, took
}

func (v *vm) send(kind wire.Kind, body any) {
	v.t.Helper()
	if err := wire.Write(v.stdin, kind, body); err != nil {
		v.t.Fatal(err)
	}
}

// taskResult collects a task's frames up to its exit frame.
type taskResult struct {
	stdout, stderr string
	exit           wire.Exit
}

func (v *vm) task() taskResult {
	v.t.Helper()
	var res taskResult
	for {
		select {
		case it, ok := <-v.items:
			if !ok {
				v.t.Fatalf("the guest's console closed during a task; console:\n%s", v.console.tail(40))
			}
			if it.Frame == nil {
				continue
			}
			switch it.Frame.Kind {
			case wire.KindHeartbeat:
			case wire.KindOutput:
				var o wire.Output
				if err := it.Frame.Decode(&o); err != nil {
					v.t.Fatal(err)
				}
				if o.Stream == "stdout" {
					res.stdout += string(o.Data)
				} else {
					res.stderr += string(o.Data)
				}
			case wire.KindExit:
				if err := it.Frame.Decode(&res.exit); err != nil {
					v.t.Fatal(err)
				}
				return res
			default:
				v.t.Fatalf("a %s frame during a task", it.Frame.Kind)
			}
		case <-time.After(bootDeadline):
			v.t.Fatalf("the task did not end within %v; console:\n%s", bootDeadline, v.console.tail(40))
		}
	}
}

// exit waits for QEMU to end and returns its exit status.
func (v *vm) exit() int {
	v.t.Helper()
	select {
	case <-v.exited:
		return v.exitCode
	case <-time.After(bootDeadline):
		v.t.Fatalf("QEMU did not exit within %v; console:\n%s", bootDeadline, v.console.tail(40))
		return -1
	}
}

func TestBootReadyThenCommandsFromTheHost(t *testing.T) {
	img := mustImage(t)
	v := boot(t, img.Kernel, img.Initrd, img.MinMemoryMiB)
	r, took := v.ready()
	t.Logf("ready frame %v after QEMU started (guest uptime %d ms, %d MiB)", took.Round(time.Millisecond), r.UptimeMillis, img.MinMemoryMiB)
	if r.Version != 1 || r.Kernel != img.KernelRelease {
		t.Fatalf("ready frame %+v, want version 1, kernel %s", r, img.KernelRelease)
	}
	v.send(wire.KindRun, wire.Run{Command: "sh", Args: []string{"-c", `echo $((6*7)); echo "$GREETING" >&2; ls /bin/busybox; grep -c . /proc/mounts >/dev/null`}, Env: map[string]string{"GREETING": "hi"}})
	res := v.task()
	if res.stdout != "42\n/bin/busybox\n" || res.stderr != "hi\n" || res.exit.Code != 0 {
		t.Fatalf("task: stdout %q stderr %q exit %+v", res.stdout, res.stderr, res.exit)
	}
	v.send(wire.KindPoweroff, wire.Poweroff{Reason: "test"})
	if code := v.exit(); code != 0 {
		t.Fatalf("QEMU exited with status %d after power-off, want 0; console:\n%s", code, v.console.tail(20))
	}
}

func TestBootTaskImage(t *testing.T) {
	img := mustImage(t)
	tests := []struct {
		name       string
		run        wire.Run
		wantStdout string
		want       wire.Exit
	}{{
		name:       "exit code and output",
		run:        wire.Run{Command: "sh", Args: []string{"-c", "echo hello; exit 3"}, PoweroffAfter: true},
		wantStdout: "hello\n",
		want:       wire.Exit{Code: 3},
	}, {
		name: "timeout",
		run:  wire.Run{Command: "sleep", Args: []string{"30"}, TimeoutMillis: 1000, PoweroffAfter: true},
		want: wire.Exit{Code: 137, TimedOut: true, Error: "timeout"},
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			task, err := json.Marshal(tt.run)
			if err != nil {
				t.Fatal(err)
			}
			initrd := filepath.Join(t.TempDir(), "initrd.img")
			if err := WithFiles(img.Initrd, initrd, []File{{Path: "/blixard/task.json", Mode: 0o644, Data: task}}); err != nil {
				t.Fatal(err)
			}
			v := boot(t, img.Kernel, initrd, img.MinMemoryMiB)
			v.ready()
			res := v.task()
			if res.stdout != tt.wantStdout {
				t.Errorf("stdout %q, want %q", res.stdout, tt.wantStdout)
			}
			got := res.exit
			got.DurationMillis = 0
			if got != tt.want {
				t.Errorf("exit %+v, want %+v", res.exit, tt.want)
			}
			if tt.want.TimedOut && res.exit.DurationMillis < tt.run.TimeoutMillis {
				t.Errorf("the task was killed after %d ms, before its timeout of %d ms", res.exit.DurationMillis, tt.run.TimeoutMillis)
			}
			if code := v.exit(); code != 0 {
				t.Fatalf("QEMU exited with status %d, want 0; console:\n%s", code, v.console.tail(20))
			}
		})
	}
}

// BenchmarkBootToReady reports the time from QEMU's start to the agent's
// ready frame.
func BenchmarkBootToReady(b *testing.B) {
	img := mustImage(b)
	var total time.Duration
	for b.Loop() {
		v := boot(b, img.Kernel, img.Initrd, img.MinMemoryMiB)
		_, took := v.ready()
		total += took
		v.send(wire.KindPoweroff, wire.Poweroff{})
		v.exit()
	}
	b.ReportMetric(float64(total.Milliseconds())/float64(b.N), "ms/ready")
}
