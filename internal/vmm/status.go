package vmm

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"
)

// State is where a VM is in its life.
type State string

// The states of a VM. Stopped and failed are final.
const (
	StateStarting State = "starting"
	StateRunning  State = "running"
	StateStopped  State = "stopped"
	StateFailed   State = "failed"
)

// Final reports whether s is a state a VM never leaves.
func (s State) Final() bool { return s == StateStopped || s == StateFailed }

// Status is what the supervisor knows about its VM. It is written to
// DIR/status.json on every change and streamed to watchers.
type Status struct {
	Name       string `json:"name"`
	Generation uint64 `json:"generation"`
	State      State  `json:"state"`
	// Reason says why the VM is in State: for failed, what went wrong
	// ("qemu exited: signal: killed", "boot timeout: no ready frame in 1m0s",
	// "exit code 3", "timeout", "lease expired", "supervisor died"); for
	// stopped, how it ended ("guest powered off", "stopped on request").
	Reason string `json:"reason,omitempty"`
	// ConsoleTail is the last ConsoleTailBytes of console text, set when
	// the VM failed.
	ConsoleTail string `json:"console_tail,omitempty"`
	// Ready: the guest agent's ready frame was seen.
	Ready bool `json:"ready"`
	// Task is set for a task VM once its exit frame came or it timed out.
	Task *TaskResult `json:"task,omitempty"`
	// QEMUPid is the hypervisor's process id; 0 before it started.
	QEMUPid       int `json:"qemu_pid,omitempty"`
	SupervisorPid int `json:"supervisor_pid,omitempty"`
	// Accel is the accelerator the VM runs with: "kvm" or "tcg".
	Accel string `json:"accel,omitempty"`
	// Limits are the cgroup limits applied to the hypervisor.
	Limits Limits `json:"limits"`
	// StartedAt: when the hypervisor process started.
	StartedAt time.Time `json:"started_at,omitzero"`
	// ReadyAt: when the ready frame arrived.
	ReadyAt   time.Time `json:"ready_at,omitzero"`
	UpdatedAt time.Time `json:"updated_at"`
}

// TaskResult is how a task VM's task ended.
type TaskResult struct {
	// ExitCode is the task's exit code; -1 when it has none (timed out
	// on the host's backstop, could not run).
	ExitCode int  `json:"exit_code"`
	TimedOut bool `json:"timed_out,omitempty"`
	// Error: the task could not run or was killed, and why.
	Error string `json:"error,omitempty"`
	// Output is the last TaskOutputBytes of the task's stdout and stderr,
	// interleaved as they came.
	Output   []byte    `json:"output,omitempty"`
	Started  time.Time `json:"started,omitzero"`
	Finished time.Time `json:"finished,omitzero"`
}

// Limits are the cgroup limits a VM's hypervisor runs under. A zero field
// was not applied.
type Limits struct {
	// Cgroup is "v1" or "v2", or "" when no limit could be applied.
	Cgroup string `json:"cgroup,omitempty"`
	// CPUQuotaMicros per CPUPeriodMicros of CPU time.
	CPUQuotaMicros  int64 `json:"cpu_quota_us,omitempty"`
	CPUPeriodMicros int64 `json:"cpu_period_us,omitempty"`
	MemoryBytes     int64 `json:"memory_bytes,omitempty"`
	// Dirs are the cgroup directories created for the VM, removed when it
	// ends.
	Dirs []string `json:"dirs,omitempty"`
	// Warning says why a limit is missing.
	Warning string `json:"warning,omitempty"`
}

// Bounds of what a status carries.
const (
	// ConsoleTailBytes of console text are kept for Status.ConsoleTail.
	ConsoleTailBytes = 2048
	// TaskOutputBytes of a task's output are kept for TaskResult.Output.
	TaskOutputBytes = 4096
)

const statusFile = "status.json"

// writeFileAtomic writes data to path so that a reader sees the old or the
// new content, never a mix: a temporary file in the same directory, synced,
// then renamed over path.
func writeFileAtomic(path string, data []byte) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp*")
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	_, err = tmp.Write(data)
	if err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp.Name(), path)
	}
	if err != nil {
		_ = os.Remove(tmp.Name())
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}

// writeStatus writes s to dir/status.json atomically.
func writeStatus(dir string, s Status) error {
	data, err := json.MarshalIndent(s, "", "  ")
	if err != nil {
		return fmt.Errorf("encode status of %s: %w", s.Name, err)
	}
	return writeFileAtomic(filepath.Join(dir, statusFile), append(data, '\n'))
}

// readStatus reads dir/status.json; the error wraps fs.ErrNotExist when there
// is none.
func readStatus(dir string) (Status, error) {
	var s Status
	data, err := os.ReadFile(filepath.Join(dir, statusFile))
	if err != nil {
		return s, fmt.Errorf("read status: %w", err)
	}
	if err := json.Unmarshal(data, &s); err != nil {
		return s, fmt.Errorf("read status %s: %w", filepath.Join(dir, statusFile), err)
	}
	if s.State == "" {
		return s, errors.New("read status " + filepath.Join(dir, statusFile) + ": no state")
	}
	return s, nil
}
