package transport

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"runtime"
	"testing"

	"go.etcd.io/raft/v3/raftpb"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/blixard/blixard/internal/transport/transportpb"
)

// Fuzz targets for what a peer sends: the batches of the Stream RPC and the
// chunks of the Snapshot RPC, fed to the handlers as gRPC would after
// decoding each message (an input that does not decode as the message
// ends the stream with an error, as gRPC's codec does). See
// docs/SECURITY.md.

// fakeStream is the server side of a client-streaming RPC fed from memory.
type fakeStream[Req any] struct {
	grpc.ServerStream // nil: only the methods below are called
	ctx               context.Context
	msgs              [][]byte
	closed            bool
}

func (s *fakeStream[Req]) Context() context.Context { return s.ctx }

func (s *fakeStream[Req]) Recv() (*Req, error) {
	if len(s.msgs) == 0 {
		return nil, io.EOF
	}
	raw := s.msgs[0]
	s.msgs = s.msgs[1:]
	m := new(Req)
	if err := proto.Unmarshal(raw, any(m).(proto.Message)); err != nil {
		return nil, status.Errorf(codes.Internal, "grpc: failed to unmarshal the received message: %v", err)
	}
	return m, nil
}

func (s *fakeStream[Req]) SendAndClose(*transportpb.Ack) error {
	if s.closed {
		return errors.New("SendAndClose called twice")
	}
	s.closed = true
	return nil
}

// fuzzTransport is a transport for node 2 that records what it delivers
// and learns. It is never given peers, so it opens no connection.
type fuzzTransport struct {
	*Transport
	delivered []*raftpb.Message
	learned   map[uint64]string
	learns    int
}

func newFuzzTransport(t *testing.T) *fuzzTransport {
	ft := &fuzzTransport{learned: map[uint64]string{}}
	tr, err := New(Config{
		ID:      2,
		Address: "127.0.0.1:7002",
		// The handlers run on the test's goroutine (pump's goroutine only
		// receives), so no lock is needed here.
		Deliver: func(m *raftpb.Message) { ft.delivered = append(ft.delivered, m) },
		Learned: func(p uint64, addr string) { ft.learned[p] = addr; ft.learns++ },
		Logger:  slog.New(slog.DiscardHandler),
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = tr.Close() })
	ft.Transport = tr
	return ft
}

func marshalT(tb testing.TB, m proto.Message) []byte {
	tb.Helper()
	b, err := proto.Marshal(m)
	if err != nil {
		tb.Fatal(err)
	}
	return b
}

// FuzzStream feeds the Stream handler two batches. It must not panic, and
// must deliver only messages that decode, are addressed to this node and
// come from the batch's sender; it learns at most one address, from the
// first batch.
func FuzzStream(f *testing.F) {
	heartbeat := &raftpb.Message{Type: raftpb.MessageType_MsgHeartbeat.Enum(), From: proto.Uint64(1), To: proto.Uint64(2), Term: proto.Uint64(3), Commit: proto.Uint64(7)}
	good := marshalT(f, &transportpb.Batch{From: 1, FromAddress: "10.0.0.1:7000", Messages: [][]byte{
		marshalT(f, appMsg(1, 2, 0)), marshalT(f, heartbeat),
	}})
	mixed := marshalT(f, &transportpb.Batch{From: 1, Messages: [][]byte{
		{0xff, 0xff, 0xff}, marshalT(f, appMsg(1, 3, 0)), marshalT(f, appMsg(5, 2, 0)), marshalT(f, appMsg(1, 2, 1)),
	}})
	f.Add(good, mixed)
	f.Add(mixed, good)
	f.Add(good, []byte{})
	f.Add([]byte{0xff}, good)
	f.Fuzz(func(t *testing.T, b1, b2 []byte) {
		ft := newFuzzTransport(t)
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		stream := &fakeStream[transportpb.Batch]{ctx: ctx, msgs: [][]byte{b1, b2}}
		err := receiver{t: ft.Transport}.Stream(stream)
		if (err == nil) != stream.closed {
			t.Fatalf("Stream returned %v, SendAndClose called: %v", err, stream.closed)
		}

		// What the peer sent, decoded as the handler saw it.
		var batches []*transportpb.Batch
		for _, raw := range [][]byte{b1, b2} {
			b := &transportpb.Batch{}
			if proto.Unmarshal(raw, b) != nil {
				break
			}
			batches = append(batches, b)
		}
		sent := 0
		for _, b := range batches {
			sent += len(b.GetMessages())
		}
		if len(ft.delivered) > sent {
			t.Fatalf("%d messages delivered of %d sent", len(ft.delivered), sent)
		}
		for _, m := range ft.delivered {
			if err := CheckMessage(2, m); err != nil {
				t.Fatalf("delivered %v: %v", m, err)
			}
			if !fromSomeBatch(m.GetFrom(), batches) {
				t.Fatalf("delivered a message from %d, no batch came from it", m.GetFrom())
			}
		}
		if ft.learns > 1 {
			t.Fatalf("learned %d addresses from one stream", ft.learns)
		}
		for p, addr := range ft.learned {
			first := batches[0]
			if p != first.GetFrom() || addr != first.GetFromAddress() || p == 0 || p == 2 {
				t.Fatalf("learned %d at %q; the first batch is from %d at %q", p, addr, first.GetFrom(), first.GetFromAddress())
			}
		}
	})
}

func fromSomeBatch(from uint64, batches []*transportpb.Batch) bool {
	for _, b := range batches {
		if b.GetFrom() == from {
			return true
		}
	}
	return false
}

// FuzzSnapshot feeds the Snapshot handler three chunks. It must not panic,
// must deliver at most one MsgSnap — addressed to this node, from the
// header's sender, with exactly total_bytes of data, at most
// MaxSnapshotBytes — and answer Ack exactly when it delivers. What it
// allocates is bounded by what it received plus snapshotPreallocBytes, so
// a claimed total_bytes alone reserves no more than that.
func FuzzSnapshot(f *testing.F) {
	header := marshalT(f, withoutSnapshotData(snapMsg(1, 2, nil)))
	chunk := func(c *transportpb.SnapshotChunk) []byte { return marshalT(f, c) }
	f.Add(chunk(&transportpb.SnapshotChunk{From: 1, Header: header, TotalBytes: 10, Data: []byte("01234")}),
		chunk(&transportpb.SnapshotChunk{From: 1, Data: []byte("567")}),
		chunk(&transportpb.SnapshotChunk{From: 1, Data: []byte("89")}))
	f.Add(chunk(&transportpb.SnapshotChunk{From: 1, Header: header, TotalBytes: 3, Data: []byte("abc")}), []byte(nil), []byte(nil))
	f.Add(chunk(&transportpb.SnapshotChunk{From: 1, Header: header, TotalBytes: MaxSnapshotBytes + 1}), []byte(nil), []byte(nil))
	f.Add(chunk(&transportpb.SnapshotChunk{From: 1, Header: header, TotalBytes: 4 << 30, Data: []byte("x")}), []byte(nil), []byte(nil))
	f.Add(chunk(&transportpb.SnapshotChunk{From: 1, Header: marshalT(f, appMsg(1, 2, 0))}), []byte(nil), []byte(nil))
	f.Add(chunk(&transportpb.SnapshotChunk{From: 1, TotalBytes: 1, Data: []byte("1")}), []byte(nil), []byte(nil))
	f.Fuzz(func(t *testing.T, c1, c2, c3 []byte) {
		ft := newFuzzTransport(t)
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		var msgs [][]byte
		for _, c := range [][]byte{c1, c2, c3} {
			if c != nil {
				msgs = append(msgs, c)
			}
		}
		stream := &fakeStream[transportpb.SnapshotChunk]{ctx: ctx, msgs: msgs}

		var first transportpb.SnapshotChunk
		_ = proto.Unmarshal(c1, &first)
		received := uint64(len(c1) + len(c2) + len(c3))

		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		err := receiver{t: ft.Transport}.Snapshot(stream)
		runtime.ReadMemStats(&after)

		if alloc := after.TotalAlloc - before.TotalAlloc; alloc > 4*received+min(first.GetTotalBytes(), snapshotPreallocBytes)+1<<20 {
			t.Fatalf("allocated %d bytes for %d bytes received claiming %d", alloc, received, first.GetTotalBytes())
		}
		if (err == nil) != stream.closed || (err == nil) != (len(ft.delivered) == 1) || len(ft.delivered) > 1 {
			t.Fatalf("Snapshot returned %v, Ack sent: %v, %d delivered", err, stream.closed, len(ft.delivered))
		}
		if err != nil {
			return
		}
		m := ft.delivered[0]
		total := first.GetTotalBytes()
		if m.GetType() != raftpb.MessageType_MsgSnap || m.GetTo() != 2 || m.GetFrom() != first.GetFrom() {
			t.Fatalf("delivered a %v from %d to %d; the stream is from %d", m.GetType(), m.GetFrom(), m.GetTo(), first.GetFrom())
		}
		if n := uint64(len(m.GetSnapshot().GetData())); n != total || n > MaxSnapshotBytes {
			t.Fatalf("delivered %d bytes of data, total_bytes said %d", n, total)
		}
	})
}

// TestSnapshotClaimIsRefusedBeforeAllocating: a first chunk that claims
// 4 GiB is refused without reserving anything like it, and one that claims
// the maximum reserves at most snapshotPreallocBytes up front.
func TestSnapshotClaimIsRefusedBeforeAllocating(t *testing.T) {
	header := marshalT(t, withoutSnapshotData(snapMsg(1, 2, nil)))
	for _, tc := range []struct {
		total    uint64
		code     codes.Code
		maxAlloc uint64
	}{
		{4 << 30, codes.ResourceExhausted, 1 << 20},
		{MaxSnapshotBytes, codes.InvalidArgument, snapshotPreallocBytes + 1<<20},
	} {
		ft := newFuzzTransport(t)
		stream := &fakeStream[transportpb.SnapshotChunk]{ctx: context.Background(), msgs: [][]byte{
			marshalT(t, &transportpb.SnapshotChunk{From: 1, Header: header, TotalBytes: tc.total, Data: []byte("x")}),
		}}
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		err := receiver{t: ft.Transport}.Snapshot(stream)
		runtime.ReadMemStats(&after)
		if status.Code(err) != tc.code {
			t.Fatalf("claim of %d bytes: %v, want %v", tc.total, err, tc.code)
		}
		if alloc := after.TotalAlloc - before.TotalAlloc; alloc > tc.maxAlloc {
			t.Fatalf("claim of %d bytes allocated %d bytes, want at most %d", tc.total, alloc, tc.maxAlloc)
		}
	}
}

// TestCheckMessage: the messages a correct peer sends pass; each shape on
// which etcd raft panics is refused.
func TestCheckMessage(t *testing.T) {
	msg := func(typ raftpb.MessageType, mod func(*raftpb.Message)) *raftpb.Message {
		m := &raftpb.Message{Type: typ.Enum(), From: proto.Uint64(1), To: proto.Uint64(2), Term: proto.Uint64(3)}
		if mod != nil {
			mod(m)
		}
		return m
	}
	entries := func(m *raftpb.Message, idx ...uint64) {
		for _, i := range idx {
			m.Entries = append(m.Entries, &raftpb.Entry{Index: proto.Uint64(i), Term: proto.Uint64(3)})
		}
	}
	good := []*raftpb.Message{
		appMsg(1, 2, 7),
		msg(raftpb.MessageType_MsgApp, nil),
		msg(raftpb.MessageType_MsgApp, func(m *raftpb.Message) { m.Index, m.LogTerm = proto.Uint64(4), proto.Uint64(2); entries(m, 5, 6, 7) }),
		msg(raftpb.MessageType_MsgHeartbeat, func(m *raftpb.Message) { m.Commit = proto.Uint64(9) }),
		msg(raftpb.MessageType_MsgVote, nil),
		msg(raftpb.MessageType_MsgProp, func(m *raftpb.Message) { m.Term = nil; entries(m, 0) }),
		msg(raftpb.MessageType_MsgReadIndex, func(m *raftpb.Message) { m.Term = nil; entries(m, 0) }),
		snapMsg(1, 2, []byte("data")),
		msg(raftpb.MessageType_MsgSnap, nil),
	}
	for _, m := range good {
		if err := CheckMessage(2, m); err != nil {
			t.Errorf("%v refused: %v", m, err)
		}
	}
	bad := map[string]*raftpb.Message{
		"to another node":            msg(raftpb.MessageType_MsgHeartbeat, func(m *raftpb.Message) { m.To = proto.Uint64(3) }),
		"from this node":             msg(raftpb.MessageType_MsgHeartbeat, func(m *raftpb.Message) { m.From = proto.Uint64(2) }),
		"from no node":               msg(raftpb.MessageType_MsgHeartbeat, func(m *raftpb.Message) { m.From = nil }),
		"unknown type":               msg(raftpb.MessageType(-7), nil),
		"unknown type beyond":        msg(raftpb.MessageType(1000), nil),
		"vote without term":          msg(raftpb.MessageType_MsgPreVote, func(m *raftpb.Message) { m.Term = nil }),
		"vote answer without term":   msg(raftpb.MessageType_MsgVoteResp, func(m *raftpb.Message) { m.Term = nil }),
		"empty proposal":             msg(raftpb.MessageType_MsgProp, func(m *raftpb.Message) { m.Term = nil }),
		"proposal with a term":       msg(raftpb.MessageType_MsgProp, func(m *raftpb.Message) { entries(m, 0) }),
		"read index without context": msg(raftpb.MessageType_MsgReadIndex, func(m *raftpb.Message) { m.Term = nil }),
		"read index with a term":     msg(raftpb.MessageType_MsgReadIndex, func(m *raftpb.Message) { entries(m, 0) }),
		"append with a gap":          msg(raftpb.MessageType_MsgApp, func(m *raftpb.Message) { m.Index = proto.Uint64(4); entries(m, 5, 7) }),
		"append going back":          msg(raftpb.MessageType_MsgApp, func(m *raftpb.Message) { m.Index = proto.Uint64(4); entries(m, 2) }),
		"append with falling terms": msg(raftpb.MessageType_MsgApp, func(m *raftpb.Message) {
			m.Index = proto.Uint64(4)
			entries(m, 5, 6)
			m.Entries[1].Term = proto.Uint64(1)
		}),
		"append from a later term": msg(raftpb.MessageType_MsgApp, func(m *raftpb.Message) {
			m.Index = proto.Uint64(4)
			entries(m, 5)
			m.Entries[0].Term = proto.Uint64(4)
		}),
		"snapshot with a duplicate voter": msg(raftpb.MessageType_MsgSnap, func(m *raftpb.Message) {
			m.Snapshot = &raftpb.Snapshot{Metadata: &raftpb.SnapshotMetadata{Index: proto.Uint64(9), Term: proto.Uint64(3),
				ConfState: &raftpb.ConfState{Voters: []uint64{1, 2, 2}}}}
		}),
		"snapshot with a voter also learner": msg(raftpb.MessageType_MsgSnap, func(m *raftpb.Message) {
			m.Snapshot = &raftpb.Snapshot{Metadata: &raftpb.SnapshotMetadata{Index: proto.Uint64(9), Term: proto.Uint64(3),
				ConfState: &raftpb.ConfState{Voters: []uint64{1, 2}, Learners: []uint64{2}}}}
		}),
	}
	for name, m := range bad {
		if err := CheckMessage(2, m); err == nil {
			t.Errorf("%s: %v accepted", name, m)
		}
	}
}
