package vmm

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/blixard/blixard/internal/guest/wire"
)

func frame(t *testing.T, kind wire.Kind, v any) wire.Frame {
	t.Helper()
	line, err := wire.Encode(kind, v)
	if err != nil {
		t.Fatal(err)
	}
	_, f, ok := wire.ParseLine(line[:len(line)-1])
	if !ok {
		t.Fatal("frame does not parse")
	}
	return f
}

// TestTrackerOutcomes feeds the tracker what the console and QEMU say and
// checks the final status it decides.
func TestTrackerOutcomes(t *testing.T) {
	t0 := time.Unix(1700000000, 0)
	task := &wire.Run{Command: "sh", Args: []string{"-c", "echo hello; exit 3"}, PoweroffAfter: true}
	ready := func(t *testing.T) wire.Frame { return frame(t, wire.KindReady, wire.Ready{Version: 1}) }
	out := func(t *testing.T, s string) wire.Frame {
		return frame(t, wire.KindOutput, wire.Output{Stream: "stdout", Data: []byte(s)})
	}
	exit := func(t *testing.T, e wire.Exit) wire.Frame { return frame(t, wire.KindExit, e) }
	tests := []struct {
		name       string
		task       *wire.Run
		frames     func(t *testing.T) []wire.Frame
		end        State // the supervisor's own decision, if any
		endReason  string
		waitErr    error
		shutdown   string
		wantState  State
		wantReason string
		wantTask   *TaskResult // ExitCode, TimedOut, Output compared
	}{
		{name: "guest powers off", frames: func(t *testing.T) []wire.Frame { return []wire.Frame{ready(t)} },
			shutdown: "guest-shutdown", wantState: StateStopped, wantReason: "guest powered off"},
		{name: "qemu killed", frames: func(t *testing.T) []wire.Frame { return []wire.Frame{ready(t)} },
			waitErr: errors.New("signal: killed"), wantState: StateFailed, wantReason: "qemu exited: signal: killed: qemu-system-x86_64: terminating on signal 9"},
		{name: "kernel panic", frames: func(t *testing.T) []wire.Frame { return []wire.Frame{ready(t)} },
			shutdown: "guest-reset", wantState: StateFailed, wantReason: "guest reset (kernel panic or reboot)"},
		{name: "never ready", frames: func(*testing.T) []wire.Frame { return nil },
			wantState: StateFailed, wantReason: "guest powered off before it was ready"},
		{name: "boot timeout", frames: func(*testing.T) []wire.Frame { return nil },
			end: StateFailed, endReason: "boot timeout: no ready frame in 1m0s", waitErr: errors.New("signal: killed"),
			wantState: StateFailed, wantReason: "boot timeout: no ready frame in 1m0s"},
		{name: "stop on request", frames: func(t *testing.T) []wire.Frame { return []wire.Frame{ready(t)} },
			end: StateStopped, endReason: "stopped on request", waitErr: errors.New("signal: killed"),
			wantState: StateStopped, wantReason: "stopped on request"},
		{name: "task exit 3", task: task,
			frames: func(t *testing.T) []wire.Frame {
				return []wire.Frame{ready(t), out(t, "hel"), out(t, "lo\n"), exit(t, wire.Exit{Code: 3, DurationMillis: 5})}
			},
			wantState: StateFailed, wantReason: "exit code 3", wantTask: &TaskResult{ExitCode: 3, Output: []byte("hello\n")}},
		{name: "task exit 0", task: task,
			frames: func(t *testing.T) []wire.Frame {
				return []wire.Frame{ready(t), out(t, "ok\n"), exit(t, wire.Exit{Code: 0})}
			},
			wantState: StateStopped, wantReason: "task exited 0", wantTask: &TaskResult{ExitCode: 0, Output: []byte("ok\n")}},
		{name: "task timed out in the guest", task: task,
			frames: func(t *testing.T) []wire.Frame {
				return []wire.Frame{ready(t), exit(t, wire.Exit{Code: -1, TimedOut: true})}
			},
			wantState: StateFailed, wantReason: "timeout", wantTask: &TaskResult{ExitCode: -1, TimedOut: true}},
		{name: "task backstop", task: task,
			frames: func(t *testing.T) []wire.Frame { return []wire.Frame{ready(t), out(t, "partial")} },
			end:    StateFailed, endReason: "timeout", waitErr: errors.New("signal: killed"),
			wantState: StateFailed, wantReason: "timeout", wantTask: &TaskResult{ExitCode: -1, TimedOut: true, Output: []byte("partial")}},
		{name: "task result stands when QEMU is killed after", task: task,
			frames:    func(t *testing.T) []wire.Frame { return []wire.Frame{ready(t), exit(t, wire.Exit{Code: 0})} },
			waitErr:   errors.New("signal: killed"),
			wantState: StateStopped, wantReason: "task exited 0", wantTask: &TaskResult{ExitCode: 0}},
		{name: "task stopped on request", task: task,
			frames: func(t *testing.T) []wire.Frame { return []wire.Frame{ready(t), out(t, "partial")} },
			end:    StateStopped, endReason: "stopped on request", waitErr: nil,
			wantState: StateStopped, wantReason: "stopped on request", wantTask: &TaskResult{ExitCode: -1, Output: []byte("partial")}},
		{name: "task VM powered off early", task: task,
			frames:    func(t *testing.T) []wire.Frame { return []wire.Frame{ready(t)} },
			wantState: StateFailed, wantReason: "guest powered off before the task ended", wantTask: &TaskResult{ExitCode: -1}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tr := newTracker(Status{Name: "vm"}, tt.task)
			tr.text([]byte("[    0.000000] Linux version 6.1.0"))
			now := t0
			for _, f := range tt.frames(t) {
				now = now.Add(time.Millisecond)
				if _, err := tr.frame(f, now); err != nil {
					t.Fatal(err)
				}
			}
			if tt.end != "" {
				tr.end(tt.end, tt.endReason)
				tr.end(StateStopped, "a later decision that must not win")
			}
			st := tr.exited(tt.waitErr, tt.shutdown, "qemu-system-x86_64: terminating on signal 9\n", now.Add(time.Second))
			if st.State != tt.wantState || st.Reason != tt.wantReason {
				t.Fatalf("final %s %q, want %s %q", st.State, st.Reason, tt.wantState, tt.wantReason)
			}
			if (st.State == StateFailed) != strings.Contains(st.ConsoleTail, "Linux version") {
				t.Errorf("console tail %q for a %s VM", st.ConsoleTail, st.State)
			}
			if tt.wantTask == nil {
				if st.Task != nil {
					t.Errorf("task result %+v for a VM without a task", st.Task)
				}
				return
			}
			if st.Task == nil {
				t.Fatal("no task result")
			}
			if st.Task.ExitCode != tt.wantTask.ExitCode || st.Task.TimedOut != tt.wantTask.TimedOut || string(st.Task.Output) != string(tt.wantTask.Output) {
				t.Errorf("task result %+v (output %q), want %+v (output %q)", st.Task, st.Task.Output, tt.wantTask, tt.wantTask.Output)
			}
			if st.Task.Finished.IsZero() || st.Task.Started.After(st.Task.Finished) {
				t.Errorf("task timings %v .. %v", st.Task.Started, st.Task.Finished)
			}
			// Final is final.
			if again := tr.exited(nil, "", "", now.Add(time.Hour)); again.State != st.State || again.Reason != st.Reason {
				t.Errorf("a second exit changed the status to %s %q", again.State, again.Reason)
			}
		})
	}
}

func TestTrackerStates(t *testing.T) {
	tr := newTracker(Status{Name: "vm"}, nil)
	if tr.st.State != StateStarting {
		t.Fatalf("state %s, want starting", tr.st.State)
	}
	hb := frame(t, wire.KindHeartbeat, wire.Heartbeat{Seq: 1})
	if changed, _ := tr.frame(hb, time.Now()); changed {
		t.Error("a heartbeat changed the status")
	}
	ready := frame(t, wire.KindReady, wire.Ready{Version: 1})
	if changed, _ := tr.frame(ready, time.Now()); !changed || tr.st.State != StateRunning || !tr.st.Ready {
		t.Fatalf("after ready: %+v", tr.st)
	}
	if changed, _ := tr.frame(ready, time.Now()); changed {
		t.Error("a second ready frame changed the status")
	}
	if _, err := tr.frame(frame(t, wire.KindExit, wire.Exit{}), time.Now()); err == nil {
		t.Error("an exit frame from a VM without a task was accepted")
	}
}

// A task's output tail holds its last TaskOutputBytes.
func TestTrackerOutputTail(t *testing.T) {
	tr := newTracker(Status{Name: "vm"}, &wire.Run{Command: "yes"})
	chunk := strings.Repeat("y\n", 1000)
	for range 5 {
		tr.frame(frame(t, wire.KindOutput, wire.Output{Stream: "stdout", Data: []byte(chunk)}), time.Now())
	}
	tr.frame(frame(t, wire.KindOutput, wire.Output{Stream: "stderr", Data: []byte("the end\n")}), time.Now())
	tr.frame(frame(t, wire.KindExit, wire.Exit{Code: 0}), time.Now())
	out := tr.st.Task.Output
	if len(out) != TaskOutputBytes || !strings.HasSuffix(string(out), "y\nthe end\n") {
		t.Fatalf("output tail of %d bytes ending %q", len(out), out[max(len(out)-20, 0):])
	}
}

// A task stopped on request ends stopped even if the agent reports the
// killed task's exit before powering off; the exit is still recorded.
func TestTrackerStopBeforeTaskExit(t *testing.T) {
	tr := newTracker(Status{Name: "vm"}, &wire.Run{Command: "sleep"})
	now := time.Now()
	tr.frame(frame(t, wire.KindReady, wire.Ready{Version: 1}), now)
	tr.end(StateStopped, "stopped on request")
	tr.frame(frame(t, wire.KindExit, wire.Exit{Code: 137, Error: "killed"}), now)
	st := tr.exited(nil, "guest-shutdown", "", now)
	if st.State != StateStopped || st.Reason != "stopped on request" || st.Task == nil || st.Task.ExitCode != 137 {
		t.Fatalf("final %s %q, task %+v", st.State, st.Reason, st.Task)
	}
}
