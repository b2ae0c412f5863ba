package sched_test

import (
	"fmt"
	"math"
	"math/rand/v2"
	"strings"
	"testing"
	"unicode/utf8"

	apiv1 "github.com/blixard/blixard/api/v1"
	"github.com/blixard/blixard/internal/sched"
	"github.com/blixard/blixard/internal/state"
)

const (
	binpack = apiv1.PlacementStrategy_PLACEMENT_STRATEGY_BINPACK
	spread  = apiv1.PlacementStrategy_PLACEMENT_STRATEGY_SPREAD
)

// TestFilters: each check makes node 1 infeasible while node 2 stays
// feasible. Place must pick node 2, the state must agree (it refuses the
// assignment to node 1 and accepts the one to node 2), and once node 2 is
// knocked out too, the reason must name node 1's failure.
func TestFilters(t *testing.T) {
	type workload struct {
		req    sched.Request
		assign func(node uint64) *apiv1.Command
	}
	vmOf := func(w *world, spec *apiv1.VmSpec) workload {
		v := w.vm("web", spec)
		return workload{sched.VmRequest(v), func(node uint64) *apiv1.Command { return assignVm(v, node) }}
	}
	tests := []struct {
		name string
		// node1 is the bad node; node 2 is always 8 vCPUs, 16 GiB, 100 GB
		// of disk, feature kvm, label zone=a, the default image.
		node1 nodeSpec
		// after runs once both nodes are registered.
		after func(w *world)
		work  func(w *world) workload
		// knockDown knocks node 2 out by SetNodeStatus(DOWN) rather than by
		// draining it.
		knockDown bool
		want      string
	}{
		{name: "down", after: func(w *world) { w.setStatus(1, apiv1.NodeStatus_NODE_STATUS_DOWN) },
			want: "1 is down"},
		{name: "disconnected", after: func(w *world) { w.setStatus(1, apiv1.NodeStatus_NODE_STATUS_DISCONNECTED) },
			want: "1 is disconnected"},
		{name: "draining", after: func(w *world) { w.drain(1) }, knockDown: true,
			want: "1 is draining"},
		{name: "left", after: func(w *world) { w.leave(1) },
			want: "1 has left"},
		{name: "no image", node1: nodeSpec{images: []*apiv1.ImageInfo{{Name: "alpine", Digest: "sha256:a", MinMemoryMib: 64}}},
			want: `1 does not offer image "default"`},
		{name: "image minimum memory", node1: nodeSpec{images: []*apiv1.ImageInfo{{Name: "default", Digest: "sha256:y", MinMemoryMib: 1024}}},
			work: func(w *world) workload { return vmOf(w, vmSpec(1, 512)) },
			want: `1 has image "default" needing more than 512 MiB`},
		{name: "label mismatch", node1: nodeSpec{labels: map[string]string{"zone": "b"}},
			work: func(w *world) workload {
				s := vmSpec(1, 512)
				s.Constraints = map[string]string{"zone": "a"}
				return vmOf(w, s)
			},
			want: "1 does not carry zone=a"},
		{name: "label missing", node1: nodeSpec{labels: map[string]string{"rack": "a"}},
			work: func(w *world) workload {
				s := vmSpec(1, 512)
				s.Constraints = map[string]string{"zone": "a"}
				return vmOf(w, s)
			},
			want: "1 does not carry zone=a"},
		{name: "hard anti-affinity group",
			after: func(w *world) {
				s := vmSpec(1, 512)
				s.AntiAffinityGroup = "db"
				w.vm("db-0", s)
				w.assign("db-0", 1)
			},
			work: func(w *world) workload {
				s := vmSpec(1, 512)
				s.AntiAffinityGroup = "db"
				return vmOf(w, s)
			},
			want: `1 already runs a VM of group "db"`},
		{name: "vCPUs", node1: nodeSpec{vcpus: 2},
			work: func(w *world) workload { return vmOf(w, vmSpec(4, 512)) },
			want: "1 has too few vCPUs free"},
		{name: "vCPUs taken by a running VM",
			after: func(w *world) {
				w.vm("big", vmSpec(7, 512))
				w.assign("big", 1)
			},
			work: func(w *world) workload { return vmOf(w, vmSpec(2, 512)) },
			want: "1 has too few vCPUs free"},
		{name: "memory", node1: nodeSpec{memMiB: 1024},
			work: func(w *world) workload { return vmOf(w, vmSpec(1, 2048)) },
			want: "1 has too little memory free"},
		{name: "memory taken by a task",
			after: func(w *world) { w.ok(assignTask(w.task(&apiv1.Resources{Vcpus: 1, MemoryMib: 15 * 1024}), 1)) },
			work:  func(w *world) workload { return vmOf(w, vmSpec(1, 2048)) },
			want:  "1 has too little memory free"},
		{name: "disk", node1: nodeSpec{diskMiB: 1000},
			work: func(w *world) workload {
				tk := w.task(&apiv1.Resources{Vcpus: 1, MemoryMib: 512, DiskMib: 2000})
				return workload{sched.TaskRequest(tk), func(node uint64) *apiv1.Command { return assignTask(tk, node) }}
			},
			want: "1 has too little disk free"},
		{name: "VM feature", node1: nodeSpec{features: []string{}},
			work: func(w *world) workload {
				s := vmSpec(1, 512)
				s.Features = []string{"kvm"}
				return vmOf(w, s)
			},
			want: "1 lacks feature kvm"},
		{name: "task feature", node1: nodeSpec{features: []string{"gpu"}},
			work: func(w *world) workload {
				tk := w.task(&apiv1.Resources{Vcpus: 1, MemoryMib: 512, Features: []string{"kvm"}})
				return workload{sched.TaskRequest(tk), func(node uint64) *apiv1.Command { return assignTask(tk, node) }}
			},
			want: "1 lacks feature kvm"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			w := newWorld(t)
			n1 := tc.node1
			n1.id = 1
			if n1.vcpus == 0 {
				n1.vcpus = 8
			}
			if n1.memMiB == 0 {
				n1.memMiB = 16384
			}
			if n1.diskMiB == 0 {
				n1.diskMiB = 100000
			}
			if n1.features == nil {
				n1.features = []string{"kvm"}
			}
			if n1.labels == nil {
				n1.labels = map[string]string{"zone": "a"}
			}
			w.node(n1)
			w.node(nodeSpec{id: 2, vcpus: 8, memMiB: 16384, diskMiB: 100000, features: []string{"kvm"}, labels: map[string]string{"zone": "a"}})
			if tc.after != nil {
				tc.after(w)
			}
			work := tc.work
			if work == nil {
				work = func(w *world) workload { return vmOf(w, vmSpec(1, 512)) }
			}
			wl := work(w)

			c := sched.New(w.st, sched.Options{})
			if c.Nodes() != 2 {
				t.Fatalf("Nodes() = %d, want 2", c.Nodes())
			}
			got, err := c.Place(wl.req)
			if err != nil || got != 2 {
				t.Fatalf("Place = %d, %v; want node 2", got, err)
			}
			if err := w.st.Check(wl.assign(1)); err == nil {
				t.Fatalf("the state accepts the assignment to node 1, which sched refuses")
			}
			if err := w.st.Check(wl.assign(2)); err != nil {
				t.Fatalf("the state refuses the assignment to node 2 that sched chose: %v", err)
			}

			other := "1 is draining"
			if tc.knockDown {
				w.setStatus(2, apiv1.NodeStatus_NODE_STATUS_DOWN)
				other = "1 is down"
			} else {
				w.drain(2)
			}
			_, err = sched.New(w.st, sched.Options{}).Place(wl.req)
			// The first count names the noun: "1 node is down, 1 is draining".
			reason := strings.Replace(unplaceable(t, err), ": 1 node ", ": 1 ", 1)
			if !strings.HasPrefix(reason, "no node fits ") || !strings.Contains(reason, tc.want) || !strings.Contains(reason, other) {
				t.Errorf("reason = %q, want it to start with %q and name %q and %q", reason, "no node fits ", tc.want, other)
			}
		})
	}
}

// TestReasons pins the wording of Unplaceable reasons.
func TestReasons(t *testing.T) {
	req := func(vcpus uint32, memMiB uint64) sched.Request {
		return sched.Request{Key: "vm/x", Vm: "x", Need: &apiv1.Resources{Vcpus: vcpus, MemoryMib: memMiB}}
	}
	tests := []struct {
		name  string
		build func(w *world)
		req   sched.Request
		want  string
	}{
		{"no nodes", func(*world) {}, req(1, 512), "no nodes"},
		{"mixed, most common first, ties in the order of the checks", func(w *world) {
			w.nodes(4, 4, 4, 4, 4) // 8 GiB each
			w.drain(4)
			w.setStatus(5, apiv1.NodeStatus_NODE_STATUS_DOWN)
		}, req(1, 10*1024), "no node fits 1 vCPU and 10 GiB: 3 nodes have too little memory free, 1 is down, 1 is draining"},
		{"one node of each", func(w *world) {
			w.nodes(4, 4)
			w.drain(1)
		}, req(1, 10*1024), "no node fits 1 vCPU and 10 GiB: 1 node is draining, 1 has too little memory free"},
		{"memory everywhere, in GiB", func(w *world) { w.nodes(4, 4) }, req(1, 10*1024), "no node has 10 GiB of memory free"},
		{"memory everywhere, in MiB", func(w *world) {
			w.node(nodeSpec{id: 1, vcpus: 4, memMiB: 1024})
		}, req(1, 1536), "no node has 1536 MiB of memory free"},
		{"vCPUs everywhere", func(w *world) { w.nodes(4, 2) }, req(8, 512), "no node has 8 vCPUs free"},
		{"the only node is down", func(w *world) {
			w.nodes(4)
			w.setStatus(1, apiv1.NodeStatus_NODE_STATUS_DOWN)
		}, req(1, 512), "the only node is down"},
		{"all draining", func(w *world) {
			w.nodes(4, 4)
			w.drain(1)
			w.drain(2)
		}, req(1, 512), "all 2 nodes are draining"},
		{"image offered nowhere", func(w *world) { w.nodes(4) },
			sched.Request{Key: "vm/x", Image: "alpine", Need: &apiv1.Resources{Vcpus: 1, MemoryMib: 512}},
			`no node offers image "alpine"`},
		{"image minimum everywhere", func(w *world) { w.nodes(4) }, req(1, 32), `image "default" needs more than 32 MiB on every node`},
		{"constraints everywhere", func(w *world) { w.nodes(4) },
			sched.Request{Key: "vm/x", Need: &apiv1.Resources{Vcpus: 1, MemoryMib: 512}, Constraints: map[string]string{"zone": "b", "disk": "ssd"}},
			"no node carries all of disk=ssd,zone=b"},
		{"feature everywhere", func(w *world) { w.nodes(4) },
			sched.Request{Key: "vm/x", Need: &apiv1.Resources{Vcpus: 1, MemoryMib: 512, Features: []string{"gpu"}}},
			"no node has feature gpu"},
		{"disk everywhere", func(w *world) { w.nodes(4) },
			sched.Request{Key: "task/1", Need: &apiv1.Resources{Vcpus: 1, MemoryMib: 512, DiskMib: 200 * 1024}},
			"no node has 200 GiB of disk free"},
		{"disk in the mixed form", func(w *world) {
			w.nodes(4, 4)
			w.drain(2)
		}, sched.Request{Key: "task/1", Need: &apiv1.Resources{Vcpus: 2, MemoryMib: 512, DiskMib: 200 * 1024}},
			"no node fits 2 vCPUs, 512 MiB and 200 GiB of disk: 1 node is draining, 1 has too little disk free"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			w := newWorld(t)
			tc.build(w)
			_, err := sched.New(w.st, sched.Options{}).Place(tc.req)
			if got := unplaceable(t, err); got != tc.want {
				t.Errorf("reason = %q\n          want %q", got, tc.want)
			}
		})
	}

	t.Run("bounded", func(t *testing.T) {
		w := newWorld(t)
		w.nodes(4, 4)
		w.drain(2)
		r := req(1, 512)
		r.Constraints = map[string]string{}
		for i := range 10 {
			r.Constraints[fmt.Sprintf("key-%d", i)] = strings.Repeat("é", 40)
		}
		_, err := sched.New(w.st, sched.Options{}).Place(r)
		got := unplaceable(t, err)
		if len(got) > sched.MaxReasonLen || !strings.HasSuffix(got, "...") || !strings.HasPrefix(got, "no node fits 1 vCPU and 512 MiB: 1 node is draining, 1 does not carry all of key-0=") {
			t.Errorf("reason = %q (%d bytes), want it cut to at most %d bytes and marked", got, len(got), sched.MaxReasonLen)
		}
		if !utf8.ValidString(got) {
			t.Errorf("reason %q was cut inside a character", got)
		}
	})
}

// TestOvercommit: a node of 4 vCPUs with vcpu_overcommit 2.0 takes eight
// one-vCPU VMs and not a ninth, and the state accepts all eight.
func TestOvercommit(t *testing.T) {
	w := newWorld(t)
	w.node(nodeSpec{id: 1, vcpus: 4, memMiB: 16384, vcpuOver: 2})
	var vms []*apiv1.Vm
	for i := range 9 {
		vms = append(vms, w.vm(fmt.Sprintf("vm-%d", i), vmSpec(1, 512)))
	}
	c := sched.New(w.st, sched.Options{})
	for i, v := range vms {
		node, err := c.Place(sched.VmRequest(v))
		if i < 8 {
			if err != nil || node != 1 {
				t.Fatalf("VM %d: Place = %d, %v; want node 1", i, node, err)
			}
			c.Commit(node, sched.VmRequest(v))
			continue
		}
		if got := unplaceable(t, err); got != "no node has 1 vCPU free" {
			t.Errorf("ninth VM: reason = %q", got)
		}
	}
	for _, v := range vms[:8] {
		w.ok(assignVm(v, 1))
	}
	if err := w.st.Check(assignVm(vms[8], 1)); err == nil {
		t.Error("the state accepts a ninth VM on a node of 4 vCPUs × 2.0")
	}
	if err := w.st.CheckCommitted(); err != nil {
		t.Error(err)
	}
	if used := w.st.Allocated(1).GetVcpus(); used != 8 {
		t.Errorf("node 1 holds %d vCPUs, want 8", used)
	}
}

// TestHundredVms places 100 VMs of 1 vCPU and 1 GiB onto five unequal nodes
// (ids not in the order of their sizes), then applies every assignment to the
// state, which must accept them all and stay within every node's limits.
func TestHundredVms(t *testing.T) {
	// Node id → vCPUs; memory is 2 GiB per vCPU. 124 vCPUs in all.
	sizes := []uint32{32, 4, 64, 8, 16}
	build := func(t *testing.T) (*world, []*apiv1.Vm) {
		w := newWorld(t)
		w.nodes(sizes...)
		var vms []*apiv1.Vm
		for i := range 100 {
			vms = append(vms, w.vm(fmt.Sprintf("vm-%03d", i), vmSpec(1, 1024)))
		}
		return w, vms
	}
	place := func(t *testing.T, w *world, vms []*apiv1.Vm, strategy apiv1.PlacementStrategy, opts sched.Options) []uint64 {
		c := sched.New(w.st, opts)
		nodes := make([]uint64, len(vms))
		for i, v := range vms {
			r := sched.VmRequest(v)
			r.Strategy = strategy
			node, err := c.Place(r)
			if err != nil {
				t.Fatalf("VM %d: %v", i, err)
			}
			c.Commit(node, r)
			nodes[i] = node
		}
		return nodes
	}
	applyAll := func(t *testing.T, w *world, vms []*apiv1.Vm, nodes []uint64) map[uint64]int {
		count := map[uint64]int{}
		for i, v := range vms {
			if err := w.try(assignVm(v, nodes[i])); err != nil {
				t.Fatalf("the state refuses VM %d on node %d: %v", i, nodes[i], err)
			}
			count[nodes[i]]++
		}
		if err := w.st.CheckCommitted(); err != nil {
			t.Fatal(err)
		}
		for id := uint64(1); id <= uint64(len(sizes)); id++ {
			n, _ := w.st.Node(id)
			lim, used := state.NodeLimits(n), w.st.Allocated(id)
			if uint64(used.GetVcpus()) > lim.Vcpus || used.GetMemoryMib() > lim.MemoryMiB {
				t.Errorf("node %d holds %v, over its limits %+v", id, used, lim)
			}
			if got := int(used.GetVcpus()); got != count[id] {
				t.Errorf("node %d holds %d vCPUs, want the %d VMs placed there", id, got, count[id])
			}
		}
		return count
	}

	t.Run("binpack fills the smallest node first, one at a time", func(t *testing.T) {
		w, vms := build(t)
		nodes := place(t, w, vms, binpack, sched.Options{})
		// The order of the node sizes: 4 (id 2), 8 (id 4), 16 (id 5), 32
		// (id 1), then the remaining 40 on the 64 (id 3).
		var want []uint64
		for _, s := range []struct {
			id uint64
			n  int
		}{{2, 4}, {4, 8}, {5, 16}, {1, 32}, {3, 40}} {
			for range s.n {
				want = append(want, s.id)
			}
		}
		if fmt.Sprint(nodes) != fmt.Sprint(want) {
			t.Errorf("placements = %v\nwant         %v", nodes, want)
		}
		applyAll(t, w, vms, nodes)
	})

	t.Run("binpack uses fewer nodes than spread for a few VMs", func(t *testing.T) {
		w, vms := build(t)
		used := func(nodes []uint64) int {
			set := map[uint64]bool{}
			for _, n := range nodes {
				set[n] = true
			}
			return len(set)
		}
		b := place(t, w, vms[:12], binpack, sched.Options{})
		s := place(t, w, vms[:12], spread, sched.Options{})
		// Binpack fills the 4- and 8-vCPU nodes. Spread goes by the
		// fraction each VM would bring a node to: the 64-, 32- and 16-vCPU
		// nodes take the 12 VMs before any would make the 8-vCPU node an
		// eighth full.
		if used(b) != 2 || used(s) != 3 {
			t.Errorf("12 VMs: binpack uses %d nodes (want 2), spread %d (want 3)", used(b), used(s))
		}
	})

	t.Run("spread evens out utilisation", func(t *testing.T) {
		w, vms := build(t)
		nodes := place(t, w, vms, spread, sched.Options{})
		count := applyAll(t, w, vms, nodes)
		lo, hi := math.Inf(1), math.Inf(-1)
		for i, size := range sizes {
			f := float64(count[uint64(i+1)]) / float64(size)
			lo, hi = min(lo, f), max(hi, f)
		}
		// One VM is a quarter of the smallest node: no finer evening out
		// is possible.
		if lo == 0 || hi-lo > 0.25 {
			t.Errorf("utilisation from %.3f to %.3f, want every node used and within 0.25: %v", lo, hi, count)
		}
	})

	t.Run("spread with the default bound on candidates", func(t *testing.T) {
		// Five nodes are fewer than DefaultMaxCandidates: the same as a
		// full scan.
		w, vms := build(t)
		full := place(t, w, vms, spread, sched.Options{})
		bounded := place(t, w, vms, spread, sched.Options{MaxCandidates: sched.DefaultMaxCandidates})
		if fmt.Sprint(full) != fmt.Sprint(bounded) {
			t.Errorf("bounded %v\nfull    %v", bounded, full)
		}
	})
}

// TestAntiAffinity: a soft group spreads its VMs over the nodes even when
// binpacking; a hard group puts at most one on each node and explains when
// every node has one.
func TestAntiAffinity(t *testing.T) {
	grouped := func(w *world, name, group string, soft bool) *apiv1.Vm {
		s := vmSpec(1, 512)
		s.AntiAffinityGroup, s.AntiAffinitySoft = group, soft
		return w.vm(name, s)
	}

	t.Run("soft", func(t *testing.T) {
		w := newWorld(t)
		w.nodes(8, 8, 8)
		// Node 1 already runs one of the group, and is the fullest.
		grouped(w, "web-old", "web", true)
		w.assign("web-old", 1)
		w.vm("filler", vmSpec(2, 512))
		w.assign("filler", 1)
		var vms []*apiv1.Vm
		for i := range 5 {
			vms = append(vms, grouped(w, fmt.Sprintf("web-%d", i), "web", true))
		}
		var reqs []sched.Request
		for _, v := range vms {
			reqs = append(reqs, sched.VmRequest(v))
		}
		got := placeAll(sched.New(w.st, sched.Options{}), reqs)
		// Nodes 2 and 3 first (one each, binpack breaking the tie by id),
		// then one more each, node 1 last though it is the fullest.
		want := []placement{{node: 2}, {node: 3}, {node: 1}, {node: 2}, {node: 3}}
		if fmt.Sprint(got) != fmt.Sprint(want) {
			t.Fatalf("placements = %v, want %v", got, want)
		}
		for i, v := range vms {
			w.ok(assignVm(v, got[i].node))
		}
		if err := w.st.CheckCommitted(); err != nil {
			t.Error(err)
		}
	})

	t.Run("soft never joins a hard one", func(t *testing.T) {
		w := newWorld(t)
		w.nodes(8, 8)
		grouped(w, "web-hard", "web", false)
		w.assign("web-hard", 1) // node 1 is the fuller: binpack's choice but for the group
		soft := grouped(w, "web-soft", "web", true)
		node, err := sched.New(w.st, sched.Options{}).Place(sched.VmRequest(soft))
		if err != nil || node != 2 {
			t.Fatalf("Place = %d, %v; want node 2", node, err)
		}
		if err := w.st.Check(assignVm(soft, 1)); err == nil {
			t.Error("the state accepts a soft VM next to a hard one of its group")
		}
		w.drain(2)
		_, err = sched.New(w.st, sched.Options{}).Place(sched.VmRequest(soft))
		want := `no node fits 1 vCPU and 512 MiB: 1 node is draining, 1 already runs a VM of group "web" with hard anti-affinity`
		if got := unplaceable(t, err); got != want {
			t.Errorf("reason = %q\n          want %q", got, want)
		}
	})

	t.Run("hard", func(t *testing.T) {
		w := newWorld(t)
		w.nodes(8, 8, 8)
		var vms []*apiv1.Vm
		var reqs []sched.Request
		for i := range 4 {
			v := grouped(w, fmt.Sprintf("db-%d", i), "db", false)
			vms = append(vms, v)
			reqs = append(reqs, sched.VmRequest(v))
		}
		got := placeAll(sched.New(w.st, sched.Options{}), reqs)
		want := []placement{{node: 1}, {node: 2}, {node: 3}, {err: `every node already runs a VM of anti-affinity group "db"`}}
		if fmt.Sprint(got) != fmt.Sprint(want) {
			t.Fatalf("placements = %v, want %v", got, want)
		}
		for i, v := range vms[:3] {
			w.ok(assignVm(v, got[i].node))
		}
		for id := uint64(1); id <= 3; id++ {
			if err := w.st.Check(assignVm(vms[3], id)); err == nil {
				t.Errorf("the state accepts a second VM of group db on node %d", id)
			}
		}
		// A new pass reads the group from the state (VmsOn).
		_, err := sched.New(w.st, sched.Options{}).Place(reqs[3])
		if got := unplaceable(t, err); got != want[3].err {
			t.Errorf("new pass: reason = %q, want %q", got, want[3].err)
		}
	})
}

// randomWorld is a cluster of nodes of assorted sizes, some VMs already
// placed on them, and more VMs waiting, all drawn from seed.
func randomWorld(t tb, seed uint64, nodes, placed, waiting int) *world {
	rng := rand.New(rand.NewPCG(seed, 0))
	w := newWorld(t)
	for id := 1; id <= nodes; id++ {
		vcpus := uint32(4 << rng.IntN(4))
		w.node(nodeSpec{id: uint64(id), vcpus: vcpus, memMiB: uint64(vcpus) * 1024 * uint64(1+rng.IntN(4)),
			diskMiB: 100000, features: []string{"kvm"}, labels: map[string]string{"zone": string(rune('a' + rng.IntN(3)))}})
	}
	for i := range placed + waiting {
		s := vmSpec(uint32(1+rng.IntN(4)), uint64(512*(1+rng.IntN(8))))
		if rng.IntN(4) == 0 {
			s.AntiAffinityGroup, s.AntiAffinitySoft = fmt.Sprintf("g%d", rng.IntN(3)), rng.IntN(2) == 0
		}
		if rng.IntN(2) == 0 {
			s.Placement = spread
		}
		name := fmt.Sprintf("vm-%04d", i)
		v := w.vm(name, s)
		if i < placed {
			// Wherever the state takes it, if anywhere.
			for range 3 {
				if w.try(assignVm(v, uint64(1+rng.IntN(nodes)))) == nil {
					break
				}
			}
		}
	}
	return w
}

func requestsToPlace(st *state.State) []sched.Request {
	var reqs []sched.Request
	for _, v := range st.VmsToPlace() {
		reqs = append(reqs, sched.VmRequest(v))
	}
	return reqs
}

// TestDeterministic: two Clusters built from the same state, or from the
// state passed through a snapshot, give the same answers.
func TestDeterministic(t *testing.T) {
	for _, maxCandidates := range []int{0, 1, 4} {
		t.Run(fmt.Sprintf("MaxCandidates=%d", maxCandidates), func(t *testing.T) {
			w := randomWorld(t, 7, 30, 40, 200)
			reqs := requestsToPlace(w.st)
			if len(reqs) < 150 {
				t.Fatalf("only %d VMs wait", len(reqs))
			}
			opts := sched.Options{MaxCandidates: maxCandidates}
			a := placeAll(sched.New(w.st, opts), reqs)
			b := placeAll(sched.New(w.st, opts), reqs)
			snap, err := w.st.Snapshot()
			if err != nil {
				t.Fatal(err)
			}
			restored, err := state.Restore(snap)
			if err != nil {
				t.Fatal(err)
			}
			c := placeAll(sched.New(restored, opts), requestsToPlace(restored))
			if fmt.Sprint(a) != fmt.Sprint(b) || fmt.Sprint(a) != fmt.Sprint(c) {
				t.Fatalf("answers differ:\n%v\n%v\n%v", a, b, c)
			}
			placed := 0
			for _, p := range a {
				if p.err == "" {
					placed++
				}
			}
			if placed == 0 || placed == len(a) {
				t.Errorf("%d of %d placed: want a mix of placed and refused for the test to mean something", placed, len(a))
			}
		})
	}
}

// TestMaxCandidates: a bounded scan starts at a node chosen by the key, goes
// round the ring, and refuses only when no node at all is feasible.
func TestMaxCandidates(t *testing.T) {
	t.Run("the start depends on the key, and only on it", func(t *testing.T) {
		w := newWorld(t)
		w.nodes(make40(8)...)
		c := sched.New(w.st, sched.Options{MaxCandidates: 1})
		seen := map[uint64]bool{}
		for i := range 50 {
			r := sched.Request{Key: fmt.Sprintf("vm/v%d", i), Need: &apiv1.Resources{Vcpus: 1, MemoryMib: 512}}
			a, err := c.Place(r)
			if err != nil {
				t.Fatal(err)
			}
			if b, _ := c.Place(r); a != b {
				t.Fatalf("key %q: node %d, then %d", r.Key, a, b)
			}
			seen[a] = true
		}
		if len(seen) < 20 {
			t.Errorf("50 keys started on %d distinct nodes of 40; want them scattered", len(seen))
		}
	})

	t.Run("a lone feasible node is found from any start", func(t *testing.T) {
		w := newWorld(t)
		sizes := make40(2)
		sizes[26] = 16 // node 27
		w.nodes(sizes...)
		c := sched.New(w.st, sched.Options{MaxCandidates: 2})
		for i := range 40 {
			r := sched.Request{Key: fmt.Sprintf("vm/v%d", i), Need: &apiv1.Resources{Vcpus: 8, MemoryMib: 512}}
			if node, err := c.Place(r); err != nil || node != 27 {
				t.Fatalf("key %q: Place = %d, %v; want node 27", r.Key, node, err)
			}
		}
		r := sched.Request{Key: "vm/huge", Need: &apiv1.Resources{Vcpus: 32, MemoryMib: 512}}
		_, err := c.Place(r)
		if got := unplaceable(t, err); got != "no node has 32 vCPUs free" {
			t.Errorf("reason = %q: want every node counted", got)
		}
	})

	t.Run("binpack ranks only the candidates", func(t *testing.T) {
		// Node 40 is the fullest; a full scan always picks it, a scan of
		// one candidate picks it only when it starts there.
		w := newWorld(t)
		w.nodes(make40(8)...)
		w.vm("filler", vmSpec(4, 512))
		w.assign("filler", 40)
		full := sched.New(w.st, sched.Options{})
		one := sched.New(w.st, sched.Options{MaxCandidates: 1})
		others := 0
		for i := range 20 {
			r := sched.Request{Key: fmt.Sprintf("vm/v%d", i), Need: &apiv1.Resources{Vcpus: 1, MemoryMib: 512}}
			if node, _ := full.Place(r); node != 40 {
				t.Fatalf("full scan: node %d, want 40", node)
			}
			if node, _ := one.Place(r); node != 40 {
				others++
			}
		}
		if others == 0 {
			t.Error("one candidate always found node 40: the bound is not applied")
		}
	})
}

func make40(vcpus uint32) []uint32 {
	s := make([]uint32, 40)
	for i := range s {
		s[i] = vcpus
	}
	return s
}

// TestTaskRequest: tasks are placed with their disk, by their own key, and
// the state accepts them.
func TestTaskRequest(t *testing.T) {
	w := newWorld(t)
	w.node(nodeSpec{id: 1, vcpus: 8, memMiB: 8192, diskMiB: 10000})
	w.node(nodeSpec{id: 2, vcpus: 8, memMiB: 8192, diskMiB: 50000})
	tk := w.task(&apiv1.Resources{Vcpus: 1, MemoryMib: 512, DiskMib: 20000})
	r := sched.TaskRequest(tk)
	if r.Key != fmt.Sprintf("task/%d", tk.GetId()) || r.Vm != "" || r.Strategy != binpack {
		t.Errorf("TaskRequest = %+v", r)
	}
	c := sched.New(w.st, sched.Options{})
	node, err := c.Place(r)
	if err != nil || node != 2 {
		t.Fatalf("Place = %d, %v; want node 2", node, err)
	}
	c.Commit(node, r)
	tk2 := w.task(&apiv1.Resources{Vcpus: 1, MemoryMib: 512, DiskMib: 30001})
	_, err = c.Place(sched.TaskRequest(tk2))
	if got := unplaceable(t, err); got != "no node has 30001 MiB of disk free" {
		t.Errorf("reason = %q", got)
	}
	w.ok(assignTask(tk, node))
	if err := w.st.CheckCommitted(); err != nil {
		t.Error(err)
	}
}

// TestVmRequest: VmRequest carries everything of the spec placement uses.
func TestVmRequest(t *testing.T) {
	v := &apiv1.Vm{Name: "web", Spec: &apiv1.VmSpec{
		Vcpus: 2, MemoryMib: 1024, Image: "alpine", Constraints: map[string]string{"zone": "a"},
		AntiAffinityGroup: "g", AntiAffinitySoft: true, Features: []string{"kvm"}, Placement: spread,
	}}
	r := sched.VmRequest(v)
	want := sched.Request{Key: "vm/web", Vm: "web", Image: "alpine", Constraints: map[string]string{"zone": "a"},
		Group: "g", GroupSoft: true, Strategy: spread}
	got := r
	got.Need = nil
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("VmRequest = %+v, want %+v", got, want)
	}
	if n := r.Need; n.GetVcpus() != 2 || n.GetMemoryMib() != 1024 || n.GetDiskMib() != 0 || fmt.Sprint(n.GetFeatures()) != "[kvm]" {
		t.Errorf("Need = %v", n)
	}
}

// TestPlaceDoesNotAllocate: the hot path allocates nothing, whatever the
// request uses.
func TestPlaceDoesNotAllocate(t *testing.T) {
	w := randomWorld(t, 3, 100, 50, 0)
	plain := sched.Request{Key: "vm/x", Vm: "x", Need: &apiv1.Resources{Vcpus: 1, MemoryMib: 512, Features: []string{"kvm"}}}
	every := sched.Request{Key: "vm/y", Vm: "y", Need: &apiv1.Resources{Vcpus: 1, MemoryMib: 512, DiskMib: 10, Features: []string{"kvm"}},
		Constraints: map[string]string{"zone": "a"}, Group: "g1", GroupSoft: true, Strategy: spread}
	for _, maxCandidates := range []int{0, 8} {
		for _, r := range []sched.Request{plain, every} {
			c := sched.New(w.st, sched.Options{MaxCandidates: maxCandidates})
			if _, err := c.Place(r); err != nil {
				t.Fatal(err)
			}
			if n := testing.AllocsPerRun(100, func() { _, _ = c.Place(r) }); n != 0 {
				t.Errorf("MaxCandidates %d, %s: Place allocates %.1f times per call", maxCandidates, r.Key, n)
			}
		}
	}
}

func TestCommitOnUnknownNodePanics(t *testing.T) {
	w := newWorld(t)
	w.nodes(4)
	c := sched.New(w.st, sched.Options{})
	defer func() {
		if recover() == nil {
			t.Error("Commit on node 9 did not panic")
		}
	}()
	c.Commit(9, sched.Request{Key: "vm/x", Need: &apiv1.Resources{Vcpus: 1}})
}
