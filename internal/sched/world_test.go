package sched_test

import (
	"errors"
	"slices"
	"strconv"

	apiv1 "github.com/blixard/blixard/api/v1"
	"github.com/blixard/blixard/internal/sched"
	"github.com/blixard/blixard/internal/state"
)

// tb is what the helpers need of a *testing.T or a *rapid.T.
type tb interface {
	Helper()
	Fatalf(format string, args ...any)
	Errorf(format string, args ...any)
}

// world is a real state machine that tests drive with commands at
// consecutive log indexes, as the core does.
type world struct {
	t   tb
	st  *state.State
	idx uint64
	// members are the node ids registered so far, in the Raft membership.
	members []uint64
}

func newWorld(t tb) *world {
	return &world{t: t, st: state.New()}
}

func (w *world) next() uint64 {
	w.idx++
	return w.idx
}

// try applies cmd and returns Apply's error.
func (w *world) try(cmd *apiv1.Command) error {
	_, err := w.st.Apply(w.next(), cmd)
	return err
}

// ok applies cmd and fails the test unless the state accepts it.
func (w *world) ok(cmd *apiv1.Command) *apiv1.Response {
	w.t.Helper()
	resp, err := w.st.Apply(w.next(), cmd)
	if err != nil {
		w.t.Fatalf("Apply(%v) = %v", cmd, err)
	}
	return resp
}

// nodeSpec is a node to register; zero fields take the defaults of node.
type nodeSpec struct {
	id       uint64
	vcpus    uint32
	memMiB   uint64
	diskMiB  uint64
	features []string
	labels   map[string]string
	images   []*apiv1.ImageInfo
	// vcpuOver and memOver are the overcommit ratios (0 means 1.0).
	vcpuOver, memOver float64
}

func defaultImages() []*apiv1.ImageInfo {
	return []*apiv1.ImageInfo{{Name: "default", Digest: "sha256:x", MinMemoryMib: 64}}
}

// node registers n as a voter.
func (w *world) node(n nodeSpec) {
	w.t.Helper()
	if n.images == nil {
		n.images = defaultImages()
	}
	w.members = append(w.members, n.id)
	w.st.ApplyMembership(w.next(), w.members, nil)
	w.ok(&apiv1.Command{Op: &apiv1.Command_RegisterNode{RegisterNode: &apiv1.RegisterNodeCommand{
		Id:               n.id,
		Address:          "127.0.0.1:" + strconv.FormatUint(7000+n.id, 10),
		Role:             apiv1.NodeRole_NODE_ROLE_VOTER,
		Capacity:         &apiv1.Resources{Vcpus: n.vcpus, MemoryMib: n.memMiB, DiskMib: n.diskMiB, Features: n.features},
		Labels:           n.labels,
		Images:           n.images,
		VcpuOvercommit:   n.vcpuOver,
		MemoryOvercommit: n.memOver,
	}}})
}

// nodes registers ids 1..len(vcpus), node i with vcpus[i-1] vCPUs, 2 GiB
// of memory per vCPU, 100,000 MiB of disk and feature kvm.
func (w *world) nodes(vcpus ...uint32) {
	w.t.Helper()
	for i, v := range vcpus {
		w.node(nodeSpec{id: uint64(i + 1), vcpus: v, memMiB: uint64(v) * 2048, diskMiB: 100000, features: []string{"kvm"}})
	}
}

func (w *world) setStatus(id uint64, s apiv1.NodeStatus) {
	w.t.Helper()
	w.ok(&apiv1.Command{Op: &apiv1.Command_SetNodeStatus{SetNodeStatus: &apiv1.SetNodeStatusCommand{Id: id, Status: s, Reason: "test"}}})
}

func (w *world) drain(id uint64) {
	w.t.Helper()
	w.ok(&apiv1.Command{Op: &apiv1.Command_DrainNode{DrainNode: &apiv1.DrainNodeCommand{Id: id, Drain: true}}})
}

// leave takes node id out of the Raft membership: the state marks it left.
func (w *world) leave(id uint64) {
	w.members = slices.DeleteFunc(w.members, func(m uint64) bool { return m == id })
	w.st.ApplyMembership(w.next(), w.members, nil)
}

func vmSpec(vcpus uint32, memMiB uint64) *apiv1.VmSpec {
	return &apiv1.VmSpec{Vcpus: vcpus, MemoryMib: memMiB}
}

// vm creates VM name of spec, wanted running, and returns its record.
func (w *world) vm(name string, spec *apiv1.VmSpec) *apiv1.Vm {
	w.t.Helper()
	w.ok(&apiv1.Command{Op: &apiv1.Command_CreateVm{CreateVm: &apiv1.CreateVmCommand{Name: name, Spec: spec, Start: true}}})
	return w.get(name)
}

func (w *world) get(name string) *apiv1.Vm {
	w.t.Helper()
	v, ok := w.st.Vm(name)
	if !ok {
		w.t.Fatalf("no VM %q", name)
	}
	return v
}

func assignVm(v *apiv1.Vm, node uint64) *apiv1.Command {
	return &apiv1.Command{Op: &apiv1.Command_AssignVm{AssignVm: &apiv1.AssignVmCommand{Name: v.GetName(), NodeId: node, Generation: v.GetGeneration()}}}
}

// assign places VM name on node through the state machine.
func (w *world) assign(name string, node uint64) {
	w.t.Helper()
	w.ok(assignVm(w.get(name), node))
}

// task submits a task of spec and returns its record.
func (w *world) task(res *apiv1.Resources) *apiv1.Task {
	w.t.Helper()
	w.ok(&apiv1.Command{Op: &apiv1.Command_SubmitTask{SubmitTask: &apiv1.SubmitTaskCommand{Spec: &apiv1.TaskSpec{Command: "true", Resources: res}}}})
	t, ok := w.st.Task(w.idx)
	if !ok {
		w.t.Fatalf("no task %d", w.idx)
	}
	return t
}

func assignTask(t *apiv1.Task, node uint64) *apiv1.Command {
	return &apiv1.Command{Op: &apiv1.Command_AssignTask{AssignTask: &apiv1.AssignTaskCommand{Id: t.GetId(), NodeId: node}}}
}

// placement is one answer of Place.
type placement struct {
	node uint64
	err  string
}

// placeAll places and commits every request in turn and returns the answers.
func placeAll(c *sched.Cluster, reqs []sched.Request) []placement {
	out := make([]placement, len(reqs))
	for i, r := range reqs {
		node, err := c.Place(r)
		if err != nil {
			out[i].err = err.Error()
			continue
		}
		c.Commit(node, r)
		out[i].node = node
	}
	return out
}

// unplaceable returns err's reason, failing the test unless err is an
// *Unplaceable.
func unplaceable(t tb, err error) string {
	t.Helper()
	var u *sched.Unplaceable
	if !errors.As(err, &u) {
		t.Fatalf("err = %v (%T), want *sched.Unplaceable", err, err)
	}
	if len(u.Reason) > sched.MaxReasonLen {
		t.Errorf("reason is %d bytes, more than %d: %q", len(u.Reason), sched.MaxReasonLen, u.Reason)
	}
	return u.Reason
}
