package vmm

import (
	"fmt"
	"strings"
	"time"

	"github.com/blixard/blixard/internal/guest/wire"
)

// tracker is a VM's state as the supervisor sees it: it takes what comes
// out of the console and how the hypervisor ended, and decides the VM's
// Status. It does no I/O and reads no clock (times are passed in), so its
// rules are tested without a VM.
type tracker struct {
	st   Status
	task *wire.Run
	// console keeps the last console text, for Status.ConsoleTail.
	console *tail
	// output keeps the last task output, for TaskResult.Output.
	output *tail
	// exit is the task's exit frame, once it came.
	exit *wire.Exit
	// endState and endReason: the supervisor ended the VM itself (a stop
	// or kill asked by the node, a timeout, the lease) and this is the
	// outcome to report once the hypervisor is gone; endState is "" until then.
	endState  State
	endReason string
	// endBeforeExit: the supervisor decided to end the VM before the
	// task's exit frame came; that decision, not the task's exit, is the
	// outcome (a task stopped on request ends stopped).
	endBeforeExit bool
}

func newTracker(st Status, task *wire.Run) *tracker {
	st.State = StateStarting
	return &tracker{st: st, task: task, console: newTail(ConsoleTailBytes), output: newTail(TaskOutputBytes)}
}

// text records a line of console text.
func (t *tracker) text(line []byte) {
	t.console.Write(line)
	t.console.Write([]byte{'\n'})
}

// frame applies a frame from the agent. It reports whether the status
// changed.
func (t *tracker) frame(f wire.Frame, now time.Time) (changed bool, err error) {
	if t.st.State.Final() {
		return false, nil
	}
	switch f.Kind {
	case wire.KindReady:
		var r wire.Ready
		if err := f.Decode(&r); err != nil {
			return false, err
		}
		if t.st.Ready {
			return false, nil
		}
		t.st.Ready, t.st.ReadyAt = true, now
		t.st.State = StateRunning
		return true, nil
	case wire.KindOutput:
		var o wire.Output
		if err := f.Decode(&o); err != nil {
			return false, err
		}
		t.output.Write(o.Data)
		return false, nil
	case wire.KindExit:
		var e wire.Exit
		if err := f.Decode(&e); err != nil {
			return false, err
		}
		if t.task == nil || t.exit != nil {
			return false, fmt.Errorf("unexpected exit frame (task VM: %v, exit seen: %v)", t.task != nil, t.exit != nil)
		}
		t.exit = &e
		started := t.st.ReadyAt
		if e.DurationMillis > 0 {
			started = now.Add(-time.Duration(e.DurationMillis) * time.Millisecond)
		}
		t.st.Task = &TaskResult{
			ExitCode: e.Code,
			TimedOut: e.TimedOut,
			Error:    e.Error,
			Output:   t.output.Bytes(),
			Started:  started,
			Finished: now,
		}
		return true, nil
	}
	// Heartbeats and kinds this host does not know change nothing.
	return false, nil
}

// taskEnded reports whether the task VM's task has ended (its exit frame
// came).
func (t *tracker) taskEnded() bool { return t.exit != nil }

// end records that the supervisor is ending the VM and what to report once
// the hypervisor is gone. The first decision stands: a stop asked after a
// boot timeout was decided does not turn the failure into a stop.
func (t *tracker) end(state State, reason string) {
	if t.endState != "" || t.st.State.Final() {
		return
	}
	t.endState, t.endReason = state, reason
	t.endBeforeExit = t.exit == nil
}

// exited decides the final status once the hypervisor is gone. waitErr is
// how the process ended (nil: status 0); shutdown is the hypervisor's last
// reported shutdown reason; stderr is the end of what it printed.
func (t *tracker) exited(waitErr error, shutdown, stderr string, now time.Time) Status {
	if t.st.State.Final() {
		return t.st
	}
	state, reason := t.finalOutcome(waitErr, shutdown, stderr)
	t.st.State, t.st.Reason = state, reason
	if t.task != nil && t.st.Task == nil {
		// The task never reported its end: its result is the VM's.
		t.st.Task = &TaskResult{
			ExitCode: -1,
			TimedOut: reason == "timeout",
			Error:    reason,
			Output:   t.output.Bytes(),
			Started:  t.st.ReadyAt,
			Finished: now,
		}
	}
	if state == StateFailed {
		t.st.ConsoleTail = t.console.String()
	}
	return t.st
}

func (t *tracker) finalOutcome(waitErr error, shutdown, stderr string) (State, string) {
	if e := t.exit; e != nil && !(t.endState != "" && t.endBeforeExit) {
		// The task's result decides, whatever became of the VM after.
		switch {
		case e.TimedOut:
			return StateFailed, "timeout"
		case e.Code != 0:
			return StateFailed, fmt.Sprintf("exit code %d", e.Code)
		case e.Error != "":
			return StateFailed, "task error: " + e.Error
		}
		return StateStopped, "task exited 0"
	}
	if t.endState != "" {
		return t.endState, t.endReason
	}
	if waitErr != nil {
		reason := "qemu exited: " + waitErr.Error()
		if last := lastLine(stderr); last != "" {
			reason += ": " + last
		}
		return StateFailed, reason
	}
	switch {
	case shutdown == "guest-reset":
		// -no-reboot turns a reboot into QEMU's exit; the kernel reboots
		// on a panic (panic=-1), e.g. when init dies.
		return StateFailed, "guest reset (kernel panic or reboot)"
	case t.task != nil:
		return StateFailed, "guest powered off before the task ended"
	case !t.st.Ready:
		return StateFailed, "guest powered off before it was ready"
	}
	return StateStopped, "guest powered off"
}

// lastLine is the last non-empty line of s.
func lastLine(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return strings.TrimSpace(lines[len(lines)-1])
}
