package store

import (
	"context"
	"fmt"
	"testing"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/vfs"
	"go.etcd.io/raft/v3/raftpb"
	"google.golang.org/protobuf/proto"
)

// BenchmarkSaveReady measures Save of one Ready-sized batch — entries of
// 256 bytes and a hard state, synced — on the real disk (under the test's
// temporary directory) and on Pebble's crashable in-memory file system.
// Every snapshotEveryEntries entries the batch also carries a local
// snapshot, as the core takes them, so the log stays bounded.
func BenchmarkSaveReady(b *testing.B) {
	const (
		entryBytes           = 256
		snapshotEveryEntries = 10000
	)
	fileSystems := []struct {
		name string
		open func(b *testing.B) (vfs.FS, string)
	}{
		{"disk", func(b *testing.B) (vfs.FS, string) { return vfs.Default, b.TempDir() }},
		{"crashmem", func(b *testing.B) (vfs.FS, string) { return vfs.NewCrashableMem(), "raft" }},
	}
	for _, fsys := range fileSystems {
		for _, perBatch := range []int{1, 64} {
			b.Run(fmt.Sprintf("fs=%s/entries=%d", fsys.name, perBatch), func(b *testing.B) {
				fs, dir := fsys.open(b)
				ctx := context.Background()
				s, _, err := Open(ctx, Options{FS: fs, Dir: dir})
				if err != nil {
					b.Fatal(err)
				}
				defer s.Close()
				ents := make([]*raftpb.Entry, perBatch)
				for i := range ents {
					ents[i] = &raftpb.Entry{Term: proto.Uint64(1), Index: proto.Uint64(0), Data: make([]byte, entryBytes)}
				}
				hs := &raftpb.HardState{Term: proto.Uint64(1), Vote: proto.Uint64(1), Commit: proto.Uint64(0)}
				var last, snap uint64
				batches := 0
				b.SetBytes(int64(perBatch * entryBytes))
				b.ReportAllocs()
				for b.Loop() {
					for _, e := range ents {
						last++
						*e.Index = last
					}
					batch := Batch{Entries: ents, HardState: hs}
					// Entries up to the previous batch are committed and applied.
					if applied := last - uint64(perBatch); applied-snap >= snapshotEveryEntries {
						snap = applied
						batch.Snapshot = &raftpb.Snapshot{Data: []byte("state"), Metadata: &raftpb.SnapshotMetadata{
							Index: proto.Uint64(snap), Term: proto.Uint64(1), ConfState: &raftpb.ConfState{Voters: []uint64{1}},
						}}
					}
					*hs.Commit = last
					if err := s.Save(ctx, batch); err != nil {
						b.Fatal(err)
					}
					batches++
				}
				b.ReportMetric(float64(batches)/b.Elapsed().Seconds(), "batches/s")
				b.ReportMetric(float64(batches*perBatch)/b.Elapsed().Seconds(), "entries/s")
			})
		}
	}
}

// BenchmarkOpen measures Open of a store holding 20,000 entries of 256
// bytes (a snapshot interval and the trailing entries) on the crashable
// in-memory file system: the read-only check and the read-write open, each
// of which reads everything.
func BenchmarkOpen(b *testing.B) {
	fs := vfs.NewCrashableMem()
	ctx := context.Background()
	s, _, err := Open(ctx, Options{FS: fs, Dir: "raft"})
	if err != nil {
		b.Fatal(err)
	}
	const total, perBatch = 20000, 100
	for first := uint64(1); first <= total; first += perBatch {
		es := ents(1, first, first+perBatch-1)
		for _, e := range es {
			e.Data = make([]byte, 256)
		}
		if err := s.Save(ctx, Batch{Entries: es, HardState: hardState(1, 1, first+perBatch-1)}); err != nil {
			b.Fatal(err)
		}
	}
	if err := s.Close(); err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		s, l, err := Open(ctx, Options{FS: fs, Dir: "raft"})
		if err != nil {
			b.Fatal(err)
		}
		if len(l.Entries) != total {
			b.Fatalf("loaded %d entries, want %d", len(l.Entries), total)
		}
		if err := s.Close(); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkPebbleSyncBaseline measures a bare synced Pebble batch of one
// 256-byte value and a small hard state, for comparison with
// BenchmarkSaveReady's entries=1 case: the difference is the store's own
// cost (validation, marshalling, bookkeeping).
func BenchmarkPebbleSyncBaseline(b *testing.B) {
	fileSystems := []struct {
		name string
		open func(b *testing.B) (vfs.FS, string)
	}{
		{"disk", func(b *testing.B) (vfs.FS, string) { return vfs.Default, b.TempDir() }},
		{"crashmem", func(b *testing.B) (vfs.FS, string) { return vfs.NewCrashableMem(), "raft" }},
	}
	for _, fsys := range fileSystems {
		b.Run("fs="+fsys.name, func(b *testing.B) {
			fs, dir := fsys.open(b)
			s, _, err := Open(context.Background(), Options{FS: fs, Dir: dir})
			if err != nil {
				b.Fatal(err)
			}
			defer s.Close()
			value := make([]byte, 256+16)
			hs := make([]byte, 12)
			var index uint64
			for b.Loop() {
				index++
				pb := s.db.NewBatch()
				_ = pb.Set(entryKey(index), value, nil)
				_ = pb.Set(keyHardState, hs, nil)
				if err := s.db.Apply(pb, pebble.Sync); err != nil {
					b.Fatal(err)
				}
				_ = pb.Close()
			}
			b.ReportMetric(float64(index)/b.Elapsed().Seconds(), "batches/s")
		})
	}
}
