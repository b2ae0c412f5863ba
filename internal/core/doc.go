// Package core is Blixard's deterministic node: an etcd raft RawNode, the
// replicated state machine (package state) and the request handling of the
// API, in one single-threaded value that takes events and returns effects.
//
// The core never starts a goroutine, reads a clock, draws from a global
// random source, or touches the disk or the network. Time arrives with Tick;
// everything the node must do to the outside world leaves in a Ready. Two
// drivers run it: the production runtime and the simulator. Both follow the
// same contract.
//
// # Events in
//
//   - Tick(now): one logical clock tick (the driver decides its length),
//     carrying the driver's wall-clock reading, which the core only copies
//     into the commands it proposes.
//   - Step(msg): a Raft message from a peer.
//   - Request(id, req): an API request; id is the driver's handle for the
//     caller, unique among the requests it has outstanding on this node.
//   - ReportUnreachable(peer) and ReportSnapshot(peer, ok): what happened to
//     messages the driver tried to send.
//
// # Effects out: the Ready loop
//
// When HasReady() is true the driver calls Ready() and then, in order:
//
//  1. Persists rd.Snapshot (replacing the whole log when
//     rd.SnapshotReplacesLog is set, else compacting behind it), rd.Entries,
//     rd.HardState and rd.ConfState as one synced write (when rd.MustSync)
//     — and stops the node if that write fails.
//  2. Only then sends rd.Messages. A MsgSnap must later be reported with
//     ReportSnapshot; a message that cannot be delivered may be reported with
//     ReportUnreachable.
//  3. Hands each of rd.Responses to the caller that made the request.
//  4. Calls Advance(). Advance applies the committed entries to the state
//     machine; the responses this produces leave in the next Ready. No other
//     event may reach the node between Ready and Advance.
//
// A sample loop:
//
//	for {
//		select {
//		case now := <-ticker.C:
//			n.Tick(now)
//		case m := <-peerMsgs:
//			n.Step(m)
//		case r := <-requests:
//			n.Request(r.id, r.req)
//		}
//		for n.HasReady() {
//			rd := n.Ready()
//			if err := store.Save(ctx, batchOf(rd)); err != nil {
//				return err // fail-stop
//			}
//			send(rd.Messages)
//			answer(rd.Responses)
//			if err := n.Advance(); err != nil {
//				return err
//			}
//		}
//	}
//
// # Observations
//
// For its metrics the driver may call TakeObservations after Advance: the
// proposals this node made that raft dropped or that it applied, and, on
// the leader, how long each workload it placed waited and which placements
// were reschedules. They are counted from the core's own times (Tick and
// the commands' timestamps); taking them or not changes nothing else.
//
// # What a request gets
//
// Every request gets exactly one Response, never silence:
//
//   - A write (create, start, stop, delete a VM; submit or cancel a task) on
//     the leader is proposed and answered once its entry is committed and
//     applied. A follower answers ERROR_CODE_NOT_LEADER with the leader's id
//     and address. A write with a client request id that the state already
//     remembers gets the remembered response and changes nothing; a second
//     copy of a write still in flight waits for the first.
//   - A proposal that raft drops answers ERROR_CODE_UNAVAILABLE (not applied,
//     safe to retry). One whose leader loses leadership, or that is not
//     applied within Config.RequestTimeoutTicks, answers
//     ERROR_CODE_OUTCOME_UNKNOWN: it may yet apply, so retry with the same
//     client request id.
//   - A read is answered on any node: with stale set, at once from this
//     node's state; otherwise linearizably, through a ReadIndex round,
//     once this node has applied up to the read index. A read that cannot
//     get a read index in time answers ERROR_CODE_UNAVAILABLE.
//
// # Storage and restarts
//
// The core's raft.Storage is an in-memory log that New fills from what the
// driver loaded from disk (Persisted). On restart the state machine is the
// snapshot's, and the committed entries after it are applied again as raft
// hands them back. Every Config.SnapshotEntries applied entries the core
// snapshots its state and compacts its in-memory log, keeping
// Config.TrailingEntries behind the snapshot for slow followers; a follower
// further behind catches up by snapshot.
//
// # Determinism
//
// Given the same Config, the same persisted data, the same events in the same
// order and the same randomness in etcd raft's election jitter, a Node
// produces the same Readys byte for byte. Everything the core iterates over
// on its way to an effect is sorted first.
package core
