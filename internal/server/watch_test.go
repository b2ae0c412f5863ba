package server

import (
	"context"
	"sync"
	"testing"
	"time"

	apiv1 "github.com/blixard/blixard/api/v1"
	"github.com/blixard/blixard/api/v1/apiv1grpc"
)

// watchedBackend is a tiny node: VMs and tasks by key, an applied index,
// and a broadcast when it moves.
type watchedBackend struct {
	mu      sync.Mutex
	vms     map[string]*apiv1.Vm
	task    *apiv1.Task
	applied uint64
	changed chan struct{}
}

func newWatchedBackend() *watchedBackend {
	return &watchedBackend{vms: map[string]*apiv1.Vm{}, changed: make(chan struct{})}
}

// apply changes the state under the lock and moves the applied index.
func (b *watchedBackend) apply(change func(index uint64)) {
	b.mu.Lock()
	b.applied++
	change(b.applied)
	close(b.changed)
	b.changed = make(chan struct{})
	b.mu.Unlock()
}

func (b *watchedBackend) Do(_ context.Context, req *apiv1.Request) (*apiv1.Response, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	switch k := req.GetKind().(type) {
	case *apiv1.Request_ListVms:
		var out []*apiv1.Vm
		for _, name := range sortedVmNames(b.vms) {
			out = append(out, b.vms[name])
		}
		return &apiv1.Response{Kind: &apiv1.Response_ListVms{ListVms: &apiv1.ListVmsResponse{Vms: out}}}, nil
	case *apiv1.Request_GetTask:
		if b.task == nil || b.task.GetId() != k.GetTask.GetId() {
			return &apiv1.Response{Error: &apiv1.Error{Code: apiv1.ErrorCode_ERROR_CODE_NOT_FOUND, Field: "id"}}, nil
		}
		return &apiv1.Response{Kind: &apiv1.Response_GetTask{GetTask: &apiv1.GetTaskResponse{Task: b.task}}}, nil
	}
	return &apiv1.Response{Error: &apiv1.Error{Code: apiv1.ErrorCode_ERROR_CODE_INVALID_ARGUMENT}}, nil
}

func (b *watchedBackend) WaitApplied(ctx context.Context, index uint64) (uint64, error) {
	for {
		b.mu.Lock()
		applied, changed := b.applied, b.changed
		b.mu.Unlock()
		if applied > index {
			return applied, nil
		}
		select {
		case <-changed:
		case <-ctx.Done():
			return 0, ctx.Err()
		}
	}
}

func sortedVmNames(m map[string]*apiv1.Vm) []string {
	names := map[string]uint64{}
	for k := range m {
		names[k] = 0
	}
	return sortedNames(names)
}

func TestWatchVmsSendsChangesAndDeletions(t *testing.T) {
	b := newWatchedBackend()
	b.apply(func(i uint64) {
		b.vms["web"] = &apiv1.Vm{Name: "web", State: apiv1.VmState_VM_STATE_PENDING, UpdatedIndex: i}
	})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	stream, err := apiv1grpc.NewVmServiceClient(serve(t, b)).WatchVms(ctx, &apiv1.WatchVmsRequest{})
	if err != nil {
		t.Fatal(err)
	}
	ev, err := stream.Recv()
	if err != nil || ev.GetVm().GetName() != "web" || ev.GetDeleted() {
		t.Fatalf("first event = %v, %v; want web", ev, err)
	}
	b.apply(func(i uint64) {
		b.vms["web"] = &apiv1.Vm{Name: "web", State: apiv1.VmState_VM_STATE_STOPPED, UpdatedIndex: i}
	})
	ev, err = stream.Recv()
	if err != nil || ev.GetVm().GetState() != apiv1.VmState_VM_STATE_STOPPED {
		t.Fatalf("second event = %v, %v; want web stopped", ev, err)
	}
	b.apply(func(uint64) { delete(b.vms, "web") })
	ev, err = stream.Recv()
	if err != nil || !ev.GetDeleted() || ev.GetVm().GetName() != "web" {
		t.Fatalf("third event = %v, %v; want web deleted", ev, err)
	}
}

func TestWatchVmsFromRevisionSkipsOlderChanges(t *testing.T) {
	b := newWatchedBackend()
	b.apply(func(i uint64) { b.vms["old"] = &apiv1.Vm{Name: "old", UpdatedIndex: i} })
	b.apply(func(i uint64) { b.vms["new"] = &apiv1.Vm{Name: "new", UpdatedIndex: i} })
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	stream, err := apiv1grpc.NewVmServiceClient(serve(t, b)).WatchVms(ctx, &apiv1.WatchVmsRequest{FromRevision: 1})
	if err != nil {
		t.Fatal(err)
	}
	ev, err := stream.Recv()
	if err != nil || ev.GetVm().GetName() != "new" {
		t.Fatalf("first event = %v, %v; want only the VM changed after revision 1", ev, err)
	}
}

func TestWatchTaskEndsWhenTheTaskEnds(t *testing.T) {
	b := newWatchedBackend()
	b.apply(func(i uint64) {
		b.task = &apiv1.Task{Id: 7, Status: apiv1.TaskStatus_TASK_STATUS_PENDING, UpdatedIndex: i}
	})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	stream, err := apiv1grpc.NewTaskServiceClient(serve(t, b)).WatchTask(ctx, &apiv1.WatchTaskRequest{Id: 7})
	if err != nil {
		t.Fatal(err)
	}
	if ev, err := stream.Recv(); err != nil || ev.GetTask().GetStatus() != apiv1.TaskStatus_TASK_STATUS_PENDING {
		t.Fatalf("first event = %v, %v", ev, err)
	}
	b.apply(func(i uint64) {
		b.task = &apiv1.Task{Id: 7, Status: apiv1.TaskStatus_TASK_STATUS_CANCELLED, UpdatedIndex: i}
	})
	if ev, err := stream.Recv(); err != nil || ev.GetTask().GetStatus() != apiv1.TaskStatus_TASK_STATUS_CANCELLED {
		t.Fatalf("second event = %v, %v", ev, err)
	}
	if _, err := stream.Recv(); err == nil {
		t.Fatalf("stream went on after the task ended")
	}
}
