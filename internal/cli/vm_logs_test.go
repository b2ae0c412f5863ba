package cli

import (
	"bytes"
	"context"
	"net"
	"slices"
	"sync"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	apiv1 "github.com/blixard/blixard/api/v1"
	"github.com/blixard/blixard/api/v1/apiv1grpc"
	"github.com/blixard/blixard/client/clienttest"
)

// consoleNode is a fake of the node that runs a VM, as far as its console
// goes: it serves StreamVmLogs with fixed chunks (clienttest serves no
// consoles).
type consoleNode struct {
	apiv1grpc.UnimplementedVmServiceServer
	addr   string
	chunks []string
	// err, if set, is the answer instead of the chunks.
	err error

	mu   sync.Mutex
	reqs []*apiv1.StreamVmLogsRequest
}

// startConsoleNode serves chunks on 127.0.0.1 until the test ends.
func startConsoleNode(t *testing.T, chunks ...string) *consoleNode {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("listen: %v", err)
	}
	c := &consoleNode{addr: lis.Addr().String(), chunks: chunks}
	srv := grpc.NewServer()
	apiv1grpc.RegisterVmServiceServer(srv, c)
	go func() { _ = srv.Serve(lis) }()
	t.Cleanup(srv.Stop)
	return c
}

func (c *consoleNode) StreamVmLogs(req *apiv1.StreamVmLogsRequest, stream grpc.ServerStreamingServer[apiv1.VmLogChunk]) error {
	c.mu.Lock()
	c.reqs = append(c.reqs, proto.CloneOf(req))
	c.mu.Unlock()
	if c.err != nil {
		return c.err
	}
	for _, chunk := range c.chunks {
		if err := stream.Send(&apiv1.VmLogChunk{Data: []byte(chunk)}); err != nil {
			return err
		}
	}
	if req.GetFollow() {
		// Nothing more comes; a follow waits until the caller leaves.
		<-stream.Context().Done()
	}
	return nil
}

func (c *consoleNode) requests() []*apiv1.StreamVmLogsRequest {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.reqs)
}

// placeOn makes the fake cluster n say that its VMs run on node 2, at the
// console node's address.
func placeOn(n *clienttest.Node, c *consoleNode) {
	n.UpdateCluster(func(st *apiv1.GetClusterStatusResponse) {
		st.Nodes = append(st.Nodes, &apiv1.Node{Id: 2, Address: c.addr, Status: apiv1.NodeStatus_NODE_STATUS_READY})
	})
	n.SetHook(func(_ context.Context, method string, _ proto.Message, next func() (proto.Message, error)) (proto.Message, error) {
		resp, err := next()
		if v := asVM(resp); method == "GetVm" && err == nil && v != nil {
			v.NodeId, v.State = 2, apiv1.VmState_VM_STATE_RUNNING
		}
		return resp, err
	})
}

func TestVMLogs(t *testing.T) {
	tests := []struct {
		name string
		args []string
		want *apiv1.StreamVmLogsRequest
	}{
		{"whole console", nil, &apiv1.StreamVmLogsRequest{Name: "web"}},
		{"tail", []string{"--tail", "4096"}, &apiv1.StreamVmLogsRequest{Name: "web", TailBytes: 4096}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			n := clienttest.Start(t, 1)
			mustRunAt(t, n, "vm", "create", "web", "--vcpus", "1", "--memory", "128")
			c := startConsoleNode(t, "[    0.000000] Linux version 6.1\n", "[agent] ready\n", "partial line, no newline")
			placeOn(n, c)
			got := mustRunAt(t, n, append([]string{"vm", "logs", "web"}, tc.args...)...)
			if want := "[    0.000000] Linux version 6.1\n[agent] ready\npartial line, no newline"; got != want {
				t.Errorf("vm logs printed %q, want the console as it came, %q", got, want)
			}
			reqs := c.requests()
			if len(reqs) != 1 || !proto.Equal(reqs[0], tc.want) {
				t.Errorf("StreamVmLogs requests %v, want one: %v", reqs, tc.want)
			}
		})
	}
}

// cancelAfter is an output that cancels a context once it holds want.
type cancelAfter struct {
	mu     sync.Mutex
	buf    bytes.Buffer
	want   string
	cancel context.CancelFunc
}

func (w *cancelAfter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.buf.Write(p)
	if w.buf.String() == w.want {
		w.cancel()
	}
	return len(p), nil
}

func TestVMLogsFollowEndsCleanlyOnInterrupt(t *testing.T) {
	n := clienttest.Start(t, 1)
	mustRunAt(t, n, "vm", "create", "web", "--vcpus", "1", "--memory", "128")
	c := startConsoleNode(t, "booting\n", "[agent] ready\n")
	placeOn(n, c)

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	out := &cancelAfter{want: "booting\n[agent] ready\n", cancel: cancel}
	var errOut bytes.Buffer
	root := NewRootCommand()
	root.SetArgs([]string{"--addr", n.Addr, "--insecure", "vm", "logs", "web", "-f"})
	root.SetOut(out)
	root.SetErr(&errOut)
	// Ctrl-C is the ctx ending once all was printed: exit status 0.
	if err := execute(ctx, root); err != nil || errOut.Len() != 0 {
		t.Errorf("vm logs -f ended by an interrupt: err %v, stderr %q; want success and no message", err, errOut.String())
	}
	if got := out.buf.String(); got != out.want {
		t.Errorf("vm logs -f printed %q, want %q", got, out.want)
	}
	if reqs := c.requests(); len(reqs) != 1 || !reqs[0].GetFollow() {
		t.Errorf("StreamVmLogs requests %v, want one with follow", reqs)
	}
}

func TestVMLogsFailures(t *testing.T) {
	n := clienttest.Start(t, 1)
	mustRunAt(t, n, "vm", "create", "web", "--vcpus", "1", "--memory", "128")
	// Not placed yet: the fake's VM is pending on no node.
	failAt(t, n, `error: VM "web" has not been placed on a node yet`, "vm", "logs", "web")
	failAt(t, n, `error: name: no VM named "db"`, "vm", "logs", "db")

	c := startConsoleNode(t)
	c.err = status.Error(codes.FailedPrecondition, `this node has no console of VM "web"; it is on node 3`)
	placeOn(n, c)
	failAt(t, n, `error: this node has no console of VM "web"; it is on node 3`, "vm", "logs", "web")
}

func TestVMLogsFlagErrors(t *testing.T) {
	n := clienttest.Start(t, 1)
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"vm", "logs"}, "blixard vm logs takes 1 argument(s), NAME; got 0"},
		{[]string{"vm", "logs", "web", "--tail", "-1"}, "--tail must be 0 (the whole console) or more bytes, got -1 (see 'blixard vm logs --help')"},
		{[]string{"vm", "logs", "web", "--tail", "lots"}, `invalid argument "lots" for "--tail" flag`},
		{[]string{"vm", "logs", "web", "-o", "json"}, "-o json: vm logs prints the console as text only"},
	} {
		failAt(t, n, tc.want, tc.args...)
	}
	if len(n.Calls()) != 0 {
		t.Errorf("node got %d calls, want none: flags are checked before any request", len(n.Calls()))
	}
}
