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
		}, createVm("web", vmOf("nope", 99, 1), true), codeExists, "name", true},

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
			h.ok(assignVm("hog", 1, 0))
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
			h.ok(assignVm("hog", 1, 0))
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
			h.reject(assignVm("web", 2, 0), codePrecond, "node_id")
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
	tests := []struct {
		name  string
		cmd   *apiv1.Command
		code  apiv1.ErrorCode // 0: accepted
		field string
	}{
		{"VM on a node offering its image", assignVm("ubuntu", 1, 0), 0, ""},
		{"VM of no image on a node offering the default", assignVm("plain", 1, 0), 0, ""},
		{"VM on a node without its image", assignVm("ubuntu", 2, 0), codePrecond, "node_id"},
		{"VM of no image on a node without the default", assignVm("plain", 2, 0), codePrecond, "node_id"},
		{"VM without its image on a node too small as well", assignVm("ubuntu", 3, 0), codePrecond, "node_id"},
		{"VM with its image on a node too small", assignVm("alpine", 3, 0), codeExhausted, "node_id"},
		{"task of no image on a node offering the default", assignTask(7, 1), 0, ""},
		{"task of no image on a node without the default", assignTask(7, 2), codePrecond, "node_id"},
		{"task on a node offering its image", assignTask(8, 2), 0, ""},
		{"task on a node without its image", assignTask(8, 1), codePrecond, "node_id"},
		{"task without its image on a node too small as well", assignTask(9, 3), codePrecond, "node_id"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h := setup(t)
			if tc.code == 0 {
				h.ok(tc.cmd)
				return
			}
			h.refusedUnchanged(tc.cmd, tc.code, tc.field)
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
	h.reject(assignVm("web", 2, 0), codePrecond, "node_id")
	h.reject(assignTask(task, 2), codePrecond, "node_id")
	h.ok(assignVm("web", 1, 0))
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
		// place it from; it returns the VM's generation then.
		steps        func(h *harness) uint64
		from         apiv1.VmState
		wantRestarts uint32
	}{
		{"first placement", func(*harness) uint64 { return 0 }, pending, 0},
		{"after a failure", func(h *harness) uint64 {
			h.ok(assignVm("web", 1, 0))
			h.ok(reportVm("web", 1, 1, failed))
			return 1
		}, failed, 1},
		{"after a failure while starting", func(h *harness) uint64 {
			h.ok(assignVm("web", 1, 0))
			h.ok(reportVm("web", 1, 1, starting))
			h.ok(reportVm("web", 1, 1, failed))
			return 1
		}, failed, 1},
		{"after stopping on its own", func(h *harness) uint64 {
			h.ok(assignVm("web", 1, 0))
			h.ok(reportVm("web", 1, 1, running))
			h.ok(reportVm("web", 1, 1, stopped))
			return 1
		}, stopped, 1},
		{"after two failures", func(h *harness) uint64 {
			h.ok(assignVm("web", 1, 0))
			h.ok(reportVm("web", 1, 1, failed))
			h.ok(assignVm("web", 2, 1))
			h.ok(reportVm("web", 2, 2, failed))
			return 2
		}, failed, 2},
		{"after a failure and stopping on its own", func(h *harness) uint64 {
			h.ok(assignVm("web", 1, 0))
			h.ok(reportVm("web", 1, 1, failed))
			h.ok(assignVm("web", 1, 1))
			h.ok(reportVm("web", 1, 2, running))
			h.ok(reportVm("web", 1, 2, stopped))
			return 2
		}, stopped, 2},
		{"after being lost", func(h *harness) uint64 {
			h.ok(assignVm("web", 1, 0))
			h.ok(reportVm("web", 1, 1, running))
			h.s = restoreWith(h.t, h.s, func(snap *apiv1.StateSnapshot) {
				snap.Vms[0].State = lost
				snap.Vms[0].Events = append(snap.Vms[0].Events, &apiv1.VmEvent{Index: h.idx, State: lost, NodeId: 1, Generation: 1})
			})
			return 1
		}, lost, 1},
		{"a user's start after a failure is no restart", func(h *harness) uint64 {
			h.ok(assignVm("web", 1, 0))
			h.ok(reportVm("web", 1, 1, failed))
			h.ok(startVm("web"))
			return 1
		}, pending, 0},
		{"a user's stop and start is no restart", func(h *harness) uint64 {
			h.ok(assignVm("web", 1, 0))
			h.ok(reportVm("web", 1, 1, running))
			h.ok(stopVm("web"))
			h.ok(reportVm("web", 1, 1, stopped))
			h.ok(startVm("web"))
			return 1
		}, pending, 0},
		{"a start while stopping is no restart", func(h *harness) uint64 {
			h.ok(assignVm("web", 1, 0))
			h.ok(reportVm("web", 1, 1, running))
			h.ok(stopVm("web"))
			h.ok(startVm("web"))
			h.ok(reportVm("web", 1, 1, stopped))
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
			gen := tc.steps(h)
			before := h.vm("web")
			if before.GetState() != tc.from || before.GetGeneration() != gen {
				t.Fatalf("before placing: VM %v, want %v at generation %d", before, tc.from, gen)
			}
			if got := h.s.VmsToPlace(); len(got) != 1 || got[0].GetName() != "web" {
				t.Fatalf("VmsToPlace() = %v, want [web]", vmNames(got))
			}
			h.ok(assignVm("web", 2, gen))
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
	// stoppedOnItsOwn leaves "web" stopped at generation 1, still wanted
	// running, its node 1.
	stoppedOnItsOwn := func(t *testing.T) *harness {
		h := newHarness(t)
		h.ok(registerNode(1, 8, 8192, nil))
		h.ok(registerNode(2, 8, 8192, nil))
		h.ok(nodeWith(3, 8, 8192, image("alpine-3.20", 64)))
		spec := vmSpec(2, 1024)
		spec.RestartPolicy = apiv1.RestartPolicy_RESTART_POLICY_ALWAYS
		h.ok(createVm("web", spec, true))
		h.ok(assignVm("web", 1, 0))
		h.ok(reportVm("web", 1, 1, apiv1.VmState_VM_STATE_RUNNING))
		h.ok(reportVm("web", 1, 1, apiv1.VmState_VM_STATE_STOPPED))
		v := h.vm("web")
		if v.GetState() != apiv1.VmState_VM_STATE_STOPPED || v.GetDesiredState() != apiv1.VmDesiredState_VM_DESIRED_STATE_RUNNING {
			t.Fatalf("setup: VM %v", v)
		}
		return h
	}
	tests := []struct {
		name  string
		setup func(t *testing.T) *harness
		cmd   *apiv1.Command
		code  apiv1.ErrorCode // 0: accepted
		field string
	}{
		{"stopped on its own, back on its node", stoppedOnItsOwn, assignVm("web", 1, 1), 0, ""},
		{"stopped on its own, on another node", stoppedOnItsOwn, assignVm("web", 2, 1), 0, ""},
		{"stopped on its own, stale generation", stoppedOnItsOwn, assignVm("web", 2, 0), codePrecond, "generation"},
		{"stopped on its own, node without the image", stoppedOnItsOwn, assignVm("web", 3, 1), codePrecond, "node_id"},
		{"stopped on its own, then stopped by the user", func(t *testing.T) *harness {
			h := stoppedOnItsOwn(t)
			h.ok(stopVm("web"))
			return h
		}, assignVm("web", 1, 1), codePrecond, "name"},
		{"stopped by the user", func(t *testing.T) *harness {
			h := newHarness(t)
			h.ok(registerNode(1, 8, 8192, nil))
			h.ok(createVm("web", vmSpec(2, 1024), true))
			h.ok(assignVm("web", 1, 0))
			h.ok(stopVm("web"))
			h.ok(reportVm("web", 1, 1, apiv1.VmState_VM_STATE_STOPPED))
			return h
		}, assignVm("web", 1, 1), codePrecond, "name"},
		{"created stopped", func(t *testing.T) *harness {
			h := newHarness(t)
			h.ok(registerNode(1, 8, 8192, nil))
			h.ok(createVm("web", vmSpec(2, 1024), false))
			return h
		}, assignVm("web", 1, 0), codePrecond, "name"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h := tc.setup(t)
			if tc.code != 0 {
				h.refusedUnchanged(tc.cmd, tc.code, tc.field)
				return
			}
			h.ok(tc.cmd)
			v := h.vm("web")
			if v.GetState() != apiv1.VmState_VM_STATE_SCHEDULED || v.GetNodeId() != tc.cmd.GetAssignVm().GetNodeId() ||
				v.GetGeneration() != 2 || v.GetRestarts() != 1 {
				t.Fatalf("VM = %v", v)
			}
			// The old placement can no longer report on it.
			h.reject(reportVm("web", 1, 1, apiv1.VmState_VM_STATE_RUNNING), codePrecond, "generation")
			h.ok(reportVm("web", v.GetNodeId(), 2, apiv1.VmState_VM_STATE_RUNNING))
		})
	}
}

// ---- ReportVm -----------------------------------------------------------------

func TestReportVmRepeatChangesNothing(t *testing.T) {
	tests := []struct {
		name string
		// to takes "web", placed on node 1 at generation 1, to the state to
		// repeat; repeat is the report that says it again.
		to     []apiv1.VmState
		repeat *apiv1.Command
		// changes: the repeat is not a repeat after all (another reason).
		changes bool
	}{
		{"starting", []apiv1.VmState{apiv1.VmState_VM_STATE_STARTING},
			reportVm("web", 1, 1, apiv1.VmState_VM_STATE_STARTING), false},
		{"running", []apiv1.VmState{apiv1.VmState_VM_STATE_STARTING, apiv1.VmState_VM_STATE_RUNNING},
			reportVm("web", 1, 1, apiv1.VmState_VM_STATE_RUNNING), false},
		{"running with a console tail", []apiv1.VmState{apiv1.VmState_VM_STATE_RUNNING},
			reportWithTail("web", 1, 1, apiv1.VmState_VM_STATE_RUNNING, "boot\n"), false},
		{"running with another reason", []apiv1.VmState{apiv1.VmState_VM_STATE_RUNNING},
			func() *apiv1.Command {
				c := reportVm("web", 1, 1, apiv1.VmState_VM_STATE_RUNNING)
				c.GetReportVm().Reason = "healthy again"
				return c
			}(), true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t)
			h.ok(registerNode(1, 8, 8192, nil))
			h.ok(createVm("web", vmSpec(1, 512), true))
			h.ok(assignVm("web", 1, 0))
			for _, st := range tc.to {
				h.ok(reportVm("web", 1, 1, st))
			}
			before, beforeKey := h.vm("web"), keyOf(t, h.s)
			resp := h.ok(tc.repeat)
			if resp.GetKind() != nil || resp.GetError() != nil {
				t.Fatalf("response = %v", resp)
			}
			after := h.vm("web")
			if tc.changes {
				if after.GetUpdatedIndex() != h.idx || len(after.GetEvents()) != len(before.GetEvents())+1 ||
					after.GetReason() != tc.repeat.GetReportVm().GetReason() {
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
			h.ok(withID("again", proto.CloneOf(tc.repeat)))
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
				h.ok(assignVm("web", 1, 0))
				h.ok(reportVm("web", 1, 1, apiv1.VmState_VM_STATE_STARTING))
				way.stop(h)
				before, beforeKey := h.vm("web"), keyOf(t, h.s)
				if before.GetState() != apiv1.VmState_VM_STATE_STOPPING {
					t.Fatalf("setup: VM %v", before)
				}
				h.ok(reportWithTail("web", 1, 1, st, "late\n"))
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
				h.ok(reportVm("web", 1, 1, apiv1.VmState_VM_STATE_STOPPED))
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
	tests := []struct {
		name string
		// reports are made in turn at generation 1, or after a restart
		// (assignment) when restart is set before them.
		reports []*apiv1.Command
		want    string
	}{
		{"failed with a tail", []*apiv1.Command{reportWithTail("web", 1, 1, failed, tail)}, tail},
		{"failed with a tail of the greatest length", []*apiv1.Command{reportWithTail("web", 1, 1, failed, full)}, full},
		{"failed without a tail", []*apiv1.Command{reportWithTail("web", 1, 1, failed, "")}, ""},
		{"running with a tail keeps none", []*apiv1.Command{reportWithTail("web", 1, 1, running, tail)}, ""},
		{"stopped with a tail keeps none", []*apiv1.Command{reportWithTail("web", 1, 1, stopped, tail)}, ""},
		{"the tail outlives a restart and a run", []*apiv1.Command{
			reportWithTail("web", 1, 1, failed, tail),
			assignVm("web", 1, 1),
			reportWithTail("web", 1, 2, running, "all is well\n"),
		}, tail},
		{"the tail outlives stopping on its own", []*apiv1.Command{
			reportWithTail("web", 1, 1, failed, tail),
			assignVm("web", 1, 1),
			reportWithTail("web", 1, 2, stopped, "bye\n"),
		}, tail},
		{"a second failure replaces the tail", []*apiv1.Command{
			reportWithTail("web", 1, 1, failed, tail),
			assignVm("web", 1, 1),
			reportWithTail("web", 1, 2, failed, "oom\n"),
		}, "oom\n"},
		{"a second failure without a tail clears it", []*apiv1.Command{
			reportWithTail("web", 1, 1, failed, tail),
			assignVm("web", 1, 1),
			reportWithTail("web", 1, 2, failed, ""),
		}, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t)
			h.ok(registerNode(1, 8, 8192, nil))
			h.ok(createVm("web", vmSpec(1, 512), true))
			h.ok(assignVm("web", 1, 0))
			for _, c := range tc.reports {
				h.ok(c)
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
	h.ok(assignVm("web", 1, 0))
	h.ok(deleteVm("web"))
	h.ok(reportWithTail("web", 1, 1, failed, tail))
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
					wantErr(t, h.s.CheckJoin(cmd.GetRegisterNode()), tc.code, tc.field)
					continue
				}
				if err := h.s.CheckJoin(cmd.GetRegisterNode()); err != nil {
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
	h.reject(assignVm("web", 1, 0), codePrecond, "node_id")
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
	h := newHarness(t)
	h.ok(registerNode(1, 64, 65536, nil))
	h.ok(registerNode(2, 64, 65536, nil))
	h.ok(registerNode(3, 64, 65536, nil))
	run := func(name string, node uint64, states ...apiv1.VmState) {
		h.ok(createVm(name, vmSpec(1, 512), true))
		h.ok(assignVm(name, node, 0))
		for _, st := range states {
			h.ok(reportVm(name, node, 1, st))
		}
	}
	// Created in an order that is not their names'.
	run("zeta", 1, apiv1.VmState_VM_STATE_RUNNING)
	run("alpha", 1) // scheduled
	run("mid", 1, apiv1.VmState_VM_STATE_RUNNING)
	h.ok(stopVm("mid")) // stopping
	run("beta", 2, apiv1.VmState_VM_STATE_STARTING)
	run("gamma", 1, apiv1.VmState_VM_STATE_FAILED)  // to place again
	run("delta", 1, apiv1.VmState_VM_STATE_STOPPED) // stopped on its own: to place again
	h.ok(createVm("eps", vmSpec(1, 512), true))     // pending
	h.ok(createVm("cold", vmSpec(1, 512), false))   // stopped, not wanted
	run("halted", 1, apiv1.VmState_VM_STATE_RUNNING)
	h.ok(stopVm("halted"))
	h.ok(reportVm("halted", 1, 1, apiv1.VmState_VM_STATE_STOPPED)) // stopped by the user
	run("dying", 2, apiv1.VmState_VM_STATE_RUNNING)
	h.ok(deleteVm("dying")) // stopping, to be removed
	run("again", 2, apiv1.VmState_VM_STATE_RUNNING)
	h.ok(stopVm("again"))
	h.ok(startVm("again")) // stopping, wanted running
	run("given-up", 3, apiv1.VmState_VM_STATE_FAILED)
	h.ok(stopVm("given-up")) // failed, no longer wanted

	tests := []struct {
		name string
		got  []*apiv1.Vm
		want []string
	}{
		{"VmsOn(1)", h.s.VmsOn(1), []string{"alpha", "mid", "zeta"}},
		{"VmsOn(2)", h.s.VmsOn(2), []string{"again", "beta", "dying"}},
		{"VmsOn(3)", h.s.VmsOn(3), nil},
		{"VmsOn(unknown node)", h.s.VmsOn(9), nil},
		{"VmsToPlace()", h.s.VmsToPlace(), []string{"delta", "eps", "gamma"}},
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
	h.ok(assignVm("gamma", 3, 1))
	if got := vmNames(h.s.VmsOn(3)); strings.Join(got, ",") != "gamma" {
		t.Fatalf("VmsOn(3) = %v after placing gamma", got)
	}
	if got := vmNames(h.s.VmsToPlace()); strings.Join(got, ",") != "delta,eps" {
		t.Fatalf("VmsToPlace() = %v after placing gamma", got)
	}
	if got := vmNames(h.s.VmsOn(1)); strings.Join(got, ",") != "alpha,mid,zeta" {
		t.Fatalf("VmsOn(1) = %v after placing gamma", got)
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
	h.ok(assignVm("web", 1, 0)) // node 1 has 2 vCPUs and 3072 MiB free
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
			if !before.equal(keyOf(t, h.s)) {
				t.Fatal("CanPlace changed the state")
			}
		})
	}
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
