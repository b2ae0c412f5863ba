package store

import (
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/cockroachdb/pebble/v2/vfs/atomicfs"
)

// manifestInfo is what the store learned about the MANIFEST, the file in
// which Pebble lists the files that make up the database. The zero value
// (name "") means there is no database in the directory yet.
type manifestInfo struct {
	name string // e.g. MANIFEST-000001
	size int64
	// tornAt is the offset of an unreadable record at the end of the file,
	// which Pebble will skip; -1 when the file ends cleanly.
	tornAt int64
}

// describe names the MANIFEST, for an error about the state Pebble read
// from it.
func (m manifestInfo) describe() string {
	if m.name == "" {
		return ""
	}
	if m.tornAt >= 0 {
		return fmt.Sprintf("Pebble read its file list from %s, which ends in an unreadable record at offset %d of %d bytes that Pebble skips: a crash while Pebble wrote it leaves that, and so does a truncated or damaged file", m.name, m.tornAt, m.size)
	}
	return fmt.Sprintf("Pebble read its file list from %s (%d bytes)", m.name, m.size)
}

// recordFileMaxBytes bounds what inspectDir reads of one MANIFEST or WAL.
// Pebble rotates the MANIFEST at 128 MiB and the WAL at the memtable size
// (4 MiB) by default.
const recordFileMaxBytes = 1 << 30

// inspectDir looks at the database in dir before Pebble opens it, for the
// damage Pebble would not report (see recordfile.go): a MANIFEST or a WAL
// damaged where Pebble takes the damage for a torn tail, and data files
// without a MANIFEST, which Pebble would replace with an empty database.
func inspectDir(fs vfs.FS, dir string) (manifestInfo, error) {
	info := manifestInfo{tornAt: -1}
	names, err := fs.List(dir)
	if errors.Is(err, os.ErrNotExist) {
		return info, nil
	}
	if err != nil {
		return info, fmt.Errorf("store: open %q: list directory: %w", dir, err)
	}
	info.name, err = atomicfs.ReadMarker(fs, dir, "manifest")
	if err != nil {
		return info, fmt.Errorf("store: open %q: find the MANIFEST: %w", dir, err)
	}
	for _, n := range names {
		isData := strings.HasSuffix(n, ".sst") || strings.HasSuffix(n, ".log") || strings.HasSuffix(n, ".blob")
		if info.name == "" && isData {
			// A database whose creation crashed has no data file yet.
			return info, fmt.Errorf("store: open %q: %s exists but no MANIFEST marker (marker.manifest.*) does: the store is damaged", dir, n)
		}
		if num, ok := strings.CutSuffix(n, ".log"); ok {
			if err := checkWAL(fs, dir, n, num); err != nil {
				return info, err
			}
		}
	}
	if info.name == "" {
		return info, nil
	}
	data, err := readRecordFile(fs, fs.PathJoin(dir, info.name))
	if err != nil {
		return info, fmt.Errorf("store: open %q: read %s: %w", dir, info.name, err)
	}
	info.size = int64(len(data))
	info.tornAt, err = checkManifestData(data)
	if err != nil {
		return info, fmt.Errorf("store: open %q: %s is damaged: %w", dir, info.name, err)
	}
	return info, nil
}

// checkWAL checks the WAL file name, whose number is num. It checks every
// WAL in the directory, not only those Pebble will replay (which only the
// MANIFEST says): a damaged WAL kept for reuse stops the store too.
func checkWAL(fs vfs.FS, dir, name, num string) error {
	logNum, err := strconv.ParseUint(num, 10, 32)
	if err != nil {
		return nil // not a name Pebble gives a WAL
	}
	data, err := readRecordFile(fs, fs.PathJoin(dir, name))
	if err != nil {
		return fmt.Errorf("store: open %q: read %s: %w", dir, name, err)
	}
	if err := checkWALData(data, uint32(logNum)); err != nil {
		return fmt.Errorf("store: open %q: WAL %s is damaged: %w", dir, name, err)
	}
	return nil
}

// readRecordFile reads a file of at most recordFileMaxBytes.
func readRecordFile(fs vfs.FS, path string) ([]byte, error) {
	f, err := fs.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, recordFileMaxBytes+1))
	if err != nil {
		return nil, err
	}
	if len(data) > recordFileMaxBytes {
		return nil, fmt.Errorf("larger than %d bytes", recordFileMaxBytes)
	}
	return data, nil
}
