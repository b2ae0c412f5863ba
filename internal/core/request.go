package core

import (
	"cmp"
	"encoding/binary"
	"fmt"
	"maps"
	"slices"
	"time"

	"go.etcd.io/raft/v3"
	"google.golang.org/protobuf/proto"

	apiv1 "github.com/blixard/blixard/api/v1"
	"github.com/blixard/blixard/internal/state"
)

var deterministic = proto.MarshalOptions{Deterministic: true}

// Request hands the node an API request. Exactly one Response with the same
// id will leave in a later Ready (see the package documentation).
func (n *Node) Request(id RequestID, req *apiv1.Request) {
	n.mustNotBeInReady("Request")
	cmd, perr := commandFor(req)
	switch {
	case perr != nil:
		n.respond(id, &apiv1.Response{Error: perr})
	case cmd != nil:
		n.write(id, cmd)
	case req.GetJoinCluster() != nil:
		n.join(id, req.GetJoinCluster())
	case req.GetLeaveCluster() != nil:
		n.leave(id, req.GetLeaveCluster())
	case req.GetHealthCheck() != nil:
		n.respond(id, n.answer(req)) // this node's own view, at once
	default:
		n.read(id, req)
	}
}

// admit settles what every write settles before it is proposed: a missing
// client request id, a retry of a write already applied (answered from the
// state, wherever we are), a follower (NotLeader), a copy of a write in
// flight (it waits with the first). It reports whether the write goes on.
func (n *Node) admit(id RequestID, key string) bool {
	if key == "" {
		n.respond(id, errorField(apiv1.ErrorCode_ERROR_CODE_INVALID_ARGUMENT, "client_request_id", "must be set on every write"))
		return false
	}
	if resp, ok := n.st.Response(key); ok {
		n.respond(id, resp)
		return false
	}
	if !n.isLeader {
		n.respond(id, n.notLeader())
		return false
	}
	if p, ok := n.proposals[key]; ok {
		p.waiters = append(p.waiters, id)
		return false
	}
	return true
}

// write handles a mutating request on its way to the log.
func (n *Node) write(id RequestID, cmd *apiv1.Command) {
	key := cmd.GetClientRequestId()
	if !n.admit(id, key) {
		return
	}
	// Refuse at once what no state could accept. Refusals that depend on
	// the state wait for the log: a leader's applied state may be stale (a
	// new leader not yet caught up, or a deposed one that does not know it
	// yet), and a refusal on stale grounds would not be linearizable.
	if err := state.Validate(cmd); err != nil {
		n.respond(id, errorResponseOf(err))
		return
	}
	if len(n.proposals)+len(n.reads) >= n.cfg.MaxPendingRequests {
		n.respond(id, errorResponse(apiv1.ErrorCode_ERROR_CODE_UNAVAILABLE,
			fmt.Sprintf("too many requests in flight (%d); retry", n.cfg.MaxPendingRequests)))
		return
	}
	if err := n.propose(cmd); err != nil {
		n.respond(id, errorResponse(apiv1.ErrorCode_ERROR_CODE_UNAVAILABLE, fmt.Sprintf("write not accepted: %v; retry", err)))
		return
	}
	n.proposals[key] = &proposal{waiters: []RequestID{id}, deadline: n.ticks + uint64(n.cfg.RequestTimeoutTicks)}
}

// propose stamps the command with this node and its clock and proposes it.
func (n *Node) propose(cmd *apiv1.Command) error {
	cmd.ProposerId = n.cfg.ID
	cmd.ProposedUnixNano = n.now
	data, err := deterministic.Marshal(cmd)
	if err != nil {
		return fmt.Errorf("marshal command: %w", err)
	}
	err = n.rn.Propose(data)
	n.proposed(err)
	if err != nil {
		return fmt.Errorf("raft dropped the proposal: %w", err)
	}
	return nil
}

// read handles a query: at once when stale, else after a ReadIndex round.
func (n *Node) read(id RequestID, req *apiv1.Request) {
	if staleRead(req) {
		n.respond(id, n.answer(req))
		return
	}
	if n.lead == raft.None {
		n.respond(id, errorResponse(apiv1.ErrorCode_ERROR_CODE_UNAVAILABLE, "no leader known; retry, or ask for a stale read"))
		return
	}
	if len(n.proposals)+len(n.reads) >= n.cfg.MaxPendingRequests {
		n.respond(id, errorResponse(apiv1.ErrorCode_ERROR_CODE_UNAVAILABLE,
			fmt.Sprintf("too many requests in flight (%d); retry", n.cfg.MaxPendingRequests)))
		return
	}
	n.readSeq++
	n.reads[n.readSeq] = &read{id: id, req: req, deadline: n.ticks + uint64(n.cfg.RequestTimeoutTicks)}
	var ctx [16]byte
	binary.BigEndian.PutUint64(ctx[:8], n.incarnation)
	binary.BigEndian.PutUint64(ctx[8:], n.readSeq)
	n.rn.ReadIndex(ctx[:])
}

// readIndexed records the read index raft confirmed for one of our reads.
func (n *Node) readIndexed(rs raft.ReadState) {
	if len(rs.RequestCtx) != 16 || binary.BigEndian.Uint64(rs.RequestCtx[:8]) != n.incarnation {
		return // not one of this run's reads
	}
	if r, ok := n.reads[binary.BigEndian.Uint64(rs.RequestCtx[8:])]; ok && r.index == 0 {
		r.index = max(rs.Index, 1)
	}
}

// serveReads answers the reads whose read index this node has applied.
func (n *Node) serveReads() {
	for _, seq := range sortedKeys(n.reads) {
		r := n.reads[seq]
		if r.index != 0 && r.index <= n.st.AppliedIndex() {
			delete(n.reads, seq)
			n.respond(r.id, n.answer(r.req))
		}
	}
}

// expire answers what has waited longer than Config.RequestTimeoutTicks.
func (n *Node) expire() {
	for _, key := range sortedKeys(n.proposals) {
		if p := n.proposals[key]; p.deadline <= n.ticks {
			delete(n.proposals, key)
			for _, w := range p.waiters {
				n.respond(w, errorResponse(apiv1.ErrorCode_ERROR_CODE_OUTCOME_UNKNOWN,
					"outcome unknown: the write was not applied in time; retry with the same client request id"))
			}
		}
	}
	for _, seq := range sortedKeys(n.reads) {
		if r := n.reads[seq]; r.deadline <= n.ticks {
			delete(n.reads, seq)
			n.respond(r.id, errorResponse(apiv1.ErrorCode_ERROR_CODE_UNAVAILABLE, "read not confirmed in time; retry"))
		}
	}
}

// failProposals answers every write in flight with code.
func (n *Node) failProposals(code apiv1.ErrorCode, msg string) {
	for _, key := range sortedKeys(n.proposals) {
		for _, w := range n.proposals[key].waiters {
			n.respond(w, errorResponse(code, msg))
		}
	}
	clear(n.proposals)
}

// register keeps this node's record in the state current: its address,
// role, capacity and labels, and (on a leader) the cluster's name.
func (n *Node) register() {
	if n.ticks < n.nextRegister || n.lead == raft.None {
		return
	}
	n.nextRegister = n.ticks + uint64(n.cfg.RegisterEveryTicks)
	n.promote()
	if n.isLeader && n.cfg.ClusterID != "" && n.st.Cluster().GetId() == "" {
		_ = n.propose(&apiv1.Command{Op: &apiv1.Command_InitCluster{InitCluster: &apiv1.InitClusterCommand{
			ClusterId: n.cfg.ClusterID, Secure: n.cfg.Secure, AdminToken: n.cfg.AdminToken, CaCertificate: n.cfg.CACertificate}}})
	}
	if n.isLeader && n.st.NotedTerm() < n.term {
		// The event log notes each term's leader, once.
		_ = n.propose(&apiv1.Command{Op: &apiv1.Command_NoteLeader{NoteLeader: &apiv1.NoteLeaderCommand{NodeId: n.cfg.ID, Term: n.term}}})
	}
	if to, due := n.st.NextCAPhase(n.now); n.isLeader && due {
		// A CA rotation's phase has run its overlap: the leader moves it on
		// (the state checks the time again by this proposal's clock).
		_ = n.propose(&apiv1.Command{Op: &apiv1.Command_RotateCa{RotateCa: &apiv1.RotateCaCommand{ToPhase: to}}})
	}
	if n.cfg.Address == "" || n.cfg.Capacity == nil || n.st.Removed(n.cfg.ID) {
		return
	}
	want := &apiv1.RegisterNodeCommand{
		Id:       n.cfg.ID,
		Address:  n.cfg.Address,
		Role:     n.cfg.Role,
		Capacity: n.cfg.Capacity,
		Labels:   n.cfg.Labels,
		Images:   n.cfg.Images,

		VcpuOvercommit:   n.cfg.VcpuOvercommit,
		MemoryOvercommit: n.cfg.MemoryOvercommit,
		LeaseMillis:      uint32(min(time.Duration(n.cfg.LeaseTicks)*n.cfg.TickInterval/time.Millisecond, state.MaxLeaseMillis)),
	}
	if have, ok := n.st.Node(n.cfg.ID); ok && have.GetAddress() == want.GetAddress() && have.GetRole() == want.GetRole() &&
		have.GetVcpuOvercommit() == want.GetVcpuOvercommit() && have.GetMemoryOvercommit() == want.GetMemoryOvercommit() &&
		have.GetLeaseMillis() == want.GetLeaseMillis() &&
		proto.Equal(have.GetCapacity(), want.GetCapacity()) && maps.Equal(have.GetLabels(), want.GetLabels()) &&
		slices.EqualFunc(have.GetImages(), want.GetImages(), func(a, b *apiv1.ImageInfo) bool { return proto.Equal(a, b) }) {
		return
	}
	// A dropped proposal is tried again at the next round.
	_ = n.propose(&apiv1.Command{Op: &apiv1.Command_RegisterNode{RegisterNode: want}})
}

// notLeader answers a write that reached a follower.
func (n *Node) notLeader() *apiv1.Response {
	if n.lead == raft.None {
		return errorResponse(apiv1.ErrorCode_ERROR_CODE_UNAVAILABLE, "no leader known; retry")
	}
	e := &apiv1.Error{
		Code:     apiv1.ErrorCode_ERROR_CODE_NOT_LEADER,
		Message:  fmt.Sprintf("node %d is not the leader; node %d is", n.cfg.ID, n.lead),
		LeaderId: n.lead,
	}
	if node, ok := n.st.Node(n.lead); ok {
		e.LeaderAddress = node.GetAddress()
	}
	return &apiv1.Response{Error: e}
}

func (n *Node) respond(id RequestID, resp *apiv1.Response) {
	n.responses = append(n.responses, Response{ID: id, Response: resp})
}

func errorResponse(code apiv1.ErrorCode, msg string) *apiv1.Response {
	return &apiv1.Response{Error: &apiv1.Error{Code: code, Message: msg}}
}

func errorField(code apiv1.ErrorCode, field, msg string) *apiv1.Response {
	return &apiv1.Response{Error: &apiv1.Error{Code: code, Field: field, Message: field + ": " + msg}}
}

func sortedKeys[K cmp.Ordered, V any](m map[K]V) []K {
	return slices.Sorted(maps.Keys(m))
}
