package core

import (
	"fmt"
	"slices"
	"time"

	"go.etcd.io/raft/v3"
	"go.etcd.io/raft/v3/raftpb"
	"google.golang.org/protobuf/proto"

	apiv1 "github.com/blixard/blixard/api/v1"
	"github.com/blixard/blixard/internal/state"
)

// RequestID is the driver's handle for one outstanding request on one node.
type RequestID uint64

// Response is the answer to the request the driver made with ID.
type Response struct {
	ID       RequestID
	Response *apiv1.Response
}

// Persisted is what the driver loaded from the node's disk at open.
type Persisted struct {
	HardState *raftpb.HardState
	// Snapshot is the latest snapshot (nil or index 0 when none).
	Snapshot *raftpb.Snapshot
	// Entries are the log entries after the snapshot, contiguous.
	Entries []*raftpb.Entry
}

func (p Persisted) empty() bool {
	return raft.IsEmptyHardState(p.HardState) && raft.IsEmptySnap(p.Snapshot) && len(p.Entries) == 0
}

// Ready is one batch of effects for the driver to carry out; see the package
// documentation for the order.
type Ready struct {
	// HardState to persist; nil when unchanged.
	HardState *raftpb.HardState
	// Entries to append to the persisted log.
	Entries []*raftpb.Entry
	// Snapshot to persist; nil when none.
	Snapshot *raftpb.Snapshot
	// SnapshotReplacesLog is set when Snapshot came from the leader: the
	// persisted log is replaced by it. Unset, the node took Snapshot of its
	// own applied state and the log behind it may be compacted.
	SnapshotReplacesLog bool
	// ConfState to persist, the Raft configuration now applied; nil when
	// unchanged.
	ConfState *raftpb.ConfState
	// MustSync: the write must be synced before Messages go out.
	MustSync bool
	// Messages to send to peers, after the write.
	Messages []*raftpb.Message
	// Responses to hand to callers.
	Responses []Response
	// CommittedEntries are the entries Advance will apply, for drivers and
	// checkers that observe the applied sequence. Nothing needs doing with
	// them.
	CommittedEntries []*raftpb.Entry
	// LeaseUntil, when not zero, is this node's fencing lease, renewed: the
	// driver extends its per-VM supervisors' leases to it (a time of the
	// driver's clock, as passed to Tick).
	LeaseUntil time.Time
	// VMActions are the node agent's effects: VMs to start, stop and
	// remove on this node, in order. They do not wait for the write: the
	// driver carries them out and reports back with ReportVM.
	VMActions []VMAction
}

// Node is the deterministic node. It is not safe for concurrent use: one
// goroutine (the driver's) owns it.
type Node struct {
	cfg Config
	rn  *raft.RawNode
	log *raft.MemoryStorage
	st  *state.State

	// confState is the Raft configuration as last applied.
	confState *raftpb.ConfState
	// Invariant: lastSnapshot <= st.AppliedIndex().
	lastSnapshot uint64
	// snapshotWanted: raft asked for a snapshot that the stored one could
	// not serve; the next Advance takes one.
	snapshotWanted bool

	ticks uint64
	// now is the driver's clock at the last tick, in Unix nanoseconds; it is
	// only copied into proposed commands.
	now int64

	lead     uint64
	term     uint64
	isLeader bool
	// confPending: until this tick, a membership change this leader
	// proposed may still be pending (raft takes one at a time, and turns a
	// change it will not take into an empty entry, which is why this is a
	// deadline and not a flag).
	confPending uint64
	// promoteErrs: per learner this leader failed to promote, the error
	// it last warned of; the same error again is logged at debug. Only
	// learners of the current configuration, while this node leads.
	promoteErrs map[uint64]string
	// incarnation tells this run's read contexts from an earlier run's.
	incarnation uint64

	// inReady is set between Ready and Advance; rd is raft's part of it.
	inReady bool
	rd      *raft.Ready

	// Effects waiting for the next Ready.
	responses  []Response
	snapToSave *raftpb.Snapshot
	// bootToSave is a new cluster's first hard state, with snapToSave its
	// first snapshot, which starts the log.
	bootToSave   *raftpb.HardState
	confToSave   bool
	nextRegister uint64

	// proposals are the leader's writes in flight, by client request id.
	proposals map[string]*proposal
	// reads are linearizable reads in flight, by read sequence number.
	reads   map[uint64]*read
	readSeq uint64

	// The node agent (agent.go): what runs here, and its effects waiting
	// for the next Ready.
	agentReady   bool
	agentSettled bool
	local        map[string]*localVM
	actions      []VMAction
	// Placement (place.go), on the leader. placing: placements this
	// leader proposed, by workload, until the tick after which it may
	// propose again; restartAt: when a failed VM may restart; vmCursor:
	// where the last pass's budget ran out among the VMs.
	placing   map[string]inflight
	restartAt map[string]uint64
	vmCursor  string
	// The blocked workloads, which fit nowhere when tried while the state
	// (roomSt) was at RoomVersion room and no reservation lapsed
	// (roomFreed): the VMs in blockedVms, and the pending tasks the walk
	// (tasks) has passed but those in taskRetry, whose placements are in
	// flight. unrecorded holds the reasons the state is to be told, oldest
	// first.
	blockedVms map[placeKey]struct{}
	// recording: the workloads whose PlacementFailed is in flight, until
	// the tick after which it may be proposed again.
	recording  map[placeKey]uint64
	tasks      taskWalk
	taskRetry  []uint64
	unrecorded []*apiv1.PlacementFailedCommand
	roomSt     *state.State
	room       uint64
	roomFreed  bool
	// Health (health.go): on the leader, the tick each peer was last
	// heard from and the tick this node became leader; on every node, its
	// fencing lease.
	heardAt       map[uint64]uint64
	leftSeen      map[uint64]uint64
	downPending   map[uint64]bool
	leaseIndex    uint64
	leaderSince   uint64
	nowTime       time.Time
	leaseAsks     map[uint64]leaseRequest
	leaseSeq      uint64
	leaseAskedAt  uint64
	leaseUntil    uint64
	leaseHeld     bool
	leaseDeadline time.Time
	leaseToSend   bool
	// leaderSeenAt is the tick at which this node last came to know a
	// leader after knowing none.
	leaderSeenAt uint64

	// Metrics (observe.go): what was counted since the driver last took
	// it, the membership changes this node proposed, and the commit index
	// it loaded, at or below which entries were applied (and counted) by
	// an earlier run and are not counted again.
	observed       Observations
	ownConfChanges []ownConfChange
	countAfter     uint64
}

type proposal struct {
	waiters  []RequestID
	deadline uint64 // tick
}

type read struct {
	id       RequestID
	req      *apiv1.Request
	index    uint64 // the read index, 0 until raft has confirmed it
	deadline uint64 // tick
}

// New makes a node from its config and what was persisted. With nothing
// persisted and Config.Peers set, it bootstraps a new cluster: a first
// snapshot at index 1 holding the membership, which the first Ready asks the
// driver to persist.
func New(cfg Config, p Persisted) (*Node, error) {
	c, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	n := &Node{
		cfg:         c,
		log:         raft.NewMemoryStorage(),
		st:          state.New(),
		confState:   &raftpb.ConfState{},
		proposals:   map[string]*proposal{},
		reads:       map[uint64]*read{},
		incarnation: c.Incarnation,
		local:       map[string]*localVM{},
		placing:     map[string]inflight{},
		blockedVms:  map[placeKey]struct{}{},
		recording:   map[placeKey]uint64{},
		restartAt:   map[string]uint64{},
		heardAt:     map[uint64]uint64{},
		leftSeen:    map[uint64]uint64{},
		downPending: map[uint64]bool{},
		leaseAsks:   map[uint64]leaseRequest{},
	}
	if p.empty() {
		if len(c.Peers) > 0 {
			if err := n.bootstrap(); err != nil {
				return nil, err
			}
		}
	} else if err := n.load(p); err != nil {
		return nil, err
	}
	rn, err := raft.NewRawNode(&raft.Config{
		ID:                        c.ID,
		ElectionTick:              c.ElectionTicks,
		HeartbeatTick:             c.HeartbeatTicks,
		Storage:                   logStorage{MemoryStorage: n.log, n: n},
		Applied:                   n.st.AppliedIndex(),
		MaxSizePerMsg:             c.MaxSizePerMsgBytes,
		MaxCommittedSizePerReady:  4 * c.MaxSizePerMsgBytes,
		MaxUncommittedEntriesSize: c.MaxUncommittedBytes,
		MaxInflightMsgs:           c.MaxInflightMsgs,
		CheckQuorum:               true,
		PreVote:                   true,
		StepDownOnRemoval:         true,
		Logger:                    c.Logger,
	})
	if err != nil {
		return nil, fmt.Errorf("core: new raft node %d: %w", c.ID, err)
	}
	n.rn = rn
	return n, nil
}

func (n *Node) bootstrap() error {
	voters := slices.Clone(n.cfg.Peers)
	slices.Sort(voters)
	n.st.ApplyMembership(1, voters, nil)
	data, err := n.st.Snapshot()
	if err != nil {
		return fmt.Errorf("core: bootstrap: %w", err)
	}
	n.confState = &raftpb.ConfState{Voters: voters}
	snap := &raftpb.Snapshot{
		Data: data,
		Metadata: &raftpb.SnapshotMetadata{
			ConfState: proto.CloneOf(n.confState),
			Index:     proto.Uint64(1),
			Term:      proto.Uint64(1),
		},
	}
	if err := n.log.ApplySnapshot(snap); err != nil {
		return fmt.Errorf("core: bootstrap: %w", err)
	}
	hs := &raftpb.HardState{Term: proto.Uint64(1), Commit: proto.Uint64(1)}
	if err := n.log.SetHardState(hs); err != nil {
		return fmt.Errorf("core: bootstrap: %w", err)
	}
	n.snapToSave = snap
	n.bootToSave = hs
	n.lastSnapshot = 1
	n.confToSave = true
	return nil
}

func (n *Node) load(p Persisted) error {
	if !raft.IsEmptySnap(p.Snapshot) {
		if err := n.log.ApplySnapshot(p.Snapshot); err != nil {
			return fmt.Errorf("core: load snapshot: %w", err)
		}
		st, err := state.Restore(p.Snapshot.GetData())
		if err != nil {
			return fmt.Errorf("core: load snapshot at index %d: %w", p.Snapshot.GetMetadata().GetIndex(), err)
		}
		if st.AppliedIndex() != p.Snapshot.GetMetadata().GetIndex() {
			return fmt.Errorf("core: snapshot at index %d holds state applied to %d", p.Snapshot.GetMetadata().GetIndex(), st.AppliedIndex())
		}
		n.st = st
		n.confState = proto.CloneOf(p.Snapshot.GetMetadata().GetConfState())
		if n.confState == nil {
			n.confState = &raftpb.ConfState{}
		}
		n.lastSnapshot = st.AppliedIndex()
	}
	if p.HardState != nil {
		n.countAfter = p.HardState.GetCommit()
		if err := n.log.SetHardState(p.HardState); err != nil {
			return fmt.Errorf("core: load hard state: %w", err)
		}
	}
	if err := n.log.Append(p.Entries); err != nil {
		return fmt.Errorf("core: load %d entries: %w", len(p.Entries), err)
	}
	if len(p.Entries) > 0 && p.Entries[0].GetIndex() != n.st.AppliedIndex()+1 && !raft.IsEmptySnap(p.Snapshot) {
		return fmt.Errorf("core: entries start at %d, snapshot is at %d", p.Entries[0].GetIndex(), n.st.AppliedIndex())
	}
	last, _ := n.log.LastIndex()
	if c := p.HardState.GetCommit(); c > last {
		return fmt.Errorf("core: hard state commits index %d but the log ends at %d", c, last)
	}
	return nil
}

// ID is the node's id.
func (n *Node) ID() uint64 { return n.cfg.ID }

// State is the node's state machine, to read (the driver must not change it).
func (n *Node) State() *state.State { return n.st }

// Leader is the leader this node knows of (0 when none) and the term.
func (n *Node) Leader() (id, term uint64) { return n.lead, n.term }

// Status is etcd raft's view of this node, with its peers' progress.
func (n *Node) Status() raft.Status { return n.rn.Status() }

// LastIndex is the index of the last entry in this node's log.
func (n *Node) LastIndex() uint64 {
	last, _ := n.log.LastIndex()
	return last
}

// BasicStatus is etcd raft's view of this node, without allocating.
func (n *Node) BasicStatus() raft.BasicStatus { return n.rn.BasicStatus() }

// Tick advances the logical clock by one tick; now is the driver's clock.
func (n *Node) Tick(now time.Time) {
	n.mustNotBeInReady("Tick")
	n.ticks++
	n.now = now.UnixNano()
	n.nowTime = now
	n.rn.Tick()
	n.expire()
	n.register()
	n.renewLease()
	n.watchHealth()
	n.reconcile()
}

// Step hands the node a Raft message from a peer.
func (n *Node) Step(m *raftpb.Message) error {
	n.mustNotBeInReady("Step")
	if m.GetTo() != n.cfg.ID {
		return fmt.Errorf("core: node %d got a message for %d", n.cfg.ID, m.GetTo())
	}
	if !n.heard(m) {
		return nil
	}
	if m.GetType() == raftpb.MessageType_MsgProp && (proposesConfChange(m) || !forwardable(m)) {
		// Membership changes are proposed by the leader itself, never
		// forwarded; raft panics on one whose data does not decode. And a
		// peer forwards only what a node proposes about itself.
		return nil
	}
	if m.GetType() == raftpb.MessageType_MsgHeartbeat && m.GetCommit() > n.LastIndex() {
		// raft panics on a heartbeat committing past this node's log; a
		// leader never sends one (it commits at most what the follower
		// has acknowledged), so it is forged or corrupt: dropped.
		return nil
	}
	if err := n.rn.Step(m); err != nil {
		return fmt.Errorf("core: step %s from %d: %w", m.GetType(), m.GetFrom(), err)
	}
	return nil
}

// ReportUnreachable tells raft that a message to peer could not be sent.
func (n *Node) ReportUnreachable(peer uint64) {
	n.mustNotBeInReady("ReportUnreachable")
	n.rn.ReportUnreachable(peer)
}

// ReportSnapshot tells raft whether a MsgSnap to peer was delivered.
func (n *Node) ReportSnapshot(peer uint64, ok bool) {
	n.mustNotBeInReady("ReportSnapshot")
	status := raft.SnapshotFinish
	if !ok {
		status = raft.SnapshotFailure
	}
	n.rn.ReportSnapshot(peer, status)
}

// Campaign makes this node stand for election now (tests and leadership
// transfer; elections normally start from ticks).
func (n *Node) Campaign() error {
	n.mustNotBeInReady("Campaign")
	return n.rn.Campaign()
}

// HasReady reports whether Ready has anything to carry out.
func (n *Node) HasReady() bool {
	return n.rn.HasReady() || len(n.responses) > 0 || n.snapToSave != nil || n.confToSave || n.bootToSave != nil || len(n.actions) > 0 || n.leaseToSend
}

// Ready returns the effects to carry out. Advance must follow before any
// other event.
func (n *Node) Ready() Ready {
	n.mustNotBeInReady("Ready")
	n.inReady = true
	var out Ready
	if n.rn.HasReady() {
		rd := n.rn.Ready()
		n.rd = &rd
		if rd.HardState != nil && !raft.IsEmptyHardState(rd.HardState) {
			out.HardState = proto.CloneOf(rd.HardState)
		}
		out.Entries = rd.Entries
		if !raft.IsEmptySnap(rd.Snapshot) {
			// raft's MustSync counts entries and hard state only: a Ready
			// that carries just a snapshot must still be synced before the
			// node acknowledges it.
			out.Snapshot = rd.Snapshot
			out.SnapshotReplacesLog = true
			out.MustSync = true
			// The leader's snapshot supersedes one of our own not yet saved.
			n.snapToSave = nil
		}
		out.Messages = rd.Messages
		out.MustSync = out.MustSync || rd.MustSync || commitsConfChange(rd.CommittedEntries)
		out.CommittedEntries = rd.CommittedEntries
	}
	if n.snapToSave != nil {
		out.Snapshot = n.snapToSave
		out.MustSync = true
		n.snapToSave = nil
	}
	if n.bootToSave != nil {
		if out.HardState == nil {
			out.HardState = n.bootToSave
		}
		out.SnapshotReplacesLog = true
		n.bootToSave = nil
	}
	if n.confToSave {
		out.ConfState = proto.CloneOf(n.confState)
		n.confToSave = false
	}
	out.Responses = n.responses
	n.responses = nil
	out.VMActions = n.actions
	n.actions = nil
	if n.leaseToSend {
		out.LeaseUntil = n.leaseDeadline
		n.leaseToSend = false
	}
	return out
}

// Advance tells the node that the last Ready was carried out. It applies the
// committed entries; an error means the node cannot go on (a snapshot from
// the leader that does not decode) and the driver must stop it.
func (n *Node) Advance() error {
	if !n.inReady {
		panic("core: Advance without Ready")
	}
	n.inReady = false
	rd := n.rd
	n.rd = nil
	if rd == nil {
		return nil
	}
	if !raft.IsEmptySnap(rd.Snapshot) {
		if err := n.installSnapshot(rd.Snapshot); err != nil {
			return err
		}
	}
	if rd.HardState != nil && !raft.IsEmptyHardState(rd.HardState) {
		if err := n.log.SetHardState(rd.HardState); err != nil {
			return fmt.Errorf("core: set hard state: %w", err)
		}
	}
	if err := n.log.Append(rd.Entries); err != nil {
		return fmt.Errorf("core: append %d entries: %w", len(rd.Entries), err)
	}
	for _, e := range rd.CommittedEntries {
		n.applyEntry(e)
	}
	n.rn.Advance(*rd)
	if rd.SoftState != nil {
		n.leadership(rd.SoftState)
	}
	for _, rs := range rd.ReadStates {
		if !n.leaseGranted(rs) {
			n.readIndexed(rs)
		}
	}
	n.serveReads()
	if len(rd.CommittedEntries) > 0 || !raft.IsEmptySnap(rd.Snapshot) || rd.SoftState != nil {
		n.reconcile()
	}
	return n.maybeSnapshot()
}

// proposesConfChange reports whether a forwarded proposal holds a
// membership change.
// forwardable reports whether every entry of a MsgProp from a peer is a
// proposal that a follower makes and forwards: its own registration, or
// its agent's report on a VM or task placed on it, each naming the sender.
// Everything else — client writes, tokens, placements, node statuses, CA
// rotations — only a leader proposes, from requests it checked itself; a
// node (or a stolen node certificate) cannot slip one into the log.
func forwardable(m *raftpb.Message) bool {
	from := m.GetFrom()
	for _, e := range m.GetEntries() {
		if e.GetType() != raftpb.EntryType_EntryNormal {
			continue // conf changes: proposesConfChange
		}
		var cmd apiv1.Command
		if len(e.GetData()) == 0 || proto.Unmarshal(e.GetData(), &cmd) != nil || cmd.GetProposerId() != from || cmd.GetClientRequestId() != "" {
			return false
		}
		switch op := cmd.GetOp().(type) {
		case *apiv1.Command_RegisterNode:
			if op.RegisterNode.GetId() != from || op.RegisterNode.GetJoinTokenId() != "" {
				return false
			}
		case *apiv1.Command_ReportVm:
			if op.ReportVm.GetNodeId() != from {
				return false
			}
		case *apiv1.Command_ReportTask:
			if op.ReportTask.GetNodeId() != from {
				return false
			}
		default:
			return false
		}
	}
	return true
}

func proposesConfChange(m *raftpb.Message) bool {
	for _, e := range m.GetEntries() {
		if e.GetType() == raftpb.EntryType_EntryConfChange || e.GetType() == raftpb.EntryType_EntryConfChangeV2 {
			return true
		}
	}
	return false
}

// commitsConfChange reports whether a membership change is among entries
// newly committed. raft lets a commit index go to disk unsynced, but a
// removed node stops once it learns its removal is committed: if the
// leader then lost that commit index in a crash, in a two-voter cluster it
// could never commit again (it would need the vote of the node that left).
// So the commit of a membership change is synced before the messages that
// announce it go out.
func commitsConfChange(entries []*raftpb.Entry) bool {
	for _, e := range entries {
		if e.GetType() == raftpb.EntryType_EntryConfChange || e.GetType() == raftpb.EntryType_EntryConfChangeV2 {
			return true
		}
	}
	return false
}

func (n *Node) mustNotBeInReady(event string) {
	if n.inReady {
		panic("core: " + event + " between Ready and Advance")
	}
}

// leadership reacts to a change of leader or role: writes in flight on a
// leader that lost office have an unknown outcome; reads that had not been
// given a read index never will be.
func (n *Node) leadership(ss *raft.SoftState) {
	wasLeader := n.isLeader
	if n.lead == raft.None && ss.Lead != raft.None {
		n.leaderSeenAt = n.ticks
	}
	n.lead = ss.Lead
	n.isLeader = ss.RaftState == raft.StateLeader
	n.term = n.rn.BasicStatus().GetTerm()
	if n.isLeader && !wasLeader {
		// A new leader re-arms every node's timer (health.go).
		n.leaderSince = n.ticks
		clear(n.heardAt)
		clear(n.leftSeen)
	}
	if !n.isLeader {
		clear(n.downPending)
		n.confPending = 0
		// A later term's leader starts its placement afresh.
		clear(n.placing)
		clear(n.restartAt)
		clear(n.recording)
		n.forgetBlocked()
	}
	if wasLeader && !n.isLeader {
		n.failProposals(apiv1.ErrorCode_ERROR_CODE_OUTCOME_UNKNOWN, "outcome unknown: leadership changed while the write was in flight")
	}
	for _, seq := range sortedKeys(n.reads) {
		if r := n.reads[seq]; r.index == 0 {
			delete(n.reads, seq)
			n.respond(r.id, errorResponse(apiv1.ErrorCode_ERROR_CODE_UNAVAILABLE, "leader changed before the read was confirmed; retry"))
		}
	}
}
