package runtime

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
)

// raftLogger routes etcd raft's log lines to slog: its chatter at debug,
// its warnings and errors as such, except the warnings in quietWarnings;
// its panics still panic.
type raftLogger struct{ log *slog.Logger }

// quietWarnings are raft warnings logged at debug: they repeat while a
// condition lasts and something else tells of it. A dropped proposal is
// counted (and its caller told); a candidate that cannot campaign yet
// tries again; a leader that steps down is the runtime's "leader changed".
var quietWarnings = []string{
	"exceed uncommitted entry size limit; dropping proposal",
	"cannot campaign at term",
	"stepped down to follower since quorum is not active",
}

// warnLevel is the level of a raft warning.
func warnLevel(msg string) slog.Level {
	for _, q := range quietWarnings {
		if strings.Contains(msg, q) {
			return slog.LevelDebug
		}
	}
	return slog.LevelWarn
}

func (l raftLogger) Debug(v ...any)              { l.log.Debug(fmt.Sprint(v...)) }
func (l raftLogger) Debugf(f string, v ...any)   { l.log.Debug(fmt.Sprintf(f, v...)) }
func (l raftLogger) Info(v ...any)               { l.log.Debug(fmt.Sprint(v...)) }
func (l raftLogger) Infof(f string, v ...any)    { l.log.Debug(fmt.Sprintf(f, v...)) }
func (l raftLogger) Warning(v ...any)            { l.warn(fmt.Sprint(v...)) }
func (l raftLogger) Warningf(f string, v ...any) { l.warn(fmt.Sprintf(f, v...)) }
func (l raftLogger) Error(v ...any)              { l.log.Error(fmt.Sprint(v...)) }
func (l raftLogger) Errorf(f string, v ...any)   { l.log.Error(fmt.Sprintf(f, v...)) }
func (l raftLogger) Fatal(v ...any)              { panic(fmt.Sprint(v...)) }
func (l raftLogger) Fatalf(f string, v ...any)   { panic(fmt.Sprintf(f, v...)) }
func (l raftLogger) Panic(v ...any)              { panic(fmt.Sprint(v...)) }
func (l raftLogger) Panicf(f string, v ...any)   { panic(fmt.Sprintf(f, v...)) }

func (l raftLogger) warn(msg string) { l.log.Log(context.Background(), warnLevel(msg), msg) }
