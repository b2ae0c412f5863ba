package core

import (
	"errors"
	"strconv"

	"google.golang.org/protobuf/proto"

	apiv1 "github.com/blixard/blixard/api/v1"
	"github.com/blixard/blixard/internal/state"
)

// commandFor turns a write request into the command it proposes. It returns
// a nil command for a read, and an error for a request of no known kind.
func commandFor(req *apiv1.Request) (*apiv1.Command, *apiv1.Error) {
	var (
		key string
		cmd = &apiv1.Command{}
	)
	switch k := req.GetKind().(type) {
	case *apiv1.Request_CreateVm:
		key = k.CreateVm.GetClientRequestId()
		cmd.Op = &apiv1.Command_CreateVm{CreateVm: &apiv1.CreateVmCommand{Name: k.CreateVm.GetName(), Spec: k.CreateVm.GetSpec(), Start: k.CreateVm.GetStart()}}
	case *apiv1.Request_StartVm:
		key = k.StartVm.GetClientRequestId()
		cmd.Op = &apiv1.Command_StartVm{StartVm: &apiv1.StartVmCommand{Name: k.StartVm.GetName()}}
	case *apiv1.Request_StopVm:
		key = k.StopVm.GetClientRequestId()
		cmd.Op = &apiv1.Command_StopVm{StopVm: &apiv1.StopVmCommand{Name: k.StopVm.GetName()}}
	case *apiv1.Request_DeleteVm:
		key = k.DeleteVm.GetClientRequestId()
		cmd.Op = &apiv1.Command_DeleteVm{DeleteVm: &apiv1.DeleteVmCommand{Name: k.DeleteVm.GetName()}}
	case *apiv1.Request_SubmitTask:
		key = k.SubmitTask.GetClientRequestId()
		cmd.Op = &apiv1.Command_SubmitTask{SubmitTask: &apiv1.SubmitTaskCommand{Spec: k.SubmitTask.GetSpec()}}
	case *apiv1.Request_CancelTask:
		key = k.CancelTask.GetClientRequestId()
		cmd.Op = &apiv1.Command_CancelTask{CancelTask: &apiv1.CancelTaskCommand{Id: k.CancelTask.GetId()}}
	case *apiv1.Request_DrainNode:
		key = k.DrainNode.GetClientRequestId()
		cmd.Op = &apiv1.Command_DrainNode{DrainNode: &apiv1.DrainNodeCommand{Id: k.DrainNode.GetNodeId(), Drain: k.DrainNode.GetDrain()}}
	case *apiv1.Request_CreateToken:
		key = k.CreateToken.GetClientRequestId()
		cmd.Op = &apiv1.Command_CreateToken{CreateToken: &apiv1.CreateTokenCommand{Token: k.CreateToken.GetToken()}}
	case *apiv1.Request_RevokeToken:
		key = k.RevokeToken.GetClientRequestId()
		cmd.Op = &apiv1.Command_RevokeToken{RevokeToken: &apiv1.RevokeTokenCommand{Kind: k.RevokeToken.GetKind(), Id: k.RevokeToken.GetId()}}
	case *apiv1.Request_RotateCa:
		key = k.RotateCa.GetClientRequestId()
		rc := proto.CloneOf(k.RotateCa)
		rc.ClientRequestId = ""
		cmd.Op = &apiv1.Command_RotateCa{RotateCa: rc}
	case *apiv1.Request_GetVm, *apiv1.Request_ListVms, *apiv1.Request_GetTask, *apiv1.Request_ListTasks, *apiv1.Request_GetClusterStatus,
		*apiv1.Request_JoinCluster, *apiv1.Request_LeaveCluster, *apiv1.Request_HealthCheck, *apiv1.Request_ListTokens, *apiv1.Request_ListEvents:
		return nil, nil
	default:
		return nil, &apiv1.Error{Code: apiv1.ErrorCode_ERROR_CODE_INVALID_ARGUMENT, Field: "kind", Message: "kind: request of no known kind"}
	}
	cmd.ClientRequestId = key
	return cmd, nil
}

func staleRead(req *apiv1.Request) bool {
	switch k := req.GetKind().(type) {
	case *apiv1.Request_GetVm:
		return k.GetVm.GetStale()
	case *apiv1.Request_ListVms:
		return k.ListVms.GetStale()
	case *apiv1.Request_GetTask:
		return k.GetTask.GetStale()
	case *apiv1.Request_ListTasks:
		return k.ListTasks.GetStale()
	case *apiv1.Request_GetClusterStatus:
		return k.GetClusterStatus.GetStale()
	case *apiv1.Request_ListEvents:
		return true // this node's copy of the log: every node tells the same story
	}
	return false
}

// answer serves a read from this node's state as it is now.
func (n *Node) answer(req *apiv1.Request) *apiv1.Response {
	switch k := req.GetKind().(type) {
	case *apiv1.Request_GetVm:
		v, ok := n.st.Vm(k.GetVm.GetName())
		if !ok {
			return errorField(apiv1.ErrorCode_ERROR_CODE_NOT_FOUND, "name", "no VM named "+strconv.Quote(k.GetVm.GetName()))
		}
		return &apiv1.Response{Kind: &apiv1.Response_GetVm{GetVm: &apiv1.GetVmResponse{Vm: v}}}
	case *apiv1.Request_ListVms:
		return &apiv1.Response{Kind: &apiv1.Response_ListVms{ListVms: &apiv1.ListVmsResponse{Vms: n.st.Vms(int(k.ListVms.GetLimit()))}}}
	case *apiv1.Request_GetTask:
		t, ok := n.st.Task(k.GetTask.GetId())
		if !ok {
			return errorField(apiv1.ErrorCode_ERROR_CODE_NOT_FOUND, "id", n.st.NoTask(k.GetTask.GetId()))
		}
		return &apiv1.Response{Kind: &apiv1.Response_GetTask{GetTask: &apiv1.GetTaskResponse{Task: t}}}
	case *apiv1.Request_ListTasks:
		return &apiv1.Response{Kind: &apiv1.Response_ListTasks{ListTasks: &apiv1.ListTasksResponse{Tasks: n.st.Tasks(int(k.ListTasks.GetLimit()))}}}
	case *apiv1.Request_GetClusterStatus:
		bs := n.rn.BasicStatus()
		return &apiv1.Response{Kind: &apiv1.Response_GetClusterStatus{GetClusterStatus: &apiv1.GetClusterStatusResponse{
			Cluster:      n.st.Cluster(),
			Nodes:        n.st.Nodes(),
			NodeId:       n.cfg.ID,
			LeaderId:     bs.Lead,
			Term:         bs.GetTerm(),
			CommitIndex:  bs.GetCommit(),
			AppliedIndex: n.st.AppliedIndex(),
			Members:      n.members(),
		}}}
	case *apiv1.Request_ListEvents:
		r := k.ListEvents
		return &apiv1.Response{Kind: &apiv1.Response_ListEvents{ListEvents: &apiv1.ListEventsResponse{
			Events:       n.st.Events(r.GetAfterIndex(), r.GetVmName(), r.GetNodeId(), int(r.GetLimit())),
			AppliedIndex: n.st.AppliedIndex(),
		}}}
	case *apiv1.Request_ListTokens:
		var out []*apiv1.Token
		for _, t := range n.st.Tokens(k.ListTokens.GetKind()) {
			out = append(out, state.PublicToken(t))
		}
		return &apiv1.Response{Kind: &apiv1.Response_ListTokens{ListTokens: &apiv1.ListTokensResponse{Tokens: out}}}
	case *apiv1.Request_HealthCheck:
		return &apiv1.Response{Kind: &apiv1.Response_HealthCheck{HealthCheck: &apiv1.HealthCheckResponse{
			NodeId:       n.cfg.ID,
			LeaderId:     n.lead,
			Term:         n.rn.BasicStatus().GetTerm(),
			AppliedIndex: n.st.AppliedIndex(),
			Healthy:      n.lead != 0 && !n.Removed(),
		}}}
	}
	return errorField(apiv1.ErrorCode_ERROR_CODE_INVALID_ARGUMENT, "kind", "not a read")
}

// errorResponseOf turns a state rejection into a response.
func errorResponseOf(err error) *apiv1.Response {
	var se *state.Error
	if errors.As(err, &se) {
		return &apiv1.Response{Error: se.Proto()}
	}
	return errorResponse(apiv1.ErrorCode_ERROR_CODE_FAILED_PRECONDITION, err.Error())
}
