package store

import (
	"context"
	"errors"
	"log/slog"
	"slices"
	"strings"
	"testing"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/vfs"
	"go.etcd.io/raft/v3/raftpb"
	"google.golang.org/protobuf/proto"
)

func TestOpenEmpty(t *testing.T) {
	fs := vfs.NewMem()
	s, l := openT(t, fs, 0)
	if !l.Empty() {
		t.Fatalf("new store: Loaded not empty: %+v", l)
	}
	if l.HardState == nil || l.ConfState == nil || l.Snapshot == nil || l.Snapshot.Metadata == nil {
		t.Fatalf("new store: nil field in %+v", l)
	}
	_, l = reopenT(t, s, fs, 0)
	if !l.Empty() {
		t.Fatalf("reopened new store: Loaded not empty: %+v", l)
	}
}

func TestLoadedEmpty(t *testing.T) {
	fs := vfs.NewMem()
	s, _ := openT(t, fs, 0)
	saveT(t, s, Batch{ConfState: &raftpb.ConfState{Voters: []uint64{1}}})
	_, l := reopenT(t, s, fs, 0)
	if l.Empty() {
		t.Fatal("store with a saved ConfState reports Empty")
	}
}

// TestAppendOverwrite checks Raft's truncation semantics: an entry at
// index i replaces every stored entry from i on.
func TestAppendOverwrite(t *testing.T) {
	tests := []struct {
		name    string
		batches []Batch
		want    string // index/term of the entries Open returns
	}{{
		name:    "append",
		batches: []Batch{{Entries: ents(1, 1, 5), HardState: hardState(1, 1, 0)}, {Entries: ents(1, 6, 8)}},
		want:    "[1/1 2/1 3/1 4/1 5/1 6/1 7/1 8/1]",
	}, {
		name:    "shorter suffix replaces a longer one",
		batches: []Batch{{Entries: ents(1, 1, 5), HardState: hardState(1, 1, 2)}, {Entries: ents(2, 4, 4), HardState: hardState(2, 2, 2)}},
		want:    "[1/1 2/1 3/1 4/2]",
	}, {
		name:    "longer suffix replaces a shorter one",
		batches: []Batch{{Entries: ents(1, 1, 5), HardState: hardState(1, 1, 2)}, {Entries: ents(2, 3, 7), HardState: hardState(2, 2, 2)}},
		want:    "[1/1 2/1 3/2 4/2 5/2 6/2 7/2]",
	}, {
		name:    "whole log replaced",
		batches: []Batch{{Entries: ents(1, 1, 3)}, {Entries: ents(3, 1, 2), HardState: hardState(3, 3, 0)}},
		want:    "[1/3 2/3]",
	}, {
		name: "overwrite then append",
		batches: []Batch{
			{Entries: ents(1, 1, 6), HardState: hardState(1, 1, 1)},
			{Entries: ents(2, 3, 3), HardState: hardState(2, 0, 1)},
			{Entries: ents(2, 4, 5)},
		},
		want: "[1/1 2/1 3/2 4/2 5/2]",
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fs := vfs.NewMem()
			s, _ := openT(t, fs, 0)
			m := newModel(DefaultTrailingEntries)
			for _, b := range tt.batches {
				saveT(t, s, b)
				m.apply(b)
			}
			if got, want := s.storedIndexes(t), m.storedIndexes(); !slices.Equal(got, want) {
				t.Fatalf("stored indexes %v, want %v", got, want)
			}
			_, l := reopenT(t, s, fs, 0)
			if got := spans(l.Entries); got != tt.want {
				t.Fatalf("entries after reopen %s, want %s", got, tt.want)
			}
			assertLoaded(t, l, m.loaded())
		})
	}
}

func TestReplaceLogSnapshotDeletesAllEntries(t *testing.T) {
	fs := vfs.NewMem()
	s, _ := openT(t, fs, 0)
	saveT(t, s, Batch{Entries: ents(1, 1, 10), HardState: hardState(1, 1, 5)})
	// The leader's snapshot is at 20, past this node's log, with the entries
	// that follow it.
	saveT(t, s, Batch{Snapshot: snapshot(20, 2, 1, 2, 3), ReplaceLog: true, Entries: ents(2, 21, 22), HardState: hardState(2, 0, 20)})
	if got, want := s.storedIndexes(t), []uint64{21, 22}; !slices.Equal(got, want) {
		t.Fatalf("stored indexes %v, want %v", got, want)
	}
	_, l := reopenT(t, s, fs, 0)
	if got := l.Snapshot.GetMetadata().GetIndex(); got != 20 {
		t.Fatalf("snapshot index %d, want 20", got)
	}
	if got, want := indexes(l.Entries), []uint64{21, 22}; !slices.Equal(got, want) {
		t.Fatalf("entries %v, want %v", got, want)
	}
	if got, want := l.ConfState.GetVoters(), []uint64{1, 2, 3}; !slices.Equal(got, want) {
		t.Fatalf("conf state voters %v, want the snapshot's %v", got, want)
	}
	if !proto.Equal(l.HardState, hardState(2, 0, 20)) {
		t.Fatalf("hard state %v", l.HardState)
	}
}

// A leader's snapshot inside this node's log (its entries conflict) still
// deletes every entry.
func TestReplaceLogSnapshotInsideLog(t *testing.T) {
	fs := vfs.NewMem()
	s, _ := openT(t, fs, 0)
	saveT(t, s, Batch{Entries: ents(1, 1, 10), HardState: hardState(1, 1, 3)})
	saveT(t, s, Batch{Snapshot: snapshot(6, 2, 1), ReplaceLog: true, HardState: hardState(2, 0, 6)})
	if got := s.storedIndexes(t); len(got) != 0 {
		t.Fatalf("stored indexes %v, want none", got)
	}
	s, l := reopenT(t, s, fs, 0)
	if len(l.Entries) != 0 || l.Snapshot.GetMetadata().GetIndex() != 6 {
		t.Fatalf("loaded snapshot %d, entries %v; want snapshot 6, no entries", l.Snapshot.GetMetadata().GetIndex(), indexes(l.Entries))
	}
	// The log continues from the snapshot.
	saveT(t, s, Batch{Entries: ents(2, 7, 8), HardState: hardState(2, 0, 7)})
	_, l = reopenT(t, s, fs, 0)
	if got, want := indexes(l.Entries), []uint64{7, 8}; !slices.Equal(got, want) {
		t.Fatalf("entries %v, want %v", got, want)
	}
}

func TestLocalSnapshotCompacts(t *testing.T) {
	tests := []struct {
		name       string
		trailing   uint64
		snapIndex  uint64
		wantStored []uint64
	}{
		{"keeps trailing entries", 3, 10, span(7, 20)},
		{"index below trailing keeps all", 30, 10, span(1, 20)},
		{"index equal to trailing keeps all", 10, 10, span(1, 20)},
		{"no trailing beyond the snapshot", 1, 20, span(19, 20)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fs := vfs.NewMem()
			s, _ := openT(t, fs, tt.trailing)
			saveT(t, s, Batch{Entries: ents(1, 1, 20), HardState: hardState(1, 1, 20)})
			saveT(t, s, Batch{Snapshot: snapshot(tt.snapIndex, 1, 1, 2)})
			if got := s.storedIndexes(t); !slices.Equal(got, tt.wantStored) {
				t.Fatalf("stored indexes %v, want %v", got, tt.wantStored)
			}
			s, l := reopenT(t, s, fs, tt.trailing)
			if got, want := indexes(l.Entries), span(tt.snapIndex+1, 20); !slices.Equal(got, want) {
				t.Fatalf("Open returned entries %v, want %v (only those after the snapshot)", got, want)
			}
			if got := s.storedIndexes(t); !slices.Equal(got, tt.wantStored) {
				t.Fatalf("stored indexes after reopen %v, want %v", got, tt.wantStored)
			}
			if got := l.ConfState.GetVoters(); !slices.Equal(got, []uint64{1, 2}) {
				t.Fatalf("conf state voters %v, want the snapshot's [1 2]", got)
			}
		})
	}
}

// Successive local snapshots compact further.
func TestLocalSnapshotsCompactRepeatedly(t *testing.T) {
	fs := vfs.NewMem()
	s, _ := openT(t, fs, 2)
	saveT(t, s, Batch{Entries: ents(1, 1, 30), HardState: hardState(1, 1, 30)})
	for _, idx := range []uint64{5, 12, 25} {
		saveT(t, s, Batch{Snapshot: snapshot(idx, 1, 1)})
		if got, want := s.storedIndexes(t), span(idx-2, 30); !slices.Equal(got, want) {
			t.Fatalf("after snapshot %d: stored %v, want %v", idx, got, want)
		}
	}
}

func TestBatchConfStateWinsOverSnapshots(t *testing.T) {
	fs := vfs.NewMem()
	s, _ := openT(t, fs, 0)
	saveT(t, s, Batch{Entries: ents(1, 1, 4), HardState: hardState(1, 1, 4)})
	saveT(t, s, Batch{Snapshot: snapshot(4, 1, 1), ConfState: &raftpb.ConfState{Voters: []uint64{1, 2}}})
	_, l := reopenT(t, s, fs, 0)
	if got := l.ConfState.GetVoters(); !slices.Equal(got, []uint64{1, 2}) {
		t.Fatalf("conf state voters %v, want the batch's [1 2]", got)
	}
	if got := l.Snapshot.GetMetadata().GetConfState().GetVoters(); !slices.Equal(got, []uint64{1}) {
		t.Fatalf("snapshot conf state voters %v, want [1]", got)
	}
}

// TestReopenRoundTrip saves a generated workload, reopening now and then,
// and checks every reopen against the reference model.
func TestReopenRoundTrip(t *testing.T) {
	for _, seed := range []uint64{1, 2, 3, 4} {
		fs := vfs.NewMem()
		const trailing = 4
		s, _ := openT(t, fs, trailing)
		batches, states := generate(seed, 200, trailing)
		for i, b := range batches {
			saveT(t, s, b)
			if i%17 != 16 && i != len(batches)-1 {
				continue
			}
			var l *Loaded
			s, l = reopenT(t, s, fs, trailing)
			if d := diffLoaded(l, states[i+1].loaded()); d != "" {
				t.Fatalf("seed %d, after batch %d: %s", seed, i, d)
			}
			if got, want := s.storedIndexes(t), states[i+1].storedIndexes(); !slices.Equal(got, want) {
				t.Fatalf("seed %d, after batch %d: stored indexes %v, want %v", seed, i, got, want)
			}
		}
	}
}

func TestSaveRejectsBadBatch(t *testing.T) {
	// Every case starts from: entries 1..10 at term 2, commit 5, snapshot at 3.
	base := []Batch{
		{Entries: append(ents(1, 1, 4), ents(2, 5, 10)...), HardState: hardState(2, 1, 5)},
		{Snapshot: snapshot(3, 1, 1)},
	}
	tests := []struct {
		name    string
		batch   Batch
		errText string
	}{
		{"gap after the log", Batch{Entries: ents(2, 12, 13)}, "gap"},
		{"not contiguous", Batch{Entries: append(ents(2, 11, 12), ents(2, 14, 14)...)}, "not contiguous"},
		{"decreasing indexes", Batch{Entries: append(ents(2, 11, 12), ents(2, 11, 11)...)}, "not contiguous"},
		{"nil entry", Batch{Entries: []*raftpb.Entry{nil}}, "nil"},
		{"index 0", Batch{Entries: ents(2, 0, 0)}, "index 0"},
		{"term 0", Batch{Entries: ents(0, 11, 11)}, "term 0"},
		{"term decreases in the batch", Batch{Entries: append(ents(3, 11, 11), ents(2, 12, 12)...)}, "below the term"},
		{"term below the previous entry", Batch{Entries: ents(1, 11, 11)}, "below the term"},
		{"overwrites a committed entry", Batch{Entries: ents(3, 5, 6)}, "committed"},
		{"commit beyond the last index", Batch{HardState: hardState(2, 1, 11)}, "beyond the last index"},
		{"commit goes back", Batch{HardState: hardState(2, 1, 4)}, "below the stored commit"},
		{"term goes back", Batch{HardState: hardState(1, 1, 5)}, "below the stored term"},
		{"snapshot not newer", Batch{Snapshot: snapshot(3, 1, 1)}, "not above"},
		{"snapshot with term 0", Batch{Snapshot: snapshot(4, 0, 1)}, "term 0"},
		{"local snapshot beyond commit", Batch{Snapshot: snapshot(7, 2, 1)}, "beyond the commit"},
		{"local snapshot beyond the log", Batch{Snapshot: snapshot(12, 2, 1), HardState: hardState(2, 1, 10)}, "needs ReplaceLog"},
		{"local snapshot past the log, entries after it", Batch{Snapshot: snapshot(15, 2, 1), Entries: ents(2, 16, 17), HardState: hardState(2, 1, 15)}, "gap"},
		{"ReplaceLog without a snapshot", Batch{ReplaceLog: true}, "without a snapshot"},
		{"leader snapshot entries leave a gap", Batch{Snapshot: snapshot(20, 3, 1), ReplaceLog: true, Entries: ents(3, 22, 22), HardState: hardState(3, 0, 20)}, "gap"},
		{"leader snapshot without its commit", Batch{Snapshot: snapshot(20, 3, 1), ReplaceLog: true}, "below snapshot index"},
		{"entries at the snapshot index", Batch{Snapshot: snapshot(20, 3, 1), ReplaceLog: true, Entries: ents(3, 20, 21), HardState: hardState(3, 0, 20)}, "not above the snapshot"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fs := vfs.NewMem()
			s, _ := openT(t, fs, 0)
			for _, b := range base {
				saveT(t, s, b)
			}
			s, before := reopenT(t, s, fs, 0)
			storedBefore := s.storedIndexes(t)

			err := s.Save(context.Background(), tt.batch)
			if !errors.Is(err, ErrInvalidBatch) {
				t.Fatalf("Save: %v, want ErrInvalidBatch", err)
			}
			if !strings.Contains(err.Error(), tt.errText) {
				t.Fatalf("Save error %q does not say %q", err, tt.errText)
			}
			// Fail-stop: a valid batch now gets the same error.
			if err2 := s.Save(context.Background(), Batch{Entries: ents(2, 11, 11)}); err2 != err {
				t.Fatalf("Save after failure: %v, want the first error %v", err2, err)
			}
			if got := s.storedIndexes(t); !slices.Equal(got, storedBefore) {
				t.Fatalf("stored indexes changed: %v, was %v", got, storedBefore)
			}
			_, after := reopenT(t, s, fs, 0)
			assertLoaded(t, after, before)
		})
	}
}

func TestEmptyBatchWritesNothing(t *testing.T) {
	fs := vfs.NewMem()
	s, _ := openT(t, fs, 0)
	saveT(t, s, Batch{Entries: ents(1, 1, 2), HardState: hardState(1, 1, 1)})
	saveT(t, s, Batch{})
	saveT(t, s, Batch{HardState: &raftpb.HardState{}, Snapshot: &raftpb.Snapshot{}})
	_, l := reopenT(t, s, fs, 0)
	if !proto.Equal(l.HardState, hardState(1, 1, 1)) || len(l.Entries) != 2 {
		t.Fatalf("loaded hard state %v, entries %v", l.HardState, indexes(l.Entries))
	}
}

func TestSaveAfterClose(t *testing.T) {
	s, _ := openT(t, vfs.NewMem(), 0)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s.Save(context.Background(), Batch{Entries: ents(1, 1, 1)}); !errors.Is(err, ErrClosed) {
		t.Fatalf("Save after Close: %v, want ErrClosed", err)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
}

func TestSaveCancelledContext(t *testing.T) {
	fs := vfs.NewMem()
	s, _ := openT(t, fs, 0)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := s.Save(ctx, Batch{Entries: ents(1, 1, 1)}); !errors.Is(err, context.Canceled) {
		t.Fatalf("Save with a cancelled context: %v", err)
	}
	if err := s.Save(context.Background(), Batch{Entries: ents(1, 1, 1)}); !errors.Is(err, context.Canceled) {
		t.Fatalf("Save after a failed Save: %v, want the same error", err)
	}
	_, l := reopenT(t, s, fs, 0)
	if !l.Empty() {
		t.Fatalf("cancelled Save wrote: %v", indexes(l.Entries))
	}
}

func TestOpenRequiresOptions(t *testing.T) {
	ctx := context.Background()
	if _, _, err := Open(ctx, Options{Dir: "x"}); err == nil || !strings.Contains(err.Error(), "FS") {
		t.Fatalf("Open without FS: %v", err)
	}
	if _, _, err := Open(ctx, Options{FS: vfs.NewMem()}); err == nil || !strings.Contains(err.Error(), "Dir") {
		t.Fatalf("Open without Dir: %v", err)
	}
}

// rawPebble opens testDir on fs as a bare Pebble database.
func rawPebble(t *testing.T, fs vfs.FS) *pebble.DB {
	t.Helper()
	db, err := pebble.Open(testDir, &pebble.Options{FS: fs, FormatMajorVersion: formatMajorVersion, Logger: pebbleLogger{log: slog.New(slog.DiscardHandler)}})
	if err != nil {
		t.Fatal(err)
	}
	return db
}

func TestOpenRefusesForeignDatabase(t *testing.T) {
	fs := vfs.NewMem()
	db := rawPebble(t, fs)
	if err := db.Set([]byte("other"), []byte("data"), pebble.Sync); err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	_, _, err := Open(context.Background(), Options{FS: fs, Dir: testDir})
	if err == nil || !strings.Contains(err.Error(), "not a Blixard Raft store") {
		t.Fatalf("Open of a foreign database: %v", err)
	}
}

// TestOpenRejectsInconsistentStore damages the store's keys (not Pebble's
// files) and checks that Open names the problem, the key and the directory.
func TestOpenRejectsInconsistentStore(t *testing.T) {
	tests := []struct {
		name   string
		damage func(*pebble.Batch)
		want   []string
	}{
		{"hole in the log", func(b *pebble.Batch) { _ = b.Delete(entryKey(5), nil) }, []string{"hole", "entry 6 follows entry 4"}},
		{"undecodable entry", func(b *pebble.Batch) { _ = b.Set(entryKey(3), []byte{0xff, 0xff}, nil) }, []string{"decode key", `"e/`}},
		{"entry under the wrong key", func(b *pebble.Batch) {
			v, _ := proto.Marshal(ents(1, 9, 9)[0])
			_ = b.Set(entryKey(3), v, nil)
		}, []string{"holds entry index 9"}},
		{"undecodable hard state", func(b *pebble.Batch) { _ = b.Set(keyHardState, []byte{0x08}, nil) }, []string{"decode key", `"m/hardstate"`}},
		{"commit beyond the log", func(b *pebble.Batch) {
			v, _ := proto.Marshal(hardState(1, 1, 50))
			_ = b.Set(keyHardState, v, nil)
		}, []string{"commit 50 is beyond the last index 10"}},
		{"malformed entry key", func(b *pebble.Batch) { _ = b.Set([]byte("e/x"), []byte{}, nil) }, []string{"malformed entry key"}},
		{"format marker deleted", func(b *pebble.Batch) { _ = b.Delete(keyFormat, nil) }, []string{"damaged", `"m/format" is missing`}},
		{"unknown format", func(b *pebble.Batch) { _ = b.Set(keyFormat, []byte("v999"), nil) }, []string{"v999"}},
		{"first entry not 1 without a snapshot", func(b *pebble.Batch) { _ = b.DeleteRange(entryKey(1), entryKey(3), nil) }, []string{"not 1"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fs := vfs.NewMem()
			s, _ := openT(t, fs, 0)
			saveT(t, s, Batch{Entries: ents(1, 1, 10), HardState: hardState(1, 1, 2)})
			if err := s.Close(); err != nil {
				t.Fatal(err)
			}
			db := rawPebble(t, fs)
			b := db.NewBatch()
			tt.damage(b)
			if err := db.Apply(b, pebble.Sync); err != nil {
				t.Fatal(err)
			}
			if err := db.Close(); err != nil {
				t.Fatal(err)
			}
			_, _, err := Open(context.Background(), Options{FS: fs, Dir: testDir})
			if err == nil {
				t.Fatal("Open succeeded on a damaged store")
			}
			for _, w := range append(tt.want, `"`+testDir+`"`) {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("Open error %q does not contain %q", err, w)
				}
			}
		})
	}
}

func TestOpenCancelledContext(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, _, err := Open(ctx, Options{FS: vfs.NewMem(), Dir: testDir}); !errors.Is(err, context.Canceled) {
		t.Fatalf("Open with a cancelled context: %v", err)
	}
}
