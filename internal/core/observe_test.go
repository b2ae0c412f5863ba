package core

import (
	"slices"
	"testing"
	"time"

	apiv1 "github.com/blixard/blixard/api/v1"
)

// What the core counts for the driver's metrics (observe.go), tick by tick
// on the hNet harness of health_test.go.

// TestObservationsCountDroppedProposal: a leader whose uncommitted log is
// full (a limit of one byte, its followers cut off) takes the first write
// and drops the second; the drop is counted once, on the leader only.
func TestObservationsCountDroppedProposal(t *testing.T) {
	h := newHNet(t, 3, func(c *Config) { c.MaxUncommittedBytes = 1 })
	h.settle()
	for _, id := range h.ids {
		h.nodes[id].TakeObservations()
	}
	h.cut[2], h.cut[3] = true, true
	leader := h.nodes[1]
	leader.Request(901, createVmReq("d1", "first", nil))
	leader.Request(902, createVmReq("d2", "second", nil))
	h.drive(1)
	if resp := h.responses[902]; resp.GetError().GetCode() != apiv1.ErrorCode_ERROR_CODE_UNAVAILABLE {
		t.Fatalf("the second write answered %v, want UNAVAILABLE (dropped)", resp)
	}
	if o := leader.TakeObservations(); o.ProposalsDropped != 1 || o.ProposalsCommitted != 0 {
		t.Fatalf("leader observed %+v, want one proposal dropped and none committed", o)
	}
	if o := leader.TakeObservations(); o.ProposalsDropped != 0 {
		t.Fatalf("the drop was counted again: %+v", o)
	}
	for _, id := range []uint64{2, 3} {
		if o := h.nodes[id].TakeObservations(); o.ProposalsDropped != 0 {
			t.Fatalf("node %d observed %+v, proposed nothing", id, o)
		}
	}
}

// TestObservationsCountOwnAppliedProposals: a write the leader proposed is
// counted committed on the leader once it applies, not on the followers
// that apply it too; a membership change the leader proposed (a leave)
// counts as well.
func TestObservationsCountOwnAppliedProposals(t *testing.T) {
	h := newHNet(t, 3, nil)
	h.settle()
	for _, id := range h.ids {
		h.nodes[id].TakeObservations()
	}
	h.mustOK(1, &apiv1.Request{Kind: &apiv1.Request_CreateVm{CreateVm: &apiv1.CreateVmRequest{
		ClientRequestId: "c1", Name: "quiet", Spec: &apiv1.VmSpec{Vcpus: 1, MemoryMib: 128}}}})
	if o := h.nodes[1].TakeObservations(); o.ProposalsCommitted != 1 || o.ProposalsDropped != 0 {
		t.Fatalf("leader observed %+v after one write, want one proposal committed", o)
	}
	for _, id := range []uint64{2, 3} {
		if o := h.nodes[id].TakeObservations(); o.ProposalsCommitted != 0 {
			t.Fatalf("node %d observed %+v; the write was the leader's", id, o)
		}
	}
	h.mustOK(1, &apiv1.Request{Kind: &apiv1.Request_LeaveCluster{LeaveCluster: &apiv1.LeaveClusterRequest{ClientRequestId: "l1", NodeId: 3}}})
	if o := h.nodes[1].TakeObservations(); o.ProposalsCommitted != 1 {
		t.Fatalf("leader observed %+v after node 3 left, want its removal committed", o)
	}
	if o := h.nodes[2].TakeObservations(); o.ProposalsCommitted != 0 {
		t.Fatalf("node 2 observed %+v; the removal was the leader's", o)
	}
}

// TestObservationsPlacementLatency: each placement is observed once, on
// the leader that proposed it, with the wait from the entry that made the
// workload wait (its creation, its submission) to the leader's clock when
// the assignment applied.
func TestObservationsPlacementLatency(t *testing.T) {
	web := placeableVm("web")
	web.ProposedUnixNano = hTime(0).UnixNano()
	task := placeableTask()
	task.ProposedUnixNano = hTime(3).UnixNano()
	h := placeNet(t, []*apiv1.Command{web, task})
	n := h.nodes[1]
	for h.tick < 10 {
		h.step()
	}
	n.TakeObservations()
	if r := h.pass(); len(r.assignedVms) != 1 || len(r.assignedTasks) != 1 {
		t.Fatalf("pass placed %+v, want web and the task", r)
	}
	o := n.TakeObservations()
	want := []time.Duration{10 * hInterval, 7 * hInterval}
	if !slices.Equal(o.PlacementLatencies, want) {
		t.Fatalf("placement latencies %v, want %v (web waited 10 ticks, the task 7)", o.PlacementLatencies, want)
	}
	if o.ProposalsCommitted != 2 || o.VMReschedules+o.TaskReschedules != 0 {
		t.Fatalf("observed %+v, want two proposals committed and no reschedule", o)
	}
	h.step()
	h.pass()
	if o := n.TakeObservations(); len(o.PlacementLatencies) != 0 {
		t.Fatalf("placements observed again: %v", o.PlacementLatencies)
	}
}

// TestObservationsCountReschedules: a VM and a task placed on node 3 are
// first placements; once node 3 is down, placing them on node 2 counts one
// reschedule of each, on the leader, with their waits from the verdict.
func TestObservationsCountReschedules(t *testing.T) {
	h := newHNet(t, 3, nil)
	h.settle()
	for _, id := range h.ids {
		h.nodes[id].TakeObservations()
	}
	gpu := []string{"gpu"}
	h.mustOK(1, &apiv1.Request{Kind: &apiv1.Request_CreateVm{CreateVm: &apiv1.CreateVmRequest{
		ClientRequestId: "c1", Name: "web", Start: true, Spec: &apiv1.VmSpec{Vcpus: 1, MemoryMib: 128, Features: gpu}}}})
	resp := h.mustOK(1, &apiv1.Request{Kind: &apiv1.Request_SubmitTask{SubmitTask: &apiv1.SubmitTaskRequest{
		ClientRequestId: "c2", Spec: &apiv1.TaskSpec{Command: "sleep", Resources: &apiv1.Resources{Vcpus: 1, MemoryMib: 64, Features: gpu}}}}})
	taskID := resp.GetSubmitTask().GetTask().GetId()
	onNode := func(node uint64) func() bool {
		return func() bool {
			v, _ := h.nodes[1].st.Vm("web")
			tk, _ := h.nodes[1].st.Task(taskID)
			return v.GetNodeId() == node && v.GetState() == apiv1.VmState_VM_STATE_RUNNING &&
				tk.GetNodeId() == node && tk.GetStatus() == apiv1.TaskStatus_TASK_STATUS_RUNNING
		}
	}
	h.runUntil("web and the task running on node 3, the only one with a GPU", 50, onNode(3))
	first := h.nodes[1].TakeObservations()
	if first.VMReschedules != 0 || first.TaskReschedules != 0 || len(first.PlacementLatencies) != 2 {
		t.Fatalf("first placements observed as %+v, want two latencies and no reschedule", first)
	}

	// Node 2 gets a GPU too; then node 3 goes down.
	h.nodes[2].cfg.Capacity.Features = []string{"gpu", "kvm"}
	h.runUntil("node 2's GPU registered", 100, func() bool {
		return slices.Contains(h.nodeRec(1, 2).GetCapacity().GetFeatures(), "gpu")
	})
	h.cut[3] = true
	h.runUntil("node 3 down", 200, func() bool { return h.nodeRec(1, 3).GetStatus() == nsDown })
	downAt := hTime(h.tick)
	h.runUntil("web and the task running on node 2", 50, onNode(2))
	placedBy := hTime(h.tick)

	o := h.nodes[1].TakeObservations()
	if o.VMReschedules != 1 || o.TaskReschedules != 1 {
		t.Fatalf("leader observed %+v, want one VM and one task rescheduled", o)
	}
	if len(o.PlacementLatencies) != 2 {
		t.Fatalf("placement latencies %v, want two", o.PlacementLatencies)
	}
	for _, d := range o.PlacementLatencies {
		if d < 0 || d > placedBy.Sub(downAt)+hInterval {
			t.Fatalf("placement latency %v, want within the %v from node 3's verdict to the placements", d, placedBy.Sub(downAt))
		}
	}
	for _, id := range []uint64{2} {
		if o := h.nodes[id].TakeObservations(); o.VMReschedules+o.TaskReschedules != 0 || len(o.PlacementLatencies) != 0 {
			t.Fatalf("follower %d observed %+v; only the leader places", id, o)
		}
	}
}
