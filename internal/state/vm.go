package state

import (
	"strconv"
	"strings"
	"unicode"

	"google.golang.org/protobuf/proto"

	apiv1 "github.com/blixard/blixard/api/v1"
)

func checkVmName(name string) *Error {
	if !validName(name) {
		return invalid("name", "%q is not a valid VM name: 1-%d of a-z, 0-9 and '-', not starting or ending with '-'", name, MaxNameLen)
	}
	return nil
}

func (s *State) lookupVm(name string) (*apiv1.Vm, *Error) {
	if err := checkVmName(name); err != nil {
		return nil, err
	}
	v, ok := s.vms[name]
	if !ok {
		return nil, notFound("name", "no VM named %q", name)
	}
	return v, nil
}

func checkVmSpec(spec *apiv1.VmSpec) *Error {
	if spec == nil {
		return invalid("spec", "must be set")
	}
	if spec.GetVcpus() == 0 || spec.GetVcpus() > MaxWorkloadVcpus {
		return invalid("spec.vcpus", "must be between 1 and %d", MaxWorkloadVcpus)
	}
	if spec.GetMemoryMib() == 0 || spec.GetMemoryMib() > MaxMemoryMiB {
		return invalid("spec.memory_mib", "must be between 1 and %d", MaxMemoryMiB)
	}
	if err := checkText("spec.image", spec.GetImage(), MaxImageLen); err != nil {
		return err
	}
	if err := checkText("spec.kernel_cmdline", spec.GetKernelCmdline(), MaxKernelCmdlineLen); err != nil {
		return err
	}
	if strings.ContainsFunc(spec.GetKernelCmdline(), unicode.IsControl) {
		return invalid("spec.kernel_cmdline", "must not hold control characters (newlines, tabs, NUL)")
	}

	if err := checkEnum("spec.restart_policy", spec.GetRestartPolicy(), true); err != nil {
		return err
	}
	if err := checkMap("spec.constraints", spec.GetConstraints(), checkKey); err != nil {
		return err
	}
	if g := spec.GetAntiAffinityGroup(); g != "" && !validName(g) {
		return invalid("spec.anti_affinity_group", "%q is not a valid group name", g)
	}
	if spec.GetAntiAffinitySoft() && spec.GetAntiAffinityGroup() == "" {
		return invalid("spec.anti_affinity_soft", "needs an anti-affinity group")
	}
	if err := checkEnum("spec.placement", spec.GetPlacement(), true); err != nil {
		return err
	}
	return checkFeatures("spec.features", spec.GetFeatures())
}

func (s *State) checkCreateVm(op *apiv1.CreateVmCommand) *Error {
	if err := checkVmName(op.GetName()); err != nil {
		return err
	}
	if _, ok := s.vms[op.GetName()]; ok {
		return exists("name", "a VM named %q already exists", op.GetName())
	}
	if err := checkVmSpec(op.GetSpec()); err != nil {
		return err
	}
	need := VmNeeds(op.GetSpec())
	need.Features = op.GetSpec().GetFeatures()
	return s.checkPlaceable("spec.image", "spec.memory_mib", "spec", op.GetSpec().GetImage(), need)
}

func (s *State) createVm(a at, op *apiv1.CreateVmCommand) *apiv1.Response {
	spec := proto.CloneOf(op.GetSpec())
	if spec.RestartPolicy == apiv1.RestartPolicy_RESTART_POLICY_UNSPECIFIED {
		spec.RestartPolicy = apiv1.RestartPolicy_RESTART_POLICY_ON_FAILURE
	}
	v := &apiv1.Vm{
		Name:            op.GetName(),
		Spec:            spec,
		CreatedIndex:    a.index,
		CreatedUnixNano: a.nanos,
		// Generations start at the creation's log index: each assignment
		// takes one more, and a later VM of the same name is created at a
		// later index than any assignment of this one, so (name,
		// generation) never repeats — a report from an earlier life cannot
		// pass for one of this life.
		Generation: a.index,
	}
	s.vms[v.Name] = v
	if op.GetStart() {
		v.DesiredState = apiv1.VmDesiredState_VM_DESIRED_STATE_RUNNING
		s.setVmState(a, v, apiv1.VmState_VM_STATE_PENDING, "created; waiting for placement")
	} else {
		v.DesiredState = apiv1.VmDesiredState_VM_DESIRED_STATE_STOPPED
		s.setVmState(a, v, apiv1.VmState_VM_STATE_STOPPED, "created")
	}
	return &apiv1.Response{Kind: &apiv1.Response_CreateVm{CreateVm: &apiv1.CreateVmResponse{Vm: proto.CloneOf(v)}}}
}

func (s *State) checkStartVm(op *apiv1.StartVmCommand) *Error {
	v, err := s.lookupVm(op.GetName())
	if err != nil {
		return err
	}
	if v.GetDesiredState() == apiv1.VmDesiredState_VM_DESIRED_STATE_DELETED {
		return precondition("name", "VM %q is being deleted", op.GetName())
	}
	return nil
}

// startVm wants the VM running. One that is not running anywhere goes back
// to pending, to be placed afresh; one that is active stays as it is.
func (s *State) startVm(a at, op *apiv1.StartVmCommand) *apiv1.Response {
	v := s.vms[op.GetName()]
	v.DesiredState = apiv1.VmDesiredState_VM_DESIRED_STATE_RUNNING
	v.UpdatedIndex = a.index
	if !holdsResources(v.GetState()) && v.GetState() != apiv1.VmState_VM_STATE_PENDING {
		v.NodeId = 0
		s.setVmState(a, v, apiv1.VmState_VM_STATE_PENDING, "started; waiting for placement")
	}
	return &apiv1.Response{Kind: &apiv1.Response_StartVm{StartVm: &apiv1.StartVmResponse{Vm: proto.CloneOf(v)}}}
}

func (s *State) checkStopVm(op *apiv1.StopVmCommand) *Error {
	v, err := s.lookupVm(op.GetName())
	if err != nil {
		return err
	}
	if v.GetDesiredState() == apiv1.VmDesiredState_VM_DESIRED_STATE_DELETED {
		return precondition("name", "VM %q is being deleted", op.GetName())
	}
	return nil
}

// stopVm wants the VM stopped. One placed on a node is stopping until its
// node reports it stopped; one placed nowhere is stopped at once.
func (s *State) stopVm(a at, op *apiv1.StopVmCommand) *apiv1.Response {
	v := s.vms[op.GetName()]
	v.DesiredState = apiv1.VmDesiredState_VM_DESIRED_STATE_STOPPED
	v.UpdatedIndex = a.index
	switch {
	case holdsResources(v.GetState()):
		if v.GetState() != apiv1.VmState_VM_STATE_STOPPING {
			s.setVmState(a, v, apiv1.VmState_VM_STATE_STOPPING, "stopped by user")
		}
	case v.GetState() == apiv1.VmState_VM_STATE_PENDING:
		s.setVmState(a, v, apiv1.VmState_VM_STATE_STOPPED, "stopped by user before placement")
	}
	return &apiv1.Response{Kind: &apiv1.Response_StopVm{StopVm: &apiv1.StopVmResponse{Vm: proto.CloneOf(v)}}}
}

func (s *State) checkDeleteVm(op *apiv1.DeleteVmCommand) *Error {
	_, err := s.lookupVm(op.GetName())
	return err
}

// deleteVm removes a VM that runs nowhere at once; one that is active is
// stopped first and removed when its node reports it stopped.
func (s *State) deleteVm(a at, op *apiv1.DeleteVmCommand) *apiv1.Response {
	v := s.vms[op.GetName()]
	v.DesiredState = apiv1.VmDesiredState_VM_DESIRED_STATE_DELETED
	v.UpdatedIndex = a.index
	if !holdsResources(v.GetState()) {
		delete(s.vms, v.GetName())
		return &apiv1.Response{Kind: &apiv1.Response_DeleteVm{DeleteVm: &apiv1.DeleteVmResponse{Vm: proto.CloneOf(v), Removed: true}}}
	}
	if v.GetState() != apiv1.VmState_VM_STATE_STOPPING {
		s.setVmState(a, v, apiv1.VmState_VM_STATE_STOPPING, "deleted by user")
	}
	return &apiv1.Response{Kind: &apiv1.Response_DeleteVm{DeleteVm: &apiv1.DeleteVmResponse{Vm: proto.CloneOf(v)}}}
}

func (s *State) checkAssignVm(op *apiv1.AssignVmCommand) *Error {
	v, err := s.lookupVm(op.GetName())
	if err != nil {
		return err
	}
	if v.GetDesiredState() != apiv1.VmDesiredState_VM_DESIRED_STATE_RUNNING {
		return precondition("name", "VM %q is not wanted running", op.GetName())
	}
	if !placeable(v) {
		return precondition("name", "VM %q is %s with restart policy %s, not waiting for placement", op.GetName(), v.GetState(), v.GetSpec().GetRestartPolicy())
	}
	if op.GetGeneration() != v.GetGeneration() {
		return precondition("generation", "stale: VM %q is at generation %d, not %d", op.GetName(), v.GetGeneration(), op.GetGeneration())
	}
	return s.checkVmOnNode(v, op.GetNodeId(), nil)
}

// checkVmOnNode reports why node id cannot take VM v now, on top of
// reserved, or nil: the node must be ready and not draining, offer v's
// image, carry every label v is constrained to, run no other VM of v's
// anti-affinity group, and have room.
func (s *State) checkVmOnNode(v *apiv1.Vm, id uint64, reserved *apiv1.Resources) *Error {
	if err := s.nodeSchedulable("node_id", id); err != nil {
		return err
	}
	node := s.nodes[id]
	if err := checkNodeImage(node, v.GetSpec().GetImage(), v.GetSpec().GetMemoryMib()); err != nil {
		return err
	}
	for _, k := range sortedKeys(v.GetSpec().GetConstraints()) {
		if got, ok := node.GetLabels()[k]; !ok || got != v.GetSpec().GetConstraints()[k] {
			return precondition("node_id", "node %d does not carry label %s=%s", id, k, v.GetSpec().GetConstraints()[k])
		}
	}
	if g := v.GetSpec().GetAntiAffinityGroup(); g != "" {
		for name := range s.ix.vmsOn[id] {
			// A yes/no over the node's VMs: iteration order cannot leak.
			// Two of a group share a node only when both are soft: a hard
			// one's promise holds whichever of them comes second.
			if other := s.vms[name]; other != v && other.GetSpec().GetAntiAffinityGroup() == g &&
				(!v.GetSpec().GetAntiAffinitySoft() || !other.GetSpec().GetAntiAffinitySoft()) {
				return precondition("node_id", "node %d already runs a VM of anti-affinity group %q", id, g)
			}
		}
	}
	need := VmNeeds(v.GetSpec())
	need.Features = v.GetSpec().GetFeatures()
	return s.checkFitsWith("node_id", id, need, reserved)
}

// CanPlaceVm reports why node id cannot take VM name now, on top of
// reserved (what a placer has proposed for the node and the state does not
// show yet), or nil: the checks of an assignment, but the VM's state and
// generation.
func (s *State) CanPlaceVm(id uint64, name string, reserved *apiv1.Resources) error {
	v, ok := s.vms[name]
	if !ok {
		return notFound("name", "no VM named %q", name)
	}
	if err := s.checkVmOnNode(v, id, reserved); err != nil {
		return err
	}
	return nil
}

// assignVm places the VM on a node at a new generation. Placing one that
// failed, stopped on its own or was lost is a restart.
func (s *State) assignVm(a at, op *apiv1.AssignVmCommand) *apiv1.Response {
	v := s.vms[op.GetName()]
	s.noteVmMove(a, op.GetName(), op.GetNodeId())
	if v.GetState() != apiv1.VmState_VM_STATE_PENDING {
		v.Restarts++
	}
	v.NodeId = op.GetNodeId()
	v.Generation++
	s.setVmState(a, v, apiv1.VmState_VM_STATE_SCHEDULED, "placed on node "+strconv.FormatUint(op.GetNodeId(), 10))
	return &apiv1.Response{}
}

func (s *State) checkReportVm(op *apiv1.ReportVmCommand) *Error {
	v, err := s.lookupVm(op.GetName())
	if err != nil {
		return err
	}
	if _, ok := s.nodes[op.GetNodeId()]; !ok {
		return notFound("node_id", "no node %d", op.GetNodeId())
	}
	if err := checkEnum("state", op.GetState(), false); err != nil {
		return err
	}
	switch op.GetState() {
	case apiv1.VmState_VM_STATE_STARTING, apiv1.VmState_VM_STATE_RUNNING,
		apiv1.VmState_VM_STATE_STOPPED, apiv1.VmState_VM_STATE_FAILED:
	default:
		return invalid("state", "a node cannot report %s", op.GetState())
	}
	if err := checkText("reason", op.GetReason(), MaxReasonLen); err != nil {
		return err
	}
	if err := checkText("console_tail", op.GetConsoleTail(), MaxConsoleTailLen); err != nil {
		return err
	}
	if op.GetNodeId() != v.GetNodeId() || op.GetGeneration() != v.GetGeneration() {
		return precondition("generation", "stale report: VM %q is at node %d generation %d, report is from node %d generation %d",
			op.GetName(), v.GetNodeId(), v.GetGeneration(), op.GetNodeId(), op.GetGeneration())
	}
	if !holdsResources(v.GetState()) {
		return precondition("state", "VM %q is %s; its node no longer reports on it", op.GetName(), v.GetState())
	}
	return nil
}

// reportVm records what the VM's node saw. A VM being deleted is removed
// once its node reports it stopped or failed. A report of what the record
// already says changes nothing (nodes repeat reports until they see them
// applied).
func (s *State) reportVm(a at, op *apiv1.ReportVmCommand) *apiv1.Response {
	v := s.vms[op.GetName()]
	if v.GetState() == op.GetState() && v.GetReason() == op.GetReason() {
		return &apiv1.Response{}
	}
	wasStopping := v.GetState() == apiv1.VmState_VM_STATE_STOPPING
	if wasStopping && op.GetState() != apiv1.VmState_VM_STATE_STOPPED && op.GetState() != apiv1.VmState_VM_STATE_FAILED {
		// A late "starting" or "running" does not undo the wish to stop.
		return &apiv1.Response{}
	}
	if op.GetState() == apiv1.VmState_VM_STATE_FAILED {
		v.ConsoleTail = op.GetConsoleTail()
	}
	s.setVmState(a, v, op.GetState(), op.GetReason())
	ended := op.GetState() == apiv1.VmState_VM_STATE_STOPPED || op.GetState() == apiv1.VmState_VM_STATE_FAILED
	switch {
	case ended && v.GetDesiredState() == apiv1.VmDesiredState_VM_DESIRED_STATE_DELETED:
		delete(s.vms, v.GetName())
	case wasStopping && ended && v.GetDesiredState() == apiv1.VmDesiredState_VM_DESIRED_STATE_RUNNING:
		// Started again while it was stopping, or moved off a drained
		// node: it waits to be placed anew, however the stop went. (A VM
		// that stops on its own is for its restart policy to judge.)
		v.NodeId = 0
		s.setVmState(a, v, apiv1.VmState_VM_STATE_PENDING, "stopped while wanted running; waiting for placement")
	}
	return &apiv1.Response{}
}

// setVmState moves v to st and appends the transition to its bounded events.
func (s *State) setVmState(a at, v *apiv1.Vm, st apiv1.VmState, reason string) {
	v.State = st
	v.Reason = reason
	v.UpdatedIndex = a.index
	v.Events = append(v.Events, &apiv1.VmEvent{
		Index:        a.index,
		TimeUnixNano: a.nanos,
		State:        st,
		NodeId:       v.GetNodeId(),
		Generation:   v.GetGeneration(),
		Reason:       reason,
	})
	if n := len(v.Events); n > MaxVmEvents {
		v.Events = append([]*apiv1.VmEvent(nil), v.Events[n-MaxVmEvents:]...)
	}
	msg := vmStateName(st)
	if reason != "" {
		msg += ": " + reason
	}
	s.event(a, "vm", v.GetNodeId(), v.GetName(), 0, msg)
}

func vmStateName(st apiv1.VmState) string {
	return strings.ToLower(strings.TrimPrefix(st.String(), "VM_STATE_"))
}
