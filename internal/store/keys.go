package store

import (
	"encoding/binary"
	"fmt"
)

// Key layout. Every key the store writes is one of these.
//
//	m/format     formatValue, written when a store is first opened
//	m/hardstate  raftpb.HardState
//	m/confstate  raftpb.ConfState
//	m/snapshot   raftpb.Snapshot (metadata and data), the latest one only
//	e/<index>    raftpb.Entry, index as 8 bytes big-endian so that byte order
//	             is index order
var (
	keyFormat    = []byte("m/format")
	keyHardState = []byte("m/hardstate")
	keyConfState = []byte("m/confstate")
	keySnapshot  = []byte("m/snapshot")

	metaPrefix    = []byte("m/")
	metaPrefixEnd = []byte("m0")

	entryPrefix = []byte("e/")
	// entryPrefixEnd is the first key after every entry key ('/'+1 == '0').
	entryPrefixEnd = []byte("e0")
)

// formatValue marks a directory as a Blixard Raft store, layout version 1.
// A future layout gets a new value; Open refuses values it does not know.
const formatValue = "blixard-raft-store-v1"

// entryKeyLen is the length of every entry key: the prefix and 8 index bytes.
const entryKeyLen = 2 + 8

// entryKey returns the key of the log entry at index.
func entryKey(index uint64) []byte {
	k := make([]byte, entryKeyLen)
	copy(k, entryPrefix)
	binary.BigEndian.PutUint64(k[len(entryPrefix):], index)
	return k
}

// entryIndex decodes an entry key back into its index.
func entryIndex(key []byte) (uint64, error) {
	if len(key) != entryKeyLen || string(key[:len(entryPrefix)]) != string(entryPrefix) {
		return 0, fmt.Errorf("malformed entry key %q", key)
	}
	return binary.BigEndian.Uint64(key[len(entryPrefix):]), nil
}
