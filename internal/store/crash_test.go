package store

import (
	"context"
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/cockroachdb/pebble/v2/vfs"
)

// TestCrashRecovery crashes a store after every Save of a generated
// workload, on Pebble's crashable in-memory file system, and checks that
// the store reopens with exactly what Save had returned for: a crash
// clone keeps what was synced and a random part (UnsyncedDataPercent) of
// what was not. With inFlight, the next batch was written unsynced when
// the crash came (a Save the process died in): the store must come back
// with or without it, whole, never in part.
func TestCrashRecovery(t *testing.T) {
	tests := []struct {
		seed     uint64
		batches  int
		trailing uint64
		// flushEvery: flush the memtable after every flushEvery-th Save, so
		// that crashes also find sstables, rotated WALs and MANIFEST edits.
		flushEvery int
		inFlight   bool
	}{
		{seed: 1, batches: 40, trailing: 3, flushEvery: 0, inFlight: false},
		{seed: 2, batches: 40, trailing: 3, flushEvery: 7, inFlight: false},
		{seed: 3, batches: 40, trailing: 5000, flushEvery: 5, inFlight: true},
		{seed: 4, batches: 40, trailing: 2, flushEvery: 0, inFlight: true},
		{seed: 5, batches: 40, trailing: 1, flushEvery: 3, inFlight: true},
	}
	crashes := []struct {
		unsyncedPercent int
		seeds           []uint64
	}{
		{0, []uint64{1}}, // only what was synced: the RNG plays no part
		{50, []uint64{1, 2, 3}},
		{100, []uint64{1}}, // everything written, as if no crash
	}
	for _, tt := range tests {
		name := fmt.Sprintf("seed=%d/flushEvery=%d/inFlight=%t", tt.seed, tt.flushEvery, tt.inFlight)
		t.Run(name, func(t *testing.T) {
			n := tt.batches
			if testing.Short() {
				n = 12
			}
			batches, states := generate(tt.seed, n, tt.trailing)
			for k := 0; k <= len(batches); k++ {
				fs := vfs.NewCrashableMem()
				s, _ := openT(t, fs, tt.trailing)
				for i, b := range batches[:k] {
					saveT(t, s, b)
					if tt.flushEvery > 0 && (i+1)%tt.flushEvery == 0 {
						if err := s.db.Flush(); err != nil {
							t.Fatal(err)
						}
					}
				}
				inFlight := tt.inFlight && k < len(batches)
				if inFlight {
					s.applyUnsynced(t, batches[k])
				}
				for _, c := range crashes {
					for _, seed := range c.seeds {
						crashed := fs.CrashClone(vfs.CrashCloneCfg{
							UnsyncedDataPercent: c.unsyncedPercent,
							RNG:                 rand.New(rand.NewPCG(seed, uint64(k))),
						})
						where := fmt.Sprintf("crash after %d saves (in flight: %t), unsynced %d%%, seed %d", k, inFlight, c.unsyncedPercent, seed)
						// The recovered store must go on; checking that once per
						// crash point is enough.
						goOn := c.unsyncedPercent == 50 && seed == 1
						checkCrashed(t, where, crashed, tt.trailing, batches, states, k, inFlight, goOn)
					}
				}
				if err := s.Close(); err != nil {
					t.Fatal(err)
				}
			}
		})
	}
}

// checkCrashed reopens the crashed file system and checks that it holds
// states[k], or states[k+1] when batch k was in flight; then, with goOn,
// that the recovered store takes the next batch and keeps it across
// another crash.
func checkCrashed(t *testing.T, where string, fs *vfs.MemFS, trailing uint64, batches []Batch, states []*model, k int, inFlight, goOn bool) {
	t.Helper()
	s, l, err := Open(context.Background(), Options{FS: fs, Dir: testDir, TrailingEntries: trailing})
	if err != nil {
		t.Fatalf("%s: Open: %v", where, err)
	}
	defer s.Close()
	recovered := k
	if d := diffLoaded(l, states[k].loaded()); d != "" {
		if !inFlight {
			t.Fatalf("%s: %s", where, d)
		}
		if d1 := diffLoaded(l, states[k+1].loaded()); d1 != "" {
			t.Fatalf("%s: neither the state before the batch in flight (%s) nor after it (%s)", where, d, d1)
		}
		recovered = k + 1
	}
	if !goOn || recovered == len(batches) {
		return
	}
	// The recovered store goes on: the next batch is saved and survives a
	// crash that keeps only synced data.
	if err := s.Save(context.Background(), batches[recovered]); err != nil {
		t.Fatalf("%s: Save after recovery: %v", where, err)
	}
	again := fs.CrashClone(vfs.CrashCloneCfg{UnsyncedDataPercent: 0})
	s2, l2, err := Open(context.Background(), Options{FS: again, Dir: testDir, TrailingEntries: trailing})
	if err != nil {
		t.Fatalf("%s: second crash: Open: %v", where, err)
	}
	defer s2.Close()
	if d := diffLoaded(l2, states[recovered+1].loaded()); d != "" {
		t.Fatalf("%s: second crash: %s", where, d)
	}
}
