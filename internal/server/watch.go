package server

import (
	"cmp"
	"context"
	"maps"
	"slices"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	apiv1 "github.com/blixard/blixard/api/v1"
)

// Watcher is the part of a Backend that lets streams follow the node's
// applied state.
type Watcher interface {
	// WaitApplied blocks until the node has applied past index and returns
	// its applied index, or returns ctx's error.
	WaitApplied(ctx context.Context, index uint64) (uint64, error)
}

// watchBackend is a Backend that can also be watched.
type watchBackend interface {
	Backend
	Watcher
}

// WatchVms sends the VMs that changed after the request's revision, then
// every change as this node applies it, until the caller goes away. Each
// look is a stale read of this node's own state: watching costs the
// cluster nothing, and a node that lags shows its lag.
func (s *vmService) WatchVms(r *apiv1.WatchVmsRequest, stream grpc.ServerStreamingServer[apiv1.VmWatchEvent]) error {
	w, ok := s.b.(watchBackend)
	if !ok {
		return status.Error(codes.Unimplemented, "this node cannot be watched")
	}
	ctx := stream.Context()
	seen := map[string]uint64{} // name -> updated_index sent
	rev := r.GetFromRevision()
	applied := uint64(0)
	for {
		vms, err := s.look(ctx, r.GetName())
		if err != nil {
			return err
		}
		// Oldest change first: a client that resumes from the revision of
		// the last event it saw misses nothing.
		slices.SortStableFunc(vms, func(a, b *apiv1.Vm) int {
			return cmp.Compare(a.GetUpdatedIndex(), b.GetUpdatedIndex())
		})
		present := map[string]bool{}
		for _, vm := range vms {
			present[vm.GetName()] = true
			if vm.GetUpdatedIndex() <= rev || seen[vm.GetName()] == vm.GetUpdatedIndex() {
				seen[vm.GetName()] = vm.GetUpdatedIndex()
				continue
			}
			seen[vm.GetName()] = vm.GetUpdatedIndex()
			if err := stream.Send(&apiv1.VmWatchEvent{Revision: max(applied, vm.GetUpdatedIndex()), Vm: vm}); err != nil {
				return err
			}
		}
		for _, name := range sortedNames(seen) {
			if !present[name] {
				delete(seen, name)
				if err := stream.Send(&apiv1.VmWatchEvent{Revision: applied, Vm: &apiv1.Vm{Name: name}, Deleted: true}); err != nil {
					return err
				}
			}
		}
		rev = 0 // after the first look, every change counts
		if applied, err = w.WaitApplied(ctx, applied); err != nil {
			return watchEnd(err)
		}
	}
}

// look reads the VMs (or the one named) from this node's state.
func (s *vmService) look(ctx context.Context, name string) ([]*apiv1.Vm, error) {
	if name != "" {
		resp, err := do(ctx, s.b, &apiv1.Request{Kind: &apiv1.Request_GetVm{GetVm: &apiv1.GetVmRequest{Name: name, Stale: true}}})
		if status.Code(err) == codes.NotFound {
			return nil, nil
		}
		if err != nil {
			return nil, err
		}
		return []*apiv1.Vm{resp.GetGetVm().GetVm()}, nil
	}
	resp, err := do(ctx, s.b, &apiv1.Request{Kind: &apiv1.Request_ListVms{ListVms: &apiv1.ListVmsRequest{Stale: true}}})
	if err != nil {
		return nil, err
	}
	return resp.GetListVms().GetVms(), nil
}

// WatchTask sends the task's record, then each new version of it, and ends
// once the task has ended.
func (s *taskService) WatchTask(r *apiv1.WatchTaskRequest, stream grpc.ServerStreamingServer[apiv1.TaskWatchEvent]) error {
	w, ok := s.b.(watchBackend)
	if !ok {
		return status.Error(codes.Unimplemented, "this node cannot be watched")
	}
	ctx := stream.Context()
	var last *apiv1.Task
	applied := uint64(0)
	for {
		resp, err := do(ctx, s.b, &apiv1.Request{Kind: &apiv1.Request_GetTask{GetTask: &apiv1.GetTaskRequest{Id: r.GetId(), Stale: true}}})
		if err != nil {
			return err
		}
		task := resp.GetGetTask().GetTask()
		if !proto.Equal(task, last) {
			last = task
			if err := stream.Send(&apiv1.TaskWatchEvent{Revision: max(applied, task.GetUpdatedIndex()), Task: task}); err != nil {
				return err
			}
		}
		if task.GetStatus().Ended() {
			return nil
		}
		if applied, err = w.WaitApplied(ctx, applied); err != nil {
			return watchEnd(err)
		}
	}
}

// watchEnd turns the end of a wait into the stream's status.
func watchEnd(err error) error {
	if err == nil {
		return nil
	}
	switch {
	case ctxErr(err) != nil:
		return ctxErr(err)
	case err == ErrStopping:
		return StatusOf(&apiv1.Error{Code: apiv1.ErrorCode_ERROR_CODE_UNAVAILABLE, Message: err.Error()})
	}
	return status.Error(codes.Internal, err.Error())
}

func ctxErr(err error) error {
	switch err {
	case context.Canceled:
		return status.Error(codes.Canceled, "watch canceled")
	case context.DeadlineExceeded:
		return status.Error(codes.DeadlineExceeded, "watch deadline exceeded")
	}
	return nil
}

func sortedNames(m map[string]uint64) []string {
	return slices.Sorted(maps.Keys(m))
}
