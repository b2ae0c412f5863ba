package clienttest

import (
	"context"
	"slices"

	"google.golang.org/protobuf/proto"

	apiv1 "github.com/blixard/blixard/api/v1"
	"github.com/blixard/blixard/api/v1/apiv1grpc"
)

// Limits the fake checks, the same as the state machine's.
const (
	maxVcpus     = 1024
	maxMemoryMiB = 1 << 24
)

type vmService struct {
	apiv1grpc.UnimplementedVmServiceServer
	n *Node
}

const invalid = apiv1.ErrorCode_ERROR_CODE_INVALID_ARGUMENT

func validName(s string) bool {
	if len(s) == 0 || len(s) > 63 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		alnum := (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9')
		if !alnum && (c != '-' || i == 0 || i == len(s)-1) {
			return false
		}
	}
	return true
}

// setState records a transition of v at the current index. The caller holds
// the node's lock.
func (n *Node) setState(v *apiv1.Vm, st apiv1.VmState, reason string) {
	index, nanos := n.tick()
	v.State = st
	v.Reason = reason
	v.UpdatedIndex = index
	v.Events = append(v.Events, &apiv1.VmEvent{Index: index, TimeUnixNano: nanos, State: st, Generation: v.Generation, Reason: reason})
}

func (n *Node) lookupVm(name string) (*apiv1.Vm, error) {
	v, ok := n.vms[name]
	if !ok {
		return nil, fieldError(apiv1.ErrorCode_ERROR_CODE_NOT_FOUND, "name", "no VM named %q", name)
	}
	return v, nil
}

func (s vmService) CreateVm(_ context.Context, req *apiv1.CreateVmRequest) (*apiv1.CreateVmResponse, error) {
	n := s.n
	return write(n, req.GetClientRequestId(), func() (*apiv1.CreateVmResponse, error) {
		spec := req.GetSpec()
		switch {
		case !validName(req.GetName()):
			return nil, fieldError(invalid, "name", "%q is not a valid VM name", req.GetName())
		case n.vms[req.GetName()] != nil:
			return nil, fieldError(apiv1.ErrorCode_ERROR_CODE_ALREADY_EXISTS, "name", "a VM named %q already exists", req.GetName())
		case spec == nil:
			return nil, fieldError(invalid, "spec", "must be set")
		case spec.GetVcpus() == 0 || spec.GetVcpus() > maxVcpus:
			return nil, fieldError(invalid, "spec.vcpus", "must be between 1 and %d", maxVcpus)
		case spec.GetMemoryMib() == 0 || spec.GetMemoryMib() > maxMemoryMiB:
			return nil, fieldError(invalid, "spec.memory_mib", "must be between 1 and %d", maxMemoryMiB)
		}
		spec = proto.CloneOf(spec)
		if spec.RestartPolicy == apiv1.RestartPolicy_RESTART_POLICY_UNSPECIFIED {
			spec.RestartPolicy = apiv1.RestartPolicy_RESTART_POLICY_ON_FAILURE
		}
		v := &apiv1.Vm{Name: req.GetName(), Spec: spec}
		n.vms[v.Name] = v
		if req.GetStart() {
			v.DesiredState = apiv1.VmDesiredState_VM_DESIRED_STATE_RUNNING
			n.setState(v, apiv1.VmState_VM_STATE_PENDING, "created; waiting for placement")
		} else {
			v.DesiredState = apiv1.VmDesiredState_VM_DESIRED_STATE_STOPPED
			n.setState(v, apiv1.VmState_VM_STATE_STOPPED, "created")
		}
		v.CreatedIndex = v.UpdatedIndex
		v.CreatedUnixNano = v.Events[0].TimeUnixNano
		return &apiv1.CreateVmResponse{Vm: proto.CloneOf(v)}, nil
	})
}

func (s vmService) StartVm(_ context.Context, req *apiv1.StartVmRequest) (*apiv1.StartVmResponse, error) {
	n := s.n
	return write(n, req.GetClientRequestId(), func() (*apiv1.StartVmResponse, error) {
		v, err := n.lookupVm(req.GetName())
		if err != nil {
			return nil, err
		}
		v.DesiredState = apiv1.VmDesiredState_VM_DESIRED_STATE_RUNNING
		if v.State != apiv1.VmState_VM_STATE_PENDING {
			n.setState(v, apiv1.VmState_VM_STATE_PENDING, "started; waiting for placement")
		}
		return &apiv1.StartVmResponse{Vm: proto.CloneOf(v)}, nil
	})
}

func (s vmService) StopVm(_ context.Context, req *apiv1.StopVmRequest) (*apiv1.StopVmResponse, error) {
	n := s.n
	return write(n, req.GetClientRequestId(), func() (*apiv1.StopVmResponse, error) {
		v, err := n.lookupVm(req.GetName())
		if err != nil {
			return nil, err
		}
		v.DesiredState = apiv1.VmDesiredState_VM_DESIRED_STATE_STOPPED
		if v.State != apiv1.VmState_VM_STATE_STOPPED {
			n.setState(v, apiv1.VmState_VM_STATE_STOPPED, "stopped")
		}
		return &apiv1.StopVmResponse{Vm: proto.CloneOf(v)}, nil
	})
}

func (s vmService) DeleteVm(_ context.Context, req *apiv1.DeleteVmRequest) (*apiv1.DeleteVmResponse, error) {
	n := s.n
	return write(n, req.GetClientRequestId(), func() (*apiv1.DeleteVmResponse, error) {
		v, err := n.lookupVm(req.GetName())
		if err != nil {
			return nil, err
		}
		n.tick()
		delete(n.vms, v.Name)
		return &apiv1.DeleteVmResponse{Vm: v, Removed: true}, nil
	})
}

func (s vmService) GetVm(_ context.Context, req *apiv1.GetVmRequest) (*apiv1.GetVmResponse, error) {
	return read(s.n, func() (*apiv1.GetVmResponse, error) {
		v, err := s.n.lookupVm(req.GetName())
		if err != nil {
			return nil, err
		}
		return &apiv1.GetVmResponse{Vm: proto.CloneOf(v)}, nil
	})
}

func (s vmService) ListVms(_ context.Context, req *apiv1.ListVmsRequest) (*apiv1.ListVmsResponse, error) {
	return read(s.n, func() (*apiv1.ListVmsResponse, error) {
		names := make([]string, 0, len(s.n.vms))
		for name := range s.n.vms {
			names = append(names, name)
		}
		slices.Sort(names)
		if l := int(req.GetLimit()); l > 0 && l < len(names) {
			names = names[:l]
		}
		resp := &apiv1.ListVmsResponse{Vms: []*apiv1.Vm{}}
		for _, name := range names {
			resp.Vms = append(resp.Vms, proto.CloneOf(s.n.vms[name]))
		}
		return resp, nil
	})
}
