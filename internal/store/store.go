package store

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"

	"github.com/cockroachdb/pebble/v2"
)

// ErrClosed is returned by Save after Close.
var ErrClosed = errors.New("store closed")

// formatMajorVersion is the Pebble on-disk format of new stores: the newest
// in Pebble v2.1.7. It includes FormatWALSyncChunks, with which WAL replay
// tells corruption in the middle of the log from a torn tail.
const formatMajorVersion = pebble.FormatValueSeparation

// Store is the durable Raft storage of one node. It is safe for concurrent
// use, but the driver is its only writer and calls Save once per Ready.
type Store struct {
	dir      string
	trailing uint64
	log      *slog.Logger
	corrupt  *corruptionLog

	mu sync.Mutex
	db *pebble.DB // nil after Close
	// err is sticky: once Save has failed (or the store is closed) every
	// later Save returns it. Invariant: db == nil implies err != nil.
	err error
	// sum describes what db holds. Invariant: sum.check() == nil.
	sum summary
}

// Open opens (creating if needed) the store in opts.Dir on opts.FS and
// returns everything it holds. A store that cannot be read — a damaged or
// truncated file, a value that does not decode, a log with a hole — is an
// error naming the directory, and the file or key where Pebble or the store
// found the damage; Open never panics on bad data.
//
// An existing store is first opened read-only and checked whole, then
// opened for writing: a read-write open of Pebble replays the WAL into new
// files and deletes the files it takes for obsolete, which would destroy
// the evidence of damage (and, after a rolled-back MANIFEST, the data).
func Open(ctx context.Context, opts Options) (*Store, *Loaded, error) {
	opts, err := opts.withDefaults()
	if err != nil {
		return nil, nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, nil, fmt.Errorf("store: open %q: %w", opts.Dir, err)
	}
	mf, err := inspectDir(opts.FS, opts.Dir)
	if err != nil {
		return nil, nil, err
	}
	if mf.name != "" {
		s, _, err := openPebble(ctx, opts, mf, true)
		if err != nil {
			return nil, nil, err
		}
		if err := s.db.Close(); err != nil {
			return nil, nil, fmt.Errorf("store: open %q: close after the read-only check: %w", opts.Dir, err)
		}
	}
	return openPebble(ctx, opts, mf, false)
}

// openPebble opens the Pebble database, checks the format marker (writing
// it into a new store unless readOnly) and loads everything.
func openPebble(ctx context.Context, opts Options, mf manifestInfo, readOnly bool) (st *Store, loaded *Loaded, err error) {
	s := &Store{
		dir:      opts.Dir,
		trailing: opts.TrailingEntries,
		log:      opts.Logger,
		corrupt:  &corruptionLog{},
	}
	defer func() {
		// Pebble panics (or Fatalfs, which panics) on some damage it finds
		// while opening; corrupt data can also panic a decoder.
		if r := recover(); r != nil {
			err = fmt.Errorf("store: open %q: pebble panicked: %v", opts.Dir, r)
		}
		if err != nil {
			err = s.nameCorruptFiles(err)
			if d := mf.describe(); d != "" {
				err = fmt.Errorf("%w (%s)", err, d)
			}
			if s.db != nil {
				s.closeAfterFailedOpen()
			}
			st, loaded = nil, nil
		}
	}()
	popts := &pebble.Options{
		FS:                 opts.FS,
		FormatMajorVersion: formatMajorVersion,
		Logger:             pebbleLogger{log: opts.Logger, dir: opts.Dir},
		EventListener:      eventListener(opts.Logger, opts.Dir, s.corrupt),
		ReadOnly:           readOnly,
	}
	db, err := pebble.Open(opts.Dir, popts)
	if err != nil {
		return nil, nil, fmt.Errorf("store: open %q: %w", opts.Dir, err)
	}
	s.db = db
	if err := s.checkFormat(readOnly); err != nil {
		return nil, nil, err
	}
	loaded, sum, err := s.load(ctx)
	if err != nil {
		return nil, nil, err
	}
	s.sum = sum
	return s, loaded, nil
}

// closeAfterFailedOpen closes the db of an Open that failed, ignoring a
// panic or error from the close: the Open error is the one that matters.
func (s *Store) closeAfterFailedOpen() {
	defer func() { _ = recover() }()
	if err := s.db.Close(); err != nil {
		s.log.Debug("store: close after failed open", slog.String("dir", s.dir), slog.Any("err", err))
	}
	s.db = nil
}

// nameCorruptFiles adds to err the files Pebble reported as corrupt, when
// err does not already name them.
func (s *Store) nameCorruptFiles(err error) error {
	paths := s.corrupt.list()
	if len(paths) == 0 {
		return err
	}
	return fmt.Errorf("%w (pebble reported corrupt files: %q)", err, paths)
}

// checkFormat checks the store's format marker, writing it (synced) into a
// new, empty store unless readOnly.
func (s *Store) checkFormat(readOnly bool) error {
	v, ok, err := s.get(keyFormat)
	if err != nil {
		return err
	}
	if ok {
		if string(v) != formatValue {
			return fmt.Errorf("store: open %q: key %q is %q, want %q: not a store this version can read", s.dir, keyFormat, v, formatValue)
		}
		return nil
	}
	empty, err := s.isEmpty(nil)
	if err != nil {
		return err
	}
	if !empty {
		for _, bounds := range []*pebble.IterOptions{
			{LowerBound: entryPrefix, UpperBound: entryPrefixEnd},
			{LowerBound: metaPrefix, UpperBound: metaPrefixEnd},
		} {
			if none, err := s.isEmpty(bounds); err != nil {
				return err
			} else if !none {
				return fmt.Errorf("store: open %q: the store is damaged: key %q is missing but Raft keys are present", s.dir, keyFormat)
			}
		}
		return fmt.Errorf("store: open %q: directory holds a Pebble database without key %q: not a Blixard Raft store", s.dir, keyFormat)
	}
	if readOnly {
		return nil
	}
	if err := s.db.Set(keyFormat, []byte(formatValue), pebble.Sync); err != nil {
		return fmt.Errorf("store: open %q: write format marker: %w", s.dir, err)
	}
	// Pebble creates a new database's first WAL before it moves the
	// database to formatMajorVersion, so that WAL lacks the sync offsets
	// that let damage in it be told from a torn tail (inspectDir). A flush
	// starts a new WAL, in the new format.
	if err := s.db.Flush(); err != nil {
		return fmt.Errorf("store: open %q: flush the new store: %w", s.dir, err)
	}
	return nil
}

// isEmpty reports whether the database holds no key within o's bounds
// (nil: at all).
func (s *Store) isEmpty(o *pebble.IterOptions) (empty bool, err error) {
	it, err := s.db.NewIter(o)
	if err != nil {
		return false, fmt.Errorf("store: open %q: %w", s.dir, err)
	}
	empty = !it.First()
	if err := it.Close(); err != nil {
		return false, fmt.Errorf("store: open %q: scan: %w", s.dir, err)
	}
	return empty, nil
}

// get reads one key; ok is false when it is absent. The value is a copy.
func (s *Store) get(key []byte) (value []byte, ok bool, err error) {
	v, closer, err := s.db.Get(key)
	if errors.Is(err, pebble.ErrNotFound) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, fmt.Errorf("store: open %q: read key %q: %w", s.dir, key, err)
	}
	value = append([]byte(nil), v...)
	if err := closer.Close(); err != nil {
		return nil, false, fmt.Errorf("store: open %q: read key %q: %w", s.dir, key, err)
	}
	return value, true, nil
}

// Close closes the store. Save after Close returns ErrClosed (or the error
// that failed the store before). Close is idempotent.
func (s *Store) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.db == nil {
		return nil
	}
	db := s.db
	s.db = nil
	if s.err == nil {
		s.err = fmt.Errorf("store %q: %w", s.dir, ErrClosed)
	}
	if err := db.Close(); err != nil {
		return fmt.Errorf("store %q: close: %w", s.dir, err)
	}
	return nil
}
