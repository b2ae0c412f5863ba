package sched_test

import (
	"fmt"
	"testing"

	"pgregory.net/rapid"

	apiv1 "github.com/blixard/blixard/api/v1"
	"github.com/blixard/blixard/internal/sched"
)

// TestAgreesWithState: on random small clusters, sched and the state
// machine agree on what fits. Within one pass, whatever node Place returns
// is one the state accepts given the pass's earlier commits as reserved
// resources (CanPlaceVm, CanPlaceWith); when Place refuses, the state
// refuses every node too (or sched saw a VM of the request's group
// committed on it earlier in the pass that may not share a node with it,
// which the state cannot see yet).
// Finally every assignment of the pass is applied, in order, and the state
// must accept each and stay within every node's limits.
func TestAgreesWithState(t *testing.T) {
	rapid.Check(t, func(rt *rapid.T) {
		w := newWorld(rt)
		features := []string{"gpu", "kvm"}
		drawFeatures := func(label string) []string {
			var fs []string
			for _, f := range features {
				if rapid.IntRange(0, 2).Draw(rt, label+"-"+f) == 0 {
					fs = append(fs, f)
				}
			}
			return fs
		}
		zones := []string{"a", "b"}

		nodes := rapid.IntRange(1, 6).Draw(rt, "nodes")
		for id := uint64(1); id <= uint64(nodes); id++ {
			n := nodeSpec{
				id:       id,
				vcpus:    uint32(rapid.IntRange(1, 16).Draw(rt, "vcpus")),
				memMiB:   uint64(rapid.IntRange(1, 32).Draw(rt, "mem")) * 256,
				diskMiB:  uint64(rapid.IntRange(0, 4).Draw(rt, "disk")) * 10000,
				features: drawFeatures("node-feature"),
				vcpuOver: rapid.SampledFrom([]float64{0, 1.5, 2}).Draw(rt, "vcpu-over"),
				memOver:  rapid.SampledFrom([]float64{0, 1.25}).Draw(rt, "mem-over"),
				images: []*apiv1.ImageInfo{
					{Name: "alpine", Digest: "sha256:a", MinMemoryMib: 128},
					{Name: "default", Digest: "sha256:d", MinMemoryMib: uint64(rapid.SampledFrom([]int{64, 512}).Draw(rt, "min-mem"))},
				},
			}
			if rapid.Bool().Draw(rt, "alpine-only") {
				n.images = n.images[:1]
			}
			if z := rapid.IntRange(0, len(zones)).Draw(rt, "zone"); z < len(zones) {
				n.labels = map[string]string{"zone": zones[z]}
			}
			w.node(n)
		}

		// Workloads; the state refuses to create those no node could ever
		// hold, and they are simply left out.
		vms := rapid.IntRange(0, 16).Draw(rt, "vms")
		for i := range vms {
			s := &apiv1.VmSpec{
				Vcpus:     uint32(rapid.IntRange(1, 8).Draw(rt, "vm-vcpus")),
				MemoryMib: uint64(rapid.IntRange(1, 32).Draw(rt, "vm-mem"))*128 - uint64(rapid.IntRange(0, 1).Draw(rt, "vm-mem-less")),
				Image:     rapid.SampledFrom([]string{"", "alpine"}).Draw(rt, "vm-image"),
				Features:  drawFeatures("vm-feature"),
				Placement: rapid.SampledFrom([]apiv1.PlacementStrategy{0, binpack, spread}).Draw(rt, "vm-strategy"),
			}
			if z := rapid.IntRange(0, 2*len(zones)).Draw(rt, "vm-zone"); z < len(zones) {
				s.Constraints = map[string]string{"zone": zones[z]}
			}
			if g := rapid.IntRange(0, 3).Draw(rt, "vm-group"); g < 2 {
				s.AntiAffinityGroup = fmt.Sprintf("g%d", g)
				s.AntiAffinitySoft = rapid.Bool().Draw(rt, "vm-soft")
			}
			name := fmt.Sprintf("vm-%02d", i)
			if w.try(&apiv1.Command{Op: &apiv1.Command_CreateVm{CreateVm: &apiv1.CreateVmCommand{Name: name, Spec: s, Start: true}}}) != nil {
				continue
			}
			// Some are placed already, wherever the state takes them.
			if rapid.IntRange(0, 2).Draw(rt, "vm-placed") == 0 {
				_ = w.try(assignVm(w.get(name), uint64(rapid.IntRange(1, nodes).Draw(rt, "vm-node"))))
			}
		}
		tasks := rapid.IntRange(0, 6).Draw(rt, "tasks")
		for range tasks {
			res := &apiv1.Resources{
				Vcpus:     uint32(rapid.IntRange(1, 4).Draw(rt, "task-vcpus")),
				MemoryMib: uint64(rapid.IntRange(1, 16).Draw(rt, "task-mem")) * 128,
				DiskMib:   uint64(rapid.IntRange(0, 3).Draw(rt, "task-disk")) * 7000,
				Features:  drawFeatures("task-feature"),
			}
			spec := &apiv1.TaskSpec{Command: "true", Resources: res, Image: rapid.SampledFrom([]string{"", "alpine"}).Draw(rt, "task-image")}
			if w.try(&apiv1.Command{Op: &apiv1.Command_SubmitTask{SubmitTask: &apiv1.SubmitTaskCommand{Spec: spec}}}) != nil {
				continue
			}
			id := w.idx // a task's id is the index of its submission
			if rapid.IntRange(0, 2).Draw(rt, "task-placed") == 0 {
				_ = w.try(&apiv1.Command{Op: &apiv1.Command_AssignTask{AssignTask: &apiv1.AssignTaskCommand{Id: id, NodeId: uint64(rapid.IntRange(1, nodes).Draw(rt, "task-node"))}}})
			}
		}

		// Node health, last (taking a node down or away evicts its work).
		for id := uint64(1); id <= uint64(nodes); id++ {
			switch rapid.IntRange(0, 11).Draw(rt, "health") {
			case 0:
				w.setStatus(id, apiv1.NodeStatus_NODE_STATUS_DOWN)
			case 1:
				w.setStatus(id, apiv1.NodeStatus_NODE_STATUS_DISCONNECTED)
			case 2:
				w.drain(id)
			case 3:
				w.leave(id)
			}
		}

		// One pass, as the placement controller makes it.
		c := sched.New(w.st, sched.Options{MaxCandidates: rapid.IntRange(0, 3).Draw(rt, "max-candidates")})
		reserved := map[uint64]*apiv1.Resources{}
		// passGroups[node][group]: VMs of group committed on node in this
		// pass, and how many of them are hard.
		type count struct{ all, hard int }
		passGroups := map[uint64]map[string]count{}
		// passConflict: the state cannot see yet that r may not join node:
		// a VM of r's group committed there in this pass, where one of the
		// two is hard.
		passConflict := func(r sched.Request, node uint64) bool {
			g := passGroups[node][r.Group]
			return r.Group != "" && ((!r.GroupSoft && g.all > 0) || g.hard > 0)
		}
		var commands []*apiv1.Command
		commit := func(node uint64, r sched.Request) {
			c.Commit(node, r)
			res := reserved[node]
			if res == nil {
				res = &apiv1.Resources{}
				reserved[node] = res
			}
			res.Vcpus += r.Need.GetVcpus()
			res.MemoryMib += r.Need.GetMemoryMib()
			res.DiskMib += r.Need.GetDiskMib()
			if r.Group != "" {
				if passGroups[node] == nil {
					passGroups[node] = map[string]count{}
				}
				g := passGroups[node][r.Group]
				g.all++
				if !r.GroupSoft {
					g.hard++
				}
				passGroups[node][r.Group] = g
			}
		}
		check := func(r sched.Request, canPlace func(node uint64) error) (uint64, bool) {
			node, err := c.Place(r)
			if err == nil {
				if err := canPlace(node); err != nil {
					rt.Fatalf("%s: sched chose node %d, the state refuses it: %v", r.Key, node, err)
				}
				if passConflict(r, node) {
					rt.Fatalf("%s: sched chose node %d, where this pass put a VM of group %q that may not share it", r.Key, node, r.Group)
				}
				commit(node, r)
				return node, true
			}
			reason := unplaceable(rt, err)
			for id := uint64(1); id <= uint64(nodes); id++ {
				if canPlace(id) == nil && !passConflict(r, id) {
					rt.Fatalf("%s: sched refuses (%s), but the state accepts node %d", r.Key, reason, id)
				}
			}
			return 0, false
		}
		for _, v := range w.st.VmsToPlace() {
			r := sched.VmRequest(v)
			if node, ok := check(r, func(node uint64) error { return w.st.CanPlaceVm(node, v.GetName(), reserved[node]) }); ok {
				commands = append(commands, assignVm(v, node))
			}
		}
		for _, tk := range w.st.PendingTasks(0) {
			r := sched.TaskRequest(tk)
			canPlace := func(node uint64) error {
				return w.st.CanPlaceWith(node, tk.GetSpec().GetImage(), tk.GetSpec().GetResources(), reserved[node])
			}
			if node, ok := check(r, canPlace); ok {
				commands = append(commands, assignTask(tk, node))
			}
		}

		for _, cmd := range commands {
			if err := w.try(cmd); err != nil {
				rt.Fatalf("the state refuses %v from the pass: %v", cmd, err)
			}
		}
		if err := w.st.CheckCommitted(); err != nil {
			rt.Fatal(err)
		}
	})
}
