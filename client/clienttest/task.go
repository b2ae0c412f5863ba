package clienttest

import (
	"context"
	"slices"

	"google.golang.org/protobuf/proto"

	apiv1 "github.com/blixard/blixard/api/v1"
	"github.com/blixard/blixard/api/v1/apiv1grpc"
)

type taskService struct {
	apiv1grpc.UnimplementedTaskServiceServer
	n *Node
}

func (n *Node) lookupTask(id uint64) (*apiv1.Task, error) {
	t, ok := n.tasks[id]
	if !ok {
		return nil, fieldError(apiv1.ErrorCode_ERROR_CODE_NOT_FOUND, "id", "no task %d", id)
	}
	return t, nil
}

func (s taskService) SubmitTask(_ context.Context, req *apiv1.SubmitTaskRequest) (*apiv1.SubmitTaskResponse, error) {
	n := s.n
	return write(n, req.GetClientRequestId(), func() (*apiv1.SubmitTaskResponse, error) {
		spec := req.GetSpec()
		res := spec.GetResources()
		switch {
		case spec == nil:
			return nil, fieldError(invalid, "spec", "must be set")
		case spec.GetCommand() == "":
			return nil, fieldError(invalid, "spec.command", "must not be empty")
		case res == nil:
			return nil, fieldError(invalid, "spec.resources", "must be set")
		case res.GetVcpus() == 0 || res.GetVcpus() > maxVcpus:
			return nil, fieldError(invalid, "spec.resources.vcpus", "must be between 1 and %d", maxVcpus)
		case res.GetMemoryMib() == 0 || res.GetMemoryMib() > maxMemoryMiB:
			return nil, fieldError(invalid, "spec.resources.memory_mib", "must be between 1 and %d", maxMemoryMiB)
		}
		index, nanos := n.tick()
		t := &apiv1.Task{
			Id:                index,
			Spec:              proto.CloneOf(spec),
			Status:            apiv1.TaskStatus_TASK_STATUS_PENDING,
			Reason:            "submitted; waiting for placement",
			SubmittedIndex:    index,
			UpdatedIndex:      index,
			SubmittedUnixNano: nanos,
		}
		n.tasks[t.Id] = t
		return &apiv1.SubmitTaskResponse{Task: proto.CloneOf(t)}, nil
	})
}

func (s taskService) CancelTask(_ context.Context, req *apiv1.CancelTaskRequest) (*apiv1.CancelTaskResponse, error) {
	n := s.n
	return write(n, req.GetClientRequestId(), func() (*apiv1.CancelTaskResponse, error) {
		t, err := n.lookupTask(req.GetId())
		if err != nil {
			return nil, err
		}
		if t.GetStatus().Ended() {
			return nil, fieldError(apiv1.ErrorCode_ERROR_CODE_FAILED_PRECONDITION, "id", "task %d has already ended: %s", t.GetId(), t.GetStatus())
		}
		index, _ := n.tick()
		t.Status = apiv1.TaskStatus_TASK_STATUS_CANCELLED
		t.Reason = "cancelled"
		t.UpdatedIndex = index
		return &apiv1.CancelTaskResponse{Task: proto.CloneOf(t)}, nil
	})
}

func (s taskService) GetTask(_ context.Context, req *apiv1.GetTaskRequest) (*apiv1.GetTaskResponse, error) {
	return read(s.n, func() (*apiv1.GetTaskResponse, error) {
		t, err := s.n.lookupTask(req.GetId())
		if err != nil {
			return nil, err
		}
		return &apiv1.GetTaskResponse{Task: proto.CloneOf(t)}, nil
	})
}

func (s taskService) ListTasks(_ context.Context, req *apiv1.ListTasksRequest) (*apiv1.ListTasksResponse, error) {
	return read(s.n, func() (*apiv1.ListTasksResponse, error) {
		ids := make([]uint64, 0, len(s.n.tasks))
		for id := range s.n.tasks {
			ids = append(ids, id)
		}
		slices.Sort(ids)
		if l := int(req.GetLimit()); l > 0 && l < len(ids) {
			ids = ids[:l]
		}
		resp := &apiv1.ListTasksResponse{Tasks: []*apiv1.Task{}}
		for _, id := range ids {
			resp.Tasks = append(resp.Tasks, proto.CloneOf(s.n.tasks[id]))
		}
		return resp, nil
	})
}
