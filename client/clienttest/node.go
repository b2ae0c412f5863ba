package clienttest

import (
	"context"
	"crypto/tls"
	"net"
	"path"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/metadata"
	"google.golang.org/protobuf/proto"

	apiv1 "github.com/blixard/blixard/api/v1"
	"github.com/blixard/blixard/api/v1/apiv1grpc"
)

// Hook sees every call before the fake state does. method is the RPC's
// short name ("CreateVm"); next runs the call against the fake state. A hook
// may return an error without calling next (a refusal), call next and then
// fail (an outcome-unknown write), or block until ctx ends.
type Hook func(ctx context.Context, method string, req proto.Message, next func() (proto.Message, error)) (proto.Message, error)

// Call is one request a Node received.
type Call struct {
	Method string
	// Request is the request message; nil for a stream, whose messages
	// the fake does not record.
	Request proto.Message
	// Token is the bearer token the call carried in its "authorization"
	// metadata ("" if none).
	Token string
}

// baseTime is the fake clock's origin: the record written at log index i
// carries the time baseTime + i seconds, so output that shows times is the
// same on every run.
var baseTime = time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)

// maxCalls bounds the calls a Node records; later ones are dropped.
const maxCalls = 10000

// Node is a fake Blixard node.
type Node struct {
	ID   uint64
	Addr string

	srv *grpc.Server

	mu    sync.Mutex
	hook  Hook
	calls []Call
	// index counts the writes applied, like a log index.
	index   uint64
	vms     map[string]*apiv1.Vm
	tasks   map[uint64]*apiv1.Task
	tokens  map[tokenKey]*apiv1.Token
	cluster *apiv1.GetClusterStatusResponse
	events  []*apiv1.Event
	// responses by client request id; unbounded, as a test is short.
	responses map[string]proto.Message
}

// Start runs a fake node with the given id on 127.0.0.1 and an unused port,
// serving plaintext as a node started with --insecure does. It is a
// one-member cluster led by itself until UpdateCluster says otherwise. The
// node stops when the test ends.
func Start(t testing.TB, id uint64) *Node {
	t.Helper()
	return start(t, id, nil)
}

// StartTLS is Start with the node serving TLS with cfg (which holds the
// node's certificate). The fake checks no token: Calls shows what each
// call carried, and a Hook may refuse.
func StartTLS(t testing.TB, id uint64, cfg *tls.Config) *Node {
	t.Helper()
	if cfg == nil {
		t.Fatal("clienttest: StartTLS without a TLS config")
	}
	return start(t, id, cfg)
}

func start(t testing.TB, id uint64, cfg *tls.Config) *Node {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("clienttest: listen: %v", err)
	}
	n := &Node{
		ID:        id,
		Addr:      lis.Addr().String(),
		vms:       make(map[string]*apiv1.Vm),
		tasks:     make(map[uint64]*apiv1.Task),
		tokens:    make(map[tokenKey]*apiv1.Token),
		responses: make(map[string]proto.Message),
	}
	n.cluster = &apiv1.GetClusterStatusResponse{
		Cluster: &apiv1.Cluster{Id: "fake-cluster", Membership: &apiv1.Membership{Voters: []uint64{id}}},
		Nodes: []*apiv1.Node{{
			Id: id, Address: n.Addr, Role: apiv1.NodeRole_NODE_ROLE_VOTER,
			Capacity: &apiv1.Resources{Vcpus: 4, MemoryMib: 8192},
			Status:   apiv1.NodeStatus_NODE_STATUS_READY,
		}},
		NodeId:   id,
		LeaderId: id,
		Term:     1,
		Members: []*apiv1.ClusterMember{{
			Id: id, Address: n.Addr, Role: apiv1.NodeRole_NODE_ROLE_VOTER, Voter: true,
			Status:   apiv1.NodeStatus_NODE_STATUS_READY,
			Capacity: &apiv1.Resources{Vcpus: 4, MemoryMib: 8192},
		}},
	}
	opts := []grpc.ServerOption{grpc.UnaryInterceptor(n.intercept), grpc.StreamInterceptor(n.interceptStream)}
	if cfg != nil {
		opts = append(opts, grpc.Creds(credentials.NewTLS(cfg)))
	}
	n.srv = grpc.NewServer(opts...)
	apiv1grpc.RegisterClusterServiceServer(n.srv, clusterService{n: n})
	apiv1grpc.RegisterVmServiceServer(n.srv, vmService{n: n})
	apiv1grpc.RegisterTaskServiceServer(n.srv, taskService{n: n})
	apiv1grpc.RegisterTokenServiceServer(n.srv, tokenService{n: n})
	go func() { _ = n.srv.Serve(lis) }()
	t.Cleanup(n.Stop)
	return n
}

// Stop closes the node's listener and connections; later calls to its
// address fail as to a dead node. Stopping twice is harmless.
func (n *Node) Stop() { n.srv.Stop() }

// SetHook installs h (nil removes it).
func (n *Node) SetHook(h Hook) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.hook = h
}

// Calls returns the calls received so far, oldest first.
func (n *Node) Calls() []Call {
	n.mu.Lock()
	defer n.mu.Unlock()
	out := make([]Call, len(n.calls))
	for i, c := range n.calls {
		out[i] = Call{Method: c.Method, Request: proto.Clone(c.Request), Token: c.Token}
	}
	return out
}

// UpdateCluster lets f change what GetClusterStatus answers (commit and
// applied indexes are filled in from the fake's own count of writes).
func (n *Node) UpdateCluster(f func(*apiv1.GetClusterStatusResponse)) {
	n.mu.Lock()
	defer n.mu.Unlock()
	f(n.cluster)
}

// UpdateTask lets f change task id, as a node running it would. It reports
// false if there is no such task.
func (n *Node) UpdateTask(id uint64, f func(*apiv1.Task)) bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	t, ok := n.tasks[id]
	if ok {
		f(t)
	}
	return ok
}

// record notes a call and returns the hook to run it through.
func (n *Node) record(ctx context.Context, c Call) Hook {
	c.Token = bearerToken(ctx)
	n.mu.Lock()
	defer n.mu.Unlock()
	if len(n.calls) < maxCalls {
		n.calls = append(n.calls, c)
	}
	return n.hook
}

// bearerToken returns the token of the call's "authorization: Bearer"
// metadata, "" if none.
func bearerToken(ctx context.Context) string {
	md, _ := metadata.FromIncomingContext(ctx)
	for _, v := range md.Get("authorization") {
		if tok, ok := strings.CutPrefix(v, "Bearer "); ok {
			return tok
		}
	}
	return ""
}

// interceptStream records a stream (hooks see only unary calls).
func (n *Node) interceptStream(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
	n.record(ss.Context(), Call{Method: path.Base(info.FullMethod)})
	return handler(srv, ss)
}

func (n *Node) intercept(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
	method := path.Base(info.FullMethod)
	msg, _ := req.(proto.Message)
	h := n.record(ctx, Call{Method: method, Request: proto.Clone(msg)})
	if h == nil {
		return handler(ctx, req)
	}
	next := func() (proto.Message, error) {
		resp, err := handler(ctx, req)
		m, _ := resp.(proto.Message)
		return m, err
	}
	return h(ctx, method, msg, next)
}

// tick advances the fake log by one write and returns its index and time.
// The caller holds n.mu.
func (n *Node) tick() (uint64, int64) {
	n.index++
	return n.index, baseTime.Add(time.Duration(n.index) * time.Second).UnixNano()
}

// write applies a mutating request once per client request id: a retry
// gets the stored response. Refusals are not stored.
func write[R proto.Message](n *Node, id string, apply func() (R, error)) (R, error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	var zero R
	if id == "" {
		return zero, fieldError(apiv1.ErrorCode_ERROR_CODE_INVALID_ARGUMENT, "client_request_id", "must be set on every write")
	}
	if r, ok := n.responses[id]; ok {
		return proto.CloneOf(r.(R)), nil
	}
	r, err := apply()
	if err != nil {
		return zero, err
	}
	n.responses[id] = proto.CloneOf(r)
	return r, nil
}

// read runs f under the node's lock.
func read[R proto.Message](n *Node, f func() (R, error)) (R, error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	return f()
}
