package transport

import (
	"testing"

	"go.etcd.io/raft/v3/raftpb"
	"google.golang.org/protobuf/proto"
)

func TestTwoTransportsExchangeInOrder(t *testing.T) {
	n1 := newNode(t, 1, "127.0.0.1:0", newRecorder(), nil)
	n2 := newNode(t, 2, "127.0.0.1:0", newRecorder(), nil)
	connect(n1, n2)

	const count = 2000
	for seq := range uint64(count) {
		// Mix single sends with multi-message sends.
		n1.tr.Send([]*raftpb.Message{appMsg(1, 2, seq)})
		if seq%2 == 0 {
			n2.tr.Send([]*raftpb.Message{appMsg(2, 1, seq), appMsg(2, 1, seq+1)})
		}
	}

	n2.rec.waitUntil(t, "2000 messages at node 2", func() bool { return len(n2.rec.delivered) >= count })
	n1.rec.waitUntil(t, "2000 messages at node 1", func() bool { return len(n1.rec.delivered) >= count })
	checkInOrder(t, n2.rec.from(1), 1, 2, 0, count)
	checkInOrder(t, n1.rec.from(2), 2, 1, 0, count)

	n2.rec.waitUntil(t, "node 2 learns node 1's address", func() bool { return n2.rec.learned[1] == n1.addr })
	n1.rec.waitUntil(t, "node 1 learns node 2's address", func() bool { return n1.rec.learned[2] == n2.addr })
	if u := n1.rec.unreachableCount(2) + n2.rec.unreachableCount(1); u != 0 {
		t.Fatalf("Unreachable reported %d times on a healthy network", u)
	}
}

func TestThreeTransportsExchangeInOrder(t *testing.T) {
	nodes := []*testNode{
		newNode(t, 1, "127.0.0.1:0", newRecorder(), nil),
		newNode(t, 2, "127.0.0.1:0", newRecorder(), nil),
		newNode(t, 3, "127.0.0.1:0", newRecorder(), nil),
	}
	connect(nodes...)

	const count = 500
	for seq := range uint64(count) {
		for _, from := range nodes {
			var batch []*raftpb.Message
			for _, to := range nodes {
				if to != from {
					batch = append(batch, appMsg(from.id, to.id, seq))
				}
			}
			from.tr.Send(batch)
		}
	}

	for _, to := range nodes {
		to.rec.waitUntil(t, "all messages delivered", func() bool { return len(to.rec.delivered) >= 2*count })
		for _, from := range nodes {
			if from != to {
				checkInOrder(t, to.rec.from(from.id), from.id, to.id, 0, count)
			}
		}
	}
}

func TestBatchesRespectMaxBatchBytes(t *testing.T) {
	// Batches of at most 2 KiB: about three of these messages each, so the
	// queue is split into many batches, and an oversized message is dropped.
	mod := func(c *Config) { c.MaxBatchBytes = 2 << 10 }
	n1 := newNode(t, 1, "127.0.0.1:0", newRecorder(), mod)
	n2 := newNode(t, 2, "127.0.0.1:0", newRecorder(), mod)
	connect(n1, n2)

	big := appMsg(1, 2, 999)
	big.Entries[0].Data = make([]byte, 4<<10)
	var msgs []*raftpb.Message
	for seq := range uint64(200) {
		m := appMsg(1, 2, seq)
		m.Context = make([]byte, 500)
		msgs = append(msgs, m)
		if seq == 100 {
			msgs = append(msgs, big)
		}
	}
	n1.tr.Send(msgs)

	n2.rec.waitUntil(t, "200 messages", func() bool { return len(n2.rec.delivered) >= 200 })
	n1.rec.waitUntil(t, "the oversized message reported", func() bool { return n1.rec.unreachable[2] >= 1 })
	got := n2.rec.from(1)
	if len(got) != 200 {
		t.Fatalf("got %d messages, want 200 (the oversized one dropped)", len(got))
	}
	for i, m := range got {
		if !proto.Equal(m, msgs[i+i/101]) { // skip big, at position 101
			t.Fatalf("message %d: got index %d", i, m.GetIndex())
		}
	}
}

func TestUnknownPeerIsUnreachable(t *testing.T) {
	n1 := newNode(t, 1, "127.0.0.1:0", newRecorder(), nil)
	n1.tr.Send([]*raftpb.Message{appMsg(1, 7, 0), appMsg(1, 7, 1)})
	if got := n1.rec.unreachableCount(7); got != 1 {
		t.Fatalf("Unreachable(7) reported %d times by Send, want once", got)
	}
	n1.tr.SetPeer(7, deadAddress(t))
	n1.tr.RemovePeer(7)
	n1.tr.Send([]*raftpb.Message{appMsg(1, 7, 2)})
	if got := n1.rec.unreachableCount(7); got < 2 {
		t.Fatalf("Unreachable(7) after RemovePeer: %d reports, want at least 2", got)
	}
}

func TestAddressChangeReconnects(t *testing.T) {
	n1 := newNode(t, 1, "127.0.0.1:0", newRecorder(), nil)
	n2 := newNode(t, 2, "127.0.0.1:0", newRecorder(), nil)
	n3 := newNode(t, 3, "127.0.0.1:0", newRecorder(), nil)

	// Node 1 believes node 2 lives at node 3's address: node 3 drops what
	// is addressed to node 2.
	n1.tr.SetPeer(2, n3.addr)
	n1.tr.Send([]*raftpb.Message{appMsg(1, 2, 0)})
	n3.rec.waitUntil(t, "node 3 learns node 1 from its stream", func() bool { return n3.rec.learned[1] == n1.addr })
	if len(n3.rec.from(1)) != 0 {
		t.Fatal("node 3 delivered a message addressed to node 2")
	}

	n1.tr.SetPeer(2, n2.addr)
	n1.tr.SetPeer(2, n2.addr) // idempotent
	seq := uint64(1)
	eventually(t, "a message at node 2 after the address change",
		func() { n1.tr.Send([]*raftpb.Message{appMsg(1, 2, seq)}); seq++ },
		func() bool { return n2.rec.countFrom(1) > 0 })
	if len(n3.rec.from(1)) != 0 {
		t.Fatal("node 3 delivered a message addressed to node 2")
	}
}
