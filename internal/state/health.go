package state

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
	"unicode/utf8"

	"google.golang.org/protobuf/proto"

	apiv1 "github.com/blixard/blixard/api/v1"
)

// DefaultMaxAttempts is how many attempts a task gets when its spec names
// none; MaxTaskAttempts bounds what a spec may ask.
const (
	DefaultMaxAttempts = 3
	MaxTaskAttempts    = 100
)

// MaxAttempts is how many times task t may be started before a node's
// death marks it lost.
func MaxAttempts(t *apiv1.Task) uint32 {
	if m := t.GetSpec().GetMaxAttempts(); m > 0 {
		return m
	}
	return DefaultMaxAttempts
}

func (s *State) liveNode(field string, id uint64) (*apiv1.Node, *Error) {
	if id == 0 {
		return nil, invalid(field, "must not be 0")
	}
	n, ok := s.nodes[id]
	if !ok {
		return nil, notFound(field, "no node %d", id)
	}
	if n.GetStatus() == apiv1.NodeStatus_NODE_STATUS_LEFT || s.Removed(id) {
		return nil, precondition(field, "node %d has left the cluster", id)
	}
	return n, nil
}

func (s *State) checkSetNodeStatus(op *apiv1.SetNodeStatusCommand) *Error {
	if err := checkText("reason", op.GetReason(), MaxReasonLen); err != nil {
		return err
	}
	if op.GetStatus() == apiv1.NodeStatus_NODE_STATUS_LEFT {
		// The verdict that a removed node's lease has run out.
		n, ok := s.nodes[op.GetId()]
		if !ok {
			return notFound("id", "no node %d", op.GetId())
		}
		if n.GetStatus() != apiv1.NodeStatus_NODE_STATUS_LEFT {
			return precondition("status", "node %d has not left the cluster", op.GetId())
		}
		return nil
	}
	if _, err := s.liveNode("id", op.GetId()); err != nil {
		return err
	}
	switch op.GetStatus() {
	case apiv1.NodeStatus_NODE_STATUS_READY, apiv1.NodeStatus_NODE_STATUS_DISCONNECTED, apiv1.NodeStatus_NODE_STATUS_DOWN:
	default:
		return invalid("status", "must be ready, disconnected, down or left, not %s", op.GetStatus())
	}
	return nil
}

// setNodeStatus records the leader's verdict on a node. A node that goes
// down loses its workloads (see evictNode).
//
// Left is the verdict on a node removed from the cluster (its status is
// left from the removal on): its lease has run out, so its workloads are
// evicted as a down node's are.
func (s *State) setNodeStatus(a at, op *apiv1.SetNodeStatusCommand) *apiv1.Response {
	n := s.nodes[op.GetId()]
	if op.GetStatus() == apiv1.NodeStatus_NODE_STATUS_LEFT {
		if len(s.ix.vmsOn[n.GetId()]) > 0 || len(s.ix.tasksOn[n.GetId()]) > 0 {
			n.StatusReason = op.GetReason()
			n.UpdatedIndex = a.index
			s.evictNode(a, n.GetId(), "node "+strconv.FormatUint(n.GetId(), 10)+" left the cluster")
		}
		return &apiv1.Response{}
	}
	if n.GetStatus() == op.GetStatus() {
		return &apiv1.Response{}
	}
	n.Status = op.GetStatus()
	n.StatusReason = op.GetReason()
	n.UpdatedIndex = a.index
	msg := "node " + strconv.FormatUint(n.GetId(), 10) + " is " + strings.ToLower(strings.TrimPrefix(op.GetStatus().String(), "NODE_STATUS_"))
	if op.GetReason() != "" {
		msg += ": " + op.GetReason()
	}
	s.event(a, "node", n.GetId(), "", 0, msg)
	if op.GetStatus() == apiv1.NodeStatus_NODE_STATUS_DOWN {
		s.evictNode(a, n.GetId(), "node "+strconv.FormatUint(n.GetId(), 10)+" is down")
	}
	return &apiv1.Response{}
}

// evictNode takes every workload off node id, which is down or has left:
// its fencing lease has run out, so nothing of it runs any more. VMs
// wanted running are lost (their restart policy places them again; one
// that was being moved waits for placement whatever its policy), VMs
// wanted stopped are stopped, VMs being deleted are removed; tasks that
// were assigned or running go back to pending for another attempt, or are
// lost once they have had MaxAttempts.
func (s *State) evictNode(a at, id uint64, why string) {
	for _, v := range s.VmsOn(id) {
		switch {
		case v.GetDesiredState() == apiv1.VmDesiredState_VM_DESIRED_STATE_DELETED:
			delete(s.vms, v.GetName())
		case v.GetDesiredState() == apiv1.VmDesiredState_VM_DESIRED_STATE_STOPPED:
			s.setVmState(a, v, apiv1.VmState_VM_STATE_STOPPED, why)
		case v.GetState() == apiv1.VmState_VM_STATE_STOPPING:
			s.setVmState(a, v, apiv1.VmState_VM_STATE_LOST, why)
			v.NodeId = 0
			s.setVmState(a, v, apiv1.VmState_VM_STATE_PENDING, why+"; waiting for placement")
		default:
			s.setVmState(a, v, apiv1.VmState_VM_STATE_LOST, why)
		}
		s.indexVm(v.GetName())
	}
	for _, t := range s.TasksOn(id) {
		t.UpdatedIndex = a.index
		switch {
		case t.GetStatus() == apiv1.TaskStatus_TASK_STATUS_CANCELLED:
			if t.Result == nil {
				t.Result = &apiv1.TaskResult{}
			}
			t.Result.FinishedUnixNano = max(a.nanos, 1)
			t.Result.Error = why
		default:
			retryOrLose(a, t, why, nil)
			s.taskEvent(a, t)
		}
		s.indexTask(t.GetId())
	}
}

// retryOrLose ends task t's attempt as lost (its node died or fenced
// itself): it waits to be placed again if it has attempts left, and is
// lost otherwise.
//
// A lost task's result keeps when its last attempt started and the tail of
// its output: from seen (what its node reported of the attempt, if it did)
// or else from what the attempt's record held. A task that waits again
// has no result until its next attempt reports one.
func retryOrLose(a at, t *apiv1.Task, why string, seen *apiv1.TaskResult) {
	t.UpdatedIndex = a.index
	if t.GetAttempt() < MaxAttempts(t) {
		t.Status = apiv1.TaskStatus_TASK_STATUS_PENDING
		t.NodeId = 0
		t.Result = nil // the next attempt's, when it has one
		t.Reason = Clip(fmt.Sprintf("%s during attempt %d of %d; waiting to be placed again", why, t.GetAttempt(), MaxAttempts(t)), MaxReasonLen)
		return
	}
	t.Status = apiv1.TaskStatus_TASK_STATUS_LOST
	t.Reason = Clip(fmt.Sprintf("%s during attempt %d of %d; lost", why, t.GetAttempt(), MaxAttempts(t)), MaxReasonLen)
	started, tail := t.GetResult().GetStartedUnixNano(), t.GetResult().GetOutputTail()
	if seen.GetStartedUnixNano() != 0 {
		started = seen.GetStartedUnixNano()
	}
	if len(seen.GetOutputTail()) > 0 {
		tail = seen.GetOutputTail()
	}
	t.Result = &apiv1.TaskResult{ExitCode: -1, StartedUnixNano: started, OutputTail: slices.Clone(tail),
		FinishedUnixNano: max(a.nanos, 1), Error: t.Reason}
}

// Clip makes s valid UTF-8 and cuts it to at most max bytes at a rune
// boundary: how reasons and texts are fitted to the state's bounds.
func Clip(s string, max int) string {
	s = strings.ToValidUTF8(s, "\ufffd")
	if len(s) <= max {
		return s
	}
	s = s[:max]
	for len(s) > 0 && !utf8.ValidString(s) {
		s = s[:len(s)-1]
	}
	return s
}

func (s *State) checkDrainNode(op *apiv1.DrainNodeCommand) *Error {
	_, err := s.liveNode("node_id", op.GetId())
	return err
}

// drainNode marks the node drained: nothing new is placed on it, and its
// VMs wanted running are stopped there, to be placed elsewhere once their
// node reports them stopped (reportVm). Tasks on it run to their end.
// Undraining only makes the node eligible again: nothing moves back.
func (s *State) drainNode(a at, op *apiv1.DrainNodeCommand) *apiv1.Response {
	n := s.nodes[op.GetId()]
	if n.GetDrain() != op.GetDrain() {
		n.Drain = op.GetDrain()
		n.UpdatedIndex = a.index
		word := "undrained"
		if op.GetDrain() {
			word = "drained"
		}
		s.event(a, "node", n.GetId(), "", 0, "node "+strconv.FormatUint(n.GetId(), 10)+" is "+word)
	}
	if op.GetDrain() {
		why := "moving off node " + strconv.FormatUint(n.GetId(), 10) + " (drained)"
		for _, v := range s.VmsOn(n.GetId()) {
			if v.GetState() != apiv1.VmState_VM_STATE_STOPPING {
				s.setVmState(a, v, apiv1.VmState_VM_STATE_STOPPING, why)
			}
		}
	}
	return &apiv1.Response{Kind: &apiv1.Response_DrainNode{DrainNode: &apiv1.DrainNodeResponse{Node: proto.CloneOf(n)}}}
}

func (s *State) checkPlacementFailed(op *apiv1.PlacementFailedCommand) *Error {
	if op.GetReason() == "" {
		return invalid("reason", "must not be empty")
	}
	if err := checkText("reason", op.GetReason(), MaxReasonLen); err != nil {
		return err
	}
	switch {
	case op.GetVmName() != "" && op.GetTaskId() != 0:
		return invalid("vm_name", "name a VM or a task, not both")
	case op.GetVmName() != "":
		v, err := s.lookupVm(op.GetVmName())
		if err != nil {
			return err
		}
		if v.GetGeneration() != op.GetVmGeneration() {
			return precondition("vm_generation", "stale: VM %q is at generation %d, not %d", v.GetName(), v.GetGeneration(), op.GetVmGeneration())
		}
		if !s.ix.toPlace.contains(v.GetName()) {
			return precondition("vm_name", "VM %q does not wait for placement", v.GetName())
		}
	case op.GetTaskId() != 0:
		t, err := s.lookupTask(op.GetTaskId())
		if err != nil {
			return err
		}
		if t.GetStatus() != apiv1.TaskStatus_TASK_STATUS_PENDING || t.GetAttempt() != op.GetTaskAttempt() {
			return precondition("task_attempt", "stale: task %d is %s at attempt %d", t.GetId(), t.GetStatus(), t.GetAttempt())
		}
	default:
		return invalid("vm_name", "name a VM or a task")
	}
	return nil
}

// placementFailed records why a waiting workload was not placed, in its
// reason (not as an event: the reason may change often while it waits).
func (s *State) placementFailed(a at, op *apiv1.PlacementFailedCommand) *apiv1.Response {
	if op.GetVmName() != "" {
		v := s.vms[op.GetVmName()]
		v.Reason = op.GetReason()
		v.UpdatedIndex = a.index
	} else {
		t := s.tasks[op.GetTaskId()]
		t.Reason = op.GetReason()
		t.UpdatedIndex = a.index
	}
	return &apiv1.Response{}
}

// checkFeatures: a list of feature names, sorted and unique.
func checkFeatures(field string, fs []string) *Error {
	if len(fs) > MaxFeatures {
		return invalid(field, "has %d entries, at most %d allowed", len(fs), MaxFeatures)
	}
	for i, f := range fs {
		if !validName(f) {
			return invalid(field, "feature %q is not a lower-case name", f)
		}
		if i > 0 && fs[i-1] >= f {
			return invalid(field, "must be sorted and unique")
		}
	}
	return nil
}
