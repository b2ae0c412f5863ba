package transport

import (
	"context"
	"testing"

	"go.etcd.io/raft/v3/raftpb"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/blixard/blixard/internal/transport/transportpb"
)

// rawClient is a RaftTransport client that bypasses the sending side, to
// feed the receiving side what a well-behaved Transport never sends.
func rawClient(t *testing.T, addr string) transportpb.RaftTransportClient {
	t.Helper()
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	return transportpb.NewRaftTransportClient(conn)
}

func encode(t *testing.T, m *raftpb.Message) []byte {
	t.Helper()
	b, err := proto.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestStreamDropsBadMessages(t *testing.T) {
	n2 := newNode(t, 2, "127.0.0.1:0", newRecorder(), nil)
	stream, err := rawClient(t, n2.addr).Stream(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	batches := []*transportpb.Batch{
		{From: 1, FromAddress: "10.0.0.1:7000", Messages: [][]byte{
			{0xff, 0xff, 0xff},         // undecodable
			encode(t, appMsg(1, 3, 0)), // for another node
			encode(t, appMsg(5, 2, 0)), // not from the stream's sender
			encode(t, appMsg(1, 2, 0)), // good
		}},
		{From: 1, FromAddress: "10.0.0.9:7000", Messages: [][]byte{encode(t, appMsg(1, 2, 1))}},
	}
	for _, b := range batches {
		if err := stream.Send(b); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := stream.CloseAndRecv(); err != nil {
		t.Fatalf("CloseAndRecv: %v", err)
	}
	n2.rec.waitUntil(t, "two messages", func() bool { return len(n2.rec.delivered) >= 2 })
	checkInOrder(t, n2.rec.delivered, 1, 2, 0, 2)
	n2.rec.mu.Lock()
	defer n2.rec.mu.Unlock()
	if got := n2.rec.learned; len(got) != 1 || got[1] != "10.0.0.1:7000" {
		t.Fatalf("learned %v, want node 1 at the first batch's address only", got)
	}
}

func TestSnapshotReceiverRefusesBadStreams(t *testing.T) {
	n2 := newNode(t, 2, "127.0.0.1:0", newRecorder(), nil)
	client := rawClient(t, n2.addr)
	header := encode(t, withoutSnapshotData(snapMsg(1, 2, nil)))

	tests := []struct {
		name   string
		chunks []*transportpb.SnapshotChunk
		code   codes.Code
	}{
		{"over 1 GiB", []*transportpb.SnapshotChunk{
			{From: 1, Header: header, TotalBytes: MaxSnapshotBytes + 1},
		}, codes.ResourceExhausted},
		{"shorter than total_bytes", []*transportpb.SnapshotChunk{
			{From: 1, Header: header, TotalBytes: 10, Data: []byte("12345")},
		}, codes.InvalidArgument},
		{"longer than total_bytes", []*transportpb.SnapshotChunk{
			{From: 1, Header: header, TotalBytes: 4, Data: []byte("123")},
			{From: 1, Data: []byte("45")},
		}, codes.InvalidArgument},
		{"no header", []*transportpb.SnapshotChunk{
			{From: 1, TotalBytes: 1, Data: []byte("1")},
		}, codes.InvalidArgument},
		{"not a MsgSnap", []*transportpb.SnapshotChunk{
			{From: 1, Header: encode(t, appMsg(1, 2, 0))},
		}, codes.InvalidArgument},
		{"for another node", []*transportpb.SnapshotChunk{
			{From: 1, Header: encode(t, withoutSnapshotData(snapMsg(1, 3, nil)))},
		}, codes.FailedPrecondition},
		{"no chunks", nil, codes.InvalidArgument},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			stream, err := client.Snapshot(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			for _, c := range tt.chunks {
				if err := stream.Send(c); err != nil {
					break // refused early: CloseAndRecv has the status
				}
			}
			_, err = stream.CloseAndRecv()
			if got := status.Code(err); got != tt.code {
				t.Fatalf("status %v (%v), want %v", got, err, tt.code)
			}
		})
	}
	if got := len(n2.rec.from(1)); got != 0 {
		t.Fatalf("%d refused snapshots delivered", got)
	}
}
