package vmm

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
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
		if namesPath(arg, dir) {
			return true
		}
	}
	return false
}

// namesPath reports whether arg holds path as a whole path: followed by
// the end, a '/' or a ',' (QEMU's option lists), so that /d/vms/web is not
// found in /d/vms/web-2.
func namesPath(arg []byte, path string) bool {
	path = strings.TrimSuffix(path, "/")
	for i := 0; ; {
		j := bytes.Index(arg[i:], []byte(path))
		if j < 0 {
			return false
		}
		end := i + j + len(path)
		if end == len(arg) || arg[end] == '/' || arg[end] == ',' {
			return true
		}
		i += j + 1
	}
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

// ProcessesNaming lists the live processes (not zombies), but the calling
// one, whose command line names dir: the supervisors and hypervisors of the
// VMs of a node whose data directory is (or is below) dir. VMs outlive
// their node by design; this is how an operator's tool, a test or a local
// dev cluster finds what is left of them.
func ProcessesNaming(dir string) []int {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return nil
	}
	var pids []int
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == os.Getpid() {
			continue
		}
		if cmdlineNames(pid, dir) {
			pids = append(pids, pid)
		}
	}
	return pids
}
