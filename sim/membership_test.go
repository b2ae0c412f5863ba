package sim

import (
	"slices"
	"strings"
	"testing"
	"time"

	apiv1 "github.com/blixard/blixard/api/v1"
)

func membershipOf(w *World, id uint64) *apiv1.Membership {
	return w.Node(id).Core().State().Cluster().GetMembership()
}

func lastFinished(t *testing.T, w *World) *Op {
	t.Helper()
	ops := w.History().Ops()
	if len(ops) == 0 {
		t.Fatal("no operation finished")
	}
	return ops[len(ops)-1]
}

// A voter joins as a learner and is promoted once caught up; a worker stays
// a learner; a node that leaves is removed for good and stops itself.
func TestMembershipJoinPromoteLeave(t *testing.T) {
	w := NewT(t, BaseSeed(t), Options{Nodes: 3})
	leader := runToLeader(t, w)
	c := w.NewClient(ClientOptions{})

	// Some history first, so the joiner must catch up.
	for i := 0; i < 50; i++ {
		c.Do(task("warm-up"))
	}
	w.Must(t, w.RunUntil(w.ClientsIdle, 60*time.Second))

	_, err := w.AddNode(4, apiv1.NodeRole_NODE_ROLE_VOTER)
	w.Must(t, err)
	c.Do(w.JoinRequest(4))
	w.Must(t, w.RunUntil(w.ClientsIdle, 60*time.Second))
	if op := lastFinished(t, w); !op.Acked() {
		t.Fatalf("join of node 4 answered %v", op.Resp)
	}
	w.Must(t, w.RunUntil(func() bool {
		m := membershipOf(w, w.StableLeaderOr(leader))
		return slices.Contains(m.GetVoters(), 4)
	}, 60*time.Second))

	_, err = w.AddNode(5, apiv1.NodeRole_NODE_ROLE_WORKER)
	w.Must(t, err)
	c.Do(w.JoinRequest(5))
	w.Must(t, w.RunUntil(w.ClientsIdle, 60*time.Second))
	if op := lastFinished(t, w); !op.Acked() {
		t.Fatalf("join of worker 5 answered %v", op.Resp)
	}
	w.Must(t, w.RunUntil(w.Converged, 60*time.Second))
	w.Must(t, w.RunFor(30*time.Second))
	m := membershipOf(w, w.StableLeaderOr(leader))
	if !slices.Contains(m.GetLearners(), 5) || slices.Contains(m.GetVoters(), 5) {
		t.Fatalf("worker 5: membership %v, want it a learner for good", m)
	}
	if got := len(w.Node(5).Core().State().Tasks(0)); got != 50 {
		t.Fatalf("worker 5 holds %d tasks, want the cluster's 50", got)
	}

	c.Do(&apiv1.Request{Kind: &apiv1.Request_LeaveCluster{LeaveCluster: &apiv1.LeaveClusterRequest{NodeId: 4}}})
	w.Must(t, w.RunUntil(w.ClientsIdle, 60*time.Second))
	if op := lastFinished(t, w); !op.Acked() {
		t.Fatalf("leave of node 4 answered %v", op.Resp)
	}
	w.Must(t, w.RunUntil(func() bool { return w.Node(4).Left() }, 30*time.Second))
	m = membershipOf(w, w.StableLeaderOr(leader))
	if !slices.Contains(m.GetRemoved(), 4) || slices.Contains(m.GetVoters(), 4) {
		t.Fatalf("after leave: membership %v", m)
	}
	// The joins and the removal are events with the proposer's time.
	var seen []string
	for _, e := range w.Node(w.StableLeaderOr(leader)).Core().State().Events(0, "", 0, 0) {
		if e.GetKind() == "node" && (strings.Contains(e.GetMessage(), "joined") || strings.Contains(e.GetMessage(), "removed")) {
			if e.GetTimeUnixNano() == 0 {
				t.Errorf("event %q at entry %d has no time", e.GetMessage(), e.GetIndex())
			}
			seen = append(seen, e.GetMessage())
		}
	}
	if len(seen) != 3 {
		t.Errorf("membership events %q, want node 4's and node 5's joins and node 4's removal", seen)
	}

	// Its id can never come back.
	c.Do(w.JoinRequest(4))
	w.Must(t, w.RunUntil(w.ClientsIdle, 60*time.Second))
	op := lastFinished(t, w)
	if e := op.Resp.GetError(); e.GetCode() != apiv1.ErrorCode_ERROR_CODE_FAILED_PRECONDITION || e.GetField() != "node_id" {
		t.Fatalf("rejoin of removed node 4 answered %v, want FAILED_PRECONDITION on node_id", op.Resp)
	}
	// A join of a node that is already a member is refused too.
	c.Do(w.JoinRequest(5))
	w.Must(t, w.RunUntil(w.ClientsIdle, 60*time.Second))
	if e := lastFinished(t, w).Resp.GetError(); e.GetCode() != apiv1.ErrorCode_ERROR_CODE_ALREADY_EXISTS {
		t.Fatalf("second join of node 5 answered %v, want ALREADY_EXISTS", e)
	}
}

// A leader asked to remove itself hands leadership to another voter first;
// the removal is then committed by a leader that stays, and the rest of the
// cluster goes on.
func TestMembershipLeaderLeaves(t *testing.T) {
	w := NewT(t, BaseSeed(t), Options{Nodes: 3})
	old := runToLeader(t, w)
	c := w.NewClient(ClientOptions{})
	c.Do(&apiv1.Request{Kind: &apiv1.Request_LeaveCluster{LeaveCluster: &apiv1.LeaveClusterRequest{NodeId: old}}})
	w.Must(t, w.RunUntil(w.ClientsIdle, 60*time.Second))
	if op := lastFinished(t, w); !op.Acked() {
		t.Fatalf("leave of leader %d answered %v", old, op.Resp)
	}
	w.Must(t, w.RunUntil(func() bool { return w.Node(old).Left() }, 30*time.Second))
	w.Must(t, w.RunUntil(w.Converged, 30*time.Second))
	l := w.StableLeader()
	if l == old || l == 0 {
		t.Fatalf("leader after the old one left: %d", l)
	}
	m := membershipOf(w, l)
	if len(m.GetVoters()) != 2 || slices.Contains(m.GetVoters(), old) {
		t.Fatalf("membership after the leader left: %v", m)
	}
	c.Do(task("after"))
	w.Must(t, w.RunUntil(w.ClientsIdle, 30*time.Second))
	if !lastFinished(t, w).Acked() {
		t.Fatalf("the two remaining voters do not take writes")
	}
}
