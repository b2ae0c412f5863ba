package core

import (
	"time"

	"go.etcd.io/raft/v3/raftpb"
	"google.golang.org/protobuf/proto"

	apiv1 "github.com/blixard/blixard/api/v1"
	"github.com/blixard/blixard/internal/state"
)

// Observations are what the node counted, for its metrics, since the
// driver last took them (TakeObservations). They are plain values kept
// apart from everything else: taking them or not changes nothing the node
// does, proposes or answers.
type Observations struct {
	// ProposalsCommitted counts the entries this node proposed — its own
	// commands (client writes it proposed as leader, placements, node
	// verdicts, its registration, its agent's reports) and the membership
	// changes it proposed — that it applied, whether the state took them
	// or refused them. A proposal forwarded to a leader and lost on the
	// way is neither committed nor dropped.
	ProposalsCommitted uint64
	// ProposalsDropped counts the proposals raft refused at once
	// (raft.ErrProposalDropped: no leader known, a leadership transfer
	// under way, too much uncommitted log).
	ProposalsDropped uint64
	// PlacementLatencies: for each placement this node proposed (as
	// leader) and applied, of a workload created, submitted or started, or
	// moved off a node that went away, how long it waited: from the entry
	// that made it wait to this node's clock when the assignment applied,
	// both times of the leaders' clocks (Tick). Restarts by a VM's restart
	// policy are not in it (their wait is the policy's back-off). Oldest
	// first, at most maxObservedPlacements; those beyond are left out.
	PlacementLatencies []time.Duration
	// VMReschedules and TaskReschedules count the placements this node
	// proposed and applied that moved a VM or a task off a node that went
	// down, left the cluster or was drained; first placements and restarts
	// on the same node's failure are not counted.
	VMReschedules, TaskReschedules uint64
	// PlacementTries counts the scheduler calls this node's placement
	// passes made (as leader): one per workload tried, placed or not.
	// Workloads blocked for want of room are not tried (PlacementBlocked).
	PlacementTries uint64
}

// PlacementBlocked is how many workloads this node, as leader, found no
// room for and passes over until room may have grown (a VM that ends, a
// node that joins, registers, changes status or is drained or undrained).
// It is 0 on a follower.
func (n *Node) PlacementBlocked() int {
	if !n.isLeader || n.roomSt != n.st {
		return 0
	}
	tasks := n.tasks.passed(n.st)
	for _, id := range n.taskRetry {
		if _, ok := n.st.PendingTask(id); ok {
			tasks-- // in flight, not blocked
		}
	}
	return len(n.blockedVms) + tasks
}

// maxObservedPlacements bounds the placement latencies kept for a driver
// that does not take them (the simulator).
const maxObservedPlacements = 4096

// maxOwnConfChanges bounds the membership changes this node remembers
// proposing; raft takes one at a time, so a few suffice.
const maxOwnConfChanges = 4

// ownConfChange is a membership change this node proposed, in a term.
type ownConfChange struct {
	term uint64
	cc   *raftpb.ConfChangeV2
}

// TakeObservations returns what the node counted since the last call and
// starts counting afresh. Call it between Advance and the next Ready (or
// never: nothing depends on it).
func (n *Node) TakeObservations() Observations {
	o := n.observed
	n.observed = Observations{}
	return o
}

// proposed counts the outcome of handing raft a proposal.
func (n *Node) proposed(err error) {
	if err != nil {
		n.observed.ProposalsDropped++
	}
}

// proposedConfChange counts a membership change handed to raft and, when
// raft took it, remembers it to count its commit.
func (n *Node) proposedConfChange(cc *raftpb.ConfChangeV2, err error) {
	n.proposed(err)
	if err != nil {
		return
	}
	if len(n.ownConfChanges) == maxOwnConfChanges {
		n.ownConfChanges = n.ownConfChanges[1:]
	}
	n.ownConfChanges = append(n.ownConfChanges, ownConfChange{term: n.rn.BasicStatus().GetTerm(), cc: proto.CloneOf(cc)})
}

// appliedConfChange counts a membership change entry as committed when
// this node proposed it: the same change, in the term it proposed it in
// (a term has one leader, so no other node's entry can match).
func (n *Node) appliedConfChange(e *raftpb.Entry, cc *raftpb.ConfChangeV2) {
	for i, own := range n.ownConfChanges {
		if own.term == e.GetTerm() && proto.Equal(own.cc, cc) {
			n.ownConfChanges = append(n.ownConfChanges[:i:i], n.ownConfChanges[i+1:]...)
			if e.GetIndex() > n.countAfter {
				n.observed.ProposalsCommitted++
			}
			return
		}
	}
}

// ownPlacement is what the state said of a workload before this node's
// assignment of it applied.
type ownPlacement struct {
	vm   bool
	ok   bool
	wait state.Placement
}

// beforeApply reads, for a command of this node's about to apply, what
// observing it needs from the state as it is before.
func (n *Node) beforeApply(index uint64, cmd *apiv1.Command) (mine bool, p ownPlacement) {
	if cmd.GetProposerId() != n.cfg.ID || index <= n.countAfter {
		return false, p
	}
	switch op := cmd.GetOp().(type) {
	case *apiv1.Command_AssignVm:
		p.vm = true
		p.wait, p.ok = n.st.VmPlacement(op.AssignVm.GetName())
	case *apiv1.Command_AssignTask:
		p.wait, p.ok = n.st.TaskPlacement(op.AssignTask.GetId())
	}
	return true, p
}

// afterApply counts a command of this node's that applied (taken, when
// err is nil).
func (n *Node) afterApply(p ownPlacement, err error) {
	n.observed.ProposalsCommitted++
	if !p.ok || err != nil {
		return
	}
	switch {
	case p.wait.Reschedule && p.vm:
		n.observed.VMReschedules++
	case p.wait.Reschedule:
		n.observed.TaskReschedules++
	}
	since := p.wait.WaitingSinceUnixNano
	if p.wait.Restart || since == 0 || n.now == 0 || len(n.observed.PlacementLatencies) >= maxObservedPlacements {
		return
	}
	// Leaders' clocks differ by their drift: a wait that looks negative
	// took no time.
	n.observed.PlacementLatencies = append(n.observed.PlacementLatencies, time.Duration(max(n.now-since, 0)))
}
