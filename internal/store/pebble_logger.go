package store

import (
	"fmt"
	"log/slog"
	"sync"

	"github.com/cockroachdb/pebble/v2"
)

// pebbleLogger adapts Pebble's logger to slog. Pebble is chatty at info
// level (every flush and compaction), so Infof is discarded.
//
// Pebble calls Fatalf when it cannot continue, and does not expect it to
// return (its default calls os.Exit). pebbleLogger logs the message and
// panics with a pebbleFatal value instead, so that Open and Save, which call
// into Pebble on the caller's goroutine, can recover it and return an error.
// A Fatalf on one of Pebble's background goroutines (a flush or compaction
// that cannot continue) still ends the process, as Pebble intends.
type pebbleLogger struct {
	log *slog.Logger
	dir string
}

var _ pebble.Logger = pebbleLogger{}

// pebbleFatal is the panic value of pebbleLogger.Fatalf. It wraps the
// first error among Fatalf's arguments, if any (the cause, such as a failed
// fsync).
type pebbleFatal struct {
	msg   string
	cause error
}

func (f pebbleFatal) Error() string { return "pebble fatal error: " + f.msg }
func (f pebbleFatal) Unwrap() error { return f.cause }

func (l pebbleLogger) Infof(string, ...any) {}

func (l pebbleLogger) Errorf(format string, args ...any) {
	l.log.Error("pebble: "+fmt.Sprintf(format, args...), slog.String("dir", l.dir))
}

func (l pebbleLogger) Fatalf(format string, args ...any) {
	f := pebbleFatal{msg: fmt.Sprintf(format, args...)}
	for _, a := range args {
		if err, ok := a.(error); ok {
			f.cause = err
			break
		}
	}
	l.log.Error("pebble fatal: "+f.msg, slog.String("dir", l.dir))
	panic(f)
}

// corruptionLog records the files Pebble reported as corrupt, so that an
// error met while reading them can name them even when Pebble's own error
// names only a file number.
type corruptionLog struct {
	mu    sync.Mutex
	paths []string // Invariant: at most maxCorruptPaths, no duplicates.
}

// maxCorruptPaths bounds corruptionLog: one corrupt file is enough to stop.
const maxCorruptPaths = 8

func (c *corruptionLog) record(path string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, p := range c.paths {
		if p == path {
			return
		}
	}
	if len(c.paths) < maxCorruptPaths {
		c.paths = append(c.paths, path)
	}
}

func (c *corruptionLog) list() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]string(nil), c.paths...)
}

// eventListener returns Pebble event hooks that log background errors and
// record data corruption without ending the process (Pebble's default for
// DataCorruption, when a logger is set, is Fatalf).
func eventListener(log *slog.Logger, dir string, corrupt *corruptionLog) *pebble.EventListener {
	return &pebble.EventListener{
		BackgroundError: func(err error) {
			log.Error("pebble background error", slog.String("dir", dir), slog.Any("err", err))
		},
		DataCorruption: func(info pebble.DataCorruptionInfo) {
			corrupt.record(info.Path)
			log.Error("pebble data corruption", slog.String("dir", dir), slog.String("file", info.Path), slog.Any("err", info.Details))
		},
	}
}
