package store

import (
	"testing"

	"github.com/cockroachdb/pebble/v2/vfs"
)

// A batch written with NoSync (raft's MustSync false: only the commit index
// moved) may be lost in a crash; everything synced before it survives and
// the store reopens.
func TestNoSyncBatchMayBeLostInACrash(t *testing.T) {
	fs := vfs.NewCrashableMem()
	s, _ := openT(t, fs, 0)
	saveT(t, s, Batch{HardState: hardState(1, 1, 0), Entries: ents(1, 1, 10)})
	saveT(t, s, Batch{HardState: hardState(1, 1, 5)})
	saveT(t, s, Batch{HardState: hardState(1, 1, 9), NoSync: true})
	crashed := fs.CrashClone(vfs.CrashCloneCfg{})
	_ = s.Close()
	s2, loaded := openT(t, crashed, 0)
	defer s2.Close()
	if got := loaded.HardState.GetCommit(); got != 5 {
		t.Fatalf("commit after a crash = %d, want the last synced 5", got)
	}
	if got := indexes(loaded.Entries); len(got) != 10 {
		t.Fatalf("entries after a crash = %v, want 1..10", got)
	}
	// A later synced batch carries the unsynced one with it.
	saveT(t, s2, Batch{HardState: hardState(1, 1, 7), NoSync: true})
	saveT(t, s2, Batch{HardState: hardState(1, 1, 8), Entries: ents(1, 11, 11)})
	crashed = crashed.CrashClone(vfs.CrashCloneCfg{})
	s3, loaded := openT(t, crashed, 0)
	defer s3.Close()
	if got := loaded.HardState.GetCommit(); got != 8 {
		t.Fatalf("commit after a synced save = %d, want 8", got)
	}
}
