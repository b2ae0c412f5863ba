package state_test

import (
	"testing"

	apiv1 "github.com/blixard/blixard/api/v1"
)

func TestNodeCannotShrinkBelowWhatItHolds(t *testing.T) {
	h := newHarness(t)
	h.ok(registerNode(1, 4, 4096, nil))
	h.ok(createVm("web", vmSpec(4, 1024), true))
	h.ok(h.assign("web", 1))
	h.reject(registerNode(1, 2, 4096, nil), apiv1.ErrorCode_ERROR_CODE_FAILED_PRECONDITION, "capacity")
	// Growing, or shrinking to exactly what is held, is fine.
	h.ok(registerNode(1, 4, 1024, nil))
	h.ok(registerNode(1, 8, 8192, nil))
}

func TestTaskNeedsNodeFeaturesAndDisk(t *testing.T) {
	h := newHarness(t)
	h.ok(registerNode(1, 8, 8192, nil)) // kvm only, 100,000 MiB of disk
	spec := taskSpec("train", 1, 256)
	spec.Resources.Features = []string{"gpu"}
	// While no node of the cluster has a GPU the task is refused outright.
	h.reject(submitTask(spec), apiv1.ErrorCode_ERROR_CODE_RESOURCE_EXHAUSTED, "spec.resources")
	// Node 2 has a GPU and more disk: the task is accepted, and node 1,
	// which lacks them, still may not take it.
	big := registerNode(2, 8, 8192, nil)
	big.GetRegisterNode().Capacity.Features = []string{"gpu", "kvm"}
	big.GetRegisterNode().Capacity.DiskMib = 400000
	h.ok(big)
	gpu := h.submit(spec)
	h.reject(assignTask(gpu, 1), apiv1.ErrorCode_ERROR_CODE_FAILED_PRECONDITION, "node_id")
	spec = taskSpec("fill", 1, 256)
	spec.Resources.DiskMib = 200000 // node 1 has 100,000 MiB
	disk := h.submit(spec)
	h.reject(assignTask(disk, 1), apiv1.ErrorCode_ERROR_CODE_RESOURCE_EXHAUSTED, "node_id")
	h.ok(assignTask(gpu, 2))
	h.ok(assignTask(disk, 2))
}

func TestVmStartedWhileStoppingIsPlacedAgain(t *testing.T) {
	h := newHarness(t)
	h.ok(registerNode(1, 8, 8192, nil))
	h.ok(createVm("web", vmSpec(1, 512), true))
	h.ok(h.assign("web", 1))
	h.ok(h.report("web", 1, apiv1.VmState_VM_STATE_RUNNING))
	h.ok(stopVm("web"))
	h.ok(startVm("web"))
	h.ok(h.report("web", 1, apiv1.VmState_VM_STATE_STOPPED))
	if v := h.vm("web"); v.GetState() != apiv1.VmState_VM_STATE_PENDING || v.GetNodeId() != 0 {
		t.Fatalf("VM started while stopping, then stopped: %v on node %d, want pending on no node", v.GetState(), v.GetNodeId())
	}
	if got := vmNames(h.s.VmsToPlace()); len(got) != 1 || got[0] != "web" {
		t.Fatalf("VmsToPlace() = %v, want [web]", got)
	}
	h.ok(h.assign("web", 1))
	if v := h.vm("web"); v.GetGeneration() != v.GetCreatedIndex()+2 || v.GetState() != apiv1.VmState_VM_STATE_SCHEDULED {
		t.Fatalf("re-placed VM: generation %d (created at %d) state %v", v.GetGeneration(), v.GetCreatedIndex(), v.GetState())
	}
}
