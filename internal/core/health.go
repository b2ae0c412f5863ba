package core

import (
	"encoding/binary"
	"fmt"
	"slices"
	"strconv"
	"time"

	"go.etcd.io/raft/v3"
	"go.etcd.io/raft/v3/raftpb"

	apiv1 "github.com/blixard/blixard/api/v1"
)

// Node health and fencing.
//
// Heartbeats. The leader notes the tick at which each peer was last heard
// from: any Raft message a peer sends it (append and heartbeat responses,
// forwarded reads) is a heartbeat. Nothing of this is written to the log;
// the leader commits only transitions — ready → disconnected after
// Config.DisconnectTicks of silence, → down after the node's down timeout
// (Config.DownTicks, or longer for a node whose registered lease asks for
// more), and back to ready once it is heard again. A new leader re-arms
// every node's timer at its election instead of taking silence before it
// for death.
//
// The fencing lease. Every node (the leader too) asks for a ReadIndex every
// renewal period with a context of its own. The answer comes only after the
// leader of the moment has heard from a quorum, after the request was sent;
// so a node whose request sent at tick s is answered holds a lease until
// s + Config.LeaseTicks. A node whose lease lapses stops its VMs and tasks
// and starts none (fenced); the driver's per-VM supervisors kill them at
// the lease's deadline even when the node process is gone.
//
// Why at most one copy runs. The leader declares a node down only after
// not hearing from it for longer than its lease plus FenceMarginTicks. Any
// lease-granting request the node sent was received by a leader after it
// was sent: either this leader, whose timer it reset, or an earlier one,
// whose quorum confirmation came before this leader's election (quorums
// intersect), when this leader armed its timer. Either way the node's lease
// ran out, in real time and whatever the drift within MaxClockDrift, before
// the down verdict — and its workloads are placed elsewhere only by the
// command that carries it.

// leaseCtxLen is the length of a lease request's ReadIndex context: the
// incarnation, the sequence number, and a tag that tells it from a read's.
const (
	leaseCtxLen = 17
	leaseCtxTag = 'L'
)

// leaseRequest is a ReadIndex sent to renew the lease.
type leaseRequest struct {
	tick uint64
	at   time.Time
}

// renewLease asks for a ReadIndex to renew the lease, every
// LeaseTicks/5 ticks while a leader is known.
func (n *Node) renewLease() {
	if !n.cfg.Workloads || n.lead == raft.None || n.st.Removed(n.cfg.ID) {
		return
	}
	every := uint64(max(n.cfg.LeaseTicks/5, 1))
	if n.leaseAskedAt != 0 && n.ticks < n.leaseAskedAt+every {
		return
	}
	n.leaseAskedAt = n.ticks
	n.leaseSeq++
	n.leaseAsks[n.leaseSeq] = leaseRequest{tick: n.ticks, at: n.nowTime}
	var ctx [leaseCtxLen]byte
	binary.BigEndian.PutUint64(ctx[:8], n.incarnation)
	binary.BigEndian.PutUint64(ctx[8:16], n.leaseSeq)
	ctx[16] = leaseCtxTag
	n.rn.ReadIndex(ctx[:])
	// Requests never answered are forgotten once they could grant nothing.
	for _, seq := range sortedKeys(n.leaseAsks) {
		if r := n.leaseAsks[seq]; r.tick+uint64(n.cfg.LeaseTicks) <= n.ticks {
			delete(n.leaseAsks, seq)
		}
	}
}

// leaseGranted takes a ReadIndex answer that may be one of our lease
// requests; it reports whether it was.
func (n *Node) leaseGranted(rs raft.ReadState) bool {
	ctx := rs.RequestCtx
	if len(ctx) != leaseCtxLen || ctx[16] != leaseCtxTag {
		return false
	}
	if binary.BigEndian.Uint64(ctx[:8]) != n.incarnation {
		return true
	}
	seq := binary.BigEndian.Uint64(ctx[8:16])
	r, ok := n.leaseAsks[seq]
	if !ok {
		return true
	}
	for _, s := range sortedKeys(n.leaseAsks) {
		if s <= seq {
			delete(n.leaseAsks, s)
		}
	}
	lease := n.effectiveLeaseTicks()
	until := r.tick + lease
	if lease == 0 || until <= n.leaseUntil {
		return true
	}
	n.leaseUntil = until
	n.leaseIndex = max(n.leaseIndex, rs.Index)
	n.leaseHeld = true
	if !r.at.IsZero() {
		n.leaseDeadline = r.at.Add(time.Duration(lease) * n.cfg.TickInterval)
		n.leaseToSend = true
	}
	return true
}

// effectiveLeaseTicks is the lease this node may hold: its configured one,
// but never longer than the one its applied record registers — the leader
// waits out the registered lease before it declares the node down, and a
// node restarted with a longer --lease is not registered with it yet (or
// its registration was refused). 0 until the node is registered.
func (n *Node) effectiveLeaseTicks() uint64 {
	rec, ok := n.st.Node(n.cfg.ID)
	if !ok || rec.GetLeaseMillis() == 0 || n.cfg.TickInterval <= 0 {
		return 0
	}
	registered := uint64(time.Duration(rec.GetLeaseMillis()) * time.Millisecond / n.cfg.TickInterval)
	return min(uint64(n.cfg.LeaseTicks), registered)
}

// leaseValid reports whether this node holds its fencing lease now: by its
// ticks, and by its clock (ticks a stalled or paused process never got do
// not count, but its clock moved on).
func (n *Node) leaseValid() bool {
	return n.leaseHeld && n.ticks < n.leaseUntil && (n.leaseDeadline.IsZero() || n.nowTime.Before(n.leaseDeadline))
}

// canStart reports whether the agent may start a VM now: with a valid
// lease, and once it has applied the log up to the read index that granted
// it — so that it never starts a VM from a state older than the one the
// quorum vouched for (one that a down verdict has since moved elsewhere).
func (n *Node) canStart() bool {
	return n.leaseValid() && n.st.AppliedIndex() >= n.leaseIndex
}

// fenced reports whether this node held a lease and it lapsed: it must
// stop what it runs. (A node that has not held one since it started
// starts nothing, but leaves what it adopted to its supervisors' leases.)
func (n *Node) fenced() bool {
	return n.leaseHeld && !n.leaseValid()
}

// Fenced reports whether this node's fencing lease has lapsed since it
// last held one: its agent stops every VM it runs, and starts none.
func (n *Node) Fenced() bool { return n.fenced() }

// heard notes, on the leader, that peer from is alive. It reports false
// for a message the leader must not take: a ReadIndex from a node removed
// from the cluster (raft would answer it, and so renew the lease of a node
// whose workloads are about to be placed elsewhere).
func (n *Node) heard(m *raftpb.Message) bool {
	if !n.isLeader || m.GetFrom() == n.cfg.ID {
		return true
	}
	if m.GetType() == raftpb.MessageType_MsgReadIndex && (n.st.Removed(m.GetFrom()) || n.downPending[m.GetFrom()]) {
		// Nor from a node this leader has declared down and whose verdict
		// is not applied yet: a lease granted now could outlast the
		// moment its VMs start elsewhere.
		return false
	}
	if n.member(m.GetFrom()) {
		// Only members: forged ids must not grow the table.
		n.heardAt[m.GetFrom()] = n.ticks
	}
	return true
}

// member reports whether id is in the Raft configuration as last applied.
func (n *Node) member(id uint64) bool {
	return slices.Contains(n.confState.GetVoters(), id) || slices.Contains(n.confState.GetLearners(), id)
}

// downTicks is how long the leader waits without hearing from node before
// it declares it down: Config.DownTicks, or longer when the node
// registered a lease that needs more.
func (n *Node) downTicks(node *apiv1.Node) uint64 {
	d := uint64(n.cfg.DownTicks)
	if ms := node.GetLeaseMillis(); ms > 0 && n.cfg.TickInterval > 0 {
		lease := (time.Duration(ms)*time.Millisecond + n.cfg.TickInterval - 1) / n.cfg.TickInterval
		d = max(d, uint64(int(lease)+FenceMarginTicks(int(lease))))
	}
	return d
}

// watchHealth (leader only) proposes the status transitions of the nodes
// that its heartbeats call for.
func (n *Node) watchHealth() {
	if !n.isLeader || !n.cfg.Workloads {
		return
	}
	for _, node := range n.st.Nodes() {
		id := node.GetId()
		if node.GetStatus() == apiv1.NodeStatus_NODE_STATUS_LEFT || n.st.Removed(id) {
			n.watchLeft(node)
			continue
		}
		if node.GetStatus() == apiv1.NodeStatus_NODE_STATUS_DOWN {
			delete(n.downPending, id)
		}
		// A new leader counts silence from its election, but takes a node
		// for alive only once it has heard from it.
		silent, heard := uint64(0), true
		if id != n.cfg.ID {
			at, ok := n.heardAt[id]
			silent, heard = n.ticks-max(at, n.leaderSince), ok
		}
		want, reason := node.GetStatus(), ""
		switch {
		case silent < uint64(n.cfg.DisconnectTicks):
			if heard {
				want, reason = apiv1.NodeStatus_NODE_STATUS_READY, "heard from again"
			}
		case silent < n.downTicks(node):
			if node.GetStatus() == apiv1.NodeStatus_NODE_STATUS_READY {
				want, reason = apiv1.NodeStatus_NODE_STATUS_DISCONNECTED, "no heartbeat for "+n.ticksString(silent)
			}
		default:
			want, reason = apiv1.NodeStatus_NODE_STATUS_DOWN, "no heartbeat for "+n.ticksString(silent)+"; its fencing lease has run out"
		}
		if want == node.GetStatus() {
			continue
		}
		key := "status/" + strconv.FormatUint(id, 10) + "/" + want.String()
		if n.placing[key].until > n.ticks {
			continue
		}
		cmd := &apiv1.Command{Op: &apiv1.Command_SetNodeStatus{SetNodeStatus: &apiv1.SetNodeStatusCommand{Id: id, Status: want, Reason: reason}}}
		if n.propose(cmd) == nil {
			n.placing[key] = inflight{until: n.ticks + uint64(n.cfg.ReportEveryTicks)}
			if want == apiv1.NodeStatus_NODE_STATUS_DOWN {
				// In this leader's log, the verdict commits unless it
				// loses office (which clears this).
				n.downPending[id] = true
			}
		}
	}
}

// watchLeft: a node removed from the cluster may run its workloads until
// its lease runs out (this leader answers no lease request of its since it
// applied the removal; an earlier leader's last answers came before it was
// elected). Once that is sure, the leader evicts them (SetNodeStatus
// left), and they are placed elsewhere.
func (n *Node) watchLeft(node *apiv1.Node) {
	id := node.GetId()
	if len(n.st.VmsOn(id)) == 0 && len(n.st.TasksOn(id)) == 0 {
		delete(n.leftSeen, id)
		return
	}
	seen, ok := n.leftSeen[id]
	if !ok {
		seen = n.ticks
		n.leftSeen[id] = seen
	}
	if n.ticks-max(seen, n.leaderSince) < n.downTicks(node) {
		return
	}
	key := "status/" + strconv.FormatUint(id, 10) + "/left"
	if n.placing[key].until > n.ticks {
		return
	}
	cmd := &apiv1.Command{Op: &apiv1.Command_SetNodeStatus{SetNodeStatus: &apiv1.SetNodeStatusCommand{
		Id: id, Status: apiv1.NodeStatus_NODE_STATUS_LEFT, Reason: "left the cluster; its fencing lease has run out",
	}}}
	if n.propose(cmd) == nil {
		n.placing[key] = inflight{until: n.ticks + uint64(n.cfg.ReportEveryTicks)}
	}
}

// ticksString says how long ticks ticks are, as the config means them.
func (n *Node) ticksString(ticks uint64) string {
	d := time.Duration(ticks) * n.cfg.TickInterval
	return fmt.Sprintf("%.1fs", d.Seconds())
}
