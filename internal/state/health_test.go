package state_test

import (
	"fmt"
	"math"
	"strconv"
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"

	apiv1 "github.com/blixard/blixard/api/v1"
	"github.com/blixard/blixard/internal/state"
)

// Short names for the enums these tests use most.
const (
	nsUnspecified  = apiv1.NodeStatus_NODE_STATUS_UNSPECIFIED
	nsReady        = apiv1.NodeStatus_NODE_STATUS_READY
	nsDisconnected = apiv1.NodeStatus_NODE_STATUS_DISCONNECTED
	nsDown         = apiv1.NodeStatus_NODE_STATUS_DOWN
	nsLeft         = apiv1.NodeStatus_NODE_STATUS_LEFT

	vsPending   = apiv1.VmState_VM_STATE_PENDING
	vsScheduled = apiv1.VmState_VM_STATE_SCHEDULED
	vsStarting  = apiv1.VmState_VM_STATE_STARTING
	vsRunning   = apiv1.VmState_VM_STATE_RUNNING
	vsStopping  = apiv1.VmState_VM_STATE_STOPPING
	vsStopped   = apiv1.VmState_VM_STATE_STOPPED
	vsFailed    = apiv1.VmState_VM_STATE_FAILED
	vsLost      = apiv1.VmState_VM_STATE_LOST

	tsPending   = apiv1.TaskStatus_TASK_STATUS_PENDING
	tsAssigned  = apiv1.TaskStatus_TASK_STATUS_ASSIGNED
	tsRunning   = apiv1.TaskStatus_TASK_STATUS_RUNNING
	tsSucceeded = apiv1.TaskStatus_TASK_STATUS_SUCCEEDED
	tsFailed    = apiv1.TaskStatus_TASK_STATUS_FAILED
	tsCancelled = apiv1.TaskStatus_TASK_STATUS_CANCELLED
	tsLost      = apiv1.TaskStatus_TASK_STATUS_LOST

	rpUnspecified = apiv1.RestartPolicy_RESTART_POLICY_UNSPECIFIED
	rpAlways      = apiv1.RestartPolicy_RESTART_POLICY_ALWAYS
	rpOnFailure   = apiv1.RestartPolicy_RESTART_POLICY_ON_FAILURE
	rpNever       = apiv1.RestartPolicy_RESTART_POLICY_NEVER

	// downNanos is the proposer's clock on the verdicts that take a node down.
	downNanos = 4242
)

// ---- builders ---------------------------------------------------------------

func nodeStatus(id uint64, st apiv1.NodeStatus, reason string) *apiv1.Command {
	return &apiv1.Command{Op: &apiv1.Command_SetNodeStatus{SetNodeStatus: &apiv1.SetNodeStatusCommand{Id: id, Status: st, Reason: reason}}}
}

func drainCmd(id uint64, drain bool) *apiv1.Command {
	return &apiv1.Command{Op: &apiv1.Command_DrainNode{DrainNode: &apiv1.DrainNodeCommand{Id: id, Drain: drain}}}
}

func vmPlacementFailed(name string, gen uint64, reason string) *apiv1.Command {
	return &apiv1.Command{Op: &apiv1.Command_PlacementFailed{PlacementFailed: &apiv1.PlacementFailedCommand{
		VmName: name, VmGeneration: gen, Reason: reason,
	}}}
}

func taskPlacementFailed(id uint64, attempt uint32, reason string) *apiv1.Command {
	return &apiv1.Command{Op: &apiv1.Command_PlacementFailed{PlacementFailed: &apiv1.PlacementFailedCommand{
		TaskId: id, TaskAttempt: attempt, Reason: reason,
	}}}
}

// proposedAt stamps cmd with the proposer's clock.
func proposedAt(nanos int64, cmd *apiv1.Command) *apiv1.Command {
	cmd.ProposedUnixNano = nanos
	return cmd
}

// downCmd takes node id down at downNanos.
func downCmd(id uint64) *apiv1.Command {
	return proposedAt(downNanos, nodeStatus(id, nsDown, "no heartbeat for 6s"))
}

// overcommitted registers node id with overcommit ratios.
func overcommitted(id uint64, vcpus uint32, memMiB uint64, vcpuRatio, memRatio float64) *apiv1.Command {
	c := registerNode(id, vcpus, memMiB, nil)
	c.GetRegisterNode().VcpuOvercommit = vcpuRatio
	c.GetRegisterNode().MemoryOvercommit = memRatio
	return c
}

// featureless registers node id with no features at all.
func featureless(id uint64, vcpus uint32, memMiB uint64, features ...string) *apiv1.Command {
	c := registerNode(id, vcpus, memMiB, nil)
	c.GetRegisterNode().Capacity.Features = features
	return c
}

func policySpec(policy apiv1.RestartPolicy) *apiv1.VmSpec {
	spec := vmSpec(1, 512)
	spec.RestartPolicy = policy
	return spec
}

func groupSpec(group string, soft bool) *apiv1.VmSpec {
	spec := vmSpec(1, 512)
	spec.AntiAffinityGroup = group
	spec.AntiAffinitySoft = soft
	return spec
}

// placeVm creates VM name of spec wanted running, places it on node and has
// the node report each of states.
func placeVm(h *harness, name string, spec *apiv1.VmSpec, node uint64, states ...apiv1.VmState) {
	h.t.Helper()
	h.ok(createVm(name, spec, true))
	h.ok(h.assign(name, node))
	for _, st := range states {
		h.ok(h.report(name, node, st))
	}
}

// placeTask places pending task id on node, reported running when running.
func placeTask(h *harness, id, node uint64, running bool) {
	h.t.Helper()
	h.ok(assignTask(id, node))
	if running {
		h.ok(reportTask(id, node, h.task(id).GetAttempt(), tsRunning, &apiv1.TaskResult{StartedUnixNano: 5}))
	}
}

// runTask submits spec and places it on node.
func runTask(h *harness, spec *apiv1.TaskSpec, node uint64, running bool) uint64 {
	h.t.Helper()
	id := h.submit(spec)
	placeTask(h, id, node, running)
	return id
}

func joinedNames(vms []*apiv1.Vm) string { return strings.Join(vmNames(vms), ",") }

func containsTask(ts []*apiv1.Task, id uint64) bool {
	for _, tk := range ts {
		if tk.GetId() == id {
			return true
		}
	}
	return false
}

func containsVm(vms []*apiv1.Vm, name string) bool {
	for _, v := range vms {
		if v.GetName() == name {
			return true
		}
	}
	return false
}

func isZero(r *apiv1.Resources) bool {
	return r.GetVcpus() == 0 && r.GetMemoryMib() == 0 && r.GetDiskMib() == 0
}

// checkRestoreAgrees: the state passed through a snapshot files the
// workloads as the live one does (the index is derived, never stored).
func checkRestoreAgrees(t testing.TB, s *state.State, nodes ...uint64) {
	t.Helper()
	r, err := state.Restore(mustSnapshot(t, s))
	if err != nil {
		t.Fatalf("Restore: %v", err)
	}
	if !protoSliceEqual(r.VmsToPlace(), s.VmsToPlace()) {
		t.Fatalf("restored VmsToPlace() = %v, want %v", vmNames(r.VmsToPlace()), vmNames(s.VmsToPlace()))
	}
	if !protoSliceEqual(r.PendingTasks(0), s.PendingTasks(0)) {
		t.Fatalf("restored PendingTasks() = %v, want %v", taskIDs(r.PendingTasks(0)), taskIDs(s.PendingTasks(0)))
	}
	for _, id := range nodes {
		if !protoSliceEqual(r.VmsOn(id), s.VmsOn(id)) || !protoSliceEqual(r.TasksOn(id), s.TasksOn(id)) {
			t.Fatalf("restored workloads on node %d differ: VMs %v vs %v, tasks %v vs %v", id,
				vmNames(r.VmsOn(id)), vmNames(s.VmsOn(id)), taskIDs(r.TasksOn(id)), taskIDs(s.TasksOn(id)))
		}
		if !proto.Equal(r.Allocated(id), s.Allocated(id)) {
			t.Fatalf("restored Allocated(%d) = %v, want %v", id, r.Allocated(id), s.Allocated(id))
		}
	}
	if err := s.CheckCommitted(); err != nil {
		t.Fatalf("CheckCommitted() = %v", err)
	}
}

// ---- 1. a node that goes down loses its workloads ----------------------------

// TestNodeDownEvictsVms: each kind of VM on a node that goes down, on its own
// in a two-node cluster, and what becomes of it.
func TestNodeDownEvictsVms(t *testing.T) {
	tests := []struct {
		name  string
		setup func(h *harness) // makes VM "vm", involving node 1
		// untouched: the VM holds nothing on node 1, and the verdict leaves
		// its record as it was.
		untouched bool
		gone      bool // the record is removed
		state     apiv1.VmState
		node      uint64
		// place: listed in VmsToPlace and assignable to node 2; restarts
		// is then what the assignment counts.
		place    bool
		restarts uint32
		// staleField: the field refusing node 1's report at the old generation.
		staleField string
		// moved: the VM was being moved by a drain and now waits, with a
		// LOST event on node 1 before its PENDING one on no node.
		moved bool
	}{
		{name: "running, restart always", setup: func(h *harness) {
			placeVm(h, "vm", policySpec(rpAlways), 1, vsRunning)
		}, state: vsLost, node: 1, place: true, restarts: 1, staleField: "state"},
		{name: "running, restart on-failure", setup: func(h *harness) {
			placeVm(h, "vm", policySpec(rpOnFailure), 1, vsRunning)
		}, state: vsLost, node: 1, place: true, restarts: 1, staleField: "state"},
		{name: "running, restart unspecified (on-failure)", setup: func(h *harness) {
			placeVm(h, "vm", policySpec(rpUnspecified), 1, vsRunning)
		}, state: vsLost, node: 1, place: true, restarts: 1, staleField: "state"},
		{name: "scheduled, not yet started", setup: func(h *harness) {
			placeVm(h, "vm", policySpec(rpOnFailure), 1)
		}, state: vsLost, node: 1, place: true, restarts: 1, staleField: "state"},
		{name: "starting, restart always", setup: func(h *harness) {
			placeVm(h, "vm", policySpec(rpAlways), 1, vsStarting)
		}, state: vsLost, node: 1, place: true, restarts: 1, staleField: "state"},
		{name: "running, restart never", setup: func(h *harness) {
			placeVm(h, "vm", policySpec(rpNever), 1, vsRunning)
		}, state: vsLost, node: 1, staleField: "state"},
		{name: "wanted stopped, stopping", setup: func(h *harness) {
			placeVm(h, "vm", policySpec(rpAlways), 1, vsRunning)
			h.ok(stopVm("vm"))
		}, state: vsStopped, node: 1, staleField: "state"},
		{name: "being deleted", setup: func(h *harness) {
			placeVm(h, "vm", policySpec(rpAlways), 1, vsRunning)
			h.ok(deleteVm("vm"))
		}, gone: true},
		{name: "deleted while scheduled", setup: func(h *harness) {
			placeVm(h, "vm", policySpec(rpAlways), 1)
			h.ok(deleteVm("vm"))
		}, gone: true},
		{name: "moved by drain, restart always", setup: func(h *harness) {
			placeVm(h, "vm", policySpec(rpAlways), 1, vsRunning)
			h.ok(drainCmd(1, true))
		}, state: vsPending, node: 0, place: true, restarts: 0, staleField: "generation", moved: true},
		{name: "moved by drain, restart never", setup: func(h *harness) {
			placeVm(h, "vm", policySpec(rpNever), 1, vsRunning)
			h.ok(drainCmd(1, true))
		}, state: vsPending, node: 0, place: true, restarts: 0, staleField: "generation", moved: true},
		{name: "moved by drain, then undrained", setup: func(h *harness) {
			placeVm(h, "vm", policySpec(rpNever), 1, vsRunning)
			h.ok(drainCmd(1, true))
			h.ok(drainCmd(1, false))
		}, state: vsPending, node: 0, place: true, restarts: 0, staleField: "generation", moved: true},
		{name: "started again while stopping", setup: func(h *harness) {
			placeVm(h, "vm", policySpec(rpNever), 1, vsRunning)
			h.ok(stopVm("vm"))
			h.ok(startVm("vm"))
		}, state: vsPending, node: 0, place: true, restarts: 0, staleField: "generation", moved: true},
		{name: "failed on node 1 before", setup: func(h *harness) {
			placeVm(h, "vm", policySpec(rpOnFailure), 1, vsFailed)
		}, untouched: true},
		{name: "stopped on node 1 by the user before", setup: func(h *harness) {
			placeVm(h, "vm", policySpec(rpAlways), 1, vsRunning)
			h.ok(stopVm("vm"))
			h.ok(h.report("vm", 1, vsStopped))
		}, untouched: true},
		{name: "running on node 2", setup: func(h *harness) {
			placeVm(h, "vm", policySpec(rpAlways), 2, vsRunning)
		}, untouched: true},
		{name: "pending, never placed", setup: func(h *harness) {
			h.ok(createVm("vm", policySpec(rpNever), true))
		}, untouched: true},
		{name: "created stopped", setup: func(h *harness) {
			h.ok(createVm("vm", policySpec(rpAlways), false))
		}, untouched: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t)
			h.ok(registerNode(1, 8, 8192, nil))
			h.ok(registerNode(2, 8, 8192, nil))
			tc.setup(h)
			before := h.vm("vm")
			alloc2 := h.s.Allocated(2)

			h.ok(downCmd(1))
			downAt := h.idx

			if n := h.node(1); n.GetStatus() != nsDown || n.GetStatusReason() != "no heartbeat for 6s" || n.GetUpdatedIndex() != downAt {
				t.Fatalf("node 1 after the verdict: %v", n)
			}
			if !isZero(h.s.Allocated(1)) || len(h.s.VmsOn(1)) != 0 {
				t.Fatalf("node 1 still holds %v (VMs %v)", h.s.Allocated(1), vmNames(h.s.VmsOn(1)))
			}
			if !proto.Equal(h.s.Allocated(2), alloc2) {
				t.Fatalf("Allocated(2) = %v, want %v as before", h.s.Allocated(2), alloc2)
			}
			checkRestoreAgrees(t, h.s, 1, 2)

			got, ok := h.s.Vm("vm")
			switch {
			case tc.gone:
				if ok {
					t.Fatalf("VM being deleted on a node that went down: %v, want removed", got)
				}
				if containsVm(h.s.VmsToPlace(), "vm") {
					t.Fatal("removed VM listed to place")
				}
				h.reject(reportVm("vm", 1, before.GetGeneration(), vsStopped), codeNotFound, "name")
				return
			case !ok:
				t.Fatal("VM removed")
			case tc.untouched:
				if !proto.Equal(got, before) {
					t.Fatalf("VM holding nothing on node 1 changed:\nbefore %v\nafter  %v", before, got)
				}
				return
			}

			if got.GetState() != tc.state || got.GetNodeId() != tc.node || got.GetGeneration() != before.GetGeneration() ||
				got.GetDesiredState() != before.GetDesiredState() || got.GetUpdatedIndex() != downAt {
				t.Fatalf("VM after its node went down: %v, want %v on node %d at generation %d", got, tc.state, tc.node, before.GetGeneration())
			}
			if !strings.Contains(got.GetReason(), "node 1 is down") {
				t.Fatalf("VM reason = %q, want it to say node 1 is down", got.GetReason())
			}
			evs := got.GetEvents()
			last := evs[len(evs)-1]
			if last.GetState() != tc.state || last.GetIndex() != downAt || last.GetTimeUnixNano() != downNanos ||
				last.GetNodeId() != tc.node || last.GetGeneration() != before.GetGeneration() {
				t.Fatalf("last event = %v", last)
			}
			if tc.moved {
				lost := evs[len(evs)-2]
				if lost.GetState() != vsLost || lost.GetNodeId() != 1 || lost.GetIndex() != downAt {
					t.Fatalf("a moved VM's event before pending = %v, want lost on node 1", lost)
				}
				if len(evs) != len(before.GetEvents())+2 {
					t.Fatalf("moved VM has %d events, want %d", len(evs), len(before.GetEvents())+2)
				}
			} else if len(evs) != len(before.GetEvents())+1 {
				t.Fatalf("VM has %d events, want %d", len(evs), len(before.GetEvents())+1)
			}

			// Node 1, fenced, may still send what it saw: stale.
			h.reject(reportVm("vm", 1, before.GetGeneration(), vsRunning), codePrecond, tc.staleField)
			h.reject(reportVm("vm", 1, before.GetGeneration(), vsStopped), codePrecond, tc.staleField)

			if listed := containsVm(h.s.VmsToPlace(), "vm"); listed != tc.place {
				t.Fatalf("VM listed to place: %v, want %v (VmsToPlace %v)", listed, tc.place, vmNames(h.s.VmsToPlace()))
			}
			if !tc.place {
				h.reject(assignVm("vm", 2, before.GetGeneration()), codePrecond, "name")
				return
			}
			// A placement decided before the verdict is stale...
			h.reject(assignVm("vm", 2, before.GetGeneration()-1), codePrecond, "generation")
			// ...one at the generation the VM has now takes it to node 2.
			h.ok(assignVm("vm", 2, before.GetGeneration()))
			v := h.vm("vm")
			if v.GetState() != vsScheduled || v.GetNodeId() != 2 || v.GetGeneration() != before.GetGeneration()+1 ||
				v.GetRestarts() != before.GetRestarts()+tc.restarts {
				t.Fatalf("VM placed again: %v, want scheduled on node 2 at generation %d with %d restarts",
					v, before.GetGeneration()+1, before.GetRestarts()+tc.restarts)
			}
			h.reject(reportVm("vm", 1, before.GetGeneration(), vsRunning), codePrecond, "generation")
			h.reject(reportVm("vm", 1, v.GetGeneration(), vsRunning), codePrecond, "generation")
			h.ok(h.report("vm", 2, vsRunning))
			checkRestoreAgrees(t, h.s, 1, 2)
		})
	}
}

// TestNodeDownEvictsTasks: each kind of task on a node that goes down.
func TestNodeDownEvictsTasks(t *testing.T) {
	withAttempts := func(n uint32) *apiv1.TaskSpec {
		spec := taskSpec("make", 1, 256)
		spec.MaxAttempts = n
		return spec
	}
	tests := []struct {
		name      string
		setup     func(h *harness) uint64 // makes the task; node 1 is left ready
		clock     int64                   // proposer's clock on the verdict
		untouched bool
		status    apiv1.TaskStatus
		attempt   uint32
		node      uint64
		reasonHas string
		// finished: the result's end as the verdict stamps it (0: not checked).
		finished int64
	}{
		{name: "running at attempt 1 of the default 3", setup: func(h *harness) uint64 {
			return runTask(h, taskSpec("make", 1, 256), 1, true)
		}, clock: downNanos, status: tsPending, attempt: 1, node: 0, reasonHas: "attempt 1 of 3"},
		{name: "assigned at attempt 1, not yet running", setup: func(h *harness) uint64 {
			return runTask(h, taskSpec("make", 1, 256), 1, false)
		}, clock: downNanos, status: tsPending, attempt: 1, node: 0, reasonHas: "attempt 1 of 3"},
		{name: "running at attempt 2 of the default 3", setup: func(h *harness) uint64 {
			id := runTask(h, taskSpec("make", 1, 256), 1, true)
			h.ok(downCmd(1))
			h.ok(nodeStatus(1, nsReady, "back"))
			placeTask(h, id, 1, true)
			return id
		}, clock: downNanos, status: tsPending, attempt: 2, node: 0, reasonHas: "attempt 2 of 3"},
		{name: "running at the last of the default 3 attempts", setup: func(h *harness) uint64 {
			id := runTask(h, taskSpec("make", 1, 256), 1, true)
			for i := 0; i < 2; i++ {
				h.ok(downCmd(1))
				h.ok(nodeStatus(1, nsReady, "back"))
				placeTask(h, id, 1, true)
			}
			return id
		}, clock: downNanos, status: tsLost, attempt: 3, node: 1, reasonHas: "attempt 3 of 3", finished: downNanos},
		{name: "running with max_attempts 1", setup: func(h *harness) uint64 {
			return runTask(h, withAttempts(1), 1, true)
		}, clock: downNanos, status: tsLost, attempt: 1, node: 1, reasonHas: "attempt 1 of 1", finished: downNanos},
		{name: "assigned with max_attempts 1, no clock", setup: func(h *harness) uint64 {
			return runTask(h, withAttempts(1), 1, false)
		}, clock: 0, status: tsLost, attempt: 1, node: 1, reasonHas: "attempt 1 of 1", finished: 1},
		{name: "running with max_attempts 2", setup: func(h *harness) uint64 {
			return runTask(h, withAttempts(2), 1, true)
		}, clock: downNanos, status: tsPending, attempt: 1, node: 0, reasonHas: "attempt 1 of 2"},
		{name: "cancelled while running", setup: func(h *harness) uint64 {
			id := runTask(h, taskSpec("make", 1, 256), 1, true)
			h.ok(cancelTask(id))
			return id
		}, clock: downNanos, status: tsCancelled, attempt: 1, node: 1, reasonHas: "cancelled", finished: downNanos},
		{name: "cancelled while assigned, no clock", setup: func(h *harness) uint64 {
			id := runTask(h, taskSpec("make", 1, 256), 1, false)
			h.ok(cancelTask(id))
			return id
		}, clock: 0, status: tsCancelled, attempt: 1, node: 1, reasonHas: "cancelled", finished: 1},
		{name: "cancelled, its end already reported", setup: func(h *harness) uint64 {
			id := runTask(h, taskSpec("make", 1, 256), 1, true)
			h.ok(cancelTask(id))
			h.ok(reportTask(id, 1, 1, tsFailed, &apiv1.TaskResult{ExitCode: 137, FinishedUnixNano: 9}))
			return id
		}, clock: downNanos, untouched: true},
		{name: "succeeded on node 1", setup: func(h *harness) uint64 {
			id := runTask(h, taskSpec("make", 1, 256), 1, true)
			h.ok(reportTask(id, 1, 1, tsSucceeded, &apiv1.TaskResult{FinishedUnixNano: 9}))
			return id
		}, clock: downNanos, untouched: true},
		{name: "failed on node 1", setup: func(h *harness) uint64 {
			id := runTask(h, taskSpec("make", 1, 256), 1, true)
			h.ok(reportTask(id, 1, 1, tsFailed, &apiv1.TaskResult{ExitCode: 2, FinishedUnixNano: 9}))
			return id
		}, clock: downNanos, untouched: true},
		{name: "pending", setup: func(h *harness) uint64 {
			return h.submit(taskSpec("make", 1, 256))
		}, clock: downNanos, untouched: true},
		{name: "running on node 2", setup: func(h *harness) uint64 {
			return runTask(h, taskSpec("make", 1, 256), 2, true)
		}, clock: downNanos, untouched: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t)
			h.ok(registerNode(1, 8, 8192, nil))
			h.ok(registerNode(2, 8, 8192, nil))
			id := tc.setup(h)
			before := h.task(id)
			alloc2 := h.s.Allocated(2)

			h.ok(proposedAt(tc.clock, nodeStatus(1, nsDown, "no heartbeat")))
			downAt := h.idx

			if !isZero(h.s.Allocated(1)) || len(h.s.TasksOn(1)) != 0 {
				t.Fatalf("node 1 still holds %v (tasks %v)", h.s.Allocated(1), taskIDs(h.s.TasksOn(1)))
			}
			if !proto.Equal(h.s.Allocated(2), alloc2) {
				t.Fatalf("Allocated(2) = %v, want %v as before", h.s.Allocated(2), alloc2)
			}
			checkRestoreAgrees(t, h.s, 1, 2)
			got := h.task(id)
			if tc.untouched {
				if !proto.Equal(got, before) {
					t.Fatalf("task holding nothing on node 1 changed:\nbefore %v\nafter  %v", before, got)
				}
				return
			}
			if got.GetStatus() != tc.status || got.GetAttempt() != tc.attempt || got.GetNodeId() != tc.node || got.GetUpdatedIndex() != downAt {
				t.Fatalf("task after its node went down: %v, want %v at attempt %d on node %d", got, tc.status, tc.attempt, tc.node)
			}
			if !strings.Contains(got.GetReason(), tc.reasonHas) {
				t.Fatalf("task reason = %q, want it to mention %q", got.GetReason(), tc.reasonHas)
			}
			if pending := containsTask(h.s.PendingTasks(0), id); pending != (tc.status == tsPending) {
				t.Fatalf("task listed pending: %v, status %v", pending, tc.status)
			}

			switch tc.status {
			case tsPending:
				if !strings.Contains(got.GetReason(), "node 1 is down") {
					t.Fatalf("task reason = %q, want it to say node 1 is down", got.GetReason())
				}
				// The dead node's report of the attempt it lost is stale.
				h.reject(reportTask(id, 1, tc.attempt, tsSucceeded, nil), codePrecond, "attempt")
				h.ok(assignTask(id, 2))
				if a := h.task(id); a.GetStatus() != tsAssigned || a.GetAttempt() != tc.attempt+1 || a.GetNodeId() != 2 {
					t.Fatalf("task placed again: %v, want assigned to node 2 at attempt %d", a, tc.attempt+1)
				}
				h.reject(reportTask(id, 1, tc.attempt, tsRunning, nil), codePrecond, "attempt")
				h.reject(reportTask(id, 1, tc.attempt+1, tsRunning, nil), codePrecond, "attempt")
				h.ok(reportTask(id, 2, tc.attempt+1, tsRunning, nil))
			case tsLost:
				r := got.GetResult()
				if r.GetExitCode() != -1 || r.GetFinishedUnixNano() != tc.finished || r.GetError() != got.GetReason() {
					t.Fatalf("lost task's result = %v, want exit -1, finished at %d, error %q", r, tc.finished, got.GetReason())
				}
				if !strings.Contains(got.GetReason(), "lost") {
					t.Fatalf("lost task's reason = %q", got.GetReason())
				}
				h.reject(assignTask(id, 2), codePrecond, "id")
				h.reject(reportTask(id, 1, tc.attempt, tsSucceeded, nil), codePrecond, "status")
				h.reject(cancelTask(id), codePrecond, "id")
			case tsCancelled:
				r := got.GetResult()
				if r.GetFinishedUnixNano() != tc.finished || !strings.Contains(r.GetError(), "node 1 is down") {
					t.Fatalf("cancelled task's result = %v, want finished at %d with an error saying node 1 is down", r, tc.finished)
				}
				if got.GetReason() != before.GetReason() {
					t.Fatalf("cancelled task's reason changed: %q -> %q", before.GetReason(), got.GetReason())
				}
				if before.GetResult().GetStartedUnixNano() != 0 && r.GetStartedUnixNano() != before.GetResult().GetStartedUnixNano() {
					t.Fatalf("cancelled task's start lost: %v", r)
				}
			}
		})
	}
}

// TestNodeDownEvictsEverythingAtOnce: one verdict on a node holding every
// kind of workload, with bystanders on another node.
func TestNodeDownEvictsEverythingAtOnce(t *testing.T) {
	h := newHarness(t)
	h.ok(registerNode(1, 16, 16384, nil))
	h.ok(registerNode(2, 16, 16384, nil))
	placeVm(h, "always", policySpec(rpAlways), 1, vsRunning)
	placeVm(h, "onfail", policySpec(rpOnFailure), 1, vsRunning)
	placeVm(h, "never", policySpec(rpNever), 1, vsRunning)
	placeVm(h, "halting", policySpec(rpAlways), 1, vsRunning)
	h.ok(stopVm("halting"))
	placeVm(h, "dying", policySpec(rpAlways), 1, vsRunning)
	h.ok(deleteVm("dying"))
	placeVm(h, "bystander", policySpec(rpAlways), 2, vsRunning)
	h.ok(createVm("waiting", vmSpec(1, 512), true))
	retry := runTask(h, taskSpec("make", 2, 1024), 1, true)
	last := h.submit(func() *apiv1.TaskSpec { s := taskSpec("make", 1, 256); s.MaxAttempts = 1; return s }())
	placeTask(h, last, 1, true)
	cancelled := runTask(h, taskSpec("make", 1, 256), 1, true)
	h.ok(cancelTask(cancelled))
	other := runTask(h, taskSpec("make", 1, 256), 2, true)

	if a := h.s.Allocated(1); a.GetVcpus() != 9 || a.GetMemoryMib() != 5*512+1024+2*256 {
		t.Fatalf("Allocated(1) = %v before the verdict", a)
	}
	bystander, otherTask, alloc2 := h.vm("bystander"), h.task(other), h.s.Allocated(2)

	// Check alone takes nothing down.
	before := keyOf(t, h.s)
	if err := h.s.Check(downCmd(1)); err != nil {
		t.Fatalf("Check(down) = %v", err)
	}
	if !before.equal(keyOf(t, h.s)) {
		t.Fatal("Check changed the state")
	}

	h.ok(downCmd(1))

	if !isZero(h.s.Allocated(1)) || len(h.s.VmsOn(1)) != 0 || len(h.s.TasksOn(1)) != 0 {
		t.Fatalf("node 1 still holds %v: VMs %v, tasks %v", h.s.Allocated(1), vmNames(h.s.VmsOn(1)), taskIDs(h.s.TasksOn(1)))
	}
	for name, want := range map[string]apiv1.VmState{"always": vsLost, "onfail": vsLost, "never": vsLost, "halting": vsStopped} {
		if v := h.vm(name); v.GetState() != want {
			t.Fatalf("VM %s: %v, want %v", name, v.GetState(), want)
		}
	}
	if _, ok := h.s.Vm("dying"); ok {
		t.Fatal("VM being deleted survived its node")
	}
	if got := joinedNames(h.s.VmsToPlace()); got != "always,onfail,waiting" {
		t.Fatalf("VmsToPlace() = %s, want always,onfail,waiting", got)
	}
	if got := taskIDs(h.s.PendingTasks(0)); len(got) != 1 || got[0] != retry {
		t.Fatalf("PendingTasks() = %v, want [%d]", got, retry)
	}
	if h.task(last).GetStatus() != tsLost || h.task(cancelled).GetResult().GetFinishedUnixNano() != downNanos {
		t.Fatalf("tasks after the verdict: last %v, cancelled %v", h.task(last), h.task(cancelled))
	}
	if !proto.Equal(h.vm("bystander"), bystander) || !proto.Equal(h.task(other), otherTask) || !proto.Equal(h.s.Allocated(2), alloc2) {
		t.Fatal("the verdict on node 1 touched node 2's workloads")
	}
	checkRestoreAgrees(t, h.s, 1, 2)

	// The node may not take work back until it is ready again; nothing
	// returns to it by itself.
	h.reject(h.assign("always", 1), codePrecond, "node_id")
	h.reject(assignTask(retry, 1), codePrecond, "node_id")
	h.ok(nodeStatus(1, nsReady, "heartbeat back"))
	if !isZero(h.s.Allocated(1)) || h.vm("always").GetState() != vsLost {
		t.Fatalf("node 1 ready again: Allocated %v, VM always %v", h.s.Allocated(1), h.vm("always"))
	}
	h.ok(h.assign("always", 1))
	h.ok(assignTask(retry, 1))
}

// ---- 2. status transitions --------------------------------------------------

func TestSetNodeStatusTransitions(t *testing.T) {
	type step struct {
		status apiv1.NodeStatus
		reason string
	}
	tests := []struct {
		name    string
		steps   []step
		evicted bool // the workloads on node 1 were taken off it
	}{
		{"ready to disconnected keeps the workloads", []step{{nsDisconnected, "no heartbeat for 2s"}}, false},
		{"disconnected and back to ready", []step{{nsDisconnected, "no heartbeat for 2s"}, {nsReady, "heartbeat back"}}, false},
		{"disconnected twice", []step{{nsDisconnected, "a"}, {nsDisconnected, "b"}}, false},
		{"ready while ready", []step{{nsReady, "still here"}}, false},
		{"disconnected, then down", []step{{nsDisconnected, "a"}, {nsDown, "lease expired"}}, true},
		{"down, then ready", []step{{nsDown, "lease expired"}, {nsReady, "rejoined"}}, true},
		{"down, then disconnected", []step{{nsDown, "lease expired"}, {nsDisconnected, "heard once"}}, true},
		{"down twice", []step{{nsDown, "lease expired"}, {nsDown, "still silent"}}, true},
		{"down, ready, down", []step{{nsDown, "a"}, {nsReady, "b"}, {nsDown, "c"}}, true},
		{"empty reason", []step{{nsDisconnected, ""}}, false},
		{"reason of the greatest length", []step{{nsDown, strings.Repeat("r", state.MaxReasonLen)}}, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t)
			h.ok(registerNode(1, 8, 8192, nil))
			h.ok(registerNode(2, 8, 8192, nil))
			placeVm(h, "web", policySpec(rpAlways), 1, vsRunning)
			task := runTask(h, taskSpec("make", 1, 256), 1, true)
			held := h.s.Allocated(1)

			wantReason := ""
			status := nsReady
			for _, st := range tc.steps {
				node := h.node(1)
				before := keyOf(t, h.s)
				h.ok(nodeStatus(1, st.status, st.reason))
				if st.status == status {
					// The same verdict again changes nothing, reason included.
					if !before.equal(keyOf(t, h.s)) {
						t.Fatalf("repeated %v changed the state", st.status)
					}
					if got := h.node(1); !proto.Equal(got, node) {
						t.Fatalf("repeated %v changed node 1: %v -> %v", st.status, node, got)
					}
					continue
				}
				status, wantReason = st.status, st.reason
				n := h.node(1)
				if n.GetStatus() != status || n.GetStatusReason() != wantReason || n.GetUpdatedIndex() != h.idx {
					t.Fatalf("node 1 after %v %q: %v", st.status, st.reason, n)
				}
			}
			n := h.node(1)
			if n.GetStatus() != status || n.GetStatusReason() != wantReason || n.GetDrain() {
				t.Fatalf("node 1 = %v, want %v %q", n, status, wantReason)
			}
			v, tk := h.vm("web"), h.task(task)
			if tc.evicted {
				if v.GetState() != vsLost || tk.GetStatus() != tsPending || !isZero(h.s.Allocated(1)) {
					t.Fatalf("after a down verdict: VM %v, task %v, Allocated(1) %v", v, tk, h.s.Allocated(1))
				}
			} else {
				if v.GetState() != vsRunning || v.GetNodeId() != 1 || tk.GetStatus() != tsRunning || tk.GetNodeId() != 1 ||
					!proto.Equal(h.s.Allocated(1), held) {
					t.Fatalf("without a down verdict: VM %v, task %v, Allocated(1) %v, want both running on node 1", v, tk, h.s.Allocated(1))
				}
				// The node's reports are still taken.
				h.ok(h.report("web", 1, vsStopped))
				h.ok(reportTask(task, 1, 1, tsSucceeded, nil))
			}
			checkRestoreAgrees(t, h.s, 1, 2)
		})
	}
}

// TestRetriedNodeVerdictChangesNothing: a verdict's client request id makes
// a retry answer with the first response, not take the node down again.
func TestRetriedNodeVerdictChangesNothing(t *testing.T) {
	h := newHarness(t)
	h.ok(registerNode(1, 8, 8192, nil))
	h.ok(withID("verdict-1", nodeStatus(1, nsDown, "lease expired")))
	h.ok(nodeStatus(1, nsReady, "back"))
	placeVm(h, "web", policySpec(rpAlways), 1, vsRunning)
	before := keyOf(t, h.s)
	h.ok(withID("verdict-1", nodeStatus(1, nsDown, "lease expired")))
	if !before.equal(keyOf(t, h.s)) || h.node(1).GetStatus() != nsReady || h.vm("web").GetState() != vsRunning {
		t.Fatalf("a retried verdict applied again: node %v, VM %v", h.node(1), h.vm("web"))
	}
}

// TestNodeNotReadyOrDrainingTakesNoWork: a node that is not ready, or is
// draining, refuses new VMs and tasks; ready and undrained, it takes them.
func TestNodeNotReadyOrDrainingTakesNoWork(t *testing.T) {
	tests := []struct {
		name  string
		make  []*apiv1.Command
		clear []*apiv1.Command
	}{
		{"disconnected", []*apiv1.Command{nodeStatus(1, nsDisconnected, "quiet")}, []*apiv1.Command{nodeStatus(1, nsReady, "")}},
		{"down", []*apiv1.Command{nodeStatus(1, nsDown, "gone")}, []*apiv1.Command{nodeStatus(1, nsReady, "")}},
		{"draining", []*apiv1.Command{drainCmd(1, true)}, []*apiv1.Command{drainCmd(1, false)}},
		{"draining and disconnected", []*apiv1.Command{drainCmd(1, true), nodeStatus(1, nsDisconnected, "")},
			[]*apiv1.Command{nodeStatus(1, nsReady, ""), drainCmd(1, false)}},
		{"down and draining", []*apiv1.Command{nodeStatus(1, nsDown, ""), drainCmd(1, true)},
			[]*apiv1.Command{nodeStatus(1, nsReady, ""), drainCmd(1, false)}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t)
			h.ok(registerNode(1, 8, 8192, nil))
			h.ok(registerNode(2, 8, 8192, nil))
			h.ok(createVm("web", vmSpec(1, 512), true))
			task := h.submit(taskSpec("make", 1, 256))
			for _, c := range tc.make {
				h.ok(c)
			}
			h.reject(h.assign("web", 1), codePrecond, "node_id")
			h.reject(assignTask(task, 1), codePrecond, "node_id")
			wantErr(t, h.s.CanPlaceVm(1, "web", nil), codePrecond, "node_id")
			wantErr(t, h.s.CanPlace(1, "", &apiv1.Resources{Vcpus: 1, MemoryMib: 256}), codePrecond, "node_id")
			if err := h.s.CanPlaceVm(2, "web", nil); err != nil {
				t.Fatalf("CanPlaceVm(2) = %v", err)
			}
			for i, c := range tc.clear {
				h.ok(c)
				if i < len(tc.clear)-1 {
					// Half cleared is not enough.
					h.reject(h.assign("web", 1), codePrecond, "node_id")
				}
			}
			h.ok(h.assign("web", 1))
			h.ok(assignTask(task, 1))
		})
	}
}

func TestSetNodeStatusRefusals(t *testing.T) {
	tests := []struct {
		name  string
		cmd   *apiv1.Command
		code  apiv1.ErrorCode
		field string
	}{
		{"status left of a node that has not left", nodeStatus(1, nsLeft, "bye"), codePrecond, "status"},
		{"status unspecified", nodeStatus(1, nsUnspecified, ""), codeInvalid, "status"},
		{"status unknown to the enum", nodeStatus(1, apiv1.NodeStatus(99), ""), codeInvalid, "status"},
		{"status negative", nodeStatus(1, apiv1.NodeStatus(-1), ""), codeInvalid, "status"},
		{"unknown node", nodeStatus(9, nsDown, ""), codeNotFound, "id"},
		{"member that never registered", nodeStatus(5, nsDown, ""), codeNotFound, "id"},
		{"node 0", nodeStatus(0, nsDown, ""), codeInvalid, "id"},
		{"removed node, down", nodeStatus(3, nsDown, ""), codePrecond, "id"},
		{"removed node, ready", nodeStatus(3, nsReady, ""), codePrecond, "id"},
		{"down with a reason too long", nodeStatus(1, nsDown, strings.Repeat("x", state.MaxReasonLen+1)), codeInvalid, "reason"},
		{"down with a reason of invalid UTF-8", nodeStatus(1, nsDown, string([]byte{0xff, 0xfe})), codeInvalid, "reason"},
		{"disconnected with a reason too long", nodeStatus(1, nsDisconnected, strings.Repeat("x", state.MaxReasonLen+1)), codeInvalid, "reason"},
		{"down with a client request id too long", withID(strings.Repeat("i", state.MaxClientRequestID+1), nodeStatus(1, nsDown, "")), codeInvalid, "client_request_id"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t)
			h.membership([]uint64{1, 2, 3, 5}, nil)
			h.ok(registerNode(1, 8, 8192, nil))
			h.ok(registerNode(2, 8, 8192, nil))
			h.ok(registerNode(3, 8, 8192, nil))
			h.membership([]uint64{1, 2, 5}, nil)
			placeVm(h, "web", policySpec(rpAlways), 1, vsRunning)
			runTask(h, taskSpec("make", 1, 256), 1, true)
			h.refusedUnchanged(tc.cmd, tc.code, tc.field)
		})
	}
}

// ---- 3. drain ---------------------------------------------------------------

func TestDrainNode(t *testing.T) {
	h := newHarness(t)
	h.ok(registerNode(1, 8, 8192, nil))
	h.ok(registerNode(2, 8, 8192, nil))
	placeVm(h, "a", policySpec(rpAlways), 1, vsRunning)
	placeVm(h, "b", policySpec(rpNever), 1, vsRunning)
	placeVm(h, "late", policySpec(rpOnFailure), 1) // scheduled, not yet started
	placeVm(h, "halting", policySpec(rpAlways), 1, vsRunning)
	h.ok(stopVm("halting"))
	placeVm(h, "other", policySpec(rpAlways), 2, vsRunning)
	h.ok(createVm("waiting", vmSpec(1, 512), true))
	task := runTask(h, taskSpec("make", 1, 256), 1, true)
	waitingTask := h.submit(taskSpec("make", 1, 256))

	alloc1 := h.s.Allocated(1)
	before := map[string]*apiv1.Vm{}
	for _, name := range []string{"a", "b", "late", "halting", "other"} {
		before[name] = h.vm(name)
	}

	resp := h.ok(drainCmd(1, true))
	drainAt := h.idx
	n := resp.GetDrainNode().GetNode()
	if n.GetId() != 1 || !n.GetDrain() || n.GetUpdatedIndex() != drainAt || !proto.Equal(n, h.node(1)) {
		t.Fatalf("DrainNode response node = %v, want node 1's record %v, drained", n, h.node(1))
	}
	if n.GetStatus() != nsReady {
		t.Fatalf("draining changed the status: %v", n.GetStatus())
	}
	for _, name := range []string{"a", "b", "late"} {
		v := h.vm(name)
		if v.GetState() != vsStopping || v.GetNodeId() != 1 || v.GetDesiredState() != apiv1.VmDesiredState_VM_DESIRED_STATE_RUNNING ||
			v.GetGeneration() != before[name].GetGeneration() || !strings.Contains(v.GetReason(), "drained") {
			t.Fatalf("VM %s on the drained node: %v, want stopping on node 1, wanted running, reason mentioning drained", name, v)
		}
	}
	if v := h.vm("halting"); !proto.Equal(v, before["halting"]) {
		t.Fatalf("a VM already stopping changed: %v -> %v", before["halting"], v)
	}
	if v := h.vm("other"); !proto.Equal(v, before["other"]) {
		t.Fatalf("a VM on node 2 changed: %v", v)
	}
	if tk := h.task(task); tk.GetStatus() != tsRunning || tk.GetNodeId() != 1 {
		t.Fatalf("task on the drained node: %v, want running there", tk)
	}
	// Stopping VMs still hold their room until their node reports them.
	if !proto.Equal(h.s.Allocated(1), alloc1) {
		t.Fatalf("Allocated(1) = %v, want %v", h.s.Allocated(1), alloc1)
	}
	if got := joinedNames(h.s.VmsToPlace()); got != "waiting" {
		t.Fatalf("VmsToPlace() = %s, want waiting", got)
	}
	checkRestoreAgrees(t, h.s, 1, 2)

	// Nothing new lands on a drained node.
	h.reject(h.assign("waiting", 1), codePrecond, "node_id")
	h.reject(assignTask(waitingTask, 1), codePrecond, "node_id")
	wantErr(t, h.s.CanPlaceVm(1, "waiting", nil), codePrecond, "node_id")

	// Draining again changes nothing, and still answers with the node.
	k := keyOf(t, h.s)
	resp = h.ok(drainCmd(1, true))
	if !k.equal(keyOf(t, h.s)) {
		t.Fatal("a second drain changed the state")
	}
	if n := resp.GetDrainNode().GetNode(); !n.GetDrain() || n.GetUpdatedIndex() != drainAt {
		t.Fatalf("second drain's node = %v", n)
	}

	// A late "running" does not undo the move.
	h.ok(h.report("a", 1, vsRunning))
	if h.vm("a").GetState() != vsStopping {
		t.Fatalf("late running report on a moving VM: %v", h.vm("a"))
	}

	// Reported stopped, the moved VMs wait for a node, whatever their policy.
	for _, name := range []string{"a", "b"} {
		h.ok(h.report(name, 1, vsStopped))
		v := h.vm(name)
		if v.GetState() != vsPending || v.GetNodeId() != 0 || v.GetGeneration() != before[name].GetGeneration() {
			t.Fatalf("moved VM %s reported stopped: %v, want pending on no node", name, v)
		}
	}
	h.ok(h.report("halting", 1, vsStopped))
	if v := h.vm("halting"); v.GetState() != vsStopped {
		t.Fatalf("VM wanted stopped on the drained node: %v", v)
	}
	if got := joinedNames(h.s.VmsToPlace()); got != "a,b,waiting" {
		t.Fatalf("VmsToPlace() = %s, want a,b,waiting", got)
	}
	// The old node's report at the old generation is now stale.
	h.reject(reportVm("a", 1, before["a"].GetGeneration(), vsStopped), codePrecond, "generation")
	// They are placed elsewhere: not a restart.
	h.ok(h.assign("a", 2))
	h.ok(h.assign("b", 2))
	for _, name := range []string{"a", "b"} {
		if v := h.vm(name); v.GetRestarts() != 0 || v.GetGeneration() != before[name].GetGeneration()+1 || v.GetNodeId() != 2 {
			t.Fatalf("moved VM %s placed on node 2: %v", name, v)
		}
	}

	// Tasks on a drained node run to their end.
	h.ok(reportTask(task, 1, 1, tsSucceeded, &apiv1.TaskResult{FinishedUnixNano: 9}))
	if tk := h.task(task); tk.GetStatus() != tsSucceeded {
		t.Fatalf("task on the drained node: %v", tk)
	}

	// Undrained, the node takes work again; nothing moves back, and a VM
	// still stopping there still moves.
	resp = h.ok(drainCmd(1, false))
	if n := resp.GetDrainNode().GetNode(); n.GetDrain() || n.GetUpdatedIndex() != h.idx || !proto.Equal(n, h.node(1)) {
		t.Fatalf("undrain response node = %v", n)
	}
	if v := h.vm("late"); v.GetState() != vsStopping || v.GetNodeId() != 1 {
		t.Fatalf("VM moving off the node when it was undrained: %v", v)
	}
	if v := h.vm("a"); v.GetNodeId() != 2 {
		t.Fatalf("undrain moved a VM back: %v", v)
	}
	h.ok(h.report("late", 1, vsStopped))
	if v := h.vm("late"); v.GetState() != vsPending || v.GetNodeId() != 0 {
		t.Fatalf("moving VM reported stopped after undrain: %v", v)
	}
	h.ok(h.assign("waiting", 1))
	h.ok(assignTask(waitingTask, 1))
	h.ok(h.assign("late", 1))
	k = keyOf(t, h.s)
	h.ok(drainCmd(1, false))
	if !k.equal(keyOf(t, h.s)) {
		t.Fatal("a second undrain changed the state")
	}
	checkRestoreAgrees(t, h.s, 1, 2)
}

// TestDrainNodeNotReady: a node that is disconnected or down may be drained
// too; its VMs (if any) are moved, and it stays as its verdict says.
func TestDrainNodeNotReady(t *testing.T) {
	for _, st := range []apiv1.NodeStatus{nsDisconnected, nsDown} {
		t.Run(st.String(), func(t *testing.T) {
			h := newHarness(t)
			h.ok(registerNode(1, 8, 8192, nil))
			placeVm(h, "web", policySpec(rpAlways), 1, vsRunning)
			h.ok(nodeStatus(1, st, ""))
			resp := h.ok(drainCmd(1, true))
			if n := resp.GetDrainNode().GetNode(); !n.GetDrain() || n.GetStatus() != st {
				t.Fatalf("drained node = %v", n)
			}
			want := vsStopping
			if st == nsDown {
				want = vsLost
			}
			if v := h.vm("web"); v.GetState() != want {
				t.Fatalf("VM on a %v node that was drained: %v, want %v", st, v.GetState(), want)
			}
		})
	}
}

func TestDrainNodeRefusals(t *testing.T) {
	tests := []struct {
		name  string
		cmd   *apiv1.Command
		code  apiv1.ErrorCode
		field string
	}{
		{"unknown node", drainCmd(9, true), codeNotFound, "node_id"},
		{"undrain an unknown node", drainCmd(9, false), codeNotFound, "node_id"},
		{"node 0", drainCmd(0, true), codeInvalid, "node_id"},
		{"removed node", drainCmd(3, true), codePrecond, "node_id"},
		{"undrain a removed node", drainCmd(3, false), codePrecond, "node_id"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t)
			h.membership([]uint64{1, 3}, nil)
			h.ok(registerNode(1, 8, 8192, nil))
			h.ok(registerNode(3, 8, 8192, nil))
			h.membership([]uint64{1}, nil)
			placeVm(h, "web", policySpec(rpAlways), 1, vsRunning)
			h.refusedUnchanged(tc.cmd, tc.code, tc.field)
		})
	}
}

// ---- 4. placement failures --------------------------------------------------

type placementFixture struct {
	*harness
	pendingTask, runningTask, retriedTask, doneTask, cancelledTask uint64
}

// newPlacementFixture: nodes 1 and 2 (node 2 down). VMs: waiting (pending),
// lost (restart always, lost with node 2), stranded (restart never, lost
// with node 2), running (on node 1), cold (created stopped). Tasks: pending
// (attempt 0), running (node 1), retried (pending at attempt 1 after node 2
// died), done, cancelled.
func newPlacementFixture(t *testing.T) *placementFixture {
	t.Helper()
	f := &placementFixture{harness: newHarness(t)}
	f.ok(registerNode(1, 8, 8192, nil))
	f.ok(registerNode(2, 8, 8192, nil))
	f.ok(createVm("waiting", vmSpec(1, 512), true))
	placeVm(f.harness, "lost", policySpec(rpAlways), 2, vsRunning)
	placeVm(f.harness, "stranded", policySpec(rpNever), 2, vsRunning)
	placeVm(f.harness, "running", policySpec(rpAlways), 1, vsRunning)
	f.ok(createVm("cold", vmSpec(1, 512), false))
	f.pendingTask = f.submit(taskSpec("make", 1, 256))
	f.runningTask = runTask(f.harness, taskSpec("make", 1, 256), 1, true)
	f.retriedTask = runTask(f.harness, taskSpec("make", 1, 256), 2, true)
	f.doneTask = runTask(f.harness, taskSpec("make", 1, 256), 1, true)
	f.ok(reportTask(f.doneTask, 1, 1, tsSucceeded, nil))
	f.cancelledTask = f.submit(taskSpec("make", 1, 256))
	f.ok(cancelTask(f.cancelledTask))
	f.ok(downCmd(2))
	if f.vm("lost").GetState() != vsLost || f.task(f.retriedTask).GetStatus() != tsPending || f.task(f.retriedTask).GetAttempt() != 1 {
		t.Fatalf("fixture: lost %v, retried %v", f.vm("lost"), f.task(f.retriedTask))
	}
	return f
}

func TestPlacementFailedRecordsTheReason(t *testing.T) {
	const why = "no node has 1 vCPU free"
	tests := []struct {
		name string
		cmd  func(f *placementFixture) *apiv1.Command
		vm   string // the VM it names, or the task it names
		task func(f *placementFixture) uint64
	}{
		{"pending VM", func(f *placementFixture) *apiv1.Command { return vmPlacementFailed("waiting", f.gen("waiting"), why) }, "waiting", nil},
		{"lost VM its policy restarts", func(f *placementFixture) *apiv1.Command { return vmPlacementFailed("lost", f.gen("lost"), why) }, "lost", nil},
		{"pending VM, reason of the greatest length", func(f *placementFixture) *apiv1.Command {
			return vmPlacementFailed("waiting", f.gen("waiting"), strings.Repeat("r", state.MaxReasonLen))
		}, "waiting", nil},
		{"pending task at attempt 0", func(f *placementFixture) *apiv1.Command { return taskPlacementFailed(f.pendingTask, 0, why) }, "",
			func(f *placementFixture) uint64 { return f.pendingTask }},
		{"task pending again at attempt 1", func(f *placementFixture) *apiv1.Command { return taskPlacementFailed(f.retriedTask, 1, why) }, "",
			func(f *placementFixture) uint64 { return f.retriedTask }},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f := newPlacementFixture(t)
			cmd := tc.cmd(f)
			reason := cmd.GetPlacementFailed().GetReason()
			toPlace, pending := vmNames(f.s.VmsToPlace()), taskIDs(f.s.PendingTasks(0))
			if tc.vm != "" {
				before := f.vm(tc.vm)
				f.ok(cmd)
				got := f.vm(tc.vm)
				if got.GetReason() != reason || got.GetUpdatedIndex() != f.idx {
					t.Fatalf("VM after a placement failure: %v, want reason %q at index %d", got, reason, f.idx)
				}
				if len(got.GetEvents()) != len(before.GetEvents()) {
					t.Fatalf("a placement failure appended an event: %v", got.GetEvents()[len(got.GetEvents())-1])
				}
				want := proto.CloneOf(before)
				want.Reason, want.UpdatedIndex = got.GetReason(), got.GetUpdatedIndex()
				if !proto.Equal(got, want) {
					t.Fatalf("a placement failure changed more than the reason:\nbefore %v\nafter  %v", before, got)
				}
			} else {
				id := tc.task(f)
				before := f.task(id)
				f.ok(cmd)
				got := f.task(id)
				want := proto.CloneOf(before)
				want.Reason, want.UpdatedIndex = reason, f.idx
				if !proto.Equal(got, want) {
					t.Fatalf("task after a placement failure:\nbefore %v\nafter  %v", before, got)
				}
			}
			if strings.Join(vmNames(f.s.VmsToPlace()), ",") != strings.Join(toPlace, ",") || len(taskIDs(f.s.PendingTasks(0))) != len(pending) {
				t.Fatal("a placement failure changed what waits for a node")
			}
			checkRestoreAgrees(t, f.s, 1, 2)
			// The workload can still be placed.
			if tc.vm != "" {
				f.ok(f.assign(tc.vm, 1))
			} else {
				f.ok(assignTask(tc.task(f), 1))
			}
		})
	}
}

func TestPlacementFailedRefusals(t *testing.T) {
	const why = "no room"
	tests := []struct {
		name  string
		cmd   func(f *placementFixture) *apiv1.Command
		code  apiv1.ErrorCode
		field string
	}{
		{"both a VM and a task", func(f *placementFixture) *apiv1.Command {
			c := vmPlacementFailed("waiting", f.gen("waiting"), why)
			c.GetPlacementFailed().TaskId = f.pendingTask
			return c
		}, codeInvalid, "vm_name"},
		{"neither a VM nor a task", func(*placementFixture) *apiv1.Command { return vmPlacementFailed("", 0, why) }, codeInvalid, "vm_name"},
		{"neither, but a generation and an attempt", func(f *placementFixture) *apiv1.Command {
			c := vmPlacementFailed("", f.gen("waiting"), why)
			c.GetPlacementFailed().TaskAttempt = 1
			return c
		}, codeInvalid, "vm_name"},
		{"empty reason", func(f *placementFixture) *apiv1.Command { return vmPlacementFailed("waiting", f.gen("waiting"), "") }, codeInvalid, "reason"},
		{"empty reason for a task", func(f *placementFixture) *apiv1.Command { return taskPlacementFailed(f.pendingTask, 0, "") }, codeInvalid, "reason"},
		{"reason too long", func(f *placementFixture) *apiv1.Command {
			return vmPlacementFailed("waiting", f.gen("waiting"), strings.Repeat("x", state.MaxReasonLen+1))
		}, codeInvalid, "reason"},
		{"reason of invalid UTF-8", func(f *placementFixture) *apiv1.Command {
			return taskPlacementFailed(f.pendingTask, 0, string([]byte{'a', 0xff}))
		}, codeInvalid, "reason"},
		{"VM generation stale", func(f *placementFixture) *apiv1.Command { return vmPlacementFailed("lost", f.gen("lost")-1, why) }, codePrecond, "vm_generation"},
		{"VM generation ahead", func(f *placementFixture) *apiv1.Command { return vmPlacementFailed("waiting", f.gen("waiting")+1, why) }, codePrecond, "vm_generation"},
		{"VM generation 0", func(*placementFixture) *apiv1.Command { return vmPlacementFailed("waiting", 0, why) }, codePrecond, "vm_generation"},
		{"VM running", func(f *placementFixture) *apiv1.Command { return vmPlacementFailed("running", f.gen("running"), why) }, codePrecond, "vm_name"},
		{"VM stopped, not wanted running", func(f *placementFixture) *apiv1.Command { return vmPlacementFailed("cold", f.gen("cold"), why) }, codePrecond, "vm_name"},
		{"VM lost, restart never", func(f *placementFixture) *apiv1.Command {
			return vmPlacementFailed("stranded", f.gen("stranded"), why)
		}, codePrecond, "vm_name"},
		{"unknown VM", func(*placementFixture) *apiv1.Command { return vmPlacementFailed("nope", 1, why) }, codeNotFound, "name"},
		{"invalid VM name", func(*placementFixture) *apiv1.Command { return vmPlacementFailed("No Such", 1, why) }, codeInvalid, "name"},
		{"unknown task", func(*placementFixture) *apiv1.Command { return taskPlacementFailed(999, 0, why) }, codeNotFound, "id"},
		{"task running", func(f *placementFixture) *apiv1.Command { return taskPlacementFailed(f.runningTask, 1, why) }, codePrecond, "task_attempt"},
		{"task done", func(f *placementFixture) *apiv1.Command { return taskPlacementFailed(f.doneTask, 1, why) }, codePrecond, "task_attempt"},
		{"task cancelled", func(f *placementFixture) *apiv1.Command { return taskPlacementFailed(f.cancelledTask, 0, why) }, codePrecond, "task_attempt"},
		{"pending task, attempt ahead", func(f *placementFixture) *apiv1.Command { return taskPlacementFailed(f.pendingTask, 1, why) }, codePrecond, "task_attempt"},
		{"retried task, attempt behind", func(f *placementFixture) *apiv1.Command { return taskPlacementFailed(f.retriedTask, 0, why) }, codePrecond, "task_attempt"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f := newPlacementFixture(t)
			f.refusedUnchanged(tc.cmd(f), tc.code, tc.field)
		})
	}
}

// ---- 5. overcommit ----------------------------------------------------------

func TestOvercommitVcpus(t *testing.T) {
	h := newHarness(t)
	h.ok(overcommitted(1, 4, 65536, 2, 0))
	if got, want := state.NodeLimits(h.node(1)), (state.Limits{Vcpus: 8, MemoryMiB: 65536, DiskMiB: 100000}); got != want {
		t.Fatalf("NodeLimits = %+v, want %+v", got, want)
	}
	for i := 1; i <= 9; i++ {
		h.ok(createVm(vmName(i), vmSpec(1, 512), true))
	}
	for i := 1; i <= 8; i++ {
		h.ok(h.assign(vmName(i), 1))
		if err := h.s.CheckCommitted(); err != nil {
			t.Fatalf("CheckCommitted after %d VMs: %v", i, err)
		}
	}
	if a := h.s.Allocated(1); a.GetVcpus() != 8 {
		t.Fatalf("Allocated(1) = %v, want 8 vCPUs", a)
	}
	h.reject(h.assign(vmName(9), 1), codeExhausted, "node_id")
	wantErr(t, h.s.CanPlaceVm(1, vmName(9), nil), codeExhausted, "node_id")
	wantErr(t, h.s.CanPlace(1, "", &apiv1.Resources{Vcpus: 1, MemoryMib: 256}), codeExhausted, "node_id")
	task := h.submit(taskSpec("make", 1, 256))
	h.reject(assignTask(task, 1), codeExhausted, "node_id")
	// One VM ends: the ninth fits, unless a placer has reserved the room.
	h.ok(h.report(vmName(1), 1, vsFailed))
	wantErr(t, h.s.CanPlaceWith(1, "", &apiv1.Resources{Vcpus: 1, MemoryMib: 256}, &apiv1.Resources{Vcpus: 1}), codeExhausted, "node_id")
	if err := h.s.CanPlaceWith(1, "", &apiv1.Resources{Vcpus: 1, MemoryMib: 256}, &apiv1.Resources{MemoryMib: 1024}); err != nil {
		t.Fatalf("CanPlaceWith, 1 vCPU free = %v", err)
	}
	h.ok(h.assign(vmName(9), 1))
	h.reject(assignTask(task, 1), codeExhausted, "node_id")
	if err := h.s.CheckCommitted(); err != nil {
		t.Fatal(err)
	}
	// A VM bigger than the node's own vCPUs is refused outright: overcommit
	// shares the node's CPUs, it does not make one VM bigger than them.
	h.refusedUnchanged(createVm("huge", vmSpec(5, 512), true), codeExhausted, "spec")
}

func TestOvercommitMixesVmsAndTasks(t *testing.T) {
	h := newHarness(t)
	h.ok(overcommitted(1, 4, 65536, 2, 0))
	for i := 1; i <= 6; i++ {
		placeVm(h, vmName(i), vmSpec(1, 512), 1)
	}
	runTask(h, taskSpec("make", 1, 256), 1, true)
	runTask(h, taskSpec("make", 1, 256), 1, false)
	h.reject(assignTask(h.submit(taskSpec("make", 1, 256)), 1), codeExhausted, "node_id")
	h.ok(createVm("late", vmSpec(1, 512), true))
	h.reject(h.assign("late", 1), codeExhausted, "node_id")
	if err := h.s.CheckCommitted(); err != nil {
		t.Fatal(err)
	}
}

func TestOvercommitMemory(t *testing.T) {
	h := newHarness(t)
	h.ok(overcommitted(1, 64, 4096, 0, 1.5))
	if got, want := state.NodeLimits(h.node(1)), (state.Limits{Vcpus: 64, MemoryMiB: 6144, DiskMiB: 100000}); got != want {
		t.Fatalf("NodeLimits = %+v, want %+v", got, want)
	}
	for i := 1; i <= 7; i++ {
		h.ok(createVm(vmName(i), vmSpec(1, 1024), true))
	}
	for i := 1; i <= 6; i++ {
		h.ok(h.assign(vmName(i), 1))
	}
	h.reject(h.assign(vmName(7), 1), codeExhausted, "node_id")
	// Not even the smallest task fits now.
	small := taskSpec("make", 1, 64)
	h.reject(assignTask(h.submit(small), 1), codeExhausted, "node_id")
	if err := h.s.CheckCommitted(); err != nil {
		t.Fatal(err)
	}
}

func TestNodeLimits(t *testing.T) {
	tests := []struct {
		vcpus            uint32
		memMiB           uint64
		vcpuRatio, memRt float64
		want             state.Limits
	}{
		{4, 4096, 0, 0, state.Limits{Vcpus: 4, MemoryMiB: 4096, DiskMiB: 100000}},
		{4, 4096, 1, 1, state.Limits{Vcpus: 4, MemoryMiB: 4096, DiskMiB: 100000}},
		{4, 4096, 2, 0, state.Limits{Vcpus: 8, MemoryMiB: 4096, DiskMiB: 100000}},
		{3, 4096, 1.5, 0, state.Limits{Vcpus: 4, MemoryMiB: 4096, DiskMiB: 100000}}, // 4.5 rounds down
		{4, 1000, 0, 1.25, state.Limits{Vcpus: 4, MemoryMiB: 1250, DiskMiB: 100000}},
		{4, 1001, 0, 1.5, state.Limits{Vcpus: 4, MemoryMiB: 1501, DiskMiB: 100000}}, // 1501.5 rounds down
		{7, 4096, 16, 16, state.Limits{Vcpus: 112, MemoryMiB: 65536, DiskMiB: 100000}},
		{state.MaxVcpus, state.MaxMemoryMiB, state.MaxOvercommit, state.MaxOvercommit,
			state.Limits{Vcpus: 16 * state.MaxVcpus, MemoryMiB: 16 * state.MaxMemoryMiB, DiskMiB: 100000}},
	}
	for _, tc := range tests {
		h := newHarness(t)
		h.ok(overcommitted(1, tc.vcpus, tc.memMiB, tc.vcpuRatio, tc.memRt))
		n := h.node(1)
		if n.GetVcpuOvercommit() != tc.vcpuRatio || n.GetMemoryOvercommit() != tc.memRt {
			t.Fatalf("node record = %v, want ratios %g and %g", n, tc.vcpuRatio, tc.memRt)
		}
		if got := state.NodeLimits(n); got != tc.want {
			t.Fatalf("NodeLimits(%d vCPUs × %g, %d MiB × %g) = %+v, want %+v", tc.vcpus, tc.vcpuRatio, tc.memMiB, tc.memRt, got, tc.want)
		}
	}
	if got := state.NodeLimits(nil); got != (state.Limits{}) {
		t.Fatalf("NodeLimits(nil) = %+v", got)
	}
}

func TestRegisterNodeOvercommitAndLease(t *testing.T) {
	tests := []struct {
		name      string
		vcpuRatio float64
		memRatio  float64
		lease     uint32
		field     string // "" when accepted
	}{
		{"no overcommit", 0, 0, 0, ""},
		{"ratios of 1", 1, 1, 0, ""},
		{"just above 1", 1.000001, 1.000001, 0, ""},
		{"the greatest ratios", state.MaxOvercommit, state.MaxOvercommit, 0, ""},
		{"negative zero", math.Copysign(0, -1), 0, 0, ""},
		{"the longest lease", 0, 0, state.MaxLeaseMillis, ""},
		{"vCPU ratio 0.5", 0.5, 0, 0, "vcpu_overcommit"},
		{"vCPU ratio just below 1", 0.999999, 0, 0, "vcpu_overcommit"},
		{"vCPU ratio negative", -1, 0, 0, "vcpu_overcommit"},
		{"vCPU ratio NaN", math.NaN(), 0, 0, "vcpu_overcommit"},
		{"vCPU ratio +Inf", math.Inf(1), 0, 0, "vcpu_overcommit"},
		{"vCPU ratio -Inf", math.Inf(-1), 0, 0, "vcpu_overcommit"},
		{"vCPU ratio just above the greatest", 16.000001, 0, 0, "vcpu_overcommit"},
		{"vCPU ratio 17", 17, 0, 0, "vcpu_overcommit"},
		{"vCPU ratio huge", 1e308, 0, 0, "vcpu_overcommit"},
		{"memory ratio 0.5", 0, 0.5, 0, "memory_overcommit"},
		{"memory ratio NaN", 0, math.NaN(), 0, "memory_overcommit"},
		{"memory ratio +Inf", 0, math.Inf(1), 0, "memory_overcommit"},
		{"memory ratio 17", 0, 17, 0, "memory_overcommit"},
		{"memory ratio negative", 0, -2, 0, "memory_overcommit"},
		{"both bad: vCPU named first", 0.5, 17, 0, "vcpu_overcommit"},
		{"lease 1 ms too long", 0, 0, state.MaxLeaseMillis + 1, "lease_millis"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cmd := overcommitted(1, 4, 4096, tc.vcpuRatio, tc.memRatio)
			cmd.GetRegisterNode().LeaseMillis = tc.lease
			h := newHarness(t)
			// The check applies to a first registration, to a refresh, and to
			// a join alike.
			fresh := state.New()
			joinErr := fresh.CheckJoin(cmd.GetRegisterNode(), 0)
			if tc.field == "" {
				if joinErr != nil {
					t.Fatalf("CheckJoin = %v", joinErr)
				}
				h.ok(cmd)
				n := h.node(1)
				if n.GetVcpuOvercommit() != tc.vcpuRatio || n.GetMemoryOvercommit() != tc.memRatio || n.GetLeaseMillis() != tc.lease {
					t.Fatalf("node record = %v", n)
				}
				if err := h.s.CheckCommitted(); err != nil {
					t.Fatal(err)
				}
				return
			}
			wantErr(t, joinErr, codeInvalid, tc.field)
			h.refusedUnchanged(cmd, codeInvalid, tc.field)
			h.ok(registerNode(1, 4, 4096, nil))
			h.refusedUnchanged(cmd, codeInvalid, tc.field)
		})
	}
}

// TestReRegisterBelowOvercommittedWork: a node may lower its ratios or its
// capacity only as far as what is placed on it.
func TestReRegisterBelowOvercommittedWork(t *testing.T) {
	tests := []struct {
		name      string
		vcpus     uint32
		memMiB    uint64
		vcpuRatio float64
		memRatio  float64
		ok        bool
	}{
		{"the same", 4, 8192, 2, 2, true},
		{"vCPU ratio down to exactly what is held", 4, 8192, 1.5, 2, true},
		{"vCPU ratio below what is held", 4, 8192, 1.25, 2, false},
		{"vCPU overcommit dropped", 4, 8192, 0, 2, false},
		{"vCPU ratio 1", 4, 8192, 1, 2, false},
		{"fewer vCPUs, higher ratio", 3, 8192, 2, 2, true},
		{"more vCPUs, no ratio", 6, 8192, 0, 2, true},
		{"memory ratio down to exactly what is held", 4, 8192, 2, 1.5, true},
		{"memory ratio below what is held", 4, 8192, 2, 1.25, false},
		{"memory overcommit dropped", 4, 8192, 2, 0, false},
		{"more memory, no ratio", 4, 12288, 2, 0, true},
		{"less memory, greater ratio", 4, 4096, 2, 3, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t)
			h.ok(overcommitted(1, 4, 8192, 2, 2)) // limits 8 vCPUs, 16384 MiB
			for i := 1; i <= 6; i++ {
				placeVm(h, vmName(i), vmSpec(1, 2048), 1, vsRunning) // 6 vCPUs, 12288 MiB
			}
			cmd := overcommitted(1, tc.vcpus, tc.memMiB, tc.vcpuRatio, tc.memRatio)
			if !tc.ok {
				h.refusedUnchanged(cmd, codePrecond, "capacity")
				return
			}
			h.ok(cmd)
			n := h.node(1)
			if n.GetCapacity().GetVcpus() != tc.vcpus || n.GetVcpuOvercommit() != tc.vcpuRatio || n.GetMemoryOvercommit() != tc.memRatio {
				t.Fatalf("node record = %v", n)
			}
			if err := h.s.CheckCommitted(); err != nil {
				t.Fatalf("CheckCommitted = %v", err)
			}
		})
	}
}

func TestCheckCommitted(t *testing.T) {
	h := newHarness(t)
	if err := h.s.CheckCommitted(); err != nil {
		t.Fatalf("empty state: %v", err)
	}
	h.ok(overcommitted(1, 4, 4096, 2, 2))
	h.ok(registerNode(2, 4, 4096, nil))
	for i := 1; i <= 8; i++ {
		placeVm(h, vmName(i), vmSpec(1, 1024), 1, vsRunning)
	}
	if err := h.s.CheckCommitted(); err != nil {
		t.Fatalf("node 1 at its limits: %v", err)
	}
	// A record no command could make: node 1 loses its overcommit while it
	// holds twice its capacity.
	bad := restoreWith(t, h.s, func(snap *apiv1.StateSnapshot) {
		snap.Nodes[0].VcpuOvercommit = 0
	})
	if err := bad.CheckCommitted(); err == nil || !strings.Contains(err.Error(), "node 1") {
		t.Fatalf("CheckCommitted on an overcommitted node = %v, want an error naming node 1", err)
	}
	bad = restoreWith(t, h.s, func(snap *apiv1.StateSnapshot) {
		snap.Nodes[0].MemoryOvercommit = 1.5
	})
	if err := bad.CheckCommitted(); err == nil || !strings.Contains(err.Error(), "node 1") {
		t.Fatalf("CheckCommitted on a node over its memory = %v, want an error naming node 1", err)
	}
}

// TestDiskIsNeverOvercommitted: tasks' disk fits the node's disk, whatever
// its ratios.
func TestDiskIsNeverOvercommitted(t *testing.T) {
	h := newHarness(t)
	h.ok(overcommitted(1, 8, 8192, 16, 16)) // 100,000 MiB of disk
	spec := taskSpec("fill", 1, 256)
	spec.Resources.DiskMib = 60000
	runTask(h, spec, 1, true)
	h.reject(assignTask(h.submit(spec), 1), codeExhausted, "node_id")
	if got := state.NodeLimits(h.node(1)).DiskMiB; got != 100000 {
		t.Fatalf("disk limit = %d, want the capacity 100000", got)
	}
}

func vmName(i int) string { return "vm-" + string(rune('a'+i-1)) }

// ---- 6. VmSpec: features, soft anti-affinity, placement --------------------

func TestVmSpecNewFieldsValidation(t *testing.T) {
	spec := func(edit func(*apiv1.VmSpec)) *apiv1.Command {
		s := vmSpec(1, 512)
		edit(s)
		return createVm("web", s, true)
	}
	many := make([]string, state.MaxFeatures+1)
	for i := range many {
		many[i] = "f" + string(rune('a'+i/26)) + string(rune('a'+i%26))
	}
	// The node has MaxFeatures features, gpu and kvm among them.
	nodeFeatures := append(append([]string(nil), many[:state.MaxFeatures-2]...), "gpu", "kvm")
	tests := []struct {
		name  string
		cmd   *apiv1.Command
		field string // "" when accepted
	}{
		{"one feature", spec(func(s *apiv1.VmSpec) { s.Features = []string{"kvm"} }), ""},
		{"sorted features", spec(func(s *apiv1.VmSpec) { s.Features = []string{"gpu", "kvm"} }), ""},
		{"features of the greatest count", spec(func(s *apiv1.VmSpec) { s.Features = nodeFeatures }), ""},
		{"unsorted features", spec(func(s *apiv1.VmSpec) { s.Features = []string{"kvm", "gpu"} }), "spec.features"},
		{"duplicate features", spec(func(s *apiv1.VmSpec) { s.Features = []string{"kvm", "kvm"} }), "spec.features"},
		{"upper-case feature", spec(func(s *apiv1.VmSpec) { s.Features = []string{"KVM"} }), "spec.features"},
		{"empty feature", spec(func(s *apiv1.VmSpec) { s.Features = []string{""} }), "spec.features"},
		{"feature starting with '-'", spec(func(s *apiv1.VmSpec) { s.Features = []string{"-kvm"} }), "spec.features"},
		{"feature with a dot", spec(func(s *apiv1.VmSpec) { s.Features = []string{"avx.512"} }), "spec.features"},
		{"too many features", spec(func(s *apiv1.VmSpec) { s.Features = many }), "spec.features"},
		{"soft anti-affinity with a group", spec(func(s *apiv1.VmSpec) { s.AntiAffinityGroup, s.AntiAffinitySoft = "web", true }), ""},
		{"soft anti-affinity without a group", spec(func(s *apiv1.VmSpec) { s.AntiAffinitySoft = true }), "spec.anti_affinity_soft"},
		{"placement binpack", spec(func(s *apiv1.VmSpec) { s.Placement = apiv1.PlacementStrategy_PLACEMENT_STRATEGY_BINPACK }), ""},
		{"placement spread", spec(func(s *apiv1.VmSpec) { s.Placement = apiv1.PlacementStrategy_PLACEMENT_STRATEGY_SPREAD }), ""},
		{"placement unknown", spec(func(s *apiv1.VmSpec) { s.Placement = apiv1.PlacementStrategy(3) }), "spec.placement"},
		{"placement negative", spec(func(s *apiv1.VmSpec) { s.Placement = apiv1.PlacementStrategy(-1) }), "spec.placement"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t)
			h.ok(featureless(1, 8, 8192, nodeFeatures...))
			err := state.Validate(tc.cmd)
			if tc.field == "" {
				if err != nil {
					t.Fatalf("Validate = %v", err)
				}
				h.ok(tc.cmd)
				if got := h.vm("web").GetSpec(); !proto.Equal(got, func() *apiv1.VmSpec {
					w := proto.CloneOf(tc.cmd.GetCreateVm().GetSpec())
					w.RestartPolicy = rpOnFailure
					return w
				}()) {
					t.Fatalf("VM spec = %v, want %v", got, tc.cmd.GetCreateVm().GetSpec())
				}
				return
			}
			wantErr(t, err, codeInvalid, tc.field)
			h.refusedUnchanged(tc.cmd, codeInvalid, tc.field)
		})
	}
}

func TestVmFeaturesPlacement(t *testing.T) {
	kvm := vmSpec(1, 512)
	kvm.Features = []string{"kvm"}
	both := vmSpec(1, 512)
	both.Features = []string{"gpu", "kvm"}

	h := newHarness(t)
	h.ok(featureless(1, 8, 8192))
	// No node has kvm: refused outright.
	h.refusedUnchanged(createVm("k", kvm, true), codeExhausted, "spec")
	h.refusedUnchanged(createVm("k", kvm, false), codeExhausted, "spec")
	h.ok(featureless(2, 8, 8192, "kvm"))
	h.ok(featureless(3, 8, 8192, "gpu"))
	// gpu and kvm, but on no single node.
	h.refusedUnchanged(createVm("b", both, true), codeExhausted, "spec")
	h.ok(createVm("k", kvm, true))
	h.reject(h.assign("k", 1), codePrecond, "node_id")
	h.reject(h.assign("k", 3), codePrecond, "node_id")
	wantErr(t, h.s.CanPlaceVm(1, "k", nil), codePrecond, "node_id")
	if err := h.s.CanPlaceVm(2, "k", nil); err != nil {
		t.Fatalf("CanPlaceVm(2) = %v", err)
	}
	h.ok(h.assign("k", 2))
	// A VM asking no feature goes anywhere.
	h.ok(createVm("plain", vmSpec(1, 512), true))
	h.ok(h.assign("plain", 1))

	// A node with both takes a VM asking both, and nothing else does.
	h.ok(featureless(4, 8, 8192, "gpu", "kvm"))
	h.ok(createVm("b", both, true))
	for _, id := range []uint64{1, 2, 3} {
		h.reject(h.assign("b", id), codePrecond, "node_id")
	}
	h.ok(h.assign("b", 4))

	// A lost kvm VM is placed again only where kvm is.
	h.ok(h.report("k", 2, vsRunning))
	h.ok(downCmd(2))
	h.reject(h.assign("k", 1), codePrecond, "node_id")
	h.ok(h.assign("k", 4))
}

func TestSoftAntiAffinity(t *testing.T) {
	tests := []struct {
		name    string
		specs   []*apiv1.VmSpec // placed on node 1 in order
		refused int             // index of the first refused, -1 when all fit
	}{
		{"hard refuses the second", []*apiv1.VmSpec{groupSpec("web", false), groupSpec("web", false)}, 1},
		{"soft lets two share a node", []*apiv1.VmSpec{groupSpec("web", true), groupSpec("web", true)}, -1},
		{"soft lets four share a node", []*apiv1.VmSpec{groupSpec("web", true), groupSpec("web", true), groupSpec("web", true), groupSpec("web", true)}, -1},
		{"hard in different groups", []*apiv1.VmSpec{groupSpec("web", false), groupSpec("db", false)}, -1},
		{"hard after a soft one of its group", []*apiv1.VmSpec{groupSpec("web", true), groupSpec("web", false)}, 1},
		{"no group", []*apiv1.VmSpec{vmSpec(1, 512), vmSpec(1, 512)}, -1},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t)
			h.ok(registerNode(1, 8, 8192, nil))
			h.ok(registerNode(2, 8, 8192, nil))
			for i, spec := range tc.specs {
				name := vmName(i + 1)
				h.ok(createVm(name, spec, true))
				if i == tc.refused {
					h.reject(h.assign(name, 1), codePrecond, "node_id")
					wantErr(t, h.s.CanPlaceVm(1, name, nil), codePrecond, "node_id")
					h.ok(h.assign(name, 2))
					return
				}
				if err := h.s.CanPlaceVm(1, name, nil); err != nil {
					t.Fatalf("CanPlaceVm(1, %s) = %v", name, err)
				}
				h.ok(h.assign(name, 1))
			}
			if tc.refused >= 0 {
				t.Fatal("nothing was refused")
			}
			if got := len(h.s.VmsOn(1)); got != len(tc.specs) {
				t.Fatalf("node 1 holds %d VMs, want %d", got, len(tc.specs))
			}
		})
	}
}

// ---- 7. a node that leaves loses its workloads ------------------------------

func TestNodeRemovalEvicts(t *testing.T) {
	h := newHarness(t)
	h.membership([]uint64{1, 2}, nil)
	h.ok(registerNode(1, 8, 8192, nil))
	h.ok(registerNode(2, 8, 8192, nil))
	placeVm(h, "always", policySpec(rpAlways), 2, vsRunning)
	placeVm(h, "never", policySpec(rpNever), 2, vsRunning)
	placeVm(h, "halting", policySpec(rpAlways), 2, vsRunning)
	h.ok(stopVm("halting"))
	placeVm(h, "dying", policySpec(rpAlways), 2, vsRunning)
	h.ok(deleteVm("dying"))
	placeVm(h, "moving", policySpec(rpNever), 2, vsRunning)
	placeVm(h, "stay", policySpec(rpAlways), 1, vsRunning)
	retry := runTask(h, taskSpec("make", 1, 256), 2, true)
	once := h.submit(func() *apiv1.TaskSpec { s := taskSpec("make", 1, 256); s.MaxAttempts = 1; return s }())
	placeTask(h, once, 2, true)
	cancelled := runTask(h, taskSpec("make", 1, 256), 2, true)
	h.ok(cancelTask(cancelled))
	gen := h.gen("always")
	stay := h.vm("stay")

	removedAt := h.membership([]uint64{1}, nil)

	n := h.node(2)
	if n.GetStatus() != nsLeft || n.GetStatusReason() != "removed from the cluster" || n.GetUpdatedIndex() != removedAt {
		t.Fatalf("removed node = %v", n)
	}
	// Until the leader says its lease has run out, the removed node may
	// still run its workloads: they stay where they are.
	if len(h.s.VmsOn(2)) != 5 || len(h.s.TasksOn(2)) != 3 || len(h.s.VmsToPlace()) != 0 {
		t.Fatalf("the removal alone moved workloads: %d VMs and %d tasks left on node 2, %d to place",
			len(h.s.VmsOn(2)), len(h.s.TasksOn(2)), len(h.s.VmsToPlace()))
	}
	h.refusedUnchanged(nodeStatus(1, nsLeft, ""), codePrecond, "status")
	h.ok(nodeStatus(2, nsLeft, "left the cluster; its fencing lease has run out"))
	at := h.s.AppliedIndex()
	if !isZero(h.s.Allocated(2)) || len(h.s.VmsOn(2)) != 0 || len(h.s.TasksOn(2)) != 0 {
		t.Fatalf("removed node still holds %v", h.s.Allocated(2))
	}
	for name, want := range map[string]apiv1.VmState{"always": vsLost, "never": vsLost, "halting": vsStopped, "moving": vsLost} {
		v := h.vm(name)
		if v.GetState() != want || !strings.Contains(v.GetReason(), "left") || v.GetUpdatedIndex() != at {
			t.Fatalf("VM %s on the removed node: %v, want %v with a reason mentioning left", name, v, want)
		}
	}
	if _, ok := h.s.Vm("dying"); ok {
		t.Fatal("VM being deleted survived its node's removal")
	}
	if got := joinedNames(h.s.VmsToPlace()); got != "always" {
		t.Fatalf("VmsToPlace() = %s, want always", got)
	}
	tk := h.task(retry)
	if tk.GetStatus() != tsPending || tk.GetNodeId() != 0 || !strings.Contains(tk.GetReason(), "left") {
		t.Fatalf("task on the removed node: %v", tk)
	}
	if tk := h.task(once); tk.GetStatus() != tsLost || tk.GetResult().GetExitCode() != -1 || tk.GetResult().GetFinishedUnixNano() == 0 {
		t.Fatalf("task at its last attempt on the removed node: %v", tk)
	}
	if tk := h.task(cancelled); tk.GetResult().GetFinishedUnixNano() == 0 {
		t.Fatalf("cancelled task on the removed node holds on: %v", tk)
	}
	if !proto.Equal(h.vm("stay"), stay) {
		t.Fatal("node 2's removal touched node 1's VM")
	}
	checkRestoreAgrees(t, h.s, 1, 2)

	// The removed node takes nothing, gets no verdict and no drain.
	h.reject(assignVm("always", 2, gen), codePrecond, "node_id")
	h.reject(assignTask(retry, 2), codePrecond, "node_id")
	h.reject(reportVm("always", 2, gen, vsRunning), codePrecond, "state")
	h.refusedUnchanged(nodeStatus(2, nsReady, ""), codePrecond, "id")
	h.refusedUnchanged(drainCmd(2, true), codePrecond, "node_id")
	// Elsewhere, the lost VM is placed again as a restart.
	h.ok(assignVm("always", 1, gen))
	if v := h.vm("always"); v.GetRestarts() != 1 || v.GetGeneration() != gen+1 {
		t.Fatalf("VM placed after its node left: %v", v)
	}
	h.ok(assignTask(retry, 1))
	if tk := h.task(retry); tk.GetAttempt() != 2 {
		t.Fatalf("task placed after its node left: %v", tk)
	}
}

// TestNodeRemovalWhileDraining: a VM being moved off a node that leaves
// waits for placement whatever its policy, as with a node that goes down.
func TestNodeRemovalWhileDraining(t *testing.T) {
	h := newHarness(t)
	h.membership([]uint64{1, 2}, nil)
	h.ok(registerNode(1, 8, 8192, nil))
	h.ok(registerNode(2, 8, 8192, nil))
	placeVm(h, "moving", policySpec(rpNever), 2, vsRunning)
	h.ok(drainCmd(2, true))
	h.membership([]uint64{1}, nil)
	h.ok(nodeStatus(2, nsLeft, "lease run out"))
	v := h.vm("moving")
	if v.GetState() != vsPending || v.GetNodeId() != 0 || !strings.Contains(v.GetReason(), "left") {
		t.Fatalf("VM moving off a node that left: %v", v)
	}
	h.ok(h.assign("moving", 1))
	if h.vm("moving").GetRestarts() != 0 {
		t.Fatalf("a move counted as a restart: %v", h.vm("moving"))
	}
}

// ---- 8. a task's attempts ---------------------------------------------------

func TestTaskMaxAttempts(t *testing.T) {
	tests := []struct {
		maxAttempts uint32
		lostAfter   uint32 // node deaths until the task is lost
	}{
		{0, state.DefaultMaxAttempts},
		{1, 1},
		{2, 2},
		{3, 3},
		{5, 5},
		{state.MaxTaskAttempts, state.MaxTaskAttempts},
	}
	for _, tc := range tests {
		t.Run("max_attempts="+strconv.Itoa(int(tc.maxAttempts)), func(t *testing.T) {
			h := newHarness(t)
			h.ok(registerNode(1, 8, 8192, nil))
			spec := taskSpec("make", 1, 256)
			spec.MaxAttempts = tc.maxAttempts
			id := h.submit(spec)
			if got := state.MaxAttempts(h.task(id)); got != tc.lostAfter {
				t.Fatalf("MaxAttempts = %d, want %d", got, tc.lostAfter)
			}
			for death := uint32(1); death <= tc.lostAfter; death++ {
				placeTask(h, id, 1, death%2 == 1)
				h.ok(downCmd(1))
				tk := h.task(id)
				if tk.GetAttempt() != death {
					t.Fatalf("after death %d: attempt %d", death, tk.GetAttempt())
				}
				wantReason := fmt.Sprintf("attempt %d of %d", death, tc.lostAfter)
				if !strings.Contains(tk.GetReason(), wantReason) {
					t.Fatalf("after death %d: reason %q, want it to mention %q", death, tk.GetReason(), wantReason)
				}
				if death < tc.lostAfter {
					if tk.GetStatus() != tsPending || tk.GetNodeId() != 0 {
						t.Fatalf("after death %d of %d: %v, want pending", death, tc.lostAfter, tk)
					}
					h.ok(taskPlacementFailed(id, death, "node 1 is down"))
					h.ok(nodeStatus(1, nsReady, ""))
					continue
				}
				if tk.GetStatus() != tsLost || tk.GetResult().GetExitCode() != -1 || tk.GetResult().GetFinishedUnixNano() != downNanos {
					t.Fatalf("after death %d of %d: %v, want lost", death, tc.lostAfter, tk)
				}
			}
			if len(h.s.PendingTasks(0)) != 0 || !isZero(h.s.Allocated(1)) {
				t.Fatalf("a lost task waits or holds: pending %v, Allocated(1) %v", taskIDs(h.s.PendingTasks(0)), h.s.Allocated(1))
			}
		})
	}
}

func TestMaxAttemptsValidation(t *testing.T) {
	tests := []struct {
		name  string
		n     uint32
		field string
	}{
		{"0 (the default)", 0, ""},
		{"1", 1, ""},
		{"the most", state.MaxTaskAttempts, ""},
		{"one more than the most", state.MaxTaskAttempts + 1, "spec.max_attempts"},
		{"the largest uint32", math.MaxUint32, "spec.max_attempts"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t)
			h.ok(registerNode(1, 8, 8192, nil))
			spec := taskSpec("make", 1, 256)
			spec.MaxAttempts = tc.n
			cmd := submitTask(spec)
			err := state.Validate(cmd)
			if tc.field == "" {
				if err != nil {
					t.Fatalf("Validate = %v", err)
				}
				id := h.submit(spec)
				if got := h.task(id).GetSpec().GetMaxAttempts(); got != tc.n {
					t.Fatalf("spec.max_attempts = %d, want %d", got, tc.n)
				}
				return
			}
			wantErr(t, err, codeInvalid, tc.field)
			h.refusedUnchanged(cmd, codeInvalid, tc.field)
		})
	}
	if state.DefaultMaxAttempts != 3 || state.MaxTaskAttempts != 100 {
		t.Fatalf("DefaultMaxAttempts = %d, MaxTaskAttempts = %d", state.DefaultMaxAttempts, state.MaxTaskAttempts)
	}
	for _, tc := range []struct {
		task *apiv1.Task
		want uint32
	}{
		{nil, 3},
		{&apiv1.Task{}, 3},
		{&apiv1.Task{Spec: &apiv1.TaskSpec{}}, 3},
		{&apiv1.Task{Spec: &apiv1.TaskSpec{MaxAttempts: 1}}, 1},
		{&apiv1.Task{Spec: &apiv1.TaskSpec{MaxAttempts: 7}}, 7},
	} {
		if got := state.MaxAttempts(tc.task); got != tc.want {
			t.Fatalf("MaxAttempts(%v) = %d, want %d", tc.task, got, tc.want)
		}
	}
}
