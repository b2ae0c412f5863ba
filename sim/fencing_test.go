package sim

import (
	"fmt"
	"strings"
	"testing"
	"time"

	apiv1 "github.com/blixard/blixard/api/v1"
	"github.com/blixard/blixard/internal/core"
)

// Node failure, fencing and drain scenarios: VMs of a node that dies,
// is cut off or is paused run elsewhere — only once the old copy has
// stopped — and a drained node gives its VMs away. The vm-once, capacity
// and committed-capacity checkers run at every step; the time bounds come
// from the protocol (RescheduleBound: the down timeout, the longest boot,
// one election and a second of commits).

// fnWorld is a workload world of n nodes under 1% loss and clock drift,
// with a leader that has registered every node.
func fnWorld(t *testing.T, seed uint64, n int) (*World, *Client) {
	t.Helper()
	w := NewT(t, seed, Options{Nodes: n, Workloads: true, LossRate: 0.01, ClockDrift: true, MaxClockSkew: 500 * time.Millisecond})
	runToLeader(t, w)
	return w, w.NewClient(ClientOptions{})
}

// spreadReq creates VM name, started, placed by spread.
func spreadReq(name string, policy apiv1.RestartPolicy) *apiv1.Request {
	req := createReq(name, policy)
	req.GetCreateVm().Spec.Placement = apiv1.PlacementStrategy_PLACEMENT_STRATEGY_SPREAD
	return req
}

// fnFill creates 0-4 VMs (drawn from the seed) placed by spread, so that
// the next VM placed by spread lands on a node the seed chose.
func fnFill(t *testing.T, w *World, c *Client) {
	t.Helper()
	for i := range w.Rand().IntN(len(w.IDs())) {
		wlDo(t, w, c, spreadReq(fmt.Sprintf("filler-%d", i), apiv1.RestartPolicy_RESTART_POLICY_NEVER))
	}
}

// fnRunningElsewhere waits, within bound, until VM name runs on a node
// other than from, at a generation above gen: on that node's hypervisor,
// and so in the leader's record. It returns the record.
func fnRunningElsewhere(t *testing.T, w *World, name string, from, gen uint64, bound time.Duration) *apiv1.Vm {
	t.Helper()
	var v *apiv1.Vm
	await(t, w, fmt.Sprintf("VM %s running on a node other than %d", name, from), func() bool {
		var ok bool
		if v, ok = wlVm(w, name); !ok || !running(v) || v.GetNodeId() == from || v.GetGeneration() <= gen {
			return false
		}
		sv, ok := wlSimVM(w, v.GetNodeId(), name)
		return ok && sv.State == apiv1.VmState_VM_STATE_RUNNING && sv.Generation == v.GetGeneration()
	}, bound)
	return v
}

// fnLife is VM name's run on node at generation gen.
func fnLife(t *testing.T, w *World, name string, node, gen uint64) VMLife {
	t.Helper()
	for _, l := range w.VMLives(name) {
		if l.Node == node && l.Generation == gen {
			return l
		}
	}
	t.Fatal(w.Failure(fmt.Errorf("VM %s never ran on node %d at generation %d; its lives: %+v", name, node, gen, w.VMLives(name))))
	return VMLife{}
}

// fnStartsOn counts the runs of VM name that node started.
func fnStartsOn(w *World, name string, node uint64) int {
	n := 0
	for _, l := range w.VMLives(name) {
		if l.Node == node {
			n++
		}
	}
	return n
}

// fnStoppedBeforeRestart asserts that the old run ended before the new one
// began, and logs by how much.
func fnStoppedBeforeRestart(t *testing.T, w *World, old, next VMLife) {
	t.Helper()
	if !old.Ended || old.End >= next.Start {
		t.Fatal(w.Failure(fmt.Errorf("VM %s: the run on node %d (generation %d, ended=%v at %s) did not end before the run on node %d (generation %d) started at %s",
			old.Name, old.Node, old.Generation, old.Ended, old.End, next.Node, next.Generation, next.Start)))
	}
	t.Logf("VM %s: ended on node %d at %s (%s), started on node %d at %s: %s apart",
		old.Name, old.Node, old.End, old.Reason, next.Node, next.Start, next.Start-old.End)
}

// A node that crashes for good: its VMs with restart policy always run on
// other nodes, at a new generation, within RescheduleBound of the crash —
// and never while the old copy still ran (its lease kills it first).
func TestWorkloadNodeCrashMovesItsVMs(t *testing.T) {
	w, c := fnWorld(t, BaseSeed(t), 5)
	names := []string{"x", "y", "z"}
	fnFill(t, w, c)
	for _, name := range names {
		wlDo(t, w, c, spreadReq(name, apiv1.RestartPolicy_RESTART_POLICY_ALWAYS))
	}
	for _, name := range names {
		wlAwaitVm(t, w, name, "running", running)
	}
	w.Must(t, w.RunFor(2*time.Second))
	x, _ := wlVm(w, "x")
	node, gen := x.GetNodeId(), x.GetGeneration()
	t.Logf("crashing node %d, which runs x at generation %d (leader: %d); bound %s", node, gen, w.Leader(), w.RescheduleBound())
	crashed := w.Now()
	w.Crash(node)
	w.WatchDeath(node) // every VM with restart policy always it held, within the bound
	v := fnRunningElsewhere(t, w, "x", node, gen, w.RescheduleBound())
	t.Logf("x runs on node %d at generation %d, %s after the crash (bound %s)", v.GetNodeId(), v.GetGeneration(), w.Now()-crashed, w.RescheduleBound())
	old := fnLife(t, w, "x", node, gen)
	if !strings.Contains(old.Reason, "lease expired") {
		t.Fatal(w.Failure(fmt.Errorf("the old copy of x ended for %q, want its lease expired", old.Reason)))
	}
	fnStoppedBeforeRestart(t, w, old, fnLife(t, w, "x", v.GetNodeId(), v.GetGeneration()))
	if n, ok := wlVm(w, "x"); !ok || n.GetRestarts() == 0 {
		t.Fatal(w.Failure(fmt.Errorf("x was placed again without counting a restart: %v", n)))
	}
	// The node's record says down, and the other VMs came along too (the
	// vm-liveness checker holds them to the same bound).
	w.Must(t, w.RunFor(w.RescheduleBound()))
	if rec, _ := stateOf(w, w.Leader()).Node(node); rec.GetStatus() != apiv1.NodeStatus_NODE_STATUS_DOWN {
		t.Fatal(w.Failure(fmt.Errorf("crashed node %d is %s", node, rec.GetStatus())))
	}
	for _, name := range names {
		if v, _ := wlVm(w, name); !running(v) || v.GetNodeId() == node {
			t.Fatal(w.Failure(fmt.Errorf("VM %s is %s on node %d", name, v.GetState(), v.GetNodeId())))
		}
	}
}

// The node running VM x is cut off from the rest. Its copy of x stops
// (fenced by the agent or killed by its lease) before x starts on the other
// side; once healed, the node sees x's new generation and does not start
// its copy again. Several seeds, each its own world.
func TestWorkloadPartitionFencesBeforeRestart(t *testing.T) {
	base := BaseSeed(t)
	for i := range 4 {
		seed := base + uint64(i)
		t.Run(fmt.Sprintf("seed=%d", seed), func(t *testing.T) {
			w, c := fnWorld(t, seed, 5)
			fnFill(t, w, c)
			wlDo(t, w, c, spreadReq("x", apiv1.RestartPolicy_RESTART_POLICY_ALWAYS))
			wlDo(t, w, c, spreadReq("y", apiv1.RestartPolicy_RESTART_POLICY_ON_FAILURE))
			x := wlAwaitVm(t, w, "x", "running", running)
			wlAwaitVm(t, w, "y", "running", running)
			w.Must(t, w.RunFor(time.Duration(w.Rand().IntN(3000))*time.Millisecond))
			x, _ = wlVm(w, "x")
			node, gen := x.GetNodeId(), x.GetGeneration()
			t.Logf("cutting off node %d, which runs x at generation %d (leader: %d)", node, gen, w.Leader())
			cut := w.Now()
			w.Net().Partition([]uint64{node})

			v := fnRunningElsewhere(t, w, "x", node, gen, w.RescheduleBound())
			t.Logf("x runs on node %d at generation %d, %s after the cut", v.GetNodeId(), v.GetGeneration(), w.Now()-cut)
			old := fnLife(t, w, "x", node, gen)
			// Its agent stops it once its lease has lapsed ("stopped": no one
			// else asked), or its supervisor kills it at the lease's
			// deadline, whichever comes first.
			if old.Reason != "lease expired" && old.Reason != "stopped" {
				t.Fatal(w.Failure(fmt.Errorf("the cut-off copy of x ended for %q, want stopped by its fenced agent or killed by its lease", old.Reason)))
			}
			fnStoppedBeforeRestart(t, w, old, fnLife(t, w, "x", v.GetNodeId(), v.GetGeneration()))

			// Healed: the node follows the log again, sees x placed
			// elsewhere at a newer generation, and leaves its copy ended.
			w.Net().Heal()
			await(t, w, "convergence after the heal", w.Converged, convergeBound)
			w.Must(t, w.RunFor(10*time.Second))
			if n := fnStartsOn(w, "x", node); n != 1 {
				t.Fatal(w.Failure(fmt.Errorf("node %d started x %d times, want once (before the cut): %+v", node, n, w.VMLives("x"))))
			}
			if sv, ok := wlSimVM(w, node, "x"); ok && !sv.Ended() {
				t.Fatal(w.Failure(fmt.Errorf("node %d runs x again after the heal: %+v", node, sv)))
			}
			if rec, _ := stateOf(w, node).Vm("x"); rec.GetNodeId() == node || rec.GetGeneration() <= gen || !running(rec) {
				t.Fatal(w.Failure(fmt.Errorf("healed node %d's record of x: %v", node, rec)))
			}
			if rec, _ := stateOf(w, w.Leader()).Node(node); rec.GetStatus() != apiv1.NodeStatus_NODE_STATUS_READY {
				t.Fatal(w.Failure(fmt.Errorf("healed node %d is %s, want ready again", node, rec.GetStatus())))
			}
		})
	}
}

// A node paused (as by SIGSTOP) for longer than the down timeout: its VMs'
// supervisors kill them when its lease runs out, while it is still paused;
// the VMs run elsewhere; resumed, the node does not start them again.
func TestWorkloadPausedNodeLosesItsVMs(t *testing.T) {
	w, c := fnWorld(t, BaseSeed(t), 5)
	fnFill(t, w, c)
	wlDo(t, w, c, spreadReq("x", apiv1.RestartPolicy_RESTART_POLICY_ALWAYS))
	x := wlAwaitVm(t, w, "x", "running", running)
	w.Must(t, w.RunFor(time.Second))
	x, _ = wlVm(w, "x")
	node, gen := x.GetNodeId(), x.GetGeneration()
	pause := time.Duration(w.downTicks())*w.opts.TickInterval + 4*time.Second
	t.Logf("pausing node %d, which runs x at generation %d (leader: %d), for %s", node, gen, w.Leader(), pause)
	paused := w.Now()
	w.Pause(node)
	v := fnRunningElsewhere(t, w, "x", node, gen, w.RescheduleBound())
	old := fnLife(t, w, "x", node, gen)
	if !old.Ended || old.Reason != "lease expired" || old.End >= paused+pause {
		t.Fatal(w.Failure(fmt.Errorf("the paused node's copy of x: %+v; want killed by its lease while paused (%s..%s)", old, paused, paused+pause)))
	}
	fnStoppedBeforeRestart(t, w, old, fnLife(t, w, "x", v.GetNodeId(), v.GetGeneration()))
	w.Must(t, w.RunFor(paused+pause-w.Now()))

	w.Resume(node)
	await(t, w, "convergence after the resume", w.Converged, convergeBound)
	w.Must(t, w.RunFor(10*time.Second))
	if n := fnStartsOn(w, "x", node); n != 1 {
		t.Fatal(w.Failure(fmt.Errorf("node %d started x %d times, want once (before the pause): %+v", node, n, w.VMLives("x"))))
	}
	if sv, ok := wlSimVM(w, node, "x"); ok && !sv.Ended() {
		t.Fatal(w.Failure(fmt.Errorf("resumed node %d runs x again: %+v", node, sv)))
	}
	if v2, _ := wlVm(w, "x"); v2.GetGeneration() != v.GetGeneration() || !running(v2) {
		t.Fatal(w.Failure(fmt.Errorf("x moved again after the resume: %v, was generation %d", v2, v.GetGeneration())))
	}
}

func drainReq(node uint64, drain bool) *apiv1.Request {
	return &apiv1.Request{Kind: &apiv1.Request_DrainNode{DrainNode: &apiv1.DrainNodeRequest{NodeId: node, Drain: drain}}}
}

// Draining a node moves its VMs: it ends with none running, they run on
// the other nodes, and nothing new lands on it; undrained, it takes work
// again.
func TestWorkloadDrainMovesVMs(t *testing.T) {
	w := NewT(t, BaseSeed(t), Options{Nodes: 4, Workloads: true, LossRate: 0.01, ClockDrift: true, Core: func(c *core.Config) {
		c.Labels = map[string]string{"host": fmt.Sprint(c.ID)}
	}})
	runToLeader(t, w)
	c := w.NewClient(ClientOptions{})
	var names []string
	for i := range 8 {
		name := fmt.Sprintf("web-%d", i)
		names = append(names, name)
		wlDo(t, w, c, spreadReq(name, []apiv1.RestartPolicy{apiv1.RestartPolicy_RESTART_POLICY_ALWAYS, apiv1.RestartPolicy_RESTART_POLICY_NEVER}[i%2]))
	}
	on := map[uint64][]string{}
	for _, name := range names {
		v := wlAwaitVm(t, w, name, "running", running)
		on[v.GetNodeId()] = append(on[v.GetNodeId()], name)
	}
	// Drain the node with the most VMs (the lowest id among equals).
	var drained uint64
	for _, id := range w.IDs() {
		if len(on[id]) > len(on[drained]) {
			drained = id
		}
	}
	t.Logf("VMs by node: %v; draining node %d", on, drained)
	wlDo(t, w, c, drainReq(drained, true))
	await(t, w, "every VM running off the drained node", func() bool {
		for _, sv := range w.SimVMs(drained) {
			if !sv.Ended() {
				return false
			}
		}
		for _, name := range names {
			v, ok := wlVm(w, name)
			if !ok || !running(v) || v.GetNodeId() == drained {
				return false
			}
			if sv, ok := wlSimVM(w, v.GetNodeId(), name); !ok || sv.State != apiv1.VmState_VM_STATE_RUNNING || sv.Generation != v.GetGeneration() {
				return false
			}
		}
		return true
	}, 30*time.Second)
	for _, name := range on[drained] {
		lives := w.VMLives(name)
		if len(lives) != 2 || lives[0].Node != drained || lives[0].Reason != "stopped" || lives[1].Node == drained {
			t.Fatal(w.Failure(fmt.Errorf("VM %s moved off node %d as %+v; want one clean stop there and one start elsewhere", name, drained, lives)))
		}
		fnStoppedBeforeRestart(t, w, lives[0], lives[1])
	}
	if rec, _ := stateOf(w, w.Leader()).Node(drained); !rec.GetDrain() {
		t.Fatal(w.Failure(fmt.Errorf("node %d's record does not say drained: %v", drained, rec)))
	}

	// Nothing new lands on it, even a VM that only it could take.
	pinned := createReq("pinned", apiv1.RestartPolicy_RESTART_POLICY_NEVER)
	pinned.GetCreateVm().Spec.Constraints = map[string]string{"host": fmt.Sprint(drained)}
	wlDo(t, w, c, pinned)
	w.Must(t, w.RunFor(5*time.Second))
	if v, _ := wlVm(w, "pinned"); v.GetState() != apiv1.VmState_VM_STATE_PENDING || !strings.Contains(v.GetReason(), "drain") {
		t.Fatal(w.Failure(fmt.Errorf("a VM only the drained node could take is %s (%s), want pending for the drain", v.GetState(), v.GetReason())))
	}

	// Undrained, it is eligible again: the pinned VM runs there. Nothing
	// else moves back.
	wlDo(t, w, c, drainReq(drained, false))
	if v := wlAwaitVm(t, w, "pinned", "running", running); v.GetNodeId() != drained {
		t.Fatal(w.Failure(fmt.Errorf("pinned runs on node %d", v.GetNodeId())))
	}
	for _, name := range names {
		if v, _ := wlVm(w, name); v.GetNodeId() == drained || !running(v) {
			t.Fatal(w.Failure(fmt.Errorf("VM %s is %s on node %d after the undrain", name, v.GetState(), v.GetNodeId())))
		}
	}
}

// Overcommit: nodes of 2 vCPUs overcommitted twice take four 1-vCPU VMs
// each, and no more: their hypervisors run 4 (the capacity checker allows
// capacity × overcommit), the rest waits.
func TestWorkloadOvercommit(t *testing.T) {
	w := NewT(t, BaseSeed(t), Options{Nodes: 3, Workloads: true, Core: func(c *core.Config) {
		c.Capacity = &apiv1.Resources{Vcpus: 2, MemoryMib: 1024}
		c.VcpuOvercommit = 2
	}})
	runToLeader(t, w)
	c := w.NewClient(ClientOptions{})
	for i := range 14 {
		c.Do(createReq(fmt.Sprintf("vm-%d", i), apiv1.RestartPolicy_RESTART_POLICY_NEVER))
	}
	await(t, w, "every create answered", w.ClientsIdle, 30*time.Second)
	count := func() map[uint64]int {
		out := map[uint64]int{}
		for _, id := range w.IDs() {
			for _, v := range w.SimVMs(id) {
				if v.State == apiv1.VmState_VM_STATE_RUNNING {
					out[id]++
				}
			}
		}
		return out
	}
	await(t, w, "twelve VMs running", func() bool {
		n := 0
		for _, k := range count() {
			n += k
		}
		return n == 12
	}, time.Minute)
	w.Must(t, w.RunFor(5*time.Second))
	for _, id := range w.IDs() {
		if count()[id] != 4 {
			t.Fatal(w.Failure(fmt.Errorf("node %d runs %d VMs, want 4 (2 vCPUs × 2): %v", id, count()[id], count())))
		}
	}
	pending := 0
	for _, v := range stateOf(w, w.Leader()).Vms(0) {
		if v.GetState() == apiv1.VmState_VM_STATE_PENDING {
			pending++
		}
	}
	if pending != 2 {
		t.Fatal(w.Failure(fmt.Errorf("%d VMs pending, want 2", pending)))
	}
}

// A hundred VMs onto five unequal nodes (4, 8, 16, 32 and 64 vCPUs, 1 GiB
// per vCPU), placed by binpack and by spread. The checkers see that no node
// is ever committed or run beyond its capacity; all hundred fit (124 vCPUs)
// and all run; and the distribution is the strategy's.
func TestWorkloadPlacementStrategies(t *testing.T) {
	caps := map[uint64]uint64{1: 4, 2: 8, 3: 16, 4: 32, 5: 64}
	for _, strategy := range []apiv1.PlacementStrategy{apiv1.PlacementStrategy_PLACEMENT_STRATEGY_BINPACK, apiv1.PlacementStrategy_PLACEMENT_STRATEGY_SPREAD} {
		t.Run(strategy.String(), func(t *testing.T) {
			w := NewT(t, BaseSeed(t), Options{Nodes: 5, Workloads: true, ClockDrift: true, Core: func(c *core.Config) {
				c.Capacity = &apiv1.Resources{Vcpus: uint32(caps[c.ID]), MemoryMib: caps[c.ID] * 1024}
			}})
			runToLeader(t, w)
			clients := []*Client{w.NewClient(ClientOptions{}), w.NewClient(ClientOptions{}), w.NewClient(ClientOptions{}), w.NewClient(ClientOptions{})}
			create := func(from, to int) {
				for i := from; i < to; i++ {
					clients[i%len(clients)].Do(&apiv1.Request{Kind: &apiv1.Request_CreateVm{CreateVm: &apiv1.CreateVmRequest{
						Name: fmt.Sprintf("vm-%03d", i), Start: true,
						Spec: &apiv1.VmSpec{Vcpus: 1, MemoryMib: 1024, Placement: strategy},
					}}})
				}
				await(t, w, fmt.Sprintf("VMs %d..%d created", from, to-1), w.ClientsIdle, time.Minute)
				await(t, w, fmt.Sprintf("%d VMs running", to), func() bool {
					n := 0
					for _, id := range w.IDs() {
						for _, v := range w.SimVMs(id) {
							if v.State == apiv1.VmState_VM_STATE_RUNNING {
								n++
							}
						}
					}
					return n == to
				}, 2*time.Minute)
			}
			used := func() map[uint64]uint64 {
				out := map[uint64]uint64{}
				for _, id := range w.IDs() {
					for _, v := range w.SimVMs(id) {
						if !v.Ended() {
							out[id]++
						}
					}
				}
				return out
			}
			binpackShape := func(u map[uint64]uint64) error {
				// Fullest first: the nodes in order of capacity are full, then
				// at most one is partly used, then the rest are empty.
				partial := false
				for _, id := range w.IDs() { // ids are in order of capacity
					switch {
					case partial && u[id] != 0:
						return fmt.Errorf("node %d (%d vCPUs) holds %d VMs after a node not full: %v", id, caps[id], u[id], u)
					case u[id] < caps[id]:
						partial = true
					}
				}
				return nil
			}

			// First 28 VMs: exactly nodes 1-3 (4 + 8 + 16 vCPUs) by binpack.
			create(0, 28)
			u := used()
			t.Logf("after 28 VMs: %v", u)
			if strategy == apiv1.PlacementStrategy_PLACEMENT_STRATEGY_BINPACK {
				if err := binpackShape(u); err != nil {
					t.Fatal(w.Failure(err))
				}
				if u[4] != 0 || u[5] != 0 {
					t.Fatal(w.Failure(fmt.Errorf("binpack used nodes 4 and 5 (%d and %d VMs) for 28 VMs that fit on nodes 1-3: %v", u[4], u[5], u)))
				}
			}
			create(28, 100)
			w.Must(t, w.RunFor(3*time.Second))
			u = used()
			t.Logf("after 100 VMs: %v", u)
			total := uint64(0)
			for _, id := range w.IDs() {
				total += u[id]
				if u[id] > caps[id] {
					t.Fatal(w.Failure(fmt.Errorf("node %d runs %d VMs of 1 vCPU with %d vCPUs", id, u[id], caps[id])))
				}
			}
			if total != 100 {
				t.Fatal(w.Failure(fmt.Errorf("%d VMs run, want all 100", total)))
			}
			for _, v := range stateOf(w, w.Leader()).Vms(0) {
				if !running(v) {
					t.Fatal(w.Failure(fmt.Errorf("VM %s is %s (%s)", v.GetName(), v.GetState(), v.GetReason())))
				}
			}
			switch strategy {
			case apiv1.PlacementStrategy_PLACEMENT_STRATEGY_BINPACK:
				if err := binpackShape(u); err != nil {
					t.Fatal(w.Failure(err))
				}
			case apiv1.PlacementStrategy_PLACEMENT_STRATEGY_SPREAD:
				// Emptiest first: every node is used, and no node's
				// utilisation exceeds another's by more than one VM of the
				// other (each VM went where the fraction after it was lowest).
				for _, i := range w.IDs() {
					if u[i] == 0 {
						t.Fatal(w.Failure(fmt.Errorf("spread left node %d empty: %v", i, u)))
					}
					for _, j := range w.IDs() {
						fi, fj := float64(u[i])/float64(caps[i]), float64(u[j])/float64(caps[j])
						if fi > fj+1/float64(caps[j])+1e-9 {
							t.Fatal(w.Failure(fmt.Errorf("spread: node %d is %.3f used, node %d %.3f: more than one VM apart (%v)", i, fi, j, fj, u)))
						}
					}
				}
				var fr []string
				for _, id := range w.IDs() {
					fr = append(fr, fmt.Sprintf("%d:%.2f", id, float64(u[id])/float64(caps[id])))
				}
				t.Logf("utilisation by node: %s", strings.Join(fr, " "))
			}
		})
	}
}

// A node removed from the cluster while it runs VMs: its VMs must not run
// anywhere else while its copies still run. (They did once: the removal
// evicted them at once, while the removed node's lease — which the leader
// went on renewing, as raft answers a non-member's ReadIndex — kept them
// running. The leader now drops those requests and evicts only after the
// down timeout.) The vm-once checker watches; the VMs must end up running
// elsewhere.
func TestWorkloadNodeRemovalDoesNotRunVMsTwice(t *testing.T) {
	w, c := fnWorld(t, BaseSeed(t), 3)
	for i := range 6 {
		wlDo(t, w, c, spreadReq(fmt.Sprintf("vm-%d", i), apiv1.RestartPolicy_RESTART_POLICY_ALWAYS))
	}
	var victim uint64
	for i := range 6 {
		v := wlAwaitVm(t, w, fmt.Sprintf("vm-%d", i), "running", running)
		if v.GetNodeId() != w.Leader() {
			victim = v.GetNodeId()
		}
	}
	if victim == 0 {
		// Six VMs spread over three nodes: some land off the leader.
		t.Fatal(w.Failure(fmt.Errorf("spread placed all six VMs on the leader, node %d", w.Leader())))
	}
	w.Must(t, w.RunFor(2*time.Second))
	t.Logf("removing node %d (leader %d)", victim, w.Leader())
	c.Do(&apiv1.Request{Kind: &apiv1.Request_LeaveCluster{LeaveCluster: &apiv1.LeaveClusterRequest{NodeId: victim}}})
	w.Must(t, w.RunFor(20*time.Second))
	for i := range 6 {
		if v, _ := wlVm(w, fmt.Sprintf("vm-%d", i)); !running(v) || v.GetNodeId() == victim {
			t.Fatal(w.Failure(fmt.Errorf("VM %s is %s on node %d", v.GetName(), v.GetState(), v.GetNodeId())))
		}
	}
}
