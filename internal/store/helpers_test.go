package store

import (
	"context"
	"testing"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/vfs"
	"go.etcd.io/raft/v3/raftpb"
	"google.golang.org/protobuf/proto"
)

const testDir = "raft"

// openT opens the store in testDir on fs and closes it when the test ends.
func openT(t testing.TB, fs vfs.FS, trailing uint64) (*Store, *Loaded) {
	t.Helper()
	s, l, err := Open(context.Background(), Options{FS: fs, Dir: testDir, TrailingEntries: trailing})
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s, l
}

// reopenT closes s and opens the store on fs again.
func reopenT(t testing.TB, s *Store, fs vfs.FS, trailing uint64) (*Store, *Loaded) {
	t.Helper()
	if err := s.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	return openT(t, fs, trailing)
}

func saveT(t testing.TB, s *Store, b Batch) {
	t.Helper()
	if err := s.Save(context.Background(), b); err != nil {
		t.Fatalf("Save: %v", err)
	}
}

// storedIndexes lists the index of every entry key in the store, trailing
// entries included.
func (s *Store) storedIndexes(t testing.TB) []uint64 {
	t.Helper()
	it, err := s.db.NewIter(&pebble.IterOptions{LowerBound: entryPrefix, UpperBound: entryPrefixEnd})
	if err != nil {
		t.Fatal(err)
	}
	var idx []uint64
	for valid := it.First(); valid; valid = it.Next() {
		i, err := entryIndex(it.Key())
		if err != nil {
			t.Fatal(err)
		}
		idx = append(idx, i)
	}
	if err := it.Close(); err != nil {
		t.Fatal(err)
	}
	return idx
}

// applyUnsynced writes b the way Save would, but without syncing and
// without moving the store's summary: a Save in flight when the process
// dies.
func (s *Store) applyUnsynced(t testing.TB, b Batch) {
	t.Helper()
	pb, _, err := s.prepare(&b)
	if err != nil {
		t.Fatal(err)
	}
	if pb == nil {
		return
	}
	defer pb.Close()
	if err := s.db.Apply(pb, pebble.NoSync); err != nil {
		t.Fatal(err)
	}
}

// ents returns entries from..to (inclusive) with term.
func ents(term, from, to uint64) []*raftpb.Entry {
	var es []*raftpb.Entry
	for i := from; i <= to; i++ {
		es = append(es, &raftpb.Entry{Index: proto.Uint64(i), Term: proto.Uint64(term), Data: []byte{byte(i), byte(term)}})
	}
	return es
}

func hardState(term, vote, commit uint64) *raftpb.HardState {
	return &raftpb.HardState{Term: proto.Uint64(term), Vote: proto.Uint64(vote), Commit: proto.Uint64(commit)}
}

func snapshot(index, term uint64, voters ...uint64) *raftpb.Snapshot {
	return &raftpb.Snapshot{
		Data:     []byte("state"),
		Metadata: &raftpb.SnapshotMetadata{Index: proto.Uint64(index), Term: proto.Uint64(term), ConfState: &raftpb.ConfState{Voters: voters}},
	}
}

// indexes returns the indexes of es.
func indexes(es []*raftpb.Entry) []uint64 {
	var idx []uint64
	for _, e := range es {
		idx = append(idx, e.GetIndex())
	}
	return idx
}

// span returns from..to inclusive.
func span(from, to uint64) []uint64 {
	var idx []uint64
	for i := from; i <= to; i++ {
		idx = append(idx, i)
	}
	return idx
}
