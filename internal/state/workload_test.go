package state_test

import (
	"fmt"
	"slices"
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"

	apiv1 "github.com/blixard/blixard/api/v1"
	"github.com/blixard/blixard/internal/state"
)

// ---- builders ---------------------------------------------------------------

func image(name string, minMiB uint64) *apiv1.ImageInfo {
	return &apiv1.ImageInfo{Name: name, Digest: "sha256:" + name, MinMemoryMib: minMiB}
}

// nodeWith is registerNode offering exactly imgs (sorted by the caller).
func nodeWith(id uint64, vcpus uint32, memMiB uint64, imgs ...*apiv1.ImageInfo) *apiv1.Command {
	c := registerNode(id, vcpus, memMiB, nil)
	c.GetRegisterNode().Images = imgs
	return c
}

func vmOf(img string, vcpus uint32, memMiB uint64) *apiv1.VmSpec {
	spec := vmSpec(vcpus, memMiB)
	spec.Image = img
	return spec
}

func taskOf(img string, vcpus uint32, memMiB uint64) *apiv1.TaskSpec {
	spec := taskSpec("make", vcpus, memMiB)
	spec.Image = img
	return spec
}

func reportWithTail(name string, node, gen uint64, st apiv1.VmState, tail string) *apiv1.Command {
	c := reportVm(name, node, gen, st)
	c.GetReportVm().ConsoleTail = tail
	return c
}

// leave makes the nodes in gone leave the cluster, all of ids having been
// members.
func (h *harness) leave(ids []uint64, gone ...uint64) {
	h.membership(ids, nil)
	var stay []uint64
	for _, id := range ids {
		if !slices.Contains(gone, id) {
			stay = append(stay, id)
		}
	}
	h.membership(stay, nil)
}

// restoreWith returns s passed through a snapshot that edit changed: a way
// to reach records no command makes (nodes down or draining, VMs lost).
func restoreWith(t testing.TB, s *state.State, edit func(*apiv1.StateSnapshot)) *state.State {
	t.Helper()
	var snap apiv1.StateSnapshot
	if err := proto.Unmarshal(mustSnapshot(t, s), &snap); err != nil {
		t.Fatal(err)
	}
	edit(&snap)
	r, err := state.Restore(marshal(t, &snap))
	if err != nil {
		t.Fatalf("Restore: %v", err)
	}
	return r
}

// refusedUnchanged applies cmd, which must be refused with code and field,
// and checks that the snapshot is the same bytes before and after but for
// the applied index (on top of everything reject checks).
func (h *harness) refusedUnchanged(cmd *apiv1.Command, code apiv1.ErrorCode, field string) {
	h.t.Helper()
	before := keyOf(h.t, h.s)
	h.reject(cmd, code, field)
	if after := keyOf(h.t, h.s); !before.equal(after) {
		h.t.Fatalf("refused %v changed the snapshot", cmd)
	}
}

// ---- CreateVm and SubmitTask: refused when no node could ever hold them ----

func TestPlacementRefusals(t *testing.T) {
	big := func(id uint64, imgs ...*apiv1.ImageInfo) *apiv1.Command { return nodeWith(id, 16, 16384, imgs...) }
	tests := []struct {
		name  string
		setup func(h *harness)
		cmd   *apiv1.Command
		code  apiv1.ErrorCode
		field string
		// stateful: the refusal depends on the nodes, so Validate (the
		// edge's state-free check) must let the command through.
		stateful bool
	}{
		// The image.
		{"VM with no node in the cluster", func(*harness) {},
			createVm("web", vmOf("", 1, 512), true), codeNotFound, "spec.image", true},
		{"VM of an image no node offers", func(h *harness) { h.ok(registerNode(1, 8, 8192, nil)) },
			createVm("web", vmOf("alpine-3.20", 1, 512), true), codeNotFound, "spec.image", true},
		{"VM of no image when no node offers the default", func(h *harness) { h.ok(big(1, image("ubuntu-24.04", 64))) },
			createVm("web", vmOf("", 1, 512), true), codeNotFound, "spec.image", true},
		{"VM of an image only a left node offers", func(h *harness) {
			h.ok(big(1, image("default", 64)))
			h.ok(big(2, image("alpine-3.20", 64)))
			h.leave([]uint64{1, 2}, 2)
		}, createVm("web", vmOf("alpine-3.20", 1, 512), true), codeNotFound, "spec.image", true},
		{"VM of an image named in another case", func(h *harness) { h.ok(registerNode(1, 8, 8192, nil)) },
			createVm("web", vmOf("Default", 1, 512), true), codeNotFound, "spec.image", true},

		// The image's minimum memory.
		{"VM 1 MiB below the image's minimum", func(h *harness) { h.ok(registerNode(1, 8, 8192, nil)) },
			createVm("web", vmOf("default", 1, 63), true), codeInvalid, "spec.memory_mib", true},
		{"VM below the smallest minimum of the nodes offering the image", func(h *harness) {
			h.ok(big(1, image("alpine-3.20", 256)))
			h.ok(big(2, image("alpine-3.20", 128)))
			h.ok(big(3, image("default", 16))) // another image's minimum does not count
		}, createVm("web", vmOf("alpine-3.20", 1, 127), true), codeInvalid, "spec.memory_mib", true},
		{"VM below the minimum, the smaller one being on a left node", func(h *harness) {
			h.ok(big(1, image("alpine-3.20", 256)))
			h.ok(big(2, image("alpine-3.20", 64)))
			h.leave([]uint64{1, 2}, 2)
		}, createVm("web", vmOf("alpine-3.20", 1, 128), true), codeInvalid, "spec.memory_mib", true},

		// The size of the largest node.
		{"VM with more vCPUs than any node", func(h *harness) {
			h.ok(registerNode(1, 8, 8192, nil))
			h.ok(registerNode(2, 16, 8192, nil))
		}, createVm("web", vmOf("default", 17, 512), true), codeExhausted, "spec", true},
		{"VM with more memory than any node", func(h *harness) {
			h.ok(registerNode(1, 8, 8192, nil))
			h.ok(registerNode(2, 4, 16384, nil))
		}, createVm("web", vmOf("default", 1, 16385), true), codeExhausted, "spec", true},
		{"VM with the vCPUs of one node and the memory of another", func(h *harness) {
			h.ok(registerNode(1, 16, 2048, nil))
			h.ok(registerNode(2, 2, 16384, nil))
		}, createVm("web", vmOf("default", 8, 8192), true), codeExhausted, "spec", true},
		{"VM only a node without its image is big enough for", func(h *harness) {
			h.ok(nodeWith(1, 2, 2048, image("alpine-3.20", 64)))
			h.ok(big(2, image("default", 64)))
		}, createVm("web", vmOf("alpine-3.20", 8, 8192), true), codeExhausted, "spec", true},
		{"VM only a left node is big enough for", func(h *harness) {
			h.ok(registerNode(1, 2, 2048, nil))
			h.ok(big(2, testImages()...))
			h.leave([]uint64{1, 2}, 2)
		}, createVm("web", vmOf("default", 8, 8192), true), codeExhausted, "spec", true},
		{"VM big enough only for a node whose image needs more memory", func(h *harness) {
			h.ok(nodeWith(1, 2, 1024, image("alpine-3.20", 64)))
			h.ok(big(2, image("alpine-3.20", 4096)))
		}, createVm("web", vmOf("alpine-3.20", 4, 2048), true), codeExhausted, "spec", true},
		{"stopped VM is refused all the same", func(h *harness) { h.ok(registerNode(1, 8, 8192, nil)) },
			createVm("web", vmOf("default", 9, 512), false), codeExhausted, "spec", true},

		// What is checked before the nodes.
		{"VM spec is checked before its image", func(*harness) {},
			createVm("web", vmOf("nope", 1, 0), true), codeInvalid, "spec.memory_mib", false},
		{"VM name is checked before its image", func(*harness) {},
			createVm("Web", vmOf("nope", 1, 512), true), codeInvalid, "name", false},
		{"a taken name is refused before the image", func(h *harness) {
			h.ok(registerNode(1, 8, 8192, nil))
			h.ok(createVm("web", vmSpec(1, 512), true))
		}, createVm("web", vmOf("nope", state.MaxWorkloadVcpus, 1), true), codeExists, "name", true},

		// Tasks.
		{"task with no node in the cluster", func(*harness) {},
			submitTask(taskOf("", 1, 256)), codeNotFound, "spec.image", true},
		{"task of an image no node offers", func(h *harness) { h.ok(registerNode(1, 8, 8192, nil)) },
			submitTask(taskOf("alpine-3.20", 1, 256)), codeNotFound, "spec.image", true},
		{"task of no image when no node offers the default", func(h *harness) { h.ok(big(1, image("ubuntu-24.04", 64))) },
			submitTask(taskOf("", 1, 256)), codeNotFound, "spec.image", true},
		{"task below the image's minimum", func(h *harness) { h.ok(registerNode(1, 8, 8192, nil)) },
			submitTask(taskOf("ubuntu-24.04", 1, 63)), codeInvalid, "spec.resources.memory_mib", true},
		{"task with more vCPUs than any node", func(h *harness) { h.ok(registerNode(1, 8, 8192, nil)) },
			submitTask(taskOf("", 9, 256)), codeExhausted, "spec.resources", true},
		{"task with more memory than any node", func(h *harness) { h.ok(registerNode(1, 8, 8192, nil)) },
			submitTask(taskOf("", 1, 8193)), codeExhausted, "spec.resources", true},
		{"task with more disk than any node", func(h *harness) { h.ok(registerNode(1, 8, 8192, nil)) },
			func() *apiv1.Command {
				spec := taskOf("", 1, 256)
				spec.Resources.DiskMib = 100001
				return submitTask(spec)
			}(), codeExhausted, "spec.resources", true},
		{"task with a feature no node has", func(h *harness) { h.ok(registerNode(1, 8, 8192, nil)) },
			func() *apiv1.Command {
				spec := taskOf("", 1, 256)
				spec.Resources.Features = []string{"gpu", "kvm"}
				return submitTask(spec)
			}(), codeExhausted, "spec.resources", true},
		{"task with a feature only a node without its image has", func(h *harness) {
			h.ok(registerNode(1, 8, 8192, nil))
			gpu := nodeWith(2, 8, 8192, image("cuda", 64))
			gpu.GetRegisterNode().Capacity.Features = []string{"gpu", "kvm"}
			h.ok(gpu)
		}, func() *apiv1.Command {
			spec := taskOf("default", 1, 256)
			spec.Resources.Features = []string{"gpu"}
			return submitTask(spec)
		}(), codeExhausted, "spec.resources", true},
		{"task spec is checked before its image", func(*harness) {},
			submitTask(taskOf("nope", 1, 0)), codeInvalid, "spec.resources.memory_mib", false},
		{"task image not UTF-8", func(h *harness) { h.ok(registerNode(1, 8, 8192, nil)) },
			submitTask(taskOf("\xff", 1, 256)), codeInvalid, "spec.image", false},
		{"task image too long", func(h *harness) { h.ok(registerNode(1, 8, 8192, nil)) },
			submitTask(taskOf(strings.Repeat("i", state.MaxImageLen+1), 1, 256)), codeInvalid, "spec.image", false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t)
			tc.setup(h)
			err := state.Validate(tc.cmd)
			switch {
			case tc.stateful && err != nil:
				t.Fatalf("Validate = %v, want nil: only the state can refuse this", err)
			case !tc.stateful:
				wantErr(t, err, tc.code, tc.field)
			}
			h.refusedUnchanged(tc.cmd, tc.code, tc.field)
			// Refused again, the same way, and still nothing changes.
			h.refusedUnchanged(tc.cmd, tc.code, tc.field)
			// Under a client request id the refusal is remembered and nothing
			// else changes.
			before := records(t, h.s)
			resp := h.reject(withID("req", proto.CloneOf(tc.cmd)), tc.code, tc.field)
			after := records(t, h.s)
			if stored, ok := h.s.Response("req"); !ok || !proto.Equal(stored, resp) {
				t.Fatalf("Response(req) = %v, %v; want %v", stored, ok, resp)
			}
			before.Requests, after.Requests = nil, nil
			if !proto.Equal(before, after) {
				t.Fatalf("refusal under an id changed more than the requests:\n%v\n%v", before, after)
			}
		})
	}
}

func TestPlacementAccepts(t *testing.T) {
	tests := []struct {
		name  string
		setup func(h *harness)
		cmd   *apiv1.Command
	}{
		{"VM at exactly the image's minimum", func(h *harness) { h.ok(registerNode(1, 8, 8192, nil)) },
			createVm("web", vmOf("ubuntu-24.04", 1, 64), true)},
		{"VM at the smallest minimum of the nodes offering the image", func(h *harness) {
			h.ok(nodeWith(1, 16, 16384, image("alpine-3.20", 256)))
			h.ok(nodeWith(2, 16, 16384, image("alpine-3.20", 128)))
		}, createVm("web", vmOf("alpine-3.20", 1, 128), true)},
		{"VM of exactly the largest node's size", func(h *harness) {
			h.ok(registerNode(1, 8, 8192, nil))
			h.ok(registerNode(2, 16, 16384, nil))
		}, createVm("web", vmOf("default", 16, 16384), true)},
		{"VM of no image boots the default", func(h *harness) { h.ok(nodeWith(1, 8, 8192, image("default", 64))) },
			createVm("web", vmOf("", 1, 512), true)},
		{"VM of an image one node of several offers", func(h *harness) {
			h.ok(registerNode(1, 8, 8192, nil))
			h.ok(nodeWith(2, 8, 8192, image("alpine-3.20", 64)))
		}, createVm("web", vmOf("alpine-3.20", 8, 8192), true)},
		{"VM that fits no node now waits", func(h *harness) {
			h.ok(registerNode(1, 4, 4096, nil))
			h.ok(createVm("hog", vmSpec(4, 4096), true))
			h.ok(h.assign("hog", 1))
		}, createVm("web", vmOf("default", 4, 4096), true)},
		{"task of no image boots the default", func(h *harness) { h.ok(nodeWith(1, 8, 8192, image("default", 64))) },
			submitTask(taskOf("", 1, 64))},
		{"task of exactly a node's disk and features", func(h *harness) { h.ok(registerNode(1, 8, 8192, nil)) },
			func() *apiv1.Command {
				spec := taskOf("ubuntu-24.04", 8, 8192)
				spec.Resources.DiskMib = 100000
				spec.Resources.Features = []string{"kvm"}
				return submitTask(spec)
			}()},
		{"task that fits no node now waits", func(h *harness) {
			h.ok(registerNode(1, 4, 4096, nil))
			h.ok(createVm("hog", vmSpec(4, 4096), true))
			h.ok(h.assign("hog", 1))
		}, submitTask(taskOf("", 4, 4096))},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t)
			tc.setup(h)
			resp := h.ok(tc.cmd)
			if spec := tc.cmd.GetCreateVm().GetSpec(); spec != nil {
				v := h.vm("web")
				if v.GetSpec().GetImage() != spec.GetImage() || v.GetState() != apiv1.VmState_VM_STATE_PENDING {
					t.Fatalf("VM = %v", v)
				}
				if got := h.s.VmsToPlace(); len(got) == 0 || got[len(got)-1].GetName() != "web" {
					t.Fatalf("VmsToPlace() = %v, want web waiting", vmNames(got))
				}
				return
			}
			tk := h.task(resp.GetSubmitTask().GetTask().GetId())
			if tk.GetStatus() != apiv1.TaskStatus_TASK_STATUS_PENDING || tk.GetSpec().GetImage() != tc.cmd.GetSubmitTask().GetSpec().GetImage() {
				t.Fatalf("task = %v", tk)
			}
			if got := h.s.PendingTasks(0); len(got) != 1 || got[0].GetId() != tk.GetId() {
				t.Fatalf("PendingTasks() = %v", got)
			}
		})
	}
}

// A node that is down or draining may come back: what it could hold counts.
func TestPlacementCountsNodesNotReady(t *testing.T) {
	for _, tc := range []struct {
		name string
		set  func(n *apiv1.Node)
	}{
		{"down", func(n *apiv1.Node) { n.Status = apiv1.NodeStatus_NODE_STATUS_DOWN }},
		{"disconnected", func(n *apiv1.Node) { n.Status = apiv1.NodeStatus_NODE_STATUS_DISCONNECTED }},
		{"draining", func(n *apiv1.Node) { n.Drain = true }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t)
			h.ok(registerNode(1, 2, 2048, nil))
			h.ok(nodeWith(2, 16, 16384, image("alpine-3.20", 64)))
			h.s = restoreWith(t, h.s, func(snap *apiv1.StateSnapshot) { tc.set(snap.Nodes[1]) })
			h.ok(createVm("web", vmOf("alpine-3.20", 8, 8192), true))
			h.ok(submitTask(taskOf("alpine-3.20", 8, 8192)))
			// It may not take them now.
			h.reject(h.assign("web", 2), codePrecond, "node_id")
			if err := h.s.CanPlaceVm(2, "web", nil); err == nil {
				t.Fatal("CanPlaceVm(2) = nil on a node that may not take work now")
			}
		})
	}
}

// ---- AssignVm and AssignTask need the image ---------------------------------

func TestAssignNeedsTheImage(t *testing.T) {
	setup := func(t *testing.T) *harness {
		h := newHarness(t)
		h.ok(registerNode(1, 8, 8192, nil))                  // default, ubuntu-24.04
		h.ok(nodeWith(2, 8, 8192, image("alpine-3.20", 64))) // alpine only
		h.ok(nodeWith(3, 1, 64, image("alpine-3.20", 64)))   // alpine only, tiny
		h.ok(createVm("ubuntu", vmOf("ubuntu-24.04", 2, 1024), true))
		h.ok(createVm("plain", vmOf("", 2, 1024), true)) // boots the default
		h.ok(createVm("alpine", vmOf("alpine-3.20", 2, 1024), true))
		for i, img := range []string{"", "alpine-3.20", "ubuntu-24.04"} {
			if id := h.submit(taskOf(img, 1, 256)); id != uint64(7+i) {
				t.Fatalf("setup: task %d, want %d", id, 7+i)
			}
		}
		return h
	}
	vmOn := func(name string, node uint64) func(h *harness) *apiv1.Command {
		return func(h *harness) *apiv1.Command { return h.assign(name, node) }
	}
	taskOn := func(id, node uint64) func(h *harness) *apiv1.Command {
		return func(*harness) *apiv1.Command { return assignTask(id, node) }
	}
	tests := []struct {
		name  string
		cmd   func(h *harness) *apiv1.Command
		code  apiv1.ErrorCode // 0: accepted
		field string
	}{
		{"VM on a node offering its image", vmOn("ubuntu", 1), 0, ""},
		{"VM of no image on a node offering the default", vmOn("plain", 1), 0, ""},
		{"VM on a node without its image", vmOn("ubuntu", 2), codePrecond, "node_id"},
		{"VM of no image on a node without the default", vmOn("plain", 2), codePrecond, "node_id"},
		{"VM without its image on a node too small as well", vmOn("ubuntu", 3), codePrecond, "node_id"},
		{"VM with its image on a node too small", vmOn("alpine", 3), codeExhausted, "node_id"},
		{"task of no image on a node offering the default", taskOn(7, 1), 0, ""},
		{"task of no image on a node without the default", taskOn(7, 2), codePrecond, "node_id"},
		{"task on a node offering its image", taskOn(8, 2), 0, ""},
		{"task on a node without its image", taskOn(8, 1), codePrecond, "node_id"},
		{"task without its image on a node too small as well", taskOn(9, 3), codePrecond, "node_id"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h := setup(t)
			cmd := tc.cmd(h)
			if tc.code == 0 {
				h.ok(cmd)
				return
			}
			h.refusedUnchanged(cmd, tc.code, tc.field)
		})
	}
}

// A node whose image needs more memory than a workload has cannot boot it:
// CreateVm and SubmitTask take each node's own minimum into account (see
// "VM big enough only for a node whose image needs more memory" above), and
// so does placement.
func TestAssignHonoursTheNodesImageMinimum(t *testing.T) {
	h := newHarness(t)
	h.ok(nodeWith(1, 8, 8192, image("alpine-3.20", 64)))
	h.ok(nodeWith(2, 8, 8192, image("alpine-3.20", 4096)))
	h.ok(createVm("web", vmOf("alpine-3.20", 1, 128), true))
	task := h.submit(taskOf("alpine-3.20", 1, 128))
	if err := h.s.CanPlace(2, "alpine-3.20", &apiv1.Resources{Vcpus: 1, MemoryMib: 128}); err == nil {
		t.Error("CanPlace(2) = nil for 128 MiB of an image that needs 4096 MiB there")
	}
	wantErr(t, h.s.CanPlaceVm(2, "web", nil), codePrecond, "node_id")
	h.reject(h.assign("web", 2), codePrecond, "node_id")
	h.reject(assignTask(task, 2), codePrecond, "node_id")
	h.ok(h.assign("web", 1))
	h.ok(assignTask(task, 1))
}

// ---- restarts -----------------------------------------------------------------

func TestAssignCountsRestarts(t *testing.T) {
	const (
		pending  = apiv1.VmState_VM_STATE_PENDING
		failed   = apiv1.VmState_VM_STATE_FAILED
		stopped  = apiv1.VmState_VM_STATE_STOPPED
		lost     = apiv1.VmState_VM_STATE_LOST
		running  = apiv1.VmState_VM_STATE_RUNNING
		starting = apiv1.VmState_VM_STATE_STARTING
	)
	tests := []struct {
		name string
		// steps takes the VM "web", created wanting to run, to the state to
		// place it from; it returns how many times it placed it, so that
		// the VM's generation then is its creation's index plus that.
		steps        func(h *harness) uint64
		from         apiv1.VmState
		wantRestarts uint32
	}{
		{"first placement", func(*harness) uint64 { return 0 }, pending, 0},
		{"after a failure", func(h *harness) uint64 {
			h.ok(h.assign("web", 1))
			h.ok(h.report("web", 1, failed))
			return 1
		}, failed, 1},
		{"after a failure while starting", func(h *harness) uint64 {
			h.ok(h.assign("web", 1))
			h.ok(h.report("web", 1, starting))
			h.ok(h.report("web", 1, failed))
			return 1
		}, failed, 1},
		{"after stopping on its own", func(h *harness) uint64 {
			h.ok(h.assign("web", 1))
			h.ok(h.report("web", 1, running))
			h.ok(h.report("web", 1, stopped))
			return 1
		}, stopped, 1},
		{"after two failures", func(h *harness) uint64 {
			h.ok(h.assign("web", 1))
			h.ok(h.report("web", 1, failed))
			h.ok(h.assign("web", 2))
			h.ok(h.report("web", 2, failed))
			return 2
		}, failed, 2},
		{"after a failure and stopping on its own", func(h *harness) uint64 {
			h.ok(h.assign("web", 1))
			h.ok(h.report("web", 1, failed))
			h.ok(h.assign("web", 1))
			h.ok(h.report("web", 1, running))
			h.ok(h.report("web", 1, stopped))
			return 2
		}, stopped, 2},
		{"after being lost", func(h *harness) uint64 {
			h.ok(h.assign("web", 1))
			h.ok(h.report("web", 1, running))
			gen := h.gen("web")
			h.s = restoreWith(h.t, h.s, func(snap *apiv1.StateSnapshot) {
				snap.Vms[0].State = lost
				snap.Vms[0].Events = append(snap.Vms[0].Events, &apiv1.VmEvent{Index: h.idx, State: lost, NodeId: 1, Generation: gen})
			})
			return 1
		}, lost, 1},
		{"a user's start after a failure is no restart", func(h *harness) uint64 {
			h.ok(h.assign("web", 1))
			h.ok(h.report("web", 1, failed))
			h.ok(startVm("web"))
			return 1
		}, pending, 0},
		{"a user's stop and start is no restart", func(h *harness) uint64 {
			h.ok(h.assign("web", 1))
			h.ok(h.report("web", 1, running))
			h.ok(stopVm("web"))
			h.ok(h.report("web", 1, stopped))
			h.ok(startVm("web"))
			return 1
		}, pending, 0},
		{"a start while stopping is no restart", func(h *harness) uint64 {
			h.ok(h.assign("web", 1))
			h.ok(h.report("web", 1, running))
			h.ok(stopVm("web"))
			h.ok(startVm("web"))
			h.ok(h.report("web", 1, stopped))
			return 1
		}, pending, 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t)
			h.ok(registerNode(1, 8, 8192, nil))
			h.ok(registerNode(2, 8, 8192, nil))
			spec := vmSpec(2, 1024)
			spec.RestartPolicy = apiv1.RestartPolicy_RESTART_POLICY_ALWAYS
			h.ok(createVm("web", spec, true))
			created := h.idx
			gen := created + tc.steps(h)
			before := h.vm("web")
			if before.GetState() != tc.from || before.GetGeneration() != gen || before.GetCreatedIndex() != created {
				t.Fatalf("before placing: VM %v, want %v at generation %d", before, tc.from, gen)
			}
			if got := h.s.VmsToPlace(); len(got) != 1 || got[0].GetName() != "web" {
				t.Fatalf("VmsToPlace() = %v, want [web]", vmNames(got))
			}
			h.ok(h.assign("web", 2))
			v := h.vm("web")
			if v.GetRestarts() != tc.wantRestarts || v.GetGeneration() != gen+1 || v.GetNodeId() != 2 ||
				v.GetState() != apiv1.VmState_VM_STATE_SCHEDULED || v.GetUpdatedIndex() != h.idx {
				t.Fatalf("after placing: VM %v, want restarts %d generation %d scheduled on node 2", v, tc.wantRestarts, gen+1)
			}
			if got := h.s.Allocated(2); got.GetVcpus() != 2 || got.GetMemoryMib() != 1024 {
				t.Fatalf("node 2 allocated %v", got)
			}
			if len(h.s.VmsToPlace()) != 0 {
				t.Fatalf("VmsToPlace() = %v after placement", vmNames(h.s.VmsToPlace()))
			}
			// The restart count survives a snapshot.
			r, err := state.Restore(mustSnapshot(t, h.s))
			if err != nil {
				t.Fatal(err)
			}
			if rv, _ := r.Vm("web"); rv.GetRestarts() != tc.wantRestarts {
				t.Fatalf("restored restarts = %d", rv.GetRestarts())
			}
		})
	}
}

func TestAssignStoppedVm(t *testing.T) {
	// stoppedOnItsOwn leaves "web" stopped after one placement, still
	// wanted running, its node 1.
	stoppedOnItsOwn := func(t *testing.T) *harness {
		h := newHarness(t)
		h.ok(registerNode(1, 8, 8192, nil))
		h.ok(registerNode(2, 8, 8192, nil))
		h.ok(nodeWith(3, 8, 8192, image("alpine-3.20", 64)))
		spec := vmSpec(2, 1024)
		spec.RestartPolicy = apiv1.RestartPolicy_RESTART_POLICY_ALWAYS
		h.ok(createVm("web", spec, true))
		h.ok(h.assign("web", 1))
		h.ok(h.report("web", 1, apiv1.VmState_VM_STATE_RUNNING))
		h.ok(h.report("web", 1, apiv1.VmState_VM_STATE_STOPPED))
		v := h.vm("web")
		if v.GetState() != apiv1.VmState_VM_STATE_STOPPED || v.GetDesiredState() != apiv1.VmDesiredState_VM_DESIRED_STATE_RUNNING ||
			v.GetGeneration() != v.GetCreatedIndex()+1 {
			t.Fatalf("setup: VM %v", v)
		}
		return h
	}
	on := func(node uint64) func(h *harness) *apiv1.Command {
		return func(h *harness) *apiv1.Command { return h.assign("web", node) }
	}
	tests := []struct {
		name  string
		setup func(t *testing.T) *harness
		cmd   func(h *harness) *apiv1.Command
		code  apiv1.ErrorCode // 0: accepted
		field string
	}{
		{"stopped on its own, back on its node", stoppedOnItsOwn, on(1), 0, ""},
		{"stopped on its own, on another node", stoppedOnItsOwn, on(2), 0, ""},
		{"stopped on its own, stale generation", stoppedOnItsOwn, func(h *harness) *apiv1.Command {
			return assignVm("web", 2, h.gen("web")-1)
		}, codePrecond, "generation"},
		{"stopped on its own, node without the image", stoppedOnItsOwn, on(3), codePrecond, "node_id"},
		{"stopped on its own, then stopped by the user", func(t *testing.T) *harness {
			h := stoppedOnItsOwn(t)
			h.ok(stopVm("web"))
			return h
		}, on(1), codePrecond, "name"},
		{"stopped by the user", func(t *testing.T) *harness {
			h := newHarness(t)
			h.ok(registerNode(1, 8, 8192, nil))
			h.ok(createVm("web", vmSpec(2, 1024), true))
			h.ok(h.assign("web", 1))
			h.ok(stopVm("web"))
			h.ok(h.report("web", 1, apiv1.VmState_VM_STATE_STOPPED))
			return h
		}, on(1), codePrecond, "name"},
		{"created stopped", func(t *testing.T) *harness {
			h := newHarness(t)
			h.ok(registerNode(1, 8, 8192, nil))
			h.ok(createVm("web", vmSpec(2, 1024), false))
			return h
		}, on(1), codePrecond, "name"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h := tc.setup(t)
			cmd := tc.cmd(h)
			if tc.code != 0 {
				h.refusedUnchanged(cmd, tc.code, tc.field)
				return
			}
			h.ok(cmd)
			v := h.vm("web")
			if v.GetState() != apiv1.VmState_VM_STATE_SCHEDULED || v.GetNodeId() != cmd.GetAssignVm().GetNodeId() ||
				v.GetGeneration() != v.GetCreatedIndex()+2 || v.GetRestarts() != 1 {
				t.Fatalf("VM = %v", v)
			}
			// The old placement can no longer report on it.
			h.reject(reportVm("web", 1, v.GetCreatedIndex()+1, apiv1.VmState_VM_STATE_RUNNING), codePrecond, "generation")
			h.ok(h.report("web", v.GetNodeId(), apiv1.VmState_VM_STATE_RUNNING))
		})
	}
}

// ---- ReportVm -----------------------------------------------------------------

func TestReportVmRepeatChangesNothing(t *testing.T) {
	tests := []struct {
		name string
		// to takes "web", placed once on node 1, to the state to repeat;
		// repeat is the report, at the VM's current generation, that says it
		// again.
		to     []apiv1.VmState
		repeat func(h *harness) *apiv1.Command
		// changes: the repeat is not a repeat after all (another reason).
		changes bool
	}{
		{"starting", []apiv1.VmState{apiv1.VmState_VM_STATE_STARTING},
			func(h *harness) *apiv1.Command { return h.report("web", 1, apiv1.VmState_VM_STATE_STARTING) }, false},
		{"running", []apiv1.VmState{apiv1.VmState_VM_STATE_STARTING, apiv1.VmState_VM_STATE_RUNNING},
			func(h *harness) *apiv1.Command { return h.report("web", 1, apiv1.VmState_VM_STATE_RUNNING) }, false},
		{"running with a console tail", []apiv1.VmState{apiv1.VmState_VM_STATE_RUNNING},
			func(h *harness) *apiv1.Command {
				return reportWithTail("web", 1, h.gen("web"), apiv1.VmState_VM_STATE_RUNNING, "boot\n")
			}, false},
		{"running with another reason", []apiv1.VmState{apiv1.VmState_VM_STATE_RUNNING},
			func(h *harness) *apiv1.Command {
				c := h.report("web", 1, apiv1.VmState_VM_STATE_RUNNING)
				c.GetReportVm().Reason = "healthy again"
				return c
			}, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t)
			h.ok(registerNode(1, 8, 8192, nil))
			h.ok(createVm("web", vmSpec(1, 512), true))
			h.ok(h.assign("web", 1))
			for _, st := range tc.to {
				h.ok(h.report("web", 1, st))
			}
			repeat := tc.repeat(h)
			before, beforeKey := h.vm("web"), keyOf(t, h.s)
			resp := h.ok(repeat)
			if resp.GetKind() != nil || resp.GetError() != nil {
				t.Fatalf("response = %v", resp)
			}
			after := h.vm("web")
			if tc.changes {
				if after.GetUpdatedIndex() != h.idx || len(after.GetEvents()) != len(before.GetEvents())+1 ||
					after.GetReason() != repeat.GetReportVm().GetReason() {
					t.Fatalf("a report with a new reason was not recorded: %v", after)
				}
				return
			}
			if !proto.Equal(before, after) {
				t.Fatalf("a repeated report changed the VM:\nbefore %v\nafter  %v", before, after)
			}
			if after.GetUpdatedIndex() == h.idx {
				t.Fatalf("updated_index moved to %d", h.idx)
			}
			if !beforeKey.equal(keyOf(t, h.s)) {
				t.Fatal("a repeated report changed the snapshot")
			}
			if h.s.AppliedIndex() != h.idx {
				t.Fatalf("AppliedIndex = %d, want %d", h.s.AppliedIndex(), h.idx)
			}
			// Under a client request id the repeat is remembered, and that is all.
			beforeRecs := records(t, h.s)
			h.ok(withID("again", proto.CloneOf(repeat)))
			afterRecs := records(t, h.s)
			if len(afterRecs.GetRequests()) != len(beforeRecs.GetRequests())+1 {
				t.Fatalf("repeat under an id not remembered")
			}
			beforeRecs.Requests, afterRecs.Requests = nil, nil
			if !proto.Equal(beforeRecs, afterRecs) {
				t.Fatalf("repeat under an id changed the records")
			}
		})
	}
}

func TestLateReportOnStoppingVmIsIgnored(t *testing.T) {
	ways := []struct {
		name string
		stop func(h *harness)
		// after is what a final "stopped" report leaves: the VM's state, or
		// gone.
		after apiv1.VmState
		gone  bool
	}{
		{"stopped by the user", func(h *harness) { h.ok(stopVm("web")) }, apiv1.VmState_VM_STATE_STOPPED, false},
		{"deleted by the user", func(h *harness) { h.ok(deleteVm("web")) }, 0, true},
		{"stopped and started again", func(h *harness) {
			h.ok(stopVm("web"))
			h.ok(startVm("web"))
		}, apiv1.VmState_VM_STATE_PENDING, false},
	}
	late := []apiv1.VmState{apiv1.VmState_VM_STATE_STARTING, apiv1.VmState_VM_STATE_RUNNING}
	for _, way := range ways {
		for _, st := range late {
			t.Run(way.name+"/"+st.String(), func(t *testing.T) {
				h := newHarness(t)
				h.ok(registerNode(1, 8, 8192, nil))
				h.ok(createVm("web", vmSpec(1, 512), true))
				h.ok(h.assign("web", 1))
				h.ok(h.report("web", 1, apiv1.VmState_VM_STATE_STARTING))
				way.stop(h)
				before, beforeKey := h.vm("web"), keyOf(t, h.s)
				if before.GetState() != apiv1.VmState_VM_STATE_STOPPING {
					t.Fatalf("setup: VM %v", before)
				}
				h.ok(reportWithTail("web", 1, h.gen("web"), st, "late\n"))
				if after := h.vm("web"); !proto.Equal(before, after) {
					t.Fatalf("late %v changed the VM:\nbefore %v\nafter  %v", st, before, after)
				}
				if !beforeKey.equal(keyOf(t, h.s)) {
					t.Fatal("late report changed the snapshot")
				}
				if got := h.s.VmsOn(1); len(got) != 1 || got[0].GetState() != apiv1.VmState_VM_STATE_STOPPING {
					t.Fatalf("VmsOn(1) = %v", got)
				}
				// The stop goes on as before.
				h.ok(h.report("web", 1, apiv1.VmState_VM_STATE_STOPPED))
				v, ok := h.s.Vm("web")
				switch {
				case way.gone && ok:
					t.Fatalf("deleted VM still there: %v", v)
				case !way.gone && v.GetState() != way.after:
					t.Fatalf("after stopped: %v, want %v", v, way.after)
				}
				if got := h.s.Allocated(1); got.GetVcpus() != 0 {
					t.Fatalf("node 1 still allocated %v", got)
				}
			})
		}
	}
}

func TestFailedReportKeepsConsoleTail(t *testing.T) {
	tail := "[    1.234] Kernel panic - not syncing: VFS: Unable to mount root fs\n"
	full := strings.Repeat("é", state.MaxConsoleTailLen/2) // exactly the bound, in bytes
	failed, running, stopped := apiv1.VmState_VM_STATE_FAILED, apiv1.VmState_VM_STATE_RUNNING, apiv1.VmState_VM_STATE_STOPPED
	// tailed is node 1's report, at the VM's current generation, of st with
	// tail; replaced places the VM on node 1 again (a restart).
	tailed := func(st apiv1.VmState, tail string) func(h *harness) *apiv1.Command {
		return func(h *harness) *apiv1.Command { return reportWithTail("web", 1, h.gen("web"), st, tail) }
	}
	replaced := func(h *harness) *apiv1.Command { return h.assign("web", 1) }
	tests := []struct {
		name string
		// reports are made in turn, each built when it is made.
		reports []func(h *harness) *apiv1.Command
		want    string
	}{
		{"failed with a tail", []func(h *harness) *apiv1.Command{tailed(failed, tail)}, tail},
		{"failed with a tail of the greatest length", []func(h *harness) *apiv1.Command{tailed(failed, full)}, full},
		{"failed without a tail", []func(h *harness) *apiv1.Command{tailed(failed, "")}, ""},
		{"running with a tail keeps none", []func(h *harness) *apiv1.Command{tailed(running, tail)}, ""},
		{"stopped with a tail keeps none", []func(h *harness) *apiv1.Command{tailed(stopped, tail)}, ""},
		{"the tail outlives a restart and a run", []func(h *harness) *apiv1.Command{
			tailed(failed, tail),
			replaced,
			tailed(running, "all is well\n"),
		}, tail},
		{"the tail outlives stopping on its own", []func(h *harness) *apiv1.Command{
			tailed(failed, tail),
			replaced,
			tailed(stopped, "bye\n"),
		}, tail},
		{"a second failure replaces the tail", []func(h *harness) *apiv1.Command{
			tailed(failed, tail),
			replaced,
			tailed(failed, "oom\n"),
		}, "oom\n"},
		{"a second failure without a tail clears it", []func(h *harness) *apiv1.Command{
			tailed(failed, tail),
			replaced,
			tailed(failed, ""),
		}, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t)
			h.ok(registerNode(1, 8, 8192, nil))
			h.ok(createVm("web", vmSpec(1, 512), true))
			h.ok(h.assign("web", 1))
			for _, c := range tc.reports {
				h.ok(c(h))
			}
			if got := h.vm("web").GetConsoleTail(); got != tc.want {
				t.Fatalf("console tail = %q, want %q", got, tc.want)
			}
		})
	}

	// A deleted VM that fails is removed, tail and all.
	h := newHarness(t)
	h.ok(registerNode(1, 8, 8192, nil))
	h.ok(createVm("web", vmSpec(1, 512), true))
	h.ok(h.assign("web", 1))
	h.ok(deleteVm("web"))
	h.ok(reportWithTail("web", 1, h.gen("web"), failed, tail))
	if v, ok := h.s.Vm("web"); ok {
		t.Fatalf("deleted VM kept: %v", v)
	}
}

// ---- RegisterNode images ------------------------------------------------------

func TestRegisterNodeImages(t *testing.T) {
	many := func(n int) []*apiv1.ImageInfo {
		out := make([]*apiv1.ImageInfo, n)
		for i := range out {
			out[i] = image(fmt.Sprintf("img-%03d", i), 64)
		}
		return out
	}
	tests := []struct {
		name   string
		images []*apiv1.ImageInfo
		code   apiv1.ErrorCode // 0: accepted
		field  string
	}{
		{"none", nil, 0, ""},
		{"one", []*apiv1.ImageInfo{image("default", 64)}, 0, ""},
		{"sorted", []*apiv1.ImageInfo{image("alpine-3.20", 64), image("default", 128), image("ubuntu-24.04", 256)}, 0, ""},
		{"the most allowed", many(state.MaxImages), 0, ""},
		{"names with dots, dashes, underscores and digits", []*apiv1.ImageInfo{image("0day", 0), image("a.b_c-d", 0), image("z-", 0)}, 0, ""},
		{"name of the greatest length", []*apiv1.ImageInfo{image(strings.Repeat("n", state.MaxNameLen), 64)}, 0, ""},
		{"no digest, no minimum", []*apiv1.ImageInfo{{Name: "default"}}, 0, ""},
		{"digest of the greatest length", []*apiv1.ImageInfo{{Name: "default", Digest: "sha256:" + strings.Repeat("f", state.MaxDigestLen-7)}}, 0, ""},
		{"the greatest minimum", []*apiv1.ImageInfo{{Name: "default", MinMemoryMib: state.MaxMemoryMiB}}, 0, ""},

		{"too many", many(state.MaxImages + 1), codeInvalid, "images"},
		{"empty name", []*apiv1.ImageInfo{image("", 64)}, codeInvalid, "images"},
		{"upper-case name", []*apiv1.ImageInfo{image("Ubuntu", 64)}, codeInvalid, "images"},
		{"name starting with a dash", []*apiv1.ImageInfo{image("-x", 64)}, codeInvalid, "images"},
		{"name starting with a dot", []*apiv1.ImageInfo{image(".x", 64)}, codeInvalid, "images"},
		{"name with a slash", []*apiv1.ImageInfo{image("library/ubuntu", 64)}, codeInvalid, "images"},
		{"name with a space", []*apiv1.ImageInfo{image("a b", 64)}, codeInvalid, "images"},
		{"name too long", []*apiv1.ImageInfo{image(strings.Repeat("n", state.MaxNameLen+1), 64)}, codeInvalid, "images"},
		{"a bad name after good ones", []*apiv1.ImageInfo{image("a", 64), image("b", 64), image("C", 64)}, codeInvalid, "images"},
		{"unsorted", []*apiv1.ImageInfo{image("ubuntu-24.04", 64), image("default", 64)}, codeInvalid, "images"},
		{"duplicate", []*apiv1.ImageInfo{image("default", 64), image("default", 128)}, codeInvalid, "images"},
		{"digest too long", []*apiv1.ImageInfo{{Name: "default", Digest: "sha256:" + strings.Repeat("f", state.MaxDigestLen-6)}}, codeInvalid, "images.digest"},
		{"digest not UTF-8", []*apiv1.ImageInfo{{Name: "default", Digest: "sha256:\xff"}}, codeInvalid, "images.digest"},
		{"minimum too large", []*apiv1.ImageInfo{{Name: "default", MinMemoryMib: state.MaxMemoryMiB + 1}}, codeInvalid, "images.min_memory_mib"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			for _, existing := range []bool{false, true} {
				h := newHarness(t)
				if existing {
					h.ok(registerNode(1, 8, 8192, nil))
				}
				cmd := nodeWith(1, 8, 8192, tc.images...)
				if tc.code != 0 {
					h.refusedUnchanged(cmd, tc.code, tc.field)
					// A join is refused the same way.
					wantErr(t, h.s.CheckJoin(cmd.GetRegisterNode(), 0), tc.code, tc.field)
					continue
				}
				if err := h.s.CheckJoin(cmd.GetRegisterNode(), 0); err != nil {
					t.Fatalf("CheckJoin = %v", err)
				}
				h.ok(cmd)
				n := h.node(1)
				if len(n.GetImages()) != len(tc.images) {
					t.Fatalf("node images = %v, want %v", n.GetImages(), tc.images)
				}
				for i := range tc.images {
					if !proto.Equal(n.GetImages()[i], tc.images[i]) {
						t.Fatalf("node image %d = %v, want %v", i, n.GetImages()[i], tc.images[i])
					}
				}
			}
		})
	}
}

func TestReRegistrationReplacesImages(t *testing.T) {
	h := newHarness(t)
	h.ok(registerNode(1, 8, 8192, nil)) // default, ubuntu-24.04
	h.ok(createVm("web", vmOf("ubuntu-24.04", 1, 512), true))
	h.ok(nodeWith(1, 8, 8192, image("alpine-3.20", 128), image("default", 256)))
	want := []*apiv1.ImageInfo{image("alpine-3.20", 128), image("default", 256)}
	if got := h.node(1).GetImages(); !protoSliceEqual(got, want) {
		t.Fatalf("images = %v, want %v", got, want)
	}
	// What the node no longer offers is refused; what it offers now is
	// accepted, at the new minimum.
	h.reject(createVm("web2", vmOf("ubuntu-24.04", 1, 512), true), codeNotFound, "spec.image")
	h.reject(h.assign("web", 1), codePrecond, "node_id")
	h.reject(createVm("web2", vmOf("default", 1, 128), true), codeInvalid, "spec.memory_mib")
	h.ok(createVm("web2", vmOf("default", 1, 256), true))
	h.ok(createVm("web3", vmOf("alpine-3.20", 1, 128), true))
	// A node may offer nothing (yet); then nothing can be created.
	h.ok(nodeWith(1, 8, 8192))
	if got := h.node(1).GetImages(); len(got) != 0 {
		t.Fatalf("images = %v, want none", got)
	}
	h.reject(createVm("web4", vmOf("", 1, 512), true), codeNotFound, "spec.image")
	h.reject(submitTask(taskOf("alpine-3.20", 1, 512)), codeNotFound, "spec.image")
}

// ---- read helpers -------------------------------------------------------------

func taskIDs(ts []*apiv1.Task) []uint64 {
	out := make([]uint64, len(ts))
	for i, tk := range ts {
		out[i] = tk.GetId()
	}
	return out
}

func TestVmsOnAndVmsToPlace(t *testing.T) {
	const (
		never   = apiv1.RestartPolicy_RESTART_POLICY_NEVER
		always  = apiv1.RestartPolicy_RESTART_POLICY_ALWAYS
		failed  = apiv1.VmState_VM_STATE_FAILED
		running = apiv1.VmState_VM_STATE_RUNNING
		stopped = apiv1.VmState_VM_STATE_STOPPED
	)
	h := newHarness(t)
	h.ok(registerNode(1, 64, 65536, nil))
	h.ok(registerNode(2, 64, 65536, nil))
	h.ok(registerNode(3, 64, 65536, nil))
	create := func(name string, policy apiv1.RestartPolicy, start bool) {
		spec := vmSpec(1, 512)
		spec.RestartPolicy = policy
		h.ok(createVm(name, spec, start))
	}
	runWith := func(name string, policy apiv1.RestartPolicy, node uint64, states ...apiv1.VmState) {
		create(name, policy, true)
		h.ok(h.assign(name, node))
		for _, st := range states {
			h.ok(h.report(name, node, st))
		}
	}
	run := func(name string, node uint64, states ...apiv1.VmState) {
		runWith(name, apiv1.RestartPolicy_RESTART_POLICY_UNSPECIFIED, node, states...) // on-failure
	}
	// Created in an order that is not their names'.
	run("zeta", 1, running)
	run("alpha", 1) // scheduled
	run("mid", 1, running)
	h.ok(stopVm("mid")) // stopping
	run("beta", 2, apiv1.VmState_VM_STATE_STARTING)
	run("gamma", 1, failed)                       // failed, on-failure: to place again
	run("delta", 1, running, stopped)             // stopped on its own, on-failure: not restarted
	runWith("kappa", always, 1, running, stopped) // stopped on its own, always: to place again
	runWith("iota", never, 2, failed)             // failed, never: not restarted
	runWith("lambda", always, 2, running, failed) // failed, always: to place again
	create("omicron", never, true)                // pending, whatever its policy
	h.ok(createVm("eps", vmSpec(1, 512), true))   // pending
	h.ok(createVm("cold", vmSpec(1, 512), false)) // stopped, not wanted
	create("cold-always", always, false)          // stopped, not wanted, whatever its policy
	run("halted", 1, running)
	h.ok(stopVm("halted"))
	h.ok(h.report("halted", 1, stopped)) // stopped by the user
	run("dying", 2, running)
	h.ok(deleteVm("dying")) // stopping, to be removed
	run("again", 2, running)
	h.ok(stopVm("again"))
	h.ok(startVm("again")) // stopping, wanted running
	run("given-up", 3, failed)
	h.ok(stopVm("given-up")) // failed, no longer wanted
	run("nu", 3, running)
	runWith("xi", never, 3, running)
	// Their node is lost: nu (on-failure) is to place again, xi (never) is
	// not. No command loses a VM; a restored snapshot does, and Restore
	// files the VMs afresh.
	h.s = restoreWith(t, h.s, func(snap *apiv1.StateSnapshot) {
		for _, v := range snap.Vms {
			if v.Name == "nu" || v.Name == "xi" {
				v.State = apiv1.VmState_VM_STATE_LOST
				v.Events = append(v.Events, &apiv1.VmEvent{Index: h.idx, State: v.State, NodeId: 3, Generation: v.Generation})
			}
		}
	})

	tests := []struct {
		name string
		got  []*apiv1.Vm
		want []string
	}{
		{"VmsOn(1)", h.s.VmsOn(1), []string{"alpha", "mid", "zeta"}},
		{"VmsOn(2)", h.s.VmsOn(2), []string{"again", "beta", "dying"}},
		{"VmsOn(3)", h.s.VmsOn(3), nil},
		{"VmsOn(unknown node)", h.s.VmsOn(9), nil},
		{"VmsToPlace()", h.s.VmsToPlace(), []string{"eps", "gamma", "kappa", "lambda", "nu", "omicron"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := vmNames(tc.got); strings.Join(got, ",") != strings.Join(tc.want, ",") {
				t.Fatalf("%s = %v, want %v", tc.name, got, tc.want)
			}
			for _, v := range tc.got {
				if !proto.Equal(v, h.vm(v.GetName())) {
					t.Fatalf("%s: record %v differs from Vm(%q)", tc.name, v, v.GetName())
				}
			}
		})
	}

	// Placing one moves it from the one list to the other.
	h.ok(h.assign("gamma", 3))
	if got := vmNames(h.s.VmsOn(3)); strings.Join(got, ",") != "gamma" {
		t.Fatalf("VmsOn(3) = %v after placing gamma", got)
	}
	if got := vmNames(h.s.VmsToPlace()); strings.Join(got, ",") != "eps,kappa,lambda,nu,omicron" {
		t.Fatalf("VmsToPlace() = %v after placing gamma", got)
	}
	if got := vmNames(h.s.VmsOn(1)); strings.Join(got, ",") != "alpha,mid,zeta" {
		t.Fatalf("VmsOn(1) = %v after placing gamma", got)
	}

	// A user's start puts the VMs their policy left alone back on the list,
	// pending; a start of one that is listed already changes nothing there.
	for _, name := range []string{"delta", "iota", "xi", "kappa"} {
		h.ok(startVm(name))
	}
	if got := vmNames(h.s.VmsToPlace()); strings.Join(got, ",") != "delta,eps,iota,kappa,lambda,nu,omicron,xi" {
		t.Fatalf("VmsToPlace() = %v after the starts", got)
	}
	for _, name := range []string{"delta", "iota", "xi"} {
		if v := h.vm(name); v.GetState() != apiv1.VmState_VM_STATE_PENDING {
			t.Fatalf("%s after start: %v", name, v)
		}
	}
	// The state restored from a snapshot lists the same.
	r, err := state.Restore(mustSnapshot(t, h.s))
	if err != nil {
		t.Fatal(err)
	}
	if !protoSliceEqual(r.VmsToPlace(), h.s.VmsToPlace()) {
		t.Fatalf("restored VmsToPlace() = %v, want %v", vmNames(r.VmsToPlace()), vmNames(h.s.VmsToPlace()))
	}
	for id := uint64(1); id <= 3; id++ {
		if !protoSliceEqual(r.VmsOn(id), h.s.VmsOn(id)) {
			t.Fatalf("restored VmsOn(%d) = %v, want %v", id, vmNames(r.VmsOn(id)), vmNames(h.s.VmsOn(id)))
		}
	}
}

// TestVmsToPlaceFollowsRestartPolicy: a VM wanted running that runs nowhere
// waits for a node when it is pending, when it failed or its node was lost
// and its policy is always or on-failure (the default), or when it stopped
// on its own and its policy is always. A user's start makes any of them
// pending, so waiting.
func TestVmsToPlaceFollowsRestartPolicy(t *testing.T) {
	const (
		unspecified = apiv1.RestartPolicy_RESTART_POLICY_UNSPECIFIED
		never       = apiv1.RestartPolicy_RESTART_POLICY_NEVER
		onFailure   = apiv1.RestartPolicy_RESTART_POLICY_ON_FAILURE
		always      = apiv1.RestartPolicy_RESTART_POLICY_ALWAYS
		running     = apiv1.VmState_VM_STATE_RUNNING
	)
	ends := []struct {
		name string
		end  func(h *harness)
		// listed: the policies under which the VM waits for a node after.
		listed []apiv1.RestartPolicy
	}{
		{"pending", func(*harness) {}, []apiv1.RestartPolicy{unspecified, never, onFailure, always}},
		{"failed", func(h *harness) {
			h.ok(h.assign("web", 1))
			h.ok(h.report("web", 1, apiv1.VmState_VM_STATE_FAILED))
		}, []apiv1.RestartPolicy{unspecified, onFailure, always}},
		{"failed while starting", func(h *harness) {
			h.ok(h.assign("web", 1))
			h.ok(h.report("web", 1, apiv1.VmState_VM_STATE_STARTING))
			h.ok(h.report("web", 1, apiv1.VmState_VM_STATE_FAILED))
		}, []apiv1.RestartPolicy{unspecified, onFailure, always}},
		{"lost", func(h *harness) {
			h.ok(h.assign("web", 1))
			h.ok(h.report("web", 1, running))
			h.s = restoreWith(h.t, h.s, func(snap *apiv1.StateSnapshot) { snap.Vms[0].State = apiv1.VmState_VM_STATE_LOST })
		}, []apiv1.RestartPolicy{unspecified, onFailure, always}},
		{"stopped on its own", func(h *harness) {
			h.ok(h.assign("web", 1))
			h.ok(h.report("web", 1, running))
			h.ok(h.report("web", 1, apiv1.VmState_VM_STATE_STOPPED))
		}, []apiv1.RestartPolicy{always}},
		{"stopped by the user", func(h *harness) {
			h.ok(h.assign("web", 1))
			h.ok(h.report("web", 1, running))
			h.ok(stopVm("web"))
			h.ok(h.report("web", 1, apiv1.VmState_VM_STATE_STOPPED))
		}, nil},
		{"running", func(h *harness) {
			h.ok(h.assign("web", 1))
			h.ok(h.report("web", 1, running))
		}, nil},
	}
	for _, end := range ends {
		for _, policy := range []apiv1.RestartPolicy{unspecified, never, onFailure, always} {
			t.Run(end.name+"/"+policy.String(), func(t *testing.T) {
				h := newHarness(t)
				h.ok(registerNode(1, 8, 8192, nil))
				spec := vmSpec(1, 512)
				spec.RestartPolicy = policy
				h.ok(createVm("web", spec, true))
				end.end(h)
				want := slices.Contains(end.listed, policy)
				listed := func(s *state.State) bool {
					got := s.VmsToPlace()
					return len(got) == 1 && got[0].GetName() == "web"
				}
				if got := listed(h.s); got != want {
					t.Fatalf("VM %v listed to place: %v, want %v", h.vm("web"), got, want)
				}
				if len(h.s.VmsToPlace()) > 1 {
					t.Fatalf("VmsToPlace() = %v", vmNames(h.s.VmsToPlace()))
				}
				r, err := state.Restore(mustSnapshot(t, h.s))
				if err != nil {
					t.Fatal(err)
				}
				if got := listed(r); got != want {
					t.Fatalf("restored: VM listed to place: %v, want %v", got, want)
				}
				if want {
					// What is listed can be placed.
					h.ok(h.assign("web", 1))
					return
				}
				if v := h.vm("web"); v.GetState() == running {
					return
				}
				// A user's start makes it wait for a node after all.
				h.ok(startVm("web"))
				if !listed(h.s) || h.vm("web").GetState() != apiv1.VmState_VM_STATE_PENDING {
					t.Fatalf("after start: VM %v, VmsToPlace() = %v", h.vm("web"), vmNames(h.s.VmsToPlace()))
				}
				h.ok(h.assign("web", 1))
				if h.vm("web").GetRestarts() != 0 {
					t.Fatalf("a user's start counted as a restart: %v", h.vm("web"))
				}
			})
		}
	}
}

func TestTasksOnAndPendingTasks(t *testing.T) {
	h := newHarness(t)
	h.ok(registerNode(1, 64, 65536, nil))
	h.ok(registerNode(2, 64, 65536, nil))
	spec := taskSpec("make", 1, 256)
	running := apiv1.TaskStatus_TASK_STATUS_RUNNING
	finished := &apiv1.TaskResult{ExitCode: 0, StartedUnixNano: 10, FinishedUnixNano: 20}

	p1 := h.submit(spec)
	assigned := h.submit(spec)
	h.ok(assignTask(assigned, 1))
	run1 := h.submit(spec)
	h.ok(assignTask(run1, 1))
	h.ok(reportTask(run1, 1, 1, running, nil))
	cancelledRunning := h.submit(spec)
	h.ok(assignTask(cancelledRunning, 1))
	h.ok(reportTask(cancelledRunning, 1, 1, running, nil))
	h.ok(cancelTask(cancelledRunning)) // the node has yet to stop it
	cancelledEnded := h.submit(spec)
	h.ok(assignTask(cancelledEnded, 1))
	h.ok(reportTask(cancelledEnded, 1, 1, running, nil))
	h.ok(cancelTask(cancelledEnded))
	h.ok(reportTask(cancelledEnded, 1, 1, apiv1.TaskStatus_TASK_STATUS_FAILED, finished)) // and the node did
	cancelledAssigned := h.submit(spec)
	h.ok(assignTask(cancelledAssigned, 2))
	h.ok(cancelTask(cancelledAssigned)) // never started: its node has yet to hear
	p2 := h.submit(spec)
	cancelledPending := h.submit(spec)
	h.ok(cancelTask(cancelledPending))
	succeeded := h.submit(spec)
	h.ok(assignTask(succeeded, 1))
	h.ok(reportTask(succeeded, 1, 1, apiv1.TaskStatus_TASK_STATUS_SUCCEEDED, finished))
	failed := h.submit(spec)
	h.ok(assignTask(failed, 2))
	h.ok(reportTask(failed, 2, 1, apiv1.TaskStatus_TASK_STATUS_FAILED, finished))
	run2 := h.submit(spec)
	h.ok(assignTask(run2, 2))
	h.ok(reportTask(run2, 2, 1, running, nil))
	p3 := h.submit(spec)

	tests := []struct {
		name string
		got  []*apiv1.Task
		want []uint64
	}{
		{"PendingTasks()", h.s.PendingTasks(0), []uint64{p1, p2, p3}},
		{"TasksOn(1)", h.s.TasksOn(1), []uint64{assigned, run1, cancelledRunning}},
		{"TasksOn(2)", h.s.TasksOn(2), []uint64{cancelledAssigned, run2}},
		{"TasksOn(unknown node)", h.s.TasksOn(9), nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := taskIDs(tc.got); fmt.Sprint(got) != fmt.Sprint(tc.want) {
				t.Fatalf("%s = %v, want %v", tc.name, got, tc.want)
			}
			for _, tk := range tc.got {
				if !proto.Equal(tk, h.task(tk.GetId())) {
					t.Fatalf("%s: record %v differs from Task(%d)", tc.name, tk, tk.GetId())
				}
			}
		})
	}

	// Once the node reports the cancelled task ended, it is off the node.
	h.ok(reportTask(cancelledRunning, 1, 1, apiv1.TaskStatus_TASK_STATUS_SUCCEEDED, finished))
	if got := taskIDs(h.s.TasksOn(1)); fmt.Sprint(got) != fmt.Sprint([]uint64{assigned, run1}) {
		t.Fatalf("TasksOn(1) = %v after the cancelled task ended", got)
	}
	h.ok(assignTask(p2, 2))
	if got := taskIDs(h.s.PendingTasks(0)); fmt.Sprint(got) != fmt.Sprint([]uint64{p1, p3}) {
		t.Fatalf("PendingTasks() = %v after placing %d", got, p2)
	}
	if got := taskIDs(h.s.TasksOn(2)); fmt.Sprint(got) != fmt.Sprint([]uint64{cancelledAssigned, p2, run2}) {
		t.Fatalf("TasksOn(2) = %v after placing %d", got, p2)
	}
}

func TestCanPlace(t *testing.T) {
	h := newHarness(t)
	h.ok(registerNode(1, 4, 4096, nil)) // default, ubuntu-24.04; 100,000 MiB of disk; kvm
	h.ok(nodeWith(2, 8, 8192, image("alpine-3.20", 64)))
	for id := uint64(3); id <= 5; id++ {
		h.ok(registerNode(id, 8, 8192, nil))
	}
	h.leave([]uint64{1, 2, 3, 4, 5}, 5)
	h.ok(createVm("web", vmSpec(2, 1024), true))
	h.ok(h.assign("web", 1)) // node 1 has 2 vCPUs and 3072 MiB free
	h.s = restoreWith(t, h.s, func(snap *apiv1.StateSnapshot) {
		snap.Nodes[2].Status = apiv1.NodeStatus_NODE_STATUS_DOWN
		snap.Nodes[3].Drain = true
	})
	res := func(vcpus uint32, mem, disk uint64, features ...string) *apiv1.Resources {
		return &apiv1.Resources{Vcpus: vcpus, MemoryMib: mem, DiskMib: disk, Features: features}
	}
	tests := []struct {
		name  string
		node  uint64
		image string
		need  *apiv1.Resources
		code  apiv1.ErrorCode // 0: nil
	}{
		{"fits", 1, "ubuntu-24.04", res(1, 512, 0), 0},
		{"fills the free room exactly", 1, "default", res(2, 3072, 100000, "kvm"), 0},
		{"no image is the default", 1, "", res(1, 512, 0), 0},
		{"no image on a node without the default", 2, "", res(1, 512, 0), codePrecond},
		{"image the node does not offer", 2, "ubuntu-24.04", res(1, 512, 0), codePrecond},
		{"image the node offers", 2, "alpine-3.20", res(8, 8192, 0), 0},
		{"unknown node", 9, "default", res(1, 512, 0), codeNotFound},
		{"node 0", 0, "default", res(1, 512, 0), codeNotFound},
		{"down node", 3, "default", res(1, 512, 0), codePrecond},
		{"draining node", 4, "default", res(1, 512, 0), codePrecond},
		{"left node", 5, "default", res(1, 512, 0), codePrecond},
		{"more vCPUs than are free", 1, "default", res(3, 512, 0), codeExhausted},
		{"more memory than is free", 1, "default", res(1, 3073, 0), codeExhausted},
		{"more disk than the node has", 1, "default", res(1, 512, 100001), codeExhausted},
		{"a feature the node lacks", 1, "default", res(1, 512, 0, "gpu"), codePrecond},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			before := keyOf(t, h.s)
			err := h.s.CanPlace(tc.node, tc.image, tc.need)
			if tc.code == 0 {
				if err != nil { // an untyped nil, not a nil *state.Error
					t.Fatalf("CanPlace = %v, want nil", err)
				}
			} else {
				wantErr(t, err, tc.code, "node_id")
			}
			// Nothing reserved, or an empty reservation, is CanPlace.
			for _, reserved := range []*apiv1.Resources{nil, {}} {
				if d := sameErr(err, h.s.CanPlaceWith(tc.node, tc.image, tc.need, reserved)); d != "" {
					t.Fatalf("CanPlace and CanPlaceWith(reserved %v) differ: %s", reserved, d)
				}
			}
			if !before.equal(keyOf(t, h.s)) {
				t.Fatal("CanPlace changed the state")
			}
		})
	}

	// What a placer has reserved on a node counts as taken. Node 1 has 2
	// vCPUs, 3072 MiB and all its 100,000 MiB of disk free.
	withReserved := []struct {
		name     string
		node     uint64
		need     *apiv1.Resources
		reserved *apiv1.Resources
		code     apiv1.ErrorCode // 0: nil
	}{
		{"the reserved vCPUs and the need fill the node", 1, res(1, 512, 0), res(1, 0, 0), 0},
		{"reserved vCPUs push the need over", 1, res(2, 512, 0), res(1, 0, 0), codeExhausted},
		{"the reserved memory and the need fill the node", 1, res(1, 1024, 0), res(0, 2048, 0), 0},
		{"reserved memory pushes the need over", 1, res(1, 1025, 0), res(0, 2048, 0), codeExhausted},
		{"the reserved disk and the need fill the node", 1, res(1, 512, 50000), res(0, 0, 50000), 0},
		{"reserved disk pushes the need over", 1, res(1, 512, 50001), res(0, 0, 50000), codeExhausted},
		{"reserved disk does not matter to a need of none", 1, res(1, 512, 0), res(0, 0, 100000), 0},
		{"a reservation beyond the free room", 1, res(1, 64, 0), res(5, 0, 0), codeExhausted},
		{"all three reserved, the need fitting exactly", 1, res(1, 1024, 1), res(1, 2048, 99999), 0},
		{"a reservation on a draining node", 4, res(1, 512, 0), res(1, 0, 0), codePrecond},
		{"a reservation on a node without the image", 2, res(1, 512, 0), nil, codePrecond},
	}
	for _, tc := range withReserved {
		t.Run("reserved/"+tc.name, func(t *testing.T) {
			before := keyOf(t, h.s)
			err := h.s.CanPlaceWith(tc.node, "default", tc.need, tc.reserved)
			if tc.code == 0 {
				if err != nil {
					t.Fatalf("CanPlaceWith = %v, want nil", err)
				}
			} else {
				wantErr(t, err, tc.code, "node_id")
			}
			if !before.equal(keyOf(t, h.s)) {
				t.Fatal("CanPlaceWith changed the state")
			}
		})
	}
}

// canPlaceVmFixture builds the cluster of the CanPlaceVm tests:
//
//	nodes 1 zone=a; 2 zone=b; 3 zone=a, alpine only; 4 zone=a, its
//	ubuntu needing 1024 MiB; 5 zone=a rack=r1; 6 draining; 7 down; 8 left.
//	All 8 vCPUs and 8192 MiB.
//	VMs of anti-affinity group "web": web-1 running on node 1 (2 vCPUs,
//	1024 MiB), web-f failed on node 2, web-s stopping on node 5.
//	A task on node 1 (1 vCPU, 256 MiB): node 1 has 5 vCPUs and 6912 MiB
//	free.
//	Waiting to be placed (1 vCPU, 512 MiB but wide): web-new (group
//	"web"), db (group "db"), zoned-b (zone=b), racked (zone=a, rack=r1),
//	small, wide (4 vCPUs, 4096 MiB). Not wanted running: cold.
func canPlaceVmFixture(t *testing.T) *harness {
	t.Helper()
	h := newHarness(t)
	h.membership([]uint64{1, 2, 3, 4, 5, 6, 7, 8}, nil)
	zoned := func(id uint64, labels map[string]string, imgs ...*apiv1.ImageInfo) *apiv1.Command {
		c := registerNode(id, 8, 8192, labels)
		if imgs != nil {
			c.GetRegisterNode().Images = imgs
		}
		return c
	}
	zoneA := map[string]string{"zone": "a"}
	h.ok(zoned(1, zoneA))
	h.ok(zoned(2, map[string]string{"zone": "b"}))
	h.ok(zoned(3, zoneA, image("alpine-3.20", 64)))
	h.ok(zoned(4, zoneA, image("ubuntu-24.04", 1024)))
	h.ok(zoned(5, map[string]string{"zone": "a", "rack": "r1"}))
	for id := uint64(6); id <= 8; id++ {
		h.ok(zoned(id, zoneA))
	}
	h.membership([]uint64{1, 2, 3, 4, 5, 6, 7}, nil) // 8 leaves

	vm := func(name string, vcpus uint32, mem uint64, group string, constraints map[string]string) {
		spec := vmSpec(vcpus, mem)
		spec.AntiAffinityGroup = group
		spec.Constraints = constraints
		h.ok(createVm(name, spec, true))
	}
	vm("web-1", 2, 1024, "web", nil)
	h.ok(h.assign("web-1", 1))
	h.ok(h.report("web-1", 1, apiv1.VmState_VM_STATE_RUNNING))
	vm("web-f", 1, 512, "web", nil)
	h.ok(h.assign("web-f", 2))
	h.ok(h.report("web-f", 2, apiv1.VmState_VM_STATE_FAILED))
	vm("web-s", 1, 512, "web", nil)
	h.ok(h.assign("web-s", 5))
	h.ok(h.report("web-s", 5, apiv1.VmState_VM_STATE_RUNNING))
	h.ok(stopVm("web-s"))
	task := h.submit(taskSpec("make", 1, 256))
	h.ok(assignTask(task, 1))

	vm("web-new", 1, 512, "web", nil)
	vm("db", 1, 512, "db", nil)
	vm("zoned-b", 1, 512, "", map[string]string{"zone": "b"})
	vm("racked", 1, 512, "", map[string]string{"zone": "a", "rack": "r1"})
	vm("small", 1, 512, "", nil)
	vm("wide", 4, 4096, "", nil)
	h.ok(createVm("cold", vmSpec(1, 512), false))

	h.s = restoreWith(t, h.s, func(snap *apiv1.StateSnapshot) {
		for _, n := range snap.Nodes {
			switch n.Id {
			case 6:
				n.Drain = true
			case 7:
				n.Status = apiv1.NodeStatus_NODE_STATUS_DOWN
			}
		}
	})
	if got := vmNames(h.s.VmsToPlace()); strings.Join(got, ",") != "db,racked,small,web-f,web-new,wide,zoned-b" {
		t.Fatalf("fixture: VmsToPlace() = %v", got)
	}
	if got := h.s.Allocated(1); got.GetVcpus() != 3 || got.GetMemoryMib() != 1280 {
		t.Fatalf("fixture: node 1 allocated %v", got)
	}
	return h
}

func TestCanPlaceVm(t *testing.T) {
	h := canPlaceVmFixture(t)
	res := func(vcpus uint32, mem, disk uint64) *apiv1.Resources {
		return &apiv1.Resources{Vcpus: vcpus, MemoryMib: mem, DiskMib: disk}
	}
	tests := []struct {
		name     string
		vm       string
		node     uint64
		reserved *apiv1.Resources
		code     apiv1.ErrorCode // 0: nil
		field    string
	}{
		{"fits", "small", 1, nil, 0, ""},
		{"unknown VM", "nope", 1, nil, codeNotFound, "name"},
		{"unknown node", "small", 99, nil, codeNotFound, "node_id"},
		{"node 0", "small", 0, nil, codeNotFound, "node_id"},
		{"draining node", "small", 6, nil, codePrecond, "node_id"},
		{"down node", "small", 7, nil, codePrecond, "node_id"},
		{"left node", "small", 8, nil, codePrecond, "node_id"},

		// The image, and its minimum memory on that node.
		{"node without the image", "small", 3, nil, codePrecond, "node_id"},
		{"node whose image needs more memory", "small", 4, nil, codePrecond, "node_id"},

		// Label constraints.
		{"constraint met", "zoned-b", 2, nil, 0, ""},
		{"constraint not met", "zoned-b", 1, nil, codePrecond, "node_id"},
		{"both constraints met", "racked", 5, nil, 0, ""},
		{"one of two constraints met", "racked", 1, nil, codePrecond, "node_id"},
		{"constraints met but the image is missing", "racked", 3, nil, codePrecond, "node_id"},

		// Anti-affinity: only the VMs that hold the node count.
		{"node running a VM of the group", "web-new", 1, nil, codePrecond, "node_id"},
		{"node where a VM of the group is stopping", "web-new", 5, nil, codePrecond, "node_id"},
		{"node where a VM of the group failed", "web-new", 2, nil, 0, ""},
		{"node running a VM of the group: the failed one of the group", "web-f", 1, nil, codePrecond, "node_id"},
		{"the failed VM back on its own node", "web-f", 2, nil, 0, ""},
		{"node running a VM of another group", "db", 1, nil, 0, ""},

		// Capacity, with what a placer reserved: node 1 has 5 vCPUs and
		// 6912 MiB free.
		{"wide fits", "wide", 1, nil, 0, ""},
		{"wide fits with an empty reservation", "wide", 1, res(0, 0, 0), 0, ""},
		{"reserved vCPUs fill the node exactly", "wide", 1, res(1, 0, 0), 0, ""},
		{"reserved vCPUs push it over", "wide", 1, res(2, 0, 0), codeExhausted, "node_id"},
		{"reserved memory fills the node exactly", "wide", 1, res(0, 2816, 0), 0, ""},
		{"reserved memory pushes it over", "wide", 1, res(0, 2817, 0), codeExhausted, "node_id"},
		{"reserved vCPUs and memory fill the node exactly", "wide", 1, res(1, 2816, 0), 0, ""},
		{"reserved disk does not matter to a VM", "wide", 1, res(0, 0, 1<<30), 0, ""},
		{"a reservation does not excuse a constraint", "zoned-b", 1, res(0, 0, 0), codePrecond, "node_id"},
		{"reserved beyond the node", "small", 2, res(9, 0, 0), codeExhausted, "node_id"},

		// Not the VM's state or generation: those are the assignment's.
		{"a VM not wanted running", "cold", 1, nil, 0, ""},
		{"a running VM on another node", "web-1", 2, nil, 0, ""},
		{"a running VM on its own node is not its own rival", "web-1", 1, nil, 0, ""},
	}
	restored, err := state.Restore(mustSnapshot(t, h.s))
	if err != nil {
		t.Fatal(err)
	}
	waiting := map[string]bool{}
	for _, v := range h.s.VmsToPlace() {
		waiting[v.GetName()] = true
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			before := keyOf(t, h.s)
			err := h.s.CanPlaceVm(tc.node, tc.vm, tc.reserved)
			if tc.code == 0 {
				if err != nil { // an untyped nil, not a nil *state.Error
					t.Fatalf("CanPlaceVm(%d, %q, %v) = %v, want nil", tc.node, tc.vm, tc.reserved, err)
				}
			} else {
				wantErr(t, err, tc.code, tc.field)
			}
			if !before.equal(keyOf(t, h.s)) {
				t.Fatal("CanPlaceVm changed the state")
			}
			// A state restored from a snapshot files its VMs afresh and
			// answers the same.
			if d := sameErr(err, restored.CanPlaceVm(tc.node, tc.vm, tc.reserved)); d != "" {
				t.Fatalf("restored state answers otherwise: %s", d)
			}
			// For a VM waiting to be placed, with nothing reserved, it is
			// what the assignment would meet.
			if waiting[tc.vm] && tc.reserved == nil {
				if d := sameErr(err, h.s.Check(h.assign(tc.vm, tc.node))); d != "" {
					t.Fatalf("CanPlaceVm and Check(AssignVm) disagree: %s", d)
				}
			}
		})
	}
	// What CanPlaceVm ignores, the assignment does not.
	wantErr(t, h.s.Check(h.assign("cold", 1)), codePrecond, "name")
	wantErr(t, h.s.Check(h.assign("web-1", 2)), codePrecond, "name")
}

// agreeWithAssign checks that, for every VM waiting to be placed and every
// node, CanPlaceVm with nothing reserved refuses exactly what Check of an
// assignment at the VM's generation refuses, with the same error; and that
// for every other VM the assignment is refused for the VM's sake.
func agreeWithAssign(t *testing.T, h *harness) (accepted int) {
	t.Helper()
	waiting := map[string]bool{}
	for _, v := range h.s.VmsToPlace() {
		waiting[v.GetName()] = true
	}
	for _, v := range h.s.Vms(0) {
		for id := uint64(0); id <= 9; id++ {
			placeErr := h.s.CanPlaceVm(id, v.GetName(), nil)
			checkErr := h.s.Check(assignVm(v.GetName(), id, v.GetGeneration()))
			if !waiting[v.GetName()] {
				if v.GetDesiredState() != apiv1.VmDesiredState_VM_DESIRED_STATE_RUNNING || holds(v.GetState()) {
					wantErr(t, checkErr, codePrecond, "name")
				}
				continue
			}
			if d := sameErr(placeErr, checkErr); d != "" {
				t.Fatalf("VM %q on node %d: CanPlaceVm and Check(AssignVm) disagree: %s", v.GetName(), id, d)
			}
			if placeErr == nil {
				accepted++
			}
		}
	}
	return accepted
}

func TestCanPlaceVmAgreesWithAssign(t *testing.T) {
	h := canPlaceVmFixture(t)
	steps := []struct {
		name string
		do   func()
	}{
		{"as built", func() {}},
		{"web-1 fails: node 1 is free of the group", func() { h.ok(h.report("web-1", 1, apiv1.VmState_VM_STATE_FAILED)) }},
		{"web-new placed on node 1", func() { h.ok(h.assign("web-new", 1)) }},
		{"web-s stopped: node 5 is free of the group", func() { h.ok(h.report("web-s", 5, apiv1.VmState_VM_STATE_STOPPED)) }},
		{"web-f back on node 2", func() { h.ok(h.assign("web-f", 2)) }},
		{"wide placed on node 2", func() { h.ok(h.assign("wide", 2)) }},
		{"node 6 no longer draining, node 4 offering a smaller ubuntu", func() {
			h.s = restoreWith(t, h.s, func(snap *apiv1.StateSnapshot) {
				for _, n := range snap.Nodes {
					switch n.Id {
					case 6:
						n.Drain = false
					case 4:
						n.Images = []*apiv1.ImageInfo{image("ubuntu-24.04", 64)}
					}
				}
			})
		}},
		{"web-s started again", func() { h.ok(startVm("web-s")) }},
	}
	total := 0
	for _, st := range steps {
		st.do()
		n := agreeWithAssign(t, h)
		t.Logf("%s: %d placements possible", st.name, n)
		total += n
	}
	if total == 0 {
		t.Fatal("no placement was ever possible: the agreement says nothing")
	}
	// web-new now runs on node 1: web-s, waiting again, may not go there,
	// nor to node 2 where web-f is; web-1 (failed) may go nowhere the group
	// runs.
	wantErr(t, h.s.CanPlaceVm(1, "web-s", nil), codePrecond, "node_id")
	wantErr(t, h.s.CanPlaceVm(2, "web-s", nil), codePrecond, "node_id")
	if err := h.s.CanPlaceVm(5, "web-s", nil); err != nil {
		t.Fatalf("CanPlaceVm(5, web-s) = %v", err)
	}
}

// TestAntiAffinityFollowsWhatHoldsTheNode: a VM of the group keeps the
// node from the others while it holds resources there (scheduled,
// starting, running, stopping, being deleted) and no longer once it
// failed, stopped or is gone, through every way there.
func TestAntiAffinityFollowsWhatHoldsTheNode(t *testing.T) {
	h := newHarness(t)
	h.ok(registerNode(1, 8, 8192, nil))
	h.ok(registerNode(2, 8, 8192, nil))
	group := func(name string) {
		spec := vmSpec(1, 512)
		spec.AntiAffinityGroup = "g"
		spec.RestartPolicy = apiv1.RestartPolicy_RESTART_POLICY_ALWAYS
		h.ok(createVm(name, spec, true))
	}
	group("a")
	group("b")
	blocked := func(want bool) {
		t.Helper()
		err := h.s.CanPlaceVm(1, "b", nil)
		checkErr := h.s.Check(h.assign("b", 1))
		if d := sameErr(err, checkErr); d != "" {
			t.Fatalf("CanPlaceVm and Check disagree: %s", d)
		}
		r, rerr := state.Restore(mustSnapshot(t, h.s))
		if rerr != nil {
			t.Fatal(rerr)
		}
		if d := sameErr(err, r.CanPlaceVm(1, "b", nil)); d != "" {
			t.Fatalf("restored state answers otherwise: %s", d)
		}
		switch {
		case want:
			wantErr(t, err, codePrecond, "node_id")
		case err != nil:
			t.Fatalf("a: %v; CanPlaceVm(1, b) = %v, want nil", h.vm("a").GetState(), err)
		}
	}
	blocked(false) // a pending
	h.ok(h.assign("a", 1))
	blocked(true) // scheduled
	h.ok(h.report("a", 1, apiv1.VmState_VM_STATE_STARTING))
	blocked(true)
	h.ok(h.report("a", 1, apiv1.VmState_VM_STATE_RUNNING))
	blocked(true)
	h.ok(h.report("a", 1, apiv1.VmState_VM_STATE_FAILED))
	blocked(false) // failed: holds nothing, though it names node 1
	if h.vm("a").GetNodeId() != 1 {
		t.Fatalf("failed VM %v no longer names its node", h.vm("a"))
	}
	h.ok(h.assign("a", 1))
	blocked(true)
	h.ok(h.report("a", 1, apiv1.VmState_VM_STATE_RUNNING))
	h.ok(h.report("a", 1, apiv1.VmState_VM_STATE_STOPPED))
	blocked(false) // stopped on its own
	h.ok(h.assign("a", 1))
	h.ok(stopVm("a"))
	blocked(true) // stopping
	h.ok(startVm("a"))
	blocked(true) // stopping, wanted running
	h.ok(h.report("a", 1, apiv1.VmState_VM_STATE_STOPPED))
	blocked(false) // pending again
	h.ok(h.assign("a", 1))
	h.ok(h.report("a", 1, apiv1.VmState_VM_STATE_RUNNING))
	h.ok(deleteVm("a"))
	blocked(true) // being deleted: stopping
	h.ok(h.report("a", 1, apiv1.VmState_VM_STATE_STOPPED))
	blocked(false) // gone
	// Another node is never blocked by a VM on node 1.
	group("c")
	h.ok(h.assign("c", 1))
	if err := h.s.CanPlaceVm(2, "b", nil); err != nil {
		t.Fatalf("CanPlaceVm(2, b) = %v", err)
	}
	blocked(true)
}

func TestVmNeedsImageOfAndValidImageName(t *testing.T) {
	spec := &apiv1.VmSpec{Vcpus: 3, MemoryMib: 1536, Image: "x", KernelCmdline: "quiet", AntiAffinityGroup: "g"}
	if got, want := state.VmNeeds(spec), (&apiv1.Resources{Vcpus: 3, MemoryMib: 1536}); !proto.Equal(got, want) {
		t.Fatalf("VmNeeds = %v, want %v", got, want)
	}
	if got := state.VmNeeds(nil); got.GetVcpus() != 0 || got.GetMemoryMib() != 0 {
		t.Fatalf("VmNeeds(nil) = %v", got)
	}
	for _, tc := range []struct{ in, want string }{
		{"", state.DefaultImage},
		{"default", "default"},
		{"alpine-3.20", "alpine-3.20"},
	} {
		if got := state.ImageOf(tc.in); got != tc.want {
			t.Errorf("ImageOf(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
	for _, tc := range []struct {
		name string
		ok   bool
	}{
		{"default", true}, {"ubuntu-24.04", true}, {"a", true}, {"0", true}, {"a_b", true}, {"a-", true},
		{strings.Repeat("a", state.MaxNameLen), true},
		{"", false}, {"-a", false}, {".a", false}, {"_a", false}, {"A", false}, {"a/b", false},
		{"a b", false}, {"a:1", false}, {"é", false}, {strings.Repeat("a", state.MaxNameLen+1), false},
	} {
		if got := state.ValidImageName(tc.name); got != tc.ok {
			t.Errorf("ValidImageName(%q) = %v, want %v", tc.name, got, tc.ok)
		}
	}
	if !state.ValidImageName(state.DefaultImage) {
		t.Error("the default image's name is not a valid image name")
	}
}
