package sim

import (
	"fmt"
	"slices"
	"testing"
	"time"

	"go.etcd.io/raft/v3"
	"google.golang.org/protobuf/proto"

	apiv1 "github.com/blixard/blixard/api/v1"
	"github.com/blixard/blixard/internal/core"
)

// The scenarios of the simulator issue. Each holds for every seed: its
// deadlines come from the protocol's worst case (see electionBound), and
// what it asserts is read from the nodes' real state and the clients'
// history. BLIXARD_SIM_SEED=<seed> replays a run.

// Scenario 1: a cluster of one node elects itself, accepts a task, applies
// it and says so.
func TestScenario1SingleNodeBootstrap(t *testing.T) {
	w := NewT(t, BaseSeed(t), Options{Nodes: 1})

	// The lone node elects itself.
	if lead := awaitLeader(t, w); lead != 1 {
		t.Fatal(w.Failure(fmt.Errorf("node 1 is alone, yet node %d leads", lead)))
	}

	// It accepts a task and applies it.
	c := w.NewClient(ClientOptions{})
	submit := askSubmitTask("/bin/echo", "hello")
	c.Do(submit)
	await(t, w, "the task acknowledged", c.Idle, answerBound)
	op := lastOp(t, w, c)
	if !op.Acked() {
		t.Fatal(w.Failure(fmt.Errorf("the task was not acknowledged: %v", op.Resp)))
	}
	id := op.Resp.GetSubmitTask().GetTask().GetId()
	task, ok := stateOf(w, 1).Task(id)
	if !ok {
		t.Fatal(w.Failure(fmt.Errorf("task %d was acknowledged but is not in the state", id)))
	}
	if !proto.Equal(task.GetSpec(), submit.GetSubmitTask().GetSpec()) {
		t.Fatal(w.Failure(fmt.Errorf("task %d has spec %v, was submitted with %v", id, task.GetSpec(), submit.GetSubmitTask().GetSpec())))
	}

	// Its status, asked through the API, names it leader in a term >= 1 and
	// covers the task; raft's own view agrees.
	c.Do(askClusterStatus())
	await(t, w, "the cluster status", c.Idle, answerBound)
	st := lastOp(t, w, c).Resp.GetGetClusterStatus()
	if st.GetNodeId() != 1 || st.GetLeaderId() != 1 || st.GetTerm() < 1 || st.GetAppliedIndex() < id {
		t.Fatal(w.Failure(fmt.Errorf("cluster status %v: want node 1 leading in a term >= 1, applied through task %d", st, id)))
	}
	if bs := status(w, 1); bs.RaftState != raft.StateLeader || bs.Lead != 1 || bs.GetTerm() != st.GetTerm() {
		t.Fatal(w.Failure(fmt.Errorf("raft says %s, leader %d, term %d; the API said leader 1, term %d", bs.RaftState, bs.Lead, bs.GetTerm(), st.GetTerm())))
	}

	// It has recorded itself and the cluster's name in the replicated state.
	await(t, w, "node 1 and the cluster recorded", func() bool {
		n, ok := stateOf(w, 1).Node(1)
		return ok && n.GetAddress() == "sim-node-1:7000" && stateOf(w, 1).Cluster().GetId() == fmt.Sprintf("sim-%d", w.Seed())
	}, answerBound)
}

// Scenario 2: three nodes elect exactly one leader and agree on it; a
// write sent to a follower is refused with NOT_LEADER naming the leader,
// and a client that follows the hint gets it done.
func TestScenario2ThreeNodeLeaderElection(t *testing.T) {
	w := NewT(t, BaseSeed(t), Options{Nodes: 3})

	// Exactly one leader, and all three agree on it and on the term.
	leader := awaitLeader(t, w)
	if ls := leaders(w); len(ls) != 1 || ls[0] != leader {
		t.Fatal(w.Failure(fmt.Errorf("leaders %v, want exactly [%d]", ls, leader)))
	}
	term := status(w, leader).GetTerm()
	for _, id := range w.IDs() {
		if bs := status(w, id); bs.Lead != leader || bs.GetTerm() != term {
			t.Fatal(w.Failure(fmt.Errorf("node %d follows %d in term %d; want %d in term %d", id, bs.Lead, bs.GetTerm(), leader, term)))
		}
	}
	t.Logf("node %d leads term %d", leader, term)

	// Every node learns the leader's address from the replicated state.
	await(t, w, "the leader's record on every node", func() bool {
		for _, id := range w.IDs() {
			if _, ok := stateOf(w, id).Node(leader); !ok {
				return false
			}
		}
		return true
	}, answerBound)

	// A write sent straight to a follower is refused with the leader's id
	// and address, and changes nothing.
	follower := without(w.IDs(), leader)[0]
	raw := w.NewClient(ClientOptions{Target: follower, Raw: true, MaxAttempts: 1})
	raw.Do(askSubmitTask("/bin/echo", "to-a-follower"))
	await(t, w, "the follower's answer", raw.Idle, answerBound)
	refused := lastOp(t, w, raw)
	e := refused.Resp.GetError()
	if e.GetCode() != apiv1.ErrorCode_ERROR_CODE_NOT_LEADER || e.GetLeaderId() != leader ||
		e.GetLeaderAddress() != fmt.Sprintf("sim-node-%d:7000", leader) {
		t.Fatal(w.Failure(fmt.Errorf("follower %d answered %v; want NOT_LEADER naming node %d", follower, refused.Resp, leader)))
	}

	// A client that follows the hint gets the write done.
	polite := w.NewClient(ClientOptions{Target: follower})
	polite.Do(askSubmitTask("/bin/echo", "via-the-hint"))
	await(t, w, "the hinted write acknowledged", polite.Idle, answerBound)
	if op := lastOp(t, w, polite); !op.Acked() {
		t.Fatal(w.Failure(fmt.Errorf("the write through follower %d was not acknowledged: %v", follower, op.Resp)))
	}
	await(t, w, "convergence", w.Converged, convergeBound)
	assertRecorded(t, w, w.History().Ops())
	assertNeverApplied(t, w, []*Op{refused}, w.IDs()...)
	assertLinearizable(t, w)
}

// Scenario 3: thirty tasks submitted through all three nodes are each
// committed exactly once and every node lists the same thirty. Clients give
// up on an attempt after 30 ms and retry elsewhere, and the network
// delivers one message in ten twice, so the same submission reaches the
// cluster more than once.
func TestScenario3TaskAssignment(t *testing.T) {
	w := NewT(t, BaseSeed(t), Options{Nodes: 3, DuplicateRate: 0.1})
	awaitLeader(t, w)

	// Three clients, each sending to a different node first, ten tasks each.
	for _, id := range w.IDs() {
		c := w.NewClient(ClientOptions{Target: id, AttemptTimeout: 30 * time.Millisecond, MaxAttempts: 100})
		submitTasks(c, fmt.Sprintf("via-node-%d", id), 10)
	}
	await(t, w, "thirty submissions answered", w.ClientsIdle, time.Minute)
	await(t, w, "convergence", w.Converged, convergeBound)

	ops := w.History().Ops()
	attempts := 0
	for _, op := range ops {
		attempts += op.Attempts
	}
	t.Logf("%d submissions took %d attempts", len(ops), attempts)
	if n := acked(ops); n != 30 {
		t.Fatal(w.Failure(fmt.Errorf("%d of 30 submissions acknowledged on a network that loses nothing", n)))
	}

	// Each submission made exactly one task: thirty keys, thirty distinct
	// task ids, thirty tasks on every node, the same on every node.
	assertRecorded(t, w, ops)
	assertTasksExactlyOnce(t, w)
	leader := w.StableLeader()
	want := stateOf(w, leader).Tasks(0)
	if len(want) != 30 {
		t.Fatal(w.Failure(fmt.Errorf("the leader holds %d tasks, want 30", len(want))))
	}
	for _, id := range w.IDs() {
		got := stateOf(w, id).Tasks(0)
		if len(got) != len(want) {
			t.Fatal(w.Failure(fmt.Errorf("node %d lists %d tasks, the leader %d", id, len(got), len(want))))
		}
		for i := range got {
			if !proto.Equal(got[i], want[i]) {
				t.Fatal(w.Failure(fmt.Errorf("node %d lists task %v where the leader lists %v", id, got[i], want[i])))
			}
		}
	}
	assertLinearizable(t, w)
}

// Scenario 4: the leader of five is cut off from its peers. The other four
// elect a new leader and go on committing; the old leader, though a client
// keeps sending it writes, commits nothing, steps down, and after the cut
// heals follows the new leader with the same state as everyone.
func TestScenario4LeaderFailover(t *testing.T) {
	runLeaderFailover(t, BaseSeed(t))
}

func runLeaderFailover(t *testing.T, seed uint64) string {
	w := NewT(t, seed, Options{Nodes: 5})
	old := awaitLeader(t, w)
	oldTerm := status(w, old).GetTerm()

	// The old leader loses its peers; its clients still reach it. (Network
	// .ClogNode would cut the clients off too, and then "a client keeps
	// sending it writes" would test nothing.)
	w.Net().Partition([]uint64{old})
	frozen := status(w, old).GetCommit()
	stubborn := w.NewClient(ClientOptions{Target: old, Raw: true, MaxAttempts: 1})
	submitTasks(stubborn, "to-the-old-leader", 5)

	// The other four elect a new leader within ten worst-case election
	// timeouts.
	await(t, w, "a new leader", func() bool {
		l := w.StableLeader()
		return l != 0 && l != old
	}, electionBound)
	leader := w.StableLeader()
	if term := status(w, leader).GetTerm(); term <= oldTerm {
		t.Fatal(w.Failure(fmt.Errorf("new leader %d leads term %d, not after the old term %d", leader, term, oldTerm)))
	}

	// The old leader notices on its own (CheckQuorum) and steps down, while
	// it is still asked to write.
	submitTasks(stubborn, "to-the-old-leader-later", 5)
	await(t, w, "the old leader stepping down", func() bool { return status(w, old).RaftState != raft.StateLeader }, electionBound)

	// The four go on committing.
	busy := w.NewClient(ClientOptions{Target: leader})
	submitTasks(busy, "to-the-new-leader", 10)
	await(t, w, "every client done", w.ClientsIdle, time.Minute)
	if n := acked(opsOf(w, busy)); n != 10 {
		t.Fatal(w.Failure(fmt.Errorf("the new leader acknowledged %d of 10 writes", n)))
	}

	// The old leader committed nothing and acknowledged nothing.
	if c := status(w, old).GetCommit(); c != frozen {
		t.Fatal(w.Failure(fmt.Errorf("cut-off node %d moved its commit index from %d to %d", old, frozen, c)))
	}
	if n := acked(opsOf(w, stubborn)); n != 0 {
		t.Fatal(w.Failure(fmt.Errorf("cut-off node %d acknowledged %d writes", old, n)))
	}
	t.Logf("the old leader's writes: %d answered with an error, %d unanswered", len(opsOf(w, stubborn))-indeterminate(opsOf(w, stubborn)), indeterminate(opsOf(w, stubborn)))

	// Healed, it follows the new term and converges.
	w.Net().Heal()
	await(t, w, "convergence after the heal", w.Converged, convergeBound)
	if bs := status(w, old); bs.GetTerm() <= oldTerm || bs.Lead != w.StableLeader() {
		t.Fatal(w.Failure(fmt.Errorf("old leader %d is in term %d following %d; want a term after %d, following %d", old, bs.GetTerm(), bs.Lead, oldTerm, w.StableLeader())))
	}
	assertSameState(t, w)
	assertRecorded(t, w, w.History().Ops())
	assertNeverApplied(t, w, opsOf(w, stubborn), w.IDs()...)
	assertLinearizable(t, w)
	return w.TraceHash()
}

// Scenario 5: five nodes split into {1, 2} and {3, 4, 5}, with clients on
// both sides. The majority commits, the minority commits nothing and its
// clients get errors or give up, never a false acknowledgement; healed,
// all five agree and nothing acknowledged is lost.
func TestScenario5NetworkPartitionRecovery(t *testing.T) {
	runPartitionRecovery(t, BaseSeed(t))
}

func runPartitionRecovery(t *testing.T, seed uint64) string {
	w := NewT(t, seed, Options{Nodes: 5})
	awaitLeader(t, w)
	minority, majority := []uint64{1, 2}, []uint64{3, 4, 5}

	w.Net().Partition(minority, majority)
	// The minority may yet commit what its leader, if it has the leader,
	// had already sent to the majority: entries up to that leader's last
	// index may complete their quorum with a pre-partition ack. Nothing
	// beyond can.
	reach := commitReach(w, minority...)

	// A client in the minority's segment, with a short retry budget so that
	// its operations end.
	lonely := w.NewClient(ClientOptions{Target: 1, AttemptTimeout: 500 * time.Millisecond, MaxAttempts: 3})
	confine(w, lonely, minority...)
	submitTasks(lonely, "in-the-minority", 5)

	// The majority has a leader within ten worst-case election timeouts,
	// and a client in its segment gets its writes done.
	await(t, w, "a leader of the majority", func() bool { return leaderOf(w, majority...) != 0 }, electionBound)
	crowd := w.NewClient(ClientOptions{Target: 3})
	confine(w, crowd, majority...)
	submitTasks(crowd, "in-the-majority", 10)
	await(t, w, "both clients done", w.ClientsIdle, 2*time.Minute)

	if n := acked(opsOf(w, crowd)); n != 10 {
		t.Fatal(w.Failure(fmt.Errorf("the majority acknowledged %d of 10 writes", n)))
	}
	for _, op := range opsOf(w, lonely) {
		if op.Acked() {
			t.Fatal(w.Failure(fmt.Errorf("the minority answered write %q with %v: it cannot commit", op.Key, op.Resp)))
		}
	}
	for _, id := range minority {
		if c := status(w, id).GetCommit(); c > reach {
			t.Fatal(w.Failure(fmt.Errorf("minority node %d committed through %d, beyond %d, the last entry the partition found in its side's leader", id, c, reach)))
		}
	}
	assertNeverApplied(t, w, w.History().Ops(), minority...)
	await(t, w, "the majority caught up", func() bool { return caughtUp(w, majority...) }, convergeBound)
	for _, id := range majority {
		for _, key := range keysOf(opsOf(w, crowd)) {
			if _, ok := stateOf(w, id).Response(key); !ok {
				t.Fatal(w.Failure(fmt.Errorf("majority node %d lacks acknowledged write %q", id, key)))
			}
		}
	}

	// Healed, all five agree byte for byte; what was acknowledged is there,
	// and what the minority was asked is not.
	w.Net().Heal()
	await(t, w, "convergence after the heal", w.Converged, convergeBound)
	assertSameState(t, w)
	assertRecorded(t, w, w.History().Ops())
	assertNeverApplied(t, w, opsOf(w, lonely), w.IDs()...)
	assertLinearizable(t, w)
	return w.TraceHash()
}

// Scenario 6: ten clients run a hundred mixed operations each through
// random nodes while the network loses 5% of messages. Every acknowledged
// write is applied exactly once and the history is linearizable.
func TestScenario6ConcurrentSubmission(t *testing.T) {
	w := NewT(t, BaseSeed(t), Options{Nodes: 3, LossRate: 0.05})
	awaitLeader(t, w)

	vms := []string{"web-1", "web-2", "db-1", "cache-1"}
	for i := 0; i < 10; i++ {
		c := w.NewClient(ClientOptions{})
		for j := 0; j < 100; j++ {
			c.Do(mixedOp(w.Rand(), vms))
		}
	}
	// 100 operations of at most 30 attempts of about a second each.
	await(t, w, "a thousand operations done", w.ClientsIdle, 100*30*(time.Second+50*time.Millisecond))
	a, r, i, reads, lostReads := w.History().Summary()
	t.Logf("writes: %d acknowledged, %d refused, %d indeterminate; reads: %d answered, %d unanswered", a, r, i, reads, lostReads)

	stopFaults(w)
	await(t, w, "convergence", w.Converged, convergeBound)
	assertRecorded(t, w, w.History().Ops())
	assertTasksExactlyOnce(t, w)
	assertSameState(t, w)
	assertLinearizable(t, w)
}

// Scenario 7: VMs are created, started and stopped through the leader
// while one node, chosen by the seed (the leader, sometimes), crashes and
// restarts. Every node ends with the same VM records, events and all, and
// each VM's acknowledged changes applied in the order they were made.
func TestScenario7VmStateReplication(t *testing.T) {
	w := NewT(t, BaseSeed(t), Options{Nodes: 3})
	leader := awaitLeader(t, w)

	// One client per VM, each creating its VM and then starting and
	// stopping it in turn.
	vms := []string{"web-1", "web-2", "db-1", "cache-1"}
	const steps = 12
	clients := map[string]*Client{}
	for _, name := range vms {
		c := w.NewClient(ClientOptions{Target: leader, MaxAttempts: 100})
		clients[name] = c
		c.Do(askCreateVm(name, false))
		for s := 1; s < steps; s++ {
			if s%2 == 1 {
				c.Do(askStartVm(name))
			} else {
				c.Do(askStopVm(name))
			}
		}
	}

	// Halfway through, a node crashes; it comes back three seconds later.
	await(t, w, "half the load done", func() bool { return len(w.History().Ops()) >= len(vms)*steps/2 }, time.Minute)
	victim := w.IDs()[w.Rand().IntN(len(w.IDs()))]
	t.Logf("crashing node %d (leader: %d)", victim, leader)
	w.Crash(victim)
	doneBefore := len(w.History().Ops())
	w.Must(t, w.RunFor(3*time.Second))
	t.Logf("%d operations finished while node %d was down", len(w.History().Ops())-doneBefore, victim)
	w.Must(t, w.Restart(victim))

	await(t, w, "the load done", w.ClientsIdle, 10*time.Minute)
	await(t, w, "convergence", w.Converged, convergeBound)
	if n := w.Node(victim).Crashes(); n != 1 {
		t.Fatal(w.Failure(fmt.Errorf("node %d crashed %d times, want 1", victim, n)))
	}

	// Identical VM records on every node, the restarted one included.
	want := stateOf(w, w.StableLeader()).Vms(0)
	if len(want) != len(vms) {
		t.Fatal(w.Failure(fmt.Errorf("the leader holds %d VMs, want %d", len(want), len(vms))))
	}
	for _, id := range w.IDs() {
		got := stateOf(w, id).Vms(0)
		if len(got) != len(want) {
			t.Fatal(w.Failure(fmt.Errorf("node %d holds %d VMs, the leader %d", id, len(got), len(want))))
		}
		for i := range got {
			if !proto.Equal(got[i], want[i]) {
				t.Fatal(w.Failure(fmt.Errorf("node %d holds VM %v where the leader holds %v", id, got[i], want[i])))
			}
		}
	}

	// Each VM's events are in log order; its acknowledged changes applied in
	// the order its client made them; its desired state is that of the
	// last change that applied.
	for _, vm := range want {
		for i := 1; i < len(vm.GetEvents()); i++ {
			if vm.GetEvents()[i].GetIndex() <= vm.GetEvents()[i-1].GetIndex() {
				t.Fatal(w.Failure(fmt.Errorf("VM %s: events out of log order: %v", vm.GetName(), vm.GetEvents())))
			}
		}
		var lastAcked, lastApplied uint64
		lastWant := apiv1.VmDesiredState_VM_DESIRED_STATE_UNSPECIFIED
		for _, op := range opsOf(w, clients[vm.GetName()]) {
			resp, ok := stateOf(w, w.StableLeader()).Response(op.Key)
			if !ok {
				continue
			}
			at, desired := appliedVm(resp)
			if op.Acked() {
				if at <= lastAcked {
					t.Fatal(w.Failure(fmt.Errorf("VM %s: acknowledged write %q applied at index %d, not after the one acknowledged before it (%d)", vm.GetName(), op.Key, at, lastAcked)))
				}
				lastAcked = at
			}
			if at > lastApplied {
				lastApplied, lastWant = at, desired
			}
		}
		if vm.GetDesiredState() != lastWant {
			t.Fatal(w.Failure(fmt.Errorf("VM %s wants %s; its last applied change asked for %s", vm.GetName(), vm.GetDesiredState(), lastWant)))
		}
	}
	assertRecorded(t, w, w.History().Ops())
	assertSameState(t, w)
	assertLinearizable(t, w)
	a, r, i, _, _ := w.History().Summary()
	t.Logf("writes: %d acknowledged, %d refused, %d indeterminate", a, r, i)
}

// appliedVm reads a stored VM write response: the log index it applied at
// and the desired state it left. (Refusals apply at no index: 0.)
func appliedVm(resp *apiv1.Response) (index uint64, desired apiv1.VmDesiredState) {
	var vm *apiv1.Vm
	switch {
	case resp.GetCreateVm() != nil:
		vm = resp.GetCreateVm().GetVm()
		return vm.GetCreatedIndex(), vm.GetDesiredState()
	case resp.GetStartVm() != nil:
		vm = resp.GetStartVm().GetVm()
	case resp.GetStopVm() != nil:
		vm = resp.GetStopVm().GetVm()
	}
	return vm.GetUpdatedIndex(), vm.GetDesiredState()
}

// Scenario 8: under 20% loss, 5% duplication, 10% reordering and up to
// 50 ms of latency the cluster keeps a leader and makes progress: at least
// 90% of 200 writes are acknowledged within their retry budget, every
// checker holds, and once the faults stop the cluster converges.
func TestScenario8PacketLossResilience(t *testing.T) {
	runPacketLossResilience(t, BaseSeed(t))
}

func runPacketLossResilience(t *testing.T, seed uint64) string {
	w := NewT(t, seed, Options{
		Nodes:    3,
		LossRate: 0.2, DuplicateRate: 0.05, ReorderRate: 0.1,
		MinLatency: time.Millisecond, MaxLatency: 50 * time.Millisecond,
	})
	awaitLeader(t, w)

	for i := 0; i < 10; i++ {
		submitTasks(w.NewClient(ClientOptions{}), fmt.Sprintf("client-%d", i), 20)
	}
	// 20 writes of at most 30 attempts of about a second each.
	await(t, w, "two hundred writes done", w.ClientsIdle, 20*30*(time.Second+50*time.Millisecond))
	a, r, i, _, _ := w.History().Summary()
	sent, dropped, duplicated := w.Net().Stats()
	t.Logf("writes: %d acknowledged, %d refused, %d indeterminate; messages: %d sent, %d dropped, %d duplicated", a, r, i, sent, dropped, duplicated)
	if a < 180 {
		t.Fatal(w.Failure(fmt.Errorf("%d of 200 writes acknowledged, want at least 90%%", a)))
	}

	stopFaults(w)
	await(t, w, "convergence once the faults stop", w.Converged, convergeBound)
	assertRecorded(t, w, w.History().Ops())
	assertTasksExactlyOnce(t, w)
	assertSameState(t, w)
	assertLinearizable(t, w)
	return w.TraceHash()
}

// TestScenariosDeterministic runs scenarios 4, 5 and 8 twice from one seed
// and requires the same trace hash both times.
func TestScenariosDeterministic(t *testing.T) {
	seed := BaseSeed(t)
	for _, sc := range []struct {
		name string
		run  func(*testing.T, uint64) string
	}{
		{"4-leader-failover", runLeaderFailover},
		{"5-partition-recovery", runPartitionRecovery},
		{"8-packet-loss", runPacketLossResilience},
	} {
		var hashes [2]string
		for i := range hashes {
			t.Run(fmt.Sprintf("%s/run-%d", sc.name, i+1), func(t *testing.T) { hashes[i] = sc.run(t, seed) })
		}
		if hashes[0] == "" || hashes[1] == "" {
			continue // a run failed and said why
		}
		if hashes[0] != hashes[1] {
			t.Errorf("scenario %s, seed %d: trace hash %s, then %s", sc.name, seed, hashes[0], hashes[1])
		}
	}
}

// indeterminate counts the operations among ops that got no definite answer.
func indeterminate(ops []*Op) int {
	n := 0
	for _, op := range ops {
		if op.Indeterminate {
			n++
		}
	}
	return n
}

// Scenario 3, executed: three voters and two workers; the voters are too
// small for the tasks (2 vCPUs), so every task runs on a worker. Thirty
// tasks — exit 0, exit 1, and a few that hang until their timeout — are
// submitted through all nodes on a network that duplicates and loses
// messages, and one worker crashes mid-way for longer than the down
// timeout. Every task ends as its command dictates, on a worker; and the
// committed log holds, for each task, exactly one final report that the
// state accepted, from the attempt the task ended with.
func TestScenario3TaskExecution(t *testing.T) {
	voters, workers := []uint64{1, 2, 3}, []uint64{4, 5}
	w := NewT(t, BaseSeed(t), Options{Nodes: 3, Workloads: true, DuplicateRate: 0.1, LossRate: 0.02, ClockDrift: true,
		Core: func(c *core.Config) {
			c.Capacity = &apiv1.Resources{Vcpus: 1, MemoryMib: 1024}
			if slices.Contains(workers, c.ID) {
				c.Capacity = &apiv1.Resources{Vcpus: 4, MemoryMib: 8192}
			}
		}})
	awaitLeader(t, w)
	admin := w.NewClient(ClientOptions{})
	for _, id := range workers {
		if _, err := w.AddNode(id, apiv1.NodeRole_NODE_ROLE_WORKER); err != nil {
			t.Fatal(w.Failure(err))
		}
		admin.Do(w.JoinRequest(id))
	}
	// Joined, a worker registers itself (with its images) once it follows
	// the log.
	await(t, w, "the workers joined and registered", func() bool {
		l := w.StableLeader()
		if !admin.Idle() || l == 0 {
			return false
		}
		for _, id := range workers {
			if rec, ok := stateOf(w, l).Node(id); !ok || len(rec.GetImages()) == 0 || rec.GetStatus() != apiv1.NodeStatus_NODE_STATUS_READY {
				return false
			}
		}
		return true
	}, time.Minute)

	commands := map[uint64]string{} // task id -> command
	submit := func(c *Client, i int) {
		spec := &apiv1.TaskSpec{Command: []string{TaskExitOK, TaskExitFail, TaskExitOK, TaskExitFail, TaskHang}[i%5],
			Args: []string{fmt.Sprint(i)}, Resources: &apiv1.Resources{Vcpus: 2, MemoryMib: 512}}
		if spec.Command == TaskHang {
			spec.TimeoutMs = 2000
		}
		c.Do(&apiv1.Request{Kind: &apiv1.Request_SubmitTask{SubmitTask: &apiv1.SubmitTaskRequest{Spec: spec}}})
	}
	var clients []*Client
	for _, id := range append(slices.Clone(voters), workers...) {
		clients = append(clients, w.NewClient(ClientOptions{Target: id}))
	}
	for i := range 30 {
		submit(clients[i%len(clients)], i)
	}
	// Mid-way a worker crashes, for longer than the down timeout.
	await(t, w, "ten tasks acknowledged", func() bool {
		n := 0
		for _, op := range w.History().Ops() {
			if op.Acked() && op.Req.GetSubmitTask() != nil {
				n++
			}
		}
		return n >= 10
	}, time.Minute)
	victim := workers[w.Rand().IntN(len(workers))]
	t.Logf("crashing worker %d", victim)
	w.Crash(victim)
	w.Must(t, w.RunFor(time.Duration(w.downTicks())*100*time.Millisecond+2*time.Second))
	w.Must(t, w.Restart(victim))

	await(t, w, "every submission answered", w.ClientsIdle, 5*time.Minute)
	for _, op := range w.History().Ops() {
		if op.Req.GetSubmitTask() == nil {
			continue
		}
		if !op.Acked() {
			t.Fatal(w.Failure(fmt.Errorf("submission %q not acknowledged: %v", op.Key, op.Resp)))
		}
		commands[op.Resp.GetSubmitTask().GetTask().GetId()] = op.Req.GetSubmitTask().GetSpec().GetCommand()
	}
	if len(commands) != 30 {
		t.Fatal(w.Failure(fmt.Errorf("%d tasks, want 30", len(commands))))
	}
	await(t, w, "every task ended", func() bool {
		l := w.StableLeader()
		if l == 0 {
			return false
		}
		for id := range commands {
			if task, ok := stateOf(w, l).Task(id); !ok || !task.GetStatus().Ended() {
				return false
			}
		}
		return true
	}, 5*time.Minute)
	await(t, w, "convergence", w.Converged, convergeBound)
	assertTasksExactlyOnce(t, w)
	assertSameState(t, w)

	// Each task ended as its command says, on a worker.
	st := stateOf(w, w.StableLeader())
	retried := 0
	for id, cmd := range commands {
		task, _ := st.Task(id)
		res := task.GetResult()
		var ok bool
		switch cmd {
		case TaskExitOK:
			ok = task.GetStatus() == apiv1.TaskStatus_TASK_STATUS_SUCCEEDED && res.GetExitCode() == 0
		case TaskExitFail:
			ok = task.GetStatus() == apiv1.TaskStatus_TASK_STATUS_FAILED && res.GetExitCode() == 1
		case TaskHang:
			ok = task.GetStatus() == apiv1.TaskStatus_TASK_STATUS_FAILED && res.GetError() == "timeout"
		}
		if !ok || !slices.Contains(workers, task.GetNodeId()) {
			t.Fatal(w.Failure(fmt.Errorf("task %d (%s) ended %s on node %d: %v", id, cmd, task.GetStatus(), task.GetNodeId(), task)))
		}
		if task.GetAttempt() > 1 {
			retried++
		}
	}

	// The committed log: per task, exactly one accepted final report, from
	// the attempt and node the task ended with; every accepted report came
	// from a worker.
	finals := map[uint64][]*apiv1.ReportTaskCommand{}
	refused := 0
	for _, a := range w.AppliedCommands() {
		r := a.Cmd.GetReportTask()
		if r == nil {
			continue
		}
		if a.Err != nil {
			refused++
			continue
		}
		if !slices.Contains(workers, r.GetNodeId()) {
			t.Fatal(w.Failure(fmt.Errorf("index %d: the state accepted a report of task %d from node %d, not a worker", a.Index, r.GetId(), r.GetNodeId())))
		}
		if r.GetStatus() == apiv1.TaskStatus_TASK_STATUS_SUCCEEDED || r.GetStatus() == apiv1.TaskStatus_TASK_STATUS_FAILED {
			finals[r.GetId()] = append(finals[r.GetId()], r)
		}
	}
	for id := range commands {
		task, _ := st.Task(id)
		f := finals[id]
		if len(f) != 1 {
			t.Fatal(w.Failure(fmt.Errorf("task %d: %d accepted final reports, want exactly 1: %v", id, len(f), f)))
		}
		if f[0].GetAttempt() != task.GetAttempt() || f[0].GetNodeId() != task.GetNodeId() || f[0].GetStatus() != task.GetStatus() {
			t.Fatal(w.Failure(fmt.Errorf("task %d ended %s at attempt %d on node %d, its accepted final report says %v", id, task.GetStatus(), task.GetAttempt(), task.GetNodeId(), f[0])))
		}
	}
	t.Logf("30 tasks ended as their commands say; %d needed another attempt after worker %d crashed; %d stale or repeated reports refused", retried, victim, refused)
}
