package state

import (
	"sort"
	"strconv"
	"strings"

	"google.golang.org/protobuf/proto"

	apiv1 "github.com/blixard/blixard/api/v1"
)

// MaxEvents bounds the cluster's event log: the oldest go first.
const MaxEvents = 1000

// event appends one event to the log.
func (s *State) event(a at, kind string, node uint64, vm string, task uint64, msg string) {
	s.events = append(s.events, &apiv1.Event{
		Index: a.index, TimeUnixNano: a.nanos, Kind: kind,
		NodeId: node, VmName: vm, TaskId: task, Message: msg,
	})
	if n := len(s.events); n > MaxEvents {
		s.events = append([]*apiv1.Event(nil), s.events[n-MaxEvents:]...)
	}
}

// Events returns copies of the events after index about vm (if not
// empty) and node (if not 0), oldest first, at most limit of the newest
// (0: all).
func (s *State) Events(after uint64, vm string, node uint64, limit int) []*apiv1.Event {
	var out []*apiv1.Event
	// Events are kept in log order: skip those up to after at once (a
	// node reads the new ones after every apply).
	first := sort.Search(len(s.events), func(i int) bool { return s.events[i].GetIndex() > after })
	for _, e := range s.events[first:] {
		if (vm != "" && e.GetVmName() != vm) || (node != 0 && e.GetNodeId() != node) {
			continue
		}
		out = append(out, e)
	}
	if limit > 0 && len(out) > limit {
		out = out[len(out)-limit:]
	}
	for i, e := range out {
		out[i] = proto.CloneOf(e)
	}
	return out
}

func (s *State) checkNoteLeader(op *apiv1.NoteLeaderCommand) *Error {
	if op.GetNodeId() == 0 || op.GetTerm() == 0 {
		return invalid("", "node_id and term must be set")
	}
	if op.GetTerm() <= s.notedTerm {
		return precondition("term", "term %d is noted already", op.GetTerm())
	}
	return nil
}

func (s *State) noteLeader(a at, op *apiv1.NoteLeaderCommand) *apiv1.Response {
	s.notedTerm = op.GetTerm()
	s.event(a, "leader", op.GetNodeId(), "", 0,
		"node "+strconv.FormatUint(op.GetNodeId(), 10)+" leads term "+strconv.FormatUint(op.GetTerm(), 10))
	return &apiv1.Response{}
}

// NotedTerm is the last term whose leader the log noted.
func (s *State) NotedTerm() uint64 { return s.notedTerm }

// Placement is what the state knows of a workload that waits for a node,
// read before its assignment applies: since when it waits, and whether the
// assignment moves it off a node that went away.
type Placement struct {
	// WaitingSinceUnixNano is the proposer's clock at the entry that made
	// the workload wait: its creation (a VM's start) or submission, or
	// the end of its last placement; 0 when the state no longer knows.
	WaitingSinceUnixNano int64
	// Restart: a VM that failed, or stopped on its own, placed again by
	// its restart policy (its wait includes the policy's back-off).
	Restart bool
	// Reschedule: the workload's last placement ended because its node
	// went down, left the cluster or was drained. From is that node (0
	// when the state no longer knows it) and Why what happened to it.
	Reschedule bool
	From       uint64
	Why        string
}

// VmPlacement is what the state knows of VM name's wait for a node; false
// when it does not wait for one.
func (s *State) VmPlacement(name string) (Placement, bool) {
	v, ok := s.vms[name]
	if !ok || v.GetDesiredState() != apiv1.VmDesiredState_VM_DESIRED_STATE_RUNNING || !placeable(v) {
		return Placement{}, false
	}
	var p Placement
	evs := v.GetEvents()
	k := len(evs)
	if k > 0 {
		p.WaitingSinceUnixNano = evs[k-1].GetTimeUnixNano()
	}
	switch v.GetState() {
	case apiv1.VmState_VM_STATE_LOST:
		// Only a node that went down or left loses a VM (evictNode).
		p.Reschedule, p.From = true, v.GetNodeId()
		if k > 0 {
			p.Why = evs[k-1].GetReason()
		}
	case apiv1.VmState_VM_STATE_FAILED, apiv1.VmState_VM_STATE_STOPPED:
		p.Restart = true
	case apiv1.VmState_VM_STATE_PENDING:
		// Made pending by the same entry that ended it on a node: lost
		// there while it was stopping (evictNode), or stopped there while
		// wanted running (reportVm), which is a move when that node is
		// drained or gone. Its events keep at least these last two.
		if k < 2 || evs[k-2].GetIndex() != evs[k-1].GetIndex() || evs[k-2].GetNodeId() == 0 {
			break
		}
		prev := evs[k-2]
		switch from := prev.GetNodeId(); {
		case prev.GetState() == apiv1.VmState_VM_STATE_LOST:
			p.Reschedule, p.From, p.Why = true, from, prev.GetReason()
		case prev.GetState() == apiv1.VmState_VM_STATE_STOPPED:
			if why := s.nodeGone(from); why != "" {
				p.Reschedule, p.From, p.Why = true, from, why
			}
		}
	}
	return p, true
}

// nodeGone says why node id no longer takes workloads (drained, down,
// left), or "" when it does.
func (s *State) nodeGone(id uint64) string {
	name := "node " + strconv.FormatUint(id, 10)
	n, ok := s.nodes[id]
	switch {
	case !ok || s.Removed(id) || n.GetStatus() == apiv1.NodeStatus_NODE_STATUS_LEFT:
		return name + " left the cluster"
	case n.GetStatus() == apiv1.NodeStatus_NODE_STATUS_DOWN:
		return name + " is down"
	case n.GetDrain():
		return name + " is drained"
	}
	return ""
}

// TaskPlacement is what the state knows of task id's wait for a node;
// false when it is not pending. A task waits again only when an attempt
// was lost with its node (retryOrLose), so every placement after its first
// is a reschedule.
func (s *State) TaskPlacement(id uint64) (Placement, bool) {
	t, ok := s.tasks[id]
	if !ok || t.GetStatus() != apiv1.TaskStatus_TASK_STATUS_PENDING {
		return Placement{}, false
	}
	if t.GetAttempt() == 0 {
		return Placement{WaitingSinceUnixNano: t.GetSubmittedUnixNano()}, true
	}
	// The task's newest event is the loss that made it pending (a
	// placement failure records none); an older one names its node. The
	// log is bounded: either may be gone.
	p := Placement{Reschedule: true, Why: t.GetReason()}
	seen := false
	for i := len(s.events) - 1; i >= 0; i-- {
		e := s.events[i]
		if e.GetTaskId() != id || e.GetKind() != "task" {
			continue
		}
		if !seen {
			seen = true
			p.WaitingSinceUnixNano = e.GetTimeUnixNano()
			p.Why = strings.TrimPrefix(e.GetMessage(), "pending: ")
			continue
		}
		if e.GetNodeId() != 0 {
			p.From = e.GetNodeId()
			break
		}
	}
	p.Why = strings.TrimSuffix(p.Why, "; waiting to be placed again")
	return p, true
}

// noteVmMove records, as the VM's assignment to node to applies, that it
// moves there off a node that went away.
func (s *State) noteVmMove(a at, name string, to uint64) {
	if p, ok := s.VmPlacement(name); ok && p.Reschedule {
		s.event(a, "reschedule", to, name, 0, "vm "+name+" "+moveText(p, to))
	}
}

// noteTaskMove is noteVmMove for task id.
func (s *State) noteTaskMove(a at, id, to uint64) {
	if p, ok := s.TaskPlacement(id); ok && p.Reschedule {
		s.event(a, "reschedule", to, "", id, "task "+strconv.FormatUint(id, 10)+" "+moveText(p, to))
	}
}

func moveText(p Placement, to uint64) string {
	msg := "moves "
	if p.From != 0 {
		msg += "from node " + strconv.FormatUint(p.From, 10) + " "
	}
	msg += "to node " + strconv.FormatUint(to, 10)
	if p.Why != "" {
		msg += ": " + p.Why
	}
	return Clip(msg, MaxReasonLen)
}
