package transport

import (
	"bytes"
	"math/rand/v2"
	"testing"

	"go.etcd.io/raft/v3/raftpb"
	"google.golang.org/protobuf/proto"
)

// snapMsg is a MsgSnap from -> to carrying data.
func snapMsg(from, to uint64, data []byte) *raftpb.Message {
	return &raftpb.Message{
		Type: raftpb.MessageType_MsgSnap.Enum(),
		From: proto.Uint64(from),
		To:   proto.Uint64(to),
		Term: proto.Uint64(5),
		Snapshot: &raftpb.Snapshot{
			Data: data,
			Metadata: &raftpb.SnapshotMetadata{
				Index:     proto.Uint64(1234),
				Term:      proto.Uint64(4),
				ConfState: &raftpb.ConfState{Voters: []uint64{1, 2, 3}, Learners: []uint64{4}},
			},
		},
	}
}

func TestLargeSnapshotArrivesIntact(t *testing.T) {
	mod := func(c *Config) { c.SnapshotChunkBytes = 64 << 10 }
	n1 := newNode(t, 1, "127.0.0.1:0", newRecorder(), mod)
	n2 := newNode(t, 2, "127.0.0.1:0", newRecorder(), mod)
	connect(n1, n2)

	data := make([]byte, 5<<20+123) // not a whole number of chunks
	rng := rand.New(rand.NewPCG(1, 2))
	for i := range data {
		data[i] = byte(rng.Uint32())
	}
	sent := snapMsg(1, 2, data)
	original := proto.Clone(sent)
	n1.tr.Send([]*raftpb.Message{appMsg(1, 2, 0), sent, appMsg(1, 2, 1)})

	n1.rec.waitUntil(t, "SnapshotStatus", func() bool { return len(n1.rec.snapshots) > 0 })
	if got := n1.rec.snapshots; len(got) != 1 || got[0] != (snapshotResult{peer: 2, ok: true}) {
		t.Fatalf("SnapshotStatus reports %v, want [{2 true}]", got)
	}
	n2.rec.waitUntil(t, "three messages", func() bool { return len(n2.rec.delivered) >= 3 })
	var snap *raftpb.Message
	for _, m := range n2.rec.from(1) {
		if m.GetType() == raftpb.MessageType_MsgSnap {
			snap = m
		}
	}
	if snap == nil {
		t.Fatal("no MsgSnap delivered")
	}
	if !bytes.Equal(snap.GetSnapshot().GetData(), data) {
		t.Fatalf("snapshot data differs: %d bytes, want %d", len(snap.GetSnapshot().GetData()), len(data))
	}
	if !proto.Equal(snap, original) {
		t.Fatalf("delivered MsgSnap differs from the one sent (data aside: %v)", proto.Equal(
			withoutSnapshotData(snap), withoutSnapshotData(original.(*raftpb.Message))))
	}
	if !proto.Equal(sent, original) {
		t.Fatal("Send modified the caller's MsgSnap")
	}
}

func TestEmptySnapshot(t *testing.T) {
	n1 := newNode(t, 1, "127.0.0.1:0", newRecorder(), nil)
	n2 := newNode(t, 2, "127.0.0.1:0", newRecorder(), nil)
	connect(n1, n2)

	n1.tr.Send([]*raftpb.Message{snapMsg(1, 2, nil)})
	n1.rec.waitUntil(t, "SnapshotStatus", func() bool { return len(n1.rec.snapshots) > 0 })
	if got := n1.rec.snapshots[0]; !got.ok {
		t.Fatalf("empty snapshot failed: %v", got)
	}
	n2.rec.waitUntil(t, "the MsgSnap", func() bool { return len(n2.rec.delivered) == 1 })
}

func TestOneSnapshotInFlightPerPeer(t *testing.T) {
	n1 := newNode(t, 1, "127.0.0.1:0", newRecorder(), nil)
	rec2 := newRecorder()
	// Node 2 holds the first snapshot in Deliver until released, so it is in
	// flight (no Ack yet) while the second is sent.
	arrived, release := make(chan struct{}), make(chan struct{})
	rec2.beforeDeliver = func(m *raftpb.Message) {
		if m.GetType() == raftpb.MessageType_MsgSnap && m.GetSnapshot().GetMetadata().GetIndex() == 1234 {
			close(arrived)
			<-release
		}
	}
	n2 := newNode(t, 2, "127.0.0.1:0", rec2, nil)
	connect(n1, n2)

	n1.tr.Send([]*raftpb.Message{snapMsg(1, 2, []byte("first"))})
	waitClosed(t, arrived, "the first snapshot at node 2")
	second := snapMsg(1, 2, []byte("second"))
	second.Snapshot.Metadata.Index = proto.Uint64(2000)
	n1.tr.Send([]*raftpb.Message{second})
	if got := n1.rec.snapshots; len(got) != 1 || got[0] != (snapshotResult{peer: 2, ok: false}) {
		t.Fatalf("second snapshot in flight: SnapshotStatus %v, want [{2 false}] from Send", got)
	}
	close(release)
	n1.rec.waitUntil(t, "the first snapshot's status", func() bool { return len(n1.rec.snapshots) == 2 })
	if got := n1.rec.snapshots[1]; got != (snapshotResult{peer: 2, ok: true}) {
		t.Fatalf("first snapshot: SnapshotStatus %v, want {2 true}", got)
	}

	// Once the first is done, another may go.
	n1.tr.Send([]*raftpb.Message{second})
	n1.rec.waitUntil(t, "the third snapshot's status", func() bool { return len(n1.rec.snapshots) == 3 })
	if got := n1.rec.snapshots[2]; got != (snapshotResult{peer: 2, ok: true}) {
		t.Fatalf("third snapshot: SnapshotStatus %v, want {2 true}", got)
	}
}

func TestSnapshotToDeadPeerFails(t *testing.T) {
	n1 := newNode(t, 1, "127.0.0.1:0", newRecorder(), nil)
	n1.tr.SetPeer(2, deadAddress(t))
	n1.tr.Send([]*raftpb.Message{snapMsg(1, 2, []byte("data"))})
	n1.rec.waitUntil(t, "SnapshotStatus", func() bool { return len(n1.rec.snapshots) > 0 })
	if got := n1.rec.snapshots[0]; got != (snapshotResult{peer: 2, ok: false}) {
		t.Fatalf("SnapshotStatus %v, want {2 false}", got)
	}
}
