package store

import (
	"fmt"
	"maps"
	"math/rand/v2"
	"slices"
	"testing"

	"go.etcd.io/raft/v3/raftpb"
	"google.golang.org/protobuf/proto"
)

// model is a dumb reference implementation of the store's semantics: a map
// of every stored entry and the last hard state, membership and snapshot.
// Tests check the real store against it.
type model struct {
	trailing uint64
	hs       *raftpb.HardState
	cs       *raftpb.ConfState
	snap     *raftpb.Snapshot
	log      map[uint64]*raftpb.Entry // every stored entry, trailing ones included
}

func newModel(trailing uint64) *model {
	return &model{
		trailing: trailing,
		hs:       &raftpb.HardState{},
		cs:       &raftpb.ConfState{},
		snap:     &raftpb.Snapshot{Metadata: &raftpb.SnapshotMetadata{ConfState: &raftpb.ConfState{}}},
		log:      map[uint64]*raftpb.Entry{},
	}
}

func (m *model) clone() *model {
	c := *m
	c.log = maps.Clone(m.log)
	return &c
}

// apply does what the store's documentation says Save does with b.
func (m *model) apply(b Batch) {
	if idx := b.Snapshot.GetMetadata().GetIndex(); idx != 0 {
		m.snap = proto.CloneOf(b.Snapshot)
		m.cs = proto.CloneOf(b.Snapshot.GetMetadata().GetConfState())
		if m.cs == nil {
			m.cs = &raftpb.ConfState{}
		}
		for i := range m.log {
			if b.ReplaceLog || (idx > m.trailing && i < idx-m.trailing) {
				delete(m.log, i)
			}
		}
	}
	if len(b.Entries) > 0 {
		for i := range m.log {
			if i >= b.Entries[0].GetIndex() {
				delete(m.log, i)
			}
		}
		for _, e := range b.Entries {
			m.log[e.GetIndex()] = proto.CloneOf(e)
		}
	}
	if !isEmptyHardState(b.HardState) {
		m.hs = proto.CloneOf(b.HardState)
	}
	if b.ConfState != nil {
		m.cs = proto.CloneOf(b.ConfState)
	}
}

// loaded is what Open should return for the model's state.
func (m *model) loaded() *Loaded {
	l := &Loaded{HardState: m.hs, ConfState: m.cs, Snapshot: m.snap}
	for _, i := range m.storedIndexes() {
		if i > m.snap.GetMetadata().GetIndex() {
			l.Entries = append(l.Entries, m.log[i])
		}
	}
	return l
}

// storedIndexes returns the indexes of every stored entry, ascending.
func (m *model) storedIndexes() []uint64 {
	return slices.Sorted(maps.Keys(m.log))
}

// diffLoaded describes how got differs from want, or returns "".
func diffLoaded(got, want *Loaded) string {
	switch {
	case !proto.Equal(got.HardState, want.HardState):
		return fmt.Sprintf("hard state: got %v, want %v", got.HardState, want.HardState)
	case !proto.Equal(got.ConfState, want.ConfState):
		return fmt.Sprintf("conf state: got %v, want %v", got.ConfState, want.ConfState)
	case !proto.Equal(got.Snapshot.GetMetadata(), want.Snapshot.GetMetadata()):
		return fmt.Sprintf("snapshot metadata: got %v, want %v", got.Snapshot.GetMetadata(), want.Snapshot.GetMetadata())
	case !proto.Equal(got.Snapshot, want.Snapshot):
		return fmt.Sprintf("snapshot data differs at index %d", want.Snapshot.GetMetadata().GetIndex())
	case len(got.Entries) != len(want.Entries):
		return fmt.Sprintf("entries: got %s, want %s", spans(got.Entries), spans(want.Entries))
	}
	for i := range want.Entries {
		if !proto.Equal(got.Entries[i], want.Entries[i]) {
			return fmt.Sprintf("entry %d: got %v, want %v", want.Entries[i].GetIndex(), got.Entries[i], want.Entries[i])
		}
	}
	return ""
}

// spans prints entries as index/term pairs.
func spans(ents []*raftpb.Entry) string {
	s := "["
	for i, e := range ents {
		if i > 0 {
			s += " "
		}
		s += fmt.Sprintf("%d/%d", e.GetIndex(), e.GetTerm())
	}
	return s + "]"
}

func assertLoaded(t testing.TB, got, want *Loaded) {
	t.Helper()
	if d := diffLoaded(got, want); d != "" {
		t.Fatal(d)
	}
}

// workload generates a Raft-like sequence of Batches from a seed: appends,
// overwrites of uncommitted suffixes after a term change, hard state
// changes, local snapshots and leader snapshots that replace the log.
type workload struct {
	rng       *rand.Rand
	term      uint64
	vote      uint64
	commit    uint64
	snapIndex uint64
	terms     map[uint64]uint64 // term of each index in the log above the snapshot
	last      uint64
	snapN     int
}

func newWorkload(seed uint64) *workload {
	return &workload{rng: rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15)), term: 1, vote: 1, terms: map[uint64]uint64{}}
}

func (w *workload) entries(from, n uint64) []*raftpb.Entry {
	ents := make([]*raftpb.Entry, 0, n)
	for i := from; i < from+n; i++ {
		data := make([]byte, w.rng.IntN(64))
		for j := range data {
			data[j] = byte(w.rng.Uint32())
		}
		ents = append(ents, &raftpb.Entry{Index: proto.Uint64(i), Term: proto.Uint64(w.term), Type: raftpb.EntryType_EntryNormal.Enum(), Data: data})
		w.terms[i] = w.term
	}
	for i := range w.terms {
		if i >= from+n {
			delete(w.terms, i)
		}
	}
	w.last = from + n - 1
	return ents
}

func (w *workload) hardState() *raftpb.HardState {
	return &raftpb.HardState{Term: proto.Uint64(w.term), Vote: proto.Uint64(w.vote), Commit: proto.Uint64(w.commit)}
}

func (w *workload) snapshot(index, term uint64) *raftpb.Snapshot {
	w.snapN++
	voters := []uint64{1, 2, 3}[:1+w.snapN%3]
	return &raftpb.Snapshot{
		Data: fmt.Appendf(nil, "state at %d (snapshot %d)", index, w.snapN),
		Metadata: &raftpb.SnapshotMetadata{
			Index: proto.Uint64(index), Term: proto.Uint64(term),
			ConfState: &raftpb.ConfState{Voters: voters},
		},
	}
}

// advanceCommit moves commit to a random index up to the last one.
func (w *workload) advanceCommit() {
	if w.last > w.commit {
		w.commit += 1 + w.rng.Uint64N(w.last-w.commit)
	}
}

func (w *workload) next() Batch {
	switch r := w.rng.IntN(100); {
	case r < 55: // append, as a leader or a follower
		ents := w.entries(w.last+1, 1+w.rng.Uint64N(8))
		w.advanceCommit()
		return Batch{Entries: ents, HardState: w.hardState()}
	case r < 67: // new term; overwrite the uncommitted suffix if there is one
		w.term++
		w.vote = 1 + w.rng.Uint64N(3)
		from := w.last + 1
		if w.last > w.commit {
			from = w.commit + 1 + w.rng.Uint64N(w.last-w.commit)
		}
		return Batch{Entries: w.entries(from, 1+w.rng.Uint64N(4)), HardState: w.hardState()}
	case r < 82 && w.commit > w.snapIndex: // snapshot of the applied state
		idx := w.snapIndex + 1 + w.rng.Uint64N(w.commit-w.snapIndex)
		term := w.terms[idx]
		for i := range w.terms {
			if i <= idx {
				delete(w.terms, i)
			}
		}
		w.snapIndex = idx
		return Batch{Snapshot: w.snapshot(idx, term)}
	case r < 90: // the leader's snapshot replaces the log
		w.term++
		idx := max(w.last, w.commit) + 1 + w.rng.Uint64N(5)
		w.snapIndex, w.commit, w.last = idx, idx, idx
		clear(w.terms)
		b := Batch{Snapshot: w.snapshot(idx, w.term), ReplaceLog: true}
		if n := w.rng.Uint64N(3); n > 0 {
			b.Entries = w.entries(idx+1, n)
		}
		b.HardState = w.hardState()
		return b
	case r < 95: // membership change applied
		return Batch{ConfState: &raftpb.ConfState{Voters: []uint64{1, 2, 3}, Learners: []uint64{4 + w.rng.Uint64N(3)}}}
	default: // hard state only: a vote or a commit
		w.advanceCommit()
		return Batch{HardState: w.hardState()}
	}
}

// generate returns n batches of the workload for seed, and the model after
// each prefix: states[k] is the state after batches[:k].
func generate(seed uint64, n int, trailing uint64) (batches []Batch, states []*model) {
	w := newWorkload(seed)
	m := newModel(trailing)
	states = append(states, m.clone())
	for range n {
		b := w.next()
		batches = append(batches, b)
		m.apply(b)
		states = append(states, m.clone())
	}
	return batches, states
}
