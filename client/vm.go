package client

import (
	"context"

	"google.golang.org/grpc"

	apiv1 "github.com/blixard/blixard/api/v1"
	"github.com/blixard/blixard/api/v1/apiv1grpc"
)

// CreateVm creates a VM, and starts it if req.Start is set. It is a write.
func (c *Client) CreateVm(ctx context.Context, req *apiv1.CreateVmRequest) (*apiv1.CreateVmResponse, error) {
	req = withRequestID(req)
	return call(ctx, c, func(ctx context.Context, cc grpc.ClientConnInterface) (*apiv1.CreateVmResponse, error) {
		return apiv1grpc.NewVmServiceClient(cc).CreateVm(ctx, req)
	})
}

// StartVm wants a VM running. It is a write.
func (c *Client) StartVm(ctx context.Context, req *apiv1.StartVmRequest) (*apiv1.StartVmResponse, error) {
	req = withRequestID(req)
	return call(ctx, c, func(ctx context.Context, cc grpc.ClientConnInterface) (*apiv1.StartVmResponse, error) {
		return apiv1grpc.NewVmServiceClient(cc).StartVm(ctx, req)
	})
}

// StopVm wants a VM stopped. It is a write.
func (c *Client) StopVm(ctx context.Context, req *apiv1.StopVmRequest) (*apiv1.StopVmResponse, error) {
	req = withRequestID(req)
	return call(ctx, c, func(ctx context.Context, cc grpc.ClientConnInterface) (*apiv1.StopVmResponse, error) {
		return apiv1grpc.NewVmServiceClient(cc).StopVm(ctx, req)
	})
}

// DeleteVm deletes a VM, at once if it holds no node, else once its node has
// stopped it. It is a write.
func (c *Client) DeleteVm(ctx context.Context, req *apiv1.DeleteVmRequest) (*apiv1.DeleteVmResponse, error) {
	req = withRequestID(req)
	return call(ctx, c, func(ctx context.Context, cc grpc.ClientConnInterface) (*apiv1.DeleteVmResponse, error) {
		return apiv1grpc.NewVmServiceClient(cc).DeleteVm(ctx, req)
	})
}

// GetVm reads one VM: linearizably, or from the answering node's state if
// req.Stale is set.
func (c *Client) GetVm(ctx context.Context, req *apiv1.GetVmRequest) (*apiv1.GetVmResponse, error) {
	return call(ctx, c, func(ctx context.Context, cc grpc.ClientConnInterface) (*apiv1.GetVmResponse, error) {
		return apiv1grpc.NewVmServiceClient(cc).GetVm(ctx, req)
	})
}

// ListVms reads the VMs, by name, at most req.Limit of them (0 for all).
func (c *Client) ListVms(ctx context.Context, req *apiv1.ListVmsRequest) (*apiv1.ListVmsResponse, error) {
	return call(ctx, c, func(ctx context.Context, cc grpc.ClientConnInterface) (*apiv1.ListVmsResponse, error) {
		return apiv1grpc.NewVmServiceClient(cc).ListVms(ctx, req)
	})
}

// WatchVms opens a stream of VM changes as one node applies them (the node
// the client would ask next). The stream lives as long as ctx; it is not
// retried: open a new one, from the last revision seen, if it breaks.
func (c *Client) WatchVms(ctx context.Context, req *apiv1.WatchVmsRequest) (grpc.ServerStreamingClient[apiv1.VmWatchEvent], error) {
	_, cc, err := c.pick()
	if err != nil {
		return nil, err
	}
	return apiv1grpc.NewVmServiceClient(cc).WatchVms(ctx, req)
}
