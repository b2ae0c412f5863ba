package runtime

import (
	"errors"
	"log/slog"

	"github.com/blixard/blixard/internal/vmm"
)

// vmNote is what this node's log last said of one VM generation: its
// fate, and whether its stop was said to begin and to fail. Guarded by
// workloads.mu.
type vmNote struct {
	generation uint64
	fate       vmFate
	stopping   bool
	stopFailed bool
}

// vmFate is what "VM state changed" tells of a VM: a line each time it
// changes. Statuses also change with the console's tail and their time,
// which are not news.
type vmFate struct {
	state     vmm.State
	reason    string
	taskEnded bool
	exitCode  int
}

func fateOf(st vmm.Status) vmFate {
	f := vmFate{state: st.State, reason: st.Reason}
	if t := st.Task; t != nil {
		f.taskEnded, f.exitCode = true, t.ExitCode
	}
	return f
}

// fateAttrs are the attributes of a "VM state changed" line.
func fateAttrs(st vmm.Status) []any {
	out := []any{"vm", st.Name, "generation", st.Generation, "state", st.State}
	if st.Reason != "" {
		out = append(out, "reason", st.Reason)
	}
	if t := st.Task; t != nil {
		out = append(out, "exit_code", t.ExitCode)
		if t.Error != "" {
			out = append(out, "task_error", t.Error)
		}
	}
	return out
}

// note returns the note of VM name's generation: a new one when the last
// was of another generation. The caller holds wl.mu.
func (wl *workloads) note(name string, generation uint64) *vmNote {
	n, ok := wl.notes[name]
	if !ok || n.generation != generation {
		n = &vmNote{generation: generation}
		wl.notes[name] = n
	}
	return n
}

// fateChanged records st's fate and reports whether it differs from the
// one last recorded for that VM generation.
func (wl *workloads) fateChanged(st vmm.Status) bool {
	wl.mu.Lock()
	defer wl.mu.Unlock()
	n := wl.note(st.Name, st.Generation)
	f := fateOf(st)
	if n.fate == f {
		return false
	}
	n.fate = f
	return true
}

// noteStop records that a stop of VM name's generation was tried (failed:
// and did not end it); it reports whether it is the first such for that
// generation.
func (wl *workloads) noteStop(name string, generation uint64, failed bool) bool {
	wl.mu.Lock()
	defer wl.mu.Unlock()
	n := wl.note(name, generation)
	said := &n.stopping
	if failed {
		said = &n.stopFailed
	}
	first := !*said
	*said = true
	return first
}

// forget drops what the log said of VM name, whose files are gone.
func (wl *workloads) forget(name string) {
	wl.mu.Lock()
	defer wl.mu.Unlock()
	delete(wl.notes, name)
}

// renewals follows, per VM, whether its fencing lease renewals fail: an
// entry per VM that failed its last renewal.
type renewals map[string]*streak

// take logs one round of renewals. failed are the VMs whose supervisor
// could not be reached; live reports whether a VM still runs here. A VM
// that starts failing is a warning, one that goes on failing a debug
// line, one that works again an info line; one that has ended meanwhile
// is forgotten.
func (r renewals) take(log *slog.Logger, failed map[string]error, live func(name string) bool) {
	for _, name := range sortedNames(failed) {
		s := r[name]
		if s == nil {
			s = &streak{}
			r[name] = s
		}
		err := failed[name]
		if first, _ := s.fail(err); first {
			log.Warn("cannot renew the VM's fencing lease: its supervisor does not answer, and kills the VM if no renewal reaches it in time",
				"vm", name, "err", err)
		} else {
			log.Debug("renewing the VM's fencing lease still fails", "vm", name, "failures", s.failures, "err", err)
		}
	}
	for _, name := range sortedNames(r) {
		if _, still := failed[name]; still {
			continue
		}
		failures := r[name].failures
		delete(r, name)
		if live(name) {
			log.Info("renewing the VM's fencing lease works again", "vm", name, "failures", failures)
		} else {
			log.Debug("no longer renewing the lease of a VM that has ended", "vm", name)
		}
	}
}

// renewFailures are the VMs vmm.Manager.Renew's error names, each with its
// error; an error that names no VM is under "".
func renewFailures(err error) map[string]error {
	if err == nil {
		return nil
	}
	errs := []error{err}
	if joined, ok := err.(interface{ Unwrap() []error }); ok {
		errs = joined.Unwrap()
	}
	out := make(map[string]error, len(errs))
	for _, e := range errs {
		var re *vmm.RenewError
		if errors.As(e, &re) {
			out[re.VM] = re.Err
		} else {
			out[""] = errors.Join(out[""], e)
		}
	}
	return out
}
