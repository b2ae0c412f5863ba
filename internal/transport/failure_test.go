package transport

import (
	"testing"

	"go.etcd.io/raft/v3/raftpb"
)

func TestDeadPeerDoesNotHoldUpLivePeer(t *testing.T) {
	n1 := newNode(t, 1, "127.0.0.1:0", newRecorder(), nil)
	n2 := newNode(t, 2, "127.0.0.1:0", newRecorder(), nil)
	connect(n1, n2)
	n1.tr.SetPeer(3, deadAddress(t))   // connection refused
	n1.tr.SetPeer(4, silentAddress(t)) // connects, then never answers

	const count = 1000
	for seq := range uint64(count) {
		n1.tr.Send([]*raftpb.Message{appMsg(1, 3, seq), appMsg(1, 2, seq), appMsg(1, 4, seq)})
	}
	n2.rec.waitUntil(t, "all messages at the live peer", func() bool { return len(n2.rec.delivered) >= count })
	checkInOrder(t, n2.rec.from(1), 1, 2, 0, count)
	n1.rec.waitUntil(t, "Unreachable(3)", func() bool { return n1.rec.unreachable[3] > 0 })
	if got := n1.rec.unreachableCount(2); got != 0 {
		t.Fatalf("Unreachable(2) reported %d times for the live peer", got)
	}
}

func TestPeerRestartReconnects(t *testing.T) {
	n1 := newNode(t, 1, "127.0.0.1:0", newRecorder(), nil)
	n2 := newNode(t, 2, "127.0.0.1:0", newRecorder(), nil)
	connect(n1, n2)

	n1.tr.Send([]*raftpb.Message{appMsg(1, 2, 0)})
	n2.rec.waitUntil(t, "the first message", func() bool { return len(n2.rec.delivered) == 1 })

	// Node 2 restarts on the same port, keeping its recorder.
	n2.stop()
	n1.rec.waitUntil(t, "Unreachable(2) once node 2 is gone", func() bool { return n1.rec.unreachable[2] > 0 })
	n2 = newNode(t, 2, n2.addr, n2.rec, nil)

	// Resend, as raft would, until the new node 2 has something.
	seq := uint64(1)
	eventually(t, "a message at the restarted node 2",
		func() { n1.tr.Send([]*raftpb.Message{appMsg(1, 2, seq)}); seq++ },
		func() bool { return n2.rec.countFrom(1) > 1 })

	// The stream is up again: later messages all arrive, in order.
	const count = 200
	before := n2.rec.countFrom(1)
	for i := range uint64(count) {
		n1.tr.Send([]*raftpb.Message{appMsg(1, 2, 1000+i)})
	}
	n2.rec.waitUntil(t, "the later messages", func() bool { return len(n2.rec.delivered) >= before+count })
	got := n2.rec.from(1)
	checkInOrder(t, got[len(got)-count:], 1, 2, 1000, count)
}

func TestQueueOverflowDropsAndReports(t *testing.T) {
	mod := func(c *Config) { c.QueueSize = 8 }
	n1 := newNode(t, 1, "127.0.0.1:0", newRecorder(), mod)
	// The dial to a silent peer hangs in the handshake, so the sender takes
	// nothing from the queue: the first 8 messages fill it, the rest are
	// dropped, one Unreachable per Send call.
	n1.tr.SetPeer(2, silentAddress(t))
	for seq := range uint64(20) {
		n1.tr.Send([]*raftpb.Message{appMsg(1, 2, seq)})
	}
	if got := n1.rec.unreachableCount(2); got != 12 {
		t.Fatalf("Unreachable(2) reported %d times, want 12 (20 sent, queue of 8)", got)
	}
	// One call overflowing by many reports once.
	var msgs []*raftpb.Message
	for seq := range uint64(10) {
		msgs = append(msgs, appMsg(1, 2, 100+seq))
	}
	n1.tr.Send(msgs)
	if got := n1.rec.unreachableCount(2); got != 13 {
		t.Fatalf("Unreachable(2) reported %d times, want 13", got)
	}
}
