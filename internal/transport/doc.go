// Package transport carries Raft messages between the nodes of a cluster
// over gRPC, and snapshots in chunks. It owns the peer connections and
// nothing else: it does not interpret messages beyond their addressing, and
// it never touches core state; the runtime drives it and feeds what it
// receives to the core.
//
// # Sending
//
// Each peer known through SetPeer has a bounded queue (Config.QueueSize)
// and one sender goroutine holding a long-lived client stream (the Stream
// RPC of transportpb.RaftTransport). The sender batches whatever is queued,
// up to Config.MaxBatchBytes encoded, into one Batch per stream Send, so
// messages to one peer arrive in the order they were given to Send while
// the stream stays up. Send never blocks; a message is dropped and
// reported through Config.Unreachable when:
//
//  1. its peer is unknown (not set, or removed);
//  2. its peer's queue is full (a slow or dead peer never holds up the
//     caller or the other peers);
//  3. it was in the batch being sent when the stream broke, or was queued
//     while the sender waits to reconnect;
//  4. it is larger than MaxBatchBytes on its own (logged as an error: raft's
//     MaxSizePerMsg is set too high).
//
// Raft tolerates every such loss: ReportUnreachable moves the follower to
// probing and raft resends. A broken stream is reopened on a new connection
// after a backoff that doubles from Config.BackoffMin to Config.BackoffMax,
// with jitter. A Send that blocks for 10s (the peer stopped reading) breaks
// the stream too.
//
// A MsgSnap goes through the snapshot path instead of the queue: its own
// goroutine and connection, at most one in flight per peer (a second is
// refused at once with SnapshotStatus(peer, false)). It sends the message
// without its data as a header, then the data in Config.SnapshotChunkBytes
// chunks, waits up to 5 minutes for the receiver's Ack, and reports
// Config.SnapshotStatus(peer, ok).
//
// # Receiving
//
// Register installs the service on the node's gRPC server. The Stream
// handler decodes each message of each batch and drops (logging once per
// stream, a warning once per sender until one of its streams is clean)
// any that does not decode, does not come from the stream's
// sender, or that CheckMessage refuses: addressed to another node, or one
// of the malformed messages on which etcd raft, trusting its peers, would
// panic. It calls Config.Learned with the sender's advertised address from
// the first batch of each stream, and Config.Deliver for every message
// kept. The Snapshot handler checks the header the same way, reassembles a
// snapshot of at most MaxSnapshotBytes (1 GiB), checks that the data's
// length matches the announced total, calls Deliver with the whole MsgSnap
// and only then answers Ack.
//
// # The caller's duties
//
//  1. Make Deliver, Unreachable, SnapshotStatus and Learned quick and
//     non-blocking: Deliver may drop when the node's inbox is full. They run
//     on the transport's goroutines, concurrently with each other, and
//     Unreachable and SnapshotStatus may also run inside Send, on the
//     caller's goroutine.
//  2. Call Send only with messages whose Ready has been persisted, and do
//     not modify them afterwards: they are encoded later, on the peer's
//     goroutine.
//  3. Keep peers current with SetPeer and RemovePeer as membership and
//     addresses change (SetPeer is idempotent).
//  4. Give the gRPC server a MaxRecvMsgSize of at least MaxBatchBytes (and
//     SnapshotChunkBytes plus a header). gRPC's default of 4 MiB matches
//     the defaults here.
//  5. Call Close before stopping the gRPC server: Close ends the handlers
//     that are running, so that GracefulStop does not wait for peers'
//     long-lived streams. After Close returns no callback runs again.
//
// A sketch of the runtime's wiring:
//
//	tr, err := transport.New(transport.Config{
//		ID: id, Address: addr,
//		Deliver:        func(m *raftpb.Message) { inbox.TryPut(m) },
//		Unreachable:    func(p uint64) { events.TryPut(unreachable(p)) },
//		SnapshotStatus: func(p uint64, ok bool) { events.TryPut(snapshotStatus(p, ok)) },
//		Learned:        func(p uint64, a string) { events.TryPut(learned(p, a)) },
//	})
//	tr.Register(grpcServer)
//	for id, addr := range peers {
//		tr.SetPeer(id, addr)
//	}
//	// in the loop that owns the core, after persisting each Ready:
//	tr.Send(ready.Messages)
//	// on shutdown:
//	tr.Close()
//	grpcServer.GracefulStop()
package transport
