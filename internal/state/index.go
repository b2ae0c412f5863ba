package state

import (
	"maps"
	"slices"

	apiv1 "github.com/blixard/blixard/api/v1"
)

// index keeps the sets of workloads that the node agent and placement read
// on every tick, so that reading them costs what they hold rather than
// what the whole state holds (a cluster may keep many thousands of stopped
// VMs and ended tasks). It is derived from the records: never snapshotted,
// rebuilt by Restore, and brought up to date after every command that
// changes a VM or a task.
type index struct {
	// vmsOn: per node, the VMs that hold resources there; vmNode is where
	// each of them is filed.
	vmsOn  map[uint64]map[string]struct{}
	vmNode map[string]uint64
	// toPlace: VMs wanted running that run nowhere.
	toPlace map[string]struct{}
	// tasksOn: per node, the tasks that hold resources there (taskHolds);
	// taskNode is where each is filed.
	tasksOn  map[uint64]map[uint64]struct{}
	taskNode map[uint64]uint64
	// pending: tasks waiting for a node.
	pending map[uint64]struct{}
}

func newIndex() index {
	return index{
		vmsOn: map[uint64]map[string]struct{}{}, vmNode: map[string]uint64{}, toPlace: map[string]struct{}{},
		tasksOn: map[uint64]map[uint64]struct{}{}, taskNode: map[uint64]uint64{}, pending: map[uint64]struct{}{},
	}
}

// file puts key in node's set of on, and notes in where that it is there.
func file[K comparable](on map[uint64]map[K]struct{}, where map[K]uint64, node uint64, key K) {
	if on[node] == nil {
		on[node] = map[K]struct{}{}
	}
	on[node][key] = struct{}{}
	where[key] = node
}

// unfile takes key out of whichever node's set of on holds it.
func unfile[K comparable](on map[uint64]map[K]struct{}, where map[K]uint64, key K) {
	node, ok := where[key]
	if !ok {
		return
	}
	delete(on[node], key)
	if len(on[node]) == 0 {
		delete(on, node)
	}
	delete(where, key)
}

// indexVm files VM name as its record (or its absence) now says.
func (s *State) indexVm(name string) {
	ix := &s.ix
	unfile(ix.vmsOn, ix.vmNode, name)
	delete(ix.toPlace, name)
	v, ok := s.vms[name]
	if !ok {
		return
	}
	switch {
	case holdsResources(v.GetState()):
		file(ix.vmsOn, ix.vmNode, v.GetNodeId(), name)
	case v.GetDesiredState() == apiv1.VmDesiredState_VM_DESIRED_STATE_RUNNING && placeable(v):
		ix.toPlace[name] = struct{}{}
	}
}

// placeable: a VM wanted running that runs nowhere waits for a node when it
// is pending, or when its restart policy restarts it: after a failure or the
// loss of its node with always or on-failure, after a stop of its own with
// always.
func placeable(v *apiv1.Vm) bool {
	policy := v.GetSpec().GetRestartPolicy()
	switch v.GetState() {
	case apiv1.VmState_VM_STATE_PENDING:
		return true
	case apiv1.VmState_VM_STATE_FAILED, apiv1.VmState_VM_STATE_LOST:
		return policy == apiv1.RestartPolicy_RESTART_POLICY_ALWAYS || policy == apiv1.RestartPolicy_RESTART_POLICY_ON_FAILURE
	case apiv1.VmState_VM_STATE_STOPPED:
		return policy == apiv1.RestartPolicy_RESTART_POLICY_ALWAYS
	}
	return false
}

// indexTask files task id as its record now says.
func (s *State) indexTask(id uint64) {
	ix := &s.ix
	unfile(ix.tasksOn, ix.taskNode, id)
	delete(ix.pending, id)
	t, ok := s.tasks[id]
	if !ok {
		return
	}
	switch {
	case t.GetStatus() == apiv1.TaskStatus_TASK_STATUS_PENDING:
		ix.pending[id] = struct{}{}
	case taskHolds(t):
		file(ix.tasksOn, ix.taskNode, t.GetNodeId(), id)
	}
}

// reindex files what cmd, just applied at index, may have changed.
func (s *State) reindex(index uint64, cmd *apiv1.Command) {
	switch op := cmd.GetOp().(type) {
	case *apiv1.Command_CreateVm:
		s.indexVm(op.CreateVm.GetName())
	case *apiv1.Command_StartVm:
		s.indexVm(op.StartVm.GetName())
	case *apiv1.Command_StopVm:
		s.indexVm(op.StopVm.GetName())
	case *apiv1.Command_DeleteVm:
		s.indexVm(op.DeleteVm.GetName())
	case *apiv1.Command_AssignVm:
		s.indexVm(op.AssignVm.GetName())
	case *apiv1.Command_ReportVm:
		s.indexVm(op.ReportVm.GetName())
	case *apiv1.Command_SubmitTask:
		s.indexTask(index)
	case *apiv1.Command_CancelTask:
		s.indexTask(op.CancelTask.GetId())
	case *apiv1.Command_AssignTask:
		s.indexTask(op.AssignTask.GetId())
	case *apiv1.Command_ReportTask:
		s.indexTask(op.ReportTask.GetId())
	}
}

// rebuildIndex files every record afresh (after Restore).
func (s *State) rebuildIndex() {
	s.ix = newIndex()
	for name := range s.vms {
		s.indexVm(name)
	}
	for id := range s.tasks {
		s.indexTask(id)
	}
}

// VmsOn returns the VMs assigned to node id that hold resources there
// (scheduled, starting, running or stopping), sorted by name. The records
// are the state's own: read them, never change them.
func (s *State) VmsOn(id uint64) []*apiv1.Vm {
	var out []*apiv1.Vm
	for _, name := range slices.Sorted(maps.Keys(s.ix.vmsOn[id])) {
		out = append(out, s.vms[name])
	}
	return out
}

// VmsToPlace returns the VMs that wait for a node: wanted running, running
// nowhere, and pending or restarted by their policy (see placeable), sorted
// by name. The records are the state's own: read them, never change them.
func (s *State) VmsToPlace() []*apiv1.Vm {
	var out []*apiv1.Vm
	for _, name := range slices.Sorted(maps.Keys(s.ix.toPlace)) {
		out = append(out, s.vms[name])
	}
	return out
}

// TasksOn returns the tasks that hold resources on node id — assigned,
// running, or cancelled while their VM has not ended — sorted by id. The
// records are the state's own: read them, never change them.
func (s *State) TasksOn(id uint64) []*apiv1.Task {
	var out []*apiv1.Task
	for _, tid := range slices.Sorted(maps.Keys(s.ix.tasksOn[id])) {
		out = append(out, s.tasks[tid])
	}
	return out
}

// PendingTasks returns the tasks waiting for a node, sorted by id, at most
// limit of them (all when limit is 0). The records are the state's own:
// read them, never change them.
func (s *State) PendingTasks(limit int) []*apiv1.Task {
	ids := slices.Sorted(maps.Keys(s.ix.pending))
	if limit > 0 && len(ids) > limit {
		ids = ids[:limit]
	}
	out := make([]*apiv1.Task, 0, len(ids))
	for _, tid := range ids {
		out = append(out, s.tasks[tid])
	}
	return out
}

// Allocated returns what the workloads placed on node id hold: VMs that are
// scheduled, starting, running or stopping, and tasks assigned or running
// (or cancelled while their VM has not ended yet).
func (s *State) Allocated(id uint64) *apiv1.Resources {
	r := &apiv1.Resources{}
	// Sums do not depend on iteration order.
	for name := range s.ix.vmsOn[id] {
		v := s.vms[name]
		r.Vcpus += v.GetSpec().GetVcpus()
		r.MemoryMib += v.GetSpec().GetMemoryMib()
	}
	for tid := range s.ix.tasksOn[id] {
		res := s.tasks[tid].GetSpec().GetResources()
		r.Vcpus += res.GetVcpus()
		r.MemoryMib += res.GetMemoryMib()
		r.DiskMib += res.GetDiskMib()
	}
	return r
}
