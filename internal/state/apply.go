package state

import (
	"fmt"
	"slices"
	"strconv"
	"strings"

	"google.golang.org/protobuf/proto"

	apiv1 "github.com/blixard/blixard/api/v1"
)

// at is where in the log, and when by the proposer's clock, a command applies.
type at struct {
	index uint64
	nanos int64
	// checking: Check's dry run, which has no clock.
	checking bool
}

// Apply applies the command at log index index and returns its response.
//
// A rejected command returns a Response whose Error is set and, as err, the
// same rejection as a *Error; the state is left as it was but for the applied
// index. A command whose client request id was seen before returns the
// remembered response and a nil error, and changes nothing.
func (s *State) Apply(index uint64, cmd *apiv1.Command) (*apiv1.Response, error) {
	s.advance(index)
	id := cmd.GetClientRequestId()
	if err := checkText("client_request_id", id, MaxClientRequestID); err != nil {
		return &apiv1.Response{Error: err.Proto()}, err
	}
	if id != "" {
		if r, ok := s.requests[id]; ok {
			return proto.CloneOf(r.GetResponse()), nil
		}
	}
	resp, rerr := s.exec(at{index: index, nanos: cmd.GetProposedUnixNano()}, cmd, true)
	if rerr != nil {
		resp = &apiv1.Response{Error: rerr.Proto()}
	}
	if id != "" {
		s.remember(index, id, resp)
	}
	if rerr != nil {
		return proto.CloneOf(resp), rerr
	}
	return proto.CloneOf(resp), nil
}

// Check validates the command against the current state without applying
// it: the edge's half of "validate at the edge and again in Apply". A nil
// result means Apply would accept the command now (it may still refuse it
// later, when the state has moved on). A retry of a remembered client request
// id passes: Apply answers it with the remembered response.
func (s *State) Check(cmd *apiv1.Command) error {
	if err := checkText("client_request_id", cmd.GetClientRequestId(), MaxClientRequestID); err != nil {
		return err
	}
	if id := cmd.GetClientRequestId(); id != "" {
		if _, ok := s.requests[id]; ok {
			// A retry: Apply answers it with the remembered response.
			return nil
		}
	}
	if _, err := s.exec(at{checking: true}, cmd, false); err != nil {
		return err
	}
	return nil
}

// Validate checks what can be checked of a client's command without the
// state: names, specs, enums, sizes. It is the edge's half of "validate at
// the edge and again in Apply": an error here is a definite refusal that
// holds whatever the state, so a node may answer it without consensus.
// Refusals that depend on the state (a name taken, a VM not found) are
// Apply's alone, because only the log's order makes them true. Commands
// that only nodes propose are validated by Apply.
func Validate(cmd *apiv1.Command) error {
	if err := checkText("client_request_id", cmd.GetClientRequestId(), MaxClientRequestID); err != nil {
		return err
	}
	var err *Error
	switch op := cmd.GetOp().(type) {
	case *apiv1.Command_CreateVm:
		if err = checkVmName(op.CreateVm.GetName()); err == nil {
			err = checkVmSpec(op.CreateVm.GetSpec())
		}
	case *apiv1.Command_StartVm:
		err = checkVmName(op.StartVm.GetName())
	case *apiv1.Command_StopVm:
		err = checkVmName(op.StopVm.GetName())
	case *apiv1.Command_DeleteVm:
		err = checkVmName(op.DeleteVm.GetName())
	case *apiv1.Command_SubmitTask:
		err = checkTaskSpec(op.SubmitTask.GetSpec())
	case *apiv1.Command_DrainNode:
		if op.DrainNode.GetId() == 0 {
			err = invalid("node_id", "must not be 0")
		}
	case *apiv1.Command_CreateToken:
		err = checkToken("token", op.CreateToken.GetToken())
	case *apiv1.Command_RevokeToken:
		if !validTokenID(op.RevokeToken.GetId()) {
			err = invalid("id", "must be %d lowercase hex digits", tokenIDLen)
		}
	case nil:
		err = invalid("op", "command has no known operation")
	}
	if err != nil {
		return err
	}
	return nil
}

// ApplyEmpty records that index held no command (a new leader's empty entry).
func (s *State) ApplyEmpty(index uint64) { s.advance(index) }

// ApplyMembership records the Raft configuration that index made current.
// Members that disappear from it are remembered as removed, for good.
func (s *State) ApplyMembership(index uint64, voters, learners []uint64) {
	s.ApplyMembershipChange(index, MembershipChange{Voters: voters, Learners: learners})
}

// MembershipChange is a Raft configuration change as the state records it.
type MembershipChange struct {
	// Voters and Learners are the configuration after the change.
	Voters, Learners []uint64
	// Join is the record of a node that joined with this change; it is
	// registered as if by its own RegisterNode.
	Join *apiv1.RegisterNodeCommand
	// ClientRequestID and Response are remembered like a command's, so a
	// retried join or leave gets the first answer.
	ClientRequestID string
	Response        *apiv1.Response
	// Nanos is the proposer's clock when it proposed the change (0 in
	// entries written before proposers recorded it): the time of the
	// events it makes.
	Nanos int64
}

// CheckJoin reports why a node may not join: an id that is a member or was
// ever removed, or a record that RegisterNode would refuse.
//
// In a secure cluster the join's token must also still be good at nanos,
// the proposer's clock (see checkJoinToken).
func (s *State) CheckJoin(join *apiv1.RegisterNodeCommand, nanos int64) error {
	id := join.GetId()
	if slices.Contains(s.membership.GetVoters(), id) || slices.Contains(s.membership.GetLearners(), id) {
		return exists("node_id", "node %d is already a member", id)
	}
	if err := s.checkRegisterNode(join); err != nil {
		if err.Field == "id" {
			err.Field = "node_id"
		}
		return err
	}
	if err := s.checkJoinToken(join, nanos); err != nil {
		return err
	}
	return nil
}

// CheckLeave reports why node id may not be removed.
func (s *State) CheckLeave(id uint64) error {
	if id == 0 {
		return invalid("node_id", "must not be 0")
	}
	if !slices.Contains(s.membership.GetVoters(), id) && !slices.Contains(s.membership.GetLearners(), id) {
		return notFound("node_id", "node %d is not a member", id)
	}
	return nil
}

// ApplyRefused records, at index, that a membership change was refused: the
// log moves on, and the requester's id remembers the refusal.
func (s *State) ApplyRefused(index uint64, clientRequestID string, err error) *apiv1.Response {
	s.advance(index)
	resp := errorResponse(err)
	if clientRequestID != "" {
		if _, seen := s.requests[clientRequestID]; !seen {
			s.remember(index, clientRequestID, resp)
		}
	}
	return proto.CloneOf(resp)
}

// ApplyMembershipChange records a configuration change at index.
func (s *State) ApplyMembershipChange(index uint64, c MembershipChange) {
	s.advance(index)
	s.secVersion++
	s.room++
	next := &apiv1.Membership{
		Voters:   sortedIDs(c.Voters),
		Learners: sortedIDs(c.Learners),
		Removed:  append([]uint64(nil), s.membership.GetRemoved()...),
	}
	member := map[uint64]bool{}
	for _, id := range next.Voters {
		member[id] = true
	}
	for _, id := range next.Learners {
		member[id] = true
	}
	for _, id := range append(append([]uint64(nil), s.membership.GetVoters()...), s.membership.GetLearners()...) {
		if !member[id] {
			next.Removed = append(next.Removed, id)
			if n, ok := s.nodes[id]; ok {
				n.Status = apiv1.NodeStatus_NODE_STATUS_LEFT
				// Its workloads stay where they are until the leader,
				// once the node's lease has surely run out, says so
				// (SetNodeStatus left): it may still run them now.
				n.StatusReason = "removed from the cluster"
				n.UpdatedIndex = index
			}
			s.event(at{index: index, nanos: c.Nanos}, "node", id, "", 0, "node "+strconv.FormatUint(id, 10)+" was removed from the cluster")
		}
	}
	next.Removed = sortedIDs(next.Removed)
	s.membership = next
	if c.Join != nil {
		s.registerNode(at{index: index, nanos: c.Nanos}, c.Join)
		s.event(at{index: index, nanos: c.Nanos}, "node", c.Join.GetId(), "", 0, "node "+strconv.FormatUint(c.Join.GetId(), 10)+
			" joined as a "+strings.ToLower(strings.TrimPrefix(c.Join.GetRole().String(), "NODE_ROLE_")))
	}
	if c.ClientRequestID != "" && c.Response != nil {
		s.remember(index, c.ClientRequestID, c.Response)
	}
}

func errorResponse(err error) *apiv1.Response {
	if se, ok := err.(*Error); ok {
		return &apiv1.Response{Error: se.Proto()}
	}
	return &apiv1.Response{Error: &apiv1.Error{Code: apiv1.ErrorCode_ERROR_CODE_FAILED_PRECONDITION, Message: err.Error()}}
}

// Removed reports whether node id was a member and was removed.
func (s *State) Removed(id uint64) bool {
	for _, r := range s.membership.GetRemoved() {
		if r == id {
			return true
		}
	}
	return false
}

func (s *State) advance(index uint64) {
	if index <= s.applied {
		panic(fmt.Sprintf("state: index %d applied after %d", index, s.applied))
	}
	s.applied = index
}

// remember stores a client request's response, evicting the oldest record
// once MaxRequestRecords are kept.
func (s *State) remember(index uint64, id string, resp *apiv1.Response) {
	rec := &apiv1.RequestRecord{ClientRequestId: id, Index: index, Response: proto.CloneOf(resp)}
	s.requests[id] = rec
	s.requestLog = append(s.requestLog, rec)
	for len(s.requestLog) > MaxRequestRecords {
		delete(s.requests, s.requestLog[0].GetClientRequestId())
		s.requestLog[0] = nil
		s.requestLog = s.requestLog[1:]
	}
}

// exec validates the command's operation and, when mutate is set and the
// operation is valid, carries it out.
func (s *State) exec(a at, cmd *apiv1.Command, mutate bool) (*apiv1.Response, *Error) {
	var (
		check func() *Error
		run   func() *apiv1.Response
	)
	switch op := cmd.GetOp().(type) {
	case *apiv1.Command_InitCluster:
		check, run = func() *Error { return s.checkInitCluster(op.InitCluster) }, func() *apiv1.Response { return s.initCluster(op.InitCluster) }
	case *apiv1.Command_RegisterNode:
		check, run = func() *Error { return s.checkRegisterNode(op.RegisterNode) }, func() *apiv1.Response { return s.registerNode(a, op.RegisterNode) }
	case *apiv1.Command_CreateVm:
		check, run = func() *Error { return s.checkCreateVm(op.CreateVm) }, func() *apiv1.Response { return s.createVm(a, op.CreateVm) }
	case *apiv1.Command_StartVm:
		check, run = func() *Error { return s.checkStartVm(op.StartVm) }, func() *apiv1.Response { return s.startVm(a, op.StartVm) }
	case *apiv1.Command_StopVm:
		check, run = func() *Error { return s.checkStopVm(op.StopVm) }, func() *apiv1.Response { return s.stopVm(a, op.StopVm) }
	case *apiv1.Command_DeleteVm:
		check, run = func() *Error { return s.checkDeleteVm(op.DeleteVm) }, func() *apiv1.Response { return s.deleteVm(a, op.DeleteVm) }
	case *apiv1.Command_AssignVm:
		check, run = func() *Error { return s.checkAssignVm(op.AssignVm) }, func() *apiv1.Response { return s.assignVm(a, op.AssignVm) }
	case *apiv1.Command_ReportVm:
		check, run = func() *Error { return s.checkReportVm(op.ReportVm) }, func() *apiv1.Response { return s.reportVm(a, op.ReportVm) }
	case *apiv1.Command_SubmitTask:
		check, run = func() *Error { return s.checkSubmitTask(op.SubmitTask) }, func() *apiv1.Response { return s.submitTask(a, op.SubmitTask) }
	case *apiv1.Command_CancelTask:
		check, run = func() *Error { return s.checkCancelTask(op.CancelTask) }, func() *apiv1.Response { return s.cancelTask(a, op.CancelTask) }
	case *apiv1.Command_AssignTask:
		check, run = func() *Error { return s.checkAssignTask(op.AssignTask) }, func() *apiv1.Response { return s.assignTask(a, op.AssignTask) }
	case *apiv1.Command_ReportTask:
		check, run = func() *Error { return s.checkReportTask(op.ReportTask) }, func() *apiv1.Response { return s.reportTask(a, op.ReportTask) }
	case *apiv1.Command_SetNodeStatus:
		check, run = func() *Error { return s.checkSetNodeStatus(op.SetNodeStatus) }, func() *apiv1.Response { return s.setNodeStatus(a, op.SetNodeStatus) }
	case *apiv1.Command_DrainNode:
		check, run = func() *Error { return s.checkDrainNode(op.DrainNode) }, func() *apiv1.Response { return s.drainNode(a, op.DrainNode) }
	case *apiv1.Command_PlacementFailed:
		check, run = func() *Error { return s.checkPlacementFailed(op.PlacementFailed) }, func() *apiv1.Response { return s.placementFailed(a, op.PlacementFailed) }
	case *apiv1.Command_CreateToken:
		check, run = func() *Error { return s.checkCreateToken(op.CreateToken) }, func() *apiv1.Response { return s.createToken(op.CreateToken) }
	case *apiv1.Command_RevokeToken:
		check, run = func() *Error { return s.checkRevokeToken(op.RevokeToken) }, func() *apiv1.Response { return s.revokeToken(op.RevokeToken) }
	case *apiv1.Command_NoteLeader:
		check, run = func() *Error { return s.checkNoteLeader(op.NoteLeader) }, func() *apiv1.Response { return s.noteLeader(a, op.NoteLeader) }
	case *apiv1.Command_RotateCa:
		check, run = func() *Error { return s.checkRotateCa(a, op.RotateCa) }, func() *apiv1.Response { return s.rotateCa(a, op.RotateCa) }
	default:
		return nil, invalid("op", "command has no known operation")
	}
	if err := check(); err != nil {
		return nil, err
	}
	if !mutate {
		return nil, nil
	}
	resp := run()
	s.reindex(a.index, cmd)
	s.forgetEnded()
	switch cmd.GetOp().(type) {
	case *apiv1.Command_InitCluster, *apiv1.Command_RegisterNode, *apiv1.Command_SetNodeStatus, *apiv1.Command_DrainNode:
		s.room++ // a node's record changed
	}
	return resp, nil
}

func sortedIDs(ids []uint64) []uint64 {
	out := slices.Clone(ids)
	slices.Sort(out)
	return slices.Compact(out)
}
