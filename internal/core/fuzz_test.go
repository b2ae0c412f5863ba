package core_test

import (
	"testing"
	"time"

	"go.etcd.io/raft/v3/raftpb"
	"google.golang.org/protobuf/proto"

	apiv1 "github.com/blixard/blixard/api/v1"
	"github.com/blixard/blixard/internal/core"
	"github.com/blixard/blixard/internal/transport"
)

// Fuzz targets for what reaches the core from outside: Raft messages from
// peers (as the transport delivers them: decoded, addressed to this node)
// and API requests from clients (as the server hands them over). See
// docs/SECURITY.md.

// fuzzEpoch is the driver's clock at the first tick.
var fuzzEpoch = time.Unix(1_700_000_000, 0)

// fuzzNode is a one-node cluster's leader with the node agent on, its
// record registered, as the runtime drives it: every Ready is carried out
// (nothing persisted, VM actions ignored) and its responses collected.
type fuzzNode struct {
	t         *testing.T
	n         *core.Node
	tick      int
	responses map[core.RequestID]int
	failed    error // Advance's error: the driver stops the node
}

func newFuzzNode(t *testing.T) *fuzzNode {
	t.Helper()
	n, err := core.New(core.Config{
		ID: 1, Peers: []uint64{1}, ClusterID: "fuzz",
		Address:   "127.0.0.1:7001",
		Capacity:  &apiv1.Resources{Vcpus: 8, MemoryMib: 8192, DiskMib: 100000, Features: []string{"kvm"}},
		Images:    []*apiv1.ImageInfo{{Name: "default", Digest: "sha256:00", MinMemoryMib: 64}},
		Workloads: true,
	}, core.Persisted{})
	if err != nil {
		t.Fatal(err)
	}
	fn := &fuzzNode{t: t, n: n, responses: map[core.RequestID]int{}}
	fn.drain()
	if err := n.Campaign(); err != nil {
		t.Fatal(err)
	}
	fn.drain()
	for i := 0; i < 5; i++ {
		fn.ticks(1)
		if _, ok := n.State().Node(1); ok && n.State().Cluster().GetId() != "" {
			return fn
		}
	}
	t.Fatal("the one-node cluster did not settle")
	return nil
}

// drain carries out every Ready until there is none. Raft has a bound on
// what one Ready holds; a node that never stops producing them is stuck.
func (fn *fuzzNode) drain() {
	fn.t.Helper()
	for i := 0; fn.failed == nil && fn.n.HasReady(); i++ {
		if i == 1000 {
			fn.t.Fatal("1000 Readys in a row")
		}
		rd := fn.n.Ready()
		for _, r := range rd.Responses {
			if r.Response == nil {
				fn.t.Fatalf("request %d answered with nil", r.ID)
			}
			fn.responses[r.ID]++
		}
		fn.failed = fn.n.Advance()
	}
}

func (fn *fuzzNode) ticks(k int) {
	fn.t.Helper()
	for i := 0; i < k && fn.failed == nil; i++ {
		fn.tick++
		fn.n.Tick(fuzzEpoch.Add(time.Duration(fn.tick) * core.DefaultTickInterval))
		fn.drain()
	}
}

func marshalT(tb testing.TB, m proto.Message) []byte {
	tb.Helper()
	b, err := proto.Marshal(m)
	if err != nil {
		tb.Fatal(err)
	}
	return b
}

// FuzzStep decodes two Raft messages as the transport does — To set to
// this node, and dropped when transport.CheckMessage refuses them — and
// steps the leader of a one-node cluster with them, then runs it for a few
// ticks. Nothing may panic; an error from Step is a refusal, one from
// Advance stops the node (as a snapshot that does not restore does) and
// ends the run.
//
// etcd raft trusts its peers and panics on some messages that no correct
// peer sends. CheckMessage refuses those it can tell from the message
// alone; the one it cannot — a heartbeat committing past this node's log —
// Node.Step drops.
func FuzzStep(f *testing.F) {
	msg := func(typ raftpb.MessageType, from, term uint64, mod func(*raftpb.Message)) []byte {
		m := &raftpb.Message{Type: typ.Enum(), From: proto.Uint64(from), To: proto.Uint64(1), Term: proto.Uint64(term)}
		if mod != nil {
			mod(m)
		}
		return marshalT(f, m)
	}
	seeds := [][]byte{
		msg(raftpb.MessageType_MsgHeartbeatResp, 2, 2, nil),
		msg(raftpb.MessageType_MsgHeartbeat, 2, 3, func(m *raftpb.Message) { m.Commit = proto.Uint64(2) }),
		msg(raftpb.MessageType_MsgAppResp, 2, 2, func(m *raftpb.Message) { m.Index = proto.Uint64(3) }),
		msg(raftpb.MessageType_MsgAppResp, 2, 2, func(m *raftpb.Message) { m.Reject = proto.Bool(true); m.RejectHint = proto.Uint64(1) }),
		msg(raftpb.MessageType_MsgPreVote, 2, 3, func(m *raftpb.Message) { m.Index = proto.Uint64(100); m.LogTerm = proto.Uint64(2) }),
		msg(raftpb.MessageType_MsgVote, 2, 3, func(m *raftpb.Message) { m.Index = proto.Uint64(100); m.LogTerm = proto.Uint64(2) }),
		msg(raftpb.MessageType_MsgReadIndex, 2, 0, func(m *raftpb.Message) {
			m.Entries = []*raftpb.Entry{{Data: []byte("0123456789abcdef")}}
		}),
		msg(raftpb.MessageType_MsgProp, 2, 0, func(m *raftpb.Message) {
			m.Entries = []*raftpb.Entry{{Data: marshalT(f, &apiv1.Command{ClientRequestId: "p", Op: &apiv1.Command_StartVm{StartVm: &apiv1.StartVmCommand{Name: "web"}}})}}
		}),
		msg(raftpb.MessageType_MsgApp, 2, 3, func(m *raftpb.Message) {
			m.Index, m.LogTerm, m.Commit = proto.Uint64(1), proto.Uint64(1), proto.Uint64(1)
			m.Entries = []*raftpb.Entry{{Term: proto.Uint64(3), Index: proto.Uint64(2)}}
		}),
		msg(raftpb.MessageType_MsgTimeoutNow, 2, 2, nil),
		msg(raftpb.MessageType_MsgTransferLeader, 2, 2, nil),
		msg(raftpb.MessageType_MsgSnap, 2, 3, func(m *raftpb.Message) {
			m.Snapshot = &raftpb.Snapshot{Data: []byte{0x08, 0x01}, Metadata: &raftpb.SnapshotMetadata{
				Index: proto.Uint64(50), Term: proto.Uint64(3), ConfState: &raftpb.ConfState{Voters: []uint64{1, 2}},
			}}
		}),
		{},
	}
	for i, s := range seeds {
		f.Add(s, seeds[(i+3)%len(seeds)])
	}
	f.Fuzz(func(t *testing.T, b1, b2 []byte) {
		var msgs []*raftpb.Message
		for _, b := range [][]byte{b1, b2} {
			m := &raftpb.Message{}
			if proto.Unmarshal(b, m) != nil {
				return // the transport drops it
			}
			m.To = proto.Uint64(1)
			if transport.CheckMessage(1, m) != nil {
				return // the transport drops it
			}
			msgs = append(msgs, m)
		}
		fn := newFuzzNode(t)
		for _, m := range msgs {
			_ = fn.n.Step(m)
			fn.drain()
			if fn.failed != nil {
				return
			}
		}
		fn.ticks(3)
	})
}

// FuzzRequest decodes two API requests as the server's handlers receive
// them (any kind, any fields) and hands them to the leader of a one-node
// cluster, as the runtime's Backend does; writes go through commandFor,
// state.Validate, the log and Apply. Nothing may panic, each request gets
// exactly one response within its timeout, and the state holds its
// invariants afterwards.
func FuzzRequest(f *testing.F) {
	seeds := [][]byte{{}}
	for _, r := range []*apiv1.Request{
		createVm("c1", "web", true), stopVm("c2", "web"), submitTask("c3"),
		getVm("web", false), getVm("web", true), listTasks(), clusterStatus(),
		{Kind: &apiv1.Request_StartVm{StartVm: &apiv1.StartVmRequest{ClientRequestId: "c4", Name: "web"}}},
		{Kind: &apiv1.Request_DeleteVm{DeleteVm: &apiv1.DeleteVmRequest{ClientRequestId: "c5", Name: "web"}}},
		{Kind: &apiv1.Request_CancelTask{CancelTask: &apiv1.CancelTaskRequest{ClientRequestId: "c6", Id: 5}}},
		{Kind: &apiv1.Request_DrainNode{DrainNode: &apiv1.DrainNodeRequest{ClientRequestId: "c7", NodeId: 1, Drain: true}}},
		{Kind: &apiv1.Request_ListVms{ListVms: &apiv1.ListVmsRequest{Limit: 10}}},
		{Kind: &apiv1.Request_GetTask{GetTask: &apiv1.GetTaskRequest{Id: 5}}},
		{Kind: &apiv1.Request_HealthCheck{HealthCheck: &apiv1.HealthCheckRequest{}}},
		{Kind: &apiv1.Request_JoinCluster{JoinCluster: &apiv1.JoinClusterRequest{ClientRequestId: "c8", NodeId: 2, Address: "127.0.0.1:7002"}}},
		{Kind: &apiv1.Request_LeaveCluster{LeaveCluster: &apiv1.LeaveClusterRequest{ClientRequestId: "c9", NodeId: 1}}},
	} {
		seeds = append(seeds, marshalT(f, r))
	}
	for i, s := range seeds {
		f.Add(s, seeds[(i+5)%len(seeds)])
	}
	f.Fuzz(func(t *testing.T, b1, b2 []byte) {
		var reqs []*apiv1.Request
		for _, b := range [][]byte{b1, b2} {
			r := &apiv1.Request{}
			if proto.Unmarshal(b, r) != nil {
				return // gRPC refuses it before the handler
			}
			reqs = append(reqs, r)
		}
		fn := newFuzzNode(t)
		for i, r := range reqs {
			fn.n.Request(core.RequestID(i+1), r)
			fn.drain()
		}
		// Every request is answered within RequestTimeoutTicks (5 election
		// timeouts by default), plus a tick.
		for i := 0; i <= 5*core.DefaultElectionTicks+1 && len(fn.responses) < len(reqs) && fn.failed == nil; i++ {
			fn.ticks(1)
		}
		if fn.failed != nil {
			t.Fatalf("the node stopped: %v", fn.failed)
		}
		for i := range reqs {
			if got := fn.responses[core.RequestID(i+1)]; got != 1 {
				t.Fatalf("request %d (%v) got %d responses", i+1, reqs[i], got)
			}
		}
		if len(fn.responses) != len(reqs) {
			t.Fatalf("responses to requests never made: %v", fn.responses)
		}
		if err := fn.n.State().CheckCommitted(); err != nil {
			t.Fatal(err)
		}
	})
}
