package core_test

import (
	"bytes"
	"fmt"
	"testing"
	"time"

	"go.etcd.io/raft/v3"
	"google.golang.org/protobuf/proto"

	apiv1 "github.com/blixard/blixard/api/v1"
	"github.com/blixard/blixard/internal/core"
	"github.com/blixard/blixard/sim"
)

// The node's behaviour as its callers see it, on whole simulated clusters
// (see world_test.go). Each test holds for every seed.

func TestSingleNodeElectsItselfAndApplies(t *testing.T) {
	w := sim.NewT(t, sim.BaseSeed(t), sim.Options{Nodes: 1})
	if l := awaitLeader(t, w); l != 1 {
		fail(t, w, "leader = %d, want 1", l)
	}
	awaitSettled(t, w) // the node has registered: it offers the default image

	// A write is applied and answered with what it made.
	c := w.NewClient(sim.ClientOptions{})
	vm := mustOK(t, w, do(t, w, c, createVm("", "web", true))).GetCreateVm().GetVm()
	if vm.GetName() != "web" || vm.GetState() != apiv1.VmState_VM_STATE_PENDING || vm.GetDesiredState() != apiv1.VmDesiredState_VM_DESIRED_STATE_RUNNING {
		fail(t, w, "created VM = %v", vm)
	}

	// Linearizable and stale reads both see it.
	for _, stale := range []bool{false, true} {
		got := mustOK(t, w, do(t, w, c, getVm("web", stale))).GetGetVm().GetVm()
		if !proto.Equal(got, vm) {
			fail(t, w, "get (stale=%v) = %v, want %v", stale, got, vm)
		}
	}

	// Once the node has recorded itself and the cluster its id, the cluster
	// status says so.
	awaitSettled(t, w)
	st := mustOK(t, w, do(t, w, c, clusterStatus())).GetGetClusterStatus()
	if st.GetLeaderId() != 1 || st.GetCluster().GetId() != fmt.Sprintf("sim-%d", w.Seed()) ||
		len(st.GetNodes()) != 1 || st.GetNodes()[0].GetAddress() != "sim-node-1:7000" {
		fail(t, w, "cluster status = %v", st)
	}
}

func TestThreeNodesElectOneLeaderAndApplyInSameOrder(t *testing.T) {
	w := sim.NewT(t, sim.BaseSeed(t), sim.Options{Nodes: 3})
	leader := awaitLeader(t, w)
	if ls := leaders(w); len(ls) != 1 || ls[0] != leader {
		fail(t, w, "leaders %v, want exactly [%d]", ls, leader)
	}
	awaitSettled(t, w)

	// Twenty clients at once, each through any node: create a VM, submit
	// two tasks, then (the VM made) stop it. Eighty writes, many in flight
	// at any moment.
	const vms = 20
	for i := 0; i < vms; i++ {
		c := w.NewClient(sim.ClientOptions{})
		name := fmt.Sprintf("vm-%d", i)
		c.Do(createVm("", name, i%2 == 0))
		c.Do(submitTask(""))
		c.Do(submitTask(""))
		c.Do(stopVm("", name))
	}
	await(t, w, "eighty writes answered", w.ClientsIdle, time.Minute)
	for _, op := range w.History().Ops() {
		if !op.Acked() {
			fail(t, w, "write %q answered %v", op.Key, op.Resp)
		}
	}

	// Same commands in the same order give the same state, byte for byte,
	// including the request table that records each write's log index.
	leader = awaitConverged(t, w)
	for _, id := range w.IDs() {
		assertSameStateAs(t, w, id, leader)
	}
	st := coreOf(w, leader).State()
	if got := len(st.Vms(0)); got != vms {
		fail(t, w, "%d VMs, want %d", got, vms)
	}
	for _, vm := range st.Vms(0) {
		if vm.GetDesiredState() != apiv1.VmDesiredState_VM_DESIRED_STATE_STOPPED {
			fail(t, w, "VM %s wants %s after its stop", vm.GetName(), vm.GetDesiredState())
		}
	}
	if got := len(st.Tasks(0)); got != 2*vms {
		fail(t, w, "%d tasks, want %d", got, 2*vms)
	}
}

func TestFollowerAnswersNotLeaderWithLeaderAddress(t *testing.T) {
	w := sim.NewT(t, sim.BaseSeed(t), sim.Options{Nodes: 3})
	leader := awaitLeader(t, w)
	awaitSettled(t, w) // every node knows every address
	follower := w.IDs()[0]
	if follower == leader {
		follower = w.IDs()[1]
	}

	// A write sent straight to a follower is refused with the leader's id
	// and address.
	resp := do(t, w, rawTo(w, follower), createVm("c1", "web", false))
	e := resp.GetError()
	if e.GetCode() != apiv1.ErrorCode_ERROR_CODE_NOT_LEADER || e.GetLeaderId() != leader ||
		e.GetLeaderAddress() != fmt.Sprintf("sim-node-%d:7000", leader) {
		fail(t, w, "write on follower %d = %v, want NOT_LEADER naming %d", follower, resp, leader)
	}

	// It changed nothing, anywhere.
	awaitConverged(t, w)
	for _, id := range w.IDs() {
		if _, ok := coreOf(w, id).State().Vm("web"); ok {
			fail(t, w, "a refused write made VM web on node %d", id)
		}
		if r, ok := coreOf(w, id).State().Response("c1"); ok {
			fail(t, w, "node %d remembers the refused write as %v", id, r)
		}
	}

	// Reads are served on followers, linearizable by default: a read there
	// sees a write the leader has acknowledged.
	mustOK(t, w, do(t, w, rawTo(w, leader), createVm("c2", "web", false)))
	got := mustOK(t, w, do(t, w, rawTo(w, follower), getVm("web", false)))
	if got.GetGetVm().GetVm().GetName() != "web" {
		fail(t, w, "linearizable read on follower %d = %v", follower, got)
	}
}

func TestRetriedRequestIDReturnsFirstResponseAndChangesNothing(t *testing.T) {
	w := sim.NewT(t, sim.BaseSeed(t), sim.Options{Nodes: 3})
	leader := awaitLeader(t, w)
	awaitSettled(t, w) // from here on only the clients propose
	toLeader := rawTo(w, leader)

	// A retry after the write applied gets the first answer and is not
	// proposed again.
	first := mustOK(t, w, do(t, w, toLeader, submitTask("sub-1")))
	applied, last := coreOf(w, leader).State().AppliedIndex(), coreOf(w, leader).LastIndex()
	before := stateBytes(t, w, leader)
	second := do(t, w, rawTo(w, leader), submitTask("sub-1"))
	if !proto.Equal(first, second) {
		fail(t, w, "retry answered %v, first answer was %v", second, first)
	}
	if got, gotLast := coreOf(w, leader).State().AppliedIndex(), coreOf(w, leader).LastIndex(); got != applied || gotLast != last {
		fail(t, w, "retry was proposed: applied %d -> %d, last index %d -> %d", applied, got, last, gotLast)
	}
	if !bytes.Equal(before, stateBytes(t, w, leader)) {
		fail(t, w, "retry changed the state")
	}

	// Two copies in flight at once, from two clients at the same instant:
	// one entry, one task, the same answer to both.
	a, b := rawTo(w, leader), rawTo(w, leader)
	a.Do(submitTask("sub-2"))
	b.Do(submitTask("sub-2"))
	ra, rb := mustOK(t, w, awaitAnswer(t, w, a)), mustOK(t, w, awaitAnswer(t, w, b))
	if !proto.Equal(ra, rb) {
		fail(t, w, "concurrent copies answered differently: %v vs %v", ra, rb)
	}
	if got := coreOf(w, leader).LastIndex(); got != last+1 {
		fail(t, w, "two copies of one write took %d entries, want 1", got-last)
	}
	tasks := mustOK(t, w, do(t, w, toLeader, listTasks())).GetListTasks().GetTasks()
	if len(tasks) != 2 {
		fail(t, w, "%d tasks, want 2", len(tasks))
	}

	// A retry that reaches a different node after the write applied there
	// gets the remembered response too.
	for _, id := range w.IDs() {
		await(t, w, fmt.Sprintf("node %d applied the writes", id), func() bool {
			return coreOf(w, id).State().AppliedIndex() >= coreOf(w, leader).State().AppliedIndex()
		}, convergeBound)
		if got := do(t, w, rawTo(w, id), submitTask("sub-1")); !proto.Equal(got, first) {
			fail(t, w, "retry on node %d answered %v, first answer was %v", id, got, first)
		}
	}
	if got := coreOf(w, leader).LastIndex(); got != last+1 {
		fail(t, w, "retries on other nodes were proposed: last index %d, want %d", got, last+1)
	}
}

func TestInvalidWriteIsRejectedAndNotProposed(t *testing.T) {
	w := sim.NewT(t, sim.BaseSeed(t), sim.Options{Nodes: 1})
	awaitLeader(t, w)
	awaitSettled(t, w) // from here on only the clients propose
	node := coreOf(w, 1)
	applied, last := node.State().AppliedIndex(), node.LastIndex()

	// A spec no state could accept is refused at once, naming the field.
	bad := createVm("bad", "web", true)
	bad.GetCreateVm().Spec.MemoryMib = 0
	if e := do(t, w, rawTo(w, 1), bad).GetError(); e.GetCode() != apiv1.ErrorCode_ERROR_CODE_INVALID_ARGUMENT || e.GetField() != "spec.memory_mib" {
		fail(t, w, "error = %v, want INVALID_ARGUMENT on spec.memory_mib", e)
	}

	// A write without a client request id (from a client that sends none).
	noKey := w.NewClient(sim.ClientOptions{Target: 1, Raw: true, MaxAttempts: 1, AttemptTimeout: answerBound, NoKey: true})
	if e := do(t, w, noKey, createVm("", "web", true)).GetError(); e.GetCode() != apiv1.ErrorCode_ERROR_CODE_INVALID_ARGUMENT || e.GetField() != "client_request_id" {
		fail(t, w, "write without a client request id: %v, want INVALID_ARGUMENT on client_request_id", e)
	}

	// A request that asks for nothing.
	if e := do(t, w, rawTo(w, 1), &apiv1.Request{}).GetError(); e.GetCode() != apiv1.ErrorCode_ERROR_CODE_INVALID_ARGUMENT {
		fail(t, w, "empty request: %v, want INVALID_ARGUMENT", e)
	}

	// None of them was proposed.
	if gotApplied, gotLast := node.State().AppliedIndex(), node.LastIndex(); gotApplied != applied || gotLast != last {
		fail(t, w, "refused writes were proposed: applied %d -> %d, last index %d -> %d", applied, gotApplied, last, gotLast)
	}
	if _, ok := node.State().Vm("web"); ok {
		fail(t, w, "a refused write made VM web")
	}
}

func TestDroppedProposalAnswersUnavailable(t *testing.T) {
	// A leader whose uncommitted log is full drops proposals: with a limit
	// of one byte, any entry waiting for its quorum fills it. Every message
	// takes exactly 5 ms, so requests sent at one instant reach the leader
	// at one instant, the second while the first waits for its quorum (a
	// round trip of 10 ms).
	w := sim.NewT(t, sim.BaseSeed(t), sim.Options{
		Nodes:      3,
		MinLatency: 5 * time.Millisecond, MaxLatency: 5 * time.Millisecond,
		Core: func(c *core.Config) { c.MaxUncommittedBytes = 1 },
	})
	leader := awaitLeader(t, w)
	awaitSettled(t, w) // nothing uncommitted, nothing else proposed

	a, b := rawTo(w, leader), rawTo(w, leader)
	a.Do(submitTask("a"))
	b.Do(submitTask("b"))
	ra, rb := awaitAnswer(t, w, a), awaitAnswer(t, w, b)
	accepted, dropped, droppedKey := ra, rb, "b"
	if ra.GetError() != nil {
		accepted, dropped, droppedKey = rb, ra, "a"
	}
	mustOK(t, w, accepted)
	if e := dropped.GetError(); e.GetCode() != apiv1.ErrorCode_ERROR_CODE_UNAVAILABLE {
		fail(t, w, "of two writes at once, one answered %v, the other %v; want one OK and one UNAVAILABLE", ra, rb)
	}

	// Nothing of the dropped one was applied anywhere; a retry goes through.
	awaitConverged(t, w)
	for _, id := range w.IDs() {
		if r, ok := coreOf(w, id).State().Response(droppedKey); ok {
			fail(t, w, "node %d applied dropped write %q: %v", id, droppedKey, r)
		}
	}
	mustOK(t, w, do(t, w, rawTo(w, leader), submitTask(droppedKey)))
	if n := len(mustOK(t, w, do(t, w, rawTo(w, leader), listTasks())).GetListTasks().GetTasks()); n != 2 {
		fail(t, w, "%d tasks, want 2", n)
	}
}

func TestLeadershipLossAnswersOutcomeUnknown(t *testing.T) {
	w := sim.NewT(t, sim.BaseSeed(t), sim.Options{Nodes: 3})
	old := awaitLeader(t, w)
	awaitSettled(t, w)
	others := make([]uint64, 0, 2)
	for _, id := range w.IDs() {
		if id != old {
			others = append(others, id)
		}
	}

	// The leader loses its peers; its client still reaches it. The write it
	// takes cannot commit, and when it steps down (CheckQuorum) it cannot
	// say whether the write will yet apply.
	w.Net().Partition([]uint64{old})
	stubborn := rawTo(w, old)
	if e := do(t, w, stubborn, submitTask("lost")).GetError(); e.GetCode() != apiv1.ErrorCode_ERROR_CODE_OUTCOME_UNKNOWN {
		fail(t, w, "write on a cut-off leader = %v, want OUTCOME_UNKNOWN", e)
	}
	if bs := status(w, old); bs.RaftState == raft.StateLeader {
		fail(t, w, "node %d answered OUTCOME_UNKNOWN while still leading term %d", old, bs.GetTerm())
	}

	// A read on a node with no leader answers UNAVAILABLE, not silence.
	if e := do(t, w, stubborn, listTasks()).GetError(); e.GetCode() != apiv1.ErrorCode_ERROR_CODE_UNAVAILABLE {
		fail(t, w, "read on a cut-off node = %v, want UNAVAILABLE", e)
	}

	// The others elect a new leader; the cut heals.
	await(t, w, "a new leader of the others", func() bool { return leaderOf(w, others...) != 0 }, electionBound)
	w.Net().Heal()
	leader := awaitConverged(t, w)

	// The retry on the new leader is applied at most once, whatever became
	// of the first try.
	mustOK(t, w, do(t, w, w.NewClient(sim.ClientOptions{Target: leader}), submitTask("lost")))
	if n := len(mustOK(t, w, do(t, w, rawTo(w, leader), listTasks())).GetListTasks().GetTasks()); n != 1 {
		fail(t, w, "%d tasks, want 1", n)
	}
	awaitConverged(t, w)
	for _, id := range w.IDs() {
		if n := len(coreOf(w, id).State().Tasks(0)); n != 1 {
			fail(t, w, "node %d holds %d tasks, want 1", id, n)
		}
	}
}

func TestLaggingFollowerCatchesUpThroughSnapshot(t *testing.T) {
	start := time.Now()
	w := sim.NewT(t, sim.BaseSeed(t), sim.Options{Nodes: 3})
	leader := awaitLeader(t, w)
	awaitSettled(t, w) // from here on only the clients propose
	lagging := w.IDs()[0]
	if lagging == leader {
		lagging = w.IDs()[1]
	}

	// The follower is cut off while the leader commits twice as many
	// entries as it snapshots after (core.DefaultSnapshotEntries), far more
	// than it keeps behind a snapshot (core.DefaultTrailingEntries).
	w.Net().Partition([]uint64{lagging})
	const clients, each = 20, 1000
	for i := 0; i < clients; i++ {
		c := w.NewClient(sim.ClientOptions{Target: leader})
		for j := 0; j < each; j++ {
			c.Do(submitTask(""))
		}
	}
	await(t, w, "twenty thousand writes answered", w.ClientsIdle, 10*time.Minute)
	if acked, _, _, _, _ := w.History().Summary(); acked != clients*each {
		fail(t, w, "%d of %d writes acknowledged", acked, clients*each)
	}
	leaderApplied := coreOf(w, leader).State().AppliedIndex()
	if behind := leaderApplied - coreOf(w, lagging).State().AppliedIndex(); behind < clients*each {
		fail(t, w, "follower is only %d entries behind", behind)
	}

	// Healed, it catches up through a snapshot, into the leader's state.
	w.Net().Heal()
	leader = awaitConverged(t, w)
	if w.Node(lagging).SnapshotsReceived() == 0 {
		fail(t, w, "follower %d caught up without a snapshot", lagging)
	}
	assertSameStateAs(t, w, lagging, leader)

	// And it keeps up from there: a new write applies everywhere.
	mustOK(t, w, do(t, w, w.NewClient(sim.ClientOptions{Target: leader}), submitTask("after")))
	leader = awaitConverged(t, w)
	assertSameStateAs(t, w, lagging, leader)

	// The caught-up node restarts from its own disk into the same state,
	// the leader's.
	want := stateBytes(t, w, lagging)
	w.Crash(lagging)
	w.Must(t, w.Restart(lagging))
	leader = awaitConverged(t, w)
	if !bytes.Equal(stateBytes(t, w, lagging), want) {
		fail(t, w, "node %d's state after its restart differs from before", lagging)
	}
	assertSameStateAs(t, w, lagging, leader)
	t.Logf("%d writes, snapshot catch-up and restart in %s of wall time", clients*each, time.Since(start))
}

func TestRestartKeepsTermVoteLogAndState(t *testing.T) {
	// Snapshots every 25 entries, so that the restart loads a snapshot and
	// the log after it.
	w := sim.NewT(t, sim.BaseSeed(t), sim.Options{Nodes: 3, Core: func(c *core.Config) { c.SnapshotEntries = 25 }})
	awaitLeader(t, w)
	c := w.NewClient(sim.ClientOptions{})
	for i := 0; i < 40; i++ {
		c.Do(createVm("", fmt.Sprintf("vm-%d", i), true))
	}
	await(t, w, "forty writes answered", c.Idle, time.Minute)
	awaitConverged(t, w)

	// Node 3 (a follower or the leader, as the seed has it) crashes and
	// restarts from its store.
	const id = 3
	before := status(w, id)
	lastBefore := coreOf(w, id).LastIndex()
	w.Crash(id)
	w.Must(t, w.Restart(id))
	after := status(w, id)

	// Term, vote and log are always synced. The commit index is synced only
	// when something else in its Ready had to be (raft does not need it
	// durable), so a crash may take it back a little.
	if after.GetTerm() != before.GetTerm() || after.GetVote() != before.GetVote() {
		fail(t, w, "hard state after restart = term %d vote %d, before term %d vote %d",
			after.GetTerm(), after.GetVote(), before.GetTerm(), before.GetVote())
	}
	if last := coreOf(w, id).LastIndex(); last != lastBefore {
		fail(t, w, "log after restart ends at %d, before at %d", last, lastBefore)
	}
	if after.GetCommit() > before.GetCommit() {
		fail(t, w, "commit after restart %d, beyond the %d it had", after.GetCommit(), before.GetCommit())
	}

	// Without hearing from anyone, the node has re-applied its own log up
	// to the commit index it knows.
	if got := coreOf(w, id).State().AppliedIndex(); got != after.GetCommit() {
		fail(t, w, "applied %d after restart, commit index %d", got, after.GetCommit())
	}

	// Once it hears from the leader, it is where the others are.
	leader := awaitConverged(t, w)
	assertSameStateAs(t, w, id, leader)

	// It rejoins as it was and keeps applying.
	mustOK(t, w, do(t, w, c, createVm("", "vm-after", false)))
	awaitConverged(t, w)
	if _, ok := coreOf(w, id).State().Vm("vm-after"); !ok {
		fail(t, w, "restarted node %d did not apply a new write", id)
	}
}

func TestSameSeedSameRun(t *testing.T) {
	// Writes, a cut-off leader and a heal, run twice from one seed, leave
	// the same trace hash: every message, batch, response and applied state.
	run := func(t *testing.T, seed uint64) string {
		w := sim.NewT(t, seed, sim.Options{Nodes: 3})
		leader := awaitLeader(t, w)
		c := w.NewClient(sim.ClientOptions{})
		for i := 0; i < 10; i++ {
			c.Do(submitTask(""))
		}
		w.Must(t, w.RunFor(time.Second))
		w.Net().Partition([]uint64{leader})
		for i := 0; i < 10; i++ {
			c.Do(submitTask(""))
		}
		w.Must(t, w.RunFor(4*time.Second))
		w.Net().Heal()
		await(t, w, "the writes answered", w.ClientsIdle, time.Minute)
		awaitConverged(t, w)
		return w.TraceHash()
	}
	seed := sim.BaseSeed(t)
	var hashes [2]string
	for i := range hashes {
		t.Run(fmt.Sprintf("run-%d", i+1), func(t *testing.T) { hashes[i] = run(t, seed) })
	}
	if hashes[0] == "" || hashes[1] == "" {
		return // a run failed and said why
	}
	if hashes[0] != hashes[1] {
		t.Fatalf("two runs from seed %d differ: trace hash %s, then %s", seed, hashes[0], hashes[1])
	}
}
