package core

import (
	"strconv"
	"strings"
	"unicode/utf8"

	"google.golang.org/protobuf/proto"

	apiv1 "github.com/blixard/blixard/api/v1"
	"github.com/blixard/blixard/internal/state"
)

// VMActionKind says what a VMAction asks of the driver.
type VMActionKind int

const (
	// StartVM: boot the VM (or the task's VM) at this generation.
	StartVM VMActionKind = iota + 1
	// StopVM: stop it (gracefully, then harder; see vmm).
	StopVM
	// RemoveVM: it has ended and is no longer wanted here: delete its files.
	RemoveVM
)

func (k VMActionKind) String() string {
	switch k {
	case StartVM:
		return "start"
	case StopVM:
		return "stop"
	case RemoveVM:
		return "remove"
	}
	return "VMActionKind(" + strconv.Itoa(int(k)) + ")"
}

// VMAction is an effect of the node agent: something to do to a VM that this
// node runs. The driver carries it out and reports what happens with
// ReportVM.
type VMAction struct {
	Kind VMActionKind
	// Name is the VM's name in the driver: the VM's own name, or
	// TaskVMName(id) for a task.
	Name string
	// Generation is the VM's generation, or the task's attempt.
	Generation uint64
	// Vm is a copy of the VM's record (StartVM of a VM).
	Vm *apiv1.Vm
	// Task is a copy of the task's record (StartVM of a task).
	Task *apiv1.Task
}

// VMReport is what the driver saw of a VM it runs: an event into the core.
type VMReport struct {
	Name       string
	Generation uint64
	// State is STARTING, RUNNING, STOPPED or FAILED.
	State       apiv1.VmState
	Reason      string
	ConsoleTail string
	// Task is how a task's command ended (task VMs that ended only).
	Task *apiv1.TaskResult
}

// taskVMPrefix starts the driver name of a task's VM. VM names cannot hold
// a '.', so no VM's name can be a task's.
const taskVMPrefix = "task."

// TaskVMName is the driver's name of task id's VM.
func TaskVMName(id uint64) string { return taskVMPrefix + strconv.FormatUint(id, 10) }

// taskOf returns the task id of a task VM's driver name.
func taskOf(name string) (uint64, bool) {
	rest, ok := strings.CutPrefix(name, taskVMPrefix)
	if !ok {
		return 0, false
	}
	id, err := strconv.ParseUint(rest, 10, 64)
	return id, err == nil
}

// localVM is what the agent knows of one VM on this node.
type localVM struct {
	gen uint64
	// observed is the driver's last report: 0 until it reports.
	observed    apiv1.VmState
	reason      string
	consoleTail string
	task        *apiv1.TaskResult
	stopSent    bool
	stopAt      uint64 // tick of the last StopVM
	// fence is why the agent stopped the VM when its lease lapsed; the
	// end is reported as a failure with this reason.
	fence string
	// lastReport is the report last proposed and the tick it was.
	lastReport   string
	lastReportAt uint64
}

func (l *localVM) ended() bool {
	return l.observed == apiv1.VmState_VM_STATE_STOPPED || l.observed == apiv1.VmState_VM_STATE_FAILED
}

// VMsRecovered tells the agent what the driver found running (or ended)
// when the node started: until it is called the agent starts and stops
// nothing, so that it never mistakes a VM it left running for one that is
// gone. Call it once, before or after the first Tick.
func (n *Node) VMsRecovered(reports []VMReport) {
	n.mustNotBeInReady("VMsRecovered")
	for _, r := range reports {
		if r.Name == "" {
			continue
		}
		n.local[r.Name] = &localVM{gen: r.Generation, observed: r.State, reason: r.Reason, consoleTail: r.ConsoleTail, task: r.Task}
	}
	n.agentReady = true
	n.reconcile()
}

// ReportVM hands the agent what the driver saw of a VM. Reports of VMs the
// agent does not know, or of an older generation, are ignored.
func (n *Node) ReportVM(r VMReport) {
	n.mustNotBeInReady("ReportVM")
	l, ok := n.local[r.Name]
	if !ok || r.Generation != l.gen {
		return
	}
	if l.ended() {
		return // an end is final
	}
	l.observed, l.reason, l.consoleTail = r.State, r.Reason, r.ConsoleTail
	if l.fence != "" && l.ended() {
		l.observed, l.reason = apiv1.VmState_VM_STATE_FAILED, l.fence
	}
	if r.Task != nil {
		l.task = r.Task
	}
	n.reconcile()
}

// wanted is what the applied state asks of one VM on this node.
type wanted struct {
	gen     uint64
	running bool
	vm      *apiv1.Vm
	task    *apiv1.Task
}

// reconcile compares what the state wants of this node with what the agent
// knows runs here, emits the actions that close the gap, and proposes what
// the driver reported and the state does not show yet. On the leader it
// also places workloads that wait for a node.
func (n *Node) reconcile() {
	if !n.cfg.Workloads || n.st.Removed(n.cfg.ID) {
		return
	}
	if n.isLeader {
		n.place()
	}
	if !n.agentReady {
		return
	}
	if !n.agentSettled {
		// A node that has just started may hold a state still replaying
		// its log, or one the cluster has moved on from: it neither starts
		// nor stops anything until it has caught up once.
		if !n.settled() {
			return
		}
		n.agentSettled = true
	}
	// Without a lease this node starts nothing; once its lease has lapsed
	// it stops everything it runs (see health.go).
	canStart := n.canStart()
	if n.fenced() {
		for _, name := range sortedKeys(n.local) {
			if l := n.local[name]; !l.ended() {
				if l.fence == "" {
					l.fence = "fenced: node " + strconv.FormatUint(n.cfg.ID, 10) + " heard from no quorum for its lease period"
				}
				n.stop(name, l)
			}
		}
	}
	want := map[string]wanted{}
	for _, v := range n.st.VmsOn(n.cfg.ID) {
		run := v.GetDesiredState() == apiv1.VmDesiredState_VM_DESIRED_STATE_RUNNING && v.GetState() != apiv1.VmState_VM_STATE_STOPPING
		want[v.GetName()] = wanted{gen: v.GetGeneration(), running: run, vm: v}
	}
	for _, t := range n.st.TasksOn(n.cfg.ID) {
		run := t.GetStatus() == apiv1.TaskStatus_TASK_STATUS_ASSIGNED || t.GetStatus() == apiv1.TaskStatus_TASK_STATUS_RUNNING
		want[TaskVMName(t.GetId())] = wanted{gen: uint64(t.GetAttempt()), running: run, task: t}
	}
	for _, name := range sortedKeys(want) {
		w := want[name]
		l, ok := n.local[name]
		switch {
		case !ok && w.running:
			if !canStart {
				continue
			}
			n.local[name] = &localVM{gen: w.gen}
			n.act(VMAction{Kind: StartVM, Name: name, Generation: w.gen, Vm: cloneVm(w.vm), Task: cloneTask(w.task)})
		case !ok:
			// Wanted stopped and not here (never started, or gone while
			// the node was down): it is stopped as far as this node knows.
			n.local[name] = &localVM{gen: w.gen, observed: apiv1.VmState_VM_STATE_STOPPED, reason: "not running on this node"}
		case l.gen != w.gen:
			// A newer generation is placed here: the old one ends first.
			if !l.ended() {
				n.stop(name, l)
				continue
			}
			if w.running {
				if !canStart {
					continue
				}
				n.local[name] = &localVM{gen: w.gen}
				n.act(VMAction{Kind: StartVM, Name: name, Generation: w.gen, Vm: cloneVm(w.vm), Task: cloneTask(w.task)})
			} else {
				n.local[name] = &localVM{gen: w.gen, observed: apiv1.VmState_VM_STATE_STOPPED, reason: "not running on this node"}
			}
		case !w.running && !l.ended():
			n.stop(name, l)
		}
	}
	for _, name := range sortedKeys(n.local) {
		l := n.local[name]
		if _, ok := want[name]; ok {
			n.report(name, l)
			continue
		}
		// Not wanted here any more: stop it; once it has ended, forget it
		// (and its files, unless its record still shows it stopped here).
		switch {
		case !l.ended():
			n.stop(name, l)
			n.report(name, l)
		case n.keepFiles(name, l):
		default:
			delete(n.local, name)
			n.act(VMAction{Kind: RemoveVM, Name: name, Generation: l.gen})
		}
	}
}

// settled reports whether this node's state is as current as the cluster's
// as far as it can tell: a leader has been known for an election timeout
// and everything raft knows committed is applied.
func (n *Node) settled() bool {
	return n.lead != 0 && n.ticks >= n.leaderSeenAt+uint64(n.cfg.ElectionTicks) && n.st.AppliedIndex() >= n.rn.BasicStatus().GetCommit()
}

// keepFiles: a VM stopped on this node and still in the state keeps its
// files (its console log) until it is deleted or placed elsewhere; a task
// whose end is recorded has none worth keeping.
func (n *Node) keepFiles(name string, l *localVM) bool {
	if _, isTask := taskOf(name); isTask {
		return n.report(name, l)
	}
	v, ok := n.st.Vm(name)
	return ok && v.GetNodeId() == n.cfg.ID && v.GetGeneration() == l.gen
}

// stop asks the driver to stop the VM, and asks again every
// Config.StopRetryTicks until it reports the VM ended (a stop that failed
// on the way must not leave it running).
func (n *Node) stop(name string, l *localVM) {
	if l.stopSent && n.ticks < l.stopAt+uint64(n.cfg.StopRetryTicks) {
		return
	}
	l.stopSent, l.stopAt = true, n.ticks
	n.act(VMAction{Kind: StopVM, Name: name, Generation: l.gen})
}

func (n *Node) act(a VMAction) {
	n.actions = append(n.actions, a)
}

// report proposes what the driver saw of a VM when the state does not show
// it yet, at most once every Config.ReportEveryTicks for the same report. It
// returns whether a report is still owed.
func (n *Node) report(name string, l *localVM) bool {
	if l.observed == 0 {
		return false
	}
	var cmd *apiv1.Command
	if id, ok := taskOf(name); ok {
		cmd = n.taskReport(id, l)
	} else {
		cmd = n.vmReport(name, l)
	}
	if cmd == nil {
		return false
	}
	b, err := deterministic.Marshal(cmd)
	if err != nil {
		return true
	}
	key := string(b)
	if key == l.lastReport && n.ticks < l.lastReportAt+uint64(n.cfg.ReportEveryTicks) {
		return true
	}
	if n.propose(cmd) == nil {
		l.lastReport, l.lastReportAt = key, n.ticks
	}
	return true
}

func (n *Node) vmReport(name string, l *localVM) *apiv1.Command {
	v, ok := n.st.Vm(name)
	if !ok || v.GetNodeId() != n.cfg.ID || v.GetGeneration() != l.gen {
		return nil
	}
	switch v.GetState() {
	case apiv1.VmState_VM_STATE_SCHEDULED, apiv1.VmState_VM_STATE_STARTING, apiv1.VmState_VM_STATE_RUNNING:
	case apiv1.VmState_VM_STATE_STOPPING:
		if !l.ended() {
			return nil // the state knows better: it is being stopped
		}
	default:
		return nil
	}
	reason := state.Clip(l.reason, state.MaxReasonLen)
	if v.GetState() == l.observed && v.GetReason() == reason {
		return nil
	}
	return &apiv1.Command{Op: &apiv1.Command_ReportVm{ReportVm: &apiv1.ReportVmCommand{
		Name: name, NodeId: n.cfg.ID, Generation: l.gen, State: l.observed,
		Reason: reason, ConsoleTail: clipTail(l.consoleTail, state.MaxConsoleTailLen),
	}}}
}

func (n *Node) taskReport(id uint64, l *localVM) *apiv1.Command {
	t, ok := n.st.Task(id)
	if !ok || t.GetNodeId() != n.cfg.ID || uint64(t.GetAttempt()) != l.gen {
		return nil
	}
	var status apiv1.TaskStatus
	switch {
	case l.observed == apiv1.VmState_VM_STATE_RUNNING:
		if t.GetStatus() != apiv1.TaskStatus_TASK_STATUS_ASSIGNED {
			return nil
		}
		status = apiv1.TaskStatus_TASK_STATUS_RUNNING
	case l.ended():
		if t.GetStatus().Ended() && (t.GetStatus() != apiv1.TaskStatus_TASK_STATUS_CANCELLED || t.GetResult().GetFinishedUnixNano() != 0) {
			return nil
		}
		status = apiv1.TaskStatus_TASK_STATUS_FAILED
		switch {
		case l.fence != "":
			// Killed by this node's fencing, not by its own doing: the
			// attempt is lost, and the task tried again.
			status = apiv1.TaskStatus_TASK_STATUS_LOST
			if l.task == nil {
				l.task = &apiv1.TaskResult{ExitCode: -1, FinishedUnixNano: max(n.now, 1)}
			}
			l.task.Error = l.fence
		case l.observed == apiv1.VmState_VM_STATE_STOPPED && l.task != nil && l.task.GetExitCode() == 0 && l.task.GetError() == "":
			status = apiv1.TaskStatus_TASK_STATUS_SUCCEEDED
		}
	default:
		return nil
	}
	if l.ended() && l.task == nil {
		// No word from the agent: the end is stamped once, so that the
		// report is the same each time it is proposed again.
		l.task = &apiv1.TaskResult{ExitCode: -1, FinishedUnixNano: max(n.now, 1), Error: l.reason}
	}
	res := cloneResult(l.task)
	if l.ended() {
		res.Error = state.Clip(res.GetError(), state.MaxReasonLen)
		res.OutputTail = clipTailBytes(res.GetOutputTail(), state.MaxOutputTailBytes)
		if res.FinishedUnixNano == 0 {
			l.task.FinishedUnixNano = max(n.now, 1)
			res.FinishedUnixNano = l.task.FinishedUnixNano
		}
	}
	return &apiv1.Command{Op: &apiv1.Command_ReportTask{ReportTask: &apiv1.ReportTaskCommand{
		Id: id, NodeId: n.cfg.ID, Attempt: uint32(l.gen), Status: status, Result: res,
	}}}
}

func cloneVm(v *apiv1.Vm) *apiv1.Vm {
	if v == nil {
		return nil
	}
	return proto.CloneOf(v)
}

func cloneTask(t *apiv1.Task) *apiv1.Task {
	if t == nil {
		return nil
	}
	return proto.CloneOf(t)
}

func cloneResult(r *apiv1.TaskResult) *apiv1.TaskResult {
	if r == nil {
		return nil
	}
	return proto.CloneOf(r)
}

// clipTail makes s valid UTF-8 and keeps its last max bytes, from a rune
// boundary.
func clipTail(s string, max int) string {
	s = strings.ToValidUTF8(s, "\ufffd")
	if len(s) <= max {
		return s
	}
	s = s[len(s)-max:]
	for len(s) > 0 && !utf8.RuneStart(s[0]) {
		s = s[1:]
	}
	return s
}

func clipTailBytes(b []byte, max int) []byte {
	if len(b) <= max {
		return b
	}
	return b[len(b)-max:]
}
