package transport

import (
	"runtime"
	"testing"
	"time"

	"go.etcd.io/raft/v3/raftpb"
)

// waitGoroutines waits until the number of goroutines is at most want.
func waitGoroutines(t *testing.T, want int) {
	t.Helper()
	deadline := time.Now().Add(waitTimeout)
	ticker := time.NewTicker(10 * time.Millisecond)
	defer ticker.Stop()
	for {
		n := runtime.NumGoroutine()
		if n <= want {
			return
		}
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<20)
			t.Fatalf("%d goroutines, want at most %d:\n%s", n, want, buf[:runtime.Stack(buf, true)])
		}
		<-ticker.C
	}
}

// exercise runs some traffic of every kind through a cluster of three
// transports plus a dead and a silent peer, and returns the nodes.
func exercise(t *testing.T) []*testNode {
	t.Helper()
	nodes := []*testNode{
		newNode(t, 1, "127.0.0.1:0", newRecorder(), nil),
		newNode(t, 2, "127.0.0.1:0", newRecorder(), nil),
		newNode(t, 3, "127.0.0.1:0", newRecorder(), nil),
	}
	connect(nodes...)
	nodes[0].tr.SetPeer(4, deadAddress(t))
	nodes[0].tr.SetPeer(5, silentAddress(t))
	for seq := range uint64(100) {
		nodes[0].tr.Send([]*raftpb.Message{appMsg(1, 2, seq), appMsg(1, 3, seq), appMsg(1, 4, seq), appMsg(1, 5, seq)})
		nodes[1].tr.Send([]*raftpb.Message{appMsg(2, 1, seq)})
	}
	nodes[0].tr.Send([]*raftpb.Message{snapMsg(1, 3, make([]byte, 3<<20))})
	nodes[1].rec.waitUntil(t, "messages at node 2", func() bool { return len(nodes[1].rec.delivered) >= 100 })
	nodes[0].rec.waitUntil(t, "messages at node 1", func() bool { return len(nodes[0].rec.delivered) >= 100 })
	nodes[0].rec.waitUntil(t, "the snapshot's status", func() bool { return len(nodes[0].rec.snapshots) == 1 })
	nodes[0].rec.waitUntil(t, "Unreachable(4)", func() bool { return nodes[0].rec.unreachable[4] > 0 })
	return nodes
}

func TestCloseStopsEverything(t *testing.T) {
	// Warm up gRPC's process-wide goroutines before counting.
	t.Run("warmup", func(t *testing.T) { exercise(t) })
	before := runtime.NumGoroutine()

	t.Run("cluster", func(t *testing.T) {
		nodes := exercise(t)
		// A snapshot still streaming and messages still queued when Close comes.
		nodes[0].tr.Send([]*raftpb.Message{snapMsg(1, 2, make([]byte, 8<<20)), appMsg(1, 2, 1000)})
		for _, n := range nodes {
			if err := n.tr.Close(); err != nil {
				t.Fatalf("Close: %v", err)
			}
			if err := n.tr.Close(); err != nil { // idempotent
				t.Fatalf("second Close: %v", err)
			}
		}
		// After Close: no callbacks, no goroutines, nothing sent.
		counts := make([]int, len(nodes))
		for i, n := range nodes {
			n.rec.mu.Lock()
			counts[i] = len(n.rec.delivered) + len(n.rec.snapshots) + len(n.rec.unreachable) + len(n.rec.learned)
			n.rec.mu.Unlock()
			n.tr.Send([]*raftpb.Message{appMsg(n.id, 9, 0), snapMsg(n.id, 2, nil)})
			n.tr.SetPeer(9, deadAddress(t))
		}
		for i, n := range nodes {
			n.rec.mu.Lock()
			after := len(n.rec.delivered) + len(n.rec.snapshots) + len(n.rec.unreachable) + len(n.rec.learned)
			n.rec.mu.Unlock()
			if after != counts[i] {
				t.Fatalf("node %d: a callback ran after Close", n.id)
			}
		}

		// Close ended the handlers of peers' long-lived streams, so a
		// graceful stop of the servers does not wait for the peers.
		stopped := make(chan struct{})
		go func() {
			for _, n := range nodes {
				n.srv.GracefulStop()
			}
			close(stopped)
		}()
		waitClosed(t, stopped, "GracefulStop after Close")
	})

	waitGoroutines(t, before)
}

func TestRemovePeerStopsItsSender(t *testing.T) {
	t.Run("warmup", func(t *testing.T) { exercise(t) })
	n1 := newNode(t, 1, "127.0.0.1:0", newRecorder(), nil)
	before := runtime.NumGoroutine()

	n2 := newNode(t, 2, "127.0.0.1:0", newRecorder(), nil)
	n1.tr.SetPeer(2, n2.addr)
	n1.tr.SetPeer(3, deadAddress(t))
	n1.tr.Send([]*raftpb.Message{appMsg(1, 2, 0), appMsg(1, 3, 0)})
	n2.rec.waitUntil(t, "a message at node 2", func() bool { return len(n2.rec.delivered) == 1 })
	n1.tr.RemovePeer(2)
	n1.tr.RemovePeer(3)
	n1.tr.RemovePeer(3) // no such peer any more: nothing happens
	n2.stop()

	waitGoroutines(t, before)
}

func TestCloseEndsIncomingStreams(t *testing.T) {
	n1 := newNode(t, 1, "127.0.0.1:0", newRecorder(), nil)
	n2 := newNode(t, 2, "127.0.0.1:0", newRecorder(), nil)
	connect(n1, n2)
	n1.tr.Send([]*raftpb.Message{appMsg(1, 2, 0)})
	n2.rec.waitUntil(t, "node 1's stream at node 2", func() bool { return len(n2.rec.delivered) == 1 })

	// Node 1 keeps its stream open; node 2's Close must still end the
	// handler serving it, so that the server can stop gracefully.
	stopped := make(chan struct{})
	go func() {
		_ = n2.tr.Close()
		n2.srv.GracefulStop()
		close(stopped)
	}()
	waitClosed(t, stopped, "Close and GracefulStop with a peer's stream open")
	n1.rec.waitUntil(t, "Unreachable(2) once node 2 is closed", func() bool { return n1.rec.unreachable[2] > 0 })
}
