package client

import (
	"context"

	"google.golang.org/grpc"

	apiv1 "github.com/blixard/blixard/api/v1"
	"github.com/blixard/blixard/api/v1/apiv1grpc"
)

// SubmitTask records a task to run once; its id is in the response. It is a
// write.
func (c *Client) SubmitTask(ctx context.Context, req *apiv1.SubmitTaskRequest) (*apiv1.SubmitTaskResponse, error) {
	req = withRequestID(req)
	return call(ctx, c, func(ctx context.Context, cc grpc.ClientConnInterface) (*apiv1.SubmitTaskResponse, error) {
		return apiv1grpc.NewTaskServiceClient(cc).SubmitTask(ctx, req)
	})
}

// CancelTask cancels a task that has not ended. It is a write.
func (c *Client) CancelTask(ctx context.Context, req *apiv1.CancelTaskRequest) (*apiv1.CancelTaskResponse, error) {
	req = withRequestID(req)
	return call(ctx, c, func(ctx context.Context, cc grpc.ClientConnInterface) (*apiv1.CancelTaskResponse, error) {
		return apiv1grpc.NewTaskServiceClient(cc).CancelTask(ctx, req)
	})
}

// GetTask reads one task: linearizably, or from the answering node's state
// if req.Stale is set.
func (c *Client) GetTask(ctx context.Context, req *apiv1.GetTaskRequest) (*apiv1.GetTaskResponse, error) {
	return call(ctx, c, func(ctx context.Context, cc grpc.ClientConnInterface) (*apiv1.GetTaskResponse, error) {
		return apiv1grpc.NewTaskServiceClient(cc).GetTask(ctx, req)
	})
}

// ListTasks reads the tasks, by id, at most req.Limit of them (0 for all).
func (c *Client) ListTasks(ctx context.Context, req *apiv1.ListTasksRequest) (*apiv1.ListTasksResponse, error) {
	return call(ctx, c, func(ctx context.Context, cc grpc.ClientConnInterface) (*apiv1.ListTasksResponse, error) {
		return apiv1grpc.NewTaskServiceClient(cc).ListTasks(ctx, req)
	})
}

// WatchTask opens a stream of a task's records, one per change, that ends
// once the task has ended. Like WatchVms, it is not retried.
func (c *Client) WatchTask(ctx context.Context, req *apiv1.WatchTaskRequest) (grpc.ServerStreamingClient[apiv1.TaskWatchEvent], error) {
	_, cc, err := c.pick()
	if err != nil {
		return nil, err
	}
	return apiv1grpc.NewTaskServiceClient(cc).WatchTask(ctx, req)
}
