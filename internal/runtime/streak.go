package runtime

import "log/slog"

// A node logs one line per change of state, not one per attempt: the
// helpers here remember what was said so that retry loops can tell a new
// condition (logged at its level) from one that goes on (logged at debug).

// streak follows one operation that is tried again and again (a renewal,
// a retry loop): it tells when the operation starts failing, when its
// error changes, and when it works again.
type streak struct {
	// err is the error text of the last failure; "" while it works.
	err string
	// failures counts the failures in a row.
	failures int
}

// fail records a failure. first: it starts a streak of failures; changed:
// its error text differs from the last failure's (always so for the
// first).
func (s *streak) fail(err error) (first, changed bool) {
	text := err.Error()
	first, changed = s.failures == 0, s.failures == 0 || text != s.err
	s.err, s.failures = text, s.failures+1
	return first, changed
}

// ok records a success; it reports whether it ends a streak of failures.
func (s *streak) ok() (recovered bool) {
	recovered = s.failures > 0
	s.err, s.failures = "", 0
	return recovered
}

// levelIf is level for a line that says something new, debug for one
// that repeats it.
func levelIf(first bool, level slog.Level) slog.Level {
	if first {
		return level
	}
	return slog.LevelDebug
}
