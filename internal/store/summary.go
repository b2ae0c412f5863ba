package store

import (
	"errors"
	"fmt"

	"go.etcd.io/raft/v3/raftpb"
)

// ErrInvalidBatch marks a Save rejected because its Batch breaks a Raft log
// invariant; nothing was written. It is a bug in the caller, not a disk
// fault, but the store fails stop all the same.
var ErrInvalidBatch = errors.New("invalid batch")

// summary is what the store knows about its contents without reading
// Pebble: Open computes it from a full scan, and each successful Save moves
// it forward. Save validates a Batch against it.
//
// Invariants (check):
//   - first == 0 iff last == 0 (no stored entries); otherwise first <= last.
//   - with stored entries: first <= snapIndex+1 <= last+1, so the entries
//     after the snapshot are exactly snapIndex+1..last with no gap; with no
//     snapshot, first == 1.
//   - lastTerm is the term of lastIndex(): of entry last, or of the
//     snapshot when no entry follows it.
//   - a non-empty hard state has snapIndex <= commit <= lastIndex().
type summary struct {
	snapIndex, snapTerm uint64
	first, last         uint64 // stored entries, trailing ones below the snapshot included
	lastTerm            uint64
	term, vote, commit  uint64 // hard state; all 0 when none was saved
}

// lastIndex is the index of the last entry the log holds, counting the
// snapshot as holding everything up to its index.
func (s summary) lastIndex() uint64 { return max(s.last, s.snapIndex) }

func (s summary) hasHardState() bool { return s.term != 0 || s.vote != 0 || s.commit != 0 }

// check reports the first broken invariant.
func (s summary) check() error {
	if (s.first == 0) != (s.last == 0) || s.first > s.last {
		return fmt.Errorf("stored entries span [%d, %d]", s.first, s.last)
	}
	if s.last != 0 {
		if s.snapIndex == 0 && s.first != 1 {
			return fmt.Errorf("no snapshot, but the first entry has index %d, not 1", s.first)
		}
		if s.first > s.snapIndex+1 {
			return fmt.Errorf("gap between snapshot index %d and first entry %d", s.snapIndex, s.first)
		}
		if s.last < s.snapIndex {
			return fmt.Errorf("last entry %d is below snapshot index %d", s.last, s.snapIndex)
		}
	}
	if s.hasHardState() {
		if s.commit > s.lastIndex() {
			return fmt.Errorf("hard state commit %d is beyond the last index %d", s.commit, s.lastIndex())
		}
		if s.commit < s.snapIndex {
			return fmt.Errorf("hard state commit %d is below snapshot index %d", s.commit, s.snapIndex)
		}
	}
	return nil
}

// isEmptyHardState reports whether hs says nothing (raft's IsEmptyHardState).
func isEmptyHardState(hs *raftpb.HardState) bool {
	return hs.GetTerm() == 0 && hs.GetVote() == 0 && hs.GetCommit() == 0
}

// hasSnapshot reports whether the batch carries a snapshot.
func (b *Batch) hasSnapshot() bool { return b.Snapshot.GetMetadata().GetIndex() != 0 }

// plan is what Save writes for one Batch, worked out before anything is
// written.
type plan struct {
	next summary
	// compactFrom, compactTo: delete stored entries in [compactFrom,
	// compactTo) for a local snapshot. compactTo == 0: nothing to compact.
	compactFrom, compactTo uint64
	// truncateFrom: delete every stored entry with index >= truncateFrom
	// before the append. 0: the append only extends the log.
	truncateFrom uint64
}

// apply validates b against s and works out the summary after it and the
// deletions it needs. It returns an error wrapping ErrInvalidBatch when b
// breaks a Raft log invariant.
func (s summary) apply(b *Batch, trailing uint64) (plan, error) {
	p, err := s.apply1(b, trailing)
	if err != nil {
		return plan{}, fmt.Errorf("%w: %w", ErrInvalidBatch, err)
	}
	return p, nil
}

func (s summary) apply1(b *Batch, trailing uint64) (plan, error) {
	p := plan{next: s}
	n := &p.next

	// The snapshot comes first: entries and hard state are checked against
	// the log as it is after it.
	if b.ReplaceLog && !b.hasSnapshot() {
		return p, errors.New("ReplaceLog without a snapshot")
	}
	if b.Snapshot != nil && !b.hasSnapshot() && b.Snapshot.GetMetadata().GetTerm() != 0 {
		return p, errors.New("snapshot with index 0 but a term")
	}
	if b.hasSnapshot() {
		md := b.Snapshot.GetMetadata()
		if md.GetIndex() <= s.snapIndex {
			return p, fmt.Errorf("snapshot index %d is not above the stored snapshot index %d", md.GetIndex(), s.snapIndex)
		}
		if md.GetTerm() == 0 {
			return p, fmt.Errorf("snapshot at index %d has term 0", md.GetIndex())
		}
		n.snapIndex, n.snapTerm = md.GetIndex(), md.GetTerm()
		if b.ReplaceLog {
			n.first, n.last = 0, 0
			n.lastTerm = n.snapTerm
		} else if n.snapIndex > trailing && n.first != 0 && n.snapIndex-trailing > n.first {
			// Local snapshot: it must lie within the log (checked once the
			// entries are known); entries below index-trailing go.
			p.compactFrom, p.compactTo = n.first, n.snapIndex-trailing
			if p.compactTo > n.last {
				n.first, n.last = 0, 0
			} else {
				n.first = p.compactTo
			}
		}
	}

	// logLast is the last index of the log the entries attach to: for a
	// local snapshot, the log as stored (the snapshot lies inside it).
	logLast, logLastTerm := s.lastIndex(), s.lastTerm
	if b.ReplaceLog {
		logLast, logLastTerm = n.snapIndex, n.snapTerm
	}
	if len(b.Entries) > 0 {
		if err := checkContiguous(b.Entries); err != nil {
			return p, err
		}
		fi, li := b.Entries[0].GetIndex(), b.Entries[len(b.Entries)-1].GetIndex()
		switch {
		case fi <= s.commit:
			return p, fmt.Errorf("entry %d would overwrite a committed entry (commit %d)", fi, s.commit)
		case fi <= n.snapIndex:
			return p, fmt.Errorf("entry %d is not above the snapshot index %d", fi, n.snapIndex)
		case fi > logLast+1:
			return p, fmt.Errorf("entry %d leaves a gap after the last index %d", fi, logLast)
		case fi == logLast+1 && b.Entries[0].GetTerm() < logLastTerm:
			return p, fmt.Errorf("entry %d has term %d, below the term %d of the entry before it", fi, b.Entries[0].GetTerm(), logLastTerm)
		}
		if n.last != 0 && fi <= n.last {
			p.truncateFrom = fi
		}
		if n.first == 0 {
			n.first = fi
		}
		n.last, n.lastTerm = li, b.Entries[len(b.Entries)-1].GetTerm()
		logLast = li
	}

	if hs := b.HardState; !isEmptyHardState(hs) {
		if hs.GetTerm() < s.term {
			return p, fmt.Errorf("hard state term %d is below the stored term %d", hs.GetTerm(), s.term)
		}
		if hs.GetCommit() < s.commit {
			return p, fmt.Errorf("hard state commit %d is below the stored commit %d", hs.GetCommit(), s.commit)
		}
		n.term, n.vote, n.commit = hs.GetTerm(), hs.GetVote(), hs.GetCommit()
	}

	if b.hasSnapshot() && !b.ReplaceLog {
		// A snapshot of the node's own applied state: applied <= committed <= last.
		if n.snapIndex > logLast {
			return p, fmt.Errorf("local snapshot index %d is beyond the last index %d (a leader's snapshot needs ReplaceLog)", n.snapIndex, logLast)
		}
		if n.snapIndex > n.commit {
			return p, fmt.Errorf("local snapshot index %d is beyond the commit index %d", n.snapIndex, n.commit)
		}
	}
	if err := n.check(); err != nil {
		return p, err
	}
	return p, nil
}

// checkContiguous checks that ents are non-nil, have non-zero terms and
// consecutive indexes from a non-zero start, and that terms never decrease.
func checkContiguous(ents []*raftpb.Entry) error {
	for i, e := range ents {
		if e == nil {
			return fmt.Errorf("entry %d of the batch is nil", i)
		}
		if e.GetIndex() == 0 {
			return fmt.Errorf("entry %d of the batch has index 0", i)
		}
		if e.GetTerm() == 0 {
			return fmt.Errorf("entry at index %d has term 0", e.GetIndex())
		}
		if i == 0 {
			continue
		}
		prev := ents[i-1]
		if e.GetIndex() != prev.GetIndex()+1 {
			return fmt.Errorf("entries not contiguous: index %d follows %d", e.GetIndex(), prev.GetIndex())
		}
		if e.GetTerm() < prev.GetTerm() {
			return fmt.Errorf("entry %d has term %d, below the term %d of entry %d", e.GetIndex(), e.GetTerm(), prev.GetTerm(), prev.GetIndex())
		}
	}
	return nil
}
