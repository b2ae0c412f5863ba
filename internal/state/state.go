package state

import (
	"slices"
	"sort"

	"google.golang.org/protobuf/proto"

	apiv1 "github.com/blixard/blixard/api/v1"
)

// MaxRequestRecords is how many client request ids, with their responses,
// the state remembers for idempotent retries.
const MaxRequestRecords = 10000

// MaxEndedTasks is how many ended tasks the state keeps, with their
// results; past it, the tasks that ended first are forgotten. Tasks that
// wait or run are never forgotten.
const MaxEndedTasks = 10000

// maxEndedTasks is MaxEndedTasks, a variable so that tests can reach it
// (export_test.go); nothing else changes it.
var maxEndedTasks = MaxEndedTasks

// MaxVmEvents is how many recent events a VM record keeps.
const MaxVmEvents = 16

// State is the replicated state machine. It is not safe for concurrent use:
// its owner (the core) is single-threaded.
type State struct {
	clusterID  string
	membership *apiv1.Membership
	// Invariant: applied strictly increases with every Apply*.
	applied uint64

	nodes map[uint64]*apiv1.Node
	vms   map[string]*apiv1.Vm
	tasks map[uint64]*apiv1.Task

	// requests maps a client request id to its record; requestLog holds the
	// same records in the order they were applied (oldest first).
	// Invariant: len(requests) == len(requestLog) <= MaxRequestRecords.
	requests   map[string]*apiv1.RequestRecord
	requestLog []*apiv1.RequestRecord

	// secure: joins need a join token. tokens holds the join and ACL
	// tokens; secVersion counts their changes and membership's (local).
	secure     bool
	tokens     map[tokenKey]*apiv1.Token
	secVersion uint64
	// The CA trust (ca.go): certificates newest first, and the rotation
	// under way.
	caCerts              [][]byte
	caSealed             []byte
	caPhase              apiv1.CARotationPhase
	caPhaseAt, caOverlap int64

	// events is the bounded event log (event.go), oldest first; notedTerm
	// the last term whose leader it noted.
	events    []*apiv1.Event
	notedTerm uint64

	// ix files the workloads by node and by need of placement (index.go).
	ix index
	// room counts the changes that may give a waiting workload a place
	// (local, see RoomVersion).
	room uint64
}

// New returns an empty state.
func New() *State {
	return &State{
		membership: &apiv1.Membership{},
		nodes:      map[uint64]*apiv1.Node{},
		vms:        map[string]*apiv1.Vm{},
		tasks:      map[uint64]*apiv1.Task{},
		requests:   map[string]*apiv1.RequestRecord{},
		tokens:     map[tokenKey]*apiv1.Token{},
		ix:         newIndex(),
	}
}

// AppliedIndex is the log index of the last entry applied.
func (s *State) AppliedIndex() uint64 { return s.applied }

// Cluster returns the cluster record.
func (s *State) Cluster() *apiv1.Cluster {
	return &apiv1.Cluster{
		Id:           s.clusterID,
		Membership:   proto.CloneOf(s.membership),
		AppliedIndex: s.applied,
		Secure:       s.secure,

		CaCertificates:         s.CATrust().Certificates,
		CaRotationPhase:        s.caPhase,
		CaRotationNextUnixNano: s.caNext(),
	}
}

// Node returns a copy of node id's record.
func (s *State) Node(id uint64) (*apiv1.Node, bool) {
	n, ok := s.nodes[id]
	if !ok {
		return nil, false
	}
	return proto.CloneOf(n), true
}

// Nodes returns copies of every node record, sorted by id.
func (s *State) Nodes() []*apiv1.Node {
	out := s.NodeRecords()
	for i, n := range out {
		out[i] = proto.CloneOf(n)
	}
	return out
}

// NodeRecords returns the node records sorted by id, without copying them:
// they are the state's own. Read them, never change them, and not after
// the state's next change.
func (s *State) NodeRecords() []*apiv1.Node {
	ids := make([]uint64, 0, len(s.nodes))
	for id := range s.nodes {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	out := make([]*apiv1.Node, len(ids))
	for i, id := range ids {
		out[i] = s.nodes[id]
	}
	return out
}

// Vm returns a copy of the VM named name.
func (s *State) Vm(name string) (*apiv1.Vm, bool) {
	v, ok := s.vms[name]
	if !ok {
		return nil, false
	}
	return proto.CloneOf(v), true
}

// Vms returns copies of the first limit VMs by name (all when limit is 0).
func (s *State) Vms(limit int) []*apiv1.Vm {
	names := make([]string, 0, len(s.vms))
	for name := range s.vms {
		names = append(names, name)
	}
	sort.Strings(names)
	if limit > 0 && limit < len(names) {
		names = names[:limit]
	}
	out := make([]*apiv1.Vm, len(names))
	for i, name := range names {
		out[i] = proto.CloneOf(s.vms[name])
	}
	return out
}

// Task returns a copy of task id.
func (s *State) Task(id uint64) (*apiv1.Task, bool) {
	t, ok := s.tasks[id]
	if !ok {
		return nil, false
	}
	return proto.CloneOf(t), true
}

// Tasks returns copies of the first limit tasks by id (all when limit is 0).
func (s *State) Tasks(limit int) []*apiv1.Task {
	ids := s.taskIDs()
	if limit > 0 && limit < len(ids) {
		ids = ids[:limit]
	}
	out := make([]*apiv1.Task, len(ids))
	for i, id := range ids {
		out[i] = proto.CloneOf(s.tasks[id])
	}
	return out
}

func (s *State) taskIDs() []uint64 {
	ids := make([]uint64, 0, len(s.tasks))
	for id := range s.tasks {
		ids = append(ids, id)
	}
	sort.Slice(ids, func(i, j int) bool { return ids[i] < ids[j] })
	return ids
}

// Response returns the remembered response to a client request id.
func (s *State) Response(clientRequestID string) (*apiv1.Response, bool) {
	r, ok := s.requests[clientRequestID]
	if !ok {
		return nil, false
	}
	return proto.CloneOf(r.GetResponse()), true
}

// RequestRecords is how many client request ids are remembered.
func (s *State) RequestRecords() int { return len(s.requestLog) }

func holdsResources(st apiv1.VmState) bool {
	switch st {
	case apiv1.VmState_VM_STATE_SCHEDULED, apiv1.VmState_VM_STATE_STARTING,
		apiv1.VmState_VM_STATE_RUNNING, apiv1.VmState_VM_STATE_STOPPING:
		return true
	}
	return false
}

// taskHolds: a task holds its resources on its node while it is assigned
// or running, and once cancelled there until its node reports that its VM
// has ended (the cancel does not stop it at once).
func taskHolds(t *apiv1.Task) bool {
	switch t.GetStatus() {
	case apiv1.TaskStatus_TASK_STATUS_ASSIGNED, apiv1.TaskStatus_TASK_STATUS_RUNNING:
		return true
	case apiv1.TaskStatus_TASK_STATUS_CANCELLED:
		return t.GetNodeId() != 0 && t.GetResult().GetFinishedUnixNano() == 0
	}
	return false
}
