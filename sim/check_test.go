package sim

import (
	"strings"
	"testing"
	"time"

	"go.etcd.io/raft/v3/raftpb"
	"google.golang.org/protobuf/proto"

	apiv1 "github.com/blixard/blixard/api/v1"
	"github.com/blixard/blixard/internal/state"
)

// Each checker is fed a benign sequence that must not fire and a forged
// violation that must.

func chkWantViolation(t *testing.T, err error, checker string) {
	t.Helper()
	if err == nil {
		t.Fatalf("forged violation of %s not detected", checker)
	}
	if !strings.Contains(err.Error(), "checker "+checker) {
		t.Fatalf("violation not attributed to %s: %v", checker, err)
	}
	t.Logf("as expected: %v", err)
}

func chkMustNot(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatalf("benign sequence fired: %v", err)
	}
}

func chkEntry(index, term uint64, data string) *raftpb.Entry {
	return &raftpb.Entry{Index: proto.Uint64(index), Term: proto.Uint64(term), Type: raftpb.EntryType_EntryNormal.Enum(), Data: []byte(data)}
}

func TestElectionSafetyChecker(t *testing.T) {
	c := NewElectionSafety()
	chkMustNot(t, c.Observe(1, 1))
	chkMustNot(t, c.Observe(1, 1)) // the same leader, seen again
	chkMustNot(t, c.Observe(2, 2)) // a new term, a new leader
	chkMustNot(t, c.Observe(3, 1))
	chkWantViolation(t, c.Observe(2, 3), "election-safety")
}

func TestLogMatchingChecker(t *testing.T) {
	c := NewLogMatching()
	chkMustNot(t, c.Observe(1, chkEntry(5, 2, "a")))
	chkMustNot(t, c.Observe(2, chkEntry(5, 2, "a"))) // the same entry on another node
	chkMustNot(t, c.Observe(3, chkEntry(5, 3, "b"))) // another term at that index: raft overwrites
	chkMustNot(t, c.Observe(1, chkEntry(6, 2, "b"))) // another index
	chkMustNot(t, c.Observe(2, chkEntry(5, 2, "a"))) // persisted again
	chkWantViolation(t, c.Observe(3, chkEntry(5, 2, "x")), "log-matching")
	// An entry of another type with the same data is another entry.
	conf := chkEntry(7, 2, "c")
	chkMustNot(t, c.Observe(1, conf))
	conf2 := chkEntry(7, 2, "c")
	conf2.Type = raftpb.EntryType_EntryConfChangeV2.Enum()
	chkWantViolation(t, c.Observe(2, conf2), "log-matching")
}

func TestStateMachineSafetyChecker(t *testing.T) {
	c := NewStateMachineSafety()
	fresh, err := c.Observe(1, chkEntry(1, 1, "a"))
	chkMustNot(t, err)
	if !fresh {
		t.Fatal("first application of index 1 not reported fresh")
	}
	fresh, err = c.Observe(2, chkEntry(1, 1, "a"))
	chkMustNot(t, err)
	if fresh {
		t.Fatal("second application of index 1 reported fresh")
	}
	_, err = c.Observe(2, chkEntry(2, 1, "b"))
	chkMustNot(t, err)
	_, err = c.Observe(3, chkEntry(2, 2, "b")) // same data, another term: another entry
	chkWantViolation(t, err, "state-machine-safety")
	_, err = c.Observe(3, chkEntry(1, 1, "z"))
	chkWantViolation(t, err, "state-machine-safety")
}

func chkCreateCmd(key, name string) *apiv1.Command {
	return &apiv1.Command{ClientRequestId: key, Op: &apiv1.Command_CreateVm{CreateVm: &apiv1.CreateVmCommand{
		Name: name, Spec: &apiv1.VmSpec{Vcpus: 1, MemoryMib: 128},
	}}}
}

func chkSubmitCmd(key string) *apiv1.Command {
	return &apiv1.Command{ClientRequestId: key, Op: &apiv1.Command_SubmitTask{SubmitTask: &apiv1.SubmitTaskCommand{
		Spec: &apiv1.TaskSpec{Command: "/bin/true", Resources: &apiv1.Resources{Vcpus: 1, MemoryMib: 128}},
	}}}
}

// chkNew is a state with one node registered at index 1, offering the
// default image: workloads can be created in it.
func chkNew(t *testing.T) *state.State {
	t.Helper()
	st := state.New()
	chkApply(t, st, 1, &apiv1.Command{Op: &apiv1.Command_RegisterNode{RegisterNode: &apiv1.RegisterNodeCommand{
		Id: 1, Address: "sim-node-1:7000", Role: apiv1.NodeRole_NODE_ROLE_VOTER,
		Capacity: &apiv1.Resources{Vcpus: 16, MemoryMib: 65536},
		Images:   []*apiv1.ImageInfo{{Name: "default", Digest: "sha256:5e", MinMemoryMib: 64}},
	}}})
	return st
}

func chkApply(t *testing.T, st *state.State, index uint64, cmd *apiv1.Command) *apiv1.Response {
	t.Helper()
	resp, err := st.Apply(index, cmd)
	if err != nil {
		t.Fatalf("apply %d: %v", index, err)
	}
	return resp
}

func TestDurabilityChecker(t *testing.T) {
	// The real history: index 1 registers a node, index 2 creates "web"
	// (key k1), index 3 submits a task (key k2).
	good := chkNew(t)
	resp1 := chkApply(t, good, 2, chkCreateCmd("k1", "web"))
	resp2 := chkApply(t, good, 3, chkSubmitCmd("k2"))

	t.Run("benign", func(t *testing.T) {
		c := NewDurability()
		c.Applied("k1", 2)
		c.Applied("k1", 6) // a later duplicate does not move it
		chkMustNot(t, c.Ack("k1", resp1))
		chkMustNot(t, c.Ack("k1", resp1)) // acknowledged twice (a retry)
		chkMustNot(t, c.Observe(2, good))
		chkMustNot(t, c.Observe(3, chkNew(t))) // has applied nothing yet
		c.Applied("k2", 3)
		chkMustNot(t, c.Ack("k2", resp2))
		chkMustNot(t, c.Observe(2, good))
		// A node that has applied index 1 but not 2 holds k1 only.
		partial := chkNew(t)
		chkApply(t, partial, 2, chkCreateCmd("k1", "web"))
		chkMustNot(t, c.Observe(4, partial))
		// A restart from an older state is checked again from scratch.
		chkMustNot(t, c.Observe(4, chkNew(t)))
		chkMustNot(t, c.Observe(4, good))
	})

	t.Run("acknowledged but never applied", func(t *testing.T) {
		c := NewDurability()
		chkWantViolation(t, c.Ack("k9", resp1), "durability")
	})

	t.Run("lost", func(t *testing.T) {
		c := NewDurability()
		c.Applied("k1", 2)
		chkMustNot(t, c.Ack("k1", resp1))
		// A node whose index 1 held something else: applied >= 1, no k1.
		lost := chkNew(t)
		chkApply(t, lost, 2, chkCreateCmd("other", "db"))
		chkWantViolation(t, c.Observe(3, lost), "durability")
	})

	t.Run("lost, seen before the ack", func(t *testing.T) {
		c := NewDurability()
		c.Applied("k1", 2)
		lost := chkNew(t)
		chkApply(t, lost, 2, chkCreateCmd("other", "db"))
		chkApply(t, lost, 3, chkSubmitCmd("k2"))
		chkMustNot(t, c.Observe(3, lost)) // nothing acknowledged yet
		chkMustNot(t, c.Ack("k1", resp1))
		chkWantViolation(t, c.Observe(3, lost), "durability") // checked again after the ack
	})

	t.Run("another response", func(t *testing.T) {
		// A node that applied k1 at index 2, to a state where "web"
		// already existed: its stored response is ALREADY_EXISTS.
		other := chkNew(t)
		chkApply(t, other, 2, chkCreateCmd("k0", "web"))
		if _, err := other.Apply(3, chkCreateCmd("k1", "web")); err == nil {
			t.Fatal("second create of web accepted")
		}
		c2 := NewDurability()
		c2.Applied("k1", 3)
		chkMustNot(t, c2.Ack("k1", resp1))
		chkWantViolation(t, c2.Observe(3, other), "durability")
		// And one that stored a response with another body.
		forged := proto.CloneOf(resp1)
		forged.GetCreateVm().GetVm().Name = "not-web"
		c3 := NewDurability()
		c3.Applied("k1", 2)
		chkMustNot(t, c3.Ack("k1", forged))
		chkWantViolation(t, c3.Observe(2, good), "durability")
	})
}

// Whole-world tests: a violation forged through a running world stops it,
// and its failure report carries the seed and the trace.

func chkWorldWithLeader(t *testing.T) (*World, uint64) {
	t.Helper()
	w := NewT(t, BaseSeed(t), Options{Nodes: 3})
	w.Must(t, w.RunUntil(func() bool { return w.StableLeader() != 0 && w.Registered() }, 10*time.Second))
	return w, w.StableLeader()
}

func chkWantWorldFailure(t *testing.T, w *World, err error, checker string) {
	t.Helper()
	if err == nil {
		t.Fatalf("forged violation of %s not detected by the world", checker)
	}
	if w.Err() == nil || w.Err() != err {
		t.Fatalf("World.Err() = %v, want the failure %v", w.Err(), err)
	}
	if !strings.Contains(err.Error(), "checker "+checker) {
		t.Fatalf("failure not from %s: %v", checker, err)
	}
	report := w.Failure(err)
	for _, want := range []string{"seed=", "trace-hash=", err.Error(), "trace lines:", "FAILURE: checker " + checker} {
		if !strings.Contains(report, want) {
			t.Errorf("failure report lacks %q:\n%s", want, report)
		}
	}
	if lines := strings.Count(report, "\n"); lines < 10 {
		t.Errorf("failure report has %d lines, want the trace tail:\n%s", lines, report)
	}
	// The world stays stopped.
	before := w.Events()
	if err2 := w.RunFor(time.Second); err2 != err || w.Events() != before {
		t.Errorf("a failed world ran on: %v, %d events after %d", err2, w.Events(), before)
	}
	t.Logf("as expected:\n%.2000s", report)
	// The forged failure must not fail the test at cleanup.
	w.failure = nil
}

func TestWorldElectionSafetyFires(t *testing.T) {
	w, leader := chkWorldWithLeader(t)
	term := w.Node(leader).Core().BasicStatus().GetTerm()
	other := leader%3 + 1
	// Forge: another node was seen leading this term.
	w.chk.election.leaders[term] = other
	chkWantWorldFailure(t, w, w.RunFor(time.Second), "election-safety")
}

func TestWorldStateMachineSafetyFires(t *testing.T) {
	w, leader := chkWorldWithLeader(t)
	next := w.Node(leader).Core().State().AppliedIndex() + 1
	// Forge: some node applied another entry at the next index.
	bogus := chkEntry(next, 999, "bogus")
	if _, err := w.chk.smSafety.Observe(99, bogus); err != nil {
		t.Fatal(err)
	}
	c := w.NewClient(ClientOptions{})
	c.Do(&apiv1.Request{Kind: &apiv1.Request_SubmitTask{SubmitTask: &apiv1.SubmitTaskRequest{Spec: &apiv1.TaskSpec{
		Command: "/bin/true", Resources: &apiv1.Resources{Vcpus: 1, MemoryMib: 64},
	}}}})
	chkWantWorldFailure(t, w, w.RunFor(5*time.Second), "state-machine-safety")
}

func TestWorldDurabilityFires(t *testing.T) {
	w, _ := chkWorldWithLeader(t)
	c := w.NewClient(ClientOptions{})
	submit := func() {
		c.Do(&apiv1.Request{Kind: &apiv1.Request_SubmitTask{SubmitTask: &apiv1.SubmitTaskRequest{Spec: &apiv1.TaskSpec{
			Command: "/bin/true", Resources: &apiv1.Resources{Vcpus: 1, MemoryMib: 64},
		}}}})
	}
	submit()
	w.Must(t, w.RunUntil(w.ClientsIdle, 10*time.Second))
	op := w.History().Ops()[0]
	if !op.Acked() {
		t.Fatalf("submit not acknowledged: %v", op.Resp)
	}
	// Forge: its client was told something else. Every node is checked
	// again at its next application.
	forged := proto.CloneOf(op.Resp)
	forged.GetSubmitTask().GetTask().Id += 1000
	w.chk.durability.acked[op.Key] = forged
	clear(w.chk.durability.checked)
	submit()
	chkWantWorldFailure(t, w, w.RunFor(5*time.Second), "durability")
}

// The workload checkers.

func chkHost(node uint64, vcpus, mem uint64, vms ...HostVM) HostView {
	return HostView{Node: node, Limits: state.Limits{Vcpus: vcpus, MemoryMiB: mem}, VMs: vms}
}

func chkVM(name string, gen uint64, running bool, vcpus uint32, mem uint64) HostVM {
	return HostVM{Name: name, Generation: gen, Running: running, Need: &apiv1.Resources{Vcpus: vcpus, MemoryMib: mem}}
}

func TestVMOnceChecker(t *testing.T) {
	var c VMOnce
	chkMustNot(t, c.Check([]HostView{
		chkHost(1, 4, 4096, chkVM("web", 3, true, 1, 128), chkVM("db", 5, true, 1, 128)),
		chkHost(2, 4, 4096, chkVM("cache", 2, false, 1, 128)),
		chkHost(3, 4, 4096),
	}))
	// The same VM on two nodes, one of them still starting, at any
	// generations: a violation.
	chkWantViolation(t, c.Check([]HostView{
		chkHost(1, 4, 4096, chkVM("web", 3, true, 1, 128)),
		chkHost(2, 4, 4096, chkVM("web", 4, false, 1, 128)),
	}), "vm-once")
}

func TestPhysicalCapacityChecker(t *testing.T) {
	var c PhysicalCapacity
	// Exactly full is fine; limits are capacity × overcommit (here a
	// 2-vCPU node overcommitted twice: 4).
	chkMustNot(t, c.Check([]HostView{
		chkHost(1, 4, 1024, chkVM("a", 1, true, 2, 512), chkVM("b", 1, false, 2, 512)),
	}))
	chkWantViolation(t, c.Check([]HostView{
		chkHost(1, 4, 1024, chkVM("a", 1, true, 2, 512), chkVM("b", 1, false, 3, 256)),
	}), "capacity")
	chkWantViolation(t, c.Check([]HostView{
		chkHost(1, 4, 1024),
		chkHost(2, 4, 1024, chkVM("a", 1, true, 1, 512), chkVM("b", 1, true, 1, 513)),
	}), "capacity")
}

// chkOvercommitted is a state whose node 1 (16 vCPUs) holds two running
// VMs of 8 vCPUs, then is forged down to 4 vCPUs: more committed than it
// has. (Apply refuses to get there; a snapshot can be forged.)
func chkOvercommitted(t *testing.T) (good, forged *state.State) {
	t.Helper()
	good = chkNew(t)
	idx := uint64(2)
	for _, name := range []string{"a", "b"} {
		chkApply(t, good, idx, &apiv1.Command{Op: &apiv1.Command_CreateVm{CreateVm: &apiv1.CreateVmCommand{
			Name: name, Start: true, Spec: &apiv1.VmSpec{Vcpus: 8, MemoryMib: 128},
		}}})
		v, _ := good.Vm(name)
		if resp := chkApply(t, good, idx+1, &apiv1.Command{Op: &apiv1.Command_AssignVm{AssignVm: &apiv1.AssignVmCommand{
			Name: name, NodeId: 1, Generation: v.GetGeneration(),
		}}}); resp.GetError() != nil {
			t.Fatalf("assign %s: %v", name, resp.GetError())
		}
		idx += 2
	}
	if err := good.CheckCommitted(); err != nil {
		t.Fatalf("a node holding 16 of 16 vCPUs: %v", err)
	}
	b, err := good.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	var snap apiv1.StateSnapshot
	if err := proto.Unmarshal(b, &snap); err != nil {
		t.Fatal(err)
	}
	snap.Nodes[0].Capacity.Vcpus = 4
	b, err = proto.Marshal(&snap)
	if err != nil {
		t.Fatal(err)
	}
	forged, err = state.Restore(b)
	if err != nil {
		t.Fatal(err)
	}
	return good, forged
}

func TestCommittedCapacityChecker(t *testing.T) {
	good, forged := chkOvercommitted(t)
	c := NewCommittedCapacity(nil)
	chkMustNot(t, c.Observe(1, good))
	chkWantViolation(t, c.Observe(2, forged), "committed-capacity")

	t.Run("shadow", func(t *testing.T) {
		// The shadow applies entries one by one and checks after each.
		c := NewCommittedCapacity(chkNew(t))
		entry := func(index uint64, cmd *apiv1.Command) *raftpb.Entry {
			b, err := proto.Marshal(cmd)
			if err != nil {
				t.Fatal(err)
			}
			return &raftpb.Entry{Index: proto.Uint64(index), Term: proto.Uint64(1), Type: raftpb.EntryType_EntryNormal.Enum(), Data: b}
		}
		create := &apiv1.Command{Op: &apiv1.Command_CreateVm{CreateVm: &apiv1.CreateVmCommand{
			Name: "a", Start: true, Spec: &apiv1.VmSpec{Vcpus: 8, MemoryMib: 128},
		}}}
		chkMustNot(t, c.Apply(entry(2, create)))
		chkMustNot(t, c.Apply(entry(3, &apiv1.Command{Op: &apiv1.Command_AssignVm{AssignVm: &apiv1.AssignVmCommand{Name: "a", NodeId: 1, Generation: 2}}})))
		// A second assignment of the same generation is refused, and
		// recorded as refused.
		chkMustNot(t, c.Apply(entry(4, &apiv1.Command{Op: &apiv1.Command_AssignVm{AssignVm: &apiv1.AssignVmCommand{Name: "a", NodeId: 1, Generation: 2}}})))
		if got := c.Applied(); len(got) != 3 || got[1].Err != nil || got[2].Err == nil {
			t.Fatalf("applied log %v: want create and assign accepted, the second assign refused", got)
		}
		// An index out of order is the harness's fault, and said so.
		chkWantViolation(t, c.Apply(entry(9, create)), "committed-capacity")
		// A node at the shadow's index that disagrees with it.
		chkMustNot(t, c.Observe(1, chkShadowTwin(t, c)))
		other := chkNew(t)
		chkApply(t, other, 2, create)
		other.ApplyEmpty(3) // the assignment lost: node 1 holds nothing
		other.ApplyEmpty(4)
		chkWantViolation(t, c.Observe(2, other), "committed-capacity")
	})
}

// chkShadowTwin is a copy of the shadow's state.
func chkShadowTwin(t *testing.T, c *CommittedCapacity) *state.State {
	t.Helper()
	b, err := c.Shadow().Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	st, err := state.Restore(b)
	if err != nil {
		t.Fatal(err)
	}
	return st
}

func TestVMLivenessChecker(t *testing.T) {
	st := chkNew(t)
	for i, name := range []string{"web", "db"} {
		chkApply(t, st, uint64(2+i), &apiv1.Command{Op: &apiv1.Command_CreateVm{CreateVm: &apiv1.CreateVmCommand{
			Name: name, Start: true, Spec: &apiv1.VmSpec{Vcpus: 1, MemoryMib: 128, RestartPolicy: apiv1.RestartPolicy_RESTART_POLICY_ALWAYS},
		}}})
	}
	var c VMLiveness
	d := &DeathWatch{Node: 2, At: time.Second, Deadline: 12 * time.Second, VMs: map[string]uint64{"web": 5, "db": 7}}
	// Both run elsewhere at a later generation.
	chkMustNot(t, c.Verify(d, st, []HostView{
		chkHost(1, 4, 4096, chkVM("web", 6, true, 1, 128)),
		chkHost(2, 4, 4096),
		chkHost(3, 4, 4096, chkVM("db", 8, true, 1, 128)),
	}))
	// db only starting: not yet running again.
	chkWantViolation(t, c.Verify(d, st, []HostView{
		chkHost(1, 4, 4096, chkVM("web", 6, true, 1, 128)),
		chkHost(3, 4, 4096, chkVM("db", 8, false, 1, 128)),
	}), "vm-liveness")
	// web still "runs" on the dead node, at its old generation.
	chkWantViolation(t, c.Verify(d, st, []HostView{
		chkHost(2, 4, 4096, chkVM("web", 5, true, 1, 128)),
		chkHost(3, 4, 4096, chkVM("db", 8, true, 1, 128)),
	}), "vm-liveness")
	// No leader to place them.
	chkWantViolation(t, c.Verify(d, nil, nil), "vm-liveness")
	// A VM no longer wanted running is not owed.
	chkApply(t, st, 4, &apiv1.Command{Op: &apiv1.Command_StopVm{StopVm: &apiv1.StopVmCommand{Name: "db"}}})
	chkMustNot(t, c.Verify(d, st, []HostView{chkHost(1, 4, 4096, chkVM("web", 6, true, 1, 128))}))
}

// Whole-world: a forged second copy of a running VM on another node's
// hypervisor stops the world at the next hypervisor change.
func TestWorldVMOnceFires(t *testing.T) {
	w, c := wlWorld(t, 3)
	wlDo(t, w, c, createReq("web", apiv1.RestartPolicy_RESTART_POLICY_NEVER))
	v := wlAwaitVm(t, w, "web", "running", running)
	other := v.GetNodeId()%3 + 1
	sv := *w.Node(v.GetNodeId()).hyper.vms["web"]
	w.Node(other).hyper.vms["web"] = &sv
	c.Do(createReq("db", apiv1.RestartPolicy_RESTART_POLICY_NEVER))
	chkWantWorldFailure(t, w, w.RunFor(10*time.Second), "vm-once")
}

// Whole-world: a node whose hypervisor is forged to run more than its
// capacity × overcommit stops the world.
func TestWorldCapacityFires(t *testing.T) {
	w, c := wlWorld(t, 3)
	wlDo(t, w, c, createReq("web", apiv1.RestartPolicy_RESTART_POLICY_NEVER))
	v := wlAwaitVm(t, w, "web", "running", running)
	w.Node(v.GetNodeId()).hyper.vms["web"].need = &apiv1.Resources{Vcpus: 17, MemoryMib: 128}
	c.Do(createReq("db", apiv1.RestartPolicy_RESTART_POLICY_NEVER))
	chkWantWorldFailure(t, w, w.RunFor(10*time.Second), "capacity")
}

// Whole-world: a death watched with a VM that nobody will run again fires
// at its deadline.
func TestWorldVMLivenessFires(t *testing.T) {
	w, _ := wlWorld(t, 3)
	w.WatchDeath(1)
	w.chk.liveness.watches[0].VMs["ghost"] = 1
	// The forged VM must exist, wanted running, for the checker to owe it.
	c := w.NewClient(ClientOptions{})
	req := createReq("ghost", apiv1.RestartPolicy_RESTART_POLICY_ALWAYS)
	req.GetCreateVm().Spec.Constraints = map[string]string{"nowhere": "true"}
	c.Do(req)
	chkWantWorldFailure(t, w, w.RunFor(w.RescheduleBound()+time.Second), "vm-liveness")
}

// Whole-world: a shadow replica forged to show a node committed beyond its
// capacity stops the world at the next applied entry.
func TestWorldCommittedCapacityFires(t *testing.T) {
	w, c := wlWorld(t, 3)
	wlDo(t, w, c, createReq("web", apiv1.RestartPolicy_RESTART_POLICY_NEVER))
	v := wlAwaitVm(t, w, "web", "running", running)
	b, err := w.chk.committed.Shadow().Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	var snap apiv1.StateSnapshot
	if err := proto.Unmarshal(b, &snap); err != nil {
		t.Fatal(err)
	}
	for _, n := range snap.Nodes {
		if n.GetId() == v.GetNodeId() {
			n.Capacity.Vcpus = 0
		}
	}
	if b, err = proto.Marshal(&snap); err != nil {
		t.Fatal(err)
	}
	if w.chk.committed.shadow, err = state.Restore(b); err != nil {
		t.Fatal(err)
	}
	c.Do(createReq("db", apiv1.RestartPolicy_RESTART_POLICY_NEVER))
	chkWantWorldFailure(t, w, w.RunFor(10*time.Second), "committed-capacity")
}
