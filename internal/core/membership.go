package core

import (
	"fmt"
	"slices"

	"go.etcd.io/raft/v3/raftpb"
	"google.golang.org/protobuf/proto"

	apiv1 "github.com/blixard/blixard/api/v1"
	"github.com/blixard/blixard/internal/state"
)

// PromoteWithinEntries: a learner that wants to vote is promoted once its
// log is within this many entries of the leader's.
const PromoteWithinEntries = 1000

// join handles JoinCluster on the leader: the node enters as a learner, its
// record carried in the conf change's context so that every node learns its
// address at the same index.
func (n *Node) join(id RequestID, req *apiv1.JoinClusterRequest) {
	key := req.GetClientRequestId()
	rec := &apiv1.RegisterNodeCommand{
		Id:       req.GetNodeId(),
		Address:  req.GetAddress(),
		Role:     req.GetRole(),
		Capacity: req.GetCapacity(),
		Labels:   req.GetLabels(),

		JoinTokenId: req.GetJoinTokenId(),
	}
	if rec.Role == apiv1.NodeRole_NODE_ROLE_UNSPECIFIED {
		rec.Role = apiv1.NodeRole_NODE_ROLE_VOTER
	}
	cc := &raftpb.ConfChangeV2{Changes: []*raftpb.ConfChangeSingle{{
		Type:   raftpb.ConfChangeType_ConfChangeAddLearnerNode.Enum(),
		NodeId: proto.Uint64(rec.GetId()),
	}}}
	n.proposeConfChange(id, key, cc, &apiv1.Command{ClientRequestId: key, ProposedUnixNano: n.now, ProposerId: n.cfg.ID,
		Op: &apiv1.Command_RegisterNode{RegisterNode: rec}})
}

// leave handles LeaveCluster on the leader. A leader is not asked to remove
// itself: it hands leadership to its most caught-up voter and tells the
// caller to retry, so that the removal is committed by a leader that stays
// (a leader that removes itself may stop before its followers learn the
// removal is committed, and leave them unable to elect anyone).
func (n *Node) leave(id RequestID, req *apiv1.LeaveClusterRequest) {
	key := req.GetClientRequestId()
	if req.GetNodeId() == n.cfg.ID && n.isLeader {
		if _, done := n.st.Response(key); !done {
			if to := n.transferee(); to != 0 {
				n.rn.TransferLeader(to)
				n.respond(id, errorResponse(apiv1.ErrorCode_ERROR_CODE_UNAVAILABLE,
					fmt.Sprintf("node %d leads; leadership goes to node %d first: retry", n.cfg.ID, to)))
				return
			}
		}
	}
	cc := &raftpb.ConfChangeV2{Changes: []*raftpb.ConfChangeSingle{{
		Type:   raftpb.ConfChangeType_ConfChangeRemoveNode.Enum(),
		NodeId: proto.Uint64(req.GetNodeId()),
	}}}
	n.proposeConfChange(id, key, cc, &apiv1.Command{ClientRequestId: key, ProposedUnixNano: n.now, ProposerId: n.cfg.ID})
}

// transferee is the voter, other than this node, with the longest log.
func (n *Node) transferee() uint64 {
	var best, match uint64
	for id, pr := range n.rn.Status().Progress {
		if id == n.cfg.ID || !slices.Contains(n.confState.GetVoters(), id) {
			continue
		}
		if best == 0 || pr.Match > match || (pr.Match == match && id < best) {
			best, match = id, pr.Match
		}
	}
	return best
}

// proposeConfChange is write() for membership changes. raft takes one
// membership change at a time (a second one proposed while the first is
// pending becomes an empty entry), so a change proposed while another is
// in flight is answered at once: retry.
func (n *Node) proposeConfChange(id RequestID, key string, cc *raftpb.ConfChangeV2, ctx *apiv1.Command) {
	if !n.admit(id, key) {
		return
	}
	if n.confPending > n.ticks {
		n.respond(id, errorResponse(apiv1.ErrorCode_ERROR_CODE_UNAVAILABLE, "another membership change is in progress; retry"))
		return
	}
	if node := cc.GetChanges()[0].GetNodeId(); node == 0 {
		n.respond(id, errorField(apiv1.ErrorCode_ERROR_CODE_INVALID_ARGUMENT, "node_id", "must not be 0"))
		return
	}
	if reg := ctx.GetRegisterNode(); reg != nil {
		if reg.GetAddress() == "" {
			n.respond(id, errorField(apiv1.ErrorCode_ERROR_CODE_INVALID_ARGUMENT, "address", "must not be empty"))
			return
		}
		if reg.GetCapacity() == nil {
			n.respond(id, errorField(apiv1.ErrorCode_ERROR_CODE_INVALID_ARGUMENT, "capacity", "must be set"))
			return
		}
	}
	data, err := deterministic.Marshal(ctx)
	if err != nil {
		n.respond(id, errorResponse(apiv1.ErrorCode_ERROR_CODE_INVALID_ARGUMENT, fmt.Sprintf("request does not encode: %v", err)))
		return
	}
	cc.Context = data
	err = n.rn.ProposeConfChange(cc)
	n.proposedConfChange(cc, err)
	if err != nil {
		n.respond(id, errorResponse(apiv1.ErrorCode_ERROR_CODE_UNAVAILABLE, fmt.Sprintf("membership change not accepted: %v; retry", err)))
		return
	}
	n.confPending = n.ticks + uint64(n.cfg.RequestTimeoutTicks)
	n.proposals[key] = &proposal{waiters: []RequestID{id}, deadline: n.ticks + uint64(n.cfg.RequestTimeoutTicks)}
}

// applyConfChange applies a committed membership change, or refuses it
// (without telling raft) when the state says no: a join of a member or of a
// removed id, a leave of a non-member, a second copy of the same request.
func (n *Node) applyConfChange(e *raftpb.Entry) {
	index := e.GetIndex()
	n.confPending = 0
	var cc raftpb.ConfChangeI
	if e.GetType() == raftpb.EntryType_EntryConfChange {
		var v1 raftpb.ConfChange
		if err := proto.Unmarshal(e.GetData(), &v1); err != nil {
			n.cfg.Logger.Errorf("core: conf change %d does not decode, skipped: %v", index, err)
			n.st.ApplyEmpty(index)
			return
		}
		cc = &v1
	} else {
		var v2 raftpb.ConfChangeV2
		if err := proto.Unmarshal(e.GetData(), &v2); err != nil {
			n.cfg.Logger.Errorf("core: conf change %d does not decode, skipped: %v", index, err)
			n.st.ApplyEmpty(index)
			return
		}
		cc = &v2
	}
	v2 := cc.AsV2()
	n.appliedConfChange(e, v2)
	ctx := &apiv1.Command{}
	if len(v2.GetContext()) > 0 {
		if err := proto.Unmarshal(v2.GetContext(), ctx); err != nil {
			ctx = &apiv1.Command{}
		}
	}
	key := ctx.GetClientRequestId()
	if key != "" {
		if resp, ok := n.st.Response(key); ok {
			n.st.ApplyEmpty(index)
			n.answerWaiters(key, resp)
			return
		}
	}
	if err := n.checkConfChange(v2, ctx); err != nil {
		n.cfg.Logger.Warningf("core: membership change %d refused: %v", index, err)
		n.answerWaiters(key, n.st.ApplyRefused(index, key, err))
		return
	}
	n.confState = n.rn.ApplyConfChange(cc)
	n.confToSave = true
	// The response is remembered in the state, so it holds only what every
	// node agrees on at this index.
	var resp *apiv1.Response
	switch {
	case ctx.GetRegisterNode() != nil:
		resp = &apiv1.Response{Kind: &apiv1.Response_JoinCluster{JoinCluster: &apiv1.JoinClusterResponse{
			ClusterId:  n.st.Cluster().GetId(),
			Membership: &apiv1.Membership{Voters: n.confState.GetVoters(), Learners: n.confState.GetLearners()},
		}}}
	case key != "":
		resp = &apiv1.Response{Kind: &apiv1.Response_LeaveCluster{LeaveCluster: &apiv1.LeaveClusterResponse{}}}
	}
	n.st.ApplyMembershipChange(index, state.MembershipChange{
		Voters:          n.confState.GetVoters(),
		Learners:        n.confState.GetLearners(),
		Join:            ctx.GetRegisterNode(),
		ClientRequestID: key,
		Response:        resp,
		Nanos:           ctx.GetProposedUnixNano(),
	})
	if resp != nil {
		n.answerWaiters(key, resp)
	}
}

// checkConfChange is the state's verdict on a membership change.
func (n *Node) checkConfChange(cc *raftpb.ConfChangeV2, ctx *apiv1.Command) error {
	return CheckConfChange(n.st, cc, ctx, n.confState.GetVoters(), n.confState.GetLearners())
}

// CheckConfChange is the rule every node applies to a membership change
// (with its command, ctx) on a state whose Raft configuration is voters
// and learners: nil when it may take effect. Checkers that replay the log
// use it too.
func CheckConfChange(st *state.State, cc *raftpb.ConfChangeV2, ctx *apiv1.Command, voters, learners []uint64) error {
	for _, ch := range cc.GetChanges() {
		id := ch.GetNodeId()
		switch ch.GetType() {
		case raftpb.ConfChangeType_ConfChangeAddLearnerNode:
			if reg := ctx.GetRegisterNode(); reg != nil && reg.GetId() == id {
				if err := st.CheckJoin(reg, ctx.GetProposedUnixNano()); err != nil {
					return err
				}
			} else if st.Removed(id) || slices.Contains(voters, id) || slices.Contains(learners, id) {
				return fmt.Errorf("node %d cannot become a learner", id)
			}
		case raftpb.ConfChangeType_ConfChangeAddNode:
			// Promotion of a learner (or a voter already: a no-op change).
			if !slices.Contains(learners, id) && !slices.Contains(voters, id) {
				return fmt.Errorf("node %d is not a member to promote", id)
			}
		case raftpb.ConfChangeType_ConfChangeRemoveNode:
			if err := st.CheckLeave(id); err != nil {
				return err
			}
			if slices.Contains(voters, id) && len(voters) == 1 {
				return fmt.Errorf("node %d is the last voter", id)
			}
		default:
			return fmt.Errorf("membership change of type %s is not supported", ch.GetType())
		}
	}
	return nil
}

// answerWaiters responds to the writes waiting on key.
func (n *Node) answerWaiters(key string, resp *apiv1.Response) {
	if key == "" {
		return
	}
	if p, ok := n.proposals[key]; ok {
		delete(n.proposals, key)
		for _, w := range p.waiters {
			n.respond(w, proto.CloneOf(resp))
		}
	}
}

// promote is the leader's membership controller: a learner whose record
// says voter is promoted once its log is within PromoteWithinEntries of the
// leader's. One change at a time; workers stay learners.
func (n *Node) promote() {
	for _, id := range sortedKeys(n.promoteErrs) {
		if !n.isLeader || !slices.Contains(n.confState.GetLearners(), id) {
			delete(n.promoteErrs, id)
		}
	}
	if !n.isLeader || len(n.confState.GetLearners()) == 0 {
		return
	}
	if n.confPending > n.ticks {
		return
	}
	st := n.rn.Status()
	last := n.LastIndex()
	for _, id := range n.confState.GetLearners() {
		rec, ok := n.st.Node(id)
		if !ok || rec.GetRole() != apiv1.NodeRole_NODE_ROLE_VOTER {
			continue
		}
		pr, ok := st.Progress[id]
		if !ok || pr.Match+PromoteWithinEntries < last || pr.Match == 0 {
			continue
		}
		cc := &raftpb.ConfChangeV2{Changes: []*raftpb.ConfChangeSingle{{
			Type:   raftpb.ConfChangeType_ConfChangeAddNode.Enum(),
			NodeId: proto.Uint64(id),
		}}}
		// The context carries only the proposer's clock, for the time of
		// the change's events.
		if data, err := deterministic.Marshal(&apiv1.Command{ProposedUnixNano: n.now, ProposerId: n.cfg.ID}); err == nil {
			cc.Context = data
		}
		err := n.rn.ProposeConfChange(cc)
		n.proposedConfChange(cc, err)
		if err != nil {
			// Tried again every RegisterEveryTicks: warned once per error.
			if text := err.Error(); n.promoteErrs[id] != text {
				if n.promoteErrs == nil {
					n.promoteErrs = map[uint64]string{}
				}
				n.promoteErrs[id] = text
				n.cfg.Logger.Warningf("core: promote learner %d: %v", id, err)
			} else {
				n.cfg.Logger.Debugf("core: promote learner %d: %v", id, err)
			}
			return
		}
		delete(n.promoteErrs, id)
		n.confPending = n.ticks + uint64(n.cfg.RequestTimeoutTicks)
		return
	}
}

// Removed reports whether this node has been removed from the cluster; the
// driver should stop it.
func (n *Node) Removed() bool { return n.st.Removed(n.cfg.ID) }

// members lists the Raft members as this node sees them.
func (n *Node) members() []*apiv1.ClusterMember {
	var progress map[uint64]uint64
	if n.isLeader {
		progress = map[uint64]uint64{}
		for id, pr := range n.rn.Status().Progress {
			progress[id] = pr.Match
		}
	}
	var out []*apiv1.ClusterMember
	add := func(id uint64, voter bool) {
		m := &apiv1.ClusterMember{Id: id, Voter: voter, MatchIndex: progress[id]}
		if rec, ok := n.st.Node(id); ok {
			m.Address, m.Role, m.Status, m.Capacity = rec.GetAddress(), rec.GetRole(), rec.GetStatus(), rec.GetCapacity()
			m.Allocated = n.st.Allocated(id)
		}
		out = append(out, m)
	}
	for _, id := range n.confState.GetVoters() {
		add(id, true)
	}
	for _, id := range n.confState.GetLearners() {
		add(id, false)
	}
	return out
}
