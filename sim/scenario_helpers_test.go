package sim

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"go.etcd.io/raft/v3"
	"google.golang.org/protobuf/proto"

	apiv1 "github.com/blixard/blixard/api/v1"
	"github.com/blixard/blixard/internal/core"
	"github.com/blixard/blixard/internal/state"
)

// Time bounds of the scenarios, taken from the protocol's worst case with
// the default configuration (100 ms ticks). Scenarios log the time a wait
// really took; they assert only these bounds.
const (
	// electionTimeoutMax is the longest a follower waits for its leader
	// before it stands for election: etcd raft draws the timeout from
	// [ElectionTicks, 2×ElectionTicks) ticks.
	electionTimeoutMax = 2 * core.DefaultElectionTicks * 100 * time.Millisecond
	// electionBound is a generous deadline for a leader to emerge: ten
	// worst-case election timeouts (PreVote rounds and split votes included).
	electionBound = 10 * electionTimeoutMax
	// convergeBound is the deadline for every node to catch up once faults
	// have stopped.
	convergeBound = 30 * time.Second
	// answerBound is the deadline for a single answer on a fault-free network.
	answerBound = 10 * time.Second
)

// await runs w until cond holds, and fails t with the seed and the trace
// tail if it does not within the bound. It logs how long the wait took.
func await(t *testing.T, w *World, what string, cond func() bool, within time.Duration) {
	t.Helper()
	start := w.Now()
	if err := w.RunUntil(cond, within); err != nil {
		w.Must(t, fmt.Errorf("waiting for %s: %w", what, err))
	}
	t.Logf("%s after %s (at %s)", what, w.Now()-start, w.Now())
}

// awaitLeader waits until every node follows one leader in one term, and
// returns it.
func awaitLeader(t *testing.T, w *World) uint64 {
	t.Helper()
	await(t, w, "a leader every node follows", func() bool { return leaderOf(w, w.IDs()...) != 0 && w.Registered() }, electionBound)
	return leaderOf(w, w.IDs()...)
}

// leaderOf returns the node that every node of group follows in one term,
// when it is one of them and leads; else 0.
func leaderOf(w *World, group ...uint64) uint64 {
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

// caughtUp reports whether group has a leader that all its members follow
// and every member has applied the leader's commit index.
func caughtUp(w *World, group ...uint64) bool {
	l := leaderOf(w, group...)
	if l == 0 {
		return false
	}
	for _, id := range group {
		if stateOf(w, id).AppliedIndex() != status(w, l).GetCommit() {
			return false
		}
	}
	return true
}

// leaders are the nodes that believe they lead, in any term.
func leaders(w *World) []uint64 {
	var out []uint64
	for _, id := range w.IDs() {
		if c := w.Node(id).Core(); c != nil && c.BasicStatus().RaftState == raft.StateLeader {
			out = append(out, id)
		}
	}
	return out
}

// status is node id's Raft status; the node must be up.
func status(w *World, id uint64) raft.BasicStatus { return w.Node(id).Core().BasicStatus() }

// commitReach is how far the commit index of a group cut off from the
// rest can still go: its members' commit indexes, and the last index of a
// leader among them, whose entries already sent to the rest may complete a
// quorum with acks given before the cut.
func commitReach(w *World, group ...uint64) uint64 {
	var reach uint64
	for _, id := range group {
		bs := status(w, id)
		reach = max(reach, bs.GetCommit())
		if bs.RaftState == raft.StateLeader {
			reach = max(reach, w.Node(id).Core().Status().Progress[id].Match)
		}
	}
	return reach
}

// stateOf is node id's state machine; the node must be up.
func stateOf(w *World, id uint64) *state.State { return w.Node(id).Core().State() }

// without returns ids minus the ones named.
func without(ids []uint64, drop ...uint64) []uint64 {
	var out []uint64
	for _, id := range ids {
		if !slices.Contains(drop, id) {
			out = append(out, id)
		}
	}
	return out
}

// confine lets client c reach only the nodes named: its links to every
// other node are cut both ways, as for a client in one network segment.
// Network.Heal undoes it.
func confine(w *World, c *Client, reach ...uint64) {
	for _, id := range without(w.IDs(), reach...) {
		w.Net().ClogLink(c.ID(), id, true)
	}
}

// opsOf are client c's operations, in the order it ran them.
func opsOf(w *World, c *Client) []*Op {
	var out []*Op
	for _, op := range w.History().Ops() {
		if op.Client == c.ID() {
			out = append(out, op)
		}
	}
	return out
}

// lastOp is client c's last finished operation.
func lastOp(t *testing.T, w *World, c *Client) *Op {
	t.Helper()
	ops := opsOf(w, c)
	if len(ops) == 0 {
		t.Fatal(w.Failure(fmt.Errorf("client %d finished no operation", c.ID())))
	}
	return ops[len(ops)-1]
}

// keysOf are the idempotency keys of the writes among ops.
func keysOf(ops []*Op) []string {
	var out []string
	for _, op := range ops {
		if op.Write {
			out = append(out, op.Key)
		}
	}
	return out
}

// acked counts the acknowledged writes among ops.
func acked(ops []*Op) int {
	n := 0
	for _, op := range ops {
		if op.Acked() {
			n++
		}
	}
	return n
}

// stopFaults ends message loss, duplication and reordering.
func stopFaults(w *World) {
	w.Net().LossRate, w.Net().DuplicateRate, w.Net().ReorderRate = 0, 0, 0
}

// Requests, as the API's clients send them.

func askSubmitTask(command string, args ...string) *apiv1.Request {
	return &apiv1.Request{Kind: &apiv1.Request_SubmitTask{SubmitTask: &apiv1.SubmitTaskRequest{Spec: &apiv1.TaskSpec{
		Command: command, Args: args, Resources: &apiv1.Resources{Vcpus: 1, MemoryMib: 64},
	}}}}
}

func askCreateVm(name string, start bool) *apiv1.Request {
	return &apiv1.Request{Kind: &apiv1.Request_CreateVm{CreateVm: &apiv1.CreateVmRequest{
		Name: name, Start: start, Spec: &apiv1.VmSpec{Vcpus: 1, MemoryMib: 128},
	}}}
}

func askStartVm(name string) *apiv1.Request {
	return &apiv1.Request{Kind: &apiv1.Request_StartVm{StartVm: &apiv1.StartVmRequest{Name: name}}}
}

func askStopVm(name string) *apiv1.Request {
	return &apiv1.Request{Kind: &apiv1.Request_StopVm{StopVm: &apiv1.StopVmRequest{Name: name}}}
}

func askGetVm(name string) *apiv1.Request {
	return &apiv1.Request{Kind: &apiv1.Request_GetVm{GetVm: &apiv1.GetVmRequest{Name: name}}}
}

func askListTasks() *apiv1.Request {
	return &apiv1.Request{Kind: &apiv1.Request_ListTasks{ListTasks: &apiv1.ListTasksRequest{}}}
}

func askClusterStatus() *apiv1.Request {
	return &apiv1.Request{Kind: &apiv1.Request_GetClusterStatus{GetClusterStatus: &apiv1.GetClusterStatusRequest{}}}
}

// submitTasks queues n task submissions on c, labelled so that the trace
// tells them apart.
func submitTasks(c *Client, label string, n int) {
	for i := 0; i < n; i++ {
		c.Do(askSubmitTask("/bin/echo", label, fmt.Sprint(i)))
	}
}

// mixedOp draws one operation of a mixed load: tasks submitted and listed,
// and VMs from a small pool of names created, started, stopped and read.
// Reads are linearizable, so the history can be checked.
func mixedOp(rng *rand.Rand, vms []string) *apiv1.Request {
	name := vms[rng.IntN(len(vms))]
	switch p := rng.IntN(100); {
	case p < 30:
		return askSubmitTask("/bin/echo", fmt.Sprint(rng.IntN(1000)))
	case p < 45:
		return askCreateVm(name, rng.IntN(2) == 0)
	case p < 60:
		return askStartVm(name)
	case p < 75:
		return askStopVm(name)
	case p < 90:
		return askGetVm(name)
	default:
		return askListTasks()
	}
}

// Assertions on the nodes' states.

// assertRecorded checks that every node holds each acknowledged write among
// ops with the very response its client was given: nothing acknowledged is
// lost.
func assertRecorded(t *testing.T, w *World, ops []*Op) {
	t.Helper()
	for _, id := range w.IDs() {
		st := stateOf(w, id)
		for _, op := range ops {
			if !op.Acked() {
				continue
			}
			got, ok := st.Response(op.Key)
			if !ok {
				t.Fatal(w.Failure(fmt.Errorf("node %d lost acknowledged write %q", id, op.Key)))
			}
			if !proto.Equal(got, op.Resp) {
				t.Fatal(w.Failure(fmt.Errorf("node %d records write %q as %v; its client was told %v", id, op.Key, got, op.Resp)))
			}
		}
	}
}

// assertNeverApplied checks that no node of ids holds any write among ops.
func assertNeverApplied(t *testing.T, w *World, ops []*Op, ids ...uint64) {
	t.Helper()
	for _, id := range ids {
		for _, key := range keysOf(ops) {
			if resp, ok := stateOf(w, id).Response(key); ok {
				t.Fatal(w.Failure(fmt.Errorf("node %d applied write %q (%v), which must not have happened", id, key, resp)))
			}
		}
	}
}

// assertTasksExactlyOnce checks, on every node, that each task submission
// that took effect made exactly one task, and that there are no other
// tasks: however often a submission was retried or delivered, it counts
// once.
func assertTasksExactlyOnce(t *testing.T, w *World) {
	t.Helper()
	for _, id := range w.IDs() {
		st := stateOf(w, id)
		byTask := map[uint64]string{}
		for _, op := range w.History().Ops() {
			if op.Req.GetSubmitTask() == nil {
				continue
			}
			resp, ok := st.Response(op.Key)
			if !ok || resp.GetError() != nil {
				continue
			}
			task := resp.GetSubmitTask().GetTask().GetId()
			if other, dup := byTask[task]; dup {
				t.Fatal(w.Failure(fmt.Errorf("node %d: submissions %q and %q both made task %d", id, other, op.Key, task)))
			}
			byTask[task] = op.Key
			if _, ok := st.Task(task); !ok {
				t.Fatal(w.Failure(fmt.Errorf("node %d: submission %q made task %d, which it does not hold", id, op.Key, task)))
			}
		}
		if n := len(st.Tasks(0)); n != len(byTask) {
			t.Fatal(w.Failure(fmt.Errorf("node %d holds %d tasks for %d submissions that took effect", id, n, len(byTask))))
		}
	}
}

// assertSameState checks that every node's state machine is byte for byte
// the same.
func assertSameState(t *testing.T, w *World) {
	t.Helper()
	var first []byte
	var firstID uint64
	for _, id := range w.IDs() {
		b, err := stateOf(w, id).Snapshot()
		if err != nil {
			t.Fatal(w.Failure(fmt.Errorf("node %d: snapshot: %w", id, err)))
		}
		if first == nil {
			first, firstID = b, id
			continue
		}
		if !bytes.Equal(b, first) {
			t.Fatal(w.Failure(fmt.Errorf("node %d's state (applied %d, %d bytes) differs from node %d's (applied %d, %d bytes)",
				id, stateOf(w, id).AppliedIndex(), len(b), firstID, stateOf(w, firstID).AppliedIndex(), len(first))))
		}
	}
}

// assertLinearizable checks the clients' history with porcupine.
func assertLinearizable(t *testing.T, w *World) {
	t.Helper()
	if err := CheckLinearizable(w.History()); err != nil {
		t.Fatal(w.Failure(err))
	}
}
