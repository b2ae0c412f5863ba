package store

import (
	"context"
	"fmt"

	"github.com/cockroachdb/pebble/v2"
	"go.etcd.io/raft/v3/raftpb"
	"google.golang.org/protobuf/proto"
)

// Batch is what one Ready asks the store to persist.
type Batch struct {
	// HardState replaces the stored hard state; nil or empty: unchanged.
	HardState *raftpb.HardState
	// ConfState replaces the stored membership; nil: unchanged (a snapshot
	// brings its own, stored first, so a ConfState here wins over it).
	ConfState *raftpb.ConfState
	// Snapshot replaces the stored snapshot; nil or index 0: none.
	Snapshot *raftpb.Snapshot
	// ReplaceLog says the snapshot came from the leader and replaces the
	// whole log: every stored entry is deleted. False: the node took the
	// snapshot of its own applied state, and only entries with index <
	// snapshot index - TrailingEntries are deleted.
	ReplaceLog bool
	// Entries are appended. An entry at index i first deletes every stored
	// entry with index >= i (Raft's truncation of a conflicting suffix).
	Entries []*raftpb.Entry
	// NoSync writes the batch without waiting for the disk: for a Ready
	// that raft says need not be synced (MustSync false: only the commit
	// index moved). A crash may lose it; raft learns the commit index again.
	NoSync bool
}

// marshalOptions marshals everything the store writes, deterministically so
// that the same Batch gives the same bytes.
var marshalOptions = proto.MarshalOptions{Deterministic: true}

// Save persists b as one Pebble batch, synced (pebble.Sync) before Save
// returns unless b.NoSync. It first checks b against the stored log (see ErrInvalidBatch)
// and writes nothing if b breaks an invariant.
//
// Any error — a rejected batch, a write or sync that failed, a cancelled
// ctx — fails the store: this and every later Save return the same error,
// and the driver must stop the node. A failed fsync cannot be retried
// safely, since what reached the disk is unknown.
func (s *Store) Save(ctx context.Context, b Batch) (err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.err != nil {
		return s.err
	}
	defer func() {
		if r := recover(); r != nil {
			f, ok := r.(pebbleFatal)
			if !ok {
				panic(r)
			}
			err = fmt.Errorf("store %q: save: %w", s.dir, f)
		}
		if err != nil {
			s.err = err
		}
	}()
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("store %q: save: %w", s.dir, err)
	}
	pb, p, err := s.prepare(&b)
	if err != nil {
		return err
	}
	if pb == nil {
		return nil // nothing to write
	}
	defer pb.Close()
	opts := pebble.Sync
	if b.NoSync {
		opts = pebble.NoSync
	}
	if err := s.db.Apply(pb, opts); err != nil {
		return fmt.Errorf("store %q: save: %w", s.dir, err)
	}
	s.sum = p.next
	return nil
}

// prepare validates b and builds its Pebble batch, without writing it. It
// returns a nil batch when b holds nothing to write.
func (s *Store) prepare(b *Batch) (*pebble.Batch, plan, error) {
	p, err := s.sum.apply(b, s.trailing)
	if err != nil {
		return nil, plan{}, fmt.Errorf("store %q: save rejected, nothing written: %w", s.dir, err)
	}
	if !b.hasSnapshot() && len(b.Entries) == 0 && isEmptyHardState(b.HardState) && b.ConfState == nil {
		return nil, p, nil
	}
	pb := s.db.NewBatch()
	if err := s.build(pb, b, p); err != nil {
		_ = pb.Close()
		return nil, plan{}, fmt.Errorf("store %q: save: %w", s.dir, err)
	}
	return pb, p, nil
}

// build writes b into pb in the documented order: snapshot and its
// membership, log deletion, entries, hard state, membership. Later writes
// to a key in one batch win over earlier ones.
func (s *Store) build(pb *pebble.Batch, b *Batch, p plan) error {
	var buf []byte
	set := func(key []byte, m proto.Message) error {
		var err error
		buf, err = marshalOptions.MarshalAppend(buf[:0], m)
		if err != nil {
			return fmt.Errorf("marshal key %q: %w", key, err)
		}
		return pb.Set(key, buf, nil)
	}
	if b.hasSnapshot() {
		if err := set(keySnapshot, b.Snapshot); err != nil {
			return err
		}
		cs := b.Snapshot.GetMetadata().GetConfState()
		if cs == nil {
			cs = &raftpb.ConfState{}
		}
		if err := set(keyConfState, cs); err != nil {
			return err
		}
		if b.ReplaceLog {
			if err := pb.DeleteRange(entryPrefix, entryPrefixEnd, nil); err != nil {
				return err
			}
		}
	}
	if p.compactTo != 0 {
		if err := pb.DeleteRange(entryKey(p.compactFrom), entryKey(p.compactTo), nil); err != nil {
			return err
		}
	}
	if p.truncateFrom != 0 {
		// Only when the append overwrites: a range tombstone per append would
		// pile up overlapping tombstones, [i, end) over [j, end), for nothing.
		if err := pb.DeleteRange(entryKey(p.truncateFrom), entryPrefixEnd, nil); err != nil {
			return err
		}
	}
	for _, e := range b.Entries {
		if err := set(entryKey(e.GetIndex()), e); err != nil {
			return err
		}
	}
	if !isEmptyHardState(b.HardState) {
		if err := set(keyHardState, b.HardState); err != nil {
			return err
		}
	}
	if b.ConfState != nil {
		if err := set(keyConfState, b.ConfState); err != nil {
			return err
		}
	}
	return nil
}
