package store

import (
	"encoding/binary"
	"fmt"
	"hash/crc32"
)

// Pebble's MANIFEST and WAL files share one record format (Pebble's record
// package): the file is cut into 32 KiB blocks; a record is written as one
// or more chunks, and a chunk never crosses a block. A chunk is a header —
// checksum (uint32 LE, a masked CRC-32C of everything after the length),
// length (uint16 LE), type, and for the recyclable and WAL-sync types the
// log number (uint32 LE) and, for WAL-sync only, the offset the writer had
// synced before writing the chunk (uint64 LE) — then length bytes of
// payload. A block's last bytes, too few for a header, are zeros.
//
// Pebble reads such a file up to its first bad chunk and treats the rest as
// the torn tail of a crash, except that WAL replay looks for a WAL-sync
// chunk in a later block proving the bad chunk was synced. So damage in the
// middle of a MANIFEST, or in the last 32 KiB block of a WAL, silently rolls
// the database back. The functions here find that damage.

const (
	recordBlockSize      = 32 << 10
	legacyHeaderSize     = 7
	recyclableHeaderSize = legacyHeaderSize + 4
	walSyncHeaderSize    = recyclableHeaderSize + 8

	// Chunk types: full, first, middle, last in the legacy (1-4),
	// recyclable (5-8) and WAL-sync (9-12) wire formats.
	chunkLegacyFull  = 1
	chunkLegacyFirst = 2
	chunkLegacyLast  = 4
	chunkWALSyncMin  = 9
	chunkTypeMax     = 12
	crcMaskDelta     = 0xa282ead8
)

var crcTable = crc32.MakeTable(crc32.Castagnoli)

// chunk is a valid chunk of a record file.
type chunk struct {
	typ    byte
	logNum uint32 // recyclable and WAL-sync types only
	synced uint64 // WAL-sync types only
	size   int    // header and payload
}

func (c chunk) isLegacy() bool  { return c.typ <= chunkLegacyLast }
func (c chunk) isWALSync() bool { return c.typ >= chunkWALSyncMin }

// startsRecord reports whether c is the full or first chunk of a record.
func (c chunk) startsRecord() bool { return (c.typ-1)%4 <= 1 }

// parseChunk returns the chunk at pos if a valid one starts there: a known
// type, inside its block, with a matching checksum.
func parseChunk(data []byte, pos int) (chunk, bool) {
	blockEnd := min((pos/recordBlockSize+1)*recordBlockSize, len(data))
	if pos+legacyHeaderSize > blockEnd {
		return chunk{}, false
	}
	c := chunk{typ: data[pos+6]}
	header := legacyHeaderSize
	switch {
	case c.typ == 0 || c.typ > chunkTypeMax:
		return chunk{}, false
	case c.typ >= chunkWALSyncMin:
		header = walSyncHeaderSize
	case c.typ > chunkLegacyLast:
		header = recyclableHeaderSize
	}
	length := int(binary.LittleEndian.Uint16(data[pos+4:]))
	end := pos + header + length
	if end > blockEnd {
		return chunk{}, false
	}
	if header >= recyclableHeaderSize {
		c.logNum = binary.LittleEndian.Uint32(data[pos+7:])
	}
	if header == walSyncHeaderSize {
		c.synced = binary.LittleEndian.Uint64(data[pos+11:])
	}
	sum := crc32.Checksum(data[pos+6:end], crcTable)
	if (sum>>15|sum<<17)+crcMaskDelta != binary.LittleEndian.Uint32(data[pos:]) {
		return chunk{}, false
	}
	c.size = end - pos
	return c, true
}

// isPadding reports whether pos starts the zero padding at a block's end.
func isPadding(data []byte, pos int) bool {
	blockEnd := min((pos/recordBlockSize+1)*recordBlockSize, len(data))
	if blockEnd-pos >= walSyncHeaderSize {
		return false
	}
	for _, b := range data[pos:blockEnd] {
		if b != 0 {
			return false
		}
	}
	return true
}

// firstBadChunk walks the chunks from the start of the file while belong
// accepts them, and returns where the walk stopped: len(data) when it
// reached the end.
func firstBadChunk(data []byte, belong func(chunk) bool) int {
	pos := 0
	for pos < len(data) {
		if isPadding(data, pos) {
			pos = min((pos/recordBlockSize+1)*recordBlockSize, len(data))
			continue
		}
		c, ok := parseChunk(data, pos)
		if !ok || !belong(c) {
			return pos
		}
		pos += c.size
	}
	return pos
}

// checkManifestData checks a MANIFEST's chunks (legacy format). It returns
// -1 when the file ends cleanly, or the offset of an unreadable tail that
// Pebble will skip; an error when a record starts after an unreadable
// chunk: Pebble syncs each edit before writing the next, so only damage,
// not a crash, leaves a readable record after an unreadable one.
func checkManifestData(data []byte) (tornAt int64, err error) {
	bad := firstBadChunk(data, chunk.isLegacy)
	if bad == len(data) {
		return -1, nil
	}
	for q := bad + 1; q+legacyHeaderSize <= len(data); q++ {
		if t := data[q+6]; t != chunkLegacyFull && t != chunkLegacyFirst {
			continue // cheap filter before the checksum
		}
		if c, ok := parseChunk(data, q); ok && c.startsRecord() {
			return 0, fmt.Errorf("unreadable record at offset %d, but a readable record starts at offset %d (file size %d): damage, not the torn tail of a crash", bad, q, len(data))
		}
	}
	return int64(bad), nil
}

// checkWALData checks the chunks of WAL number logNum. The log ends at its
// first chunk that is bad or carries another log number (an EOF trailer,
// or the old contents of a recycled file). It returns an error when a
// later chunk of this log says the writer had synced past that point:
// synced data was damaged, and Pebble would replay the log only up to it.
func checkWALData(data []byte, logNum uint32) error {
	ours := func(c chunk) bool { return c.isLegacy() || c.logNum == logNum }
	bad := firstBadChunk(data, ours)
	var want [4]byte
	binary.LittleEndian.PutUint32(want[:], logNum)
	for q := bad + 1; q+walSyncHeaderSize <= len(data); q++ {
		if t := data[q+6]; t < chunkWALSyncMin || t > chunkTypeMax || [4]byte(data[q+7:q+11]) != want {
			continue // cheap filter before the checksum
		}
		if c, ok := parseChunk(data, q); ok && c.isWALSync() && c.logNum == logNum && c.synced > uint64(bad) {
			return fmt.Errorf("unreadable chunk at offset %d, but a chunk at offset %d says the log was synced to offset %d (file size %d): synced data is damaged", bad, q, c.synced, len(data))
		}
	}
	return nil
}
