package client

import (
	"context"
	"errors"
	"fmt"
	"io"

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

// StreamVmLogs streams a VM's console log from the node that runs it (or
// last ran it): it looks the VM and the node's address up, dials that
// node, and hands each chunk to fn until the log ends (or, with
// req.Follow, until ctx ends or fn fails).
func (c *Client) StreamVmLogs(ctx context.Context, req *apiv1.StreamVmLogsRequest, fn func([]byte) error) error {
	vm, err := c.GetVm(ctx, &apiv1.GetVmRequest{Name: req.GetName(), Stale: true})
	if err != nil {
		return err
	}
	nodeID := vm.GetVm().GetNodeId()
	if nodeID == 0 {
		return fmt.Errorf("VM %q has not been placed on a node yet (it is %s): no console to show", req.GetName(), vm.GetVm().GetState())
	}
	st, err := c.GetClusterStatus(ctx, &apiv1.GetClusterStatusRequest{Stale: true})
	if err != nil {
		return err
	}
	var addr string
	for _, n := range st.GetNodes() {
		if n.GetId() == nodeID {
			addr = n.GetAddress()
		}
	}
	if addr == "" {
		return fmt.Errorf("VM %q is on node %d, whose address the cluster does not know", req.GetName(), nodeID)
	}
	cc, err := c.conn(addr)
	if err != nil {
		return err
	}
	stream, err := apiv1grpc.NewVmServiceClient(cc).StreamVmLogs(ctx, req)
	if err != nil {
		return fmt.Errorf("stream the console of VM %q from node %d at %s: %w", req.GetName(), nodeID, addr, err)
	}
	for {
		chunk, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			if errors.Is(ctx.Err(), context.Canceled) {
				return nil // the caller went away (Ctrl-C on a follow)
			}
			return fmt.Errorf("console of VM %q from node %d at %s: %w", req.GetName(), nodeID, addr, err)
		}
		if err := fn(chunk.GetData()); err != nil {
			return err
		}
	}
}
