package client

import (
	"context"

	"google.golang.org/grpc"

	apiv1 "github.com/blixard/blixard/api/v1"
	"github.com/blixard/blixard/api/v1/apiv1grpc"
)

// GetClusterStatus reads the cluster's records and the answering node's
// view of Raft (its id, the leader, term, commit index, members).
func (c *Client) GetClusterStatus(ctx context.Context, req *apiv1.GetClusterStatusRequest) (*apiv1.GetClusterStatusResponse, error) {
	return call(ctx, c, func(ctx context.Context, cc grpc.ClientConnInterface) (*apiv1.GetClusterStatusResponse, error) {
		return apiv1grpc.NewClusterServiceClient(cc).GetClusterStatus(ctx, req)
	})
}

// JoinCluster asks the leader to add a node. It is a write.
func (c *Client) JoinCluster(ctx context.Context, req *apiv1.JoinClusterRequest) (*apiv1.JoinClusterResponse, error) {
	req = withRequestID(req)
	return call(ctx, c, func(ctx context.Context, cc grpc.ClientConnInterface) (*apiv1.JoinClusterResponse, error) {
		return apiv1grpc.NewClusterServiceClient(cc).JoinCluster(ctx, req)
	})
}

// LeaveCluster removes a member for good: its id can never join again. It is
// a write.
func (c *Client) LeaveCluster(ctx context.Context, req *apiv1.LeaveClusterRequest) (*apiv1.LeaveClusterResponse, error) {
	req = withRequestID(req)
	return call(ctx, c, func(ctx context.Context, cc grpc.ClientConnInterface) (*apiv1.LeaveClusterResponse, error) {
		return apiv1grpc.NewClusterServiceClient(cc).LeaveCluster(ctx, req)
	})
}

// DrainNode drains a node (drain true: its VMs move to other nodes and
// nothing new is placed on it; its tasks run to their end) or makes it
// eligible again (drain false: nothing moves back). It is a write, and
// doing it twice is harmless. The response holds the node's record.
func (c *Client) DrainNode(ctx context.Context, req *apiv1.DrainNodeRequest) (*apiv1.DrainNodeResponse, error) {
	req = withRequestID(req)
	return call(ctx, c, func(ctx context.Context, cc grpc.ClientConnInterface) (*apiv1.DrainNodeResponse, error) {
		return apiv1grpc.NewClusterServiceClient(cc).DrainNode(ctx, req)
	})
}

// HealthCheck asks one node for its own view, answered at once. It goes to
// the address the client would use next (the last one that answered) and,
// like every call, moves on if that node is unavailable: the response's
// node_id says which node answered.
func (c *Client) HealthCheck(ctx context.Context, req *apiv1.HealthCheckRequest) (*apiv1.HealthCheckResponse, error) {
	return call(ctx, c, func(ctx context.Context, cc grpc.ClientConnInterface) (*apiv1.HealthCheckResponse, error) {
		return apiv1grpc.NewClusterServiceClient(cc).HealthCheck(ctx, req)
	})
}

// RotateCa starts a rotation of the cluster CA: a new CA is trusted beside
// the old one for the overlap (phase TRUST; clients should take the new
// bundle then), nodes then present certificates of the new CA for another
// overlap (SERVE), and then the old CA is dropped. The response holds the
// cluster record, whose first CA certificate is the new CA. It is a write
// and needs an admin token.
func (c *Client) RotateCa(ctx context.Context, req *apiv1.RotateCaRequest) (*apiv1.RotateCaResponse, error) {
	req = withRequestID(req)
	return call(ctx, c, func(ctx context.Context, cc grpc.ClientConnInterface) (*apiv1.RotateCaResponse, error) {
		return apiv1grpc.NewClusterServiceClient(cc).RotateCa(ctx, req)
	})
}

// ListEvents reads the cluster's event log as the node asked has applied
// it. It is a read.
func (c *Client) ListEvents(ctx context.Context, req *apiv1.ListEventsRequest) (*apiv1.ListEventsResponse, error) {
	return call(ctx, c, func(ctx context.Context, cc grpc.ClientConnInterface) (*apiv1.ListEventsResponse, error) {
		return apiv1grpc.NewClusterServiceClient(cc).ListEvents(ctx, req)
	})
}
