package store

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"strings"
	"testing"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/cockroachdb/pebble/v2/vfs/errorfs"
)

// TestSaveFailsStopOnSyncError makes the WAL's fsync fail: Save returns an
// error (Pebble's Fatalf on its commit path becomes one), and so does every
// later Save. What Save had returned for before survives.
func TestSaveFailsStopOnSyncError(t *testing.T) {
	mem := vfs.NewMem()
	syncFails := &errorfs.Toggle{Injector: errorfs.InjectorFunc(func(op errorfs.Op) error {
		if strings.HasSuffix(op.Path, ".log") && (op.Kind == errorfs.OpFileSync || op.Kind == errorfs.OpFileSyncData || op.Kind == errorfs.OpFileSyncTo) {
			return errorfs.ErrInjected
		}
		return nil
	})}
	var logged bytes.Buffer
	ctx := context.Background()
	s, _, err := Open(ctx, Options{FS: errorfs.Wrap(mem, syncFails), Dir: testDir, Logger: slog.New(slog.NewTextHandler(&logged, nil))})
	if err != nil {
		t.Fatal(err)
	}
	saveT(t, s, Batch{Entries: ents(1, 1, 3), HardState: hardState(1, 1, 2)})

	syncFails.On()
	err = s.Save(ctx, Batch{Entries: ents(1, 4, 4), HardState: hardState(1, 1, 3)})
	if err == nil {
		t.Fatal("Save succeeded although the WAL could not be synced")
	}
	if !errors.Is(err, errorfs.ErrInjected) {
		t.Fatalf("Save error does not carry the sync error: %v", err)
	}
	syncFails.Off()
	if err2 := s.Save(ctx, Batch{Entries: ents(1, 4, 4)}); err2 != err {
		t.Fatalf("Save after a failed Save: %v, want the first error %v", err2, err)
	}
	if !strings.Contains(logged.String(), "level=ERROR") {
		t.Fatalf("Pebble's fatal error was not logged: %q", logged.String())
	}
	t.Logf("Save: %v", err)

	// The process would stop here; reopen what is on the disk.
	_ = s.Close()
	s2, l, err := Open(ctx, Options{FS: mem, Dir: testDir})
	if err != nil {
		t.Fatalf("reopen: %v", err)
	}
	defer s2.Close()
	if len(l.Entries) < 3 || l.HardState.GetCommit() < 2 {
		t.Fatalf("reopen lost what Save had returned for: hard state %v, entries %v", l.HardState, indexes(l.Entries))
	}
}

func TestPebbleLogger(t *testing.T) {
	var buf bytes.Buffer
	l := pebbleLogger{log: slog.New(slog.NewTextHandler(&buf, nil)), dir: "d"}
	l.Infof("flushed %d", 1)
	if buf.Len() != 0 {
		t.Fatalf("Infof logged %q", buf.String())
	}
	l.Errorf("disk %s", "slow")
	if !strings.Contains(buf.String(), "level=ERROR") || !strings.Contains(buf.String(), "disk slow") {
		t.Fatalf("Errorf logged %q", buf.String())
	}
	defer func() {
		r := recover()
		f, ok := r.(pebbleFatal)
		if !ok || !strings.Contains(f.Error(), "boom 7") {
			t.Fatalf("Fatalf panicked with %v, want a pebbleFatal", r)
		}
	}()
	l.Fatalf("boom %d", 7)
	t.Fatal("Fatalf returned")
}
