package store

import (
	"context"
	"io"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/cockroachdb/pebble/v2/vfs/atomicfs"
	"go.etcd.io/raft/v3/raftpb"
	"google.golang.org/protobuf/proto"
)

// Fuzz targets for what the store reads back from disk: Pebble's record
// files (MANIFEST and WAL), which Open checks itself before Pebble reads
// them, and the values of the store's keys, which Open decodes. See
// docs/SECURITY.md.

// smallStoreFiles writes a few batches to a store on a fresh MemFS and
// returns its MANIFEST, and its WAL with the WAL's number.
func smallStoreFiles(tb testing.TB) (manifest, wal []byte, walNum uint32) {
	tb.Helper()
	fs := vfs.NewMem()
	s, _ := openT(tb, fs, 0)
	saveT(tb, s, Batch{Entries: ents(1, 1, 3), HardState: hardState(1, 1, 2), ConfState: &raftpb.ConfState{Voters: []uint64{1}}})
	saveT(tb, s, Batch{Snapshot: snapshot(2, 1, 1)})
	saveT(tb, s, Batch{Entries: ents(2, 4, 5), HardState: hardState(2, 1, 4)})
	if err := s.Close(); err != nil {
		tb.Fatal(err)
	}
	read := func(name string) []byte {
		f, err := fs.Open(fs.PathJoin(testDir, name))
		if err != nil {
			tb.Fatal(err)
		}
		defer f.Close()
		b, err := io.ReadAll(f)
		if err != nil {
			tb.Fatal(err)
		}
		return b
	}
	name, err := atomicfs.ReadMarker(fs, testDir, "manifest")
	if err != nil || name == "" {
		tb.Fatalf("no MANIFEST: %q, %v", name, err)
	}
	manifest = read(name)
	names, err := fs.List(testDir)
	if err != nil {
		tb.Fatal(err)
	}
	slices.Sort(names)
	for _, n := range names {
		if num, ok := strings.CutSuffix(n, ".log"); ok {
			if v, err := strconv.ParseUint(num, 10, 32); err == nil {
				wal, walNum = read(n), uint32(v)
			}
		}
	}
	if wal == nil {
		tb.Fatalf("no WAL in %v", names)
	}
	return manifest, wal, walNum
}

// FuzzRecordFile feeds the MANIFEST and WAL checks a file's bytes. They
// must not panic, and a MANIFEST's torn tail must be an offset inside the
// file (or -1: none).
func FuzzRecordFile(f *testing.F) {
	manifest, wal, walNum := smallStoreFiles(f)
	f.Add(manifest, walNum)
	f.Add(wal, walNum)
	f.Add(manifest[:len(manifest)/2], walNum)
	f.Add(wal[:len(wal)*2/3], walNum+1)
	f.Add([]byte{}, uint32(0))
	f.Add(make([]byte, 40), uint32(0))
	f.Fuzz(func(t *testing.T, data []byte, logNum uint32) {
		tornAt, err := checkManifestData(data)
		switch {
		case err != nil && tornAt != 0:
			t.Fatalf("checkManifestData: error %v with torn tail at %d", err, tornAt)
		case err == nil && (tornAt < -1 || tornAt >= int64(len(data))):
			t.Fatalf("checkManifestData: torn tail at %d of a %d-byte file", tornAt, len(data))
		}
		_ = checkWALData(data, logNum)
	})
}

// FuzzLoad writes the given bytes as the values of the store's keys — the
// hard state, the membership, the snapshot, and two entries at index and
// index+1 (an empty value: key absent) — and opens the store. Open must
// not panic (nor recover from a panic: its error would say "panicked");
// what it returns must be consistent: the entries contiguous from the
// snapshot's index + 1, with terms that do not fall, no commit beyond the
// last entry. A second Open returns the same.
func FuzzLoad(f *testing.F) {
	m := func(msg proto.Message) []byte {
		b, err := proto.Marshal(msg)
		if err != nil {
			f.Fatal(err)
		}
		return b
	}
	es := ents(2, 3, 4)
	f.Add(m(hardState(2, 1, 3)), m(&raftpb.ConfState{Voters: []uint64{1, 2, 3}}), m(snapshot(2, 1, 1, 2, 3)), m(es[0]), m(es[1]), uint64(3))
	f.Add(m(hardState(1, 1, 1)), []byte(nil), []byte(nil), m(ents(1, 1, 1)[0]), m(ents(1, 2, 2)[0]), uint64(1))
	f.Add(m(hardState(9, 1, 9)), []byte(nil), m(snapshot(2, 1, 1)), m(es[0]), []byte(nil), uint64(3))
	f.Add([]byte{0xff}, []byte{0x08}, []byte{0x0a, 0x80}, []byte{0x18, 0x01}, []byte(nil), uint64(7))
	f.Fuzz(func(t *testing.T, hs, cs, snap, e1, e2 []byte, index uint64) {
		fs := vfs.NewMem()
		s, _ := openT(t, fs, 0)
		b := s.db.NewBatch()
		for _, kv := range []struct {
			key, value []byte
		}{
			{keyHardState, hs}, {keyConfState, cs}, {keySnapshot, snap},
			{entryKey(index), e1}, {entryKey(index + 1), e2},
		} {
			if len(kv.value) > 0 {
				if err := b.Set(kv.key, kv.value, nil); err != nil {
					t.Fatal(err)
				}
			}
		}
		if err := s.db.Apply(b, pebble.Sync); err != nil {
			t.Fatal(err)
		}
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}

		s, l, err := Open(context.Background(), Options{FS: fs, Dir: testDir})
		if err != nil {
			if strings.Contains(err.Error(), "panicked") {
				t.Fatalf("Open: %v", err)
			}
			return
		}
		checkLoaded(t, l)
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
		s2, l2, err := Open(context.Background(), Options{FS: fs, Dir: testDir})
		if err != nil {
			t.Fatalf("second Open: %v", err)
		}
		defer s2.Close()
		if !proto.Equal(l.HardState, l2.HardState) || !proto.Equal(l.ConfState, l2.ConfState) ||
			!proto.Equal(l.Snapshot, l2.Snapshot) || len(l.Entries) != len(l2.Entries) {
			t.Fatalf("second Open loaded %+v, first %+v", l2, l)
		}
	})
}

// checkLoaded checks what Open promises of what it returns.
func checkLoaded(t *testing.T, l *Loaded) {
	t.Helper()
	if l.HardState == nil || l.ConfState == nil || l.Snapshot == nil || l.Snapshot.Metadata == nil {
		t.Fatalf("nil field in %+v", l)
	}
	md := l.Snapshot.GetMetadata()
	if (md.GetIndex() == 0) != (md.GetTerm() == 0) {
		t.Fatalf("snapshot at index %d, term %d", md.GetIndex(), md.GetTerm())
	}
	last, term := md.GetIndex(), md.GetTerm()
	for i, e := range l.Entries {
		if e.GetIndex() != md.GetIndex()+1+uint64(i) || e.GetTerm() < term {
			t.Fatalf("entry %d is %d/%d after %d/%d", i, e.GetIndex(), e.GetTerm(), last, term)
		}
		last, term = e.GetIndex(), e.GetTerm()
	}
	if !isEmptyHardState(l.HardState) && (l.HardState.GetCommit() > last || l.HardState.GetCommit() < md.GetIndex()) {
		t.Fatalf("commit %d outside [%d, %d]", l.HardState.GetCommit(), md.GetIndex(), last)
	}
}
