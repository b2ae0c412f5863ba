package core_test

import (
	"bytes"
	"fmt"
	"slices"
	"testing"
	"time"

	"go.etcd.io/raft/v3"

	apiv1 "github.com/blixard/blixard/api/v1"
	"github.com/blixard/blixard/internal/core"
	"github.com/blixard/blixard/sim"
)

// The core's tests run on the simulator: real cores on real stores, driven
// the way the production runtime drives them, over a simulated network,
// disk and clock, all decided by one seed (BLIXARD_SIM_SEED replays it).
// What follows are the few words the tests are written in.

// Time bounds, from the protocol's worst case with the default
// configuration (100 ms ticks). Waits log how long they took; tests assert
// only these bounds, never a tight timing.
const (
	// electionTimeoutMax is the longest a follower waits for its leader
	// before it stands: etcd raft draws the timeout from [ElectionTicks,
	// 2×ElectionTicks) ticks.
	electionTimeoutMax = 2 * core.DefaultElectionTicks * 100 * time.Millisecond
	// electionBound is ten worst-case election timeouts: PreVote rounds and
	// split votes included, a leader emerges well within it.
	electionBound = 10 * electionTimeoutMax
	// answerBound is the deadline for one answer on a fault-free network.
	answerBound = 10 * time.Second
	// convergeBound is the deadline for every node to catch up.
	convergeBound = 30 * time.Second
)

// fail stops the test with the seed line, the words and the trace tail.
func fail(t *testing.T, w *sim.World, format string, args ...any) {
	t.Helper()
	t.Fatal(w.Failure(fmt.Errorf(format, args...)))
}

// await runs w until cond holds, and fails t if it does not within the
// bound. It logs how long the wait took.
func await(t *testing.T, w *sim.World, what string, cond func() bool, within time.Duration) {
	t.Helper()
	start := w.Now()
	if err := w.RunUntil(cond, within); err != nil {
		w.Must(t, fmt.Errorf("waiting for %s: %w", what, err))
	}
	t.Logf("%s after %s (at %s)", what, w.Now()-start, w.Now())
}

// awaitLeader waits until every node follows one leader in one term, and
// returns it.
func awaitLeader(t *testing.T, w *sim.World) uint64 {
	t.Helper()
	await(t, w, "a leader every node follows", func() bool { return leaderOf(w, w.IDs()...) != 0 && w.Registered() }, electionBound)
	return leaderOf(w, w.IDs()...)
}

// leaderOf returns the node that every node of group follows in one term,
// when it is one of them and leads; else 0.
func leaderOf(w *sim.World, group ...uint64) uint64 {
	var lead, term uint64
	for i, id := range group {
		c := w.Node(id).Core()
		if c == nil {
			return 0
		}
		bs := c.BasicStatus()
		if i == 0 {
			lead, term = bs.Lead, bs.GetTerm()
		} else if bs.Lead != lead || bs.GetTerm() != term {
			return 0
		}
	}
	if lead == raft.None || !slices.Contains(group, lead) || w.Node(lead).Core().BasicStatus().RaftState != raft.StateLeader {
		return 0
	}
	return lead
}

// leaders are the nodes that believe they lead, in any term.
func leaders(w *sim.World) []uint64 {
	var out []uint64
	for _, id := range w.IDs() {
		if c := w.Node(id).Core(); c != nil && c.BasicStatus().RaftState == raft.StateLeader {
			out = append(out, id)
		}
	}
	return out
}

// awaitSettled waits until every node has recorded itself in every node's
// state, the cluster has its id, and every node has applied all that was
// committed. From then on, on a fault-free network, nothing is proposed
// but what clients send, so a test may count entries.
func awaitSettled(t *testing.T, w *sim.World) {
	t.Helper()
	await(t, w, "every node registered and caught up", func() bool {
		if !w.Converged() {
			return false
		}
		for _, id := range w.IDs() {
			st := coreOf(w, id).State()
			if st.Cluster().GetId() == "" {
				return false
			}
			for _, other := range w.IDs() {
				if _, ok := st.Node(other); !ok {
					return false
				}
			}
		}
		return true
	}, convergeBound)
}

// awaitConverged waits until every node follows one leader and has applied
// all it committed, and returns the leader.
func awaitConverged(t *testing.T, w *sim.World) uint64 {
	t.Helper()
	await(t, w, "convergence", w.Converged, convergeBound)
	return w.StableLeader()
}

// coreOf is node id's core; the node must be up.
func coreOf(w *sim.World, id uint64) *core.Node { return w.Node(id).Core() }

// status is node id's Raft status; the node must be up.
func status(w *sim.World, id uint64) raft.BasicStatus { return coreOf(w, id).BasicStatus() }

// stateBytes is node id's state machine as snapshot bytes.
func stateBytes(t *testing.T, w *sim.World, id uint64) []byte {
	t.Helper()
	b, err := coreOf(w, id).State().Snapshot()
	if err != nil {
		fail(t, w, "node %d: snapshot: %v", id, err)
	}
	return b
}

// assertSameStateAs checks that node id's state is, byte for byte, node
// want's.
func assertSameStateAs(t *testing.T, w *sim.World, id, want uint64) {
	t.Helper()
	if !bytes.Equal(stateBytes(t, w, id), stateBytes(t, w, want)) {
		fail(t, w, "node %d's state (applied %d) differs from node %d's (applied %d)",
			id, coreOf(w, id).State().AppliedIndex(), want, coreOf(w, want).State().AppliedIndex())
	}
}

// Clients.

// rawTo is a client that sends each request once, to node target only, and
// takes its first answer, whatever it says: a node's own answer, with no
// following of hints and no retries.
func rawTo(w *sim.World, target uint64) *sim.Client {
	return w.NewClient(sim.ClientOptions{Target: target, Raw: true, MaxAttempts: 1, AttemptTimeout: answerBound})
}

// do has client c send req and waits for the end of the operation; it
// returns the answer, and fails t if there was none.
func do(t *testing.T, w *sim.World, c *sim.Client, req *apiv1.Request) *apiv1.Response {
	t.Helper()
	c.Do(req)
	return awaitAnswer(t, w, c)
}

// awaitAnswer waits until client c has finished all it was asked, and
// returns the answer to its last operation.
func awaitAnswer(t *testing.T, w *sim.World, c *sim.Client) *apiv1.Response {
	t.Helper()
	await(t, w, fmt.Sprintf("client %d answered", c.ID()), c.Idle, 2*answerBound)
	op := lastOp(t, w, c)
	if op.Resp == nil {
		fail(t, w, "client %d got no answer to %v after %d attempts", c.ID(), op.Req, op.Attempts)
	}
	return op.Resp
}

// opsOf are client c's operations, in the order it ran them.
func opsOf(w *sim.World, c *sim.Client) []*sim.Op {
	var out []*sim.Op
	for _, op := range w.History().Ops() {
		if op.Client == c.ID() {
			out = append(out, op)
		}
	}
	return out
}

// lastOp is client c's last finished operation.
func lastOp(t *testing.T, w *sim.World, c *sim.Client) *sim.Op {
	t.Helper()
	ops := opsOf(w, c)
	if len(ops) == 0 {
		fail(t, w, "client %d finished no operation", c.ID())
	}
	return ops[len(ops)-1]
}

// mustOK fails t unless resp is a success.
func mustOK(t *testing.T, w *sim.World, resp *apiv1.Response) *apiv1.Response {
	t.Helper()
	if resp.GetError() != nil {
		fail(t, w, "request failed: %v", resp.GetError())
	}
	return resp
}

// Requests. A write with key "" gets its key from the client that sends it.

func createVm(key, name string, start bool) *apiv1.Request {
	return &apiv1.Request{Kind: &apiv1.Request_CreateVm{CreateVm: &apiv1.CreateVmRequest{
		ClientRequestId: key, Name: name, Start: start,
		Spec: &apiv1.VmSpec{Vcpus: 1, MemoryMib: 128},
	}}}
}

func stopVm(key, name string) *apiv1.Request {
	return &apiv1.Request{Kind: &apiv1.Request_StopVm{StopVm: &apiv1.StopVmRequest{ClientRequestId: key, Name: name}}}
}

func submitTask(key string) *apiv1.Request {
	return &apiv1.Request{Kind: &apiv1.Request_SubmitTask{SubmitTask: &apiv1.SubmitTaskRequest{
		ClientRequestId: key,
		Spec:            &apiv1.TaskSpec{Command: "/bin/true", Resources: &apiv1.Resources{Vcpus: 1, MemoryMib: 64}},
	}}}
}

func getVm(name string, stale bool) *apiv1.Request {
	return &apiv1.Request{Kind: &apiv1.Request_GetVm{GetVm: &apiv1.GetVmRequest{Name: name, Stale: stale}}}
}

func listTasks() *apiv1.Request {
	return &apiv1.Request{Kind: &apiv1.Request_ListTasks{ListTasks: &apiv1.ListTasksRequest{}}}
}

func clusterStatus() *apiv1.Request {
	return &apiv1.Request{Kind: &apiv1.Request_GetClusterStatus{GetClusterStatus: &apiv1.GetClusterStatusRequest{}}}
}
