// Package store is a node's durable Raft storage: its hard state, its
// membership (ConfState), its latest snapshot and its log, in a Pebble
// database opened on an injected vfs.FS (vfs.Default in production; a
// crashable vfs.MemFS in tests and the simulator).
//
// The store sits outside the deterministic core. The core's raft.Storage is
// an in-memory log; the driver fills it from the store once, when the node
// opens, and from then on only writes: nothing reads Pebble after Open.
//
// # The driver's duties
//
//  1. Open the store once, before the core exists. Open returns a Loaded:
//     the last hard state, the membership, the latest snapshot (index 0
//     when there is none) and the entries after it, contiguous from the
//     snapshot's index + 1. Load them into the core's in-memory log in that
//     order (snapshot, hard state, entries) and start Raft with Applied set
//     to the snapshot's index: the state machine is rebuilt from the
//     snapshot and the log after it. Loaded.Empty means a new node.
//  2. For each Ready with something to persist, call Save with its hard
//     state, entries and snapshot — a snapshot from the leader with
//     ReplaceLog set — and wait for it to return before sending that
//     Ready's messages or calling Advance. Save writes the whole Batch as
//     one Pebble batch and syncs it (pebble.Sync): after Save returns the
//     batch survives a crash, and a crash during Save leaves all of it or
//     none.
//  3. When the core snapshots its own applied state, Save the snapshot
//     with ReplaceLog false. The store then deletes the entries with index
//     < snapshot index - TrailingEntries (5,000 by default); Open returns
//     only the entries after the snapshot, but the trailing ones stay on
//     disk for inspection.
//  4. Stop the node when Save returns an error. The store is fail-stop: the
//     first error — a rejected batch, a failed write or fsync, a cancelled
//     context — is returned by that Save and every later one. What a
//     failed fsync left on disk is unknown, so there is no retry; the next
//     Open finds out what survived.
//
// A sample loop, with rn a *raft.RawNode over the in-memory log ms:
//
//	st, l, err := store.Open(ctx, store.Options{FS: vfs.Default, Dir: dir})
//	// ms.ApplySnapshot(l.Snapshot) if its index is not 0,
//	// ms.SetHardState(l.HardState), ms.Append(l.Entries)
//	for {
//		rd := rn.Ready()
//		b := store.Batch{HardState: rd.HardState, Entries: rd.Entries}
//		if !raft.IsEmptySnap(rd.Snapshot) {
//			b.Snapshot, b.ReplaceLog = rd.Snapshot, true
//		}
//		if err := st.Save(ctx, b); err != nil {
//			return err // stop the node
//		}
//		// append to ms, send rd.Messages, apply rd.CommittedEntries
//		rn.Advance(rd)
//	}
//
// # What Save checks
//
// Save checks a Batch against the Raft log invariants before writing it
// and rejects one that breaks them (ErrInvalidBatch), writing nothing:
// entries have contiguous indexes and non-decreasing, non-zero terms, and
// attach to the log without a gap (a log without a snapshot starts at
// index 1); no entry at or below the
// commit index or the snapshot index is overwritten; the hard state's term
// and commit never go back, and snapshot index <= commit <= last index; a
// snapshot is newer than the stored one; a local snapshot lies within the
// log and at or below the commit index. Inside the batch, writes go in
// this order: the snapshot and its membership, the log deletion that the
// snapshot calls for, the entries (an entry at index i first deletes every
// stored entry from i on), the hard state, then Batch.ConfState, which
// thus wins over the snapshot's membership.
//
// # What Open checks
//
// Open never panics on bad data, and a damaged store is an error that
// names the directory and the file or key where the damage was found. It
// checks:
//
//   - Pebble's MANIFEST and WAL files, before Pebble opens them. Pebble
//     reads each up to its first unreadable record and takes the rest for
//     the torn tail of a crash, so damage in the middle silently rolls the
//     database back. The store refuses a MANIFEST in which a readable
//     record follows an unreadable one, and a WAL in which a later record
//     says the log was synced past an unreadable one.
//   - Every sstable block it reads (Pebble's checksums), and every value it
//     decodes (its key and the directory are named).
//   - That the log is contiguous from the snapshot (from index 1 with no
//     snapshot), terms never decrease, and snapshot index <= commit <=
//     last index.
//
// An existing store is opened read-only and checked whole first, then
// opened for writing: a read-write open makes Pebble replay its WAL into
// new files and delete files it takes for obsolete, which would destroy
// the evidence of damage, and after a rolled-back MANIFEST the data too.
//
// Some damage cannot be told from a crash, and Open accepts what Pebble
// recovers: a WAL or MANIFEST truncated at a record boundary, or damaged in
// its last record — nothing later vouches for it — loses that tail, just
// as a crash before the sync would. An error about the state Pebble read
// then names the MANIFEST it read and says whether it ended in an
// unreadable record.
//
// # Key layout
//
//	m/format     "blixard-raft-store-v1", written when the store is created
//	m/hardstate  raftpb.HardState
//	m/confstate  raftpb.ConfState
//	m/snapshot   raftpb.Snapshot, metadata and data: the latest one only
//	e/<index>    raftpb.Entry; the index is 8 bytes big-endian, so that
//	             key order is log order
//
// Values are protobuf, marshalled deterministically: the same Batch gives
// the same bytes. Pebble's files are not deterministic (its flushes and
// compactions run on goroutines of its own); their contents are.
//
// # Limits
//
// A snapshot is one value, written in one batch: Pebble bounds a batch at
// 4 GiB, and Open holds the snapshot and every entry after it in memory,
// which the core keeps bounded by snapshotting every N applied entries.
// Pebble's Fatalf, on the goroutine of Open or Save, becomes an error; on
// one of Pebble's own goroutines (a flush or compaction that cannot go
// on) it panics and ends the process, as Pebble intends.
package store
