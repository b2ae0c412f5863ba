package vmm

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"strconv"
	"syscall"
	"time"
	"unsafe"
)

// procState returns the state letter of process pid from /proc/<pid>/stat
// ('R', 'S', 'Z', ...), or 0 if there is no such process.
func procState(pid int) byte {
	data, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0
	}
	// pid (comm) S ...: comm may hold spaces and parentheses; the state
	// follows the last ')'.
	i := bytes.LastIndexByte(data, ')')
	if i < 0 || i+2 >= len(data) {
		return 0
	}
	return data[i+2]
}

// processAlive reports whether pid is a process that has not exited (a
// zombie has).
func processAlive(pid int) bool {
	if pid <= 0 {
		return false
	}
	s := procState(pid)
	return s != 0 && s != 'Z' && s != 'X'
}

// cmdlineNames reports whether process pid is alive and one of its
// command-line arguments contains dir: how a VM's processes are told from
// unrelated ones that reuse a recorded pid.
func cmdlineNames(pid int, dir string) bool {
	if !processAlive(pid) {
		return false
	}
	data, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/cmdline")
	if err != nil {
		return false
	}
	for _, arg := range bytes.Split(data, []byte{0}) {
		if bytes.Contains(arg, []byte(dir)) {
			return true
		}
	}
	return false
}

// killProcessGroup sends SIGKILL to the process group led by pid (the
// hypervisor runs as the leader of its own group), and to pid itself in
// case it is not a group leader.
func killProcessGroup(pid int) error {
	errGroup := syscall.Kill(-pid, syscall.SIGKILL)
	errPid := syscall.Kill(pid, syscall.SIGKILL)
	if errPid != nil && !errors.Is(errPid, syscall.ESRCH) {
		return fmt.Errorf("kill %d: %w", pid, errPid)
	}
	if errPid != nil && errGroup != nil {
		return fmt.Errorf("kill %d: %w", pid, errPid)
	}
	return nil
}

// waitGone polls until process pid has exited or ctx ends.
func waitGone(ctx context.Context, pid int) error {
	const pollEvery = 20 * time.Millisecond
	for processAlive(pid) {
		select {
		case <-ctx.Done():
			return fmt.Errorf("process %d still running: %w", pid, ctx.Err())
		case <-time.After(pollEvery):
		}
	}
	return nil
}

// clockMonotonic is Linux's CLOCK_MONOTONIC.
const clockMonotonic = 1

// monoNow reads CLOCK_MONOTONIC in nanoseconds: one clock for every process
// on the machine (unlike a time.Time's monotonic reading, which is private to
// its process), that no one can set. Lease deadlines travel in it.
func monoNow() int64 {
	var ts syscall.Timespec
	if _, _, errno := syscall.Syscall(syscall.SYS_CLOCK_GETTIME, clockMonotonic, uintptr(unsafe.Pointer(&ts)), 0); errno != 0 {
		panic("clock_gettime(CLOCK_MONOTONIC): " + errno.Error())
	}
	return ts.Nano()
}

// monoAt converts a local time (with its monotonic reading) into a
// CLOCK_MONOTONIC instant.
func monoAt(t time.Time) int64 {
	return monoNow() + int64(time.Until(t))
}
