package store

import (
	"errors"
	"log/slog"

	"github.com/cockroachdb/pebble/v2/vfs"
)

// DefaultTrailingEntries is the number of entries kept below a snapshot the
// node took of its own state when Options.TrailingEntries is 0.
const DefaultTrailingEntries = 5000

// Options configures Open.
type Options struct {
	// FS is the file system the store lives on: vfs.Default in production,
	// a vfs.MemFS (crashable or not) in tests and the simulator. Required.
	FS vfs.FS
	// Dir is the store's directory inside FS, created if missing. Required.
	Dir string
	// TrailingEntries: when the node saves a snapshot of its own applied
	// state, entries with index < snapshot index - TrailingEntries are
	// deleted. DefaultTrailingEntries when 0.
	TrailingEntries uint64
	// Logger receives Pebble's errors and background errors. Pebble's
	// informational messages are always discarded. Optional: nil discards
	// everything.
	Logger *slog.Logger
}

// withDefaults checks opts and fills in the defaults.
func (o Options) withDefaults() (Options, error) {
	if o.FS == nil {
		return o, errors.New("store: Options.FS is required")
	}
	if o.Dir == "" {
		return o, errors.New("store: Options.Dir is required")
	}
	if o.TrailingEntries == 0 {
		o.TrailingEntries = DefaultTrailingEntries
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	return o, nil
}
