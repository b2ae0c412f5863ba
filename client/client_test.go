package client_test

import (
	"context"
	"errors"
	"net"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	apiv1 "github.com/blixard/blixard/api/v1"
	"github.com/blixard/blixard/client"
	"github.com/blixard/blixard/client/clienttest"
)

// newClient returns a client for addrs with pauses short enough for tests.
func newClient(t *testing.T, addrs ...string) *client.Client {
	t.Helper()
	c, err := client.New(context.Background(), client.Options{
		Addrs:          addrs,
		BackoffInitial: time.Millisecond,
		BackoffMax:     5 * time.Millisecond,
	})
	if err != nil {
		t.Fatalf("client.New: %v", err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

func createReq(name string) *apiv1.CreateVmRequest {
	return &apiv1.CreateVmRequest{Name: name, Spec: &apiv1.VmSpec{Vcpus: 1, MemoryMib: 128}}
}

// methodCalls returns the requests node received for method.
func methodCalls(n *clienttest.Node, method string) []proto.Message {
	var out []proto.Message
	for _, c := range n.Calls() {
		if c.Method == method {
			out = append(out, c.Request)
		}
	}
	return out
}

// deadAddr returns an address on which nothing listens.
func deadAddr(t *testing.T) string {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := lis.Addr().String()
	_ = lis.Close()
	return addr
}

// followerOf makes n answer every write with NotLeader naming leader.
func followerOf(n, leader *clienttest.Node) {
	n.SetHook(func(_ context.Context, method string, req proto.Message, next func() (proto.Message, error)) (proto.Message, error) {
		if _, ok := req.(interface{ GetClientRequestId() string }); ok {
			return nil, clienttest.NotLeader(n.ID, leader.ID, leader.Addr)
		}
		return next()
	})
}

func TestWriteFollowsRedirectToLeader(t *testing.T) {
	follower, leader := clienttest.Start(t, 1), clienttest.Start(t, 2)
	followerOf(follower, leader)
	c := newClient(t, follower.Addr)

	resp, err := c.CreateVm(t.Context(), createReq("web"))
	if err != nil {
		t.Fatalf("CreateVm through a follower: %v", err)
	}
	if resp.GetVm().GetName() != "web" {
		t.Errorf("CreateVm answered %v, want the VM web", resp)
	}
	if got := len(methodCalls(follower, "CreateVm")); got != 1 {
		t.Errorf("follower got %d CreateVm calls, want 1", got)
	}
	if got := len(methodCalls(leader, "CreateVm")); got != 1 {
		t.Errorf("leader got %d CreateVm calls, want 1", got)
	}
	// Both attempts carried the same id.
	idF := methodCalls(follower, "CreateVm")[0].(*apiv1.CreateVmRequest).GetClientRequestId()
	idL := methodCalls(leader, "CreateVm")[0].(*apiv1.CreateVmRequest).GetClientRequestId()
	if idF == "" || idF != idL {
		t.Errorf("client request ids: follower %q, leader %q; want one non-empty id", idF, idL)
	}

	// The client remembers the leader: the next write goes there directly.
	if _, err := c.StopVm(t.Context(), &apiv1.StopVmRequest{Name: "web"}); err != nil {
		t.Fatalf("StopVm: %v", err)
	}
	if got := len(methodCalls(follower, "StopVm")); got != 0 {
		t.Errorf("follower got %d StopVm calls, want 0: the client should remember the leader", got)
	}
}

func TestRetryKeepsClientRequestID(t *testing.T) {
	leader := clienttest.Start(t, 1)
	var failed atomic.Bool
	// The first attempt is applied, but its answer is lost to a leadership
	// change: outcome unknown.
	leader.SetHook(func(_ context.Context, method string, _ proto.Message, next func() (proto.Message, error)) (proto.Message, error) {
		resp, err := next()
		if method == "CreateVm" && failed.CompareAndSwap(false, true) {
			return nil, clienttest.OutcomeUnknown()
		}
		return resp, err
	})
	c := newClient(t, leader.Addr)

	req := createReq("db")
	resp, err := c.CreateVm(t.Context(), req)
	if err != nil {
		t.Fatalf("CreateVm: %v", err)
	}
	if resp.GetVm().GetName() != "db" {
		t.Errorf("CreateVm answered %v, want the VM db", resp)
	}
	if req.GetClientRequestId() != "" {
		t.Errorf("CreateVm set the caller's request id to %q; the caller's message must not change", req.GetClientRequestId())
	}
	calls := methodCalls(leader, "CreateVm")
	if len(calls) != 2 {
		t.Fatalf("leader got %d CreateVm calls, want 2 (one failed, one retried)", len(calls))
	}
	id0 := calls[0].(*apiv1.CreateVmRequest).GetClientRequestId()
	id1 := calls[1].(*apiv1.CreateVmRequest).GetClientRequestId()
	if id0 == "" || id0 != id1 {
		t.Errorf("retry changed the client request id: %q then %q", id0, id1)
	}
	list, err := c.ListVms(t.Context(), &apiv1.ListVmsRequest{})
	if err != nil {
		t.Fatalf("ListVms: %v", err)
	}
	if len(list.GetVms()) != 1 {
		t.Errorf("the retried write made %d VMs, want 1", len(list.GetVms()))
	}

	// A caller's own id is kept.
	if _, err := c.StopVm(t.Context(), &apiv1.StopVmRequest{ClientRequestId: "mine-1", Name: "db"}); err != nil {
		t.Fatalf("StopVm: %v", err)
	}
	stops := methodCalls(leader, "StopVm")
	if got := stops[len(stops)-1].(*apiv1.StopVmRequest).GetClientRequestId(); got != "mine-1" {
		t.Errorf("StopVm sent id %q, want the caller's mine-1", got)
	}
}

func TestEachCallGetsItsOwnRequestID(t *testing.T) {
	n := clienttest.Start(t, 1)
	c := newClient(t, n.Addr)
	for _, name := range []string{"a", "b"} {
		if _, err := c.CreateVm(t.Context(), createReq(name)); err != nil {
			t.Fatalf("CreateVm %s: %v", name, err)
		}
	}
	calls := methodCalls(n, "CreateVm")
	if len(calls) != 2 {
		t.Fatalf("got %d calls, want 2", len(calls))
	}
	if a, b := calls[0].(*apiv1.CreateVmRequest).GetClientRequestId(), calls[1].(*apiv1.CreateVmRequest).GetClientRequestId(); a == b {
		t.Errorf("two calls shared the client request id %q", a)
	}
}

func TestUnavailableTriesAnotherAddress(t *testing.T) {
	sick, healthy := clienttest.Start(t, 1), clienttest.Start(t, 2)
	sick.SetHook(func(context.Context, string, proto.Message, func() (proto.Message, error)) (proto.Message, error) {
		return nil, clienttest.Unavailable("no leader known; retry")
	})
	c := newClient(t, deadAddr(t), sick.Addr, healthy.Addr)

	resp, err := c.SubmitTask(t.Context(), &apiv1.SubmitTaskRequest{Spec: &apiv1.TaskSpec{
		Command: "true", Resources: &apiv1.Resources{Vcpus: 1, MemoryMib: 64},
	}})
	if err != nil {
		t.Fatalf("SubmitTask past a dead and an unavailable node: %v", err)
	}
	if resp.GetTask().GetId() == 0 {
		t.Errorf("SubmitTask answered %v, want a task with an id", resp)
	}
	if got := len(methodCalls(sick, "SubmitTask")); got != 1 {
		t.Errorf("unavailable node got %d calls, want 1", got)
	}
	if got := len(methodCalls(healthy, "SubmitTask")); got != 1 {
		t.Errorf("healthy node got %d calls, want 1", got)
	}
	ids := map[string]bool{}
	for _, n := range []*clienttest.Node{sick, healthy} {
		for _, r := range methodCalls(n, "SubmitTask") {
			ids[r.(*apiv1.SubmitTaskRequest).GetClientRequestId()] = true
		}
	}
	if len(ids) != 1 {
		t.Errorf("attempts carried ids %v, want one", ids)
	}
}

func TestInvalidArgumentReturnsAtOnce(t *testing.T) {
	n := clienttest.Start(t, 1)
	c := newClient(t, n.Addr)

	req := createReq("web")
	req.Spec.MemoryMib = 0
	_, err := c.CreateVm(t.Context(), req)
	if err == nil {
		t.Fatal("CreateVm with 0 MiB: no error")
	}
	if code := status.Code(err); code != codes.InvalidArgument {
		t.Errorf("status code %v, want InvalidArgument", code)
	}
	e := client.ErrorOf(err)
	if e.GetCode() != apiv1.ErrorCode_ERROR_CODE_INVALID_ARGUMENT || e.GetField() != "spec.memory_mib" {
		t.Errorf("ErrorOf = %v, want INVALID_ARGUMENT on spec.memory_mib", e)
	}
	if got := len(methodCalls(n, "CreateVm")); got != 1 {
		t.Errorf("node got %d calls, want 1: invalid arguments are not retried", got)
	}
}

func TestNotFoundIsNotRetried(t *testing.T) {
	n := clienttest.Start(t, 1)
	c := newClient(t, n.Addr)
	_, err := c.GetVm(t.Context(), &apiv1.GetVmRequest{Name: "ghost"})
	if status.Code(err) != codes.NotFound || client.ErrorOf(err).GetCode() != apiv1.ErrorCode_ERROR_CODE_NOT_FOUND {
		t.Fatalf("GetVm ghost: %v, want NotFound", err)
	}
	if got := len(n.Calls()); got != 1 {
		t.Errorf("node got %d calls, want 1", got)
	}
}

func TestGivesUpAfterMaxAttempts(t *testing.T) {
	n := clienttest.Start(t, 1)
	n.SetHook(func(context.Context, string, proto.Message, func() (proto.Message, error)) (proto.Message, error) {
		return nil, clienttest.Unavailable("no leader known; retry")
	})
	c, err := client.New(t.Context(), client.Options{
		Addrs: []string{n.Addr}, MaxAttempts: 3, BackoffInitial: time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()

	_, err = c.StartVm(t.Context(), &apiv1.StartVmRequest{Name: "web"})
	var re *client.RetryError
	if !errors.As(err, &re) {
		t.Fatalf("StartVm against an unavailable node: %v, want a *client.RetryError", err)
	}
	if re.Attempts != 3 || re.Addr != n.Addr || re.Context != nil {
		t.Errorf("RetryError = %+v, want 3 attempts at %s and no context error", re, n.Addr)
	}
	if e := client.ErrorOf(err); e.GetCode() != apiv1.ErrorCode_ERROR_CODE_UNAVAILABLE {
		t.Errorf("ErrorOf = %v, want UNAVAILABLE", e)
	}
	if got := len(n.Calls()); got != 3 {
		t.Errorf("node got %d calls, want 3", got)
	}
}

func TestRedirectLoopIsBounded(t *testing.T) {
	a, b := clienttest.Start(t, 1), clienttest.Start(t, 2)
	followerOf(a, b)
	followerOf(b, a)
	c, err := client.New(t.Context(), client.Options{
		Addrs: []string{a.Addr}, MaxAttempts: 4, BackoffInitial: time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_, err = c.DeleteVm(t.Context(), &apiv1.DeleteVmRequest{Name: "web"})
	if e := client.ErrorOf(err); e.GetCode() != apiv1.ErrorCode_ERROR_CODE_NOT_LEADER {
		t.Fatalf("DeleteVm between two nodes that each name the other: %v, want NOT_LEADER at last", err)
	}
	if got := len(a.Calls()) + len(b.Calls()); got != 4 {
		t.Errorf("%d attempts, want MaxAttempts = 4", got)
	}
}

func TestAttemptTimeoutMovesOn(t *testing.T) {
	stuck, healthy := clienttest.Start(t, 1), clienttest.Start(t, 2)
	stuck.SetHook(func(ctx context.Context, _ string, _ proto.Message, _ func() (proto.Message, error)) (proto.Message, error) {
		<-ctx.Done()
		return nil, ctx.Err()
	})
	c, err := client.New(t.Context(), client.Options{
		Addrs: []string{stuck.Addr, healthy.Addr}, Timeout: 100 * time.Millisecond, BackoffInitial: time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	resp, err := c.HealthCheck(t.Context(), &apiv1.HealthCheckRequest{})
	if err != nil {
		t.Fatalf("HealthCheck past a node that never answers: %v", err)
	}
	if resp.GetNodeId() != healthy.ID {
		t.Errorf("answered by node %d, want %d", resp.GetNodeId(), healthy.ID)
	}
}

func TestContextCancelStopsTheCall(t *testing.T) {
	t.Run("during an attempt", func(t *testing.T) {
		n := clienttest.Start(t, 1)
		entered := make(chan struct{}, 1)
		n.SetHook(func(ctx context.Context, _ string, _ proto.Message, _ func() (proto.Message, error)) (proto.Message, error) {
			entered <- struct{}{}
			<-ctx.Done()
			return nil, ctx.Err()
		})
		c := newClient(t, n.Addr)
		ctx, cancel := context.WithCancel(t.Context())
		go func() { <-entered; cancel() }()
		_, err := c.ListTasks(ctx, &apiv1.ListTasksRequest{})
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("ListTasks with a cancelled context: %v, want context.Canceled", err)
		}
		if got := len(n.Calls()); got != 1 {
			t.Errorf("node got %d calls, want 1", got)
		}
	})
	t.Run("during a back-off", func(t *testing.T) {
		n := clienttest.Start(t, 1)
		n.SetHook(func(context.Context, string, proto.Message, func() (proto.Message, error)) (proto.Message, error) {
			return nil, clienttest.Unavailable("no leader known; retry")
		})
		// Cancel once the client holds the first answer, so that the
		// cancellation lands in the (hour-long) pause that follows.
		answered := make(chan struct{}, 1)
		seeAnswer := func(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
			err := invoker(ctx, method, req, reply, cc, opts...)
			answered <- struct{}{}
			return err
		}
		c, err := client.New(t.Context(), client.Options{
			Addrs: []string{n.Addr}, BackoffInitial: time.Hour,
			DialOptions: []grpc.DialOption{grpc.WithUnaryInterceptor(seeAnswer)},
		})
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		ctx, cancel := context.WithCancel(t.Context())
		go func() { <-answered; cancel() }()
		_, err = c.CancelTask(ctx, &apiv1.CancelTaskRequest{Id: 7})
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("CancelTask cancelled while backing off: %v, want context.Canceled", err)
		}
		var re *client.RetryError
		if !errors.As(err, &re) || re.Attempts != 1 {
			t.Errorf("error %v, want a *client.RetryError after 1 attempt", err)
		}
		if e := client.ErrorOf(err); e.GetCode() != apiv1.ErrorCode_ERROR_CODE_UNAVAILABLE {
			t.Errorf("ErrorOf = %v, want the last attempt's UNAVAILABLE", e)
		}
	})
	t.Run("before the call", func(t *testing.T) {
		n := clienttest.Start(t, 1)
		c := newClient(t, n.Addr)
		ctx, cancel := context.WithCancel(t.Context())
		cancel()
		if _, err := c.GetClusterStatus(ctx, &apiv1.GetClusterStatusRequest{}); !errors.Is(err, context.Canceled) {
			t.Fatalf("GetClusterStatus with a done context: %v, want context.Canceled", err)
		}
		if got := len(n.Calls()); got != 0 {
			t.Errorf("node got %d calls, want 0", got)
		}
	})
}

func TestEveryMethodReachesItsService(t *testing.T) {
	n := clienttest.Start(t, 1)
	c := newClient(t, n.Addr)
	ctx := t.Context()
	must := func(what string, err error) {
		t.Helper()
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
	}
	_, err := c.CreateVm(ctx, createReq("web"))
	must("CreateVm", err)
	_, err = c.StartVm(ctx, &apiv1.StartVmRequest{Name: "web"})
	must("StartVm", err)
	_, err = c.StopVm(ctx, &apiv1.StopVmRequest{Name: "web"})
	must("StopVm", err)
	_, err = c.GetVm(ctx, &apiv1.GetVmRequest{Name: "web", Stale: true})
	must("GetVm", err)
	_, err = c.ListVms(ctx, &apiv1.ListVmsRequest{Stale: true})
	must("ListVms", err)
	_, err = c.DeleteVm(ctx, &apiv1.DeleteVmRequest{Name: "web"})
	must("DeleteVm", err)
	sub, err := c.SubmitTask(ctx, &apiv1.SubmitTaskRequest{Spec: &apiv1.TaskSpec{Command: "ls", Resources: &apiv1.Resources{Vcpus: 1, MemoryMib: 1}}})
	must("SubmitTask", err)
	_, err = c.GetTask(ctx, &apiv1.GetTaskRequest{Id: sub.GetTask().GetId()})
	must("GetTask", err)
	_, err = c.ListTasks(ctx, &apiv1.ListTasksRequest{})
	must("ListTasks", err)
	_, err = c.CancelTask(ctx, &apiv1.CancelTaskRequest{Id: sub.GetTask().GetId()})
	must("CancelTask", err)
	_, err = c.JoinCluster(ctx, &apiv1.JoinClusterRequest{NodeId: 2, Address: "127.0.0.1:7002", Role: apiv1.NodeRole_NODE_ROLE_WORKER})
	must("JoinCluster", err)
	_, err = c.LeaveCluster(ctx, &apiv1.LeaveClusterRequest{NodeId: 2})
	must("LeaveCluster", err)
	_, err = c.DrainNode(ctx, &apiv1.DrainNodeRequest{NodeId: 1, Drain: true})
	must("DrainNode", err)
	_, err = c.GetClusterStatus(ctx, &apiv1.GetClusterStatusRequest{})
	must("GetClusterStatus", err)
	_, err = c.HealthCheck(ctx, &apiv1.HealthCheckRequest{})
	must("HealthCheck", err)
	withCA(t, n)
	_, err = c.RotateCa(ctx, &apiv1.RotateCaRequest{})
	must("RotateCa", err)

	want := []string{"CreateVm", "StartVm", "StopVm", "GetVm", "ListVms", "DeleteVm", "SubmitTask", "GetTask",
		"ListTasks", "CancelTask", "JoinCluster", "LeaveCluster", "DrainNode", "GetClusterStatus", "HealthCheck", "RotateCa"}
	calls := n.Calls()
	if len(calls) != len(want) {
		t.Fatalf("node got %d calls, want %d", len(calls), len(want))
	}
	for i, call := range calls {
		if call.Method != want[i] {
			t.Errorf("call %d went to %s, want %s", i, call.Method, want[i])
		}
		_, isWrite := call.Request.(interface{ GetClientRequestId() string })
		if isWrite && call.Request.(interface{ GetClientRequestId() string }).GetClientRequestId() == "" {
			t.Errorf("write %s carried no client request id", call.Method)
		}
	}
}

func TestNilRequestIsAnEmptyMessage(t *testing.T) {
	n := clienttest.Start(t, 1)
	c := newClient(t, n.Addr)
	_, err := c.CreateVm(t.Context(), nil)
	if e := client.ErrorOf(err); e.GetField() != "name" {
		t.Fatalf("CreateVm(nil): %v, want the node to refuse the empty name", err)
	}
	if id := methodCalls(n, "CreateVm")[0].(*apiv1.CreateVmRequest).GetClientRequestId(); id == "" {
		t.Error("CreateVm(nil) sent no client request id")
	}
}

func TestClosedClient(t *testing.T) {
	n := clienttest.Start(t, 1)
	c := newClient(t, n.Addr)
	if _, err := c.HealthCheck(t.Context(), &apiv1.HealthCheckRequest{}); err != nil {
		t.Fatal(err)
	}
	if err := c.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if _, err := c.HealthCheck(t.Context(), &apiv1.HealthCheckRequest{}); !errors.Is(err, client.ErrClosed) {
		t.Errorf("HealthCheck after Close: %v, want ErrClosed", err)
	}
	if err := c.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
}
