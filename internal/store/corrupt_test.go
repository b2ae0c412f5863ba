package store

import (
	"bytes"
	"context"
	"io"
	"slices"
	"strings"
	"testing"

	"github.com/cockroachdb/pebble/v2/record"
	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/cockroachdb/pebble/v2/vfs/atomicfs"
)

// damagedStore writes a generated workload to a store on a fresh MemFS and
// closes it. With flushes, the memtable is flushed twice along the way, so
// that the store has sstables and a MANIFEST with several edits; without,
// everything is in the one WAL the store was created with.
func damagedStore(t *testing.T, flushes bool) (*vfs.MemFS, *model) {
	t.Helper()
	fs := vfs.NewMem()
	s, _ := openT(t, fs, 0)
	batches, states := generate(7, 80, DefaultTrailingEntries)
	for i, b := range batches {
		saveT(t, s, b)
		if flushes && (i == 25 || i == 50) {
			if err := s.db.Flush(); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	return fs, states[len(states)-1]
}

// fileNamed returns the single file of the store whose name ends in suffix.
func fileNamed(suffix string) func(*testing.T, vfs.FS) string {
	return func(t *testing.T, fs vfs.FS) string {
		t.Helper()
		names, err := fs.List(testDir)
		if err != nil {
			t.Fatal(err)
		}
		var found []string
		for _, n := range names {
			if strings.HasSuffix(n, suffix) {
				found = append(found, n)
			}
		}
		if len(found) != 1 {
			t.Fatalf("want one %s file, have %v", suffix, names)
		}
		return found[0]
	}
}

// liveWAL returns the WAL with the highest number: the one the store wrote
// last. (Pebble keeps an obsolete WAL for reuse.)
func liveWAL(t *testing.T, fs vfs.FS) string {
	t.Helper()
	names, err := fs.List(testDir)
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(names)
	var wal string
	for _, n := range names {
		if strings.HasSuffix(n, ".log") {
			wal = n
		}
	}
	if wal == "" {
		t.Fatalf("no WAL in %v", names)
	}
	return wal
}

func manifestFile(t *testing.T, fs vfs.FS) string {
	t.Helper()
	name, err := atomicfs.ReadMarker(fs, testDir, "manifest")
	if err != nil || name == "" {
		t.Fatalf("no MANIFEST: %q, %v", name, err)
	}
	return name
}

// largestFile returns the largest file whose name ends in suffix.
func largestFile(suffix string) func(*testing.T, vfs.FS) string {
	return func(t *testing.T, fs vfs.FS) string {
		t.Helper()
		names, err := fs.List(testDir)
		if err != nil {
			t.Fatal(err)
		}
		slices.Sort(names)
		var best string
		var bestSize int64 = -1
		for _, n := range names {
			if !strings.HasSuffix(n, suffix) {
				continue
			}
			st, err := fs.Stat(fs.PathJoin(testDir, n))
			if err != nil {
				t.Fatal(err)
			}
			if st.Size() > bestSize {
				best, bestSize = n, st.Size()
			}
		}
		if best == "" {
			t.Fatalf("no %s file in %v", suffix, names)
		}
		return best
	}
}

func truncateTo(fraction float64) func([]byte) []byte {
	return func(b []byte) []byte { return b[:int(float64(len(b))*fraction)] }
}

// overwriteAt flips 4 bytes at fraction of the file.
func overwriteAt(fraction float64) func([]byte) []byte {
	return func(b []byte) []byte {
		at := int(float64(len(b)) * fraction)
		for i := at; i < at+4 && i < len(b); i++ {
			b[i] ^= 0x5a
		}
		return b
	}
}

func appendBytes(extra ...byte) func([]byte) []byte {
	return func(b []byte) []byte { return append(b, extra...) }
}

// rewrite replaces the contents of path on fs with damage(contents).
func rewrite(t *testing.T, fs vfs.FS, path string, damage func([]byte) []byte) {
	t.Helper()
	f, err := fs.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	data, err := io.ReadAll(f)
	if err != nil {
		t.Fatal(err)
	}
	_ = f.Close()
	data = damage(data)
	if err := fs.Remove(path); err != nil {
		t.Fatal(err)
	}
	g, err := fs.Create(path, vfs.WriteCategoryUnspecified)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := g.Write(data); err != nil {
		t.Fatal(err)
	}
	if err := g.Sync(); err != nil {
		t.Fatal(err)
	}
	if err := g.Close(); err != nil {
		t.Fatal(err)
	}
}

// TestOpenDamagedStore damages one of Pebble's files and checks that Open
// returns an error naming it — without panicking and without rolling the
// store back silently.
func TestOpenDamagedStore(t *testing.T) {
	tests := []struct {
		name    string
		flushes bool
		file    func(*testing.T, vfs.FS) string
		damage  func([]byte) []byte
	}{
		{"MANIFEST truncated to half", true, manifestFile, truncateTo(0.5)},
		{"MANIFEST truncated to a quarter", true, manifestFile, truncateTo(0.25)},
		{"MANIFEST truncated to three quarters", true, manifestFile, truncateTo(0.75)},
		{"MANIFEST overwritten in the middle", true, manifestFile, overwriteAt(0.5)},
		{"MANIFEST overwritten near the start", true, manifestFile, overwriteAt(0.1)},
		{"sstable overwritten in the middle", true, largestFile(".sst"), overwriteAt(0.5)},
		{"sstable overwritten near the start", true, largestFile(".sst"), overwriteAt(0.1)},
		{"sstable truncated to half", true, largestFile(".sst"), truncateTo(0.5)},
		{"WAL overwritten in the middle", false, liveWAL, overwriteAt(0.5)},
		{"WAL overwritten near the start", false, liveWAL, overwriteAt(0.1)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fs, _ := damagedStore(t, tt.flushes)
			name := tt.file(t, fs)
			rewrite(t, fs, fs.PathJoin(testDir, name), tt.damage)
			for attempt := range 2 { // a failed Open must not repair or destroy anything
				_, _, err := Open(context.Background(), Options{FS: fs, Dir: testDir})
				if err == nil {
					t.Fatalf("attempt %d: Open succeeded on a store with %s damaged", attempt, name)
				}
				if !strings.Contains(err.Error(), name) {
					t.Fatalf("attempt %d: Open error does not name %s: %v", attempt, name, err)
				}
				if !strings.Contains(err.Error(), `"`+testDir+`"`) {
					t.Fatalf("attempt %d: Open error does not name the directory: %v", attempt, err)
				}
				if attempt == 0 {
					t.Logf("Open: %v", err)
				}
			}
		})
	}
}

// TestOpenToleratesTornTail appends the start of a record that never
// finished — what a crash in the middle of a write leaves — and checks
// that Open accepts it with everything intact.
func TestOpenToleratesTornTail(t *testing.T) {
	tests := []struct {
		name    string
		flushes bool
		file    func(*testing.T, vfs.FS) string
		damage  func([]byte) []byte
	}{
		{"MANIFEST with a torn record", true, manifestFile, appendBytes(1, 2, 3, 4, 0x40, 0, 1, 9, 9)},
		{"WAL with a torn record", false, liveWAL, appendBytes(1, 2, 3, 4, 0x40, 0, 9, 4, 0, 0, 0, 7)},
		{"WAL with zeros after its end", false, liveWAL, appendBytes(make([]byte, 100)...)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fs, want := damagedStore(t, tt.flushes)
			rewrite(t, fs, fs.PathJoin(testDir, tt.file(t, fs)), tt.damage)
			_, l, err := Open(context.Background(), Options{FS: fs, Dir: testDir})
			if err != nil {
				t.Fatalf("Open: %v", err)
			}
			assertLoaded(t, l, want.loaded())
		})
	}
}

func TestOpenRefusesDataWithoutManifestMarker(t *testing.T) {
	fs, _ := damagedStore(t, true)
	marker := fileNamed(".MANIFEST-000001")(t, fs)
	if err := fs.Remove(fs.PathJoin(testDir, marker)); err != nil {
		t.Fatal(err)
	}
	_, _, err := Open(context.Background(), Options{FS: fs, Dir: testDir})
	if err == nil || !strings.Contains(err.Error(), "no MANIFEST marker") {
		t.Fatalf("Open without a MANIFEST marker: %v", err)
	}
}

// TestCheckManifestData checks the MANIFEST scan on record files written
// with Pebble's own record writer.
func TestCheckManifestData(t *testing.T) {
	var buf bytes.Buffer
	w := record.NewWriter(&buf)
	var offsets []int
	for _, size := range []int{100, 40 << 10, 300, 50} { // the second spans blocks
		offsets = append(offsets, int(w.Size()))
		if _, err := w.WriteRecord(bytes.Repeat([]byte{byte(size)}, size)); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	clean := buf.Bytes()
	flip := func(at int) []byte {
		b := slices.Clone(clean)
		b[at] ^= 0x01
		return b
	}
	tests := []struct {
		name       string
		data       []byte
		wantTornAt int64 // -1: clean; -2: want an error
	}{
		{"clean", clean, -1},
		{"empty", nil, -1},
		{"zeros after the end", append(slices.Clone(clean), make([]byte, 64)...), int64(len(clean))},
		{"torn last record", clean[:len(clean)-10], int64(offsets[3])},
		{"flip in the last record", flip(len(clean) - 5), int64(offsets[3])},
		{"flip in the first record", flip(offsets[0] + 20), -2},
		{"flip in a record's header", flip(offsets[2] + 4), -2},
		{"flip in the second block of a long record", flip(40 << 10), -2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tornAt, err := checkManifestData(tt.data)
			if tt.wantTornAt == -2 {
				if err == nil {
					t.Fatalf("no error; tornAt %d", tornAt)
				}
				return
			}
			if err != nil || tornAt != tt.wantTornAt {
				t.Fatalf("tornAt %d, err %v; want tornAt %d", tornAt, err, tt.wantTornAt)
			}
		})
	}
}
