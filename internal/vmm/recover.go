package vmm

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"slices"
	"strings"

	"github.com/blixard/blixard/internal/guest/wire"
)

// Recover finds the VMs of this node's data directory after a restart
// (DataDir/vms/*/handle.json) and returns their statuses, sorted by name:
//   - a VM whose supervisor still runs is adopted: the manager watches it
//     as if it had started it (its QEMU is untouched, same pid);
//   - a VM that ended while the node was down is reported with its final
//     status;
//   - a VM whose supervisor died without a final status has its QEMU
//     killed, if it still runs and its /proc/<pid>/cmdline names the VM's
//     directory, and is reported failed ("supervisor died...").
//
// Every status also goes to Events. A VM whose handle this build cannot
// read (another version: ErrHandleVersion) is left untouched and named in
// the returned error, which joins every such problem; the statuses of the
// others are returned with it.
func (m *Manager) Recover(ctx context.Context) ([]Status, error) {
	entries, err := os.ReadDir(m.vmsDir)
	if err != nil {
		return nil, fmt.Errorf("recover vms: %w", err)
	}
	var (
		out  []Status
		errs []error
	)
	for _, de := range entries {
		if err := ctx.Err(); err != nil {
			return out, errors.Join(append(errs, fmt.Errorf("recover vms: %w", err))...)
		}
		name := de.Name()
		if !de.IsDir() || !validName(name) {
			continue
		}
		if st, known := m.Status(name); known {
			out = append(out, st)
			continue
		}
		st, ok, err := m.recoverOne(ctx, name)
		if err != nil {
			errs = append(errs, fmt.Errorf("recover vm %s: %w", name, err))
		}
		if ok {
			out = append(out, st)
		}
	}
	slices.SortFunc(out, func(a, b Status) int { return strings.Compare(a.Name, b.Name) })
	return out, errors.Join(errs...)
}

// recoverOne recovers the VM in DataDir/vms/name; ok is false when there
// is nothing to report (no handle, no status).
func (m *Manager) recoverOne(ctx context.Context, name string) (Status, bool, error) {
	dir := m.Dir(name)
	h, herr := readHandle(dir)
	switch {
	case herr == nil:
		if h.Name != name || h.Dir != dir {
			return Status{}, false, fmt.Errorf("handle names vm %q in %s, not this directory", h.Name, h.Dir)
		}
	case errors.Is(herr, ErrHandleVersion):
		return Status{}, false, herr
	case !errors.Is(herr, fs.ErrNotExist):
		return Status{}, false, herr
	}
	disk, serr := readStatus(dir)
	if herr != nil && serr != nil {
		// Neither handle nor status: a directory without a VM.
		return Status{}, false, nil
	}
	// A recovered VM's supervisor, if it runs, is past its start: Renew
	// may call it at once.
	e := &vmEntry{name: name, dir: dir, done: make(chan struct{}), answered: true}
	e.status = disk
	if serr != nil {
		e.status = Status{Name: name, Generation: h.Generation, State: StateStarting, QEMUPid: h.QEMUPid, SupervisorPid: h.SupervisorPid, Accel: h.Accel, Limits: h.Limits, StartedAt: h.StartedAt}
	}
	e.status.State = StateStarting // update moves it on
	m.mu.Lock()
	m.vms[name] = e
	m.mu.Unlock()

	if _, live := liveSupervisor(dir); live {
		callCtx, cancel := context.WithTimeout(ctx, ctlRequestTimeout)
		st, err := ctlCall(callCtx, dir, ctlRequest{Op: opStatus})
		cancel()
		if err == nil {
			m.update(e, st)
		} else if serr == nil {
			m.update(e, disk)
		}
		// The node logs what it found (runtime's recover): debug here.
		m.log.Debug("vm adopted", "vm", name, "qemu_pid", h.QEMUPid, "supervisor_pid", h.SupervisorPid)
		m.startWatch(e)
		st, _ = m.Status(name)
		return st, true, nil
	}
	if serr == nil && disk.State.Final() {
		m.update(e, disk)
		return disk, true, nil
	}
	st := m.supervisorDied(dir)
	m.update(e, st)
	return st, true, nil
}

// consoleTailScan bounds how much of console.log is read for its tail.
const consoleTailScan = 16 << 10

// consoleTail is the last ConsoleTailBytes of console text in the console
// log at path (frames left out).
func consoleTail(path string) string {
	data, err := readTail(path, consoleTailScan)
	if err != nil {
		return ""
	}
	t := newTail(ConsoleTailBytes)
	r := wire.NewReader(bytes.NewReader(data))
	for {
		it, err := r.Next()
		if err != nil {
			break
		}
		if it.Text != nil {
			t.Write(it.Text)
			t.Write([]byte{'\n'})
		}
	}
	return t.String()
}
