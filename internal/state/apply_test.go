package state_test

import (
	"bytes"
	"errors"
	"fmt"
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"

	apiv1 "github.com/blixard/blixard/api/v1"
	"github.com/blixard/blixard/internal/state"
)

// Short names for the codes the tests expect.
const (
	codeInvalid   = apiv1.ErrorCode_ERROR_CODE_INVALID_ARGUMENT
	codeNotFound  = apiv1.ErrorCode_ERROR_CODE_NOT_FOUND
	codeExists    = apiv1.ErrorCode_ERROR_CODE_ALREADY_EXISTS
	codePrecond   = apiv1.ErrorCode_ERROR_CODE_FAILED_PRECONDITION
	codeExhausted = apiv1.ErrorCode_ERROR_CODE_RESOURCE_EXHAUSTED
)

// ---- command builders -------------------------------------------------------

func withID(id string, c *apiv1.Command) *apiv1.Command {
	c.ClientRequestId = id
	return c
}

func initCluster(id string) *apiv1.Command {
	return &apiv1.Command{Op: &apiv1.Command_InitCluster{InitCluster: &apiv1.InitClusterCommand{ClusterId: id}}}
}

func registerNode(id uint64, vcpus uint32, memMiB uint64, labels map[string]string) *apiv1.Command {
	return &apiv1.Command{Op: &apiv1.Command_RegisterNode{RegisterNode: &apiv1.RegisterNodeCommand{
		Id:       id,
		Address:  fmt.Sprintf("10.0.0.%d:7000", id),
		Role:     apiv1.NodeRole_NODE_ROLE_VOTER,
		Capacity: &apiv1.Resources{Vcpus: vcpus, MemoryMib: memMiB, DiskMib: 100000, Features: []string{"kvm"}},
		Labels:   labels,
		Images:   testImages(),
	}}}
}

// testImages are the images every test node offers.
func testImages() []*apiv1.ImageInfo {
	return []*apiv1.ImageInfo{
		{Name: "default", Digest: "sha256:00", MinMemoryMib: 64},
		{Name: "ubuntu-24.04", Digest: "sha256:01", MinMemoryMib: 64},
	}
}

func vmSpec(vcpus uint32, memMiB uint64) *apiv1.VmSpec {
	return &apiv1.VmSpec{Vcpus: vcpus, MemoryMib: memMiB, Image: "ubuntu-24.04"}
}

func createVm(name string, spec *apiv1.VmSpec, start bool) *apiv1.Command {
	return &apiv1.Command{Op: &apiv1.Command_CreateVm{CreateVm: &apiv1.CreateVmCommand{Name: name, Spec: spec, Start: start}}}
}

func startVm(name string) *apiv1.Command {
	return &apiv1.Command{Op: &apiv1.Command_StartVm{StartVm: &apiv1.StartVmCommand{Name: name}}}
}

func stopVm(name string) *apiv1.Command {
	return &apiv1.Command{Op: &apiv1.Command_StopVm{StopVm: &apiv1.StopVmCommand{Name: name}}}
}

func deleteVm(name string) *apiv1.Command {
	return &apiv1.Command{Op: &apiv1.Command_DeleteVm{DeleteVm: &apiv1.DeleteVmCommand{Name: name}}}
}

func assignVm(name string, node, gen uint64) *apiv1.Command {
	return &apiv1.Command{Op: &apiv1.Command_AssignVm{AssignVm: &apiv1.AssignVmCommand{Name: name, NodeId: node, Generation: gen}}}
}

func reportVm(name string, node, gen uint64, st apiv1.VmState) *apiv1.Command {
	return &apiv1.Command{Op: &apiv1.Command_ReportVm{ReportVm: &apiv1.ReportVmCommand{
		Name: name, NodeId: node, Generation: gen, State: st, Reason: "hypervisor says " + st.String(),
	}}}
}

func taskSpec(command string, vcpus uint32, memMiB uint64) *apiv1.TaskSpec {
	return &apiv1.TaskSpec{
		Command:   command,
		Args:      []string{"-c", "echo hi"},
		Env:       map[string]string{"LANG": "C"},
		Resources: &apiv1.Resources{Vcpus: vcpus, MemoryMib: memMiB},
		TimeoutMs: 60000,
	}
}

func submitTask(spec *apiv1.TaskSpec) *apiv1.Command {
	return &apiv1.Command{Op: &apiv1.Command_SubmitTask{SubmitTask: &apiv1.SubmitTaskCommand{Spec: spec}}}
}

func cancelTask(id uint64) *apiv1.Command {
	return &apiv1.Command{Op: &apiv1.Command_CancelTask{CancelTask: &apiv1.CancelTaskCommand{Id: id}}}
}

func assignTask(id, node uint64) *apiv1.Command {
	return &apiv1.Command{Op: &apiv1.Command_AssignTask{AssignTask: &apiv1.AssignTaskCommand{Id: id, NodeId: node}}}
}

func reportTask(id, node uint64, attempt uint32, st apiv1.TaskStatus, result *apiv1.TaskResult) *apiv1.Command {
	return &apiv1.Command{Op: &apiv1.Command_ReportTask{ReportTask: &apiv1.ReportTaskCommand{
		Id: id, NodeId: node, Attempt: attempt, Status: st, Result: result,
	}}}
}

// ---- harness ----------------------------------------------------------------

// harness applies commands to a state at consecutive log indexes.
type harness struct {
	t   testing.TB
	s   *state.State
	idx uint64
}

func newHarness(t testing.TB) *harness {
	return &harness{t: t, s: state.New()}
}

func (h *harness) next() uint64 {
	h.idx++
	return h.idx
}

func (h *harness) apply(cmd *apiv1.Command) (*apiv1.Response, error) {
	return h.s.Apply(h.next(), cmd)
}

// ok applies cmd and fails the test unless it is accepted.
func (h *harness) ok(cmd *apiv1.Command) *apiv1.Response {
	h.t.Helper()
	if err := h.s.Check(cmd); err != nil {
		h.t.Fatalf("Check(%v) = %v, want nil", cmd, err)
	}
	resp, err := h.apply(cmd)
	if err != nil {
		h.t.Fatalf("Apply(%d, %v) = %v", h.idx, cmd, err)
	}
	if resp.GetError() != nil {
		h.t.Fatalf("Apply(%d, %v): response carries error %v", h.idx, cmd, resp.GetError())
	}
	if h.s.AppliedIndex() != h.idx {
		h.t.Fatalf("AppliedIndex = %d, want %d", h.s.AppliedIndex(), h.idx)
	}
	return resp
}

func (h *harness) membership(voters, learners []uint64) uint64 {
	idx := h.next()
	h.s.ApplyMembership(idx, voters, learners)
	return idx
}

func (h *harness) vm(name string) *apiv1.Vm {
	h.t.Helper()
	v, ok := h.s.Vm(name)
	if !ok {
		h.t.Fatalf("VM %q not found", name)
	}
	return v
}

// gen is VM name's generation now: what an assignment or a report must
// carry. A VM's generations start at the log index of its creation.
func (h *harness) gen(name string) uint64 {
	h.t.Helper()
	return h.vm(name).GetGeneration()
}

// created is the log index at which VM name was created, which is also its
// first generation.
func (h *harness) created(name string) uint64 {
	h.t.Helper()
	return h.vm(name).GetCreatedIndex()
}

// assign places VM name on node at its current generation.
func (h *harness) assign(name string, node uint64) *apiv1.Command {
	h.t.Helper()
	return assignVm(name, node, h.gen(name))
}

// report is node's report of VM name at its current generation.
func (h *harness) report(name string, node uint64, st apiv1.VmState) *apiv1.Command {
	h.t.Helper()
	return reportVm(name, node, h.gen(name), st)
}

func (h *harness) task(id uint64) *apiv1.Task {
	h.t.Helper()
	tk, ok := h.s.Task(id)
	if !ok {
		h.t.Fatalf("task %d not found", id)
	}
	return tk
}

func (h *harness) node(id uint64) *apiv1.Node {
	h.t.Helper()
	n, ok := h.s.Node(id)
	if !ok {
		h.t.Fatalf("node %d not found", id)
	}
	return n
}

// submit submits a task and returns its id, checking that it is the index.
func (h *harness) submit(spec *apiv1.TaskSpec) uint64 {
	h.t.Helper()
	resp := h.ok(submitTask(spec))
	id := resp.GetSubmitTask().GetTask().GetId()
	if id != h.idx {
		h.t.Fatalf("submitted task id = %d, want the log index %d", id, h.idx)
	}
	return id
}

// fataler is what the helpers need of a *testing.T or *rapid.T.
type fataler interface {
	Helper()
	Fatalf(format string, args ...any)
}

// records is everything but the applied index: a snapshot decoded, with the
// applied index zeroed.
func records(t fataler, s *state.State) *apiv1.StateSnapshot {
	t.Helper()
	b, err := s.Snapshot()
	if err != nil {
		t.Fatalf("Snapshot: %v", err)
	}
	var snap apiv1.StateSnapshot
	if err := proto.Unmarshal(b, &snap); err != nil {
		t.Fatalf("decode snapshot: %v", err)
	}
	snap.Cluster.AppliedIndex = 0
	return &snap
}

// view is what the queries show of a state, but for the applied index.
type view struct {
	nodes      []*apiv1.Node
	vms        []*apiv1.Vm
	tasks      []*apiv1.Task
	clusterID  string
	membership *apiv1.Membership
	requests   int
	alloc      map[uint64]*apiv1.Resources
}

func viewOf(s *state.State) view {
	v := view{
		nodes:      s.Nodes(),
		vms:        s.Vms(0),
		tasks:      s.Tasks(0),
		clusterID:  s.Cluster().GetId(),
		membership: s.Cluster().GetMembership(),
		requests:   s.RequestRecords(),
		alloc:      map[uint64]*apiv1.Resources{},
	}
	for _, n := range v.nodes {
		v.alloc[n.GetId()] = s.Allocated(n.GetId())
	}
	return v
}

func protoSliceEqual[M proto.Message](a, b []M) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if !proto.Equal(a[i], b[i]) {
			return false
		}
	}
	return true
}

func (v view) diff(w view) string {
	switch {
	case !protoSliceEqual(v.nodes, w.nodes):
		return fmt.Sprintf("nodes differ:\n%v\n%v", v.nodes, w.nodes)
	case !protoSliceEqual(v.vms, w.vms):
		return fmt.Sprintf("VMs differ:\n%v\n%v", v.vms, w.vms)
	case !protoSliceEqual(v.tasks, w.tasks):
		return fmt.Sprintf("tasks differ:\n%v\n%v", v.tasks, w.tasks)
	case v.clusterID != w.clusterID:
		return fmt.Sprintf("cluster ids differ: %q %q", v.clusterID, w.clusterID)
	case !proto.Equal(v.membership, w.membership):
		return fmt.Sprintf("memberships differ: %v %v", v.membership, w.membership)
	case v.requests != w.requests:
		return fmt.Sprintf("request records differ: %d %d", v.requests, w.requests)
	}
	for id, a := range v.alloc {
		if !proto.Equal(a, w.alloc[id]) {
			return fmt.Sprintf("allocation of node %d differs: %v %v", id, a, w.alloc[id])
		}
	}
	return ""
}

// wantErr checks that err is a *state.Error with code and field.
func wantErr(t fataler, err error, code apiv1.ErrorCode, field string) {
	t.Helper()
	var se *state.Error
	if !errors.As(err, &se) {
		t.Fatalf("error %v (%T) is not a *state.Error", err, err)
	}
	if se.Code != code || se.Field != field {
		t.Fatalf("error = %v (code %v, field %q), want code %v field %q", se, se.Code, se.Field, code, field)
	}
	if se.Error() == "" || se.Msg == "" {
		t.Fatalf("error %+v has no message", se)
	}
}

// reject applies cmd, which must be refused with code and field, and checks
// that nothing but the applied index moved.
func (h *harness) reject(cmd *apiv1.Command, code apiv1.ErrorCode, field string) *apiv1.Response {
	h.t.Helper()
	beforeRecords := records(h.t, h.s)
	beforeView := viewOf(h.s)
	checkErr := h.s.Check(cmd)

	idx := h.next()
	resp, err := h.s.Apply(idx, cmd)

	wantErr(h.t, err, code, field)
	// Check is Apply's validation without the mutation.
	wantErr(h.t, checkErr, code, field)
	pe := resp.GetError()
	if pe == nil || pe.GetCode() != code || pe.GetField() != field || pe.GetMessage() == "" {
		h.t.Fatalf("response error = %v, want code %v field %q and a message", pe, code, field)
	}
	if resp.GetKind() != nil {
		h.t.Fatalf("rejected response carries a result: %v", resp)
	}
	if h.s.AppliedIndex() != idx {
		h.t.Fatalf("AppliedIndex = %d, want %d", h.s.AppliedIndex(), idx)
	}
	if cmd.GetClientRequestId() == "" {
		if after := records(h.t, h.s); !proto.Equal(beforeRecords, after) {
			h.t.Fatalf("rejected %v changed the snapshot:\nbefore %v\nafter  %v", cmd, beforeRecords, after)
		}
		if d := beforeView.diff(viewOf(h.s)); d != "" {
			h.t.Fatalf("rejected %v changed the state: %s", cmd, d)
		}
	}
	return resp
}

// ---- fixture used by the rejection and acceptance tables -------------------

type fixture struct {
	*harness
	pendingTask, runningTask, doneTask, cancelledTask, bigTask uint64
}

// newFixture builds a small cluster:
//
//	nodes 1 (zone=a) and 2 (zone=b), 8 vCPUs / 8192 MiB each; node 3 removed (left)
//	VMs:   stopped  — created, not started
//	       pending  — wants to run, unplaced, at the generation of its creation
//	       running  — on node 1, placed once (created+1), 2 vCPUs, anti-affinity group "web"
//	       deleting — on node 2, placed once (created+1), deleted while running: stopping
//	       pinned   — pending, constrained to zone=c (no such node)
//	       web2     — pending, anti-affinity group "web"
//	       big      — pending, 8 vCPUs (fits on no node now)
//	tasks: pending, running (node 1, attempt 1), done (succeeded), cancelled,
//	       big (pending, 8 vCPUs)
func newFixture(t testing.TB) *fixture {
	t.Helper()
	f := &fixture{harness: newHarness(t)}
	f.ok(initCluster("c1"))
	f.membership([]uint64{1, 2, 3}, nil)
	f.ok(registerNode(1, 8, 8192, map[string]string{"zone": "a"}))
	f.ok(registerNode(2, 8, 8192, map[string]string{"zone": "b"}))
	f.ok(registerNode(3, 8, 8192, nil))
	f.membership([]uint64{1, 2}, nil)

	f.ok(createVm("stopped", vmSpec(1, 512), false))
	f.ok(createVm("pending", vmSpec(1, 512), true))

	web := vmSpec(2, 1024)
	web.AntiAffinityGroup = "web"
	f.ok(createVm("running", web, true))
	f.ok(f.assign("running", 1))
	f.ok(f.report("running", 1, apiv1.VmState_VM_STATE_RUNNING))

	f.ok(createVm("deleting", vmSpec(1, 512), true))
	f.ok(f.assign("deleting", 2))
	f.ok(f.report("deleting", 2, apiv1.VmState_VM_STATE_RUNNING))
	f.ok(deleteVm("deleting"))

	pinned := vmSpec(1, 512)
	pinned.Constraints = map[string]string{"zone": "c"}
	f.ok(createVm("pinned", pinned, true))
	web2 := vmSpec(1, 512)
	web2.AntiAffinityGroup = "web"
	f.ok(createVm("web2", web2, true))
	f.ok(createVm("big", vmSpec(8, 1024), true))

	f.pendingTask = f.submit(taskSpec("true", 1, 256))
	f.runningTask = f.submit(taskSpec("sleep", 1, 256))
	f.ok(assignTask(f.runningTask, 1))
	f.ok(reportTask(f.runningTask, 1, 1, apiv1.TaskStatus_TASK_STATUS_RUNNING, nil))
	f.doneTask = f.submit(taskSpec("echo", 1, 256))
	f.ok(assignTask(f.doneTask, 1))
	f.ok(reportTask(f.doneTask, 1, 1, apiv1.TaskStatus_TASK_STATUS_SUCCEEDED, &apiv1.TaskResult{ExitCode: 0}))
	f.cancelledTask = f.submit(taskSpec("true", 1, 256))
	f.ok(cancelTask(f.cancelledTask))
	f.bigTask = f.submit(taskSpec("make", 8, 256))

	// Sanity: the fixture is what the comment says.
	if st := f.vm("deleting").GetState(); st != apiv1.VmState_VM_STATE_STOPPING {
		t.Fatalf("fixture: deleting is %v", st)
	}
	for name, placements := range map[string]uint64{"stopped": 0, "pending": 0, "running": 1, "deleting": 1, "pinned": 0, "web2": 0, "big": 0} {
		if v := f.vm(name); v.GetGeneration() != v.GetCreatedIndex()+placements {
			t.Fatalf("fixture: %s created at %d is at generation %d, want %d", name, v.GetCreatedIndex(), v.GetGeneration(), v.GetCreatedIndex()+placements)
		}
	}
	if f.node(3).GetStatus() != apiv1.NodeStatus_NODE_STATUS_LEFT {
		t.Fatalf("fixture: node 3 is %v", f.node(3).GetStatus())
	}
	return f
}

// ---- rejections -------------------------------------------------------------

func TestApplyRejections(t *testing.T) {
	tooLong := func(n int) string { return strings.Repeat("x", n+1) }
	badUTF8 := string([]byte{0xff, 0xfe})

	tests := []struct {
		name  string
		cmd   func(f *fixture) *apiv1.Command
		code  apiv1.ErrorCode
		field string
	}{
		// Any command.
		{"missing op", func(*fixture) *apiv1.Command { return &apiv1.Command{} }, codeInvalid, "op"},
		{"client request id too long", func(*fixture) *apiv1.Command {
			return withID(tooLong(state.MaxClientRequestID), startVm("stopped"))
		}, codeInvalid, "client_request_id"},
		{"client request id not utf-8", func(*fixture) *apiv1.Command {
			return withID(badUTF8, startVm("stopped"))
		}, codeInvalid, "client_request_id"},

		// InitCluster.
		{"init empty cluster id", func(*fixture) *apiv1.Command { return initCluster("") }, codeInvalid, "cluster_id"},
		{"init cluster id too long", func(*fixture) *apiv1.Command { return initCluster(tooLong(state.MaxClusterIDLen)) }, codeInvalid, "cluster_id"},
		{"init renames cluster", func(*fixture) *apiv1.Command { return initCluster("c2") }, codePrecond, "cluster_id"},

		// RegisterNode.
		{"register node id 0", func(*fixture) *apiv1.Command { return registerNode(0, 4, 4096, nil) }, codeInvalid, "id"},
		{"register removed node", func(*fixture) *apiv1.Command { return registerNode(3, 4, 4096, nil) }, codePrecond, "id"},
		{"register empty address", func(*fixture) *apiv1.Command {
			c := registerNode(5, 4, 4096, nil)
			c.GetRegisterNode().Address = ""
			return c
		}, codeInvalid, "address"},
		{"register unspecified role", func(*fixture) *apiv1.Command {
			c := registerNode(5, 4, 4096, nil)
			c.GetRegisterNode().Role = apiv1.NodeRole_NODE_ROLE_UNSPECIFIED
			return c
		}, codeInvalid, "role"},
		{"register unknown role", func(*fixture) *apiv1.Command {
			c := registerNode(5, 4, 4096, nil)
			c.GetRegisterNode().Role = apiv1.NodeRole(99)
			return c
		}, codeInvalid, "role"},
		{"register no capacity", func(*fixture) *apiv1.Command {
			c := registerNode(5, 4, 4096, nil)
			c.GetRegisterNode().Capacity = nil
			return c
		}, codeInvalid, "capacity"},
		{"register zero vcpus", func(*fixture) *apiv1.Command { return registerNode(5, 0, 4096, nil) }, codeInvalid, "capacity.vcpus"},
		{"register zero memory", func(*fixture) *apiv1.Command { return registerNode(5, 4, 0, nil) }, codeInvalid, "capacity.memory_mib"},
		{"register too much memory", func(*fixture) *apiv1.Command {
			return registerNode(5, 4, state.MaxMemoryMiB+1, nil)
		}, codeInvalid, "capacity.memory_mib"},
		{"register unsorted features", func(*fixture) *apiv1.Command {
			c := registerNode(5, 4, 4096, nil)
			c.GetRegisterNode().Capacity.Features = []string{"kvm", "gpu"}
			return c
		}, codeInvalid, "capacity.features"},
		{"register bad label key", func(*fixture) *apiv1.Command {
			return registerNode(5, 4, 4096, map[string]string{"bad key": "x"})
		}, codeInvalid, "labels"},
		{"register existing node with zero memory", func(*fixture) *apiv1.Command { return registerNode(1, 8, 0, nil) }, codeInvalid, "capacity.memory_mib"},

		// CreateVm.
		{"create duplicate name", func(*fixture) *apiv1.Command { return createVm("running", vmSpec(1, 512), true) }, codeExists, "name"},
		{"create duplicate of a deleting VM", func(*fixture) *apiv1.Command { return createVm("deleting", vmSpec(1, 512), false) }, codeExists, "name"},
		{"create invalid name", func(*fixture) *apiv1.Command { return createVm("Web_1", vmSpec(1, 512), true) }, codeInvalid, "name"},
		{"create empty name", func(*fixture) *apiv1.Command { return createVm("", vmSpec(1, 512), true) }, codeInvalid, "name"},
		{"create no spec", func(*fixture) *apiv1.Command { return createVm("new", nil, true) }, codeInvalid, "spec"},
		{"create zero vcpus", func(*fixture) *apiv1.Command { return createVm("new", vmSpec(0, 512), true) }, codeInvalid, "spec.vcpus"},
		{"create zero memory", func(*fixture) *apiv1.Command { return createVm("new", vmSpec(1, 0), true) }, codeInvalid, "spec.memory_mib"},
		{"create too much memory", func(*fixture) *apiv1.Command {
			return createVm("new", vmSpec(1, state.MaxMemoryMiB+1), true)
		}, codeInvalid, "spec.memory_mib"},
		{"create unknown restart policy", func(*fixture) *apiv1.Command {
			spec := vmSpec(1, 512)
			spec.RestartPolicy = apiv1.RestartPolicy(42)
			return createVm("new", spec, true)
		}, codeInvalid, "spec.restart_policy"},
		{"create image not utf-8", func(*fixture) *apiv1.Command {
			spec := vmSpec(1, 512)
			spec.Image = badUTF8
			return createVm("new", spec, true)
		}, codeInvalid, "spec.image"},
		{"create kernel cmdline too long", func(*fixture) *apiv1.Command {
			spec := vmSpec(1, 512)
			spec.KernelCmdline = tooLong(state.MaxKernelCmdlineLen)
			return createVm("new", spec, true)
		}, codeInvalid, "spec.kernel_cmdline"},
		{"create kernel cmdline with a newline", func(*fixture) *apiv1.Command {
			spec := vmSpec(1, 512)
			spec.KernelCmdline = "console=ttyS0\ninit=/bin/evil"
			return createVm("new", spec, true)
		}, codeInvalid, "spec.kernel_cmdline"},
		{"create kernel cmdline with a NUL", func(*fixture) *apiv1.Command {
			spec := vmSpec(1, 512)
			spec.KernelCmdline = "quiet\x00"
			return createVm("new", spec, true)
		}, codeInvalid, "spec.kernel_cmdline"},
		{"create more vCPUs than a workload may have", func(*fixture) *apiv1.Command {
			return createVm("new", vmSpec(state.MaxWorkloadVcpus+1, 512), true)
		}, codeInvalid, "spec.vcpus"},
		{"create more vCPUs than a node may have", func(*fixture) *apiv1.Command {
			return createVm("new", vmSpec(state.MaxVcpus+1, 512), true)
		}, codeInvalid, "spec.vcpus"},
		{"create bad constraint key", func(*fixture) *apiv1.Command {
			spec := vmSpec(1, 512)
			spec.Constraints = map[string]string{"": "a"}
			return createVm("new", spec, true)
		}, codeInvalid, "spec.constraints"},
		{"create bad anti-affinity group", func(*fixture) *apiv1.Command {
			spec := vmSpec(1, 512)
			spec.AntiAffinityGroup = "Web"
			return createVm("new", spec, true)
		}, codeInvalid, "spec.anti_affinity_group"},

		// StartVm, StopVm, DeleteVm.
		{"start unknown VM", func(*fixture) *apiv1.Command { return startVm("nope") }, codeNotFound, "name"},
		{"start invalid name", func(*fixture) *apiv1.Command { return startVm("-x") }, codeInvalid, "name"},
		{"start deleting VM", func(*fixture) *apiv1.Command { return startVm("deleting") }, codePrecond, "name"},
		{"stop unknown VM", func(*fixture) *apiv1.Command { return stopVm("nope") }, codeNotFound, "name"},
		{"stop deleting VM", func(*fixture) *apiv1.Command { return stopVm("deleting") }, codePrecond, "name"},
		{"delete unknown VM", func(*fixture) *apiv1.Command { return deleteVm("nope") }, codeNotFound, "name"},

		// AssignVm.
		{"assign unknown VM", func(*fixture) *apiv1.Command { return assignVm("nope", 1, 0) }, codeNotFound, "name"},
		{"assign to unknown node", func(f *fixture) *apiv1.Command { return f.assign("pending", 9) }, codeNotFound, "node_id"},
		{"assign to node 0", func(f *fixture) *apiv1.Command { return f.assign("pending", 0) }, codeNotFound, "node_id"},
		{"assign to left node", func(f *fixture) *apiv1.Command { return f.assign("pending", 3) }, codePrecond, "node_id"},
		{"assign stopped VM", func(f *fixture) *apiv1.Command { return f.assign("stopped", 1) }, codePrecond, "name"},
		{"assign running VM", func(f *fixture) *apiv1.Command { return f.assign("running", 2) }, codePrecond, "name"},
		{"assign deleting VM", func(f *fixture) *apiv1.Command { return f.assign("deleting", 1) }, codePrecond, "name"},
		{"assign newer generation", func(f *fixture) *apiv1.Command { return assignVm("pending", 1, f.gen("pending")+1) }, codePrecond, "generation"},
		{"assign older generation", func(f *fixture) *apiv1.Command { return assignVm("pending", 1, f.gen("pending")-1) }, codePrecond, "generation"},
		{"assign at generation 0", func(*fixture) *apiv1.Command { return assignVm("pending", 1, 0) }, codePrecond, "generation"},
		{"assign against constraints", func(f *fixture) *apiv1.Command { return f.assign("pinned", 1) }, codePrecond, "node_id"},
		{"assign to a node without the constrained label", func(f *fixture) *apiv1.Command {
			spec := vmSpec(1, 512)
			spec.Constraints = map[string]string{"rack": "r1"}
			f.ok(createVm("racked", spec, true))
			return f.assign("racked", 1)
		}, codePrecond, "node_id"},
		{"assign against one of two constraints", func(f *fixture) *apiv1.Command {
			spec := vmSpec(1, 512)
			spec.Constraints = map[string]string{"zone": "a", "rack": "r1"}
			f.ok(createVm("racked", spec, true))
			return f.assign("racked", 1)
		}, codePrecond, "node_id"},
		{"assign against anti-affinity", func(f *fixture) *apiv1.Command { return f.assign("web2", 1) }, codePrecond, "node_id"},
		{"assign to a node without the VM's image", func(f *fixture) *apiv1.Command {
			f.ok(nodeWith(5, 64, 65536, image("alpine-3.20", 64)))
			return f.assign("pending", 5)
		}, codePrecond, "node_id"},
		{"assign beyond capacity", func(f *fixture) *apiv1.Command { return f.assign("big", 1) }, codeExhausted, "node_id"},
		{"assign beyond capacity (stopping VM still holds)", func(f *fixture) *apiv1.Command { return f.assign("big", 2) }, codeExhausted, "node_id"},

		// ReportVm.
		{"report unknown VM", func(*fixture) *apiv1.Command { return reportVm("nope", 1, 1, apiv1.VmState_VM_STATE_RUNNING) }, codeNotFound, "name"},
		{"report from unknown node", func(f *fixture) *apiv1.Command { return f.report("running", 9, apiv1.VmState_VM_STATE_RUNNING) }, codeNotFound, "node_id"},
		{"report unknown state", func(f *fixture) *apiv1.Command { return f.report("running", 1, apiv1.VmState(77)) }, codeInvalid, "state"},
		{"report unspecified state", func(f *fixture) *apiv1.Command {
			return f.report("running", 1, apiv1.VmState_VM_STATE_UNSPECIFIED)
		}, codeInvalid, "state"},
		{"report pending", func(f *fixture) *apiv1.Command { return f.report("running", 1, apiv1.VmState_VM_STATE_PENDING) }, codeInvalid, "state"},
		{"report lost", func(f *fixture) *apiv1.Command { return f.report("running", 1, apiv1.VmState_VM_STATE_LOST) }, codeInvalid, "state"},
		{"report reason too long", func(f *fixture) *apiv1.Command {
			c := f.report("running", 1, apiv1.VmState_VM_STATE_RUNNING)
			c.GetReportVm().Reason = tooLong(state.MaxReasonLen)
			return c
		}, codeInvalid, "reason"},
		{"report console tail too long", func(f *fixture) *apiv1.Command {
			return reportWithTail("running", 1, f.gen("running"), apiv1.VmState_VM_STATE_FAILED, tooLong(state.MaxConsoleTailLen))
		}, codeInvalid, "console_tail"},
		{"report console tail not utf-8", func(f *fixture) *apiv1.Command {
			return reportWithTail("running", 1, f.gen("running"), apiv1.VmState_VM_STATE_FAILED, "panic: "+badUTF8)
		}, codeInvalid, "console_tail"},
		{"report console tail not utf-8, even when not failed", func(f *fixture) *apiv1.Command {
			return reportWithTail("running", 1, f.gen("running"), apiv1.VmState_VM_STATE_STARTING, badUTF8)
		}, codeInvalid, "console_tail"},
		{"report older generation", func(f *fixture) *apiv1.Command {
			return reportVm("running", 1, f.gen("running")-1, apiv1.VmState_VM_STATE_STOPPED)
		}, codePrecond, "generation"},
		{"report newer generation", func(f *fixture) *apiv1.Command {
			return reportVm("running", 1, f.gen("running")+1, apiv1.VmState_VM_STATE_STOPPED)
		}, codePrecond, "generation"},
		{"report at generation 1", func(*fixture) *apiv1.Command { return reportVm("running", 1, 1, apiv1.VmState_VM_STATE_STOPPED) }, codePrecond, "generation"},
		{"report from another node", func(f *fixture) *apiv1.Command { return f.report("running", 2, apiv1.VmState_VM_STATE_STOPPED) }, codePrecond, "generation"},
		{"report on unplaced VM", func(f *fixture) *apiv1.Command { return f.report("pending", 1, apiv1.VmState_VM_STATE_RUNNING) }, codePrecond, "generation"},

		// SubmitTask.
		{"submit no spec", func(*fixture) *apiv1.Command { return submitTask(nil) }, codeInvalid, "spec"},
		{"submit empty command", func(*fixture) *apiv1.Command { return submitTask(taskSpec("", 1, 256)) }, codeInvalid, "spec.command"},
		{"submit command too long", func(*fixture) *apiv1.Command {
			return submitTask(taskSpec(tooLong(state.MaxCommandLen), 1, 256))
		}, codeInvalid, "spec.command"},
		{"submit too many args", func(*fixture) *apiv1.Command {
			spec := taskSpec("echo", 1, 256)
			spec.Args = make([]string, state.MaxArgs+1)
			return submitTask(spec)
		}, codeInvalid, "spec.args"},
		{"submit bad env key", func(*fixture) *apiv1.Command {
			spec := taskSpec("echo", 1, 256)
			spec.Env = map[string]string{"A=B": "x"}
			return submitTask(spec)
		}, codeInvalid, "spec.env"},
		{"submit no resources", func(*fixture) *apiv1.Command {
			spec := taskSpec("echo", 1, 256)
			spec.Resources = nil
			return submitTask(spec)
		}, codeInvalid, "spec.resources"},
		{"submit zero memory", func(*fixture) *apiv1.Command { return submitTask(taskSpec("echo", 1, 0)) }, codeInvalid, "spec.resources.memory_mib"},
		{"submit zero vcpus", func(*fixture) *apiv1.Command { return submitTask(taskSpec("echo", 0, 256)) }, codeInvalid, "spec.resources.vcpus"},
		{"submit more vCPUs than a workload may have", func(*fixture) *apiv1.Command {
			return submitTask(taskSpec("echo", state.MaxWorkloadVcpus+1, 256))
		}, codeInvalid, "spec.resources.vcpus"},
		{"submit timeout too long", func(*fixture) *apiv1.Command {
			spec := taskSpec("sleep", 1, 256)
			spec.TimeoutMs = state.MaxTaskTimeoutMs + 1
			return submitTask(spec)
		}, codeInvalid, "spec.timeout_ms"},

		// CancelTask.
		{"cancel unknown task", func(*fixture) *apiv1.Command { return cancelTask(9999) }, codeNotFound, "id"},
		{"cancel succeeded task", func(f *fixture) *apiv1.Command { return cancelTask(f.doneTask) }, codePrecond, "id"},
		{"cancel cancelled task", func(f *fixture) *apiv1.Command { return cancelTask(f.cancelledTask) }, codePrecond, "id"},

		// AssignTask.
		{"assign unknown task", func(*fixture) *apiv1.Command { return assignTask(9999, 1) }, codeNotFound, "id"},
		{"assign task to unknown node", func(f *fixture) *apiv1.Command { return assignTask(f.pendingTask, 9) }, codeNotFound, "node_id"},
		{"assign task to left node", func(f *fixture) *apiv1.Command { return assignTask(f.pendingTask, 3) }, codePrecond, "node_id"},
		{"assign running task", func(f *fixture) *apiv1.Command { return assignTask(f.runningTask, 2) }, codePrecond, "id"},
		{"assign cancelled task", func(f *fixture) *apiv1.Command { return assignTask(f.cancelledTask, 2) }, codePrecond, "id"},
		{"assign task beyond capacity", func(f *fixture) *apiv1.Command { return assignTask(f.bigTask, 1) }, codeExhausted, "node_id"},
		{"assign task to a node without its image", func(f *fixture) *apiv1.Command {
			f.ok(nodeWith(5, 64, 65536, image("alpine-3.20", 64)))
			return assignTask(f.pendingTask, 5)
		}, codePrecond, "node_id"},

		// ReportTask.
		{"report unknown task", func(*fixture) *apiv1.Command {
			return reportTask(9999, 1, 1, apiv1.TaskStatus_TASK_STATUS_RUNNING, nil)
		}, codeNotFound, "id"},
		{"report task from unknown node", func(f *fixture) *apiv1.Command {
			return reportTask(f.runningTask, 9, 1, apiv1.TaskStatus_TASK_STATUS_SUCCEEDED, nil)
		}, codeNotFound, "node_id"},
		{"report task unknown status", func(f *fixture) *apiv1.Command {
			return reportTask(f.runningTask, 1, 1, apiv1.TaskStatus(99), nil)
		}, codeInvalid, "status"},
		{"report task pending", func(f *fixture) *apiv1.Command {
			return reportTask(f.runningTask, 1, 1, apiv1.TaskStatus_TASK_STATUS_PENDING, nil)
		}, codeInvalid, "status"},
		{"report task cancelled", func(f *fixture) *apiv1.Command {
			return reportTask(f.runningTask, 1, 1, apiv1.TaskStatus_TASK_STATUS_CANCELLED, nil)
		}, codeInvalid, "status"},
		{"report task output too long", func(f *fixture) *apiv1.Command {
			return reportTask(f.runningTask, 1, 1, apiv1.TaskStatus_TASK_STATUS_SUCCEEDED,
				&apiv1.TaskResult{OutputTail: make([]byte, state.MaxOutputTailBytes+1)})
		}, codeInvalid, "result.output_tail"},
		{"report task error not utf-8", func(f *fixture) *apiv1.Command {
			return reportTask(f.runningTask, 1, 1, apiv1.TaskStatus_TASK_STATUS_FAILED, &apiv1.TaskResult{Error: badUTF8})
		}, codeInvalid, "result.error"},
		{"report task stale attempt", func(f *fixture) *apiv1.Command {
			return reportTask(f.runningTask, 1, 2, apiv1.TaskStatus_TASK_STATUS_SUCCEEDED, nil)
		}, codePrecond, "attempt"},
		{"report task from another node", func(f *fixture) *apiv1.Command {
			return reportTask(f.runningTask, 2, 1, apiv1.TaskStatus_TASK_STATUS_SUCCEEDED, nil)
		}, codePrecond, "attempt"},
		{"report on pending task", func(f *fixture) *apiv1.Command {
			return reportTask(f.pendingTask, 1, 0, apiv1.TaskStatus_TASK_STATUS_RUNNING, nil)
		}, codePrecond, "attempt"},
		{"report on ended task", func(f *fixture) *apiv1.Command {
			return reportTask(f.doneTask, 1, 1, apiv1.TaskStatus_TASK_STATUS_FAILED, nil)
		}, codePrecond, "status"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t)
			cmd := tc.cmd(f)
			f.reject(cmd, tc.code, tc.field)
			// A retry without a client id is refused again, the same way.
			f.reject(cmd, tc.code, tc.field)
		})
	}
}

// ---- acceptances ------------------------------------------------------------

func TestApplyAccepts(t *testing.T) {
	tests := []struct {
		name  string
		cmd   func(f *fixture) *apiv1.Command
		check func(t *testing.T, f *fixture, resp *apiv1.Response)
	}{
		{"init cluster again with the same id", func(*fixture) *apiv1.Command { return initCluster("c1") },
			func(t *testing.T, f *fixture, _ *apiv1.Response) {
				if got := f.s.Cluster().GetId(); got != "c1" {
					t.Fatalf("cluster id = %q", got)
				}
			}},
		{"register a new worker", func(*fixture) *apiv1.Command {
			c := registerNode(5, 16, 32768, map[string]string{"zone": "c"})
			c.GetRegisterNode().Role = apiv1.NodeRole_NODE_ROLE_WORKER
			return c
		}, func(t *testing.T, f *fixture, _ *apiv1.Response) {
			n := f.node(5)
			want := &apiv1.Node{
				Id: 5, Address: "10.0.0.5:7000", Role: apiv1.NodeRole_NODE_ROLE_WORKER,
				Capacity: &apiv1.Resources{Vcpus: 16, MemoryMib: 32768, DiskMib: 100000, Features: []string{"kvm"}},
				Labels:   map[string]string{"zone": "c"}, Status: apiv1.NodeStatus_NODE_STATUS_READY,
				RegisteredIndex: f.idx, UpdatedIndex: f.idx,
				Images: testImages(),
			}
			if !proto.Equal(n, want) {
				t.Fatalf("node = %v\nwant   %v", n, want)
			}
		}},
		{"re-register refreshes a node", func(*fixture) *apiv1.Command {
			c := registerNode(1, 16, 16384, map[string]string{"zone": "a", "rack": "r1"})
			c.GetRegisterNode().Address = "10.9.9.9:7000"
			return c
		}, func(t *testing.T, f *fixture, _ *apiv1.Response) {
			n := f.node(1)
			if n.GetAddress() != "10.9.9.9:7000" || n.GetCapacity().GetVcpus() != 16 || n.GetLabels()["rack"] != "r1" {
				t.Fatalf("node not refreshed: %v", n)
			}
			if n.GetRegisteredIndex() >= n.GetUpdatedIndex() || n.GetUpdatedIndex() != f.idx {
				t.Fatalf("indexes: registered %d updated %d (now %d)", n.GetRegisteredIndex(), n.GetUpdatedIndex(), f.idx)
			}
			if n.GetStatus() != apiv1.NodeStatus_NODE_STATUS_READY {
				t.Fatalf("status = %v", n.GetStatus())
			}
		}},
		{"create a stopped VM", func(*fixture) *apiv1.Command { return createVm("new", vmSpec(1, 512), false) },
			func(t *testing.T, f *fixture, resp *apiv1.Response) {
				v := f.vm("new")
				if !proto.Equal(resp.GetCreateVm().GetVm(), v) {
					t.Fatalf("response %v, record %v", resp, v)
				}
				if v.GetState() != apiv1.VmState_VM_STATE_STOPPED || v.GetDesiredState() != apiv1.VmDesiredState_VM_DESIRED_STATE_STOPPED {
					t.Fatalf("VM = %v", v)
				}
				// Its generations start at the index of its creation.
				if v.GetCreatedIndex() != f.idx || v.GetGeneration() != f.idx || v.GetEvents()[0].GetGeneration() != f.idx {
					t.Fatalf("VM created at %d: %v", f.idx, v)
				}
				if v.GetSpec().GetRestartPolicy() != apiv1.RestartPolicy_RESTART_POLICY_ON_FAILURE {
					t.Fatalf("restart policy not defaulted: %v", v.GetSpec().GetRestartPolicy())
				}
			}},
		{"create keeps an explicit restart policy", func(*fixture) *apiv1.Command {
			spec := vmSpec(1, 512)
			spec.RestartPolicy = apiv1.RestartPolicy_RESTART_POLICY_ALWAYS
			return createVm("new", spec, true)
		}, func(t *testing.T, f *fixture, _ *apiv1.Response) {
			if got := f.vm("new").GetSpec().GetRestartPolicy(); got != apiv1.RestartPolicy_RESTART_POLICY_ALWAYS {
				t.Fatalf("restart policy = %v", got)
			}
		}},
		{"create the name of a deleted VM again", func(f *fixture) *apiv1.Command {
			f.ok(deleteVm("stopped"))
			return createVm("stopped", vmSpec(2, 1024), true)
		}, func(t *testing.T, f *fixture, _ *apiv1.Response) {
			v := f.vm("stopped")
			if v.GetCreatedIndex() != f.idx || v.GetState() != apiv1.VmState_VM_STATE_PENDING || len(v.GetEvents()) != 1 {
				t.Fatalf("VM = %v", v)
			}
			// A new life, at a generation the first never had.
			if v.GetGeneration() != f.idx {
				t.Fatalf("re-created VM at generation %d, want its creation's index %d", v.GetGeneration(), f.idx)
			}
		}},
		{"start a stopped VM", func(*fixture) *apiv1.Command { return startVm("stopped") },
			func(t *testing.T, f *fixture, resp *apiv1.Response) {
				v := f.vm("stopped")
				if v.GetState() != apiv1.VmState_VM_STATE_PENDING || v.GetDesiredState() != apiv1.VmDesiredState_VM_DESIRED_STATE_RUNNING || v.GetNodeId() != 0 {
					t.Fatalf("VM = %v", v)
				}
				if !proto.Equal(resp.GetStartVm().GetVm(), v) {
					t.Fatalf("response %v, record %v", resp, v)
				}
			}},
		{"start a running VM changes nothing but the index", func(*fixture) *apiv1.Command { return startVm("running") },
			func(t *testing.T, f *fixture, _ *apiv1.Response) {
				v := f.vm("running")
				if v.GetState() != apiv1.VmState_VM_STATE_RUNNING || v.GetNodeId() != 1 || v.GetGeneration() != v.GetCreatedIndex()+1 || len(v.GetEvents()) != 3 {
					t.Fatalf("VM = %v", v)
				}
			}},
		{"stop a pending VM", func(*fixture) *apiv1.Command { return stopVm("pending") },
			func(t *testing.T, f *fixture, resp *apiv1.Response) {
				v := f.vm("pending")
				if v.GetState() != apiv1.VmState_VM_STATE_STOPPED || v.GetDesiredState() != apiv1.VmDesiredState_VM_DESIRED_STATE_STOPPED {
					t.Fatalf("VM = %v", v)
				}
				if !proto.Equal(resp.GetStopVm().GetVm(), v) {
					t.Fatalf("response %v, record %v", resp, v)
				}
			}},
		{"stop a running VM", func(*fixture) *apiv1.Command { return stopVm("running") },
			func(t *testing.T, f *fixture, _ *apiv1.Response) {
				v := f.vm("running")
				if v.GetState() != apiv1.VmState_VM_STATE_STOPPING || v.GetNodeId() != 1 {
					t.Fatalf("VM = %v", v)
				}
				if got := f.s.Allocated(1).GetVcpus(); got != 3 { // running VM (2) + running task (1)
					t.Fatalf("node 1 allocated %d vCPUs, want 3: a stopping VM still holds", got)
				}
			}},
		{"delete a stopped VM", func(*fixture) *apiv1.Command { return deleteVm("stopped") },
			func(t *testing.T, f *fixture, resp *apiv1.Response) {
				if _, ok := f.s.Vm("stopped"); ok {
					t.Fatal("VM still there")
				}
				d := resp.GetDeleteVm()
				if !d.GetRemoved() || d.GetVm().GetName() != "stopped" || d.GetVm().GetDesiredState() != apiv1.VmDesiredState_VM_DESIRED_STATE_DELETED {
					t.Fatalf("response = %v", resp)
				}
			}},
		{"delete a pending VM", func(*fixture) *apiv1.Command { return deleteVm("pending") },
			func(t *testing.T, f *fixture, resp *apiv1.Response) {
				if _, ok := f.s.Vm("pending"); ok || !resp.GetDeleteVm().GetRemoved() {
					t.Fatalf("VM still there or not removed: %v", resp)
				}
			}},
		{"delete a running VM", func(*fixture) *apiv1.Command { return deleteVm("running") },
			func(t *testing.T, f *fixture, resp *apiv1.Response) {
				v := f.vm("running")
				if resp.GetDeleteVm().GetRemoved() || v.GetState() != apiv1.VmState_VM_STATE_STOPPING ||
					v.GetDesiredState() != apiv1.VmDesiredState_VM_DESIRED_STATE_DELETED {
					t.Fatalf("response %v, VM %v", resp, v)
				}
			}},
		{"delete a deleting VM again", func(*fixture) *apiv1.Command { return deleteVm("deleting") },
			func(t *testing.T, f *fixture, resp *apiv1.Response) {
				v := f.vm("deleting")
				if resp.GetDeleteVm().GetRemoved() || v.GetState() != apiv1.VmState_VM_STATE_STOPPING {
					t.Fatalf("response %v, VM %v", resp, v)
				}
			}},
		{"assign a pending VM", func(f *fixture) *apiv1.Command { return f.assign("pending", 2) },
			func(t *testing.T, f *fixture, _ *apiv1.Response) {
				v := f.vm("pending")
				if v.GetState() != apiv1.VmState_VM_STATE_SCHEDULED || v.GetNodeId() != 2 || v.GetGeneration() != v.GetCreatedIndex()+1 {
					t.Fatalf("VM = %v", v)
				}
			}},
		{"assign anti-affinity VM to another node", func(f *fixture) *apiv1.Command { return f.assign("web2", 2) },
			func(t *testing.T, f *fixture, _ *apiv1.Response) {
				if v := f.vm("web2"); v.GetState() != apiv1.VmState_VM_STATE_SCHEDULED || v.GetNodeId() != 2 {
					t.Fatalf("VM = %v", v)
				}
			}},
		{"assign a constrained VM to a matching node", func(f *fixture) *apiv1.Command {
			spec := vmSpec(1, 512)
			spec.Constraints = map[string]string{"zone": "b"}
			f.ok(createVm("zoned", spec, true))
			return f.assign("zoned", 2)
		}, func(t *testing.T, f *fixture, _ *apiv1.Response) {
			if v := f.vm("zoned"); v.GetNodeId() != 2 {
				t.Fatalf("VM = %v", v)
			}
		}},
		{"report a VM starting", func(f *fixture) *apiv1.Command { return f.report("running", 1, apiv1.VmState_VM_STATE_STARTING) },
			func(t *testing.T, f *fixture, _ *apiv1.Response) {
				v := f.vm("running")
				if v.GetState() != apiv1.VmState_VM_STATE_STARTING || v.GetReason() != "hypervisor says VM_STATE_STARTING" {
					t.Fatalf("VM = %v", v)
				}
			}},
		{"report a VM failed", func(f *fixture) *apiv1.Command { return f.report("running", 1, apiv1.VmState_VM_STATE_FAILED) },
			func(t *testing.T, f *fixture, _ *apiv1.Response) {
				v := f.vm("running")
				if v.GetState() != apiv1.VmState_VM_STATE_FAILED || f.s.Allocated(1).GetVcpus() != 1 {
					t.Fatalf("VM = %v, allocated %v", v, f.s.Allocated(1))
				}
			}},
		{"report a deleting VM stopped removes it", func(f *fixture) *apiv1.Command {
			return f.report("deleting", 2, apiv1.VmState_VM_STATE_STOPPED)
		}, func(t *testing.T, f *fixture, _ *apiv1.Response) {
			if _, ok := f.s.Vm("deleting"); ok {
				t.Fatal("VM still there")
			}
			if got := f.s.Allocated(2); got.GetVcpus() != 0 || got.GetMemoryMib() != 0 {
				t.Fatalf("node 2 still allocated: %v", got)
			}
		}},
		{"report a deleting VM failed removes it", func(f *fixture) *apiv1.Command {
			return f.report("deleting", 2, apiv1.VmState_VM_STATE_FAILED)
		}, func(t *testing.T, f *fixture, _ *apiv1.Response) {
			if _, ok := f.s.Vm("deleting"); ok {
				t.Fatal("VM still there")
			}
		}},
		{"submit a task", func(*fixture) *apiv1.Command { return submitTask(taskSpec("ls", 1, 64)) },
			func(t *testing.T, f *fixture, resp *apiv1.Response) {
				tk := f.task(f.idx)
				if !proto.Equal(resp.GetSubmitTask().GetTask(), tk) || tk.GetStatus() != apiv1.TaskStatus_TASK_STATUS_PENDING ||
					tk.GetSubmittedIndex() != f.idx || tk.GetAttempt() != 0 || tk.GetNodeId() != 0 {
					t.Fatalf("response %v, task %v", resp, tk)
				}
			}},
		{"cancel a pending task", func(f *fixture) *apiv1.Command { return cancelTask(f.pendingTask) },
			func(t *testing.T, f *fixture, resp *apiv1.Response) {
				tk := f.task(f.pendingTask)
				if tk.GetStatus() != apiv1.TaskStatus_TASK_STATUS_CANCELLED || !proto.Equal(resp.GetCancelTask().GetTask(), tk) {
					t.Fatalf("response %v, task %v", resp, tk)
				}
			}},
		{"assign a pending task", func(f *fixture) *apiv1.Command { return assignTask(f.pendingTask, 2) },
			func(t *testing.T, f *fixture, _ *apiv1.Response) {
				tk := f.task(f.pendingTask)
				if tk.GetStatus() != apiv1.TaskStatus_TASK_STATUS_ASSIGNED || tk.GetNodeId() != 2 || tk.GetAttempt() != 1 {
					t.Fatalf("task = %v", tk)
				}
				if got := f.s.Allocated(2); got.GetVcpus() != 2 || got.GetMemoryMib() != 512+256 {
					t.Fatalf("node 2 allocated %v", got)
				}
			}},
		{"report a task failed", func(f *fixture) *apiv1.Command {
			return reportTask(f.runningTask, 1, 1, apiv1.TaskStatus_TASK_STATUS_FAILED, &apiv1.TaskResult{ExitCode: 2, Error: "boom"})
		}, func(t *testing.T, f *fixture, _ *apiv1.Response) {
			tk := f.task(f.runningTask)
			if tk.GetStatus() != apiv1.TaskStatus_TASK_STATUS_FAILED || tk.GetResult().GetExitCode() != 2 || tk.GetResult().GetError() != "boom" {
				t.Fatalf("task = %v", tk)
			}
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t)
			cmd := tc.cmd(f)
			resp := f.ok(cmd)
			if resp == nil {
				t.Fatal("nil response")
			}
			tc.check(t, f, resp)
		})
	}
}

// ---- VM lifecycle -----------------------------------------------------------

func TestVmLifecycle(t *testing.T) {
	h := newHarness(t)
	h.ok(registerNode(1, 4, 4096, nil))
	h.ok(registerNode(2, 4, 4096, nil))

	resp := h.ok(withID("create-web", createVm("web", vmSpec(2, 1024), true)))
	created := resp.GetCreateVm().GetVm()
	c := created.GetCreatedIndex() // the first generation
	if created.GetState() != apiv1.VmState_VM_STATE_PENDING || created.GetDesiredState() != apiv1.VmDesiredState_VM_DESIRED_STATE_RUNNING ||
		created.GetGeneration() != c || created.GetNodeId() != 0 || c != h.idx || len(created.GetEvents()) != 1 {
		t.Fatalf("created VM = %v", created)
	}

	h.ok(h.assign("web", 1))
	v := h.vm("web")
	if v.GetState() != apiv1.VmState_VM_STATE_SCHEDULED || v.GetGeneration() != c+1 || v.GetNodeId() != 1 || v.GetUpdatedIndex() != h.idx {
		t.Fatalf("after assign: %v", v)
	}
	if got := h.s.Allocated(1); got.GetVcpus() != 2 || got.GetMemoryMib() != 1024 {
		t.Fatalf("allocated after assign = %v", got)
	}
	h.reject(h.assign("web", 2), codePrecond, "name") // already placed

	h.ok(h.report("web", 1, apiv1.VmState_VM_STATE_STARTING))
	h.ok(h.report("web", 1, apiv1.VmState_VM_STATE_RUNNING))
	if v := h.vm("web"); v.GetState() != apiv1.VmState_VM_STATE_RUNNING || v.GetGeneration() != c+1 {
		t.Fatalf("after report running: %v", v)
	}

	// Stale reports: an older generation, or another node.
	h.reject(reportVm("web", 1, c, apiv1.VmState_VM_STATE_STOPPED), codePrecond, "generation")
	h.reject(reportVm("web", 2, c+1, apiv1.VmState_VM_STATE_STOPPED), codePrecond, "generation")

	h.ok(stopVm("web"))
	if v := h.vm("web"); v.GetState() != apiv1.VmState_VM_STATE_STOPPING || v.GetDesiredState() != apiv1.VmDesiredState_VM_DESIRED_STATE_STOPPED {
		t.Fatalf("after stop: %v", v)
	}
	h.ok(h.report("web", 1, apiv1.VmState_VM_STATE_STOPPED))
	if v := h.vm("web"); v.GetState() != apiv1.VmState_VM_STATE_STOPPED {
		t.Fatalf("after report stopped: %v", v)
	}
	if got := h.s.Allocated(1); got.GetVcpus() != 0 || got.GetMemoryMib() != 0 {
		t.Fatalf("allocated after stopped = %v", got)
	}
	// Its node no longer reports on a stopped VM.
	h.reject(h.report("web", 1, apiv1.VmState_VM_STATE_RUNNING), codePrecond, "state")

	// Start again: placed afresh, the generation goes up on assignment.
	h.ok(startVm("web"))
	if v := h.vm("web"); v.GetState() != apiv1.VmState_VM_STATE_PENDING || v.GetNodeId() != 0 || v.GetGeneration() != c+1 {
		t.Fatalf("after start: %v", v)
	}
	h.reject(assignVm("web", 2, c), codePrecond, "generation")
	h.ok(h.assign("web", 2))
	if v := h.vm("web"); v.GetGeneration() != c+2 || v.GetNodeId() != 2 {
		t.Fatalf("after the second assign: %v", v)
	}
	h.ok(h.report("web", 2, apiv1.VmState_VM_STATE_RUNNING))
	h.reject(reportVm("web", 1, c+1, apiv1.VmState_VM_STATE_FAILED), codePrecond, "generation") // the old placement

	// Delete while running: stopping first, gone once reported stopped.
	resp = h.ok(deleteVm("web"))
	if d := resp.GetDeleteVm(); d.GetRemoved() || d.GetVm().GetState() != apiv1.VmState_VM_STATE_STOPPING {
		t.Fatalf("delete response = %v", resp)
	}
	h.reject(startVm("web"), codePrecond, "name")
	h.reject(createVm("web", vmSpec(1, 512), true), codeExists, "name")
	h.ok(h.report("web", 2, apiv1.VmState_VM_STATE_STOPPED))
	if _, ok := h.s.Vm("web"); ok {
		t.Fatal("deleted VM still there after its node reported it stopped")
	}
	if got := h.s.Allocated(2); got.GetVcpus() != 0 {
		t.Fatalf("allocated after delete = %v", got)
	}

	// Delete of a stopped VM removes it at once.
	h.ok(createVm("cold", vmSpec(1, 512), false))
	resp = h.ok(deleteVm("cold"))
	if !resp.GetDeleteVm().GetRemoved() {
		t.Fatalf("delete of stopped VM: %v", resp)
	}
	if _, ok := h.s.Vm("cold"); ok {
		t.Fatal("stopped VM still there after delete")
	}
	if len(h.s.Vms(0)) != 0 {
		t.Fatalf("VMs left: %v", h.s.Vms(0))
	}
}

func TestFailedVmIsPlacedAgain(t *testing.T) {
	h := newHarness(t)
	h.ok(registerNode(1, 4, 4096, nil))
	h.ok(registerNode(2, 4, 4096, nil))
	h.ok(createVm("web", vmSpec(2, 1024), true))
	c := h.created("web")
	h.ok(h.assign("web", 1))
	h.ok(h.report("web", 1, apiv1.VmState_VM_STATE_FAILED))
	if got := vmNames(h.s.VmsToPlace()); len(got) != 1 || got[0] != "web" {
		t.Fatalf("VmsToPlace() = %v, want the failed VM (restart policy on-failure)", got)
	}
	h.ok(h.assign("web", 2))
	v := h.vm("web")
	if v.GetState() != apiv1.VmState_VM_STATE_SCHEDULED || v.GetNodeId() != 2 || v.GetGeneration() != c+2 {
		t.Fatalf("VM = %v", v)
	}
	// The first node's late report is stale now.
	h.reject(reportVm("web", 1, c+1, apiv1.VmState_VM_STATE_RUNNING), codePrecond, "generation")
}

// A VM deleted and created again under the same name starts a new life at
// generations the earlier life never had, so that a late report from the
// earlier life cannot pass for one of the new.
func TestRecreatedVmNeverRepeatsAGeneration(t *testing.T) {
	failed, running, stopped := apiv1.VmState_VM_STATE_FAILED, apiv1.VmState_VM_STATE_RUNNING, apiv1.VmState_VM_STATE_STOPPED
	ends := []struct {
		name string
		// end ends the first life of "web", last placed on node 1.
		end func(h *harness)
	}{
		{"failed, then deleted", func(h *harness) {
			h.ok(h.report("web", 1, failed))
			resp := h.ok(deleteVm("web"))
			if !resp.GetDeleteVm().GetRemoved() {
				h.t.Fatalf("delete of a failed VM did not remove it: %v", resp)
			}
		}},
		{"deleted while running", func(h *harness) {
			h.ok(deleteVm("web"))
			h.ok(h.report("web", 1, stopped))
		}},
	}
	for _, end := range ends {
		t.Run(end.name, func(t *testing.T) {
			h := newHarness(t)
			h.ok(registerNode(1, 8, 8192, nil))
			h.ok(registerNode(2, 8, 8192, nil))

			// The first life: placed on node 1, failed, placed on node 1
			// again; every generation it had is remembered.
			h.ok(createVm("web", vmSpec(1, 512), true))
			first := map[uint64]bool{h.gen("web"): true}
			h.ok(h.assign("web", 1))
			first[h.gen("web")] = true
			h.ok(h.report("web", 1, failed))
			h.ok(h.assign("web", 1))
			first[h.gen("web")] = true
			h.ok(h.report("web", 1, running))
			last := h.gen("web")
			if len(first) != 3 {
				t.Fatalf("first life had generations %v, want 3 of them", first)
			}
			end.end(h)
			if v, ok := h.s.Vm("web"); ok {
				t.Fatalf("setup: VM still there: %v", v)
			}

			// The second life, on the same node.
			h.ok(createVm("web", vmSpec(1, 512), true))
			second := func() {
				t.Helper()
				v := h.vm("web")
				if first[v.GetGeneration()] {
					t.Fatalf("re-created VM at generation %d, which its first life had (%v)", v.GetGeneration(), first)
				}
				for _, e := range v.GetEvents() {
					if first[e.GetGeneration()] {
						t.Fatalf("re-created VM has an event at generation %d of its first life: %v", e.GetGeneration(), e)
					}
				}
			}
			second()
			for g := range first {
				if h.gen("web") <= g {
					t.Fatalf("re-created VM at generation %d, not above its first life's %d", h.gen("web"), g)
				}
			}
			h.ok(h.assign("web", 1))
			second()
			// The first life's last node repeats its last report: refused as
			// stale, and so is any report of the first life.
			h.reject(reportVm("web", 1, last, running), codePrecond, "generation")
			h.reject(reportVm("web", 1, last, failed), codePrecond, "generation")
			for g := range first {
				h.reject(reportVm("web", 1, g, stopped), codePrecond, "generation")
			}
			h.ok(h.report("web", 1, running))
			h.ok(h.report("web", 1, failed))
			h.ok(h.assign("web", 1))
			second()
			h.reject(reportVm("web", 1, last, running), codePrecond, "generation")
			h.ok(h.report("web", 1, running))
			if v := h.vm("web"); v.GetState() != running || v.GetGeneration() != v.GetCreatedIndex()+2 || v.GetRestarts() != 1 {
				t.Fatalf("second life: %v", v)
			}
		})
	}
}

func TestCapacity(t *testing.T) {
	h := newHarness(t)
	h.ok(registerNode(1, 4, 4096, nil))
	for _, name := range []string{"a", "b", "c"} {
		h.ok(createVm(name, vmSpec(2, 1024), true))
	}
	h.ok(h.assign("a", 1))
	h.ok(h.assign("b", 1))
	h.reject(h.assign("c", 1), codeExhausted, "node_id")
	if v := h.vm("c"); v.GetState() != apiv1.VmState_VM_STATE_PENDING || v.GetGeneration() != v.GetCreatedIndex() {
		t.Fatalf("refused VM = %v", v)
	}
	// A task needs room too.
	task := h.submit(taskSpec("true", 1, 64))
	h.reject(assignTask(task, 1), codeExhausted, "node_id")

	// Once a VM stops its room is free again.
	h.ok(h.report("a", 1, apiv1.VmState_VM_STATE_STOPPED))
	h.ok(h.assign("c", 1))
	h.reject(assignTask(task, 1), codeExhausted, "node_id")

	// Memory is checked as well as vCPUs: node 2 has vCPUs to spare, but
	// not even the smallest VM its image boots (64 MiB) fits next to m1.
	h.ok(registerNode(2, 64, 2048, nil))
	h.ok(createVm("m1", vmSpec(1, 2048), true))
	h.ok(createVm("m2", vmSpec(1, 64), true))
	h.ok(h.assign("m1", 2))
	h.reject(h.assign("m2", 2), codeExhausted, "node_id")
	if got := h.s.Allocated(2); got.GetVcpus() != 1 || got.GetMemoryMib() != 2048 {
		t.Fatalf("node 2 allocated %v", got)
	}
}

func TestVmEventsBounded(t *testing.T) {
	h := newHarness(t)
	h.ok(registerNode(1, 4, 4096, nil))
	h.ok(createVm("v", vmSpec(1, 512), true))
	for i := 0; i < state.MaxVmEvents; i++ {
		h.ok(stopVm("v"))
		h.ok(startVm("v"))
	}
	v := h.vm("v")
	if len(v.GetEvents()) != state.MaxVmEvents {
		t.Fatalf("%d events, want %d", len(v.GetEvents()), state.MaxVmEvents)
	}
	for i, e := range v.GetEvents() {
		if i > 0 && e.GetIndex() <= v.GetEvents()[i-1].GetIndex() {
			t.Fatalf("events not oldest first: %v", v.GetEvents())
		}
	}
	last := v.GetEvents()[len(v.GetEvents())-1]
	if last.GetIndex() != h.idx || last.GetState() != apiv1.VmState_VM_STATE_PENDING || last.GetState() != v.GetState() {
		t.Fatalf("last event %v, VM %v at index %d", last, v, h.idx)
	}
	if first := v.GetEvents()[0]; first.GetIndex() != h.idx-state.MaxVmEvents+1 {
		t.Fatalf("oldest kept event at %d, want %d", first.GetIndex(), h.idx-state.MaxVmEvents+1)
	}
}

func TestVmEventCarriesProposerTime(t *testing.T) {
	h := newHarness(t)
	h.ok(registerNode(1, 4, 4096, nil))
	cmd := createVm("v", vmSpec(1, 512), true)
	cmd.ProposedUnixNano = 1_700_000_000_000_000_000
	h.ok(cmd)
	v := h.vm("v")
	if v.GetCreatedUnixNano() != cmd.ProposedUnixNano || v.GetEvents()[0].GetTimeUnixNano() != cmd.ProposedUnixNano {
		t.Fatalf("VM = %v, want times %d", v, cmd.ProposedUnixNano)
	}
}

// ---- task lifecycle ---------------------------------------------------------

func TestTaskLifecycle(t *testing.T) {
	h := newHarness(t)
	h.ok(registerNode(1, 4, 4096, nil))
	id := h.submit(taskSpec("make", 2, 1024))
	if tk := h.task(id); tk.GetStatus() != apiv1.TaskStatus_TASK_STATUS_PENDING || tk.GetAttempt() != 0 {
		t.Fatalf("submitted: %v", tk)
	}

	h.ok(assignTask(id, 1))
	tk := h.task(id)
	if tk.GetStatus() != apiv1.TaskStatus_TASK_STATUS_ASSIGNED || tk.GetAttempt() != 1 || tk.GetNodeId() != 1 {
		t.Fatalf("assigned: %v", tk)
	}
	if got := h.s.Allocated(1); got.GetVcpus() != 2 || got.GetMemoryMib() != 1024 {
		t.Fatalf("allocated = %v", got)
	}

	h.ok(reportTask(id, 1, 1, apiv1.TaskStatus_TASK_STATUS_RUNNING, nil))
	if tk := h.task(id); tk.GetStatus() != apiv1.TaskStatus_TASK_STATUS_RUNNING {
		t.Fatalf("running: %v", tk)
	}
	result := &apiv1.TaskResult{ExitCode: 0, OutputTail: []byte("done\n"), StartedUnixNano: 10, FinishedUnixNano: 20}
	h.ok(reportTask(id, 1, 1, apiv1.TaskStatus_TASK_STATUS_SUCCEEDED, result))
	tk = h.task(id)
	if tk.GetStatus() != apiv1.TaskStatus_TASK_STATUS_SUCCEEDED || !proto.Equal(tk.GetResult(), result) || tk.GetUpdatedIndex() != h.idx {
		t.Fatalf("succeeded: %v", tk)
	}
	if got := h.s.Allocated(1); got.GetVcpus() != 0 || got.GetMemoryMib() != 0 {
		t.Fatalf("allocated after end = %v", got)
	}

	h.reject(cancelTask(id), codePrecond, "id")
	h.reject(reportTask(id, 1, 1, apiv1.TaskStatus_TASK_STATUS_FAILED, nil), codePrecond, "status")
	h.reject(assignTask(id, 1), codePrecond, "id")
}

func TestCancelRunningTask(t *testing.T) {
	h := newHarness(t)
	h.ok(registerNode(1, 4, 4096, nil))
	id := h.submit(taskSpec("sleep", 1, 256))
	h.ok(assignTask(id, 1))
	h.ok(reportTask(id, 1, 1, apiv1.TaskStatus_TASK_STATUS_RUNNING, nil))

	resp := h.ok(cancelTask(id))
	if got := resp.GetCancelTask().GetTask().GetStatus(); got != apiv1.TaskStatus_TASK_STATUS_CANCELLED {
		t.Fatalf("cancel response status = %v", got)
	}
	h.reject(reportTask(id, 1, 1, apiv1.TaskStatus_TASK_STATUS_RUNNING, nil), codePrecond, "status")
	h.reject(cancelTask(id), codePrecond, "id")

	result := &apiv1.TaskResult{ExitCode: 0, OutputTail: []byte("ok")}
	h.ok(reportTask(id, 1, 1, apiv1.TaskStatus_TASK_STATUS_SUCCEEDED, result))
	tk := h.task(id)
	if tk.GetStatus() != apiv1.TaskStatus_TASK_STATUS_CANCELLED {
		t.Fatalf("status after late success = %v, want cancelled", tk.GetStatus())
	}
	// The node gave no finish time: the end is recorded at the proposal's
	// time (1 here, the harness proposes at time zero), and the cancelled
	// task no longer holds its node's resources.
	want := proto.CloneOf(result)
	want.FinishedUnixNano = 1
	if !proto.Equal(tk.GetResult(), want) {
		t.Fatalf("result = %v, want %v", tk.GetResult(), want)
	}
	if used := h.s.Allocated(1); used.GetVcpus() != 0 || used.GetMemoryMib() != 0 {
		t.Fatalf("node 1 still holds %v for the ended, cancelled task", used)
	}
}

// ---- membership -------------------------------------------------------------

func TestApplyMembership(t *testing.T) {
	h := newHarness(t)
	h.membership([]uint64{1, 2, 3}, []uint64{4})
	for id := uint64(1); id <= 4; id++ {
		h.ok(registerNode(id, 4, 4096, nil))
	}
	h.ok(createVm("v", vmSpec(1, 512), true))

	at := h.membership([]uint64{2, 1, 1}, []uint64{4}) // unsorted, duplicated
	want := &apiv1.Membership{Voters: []uint64{1, 2}, Learners: []uint64{4}, Removed: []uint64{3}}
	if got := h.s.Cluster().GetMembership(); !proto.Equal(got, want) {
		t.Fatalf("membership = %v, want %v", got, want)
	}
	if h.s.AppliedIndex() != at {
		t.Fatalf("AppliedIndex = %d, want %d", h.s.AppliedIndex(), at)
	}
	n := h.node(3)
	if n.GetStatus() != apiv1.NodeStatus_NODE_STATUS_LEFT || n.GetUpdatedIndex() != at {
		t.Fatalf("removed node = %v", n)
	}
	if !h.s.Removed(3) || h.s.Removed(4) || h.s.Removed(1) {
		t.Fatal("Removed() disagrees with the membership")
	}

	h.reject(registerNode(3, 4, 4096, nil), codePrecond, "id")
	h.reject(h.assign("v", 3), codePrecond, "node_id")

	// Promoting the learner removes nobody; removed ids stay removed.
	h.membership([]uint64{1, 2, 4}, nil)
	want = &apiv1.Membership{Voters: []uint64{1, 2, 4}, Removed: []uint64{3}}
	if got := h.s.Cluster().GetMembership(); !proto.Equal(got, want) {
		t.Fatalf("membership = %v, want %v", got, want)
	}
	if h.node(4).GetStatus() != apiv1.NodeStatus_NODE_STATUS_READY {
		t.Fatalf("promoted node = %v", h.node(4))
	}

	// Removing a member that never registered records it all the same.
	h.membership([]uint64{1, 2, 4, 7}, nil)
	h.membership([]uint64{1, 2, 4}, nil)
	want = &apiv1.Membership{Voters: []uint64{1, 2, 4}, Removed: []uint64{3, 7}}
	if got := h.s.Cluster().GetMembership(); !proto.Equal(got, want) {
		t.Fatalf("membership = %v, want %v", got, want)
	}
	h.reject(registerNode(7, 4, 4096, nil), codePrecond, "id")
}

func TestIndexMustIncrease(t *testing.T) {
	tests := []struct {
		name string
		fn   func(s *state.State)
	}{
		{"apply same index", func(s *state.State) { _, _ = s.Apply(10, initCluster("c1")) }},
		{"apply lower index", func(s *state.State) { _, _ = s.Apply(3, initCluster("c1")) }},
		{"apply empty same index", func(s *state.State) { s.ApplyEmpty(10) }},
		{"apply membership lower index", func(s *state.State) { s.ApplyMembership(9, []uint64{1}, nil) }},
		{"apply index 0", func(s *state.State) { _, _ = s.Apply(0, initCluster("c1")) }},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := state.New()
			if _, err := s.Apply(10, registerNode(1, 4, 4096, nil)); err != nil {
				t.Fatal(err)
			}
			before, err := s.Snapshot()
			if err != nil {
				t.Fatal(err)
			}
			func() {
				defer func() {
					if recover() == nil {
						t.Fatal("no panic")
					}
				}()
				tc.fn(s)
			}()
			after, err := s.Snapshot()
			if err != nil {
				t.Fatal(err)
			}
			if string(before) != string(after) || s.AppliedIndex() != 10 {
				t.Fatalf("state changed by a refused index (applied %d)", s.AppliedIndex())
			}
		})
	}
	t.Run("index 0 on a fresh state", func(t *testing.T) {
		defer func() {
			if recover() == nil {
				t.Fatal("no panic")
			}
		}()
		state.New().ApplyEmpty(0)
	})
}

// ---- idempotency ------------------------------------------------------------

func TestIdempotentCreateVm(t *testing.T) {
	s := state.New()
	if _, err := s.Apply(1, registerNode(1, 4, 4096, nil)); err != nil {
		t.Fatal(err)
	}
	cmd := withID("r1", createVm("web", vmSpec(2, 1024), true))
	resp1, err := s.Apply(5, cmd)
	if err != nil {
		t.Fatal(err)
	}
	if resp1.GetCreateVm().GetVm().GetCreatedIndex() != 5 {
		t.Fatalf("first response = %v", resp1)
	}
	before := s.Vms(0)

	resp2, err := s.Apply(6, proto.CloneOf(cmd))
	if err != nil {
		t.Fatalf("retry: %v", err)
	}
	if !proto.Equal(resp1, resp2) {
		t.Fatalf("retry response = %v, want %v", resp2, resp1)
	}
	after := s.Vms(0)
	if len(after) != 1 || !protoSliceEqual(before, after) || after[0].GetUpdatedIndex() != 5 {
		t.Fatalf("VMs after retry = %v, want %v", after, before)
	}
	if s.AppliedIndex() != 6 || s.RequestRecords() != 1 {
		t.Fatalf("applied %d, records %d", s.AppliedIndex(), s.RequestRecords())
	}
	if stored, ok := s.Response("r1"); !ok || !proto.Equal(stored, resp1) {
		t.Fatalf("Response(r1) = %v, %v", stored, ok)
	}

	// The id decides, not the command: a different command under a used id
	// gets the first response and does nothing.
	resp3, err := s.Apply(7, withID("r1", deleteVm("web")))
	if err != nil || !proto.Equal(resp3, resp1) {
		t.Fatalf("reuse of id: %v, %v", resp3, err)
	}
	if _, ok := s.Vm("web"); !ok {
		t.Fatal("a command under a used id was applied")
	}
}

func TestIdempotentSubmitTask(t *testing.T) {
	s := state.New()
	if _, err := s.Apply(1, registerNode(1, 4, 4096, nil)); err != nil {
		t.Fatal(err)
	}
	cmd := withID("t1", submitTask(taskSpec("make", 1, 256)))
	resp1, err := s.Apply(10, cmd)
	if err != nil {
		t.Fatal(err)
	}
	resp2, err := s.Apply(11, cmd)
	if err != nil {
		t.Fatal(err)
	}
	if id1, id2 := resp1.GetSubmitTask().GetTask().GetId(), resp2.GetSubmitTask().GetTask().GetId(); id1 != 10 || id2 != 10 {
		t.Fatalf("task ids %d and %d, want 10 twice", id1, id2)
	}
	if !proto.Equal(resp1, resp2) {
		t.Fatalf("responses differ: %v %v", resp1, resp2)
	}
	if n := len(s.Tasks(0)); n != 1 {
		t.Fatalf("%d tasks, want 1", n)
	}
	// Without an id the same command is a second task.
	resp3, err := s.Apply(12, submitTask(taskSpec("make", 1, 256)))
	if err != nil || resp3.GetSubmitTask().GetTask().GetId() != 12 || len(s.Tasks(0)) != 2 {
		t.Fatalf("submit without id: %v, %v, %d tasks", resp3, err, len(s.Tasks(0)))
	}
}

func TestRejectedRequestIsRemembered(t *testing.T) {
	h := newHarness(t)
	h.ok(registerNode(1, 4, 4096, nil)) // so that the fixed command below is valid
	bad := withID("bad", createVm("web", vmSpec(1, 0), true))
	first := h.reject(bad, codeInvalid, "spec.memory_mib")
	stored, ok := h.s.Response("bad")
	if !ok || !proto.Equal(stored, first) {
		t.Fatalf("Response(bad) = %v, %v; want %v", stored, ok, first)
	}
	if h.s.RequestRecords() != 1 {
		t.Fatalf("%d records", h.s.RequestRecords())
	}

	// A retry, even one that would now be valid, gets the stored rejection as
	// its response, with a nil error (the retry itself was not refused), and
	// changes nothing.
	before := records(t, h.s)
	fixed := withID("bad", createVm("web", vmSpec(1, 512), true))
	if err := h.s.Check(withID("new", createVm("web", vmSpec(1, 512), true))); err != nil {
		t.Fatalf("the fixed command under a new id would be refused: %v", err)
	}
	resp, err := h.apply(fixed)
	if err != nil {
		t.Fatalf("retry error = %v, want nil", err)
	}
	if !proto.Equal(resp, first) {
		t.Fatalf("retry response = %v, want %v", resp, first)
	}
	if after := records(t, h.s); !proto.Equal(before, after) {
		t.Fatalf("retry changed the state:\n%v\n%v", before, after)
	}
	if _, ok := h.s.Vm("web"); ok {
		t.Fatal("retry under a rejected id created the VM")
	}

	// An id that cannot be stored is not remembered.
	long := strings.Repeat("x", state.MaxClientRequestID+1)
	h.reject(withID(long, initCluster("c1")), codeInvalid, "client_request_id")
	if _, ok := h.s.Response(long); ok || h.s.RequestRecords() != 1 {
		t.Fatalf("invalid id remembered (%d records)", h.s.RequestRecords())
	}
	// The longest allowed id is remembered.
	okID := strings.Repeat("y", state.MaxClientRequestID)
	h.ok(withID(okID, initCluster("c1")))
	if _, ok := h.s.Response(okID); !ok {
		t.Fatal("id of the maximal length not remembered")
	}
}

func TestCheckPassesRetries(t *testing.T) {
	h := newHarness(t)
	h.ok(registerNode(1, 4, 4096, nil))
	create := withID("r1", createVm("web", vmSpec(1, 512), true))
	h.ok(create)
	// The retry would fail as a new request (the name is taken), but Apply
	// answers it with the remembered response, so the edge must let it through.
	if err := h.s.Check(create); err != nil {
		t.Fatalf("Check(retry of an applied request) = %v, want nil", err)
	}
	if err := h.s.Check(withID("r2", createVm("web", vmSpec(1, 512), true))); err == nil {
		t.Fatal("Check of a new request for a taken name passed")
	}
	bad := withID("r3", createVm("other", vmSpec(1, 0), true))
	h.reject(bad, codeInvalid, "spec.memory_mib")
	if err := h.s.Check(bad); err != nil {
		t.Fatalf("Check(retry of a rejected request) = %v, want nil (Apply answers with the stored rejection)", err)
	}
	if _, err := h.apply(bad); err != nil {
		t.Fatalf("Apply(retry of a rejected request) = %v, want nil", err)
	}
}

func TestRequestEviction(t *testing.T) {
	s := state.New()
	// A node registers at index 1; id-i is submitted at index i+2.
	if _, err := s.Apply(1, registerNode(1, 4, 4096, nil)); err != nil {
		t.Fatal(err)
	}
	const extra = 5
	n := state.MaxRequestRecords + extra
	spec := taskSpec("true", 1, 64)
	for i := 0; i < n; i++ {
		if _, err := s.Apply(uint64(i+2), withID(fmt.Sprintf("id-%d", i), submitTask(spec))); err != nil {
			t.Fatal(err)
		}
	}
	if got := s.RequestRecords(); got != state.MaxRequestRecords {
		t.Fatalf("RequestRecords = %d, want %d", got, state.MaxRequestRecords)
	}
	for i := 0; i < n; i++ {
		resp, ok := s.Response(fmt.Sprintf("id-%d", i))
		if i < extra {
			if ok {
				t.Fatalf("id-%d not evicted", i)
			}
			continue
		}
		if !ok || resp.GetSubmitTask().GetTask().GetId() != uint64(i+2) {
			t.Fatalf("Response(id-%d) = %v, %v", i, resp, ok)
		}
	}

	// An evicted id is applied anew.
	idx := uint64(n + 2)
	resp, err := s.Apply(idx, withID("id-0", submitTask(spec)))
	if err != nil {
		t.Fatal(err)
	}
	if got := resp.GetSubmitTask().GetTask().GetId(); got != idx {
		t.Fatalf("re-applied evicted id: task %d, want a new task %d", got, idx)
	}
	if len(s.Tasks(0)) != n+1 {
		t.Fatalf("%d tasks, want %d", len(s.Tasks(0)), n+1)
	}
	if got := s.RequestRecords(); got != state.MaxRequestRecords {
		t.Fatalf("RequestRecords = %d", got)
	}
	if _, ok := s.Response(fmt.Sprintf("id-%d", extra)); ok {
		t.Fatalf("id-%d should have been evicted by the new record", extra)
	}
	if _, ok := s.Response("id-0"); !ok {
		t.Fatal("re-applied id not remembered")
	}

	// Eviction survives a snapshot round trip.
	b, err := s.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	r, err := state.Restore(b)
	if err != nil {
		t.Fatal(err)
	}
	if r.RequestRecords() != state.MaxRequestRecords {
		t.Fatalf("restored RequestRecords = %d", r.RequestRecords())
	}
	next := uint64(n + 3)
	r1, err1 := s.Apply(next, withID("fresh", submitTask(spec)))
	r2, err2 := r.Apply(next, withID("fresh", submitTask(spec)))
	if err1 != nil || err2 != nil || !proto.Equal(r1, r2) {
		t.Fatalf("after restore: %v %v / %v %v", r1, err1, r2, err2)
	}
	if _, ok := r.Response(fmt.Sprintf("id-%d", extra+1)); ok {
		t.Fatal("restored state did not evict its oldest record")
	}
}

// ---- copies -----------------------------------------------------------------

func TestQueriesAndCommandsAreCopies(t *testing.T) {
	h := newHarness(t)
	reg := registerNode(1, 4, 4096, map[string]string{"zone": "a"})
	h.ok(reg)
	h.membership([]uint64{1}, nil)
	spec := vmSpec(1, 512)
	spec.Constraints = map[string]string{"zone": "a"}
	create := withID("c", createVm("web", spec, true))
	resp := h.ok(create)
	task := submitTask(taskSpec("echo", 1, 64))
	h.ok(task)
	before := records(t, h.s)

	// Change everything the caller holds.
	reg.GetRegisterNode().Labels["zone"] = "b"
	reg.GetRegisterNode().Capacity.Vcpus = 99
	reg.GetRegisterNode().Images[0].MinMemoryMib = 99999
	reg.GetRegisterNode().Images[1].Name = "changed"
	create.GetCreateVm().Spec.Vcpus = 99
	create.GetCreateVm().Spec.Constraints["zone"] = "z"
	task.GetSubmitTask().Spec.Args[0] = "changed"
	task.GetSubmitTask().Spec.Resources.MemoryMib = 1
	resp.GetCreateVm().Vm.Name = "changed"
	resp.GetCreateVm().Vm.Spec.Vcpus = 77

	v, _ := h.s.Vm("web")
	v.Spec.Vcpus = 55
	v.Events[0].Reason = "changed"
	for _, v := range h.s.Vms(0) {
		v.State = apiv1.VmState_VM_STATE_FAILED
	}
	n, _ := h.s.Node(1)
	n.Labels["zone"] = "q"
	n.Images[0].Digest = "sha256:ff"
	h.s.Nodes()[0].Capacity.Vcpus = 1
	tk, _ := h.s.Task(h.idx)
	tk.Status = apiv1.TaskStatus_TASK_STATUS_LOST
	h.s.Tasks(0)[0].Spec.Command = "rm"
	h.s.Cluster().Membership.Voters[0] = 42
	stored, _ := h.s.Response("c")
	stored.GetCreateVm().Vm.Name = "changed"
	h.s.Allocated(1).Vcpus = 100

	if after := records(t, h.s); !proto.Equal(before, after) {
		t.Fatalf("state changed through a caller's copy:\nbefore %v\nafter  %v", before, after)
	}
}

// TestEndedTasksAreForgottenOldestEndFirst: past MaxEndedTasks ended
// tasks, the state forgets those that ended first — not those submitted
// first: a long task that ends last is kept. Waiting and running tasks are
// never forgotten. A state restored from a snapshot forgets the same
// tasks as the one that took it.
func TestEndedTasksAreForgottenOldestEndFirst(t *testing.T) {
	h := newHarness(t)
	h.ok(registerNode(1, 16, 1<<20, nil))
	spec := taskSpec("true", 1, 64)
	long := h.submit(spec)
	h.ok(assignTask(long, 1))
	waiting := h.submit(taskSpec("true", 16, 64)) // no room beside the long task: waits
	end := func(id uint64) {
		h.ok(reportTask(id, 1, 1, apiv1.TaskStatus_TASK_STATUS_SUCCEEDED, &apiv1.TaskResult{}))
	}
	var short []uint64
	for range state.MaxEndedTasks + 5 {
		id := h.submit(spec)
		h.ok(assignTask(id, 1))
		end(id)
		short = append(short, id)
	}
	// Five more ended than are kept: the first five to end are gone.
	for i, id := range short {
		if _, ok := h.s.Task(id); ok != (i >= 5) {
			t.Fatalf("task %d (the %dth to end) kept: %v, want %v", id, i+1, ok, i >= 5)
		}
	}
	if _, ok := h.s.Task(long); !ok {
		t.Fatal("the running task was forgotten")
	}
	if _, ok := h.s.Task(waiting); !ok {
		t.Fatal("the waiting task was forgotten")
	}
	if e := h.s.Check(cancelTask(short[0])); e == nil || !strings.Contains(e.Error(), "forgotten") {
		t.Fatalf("cancel of a forgotten task: %v, want NOT_FOUND saying it may have been forgotten", e)
	}

	// From here, the state and its restored copy go on alike.
	snap, err := h.s.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	r, err := state.Restore(snap)
	if err != nil {
		t.Fatal(err)
	}
	for _, cmd := range []*apiv1.Command{
		reportTask(long, 1, 1, apiv1.TaskStatus_TASK_STATUS_SUCCEEDED, &apiv1.TaskResult{}),
		submitTask(spec),
	} {
		idx := h.next()
		for _, s := range []*state.State{h.s, r} {
			if _, err := s.Apply(idx, cmd); err != nil {
				t.Fatalf("apply %v: %v", cmd, err)
			}
		}
	}
	if _, ok := h.s.Task(long); !ok {
		t.Fatal("the long task, ended last, was forgotten before those that ended before it")
	}
	if _, ok := h.s.Task(short[5]); ok {
		t.Fatalf("task %d, the oldest end kept, is still kept after one more task ended", short[5])
	}
	a, _ := h.s.Snapshot()
	b, _ := r.Snapshot()
	if !bytes.Equal(a, b) {
		t.Fatal("the restored state forgot other tasks than the one that applied the log")
	}
}

// A cancelled task's end, once recorded, is not recorded again: a second
// end report (its node proposing again) is refused and changes nothing, so
// the task keeps the place among the ended tasks that its end gave it.
func TestCancelledTaskEndIsRecordedOnce(t *testing.T) {
	h := newHarness(t)
	h.ok(registerNode(1, 16, 1<<20, nil))
	id := h.submit(taskSpec("true", 1, 64))
	h.ok(assignTask(id, 1))
	h.ok(cancelTask(id))
	end := reportTask(id, 1, 1, apiv1.TaskStatus_TASK_STATUS_FAILED, &apiv1.TaskResult{ExitCode: 1, FinishedUnixNano: 5})
	h.ok(end)
	at := h.task(id).GetUpdatedIndex()
	h.reject(end, codePrecond, "status")
	if got := h.task(id).GetUpdatedIndex(); got != at {
		t.Fatalf("a refused second end report moved the task's UpdatedIndex from %d to %d", at, got)
	}
}

// A running report carries no end time: the end time is what frees a
// cancelled task's node, so a task still running must not have one.
func TestRunningReportWithAnEndIsRefused(t *testing.T) {
	h := newHarness(t)
	h.ok(registerNode(1, 16, 1<<20, nil))
	id := h.submit(taskSpec("true", 1, 64))
	h.ok(assignTask(id, 1))
	h.reject(reportTask(id, 1, 1, apiv1.TaskStatus_TASK_STATUS_RUNNING, &apiv1.TaskResult{StartedUnixNano: 5, FinishedUnixNano: 9}),
		apiv1.ErrorCode_ERROR_CODE_INVALID_ARGUMENT, "result.finished_unix_nano")
	h.ok(reportTask(id, 1, 1, apiv1.TaskStatus_TASK_STATUS_RUNNING, &apiv1.TaskResult{StartedUnixNano: 5}))
	h.ok(cancelTask(id))
	if got := h.s.Allocated(1); got.GetVcpus() != 1 {
		t.Fatalf("a cancelled task still running holds %v of node 1, want its vCPU", got)
	}
}
