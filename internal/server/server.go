package server

import (
	"context"
	"errors"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	apiv1 "github.com/blixard/blixard/api/v1"
	"github.com/blixard/blixard/api/v1/apiv1grpc"
	"github.com/blixard/blixard/internal/pki"
)

// Backend hands a request to the node's core and returns its response. It
// returns an error only when no response can come: ctx ended, or the node
// is shutting down.
type Backend interface {
	Do(ctx context.Context, req *apiv1.Request) (*apiv1.Response, error)
}

// ErrStopping is what a Backend returns once its node is shutting down.
var ErrStopping = errors.New("node is shutting down")

// Register adds the API services, backed by b, to s. sec is nil on a node
// started with --insecure; otherwise s must also have been made with
// Interceptors(sec).
func Register(s *grpc.Server, b Backend, sec Security) {
	apiv1grpc.RegisterClusterServiceServer(s, &clusterService{b: b, sec: sec, keyID: pki.CSRKeyID})
	apiv1grpc.RegisterVmServiceServer(s, &vmService{b: b})
	apiv1grpc.RegisterTaskServiceServer(s, &taskService{b: b})
	apiv1grpc.RegisterTokenServiceServer(s, &tokenService{b: b, sec: sec, now: time.Now})
}

// do runs one request through the backend and returns the response's kind,
// or the error as a gRPC status.
func do(ctx context.Context, b Backend, req *apiv1.Request) (*apiv1.Response, error) {
	resp, err := b.Do(ctx, req)
	switch {
	case errors.Is(err, context.DeadlineExceeded):
		return nil, status.Error(codes.DeadlineExceeded, "deadline exceeded before the node answered; a write may still apply: retry with the same client request id")
	case errors.Is(err, context.Canceled):
		return nil, status.Error(codes.Canceled, "canceled before the node answered")
	case errors.Is(err, ErrStopping):
		return nil, StatusOf(&apiv1.Error{Code: apiv1.ErrorCode_ERROR_CODE_UNAVAILABLE, Message: err.Error()})
	case err != nil:
		return nil, status.Error(codes.Internal, err.Error())
	}
	if e := resp.GetError(); e != nil {
		return nil, StatusOf(e)
	}
	return resp, nil
}

// StatusOf turns a core error into a gRPC status error carrying it.
func StatusOf(e *apiv1.Error) error {
	code := codes.Unknown
	switch e.GetCode() {
	case apiv1.ErrorCode_ERROR_CODE_INVALID_ARGUMENT:
		code = codes.InvalidArgument
	case apiv1.ErrorCode_ERROR_CODE_NOT_FOUND:
		code = codes.NotFound
	case apiv1.ErrorCode_ERROR_CODE_ALREADY_EXISTS:
		code = codes.AlreadyExists
	case apiv1.ErrorCode_ERROR_CODE_FAILED_PRECONDITION, apiv1.ErrorCode_ERROR_CODE_NOT_LEADER:
		code = codes.FailedPrecondition
	case apiv1.ErrorCode_ERROR_CODE_UNAVAILABLE, apiv1.ErrorCode_ERROR_CODE_OUTCOME_UNKNOWN:
		code = codes.Unavailable
	case apiv1.ErrorCode_ERROR_CODE_RESOURCE_EXHAUSTED:
		code = codes.ResourceExhausted
	case apiv1.ErrorCode_ERROR_CODE_UNAUTHENTICATED:
		code = codes.Unauthenticated
	case apiv1.ErrorCode_ERROR_CODE_PERMISSION_DENIED:
		code = codes.PermissionDenied
	}
	st := status.New(code, e.GetMessage())
	if withDetail, err := st.WithDetails(e); err == nil {
		st = withDetail
	}
	return st.Err()
}

type clusterService struct {
	apiv1grpc.UnsafeClusterServiceServer
	b   Backend
	sec Security
	// keyID is pki.CSRKeyID (a variable for tests).
	keyID func(csr []byte) (keyID string, nodeID uint64, err error)
}

func (s *clusterService) LeaveCluster(ctx context.Context, r *apiv1.LeaveClusterRequest) (*apiv1.LeaveClusterResponse, error) {
	resp, err := do(ctx, s.b, &apiv1.Request{Kind: &apiv1.Request_LeaveCluster{LeaveCluster: r}})
	return resp.GetLeaveCluster(), err
}

// DrainNode refuses node id 0 at the edge: no node has it, and the core
// would otherwise propose the write only for the state to refuse it when
// applied. Everything else (is there such a node, has it left) is the
// state's to judge.
func (s *clusterService) DrainNode(ctx context.Context, r *apiv1.DrainNodeRequest) (*apiv1.DrainNodeResponse, error) {
	if r.GetNodeId() == 0 {
		return nil, StatusOf(&apiv1.Error{Code: apiv1.ErrorCode_ERROR_CODE_INVALID_ARGUMENT, Field: "node_id", Message: "node_id: must not be 0"})
	}
	resp, err := do(ctx, s.b, &apiv1.Request{Kind: &apiv1.Request_DrainNode{DrainNode: r}})
	return resp.GetDrainNode(), err
}

func (s *clusterService) GetClusterStatus(ctx context.Context, r *apiv1.GetClusterStatusRequest) (*apiv1.GetClusterStatusResponse, error) {
	resp, err := do(ctx, s.b, &apiv1.Request{Kind: &apiv1.Request_GetClusterStatus{GetClusterStatus: r}})
	return resp.GetGetClusterStatus(), err
}

func (s *clusterService) ListEvents(ctx context.Context, r *apiv1.ListEventsRequest) (*apiv1.ListEventsResponse, error) {
	resp, err := do(ctx, s.b, &apiv1.Request{Kind: &apiv1.Request_ListEvents{ListEvents: r}})
	return resp.GetListEvents(), err
}

func (s *clusterService) HealthCheck(ctx context.Context, r *apiv1.HealthCheckRequest) (*apiv1.HealthCheckResponse, error) {
	resp, err := do(ctx, s.b, &apiv1.Request{Kind: &apiv1.Request_HealthCheck{HealthCheck: r}})
	return resp.GetHealthCheck(), err
}

type vmService struct {
	apiv1grpc.UnsafeVmServiceServer
	b Backend
}

func (s *vmService) CreateVm(ctx context.Context, r *apiv1.CreateVmRequest) (*apiv1.CreateVmResponse, error) {
	resp, err := do(ctx, s.b, &apiv1.Request{Kind: &apiv1.Request_CreateVm{CreateVm: r}})
	return resp.GetCreateVm(), err
}

func (s *vmService) StartVm(ctx context.Context, r *apiv1.StartVmRequest) (*apiv1.StartVmResponse, error) {
	resp, err := do(ctx, s.b, &apiv1.Request{Kind: &apiv1.Request_StartVm{StartVm: r}})
	return resp.GetStartVm(), err
}

func (s *vmService) StopVm(ctx context.Context, r *apiv1.StopVmRequest) (*apiv1.StopVmResponse, error) {
	resp, err := do(ctx, s.b, &apiv1.Request{Kind: &apiv1.Request_StopVm{StopVm: r}})
	return resp.GetStopVm(), err
}

func (s *vmService) DeleteVm(ctx context.Context, r *apiv1.DeleteVmRequest) (*apiv1.DeleteVmResponse, error) {
	resp, err := do(ctx, s.b, &apiv1.Request{Kind: &apiv1.Request_DeleteVm{DeleteVm: r}})
	return resp.GetDeleteVm(), err
}

func (s *vmService) GetVm(ctx context.Context, r *apiv1.GetVmRequest) (*apiv1.GetVmResponse, error) {
	resp, err := do(ctx, s.b, &apiv1.Request{Kind: &apiv1.Request_GetVm{GetVm: r}})
	return resp.GetGetVm(), err
}

func (s *vmService) ListVms(ctx context.Context, r *apiv1.ListVmsRequest) (*apiv1.ListVmsResponse, error) {
	resp, err := do(ctx, s.b, &apiv1.Request{Kind: &apiv1.Request_ListVms{ListVms: r}})
	return resp.GetListVms(), err
}

type taskService struct {
	apiv1grpc.UnsafeTaskServiceServer
	b Backend
}

func (s *taskService) SubmitTask(ctx context.Context, r *apiv1.SubmitTaskRequest) (*apiv1.SubmitTaskResponse, error) {
	resp, err := do(ctx, s.b, &apiv1.Request{Kind: &apiv1.Request_SubmitTask{SubmitTask: r}})
	return resp.GetSubmitTask(), err
}

func (s *taskService) GetTask(ctx context.Context, r *apiv1.GetTaskRequest) (*apiv1.GetTaskResponse, error) {
	resp, err := do(ctx, s.b, &apiv1.Request{Kind: &apiv1.Request_GetTask{GetTask: r}})
	return resp.GetGetTask(), err
}

func (s *taskService) ListTasks(ctx context.Context, r *apiv1.ListTasksRequest) (*apiv1.ListTasksResponse, error) {
	resp, err := do(ctx, s.b, &apiv1.Request{Kind: &apiv1.Request_ListTasks{ListTasks: r}})
	return resp.GetListTasks(), err
}

func (s *taskService) CancelTask(ctx context.Context, r *apiv1.CancelTaskRequest) (*apiv1.CancelTaskResponse, error) {
	resp, err := do(ctx, s.b, &apiv1.Request{Kind: &apiv1.Request_CancelTask{CancelTask: r}})
	return resp.GetCancelTask(), err
}
