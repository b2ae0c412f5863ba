package guest

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"sync"
	"syscall"
	"time"
)

// reapPollInterval is how often the reaper looks for exited children even
// without a SIGCHLD: a safety net, since a signal may be coalesced with one
// that was being handled.
const reapPollInterval = time.Second

// Reaper waits for every child of the process. As PID 1 the agent inherits
// every orphaned process of the guest, and each becomes a zombie until
// someone waits for it; the Reaper does. Because a wait4(-1) would also take
// the exit status of the agent's own tasks from exec.Cmd.Wait, the Reaper is
// the only waiter: Start starts a command and returns a channel that gets
// its exit status.
//
// Invariant: a process has at most one Reaper, and no other code in it
// calls wait4 (exec.Cmd's Wait, os.Process's Wait) on its children: either
// would take exit statuses from the other.
type Reaper struct {
	mu sync.Mutex
	// waiters maps the pid of a command started by Start to the channel its
	// status goes to (buffered, capacity 1). Guarded by mu, which is also
	// held while a command starts, so its pid is registered before it can
	// be reaped.
	waiters map[int]chan syscall.WaitStatus
	// reaped counts the children reaped that no Start was waiting for.
	reaped uint64
	stop   chan struct{}
	done   chan struct{}
}

// NewReaper starts a goroutine that reaps children when SIGCHLD arrives (and
// every reapPollInterval) until Close.
func NewReaper() *Reaper {
	r := &Reaper{
		waiters: map[int]chan syscall.WaitStatus{},
		stop:    make(chan struct{}),
		done:    make(chan struct{}),
	}
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGCHLD)
	go func() {
		defer close(r.done)
		defer signal.Stop(sig)
		t := time.NewTicker(reapPollInterval)
		defer t.Stop()
		for {
			r.reap()
			select {
			case <-sig:
			case <-t.C:
			case <-r.stop:
				return
			}
		}
	}()
	return r
}

// Close stops the reaper's goroutine. Commands still running are no longer
// waited for.
func (r *Reaper) Close() {
	close(r.stop)
	<-r.done
}

// Start starts cmd and returns a channel that receives its exit status once
// it has exited. The caller must not call cmd.Wait; it should call
// cmd.Process.Release once the status has arrived.
func (r *Reaper) Start(cmd *exec.Cmd) (<-chan syscall.WaitStatus, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	ch := make(chan syscall.WaitStatus, 1)
	r.waiters[cmd.Process.Pid] = ch
	return ch, nil
}

// Orphans returns how many children were reaped that Start had not started.
func (r *Reaper) Orphans() uint64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.reaped
}

// reap waits for every child that has exited, without blocking.
func (r *Reaper) reap() {
	r.mu.Lock()
	defer r.mu.Unlock()
	for {
		var ws syscall.WaitStatus
		pid, err := syscall.Wait4(-1, &ws, syscall.WNOHANG, nil)
		if errors.Is(err, syscall.EINTR) {
			continue
		}
		if err != nil || pid <= 0 {
			// ECHILD: no children; 0: none has exited.
			return
		}
		if ch, ok := r.waiters[pid]; ok {
			delete(r.waiters, pid)
			ch <- ws
			continue
		}
		r.reaped++
	}
}

// exitCode turns a wait status into a shell-style exit code: the process's
// own, or 128+n when signal n killed it; and, for a signal, a description.
func exitCode(ws syscall.WaitStatus) (int, string) {
	switch {
	case ws.Exited():
		return ws.ExitStatus(), ""
	case ws.Signaled():
		return 128 + int(ws.Signal()), fmt.Sprintf("killed by signal %d (%s)", int(ws.Signal()), ws.Signal())
	default:
		return -1, fmt.Sprintf("unexpected wait status %#x", uint32(ws))
	}
}
