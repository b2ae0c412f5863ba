package sim

import (
	"fmt"
	"maps"
	"slices"
	"time"

	apiv1 "github.com/blixard/blixard/api/v1"
	"github.com/blixard/blixard/internal/core"
)

// Simulated guests. A task VM's command decides how it goes:
//
//   - TaskExitOK ("true"): exits 0 after a short run.
//   - TaskExitFail ("false"): exits 1.
//   - TaskHang ("hang"): never ends on its own; the task's timeout kills it.
//
// Any other command exits 0.
const (
	TaskExitOK   = "true"
	TaskExitFail = "false"
	TaskHang     = "hang"
)

// SimVM is one VM as a node's simulated hypervisor runs it.
type SimVM struct {
	Name       string
	Generation uint64
	State      apiv1.VmState
	Reason     string
	// Starts counts how many times this name was started on this node.
	Starts int
	need   *apiv1.Resources
	task   *apiv1.Task
	result *apiv1.TaskResult
	// policy is the VM's restart policy (VMs only).
	policy apiv1.RestartPolicy
	// seq voids events scheduled for an earlier life of this VM.
	seq uint64
	// life is this run's entry in the world's record of VM lives.
	life *VMLife
}

// VMLife is one run of a VM (or a task's VM) on one node's hypervisor,
// from its start to its end, in virtual time: what the vm-once checker
// looks at, kept for scenarios that assert the order of events.
type VMLife struct {
	Name       string
	Node       uint64
	Generation uint64
	// Start is when the hypervisor began to boot it; Running when it
	// reported it running (0 if it never did).
	Start, Running time.Duration
	// Ended is set once it stopped or failed, at End, for Reason.
	Ended  bool
	End    time.Duration
	Reason string
}

// VMLives returns every run of VM name on any node so far, in the order
// they started.
func (w *World) VMLives(name string) []VMLife {
	var out []VMLife
	for _, l := range w.lives[name] {
		out = append(out, *l)
	}
	return out
}

// Ended reports whether the VM has stopped or failed.
func (v *SimVM) Ended() bool {
	return v.State == apiv1.VmState_VM_STATE_STOPPED || v.State == apiv1.VmState_VM_STATE_FAILED
}

// hypervisor is a node's simulated VMM. It carries out the agent's
// VMActions in virtual time, as the runtime does through vmm, and its VMs
// outlive the node's crashes (QEMU outlives blixard under its supervisor):
// a restarted node is told what runs through VMsRecovered.
type hypervisor struct {
	n   *Node
	vms map[string]*SimVM
	// dropStops: the next this many stops fail on the way (the driver
	// never carries them out), as a stop whose control socket broke.
	dropStops int
	// leaseUntil is the fencing lease the node last renewed, on the node's
	// clock: the simulated supervisors kill every VM when the clock passes
	// it, whether or not the node is up — as vmm's supervisors do.
	leaseUntil time.Time
}

// renew extends the VMs' lease to until (never shortens it) and arms its
// expiry.
func (h *hypervisor) renew(until time.Time) {
	if !until.After(h.leaseUntil) {
		return
	}
	h.leaseUntil = until
	n := h.n
	// The virtual instant at which the node's drifted, skewed clock reads
	// until (rounded down: the kill is never late).
	at := time.Duration(float64(until.Sub(epoch)-n.skew) / (1 + n.drift))
	n.w.at(max(at, n.w.now), func() {
		if !h.leaseUntil.Equal(until) {
			return // renewed since
		}
		h.expire()
	})
}

// expire kills every VM still running: the lease ran out.
func (h *hypervisor) expire() {
	for _, name := range slices.Sorted(maps.Keys(h.vms)) {
		if v := h.vms[name]; !v.Ended() {
			h.n.w.tracef("node %d vmm: %s lease expired", h.n.id, name)
			h.fail(name, "lease expired")
		}
	}
	h.check()
}

func newHypervisor(n *Node) *hypervisor {
	return &hypervisor{n: n, vms: map[string]*SimVM{}}
}

// recovered is what the node finds at boot.
func (h *hypervisor) recovered() []core.VMReport {
	var out []core.VMReport
	for _, name := range slices.Sorted(maps.Keys(h.vms)) {
		out = append(out, h.reportOf(h.vms[name]))
	}
	return out
}

func (h *hypervisor) reportOf(v *SimVM) core.VMReport {
	return core.VMReport{Name: v.Name, Generation: v.Generation, State: v.State, Reason: v.Reason, Task: v.result}
}

// carry out the agent's actions of one Ready.
func (h *hypervisor) carry(actions []core.VMAction) {
	w := h.n.w
	for _, a := range actions {
		w.tracef("node %d vmm: %s %s generation %d", h.n.id, a.Kind, a.Name, a.Generation)
		switch a.Kind {
		case core.StartVM:
			h.start(a)
		case core.StopVM:
			h.stop(a)
		case core.RemoveVM:
			v, ok := h.vms[a.Name]
			if ok && !v.Ended() {
				w.fail(fmt.Errorf("node %d removed VM %s while it runs", h.n.id, a.Name))
				return
			}
			delete(h.vms, a.Name)
		}
	}
	h.check()
}

func (h *hypervisor) start(a core.VMAction) {
	w := h.n.w
	if v, ok := h.vms[a.Name]; ok && !v.Ended() {
		w.fail(fmt.Errorf("node %d started VM %s generation %d while generation %d runs", h.n.id, a.Name, a.Generation, v.Generation))
		return
	}
	if h.n.clock().After(h.leaseUntil) {
		// The supervisor starts with the node's lease, already over.
		h.report(&SimVM{Name: a.Name, Generation: a.Generation, State: apiv1.VmState_VM_STATE_FAILED, Reason: "lease expired before start"})
		return
	}
	v := &SimVM{Name: a.Name, Generation: a.Generation, State: apiv1.VmState_VM_STATE_STARTING, Reason: "booting", task: a.Task}
	if old, ok := h.vms[a.Name]; ok {
		v.Starts, v.seq = old.Starts, old.seq
	}
	v.Starts++
	v.seq++
	switch {
	case a.Vm != nil:
		v.need = &apiv1.Resources{Vcpus: a.Vm.GetSpec().GetVcpus(), MemoryMib: a.Vm.GetSpec().GetMemoryMib()}
	case a.Task != nil:
		v.need = a.Task.GetSpec().GetResources()
	}
	if a.Vm != nil {
		v.policy = a.Vm.GetSpec().GetRestartPolicy()
	}
	h.vms[a.Name] = v
	v.life = &VMLife{Name: a.Name, Node: h.n.id, Generation: a.Generation, Start: w.now}
	w.lives[a.Name] = append(w.lives[a.Name], v.life)
	h.report(v)
	boot := 300*time.Millisecond + time.Duration(w.rng.Int64N(int64(1200*time.Millisecond)))
	h.later(v, boot, func() {
		v.State, v.Reason = apiv1.VmState_VM_STATE_RUNNING, "agent ready"
		h.report(v)
		if v.task != nil {
			h.runTask(v)
		}
	})
}

func (h *hypervisor) runTask(v *SimVM) {
	w := h.n.w
	started := h.n.clock().UnixNano()
	spec := v.task.GetSpec()
	if timeout := time.Duration(spec.GetTimeoutMs()) * time.Millisecond; timeout > 0 {
		h.later(v, timeout, func() {
			v.result = &apiv1.TaskResult{ExitCode: -1, StartedUnixNano: started, FinishedUnixNano: h.n.clock().UnixNano(), Error: "timeout"}
			v.State, v.Reason = apiv1.VmState_VM_STATE_FAILED, "timeout"
			h.report(v)
		})
	}
	if spec.GetCommand() == TaskHang {
		return
	}
	run := 50*time.Millisecond + time.Duration(w.rng.Int64N(int64(500*time.Millisecond)))
	h.later(v, run, func() {
		code := int32(0)
		if spec.GetCommand() == TaskExitFail {
			code = 1
		}
		v.result = &apiv1.TaskResult{ExitCode: code, OutputTail: []byte("ran " + spec.GetCommand() + "\n"), StartedUnixNano: started, FinishedUnixNano: h.n.clock().UnixNano()}
		if code == 0 {
			v.State, v.Reason = apiv1.VmState_VM_STATE_STOPPED, "task exited with code 0"
		} else {
			v.State, v.Reason = apiv1.VmState_VM_STATE_FAILED, fmt.Sprintf("exit code %d", code)
		}
		h.report(v)
	})
}

func (h *hypervisor) stop(a core.VMAction) {
	if h.dropStops > 0 {
		h.dropStops--
		h.n.w.tracef("node %d vmm: the stop of %s failed on the way", h.n.id, a.Name)
		return
	}
	v, ok := h.vms[a.Name]
	if !ok || v.Generation != a.Generation || v.Ended() {
		return
	}
	grace := 50*time.Millisecond + time.Duration(h.n.w.rng.Int64N(int64(250*time.Millisecond)))
	h.later(v, grace, func() {
		v.State, v.Reason = apiv1.VmState_VM_STATE_STOPPED, "stopped"
		h.report(v)
	})
}

// fail kills a running VM from outside (the hypervisor process died).
func (h *hypervisor) fail(name, reason string) bool {
	v, ok := h.vms[name]
	if !ok || v.Ended() {
		return false
	}
	v.seq++
	v.State, v.Reason = apiv1.VmState_VM_STATE_FAILED, reason
	h.report(v)
	return true
}

// later runs fn after d unless the VM ended or was started again since.
func (h *hypervisor) later(v *SimVM, d time.Duration, fn func()) {
	seq := v.seq
	h.n.w.at(h.n.w.now+d, func() {
		if v.seq != seq || v.Ended() || h.vms[v.Name] != v {
			return
		}
		fn()
		h.check()
	})
}

// report hands the VM's state to the node, if it is up to hear it.
func (h *hypervisor) report(v *SimVM) {
	h.n.w.tracef("node %d vmm: %s generation %d %s (%s)", h.n.id, v.Name, v.Generation, v.State, v.Reason)
	if l := v.life; l != nil {
		switch {
		case v.Ended() && !l.Ended:
			l.Ended, l.End, l.Reason = true, h.n.w.now, v.Reason
		case v.State == apiv1.VmState_VM_STATE_RUNNING && l.Running == 0:
			l.Running = h.n.w.now
		}
	}
	h.n.w.hashBytes(8, []byte(fmt.Sprintf("%d/%s/%d/%d", h.n.id, v.Name, v.Generation, v.State)))
	r := h.reportOf(v)
	inc := h.n.incarnation
	// As an event of its own: a report never reaches a node in the middle
	// of a Ready.
	h.n.w.at(h.n.w.now, func() { h.n.deliver(inc, func() { h.n.core.ReportVM(r) }) })
}

// check runs the hypervisor checkers (vm-once and capacity, in
// check_workloads.go) after a change.
func (h *hypervisor) check() { h.n.w.checkHypervisors() }

// SimVMs returns copies of what node id's simulated hypervisor holds,
// sorted by name.
func (w *World) SimVMs(id uint64) []SimVM {
	hv := w.nodes[id].hyper
	var out []SimVM
	for _, name := range slices.Sorted(maps.Keys(hv.vms)) {
		out = append(out, *hv.vms[name])
	}
	return out
}

// FailVM kills VM name on node id from outside, as if its hypervisor
// process died. It reports whether such a VM was running.
func (w *World) FailVM(id uint64, name, reason string) bool {
	w.note("node %d vmm: VM %s killed (%s)", id, name, reason)
	return w.nodes[id].hyper.fail(name, reason)
}

// DropStops makes the next count stops that node id's hypervisor is asked
// for fail on the way: the agent must ask again.
func (w *World) DropStops(id uint64, count int) {
	w.nodes[id].hyper.dropStops = count
}
