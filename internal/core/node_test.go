package core_test

import (
	"bytes"
	"fmt"
	"testing"

	"go.etcd.io/raft/v3"
	"google.golang.org/protobuf/proto"

	apiv1 "github.com/blixard/blixard/api/v1"
	"github.com/blixard/blixard/internal/core"
)

func TestSingleNodeElectsItselfAndApplies(t *testing.T) {
	h := newHarness(t, 1, 1, nil)
	if l := h.waitLeader(); l != 1 {
		t.Fatalf("leader = %d, want 1", l)
	}
	resp := mustOK(t, h.do(1, createVm("c1", "web", true)))
	vm := resp.GetCreateVm().GetVm()
	if vm.GetName() != "web" || vm.GetState() != apiv1.VmState_VM_STATE_PENDING || vm.GetDesiredState() != apiv1.VmDesiredState_VM_DESIRED_STATE_RUNNING {
		t.Fatalf("created VM = %v", vm)
	}
	for _, stale := range []bool{false, true} {
		got := mustOK(t, h.do(1, getVm("web", stale))).GetGetVm().GetVm()
		if !proto.Equal(got, vm) {
			t.Fatalf("get (stale=%v) = %v, want %v", stale, got, vm)
		}
	}
	h.waitApplied(h.nodes[1].node.State().AppliedIndex() + 1) // registration and cluster id
	for i := 0; i < 3*core.DefaultRegisterEveryTicks; i++ {
		h.tick()
	}
	st := mustOK(t, h.do(1, &apiv1.Request{Kind: &apiv1.Request_GetClusterStatus{GetClusterStatus: &apiv1.GetClusterStatusRequest{}}})).GetGetClusterStatus()
	if st.GetLeaderId() != 1 || st.GetCluster().GetId() != "test-cluster" || len(st.GetNodes()) != 1 || st.GetNodes()[0].GetAddress() != "127.0.0.1:7001" {
		t.Fatalf("cluster status = %v", st)
	}
}

func TestThreeNodesElectOneLeaderAndApplyInSameOrder(t *testing.T) {
	h := newHarness(t, 2, 3, nil)
	leader := h.waitLeader()
	leaders := 0
	for _, id := range h.ids {
		if h.nodes[id].node.Status().RaftState == raft.StateLeader {
			leaders++
		}
	}
	if leaders != 1 {
		t.Fatalf("%d leaders, want 1", leaders)
	}
	// Writes pipelined through the leader: creates and submits first, then
	// (once the VMs exist) stops, each round many requests in flight at once.
	for round := 0; round < 2; round++ {
		var rids []core.RequestID
		for i := 0; i < 60; i++ {
			var req *apiv1.Request
			switch {
			case round == 1 && i%3 == 0:
				req = &apiv1.Request{Kind: &apiv1.Request_StopVm{StopVm: &apiv1.StopVmRequest{ClientRequestId: fmt.Sprintf("s%d", i), Name: fmt.Sprintf("vm-%d", i)}}}
			case round == 1:
				continue
			case i%3 == 0:
				req = createVm(fmt.Sprintf("c%d", i), fmt.Sprintf("vm-%d", i), i%2 == 0)
			default:
				req = submitTask(fmt.Sprintf("t%d", i))
			}
			rids = append(rids, h.send(leader, req))
		}
		for _, rid := range rids {
			mustOK(t, h.await(rid))
		}
	}
	target := h.nodes[leader].node.State().AppliedIndex()
	h.waitApplied(target)
	for i := 0; i < 5; i++ {
		h.tick()
	}
	// Same commands in the same order give the same state, byte for byte,
	// including the request table that records each write's log index.
	want := h.stateBytes(leader)
	for _, id := range h.ids {
		if got := h.stateBytes(id); !bytes.Equal(got, want) {
			t.Fatalf("node %d state differs from leader %d's", id, leader)
		}
	}
	if got := len(h.nodes[leader].node.State().Vms(0)); got != 20 {
		t.Fatalf("%d VMs, want 20", got)
	}
}

func TestFollowerAnswersNotLeaderWithLeaderAddress(t *testing.T) {
	h := newHarness(t, 3, 3, nil)
	leader := h.waitLeader()
	for i := 0; i < 2*core.DefaultRegisterEveryTicks; i++ { // let every node register
		h.tick()
	}
	follower := h.ids[0]
	if follower == leader {
		follower = h.ids[1]
	}
	resp := h.do(follower, createVm("c1", "web", false))
	e := resp.GetError()
	if e.GetCode() != apiv1.ErrorCode_ERROR_CODE_NOT_LEADER || e.GetLeaderId() != leader ||
		e.GetLeaderAddress() != fmt.Sprintf("127.0.0.1:%d", 7000+leader) {
		t.Fatalf("write on follower = %v, want NOT_LEADER naming %d", resp, leader)
	}
	if _, ok := h.nodes[follower].node.State().Vm("web"); ok {
		t.Fatalf("a refused write changed the state")
	}
	// Reads are served on followers, linearizable by default.
	mustOK(t, h.do(leader, createVm("c2", "web", false)))
	got := mustOK(t, h.do(follower, getVm("web", false)))
	if got.GetGetVm().GetVm().GetName() != "web" {
		t.Fatalf("linearizable read on follower = %v", got)
	}
}

func TestRetriedRequestIDReturnsFirstResponseAndChangesNothing(t *testing.T) {
	h := newHarness(t, 4, 3, nil)
	leader := h.waitLeader()
	first := mustOK(t, h.do(leader, submitTask("sub-1")))
	applied := h.nodes[leader].node.State().AppliedIndex()
	before := h.stateBytes(leader)
	second := h.do(leader, submitTask("sub-1"))
	if !proto.Equal(first, second) {
		t.Fatalf("retry answered %v, first answer was %v", second, first)
	}
	if got := h.nodes[leader].node.State().AppliedIndex(); got != applied {
		t.Fatalf("retry was proposed: applied %d -> %d", applied, got)
	}
	if !bytes.Equal(before, h.stateBytes(leader)) {
		t.Fatalf("retry changed the state")
	}
	// Two copies in flight at once: one entry, one task, the same answer.
	a := h.send(leader, submitTask("sub-2"))
	b := h.send(leader, submitTask("sub-2"))
	ra, rb := mustOK(t, h.await(a)), mustOK(t, h.await(b))
	if !proto.Equal(ra, rb) {
		t.Fatalf("concurrent copies answered differently: %v vs %v", ra, rb)
	}
	tasks := mustOK(t, h.do(leader, listTasks())).GetListTasks().GetTasks()
	if len(tasks) != 2 {
		t.Fatalf("%d tasks, want 2", len(tasks))
	}
	// A retry that reaches a different node after the write applied gets the
	// remembered response there too.
	for _, id := range h.ids {
		h.waitApplied(h.nodes[leader].node.State().AppliedIndex())
		if got := h.do(id, submitTask("sub-1")); !proto.Equal(got, first) {
			t.Fatalf("retry on node %d answered %v", id, got)
		}
	}
}

func TestInvalidWriteIsRejectedAndNotProposed(t *testing.T) {
	h := newHarness(t, 5, 1, nil)
	h.waitLeader()
	applied := h.nodes[1].node.State().AppliedIndex()
	req := createVm("bad", "web", true)
	req.GetCreateVm().Spec.MemoryMib = 0
	e := h.do(1, req).GetError()
	if e.GetCode() != apiv1.ErrorCode_ERROR_CODE_INVALID_ARGUMENT || e.GetField() != "spec.memory_mib" {
		t.Fatalf("error = %v, want INVALID_ARGUMENT on spec.memory_mib", e)
	}
	if got := h.nodes[1].node.State().AppliedIndex(); got != applied {
		t.Fatalf("an invalid write was proposed: applied %d -> %d", applied, got)
	}
	noKey := createVm("", "web", true)
	if e := h.do(1, noKey).GetError(); e.GetField() != "client_request_id" {
		t.Fatalf("write without a client request id: %v", e)
	}
	if e := h.do(1, &apiv1.Request{}).GetError(); e.GetCode() != apiv1.ErrorCode_ERROR_CODE_INVALID_ARGUMENT {
		t.Fatalf("empty request: %v", e)
	}
}

func TestDroppedProposalAnswersUnavailable(t *testing.T) {
	// A leader whose uncommitted log is full drops proposals.
	h := newHarness(t, 6, 1, func(c *core.Config) { c.MaxUncommittedBytes = 1 })
	h.waitLeader()
	a := h.send(1, submitTask("a"))
	b := h.send(1, submitTask("b"))
	if e := h.await(b).GetError(); e.GetCode() != apiv1.ErrorCode_ERROR_CODE_UNAVAILABLE {
		t.Fatalf("second proposal = %v, want UNAVAILABLE", e)
	}
	mustOK(t, h.await(a))
	// Nothing of the dropped one was applied; a retry goes through.
	mustOK(t, h.do(1, submitTask("b")))
	if n := len(mustOK(t, h.do(1, listTasks())).GetListTasks().GetTasks()); n != 2 {
		t.Fatalf("%d tasks, want 2", n)
	}
}

func TestLeadershipLossAnswersOutcomeUnknown(t *testing.T) {
	h := newHarness(t, 7, 3, nil)
	leader := h.waitLeader()
	h.isolate(leader)
	rid := h.send(leader, submitTask("lost"))
	e := h.await(rid).GetError()
	if e.GetCode() != apiv1.ErrorCode_ERROR_CODE_OUTCOME_UNKNOWN {
		t.Fatalf("write on a cut-off leader = %v, want OUTCOME_UNKNOWN", e)
	}
	// A read on a node with no leader answers UNAVAILABLE, not silence.
	if e := h.do(leader, listTasks()).GetError(); e.GetCode() != apiv1.ErrorCode_ERROR_CODE_UNAVAILABLE {
		t.Fatalf("read on a cut-off node = %v, want UNAVAILABLE", e)
	}
	h.heal()
	newLeader := h.waitLeader()
	// The retry is applied at most once, whatever happened to the first try.
	mustOK(t, h.do(newLeader, submitTask("lost")))
	if n := len(mustOK(t, h.do(newLeader, listTasks())).GetListTasks().GetTasks()); n != 1 {
		t.Fatalf("%d tasks, want 1", n)
	}
}

func TestLaggingFollowerCatchesUpThroughSnapshot(t *testing.T) {
	h := newHarness(t, 8, 3, nil)
	leader := h.waitLeader()
	lagging := h.ids[0]
	if lagging == leader {
		lagging = h.ids[1]
	}
	h.isolate(lagging)
	const writes = 20000
	const batch = 1000
	for done := 0; done < writes; done += batch {
		rids := make([]core.RequestID, 0, batch)
		for i := done; i < done+batch; i++ {
			rids = append(rids, h.send(leader, submitTask(fmt.Sprintf("w%d", i))))
		}
		for _, rid := range rids {
			mustOK(t, h.await(rid))
		}
	}
	leaderApplied := h.nodes[leader].node.State().AppliedIndex()
	if lagApplied := h.nodes[lagging].node.State().AppliedIndex(); leaderApplied-lagApplied < writes {
		t.Fatalf("follower is only %d entries behind", leaderApplied-lagApplied)
	}
	h.heal()
	h.waitApplied(leaderApplied)
	if h.snapsDelivered[lagging] == 0 {
		t.Fatalf("follower caught up without a snapshot")
	}
	h.settle()
	if !bytes.Equal(h.stateBytes(lagging), h.stateBytes(leader)) {
		t.Fatalf("caught-up follower's state differs from the leader's")
	}
	// And it keeps up from there: a new write applies everywhere.
	mustOK(t, h.do(leader, submitTask("after")))
	h.waitApplied(h.nodes[leader].node.State().AppliedIndex())
	// The caught-up node restarts from its own disk into the same state.
	want := h.stateBytes(lagging)
	h.stop(lagging)
	h.start(lagging)
	h.settle()
	if !bytes.Equal(h.stateBytes(lagging), want) {
		t.Fatalf("state after restart differs")
	}
}

func TestRestartKeepsTermVoteLogAndState(t *testing.T) {
	for _, mode := range []string{"clean stop", "crash"} {
		t.Run(mode, func(t *testing.T) {
			h := newHarness(t, 9, 3, func(c *core.Config) { c.SnapshotEntries = 25 })
			leader := h.waitLeader()
			for i := 0; i < 40; i++ {
				mustOK(t, h.do(leader, createVm(fmt.Sprintf("c%d", i), fmt.Sprintf("vm-%d", i), true)))
			}
			h.waitApplied(h.nodes[leader].node.State().AppliedIndex())
			id := h.ids[2]
			before := h.nodes[id].node.Status()
			lastBefore := h.nodes[id].node.State().AppliedIndex()
			stateBefore := h.stateBytes(id)
			if mode == "crash" {
				h.crash(id)
			} else {
				h.stop(id)
			}
			h.start(id)
			after := h.nodes[id].node.Status()
			// Term, vote and log are always synced. The commit index is
			// synced only when something else in its Ready had to be (raft
			// does not need it durable), so a crash may take it back a little.
			if after.GetTerm() != before.GetTerm() || after.GetVote() != before.GetVote() {
				t.Fatalf("hard state after restart = term %d vote %d, before term %d vote %d",
					after.GetTerm(), after.GetVote(), before.GetTerm(), before.GetVote())
			}
			if last := h.nodes[id].node.LastIndex(); last < before.GetCommit() {
				t.Fatalf("log after restart ends at %d, before it held %d committed entries", last, before.GetCommit())
			}
			if mode == "clean stop" && after.GetCommit() != before.GetCommit() {
				t.Fatalf("commit after a clean stop = %d, before %d", after.GetCommit(), before.GetCommit())
			}
			// Without hearing from anyone, the node re-applies its own log
			// up to the commit index it knows.
			h.process()
			if got := h.nodes[id].node.State().AppliedIndex(); got != after.GetCommit() {
				t.Fatalf("applied %d after restart, commit index %d", got, after.GetCommit())
			}
			if mode == "clean stop" && !bytes.Equal(h.stateBytes(id), stateBefore) {
				t.Fatalf("state after restart differs from before")
			}
			// Once it hears from the leader, it is where the others are.
			h.tick()
			h.waitApplied(max(lastBefore, h.nodes[leader].node.State().AppliedIndex()))
			if !bytes.Equal(h.stateBytes(id), h.stateBytes(leader)) {
				t.Fatalf("state after catching up differs from the leader's")
			}
			// It rejoins as it was and keeps applying.
			mustOK(t, h.do(leader, createVm("after", "vm-after", false)))
			h.waitApplied(h.nodes[leader].node.State().AppliedIndex())
			if _, ok := h.nodes[id].node.State().Vm("vm-after"); !ok {
				t.Fatalf("restarted node did not apply new writes")
			}
		})
	}
}

func TestSameSeedSameRun(t *testing.T) {
	run := func() [32]byte {
		h := newHarness(t, 42, 3, nil)
		leader := h.waitLeader()
		for i := 0; i < 20; i++ {
			h.send(leader, submitTask(fmt.Sprintf("k%d", i)))
			h.tick()
		}
		h.isolate(leader)
		for i := 0; i < 40; i++ {
			h.tick()
		}
		h.heal()
		h.waitLeader()
		return h.digest
	}
	a, b := run(), run()
	if a != b {
		t.Fatalf("two runs from seed 42 differ: %x vs %x", a, b)
	}
}
