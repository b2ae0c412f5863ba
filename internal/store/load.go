package store

import (
	"context"
	"fmt"

	"github.com/cockroachdb/pebble/v2"
	"go.etcd.io/raft/v3/raftpb"
	"google.golang.org/protobuf/proto"
)

// Loaded is everything the store holds, as Open returns it for the driver
// to load into the core's in-memory log.
type Loaded struct {
	// HardState is the last saved hard state; never nil (empty if none).
	HardState *raftpb.HardState
	// ConfState is the last saved membership; never nil (empty if none).
	ConfState *raftpb.ConfState
	// Snapshot is the latest snapshot; never nil, and with a non-nil
	// Metadata whose index is 0 when there is none.
	Snapshot *raftpb.Snapshot
	// Entries are the entries after the snapshot: contiguous, the first at
	// Snapshot index + 1. Trailing entries at or below the snapshot index,
	// kept on disk, are not returned.
	Entries []*raftpb.Entry
}

// Empty reports whether nothing was ever persisted: no hard state, no
// membership, no snapshot, no entries. A node that opens an empty store is
// a new node.
func (l *Loaded) Empty() bool {
	cs := l.ConfState
	return isEmptyHardState(l.HardState) &&
		len(cs.GetVoters()) == 0 && len(cs.GetLearners()) == 0 &&
		len(cs.GetVotersOutgoing()) == 0 && len(cs.GetLearnersNext()) == 0 &&
		l.Snapshot.GetMetadata().GetIndex() == 0 &&
		len(l.Entries) == 0
}

// openCtxCheckEvery is how many entries Open reads between checks of its
// context.
const openCtxCheckEvery = 1024

// load reads the whole store and checks it.
func (s *Store) load(ctx context.Context) (*Loaded, summary, error) {
	var sum summary
	l := &Loaded{
		HardState: &raftpb.HardState{},
		ConfState: &raftpb.ConfState{},
		Snapshot:  &raftpb.Snapshot{Metadata: &raftpb.SnapshotMetadata{ConfState: &raftpb.ConfState{}}},
	}
	if ok, err := s.loadValue(keyHardState, l.HardState); err != nil {
		return nil, sum, err
	} else if ok {
		sum.term, sum.vote, sum.commit = l.HardState.GetTerm(), l.HardState.GetVote(), l.HardState.GetCommit()
	}
	if ok, err := s.loadValue(keySnapshot, l.Snapshot); err != nil {
		return nil, sum, err
	} else if ok {
		md := l.Snapshot.GetMetadata()
		if md.GetIndex() == 0 || md.GetTerm() == 0 {
			return nil, sum, fmt.Errorf("store: open %q: key %q: snapshot with index %d, term %d", s.dir, keySnapshot, md.GetIndex(), md.GetTerm())
		}
		sum.snapIndex, sum.snapTerm = md.GetIndex(), md.GetTerm()
		if md.ConfState == nil {
			md.ConfState = &raftpb.ConfState{}
		}
	}
	if ok, err := s.loadValue(keyConfState, l.ConfState); err != nil {
		return nil, sum, err
	} else if !ok {
		l.ConfState = proto.CloneOf(l.Snapshot.GetMetadata().GetConfState())
	}

	it, err := s.db.NewIter(&pebble.IterOptions{LowerBound: entryPrefix, UpperBound: entryPrefixEnd})
	if err != nil {
		return nil, sum, fmt.Errorf("store: open %q: read entries: %w", s.dir, err)
	}
	ents, err := s.loadEntries(ctx, it, &sum)
	if cerr := it.Close(); err == nil && cerr != nil {
		err = fmt.Errorf("store: open %q: read entries: %w", s.dir, cerr)
	}
	if err != nil {
		return nil, sum, err
	}
	l.Entries = ents

	sum.lastTerm = sum.snapTerm
	if n := len(ents); n > 0 {
		sum.lastTerm = ents[n-1].GetTerm()
		if ents[0].GetTerm() < sum.snapTerm {
			return nil, sum, fmt.Errorf("store: open %q: entry %d has term %d, below the snapshot's term %d", s.dir, ents[0].GetIndex(), ents[0].GetTerm(), sum.snapTerm)
		}
	}
	if err := sum.check(); err != nil {
		return nil, sum, fmt.Errorf("store: open %q: inconsistent store: %w", s.dir, err)
	}
	return l, sum, nil
}

// loadEntries reads every stored entry from it, checks that they are
// contiguous with non-decreasing terms, records their span in sum and
// returns those above sum.snapIndex.
func (s *Store) loadEntries(ctx context.Context, it *pebble.Iterator, sum *summary) ([]*raftpb.Entry, error) {
	var ents []*raftpb.Entry
	var prevTerm uint64
	n := 0
	for valid := it.First(); valid; valid = it.Next() {
		if n++; n%openCtxCheckEvery == 0 {
			if err := ctx.Err(); err != nil {
				return nil, fmt.Errorf("store: open %q: %w", s.dir, err)
			}
		}
		key := it.Key()
		index, err := entryIndex(key)
		if err != nil {
			return nil, fmt.Errorf("store: open %q: %w", s.dir, err)
		}
		value, err := it.ValueAndErr()
		if err != nil {
			return nil, fmt.Errorf("store: open %q: read key %q: %w", s.dir, key, err)
		}
		e := &raftpb.Entry{}
		if err := proto.Unmarshal(value, e); err != nil {
			return nil, fmt.Errorf("store: open %q: decode key %q: %w", s.dir, key, err)
		}
		if e.GetIndex() != index {
			return nil, fmt.Errorf("store: open %q: key %q holds entry index %d", s.dir, key, e.GetIndex())
		}
		if e.GetTerm() == 0 {
			return nil, fmt.Errorf("store: open %q: key %q: entry with term 0", s.dir, key)
		}
		if sum.first == 0 {
			sum.first = index
		} else if index != sum.last+1 {
			return nil, fmt.Errorf("store: open %q: log has a hole: entry %d follows entry %d", s.dir, index, sum.last)
		} else if e.GetTerm() < prevTerm {
			return nil, fmt.Errorf("store: open %q: entry %d has term %d, below the term %d of entry %d", s.dir, index, e.GetTerm(), prevTerm, sum.last)
		}
		sum.last, prevTerm = index, e.GetTerm()
		if index > sum.snapIndex {
			ents = append(ents, e)
		}
	}
	if err := it.Error(); err != nil {
		return nil, fmt.Errorf("store: open %q: read entries: %w", s.dir, err)
	}
	return ents, nil
}

// loadValue decodes the value of key into m; ok is false when it is absent.
func (s *Store) loadValue(key []byte, m proto.Message) (ok bool, err error) {
	v, ok, err := s.get(key)
	if err != nil || !ok {
		return false, err
	}
	if err := proto.Unmarshal(v, m); err != nil {
		return false, fmt.Errorf("store: open %q: decode key %q: %w", s.dir, key, err)
	}
	return true, nil
}
