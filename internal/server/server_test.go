package server

import (
	"context"
	"net"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	apiv1 "github.com/blixard/blixard/api/v1"
	"github.com/blixard/blixard/api/v1/apiv1grpc"
)

// fakeBackend answers every request with resp and records what it got.
type fakeBackend struct {
	resp *apiv1.Response
	err  error
	got  *apiv1.Request
}

func (f *fakeBackend) Do(_ context.Context, req *apiv1.Request) (*apiv1.Response, error) {
	f.got = req
	return f.resp, f.err
}

func serve(t *testing.T, b Backend) *grpc.ClientConn {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := grpc.NewServer()
	Register(s, b, nil)
	go func() { _ = s.Serve(lis) }()
	t.Cleanup(s.Stop)
	conn, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	return conn
}

func TestHandlersPassRequestsThroughAndMapErrors(t *testing.T) {
	for _, tc := range []struct {
		name string
		e    *apiv1.Error
		code codes.Code
	}{
		{"invalid", &apiv1.Error{Code: apiv1.ErrorCode_ERROR_CODE_INVALID_ARGUMENT, Field: "spec.memory_mib", Message: "spec.memory_mib: must be between 1 and 16777216"}, codes.InvalidArgument},
		{"not found", &apiv1.Error{Code: apiv1.ErrorCode_ERROR_CODE_NOT_FOUND, Field: "name"}, codes.NotFound},
		{"exists", &apiv1.Error{Code: apiv1.ErrorCode_ERROR_CODE_ALREADY_EXISTS, Field: "name"}, codes.AlreadyExists},
		{"not leader", &apiv1.Error{Code: apiv1.ErrorCode_ERROR_CODE_NOT_LEADER, LeaderId: 2, LeaderAddress: "127.0.0.1:7002"}, codes.FailedPrecondition},
		{"unknown outcome", &apiv1.Error{Code: apiv1.ErrorCode_ERROR_CODE_OUTCOME_UNKNOWN, Message: "outcome unknown"}, codes.Unavailable},
		{"unavailable", &apiv1.Error{Code: apiv1.ErrorCode_ERROR_CODE_UNAVAILABLE}, codes.Unavailable},
		{"exhausted", &apiv1.Error{Code: apiv1.ErrorCode_ERROR_CODE_RESOURCE_EXHAUSTED}, codes.ResourceExhausted},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := &fakeBackend{resp: &apiv1.Response{Error: tc.e}}
			vms := apiv1grpc.NewVmServiceClient(serve(t, b))
			req := &apiv1.CreateVmRequest{ClientRequestId: "k1", Name: "web"}
			_, err := vms.CreateVm(context.Background(), req)
			st := status.Convert(err)
			if st.Code() != tc.code {
				t.Fatalf("code = %v, want %v", st.Code(), tc.code)
			}
			if len(st.Details()) != 1 || !proto.Equal(st.Details()[0].(proto.Message), tc.e) {
				t.Fatalf("details = %v, want %v", st.Details(), tc.e)
			}
			if !proto.Equal(b.got.GetCreateVm(), req) {
				t.Fatalf("backend got %v, want the request unchanged", b.got)
			}
		})
	}
}

func TestHandlersReturnTheResponseKind(t *testing.T) {
	vm := &apiv1.Vm{Name: "web", State: apiv1.VmState_VM_STATE_PENDING}
	b := &fakeBackend{resp: &apiv1.Response{Kind: &apiv1.Response_GetVm{GetVm: &apiv1.GetVmResponse{Vm: vm}}}}
	got, err := apiv1grpc.NewVmServiceClient(serve(t, b)).GetVm(context.Background(), &apiv1.GetVmRequest{Name: "web", Stale: true})
	if err != nil {
		t.Fatal(err)
	}
	if !proto.Equal(got.GetVm(), vm) || !b.got.GetGetVm().GetStale() {
		t.Fatalf("got %v (backend saw %v)", got, b.got)
	}
}

func TestStoppingBackendIsUnavailable(t *testing.T) {
	b := &fakeBackend{err: ErrStopping}
	_, err := apiv1grpc.NewTaskServiceClient(serve(t, b)).ListTasks(context.Background(), &apiv1.ListTasksRequest{})
	if status.Code(err) != codes.Unavailable {
		t.Fatalf("code = %v, want Unavailable", status.Code(err))
	}
}

func TestDrainNode(t *testing.T) {
	node := &apiv1.Node{Id: 3, Drain: true, Status: apiv1.NodeStatus_NODE_STATUS_READY}
	for _, tc := range []struct {
		name        string
		req         *apiv1.DrainNodeRequest
		code        codes.Code
		field       string
		wantBackend bool
	}{
		{"drain", &apiv1.DrainNodeRequest{ClientRequestId: "k1", NodeId: 3, Drain: true}, codes.OK, "", true},
		{"undrain", &apiv1.DrainNodeRequest{ClientRequestId: "k2", NodeId: 3}, codes.OK, "", true},
		{"node 0 refused at the edge", &apiv1.DrainNodeRequest{ClientRequestId: "k3", Drain: true}, codes.InvalidArgument, "node_id", false},
		{"no node id at all", &apiv1.DrainNodeRequest{}, codes.InvalidArgument, "node_id", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := &fakeBackend{resp: &apiv1.Response{Kind: &apiv1.Response_DrainNode{DrainNode: &apiv1.DrainNodeResponse{Node: node}}}}
			got, err := apiv1grpc.NewClusterServiceClient(serve(t, b)).DrainNode(context.Background(), tc.req)
			st := status.Convert(err)
			if st.Code() != tc.code {
				t.Fatalf("code = %v (%v), want %v", st.Code(), err, tc.code)
			}
			if (b.got != nil) != tc.wantBackend {
				t.Fatalf("backend got %v; want a request: %v", b.got, tc.wantBackend)
			}
			if tc.code != codes.OK {
				if len(st.Details()) != 1 || st.Details()[0].(*apiv1.Error).GetField() != tc.field {
					t.Fatalf("details = %v, want an apiv1.Error on field %q", st.Details(), tc.field)
				}
				return
			}
			if !proto.Equal(b.got.GetDrainNode(), tc.req) || !proto.Equal(got.GetNode(), node) {
				t.Fatalf("backend got %v, client got %v; want the request unchanged and node %v back", b.got, got, node)
			}
		})
	}
}
