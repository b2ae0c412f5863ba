package state

import (
	"cmp"
	"iter"
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
	vmNode map[string]filed
	// toPlace: VMs wanted running that run nowhere.
	toPlace sortedSet[string]
	// tasksOn: per node, the tasks that hold resources there (taskHolds);
	// taskNode is where each is filed.
	tasksOn  map[uint64]map[uint64]struct{}
	taskNode map[uint64]filed
	// used: per node, the sum of what the workloads filed there hold.
	used map[uint64]use
	// pending: tasks waiting for a node.
	pending sortedSet[uint64]
	// ended: the tasks that have ended and hold nothing, which the state
	// forgets beyond MaxEndedTasks, oldest end first (see forgetEnded).
	ended endedQueue
}

func newIndex() index {
	return index{
		vmsOn: map[uint64]map[string]struct{}{}, vmNode: map[string]filed{}, toPlace: newSortedSet[string](),
		tasksOn: map[uint64]map[uint64]struct{}{}, taskNode: map[uint64]filed{}, pending: newSortedSet[uint64](),
		used:  map[uint64]use{},
		ended: endedQueue{at: map[uint64]uint64{}},
	}
}

// endedQueue holds the ended tasks that hold nothing, to be forgotten in
// the order of their ends: by the log index of the entry that ended them
// (the task's UpdatedIndex), then by id. The order is a function of the
// records alone, so a node restored from a snapshot forgets what one that
// applied the log forgets. (Nothing changes an ended task's UpdatedIndex;
// were it to, add files the task anew by it all the same.)
type endedQueue struct {
	// at is each queued task's end index. order holds the queue, sorted
	// unless stale; it may also hold entries that at no longer matches,
	// which pop passes over.
	at    map[uint64]uint64
	order []endedTask
	stale bool
}

type endedTask struct{ at, id uint64 }

func (e endedTask) compare(o endedTask) int {
	return cmp.Or(cmp.Compare(e.at, o.at), cmp.Compare(e.id, o.id))
}

func (q *endedQueue) len() int { return len(q.at) }

// add queues t, or files it anew at t.at if it is queued at another index.
func (q *endedQueue) add(t endedTask) {
	if at, ok := q.at[t.id]; ok && at == t.at {
		return
	}
	q.at[t.id] = t.at
	if n := len(q.order); n > 0 && q.order[n-1].compare(t) >= 0 {
		q.stale = true
	}
	q.order = append(q.order, t)
}

// pop takes the task that ended first out of the queue; the queue must not
// be empty.
func (q *endedQueue) pop() uint64 {
	if q.stale {
		slices.SortFunc(q.order, endedTask.compare)
		q.stale = false
	}
	for {
		t := q.order[0]
		q.order = q.order[1:]
		if at, ok := q.at[t.id]; ok && at == t.at {
			delete(q.at, t.id)
			return t.id
		}
	}
}

// sortedSet is a set that is read in order on every placement pass: it
// keeps its members in a slice sorted when read after a change, so that a
// read with no change between costs nothing.
type sortedSet[K cmp.Ordered] struct {
	has map[K]struct{}
	// order holds has's keys, sorted, unless stale: then it may also hold
	// keys no longer in has (or twice), or be out of order.
	order []K
	stale bool
}

func newSortedSet[K cmp.Ordered]() sortedSet[K] { return sortedSet[K]{has: map[K]struct{}{}} }

func (s *sortedSet[K]) contains(k K) bool {
	_, ok := s.has[k]
	return ok
}

// set puts k in the set or takes it out.
func (s *sortedSet[K]) set(k K, in bool) {
	switch was := s.contains(k); {
	case in && !was:
		s.has[k] = struct{}{}
		if n := len(s.order); n > 0 && s.order[n-1] >= k {
			s.stale = true
		}
		s.order = append(s.order, k)
	case !in && was:
		delete(s.has, k)
		s.stale = true
	}
	if len(s.order) > 2*len(s.has)+64 {
		// Put right now and then even when nobody reads the set (a
		// follower never places): what was taken out must not pile up.
		s.sorted()
	}
}

// sorted returns the members in order. The slice is the set's own: read
// it before the next change.
func (s *sortedSet[K]) sorted() []K {
	if s.stale {
		keys := slices.DeleteFunc(s.order, func(k K) bool { return !s.contains(k) })
		slices.Sort(keys)
		s.order = slices.Compact(keys)
		s.stale = false
	}
	return s.order
}

// use is what a workload holds on its node, or the sum on one node.
type use struct {
	vcpus              uint32
	memoryMiB, diskMiB uint64
}

// filed is where a workload is filed, and what it holds there.
type filed struct {
	node uint64
	use  use
}

// file puts key, which holds u, in node's set of on, notes in where that
// it is there, and adds u to the node's sum.
func file[K comparable](ix *index, on map[uint64]map[K]struct{}, where map[K]filed, node uint64, key K, u use) {
	if on[node] == nil {
		on[node] = map[K]struct{}{}
	}
	on[node][key] = struct{}{}
	where[key] = filed{node: node, use: u}
	sum := ix.used[node]
	sum.vcpus += u.vcpus
	sum.memoryMiB += u.memoryMiB
	sum.diskMiB += u.diskMiB
	ix.used[node] = sum
}

// unfile takes key out of whichever node's set of on holds it, and what
// it held out of the node's sum.
func unfile[K comparable](ix *index, on map[uint64]map[K]struct{}, where map[K]filed, key K) {
	f, ok := where[key]
	if !ok {
		return
	}
	delete(on[f.node], key)
	if len(on[f.node]) == 0 {
		delete(on, f.node)
	}
	delete(where, key)
	sum := ix.used[f.node]
	sum.vcpus -= f.use.vcpus
	sum.memoryMiB -= f.use.memoryMiB
	sum.diskMiB -= f.use.diskMiB
	if sum == (use{}) {
		delete(ix.used, f.node)
	} else {
		ix.used[f.node] = sum
	}
}

// indexVm files VM name as its record (or its absence) now says.
func (s *State) indexVm(name string) {
	ix := &s.ix
	was, held := ix.vmNode[name]
	defer func() {
		if now, holds := ix.vmNode[name]; held && (!holds || now.node != was.node) {
			s.room++ // it left node was: room there
		}
	}()
	unfile(ix, ix.vmsOn, ix.vmNode, name)
	waits := false
	if v, ok := s.vms[name]; ok {
		switch {
		case holdsResources(v.GetState()):
			file(ix, ix.vmsOn, ix.vmNode, v.GetNodeId(), name, use{vcpus: v.GetSpec().GetVcpus(), memoryMiB: v.GetSpec().GetMemoryMib()})
		case v.GetDesiredState() == apiv1.VmDesiredState_VM_DESIRED_STATE_RUNNING && placeable(v):
			waits = true
		}
	}
	ix.toPlace.set(name, waits)
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
	was, held := ix.taskNode[id]
	waited := ix.pending.contains(id)
	unfile(ix, ix.tasksOn, ix.taskNode, id)
	waits := false
	if t, ok := s.tasks[id]; ok {
		switch {
		case t.GetStatus() == apiv1.TaskStatus_TASK_STATUS_PENDING:
			waits = true
		case taskHolds(t):
			res := t.GetSpec().GetResources()
			file(ix, ix.tasksOn, ix.taskNode, t.GetNodeId(), id, use{vcpus: res.GetVcpus(), memoryMiB: res.GetMemoryMib(), diskMiB: res.GetDiskMib()})
		}
	}
	ix.pending.set(id, waits)
	if now, holds := ix.taskNode[id]; held && (!holds || now.node != was.node) {
		s.room++ // it left node was: room there
	}
	if waits && !waited && id != s.applied {
		// Back in the queue (not submitted by this entry): a placer that
		// has gone past it must look again.
		s.room++
	}
	if t, ok := s.tasks[id]; ok && t.GetStatus().Ended() && !taskHolds(t) {
		ix.ended.add(endedTask{at: t.GetUpdatedIndex(), id: id})
	}
}

// forgetEnded removes the tasks that ended first while more than
// MaxEndedTasks ended tasks are kept. Apply calls it after every command;
// a restored state keeps what its snapshot held until then.
func (s *State) forgetEnded() {
	for s.ix.ended.len() > maxEndedTasks {
		delete(s.tasks, s.ix.ended.pop())
	}
}

// pendingIDs returns the ids of the tasks waiting for a node, sorted. The
// slice is the index's own: read it before the next change.
func (s *State) pendingIDs() []uint64 { return s.ix.pending.sorted() }

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
	s.room++
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
	names := s.ix.toPlace.sorted()
	out := make([]*apiv1.Vm, 0, len(names))
	for _, name := range names {
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
	ids := s.pendingIDs()
	if limit > 0 && len(ids) > limit {
		ids = ids[:limit]
	}
	out := make([]*apiv1.Task, 0, len(ids))
	for _, tid := range ids {
		out = append(out, s.tasks[tid])
	}
	return out
}

// PendingTasksFrom yields the tasks waiting for a node in id order, from
// the first whose id is at least from, wrapping round to the lowest: a
// reader that stops early can go on where it stopped next time. It reads
// without copying; the state must not change while it yields. The records
// are the state's own: read them, never change them.
func (s *State) PendingTasksFrom(from uint64) iter.Seq[*apiv1.Task] {
	return func(yield func(*apiv1.Task) bool) {
		ids := s.pendingIDs()
		start, _ := slices.BinarySearch(ids, from)
		for i := range ids {
			if !yield(s.tasks[ids[(start+i)%len(ids)]]) {
				return
			}
		}
	}
}

// PendingTasksThrough counts the tasks waiting for a node whose ids are
// at most id.
func (s *State) PendingTasksThrough(id uint64) int {
	n, found := slices.BinarySearch(s.pendingIDs(), id)
	if found {
		n++
	}
	return n
}

// RoomVersion changes whenever a workload that waits for a node may have
// gained a place: a VM or a task left the node it held resources on, a
// node's record changed (registration, status, drain) or the membership
// did. A placement that found no room can wait for it to change. It also
// changes when a task waits again that had waited before (a retry): the
// only tasks that start to wait without changing it are new ones, whose
// ids are higher than any task's before them. It counts on this node only
// (it is not replicated): compare it only with what this same State
// returned.
func (s *State) RoomVersion() uint64 { return s.room }

// PendingTask returns task id if it waits for a node, without copying it:
// the record is the state's own. Read it, never change it.
func (s *State) PendingTask(id uint64) (*apiv1.Task, bool) {
	if !s.ix.pending.contains(id) {
		return nil, false
	}
	return s.tasks[id], true
}

// TaskWaits reports whether task id waits for a node at attempt, and the
// reason the state shows for it, without copying the record.
func (s *State) TaskWaits(id uint64, attempt uint32) (reason string, waits bool) {
	if !s.ix.pending.contains(id) || s.tasks[id].GetAttempt() != attempt {
		return "", false
	}
	return s.tasks[id].GetReason(), true
}

// VmWaits reports whether VM name waits for a node at generation gen, and
// the reason the state shows for it, without copying the record.
func (s *State) VmWaits(name string, gen uint64) (reason string, waits bool) {
	if !s.ix.toPlace.contains(name) || s.vms[name].GetGeneration() != gen {
		return "", false
	}
	return s.vms[name].GetReason(), true
}

// Allocated returns what the workloads placed on node id hold: VMs that are
// scheduled, starting, running or stopping, and tasks assigned or running
// (or cancelled while their VM has not ended yet).
func (s *State) Allocated(id uint64) *apiv1.Resources {
	u := s.ix.used[id]
	return &apiv1.Resources{Vcpus: u.vcpus, MemoryMib: u.memoryMiB, DiskMib: u.diskMiB}
}
