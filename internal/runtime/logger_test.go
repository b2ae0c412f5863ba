package runtime

import (
	"strings"
	"testing"
)

// TestRaftWarnings: raft's warnings that repeat while a condition lasts,
// and that something else tells of, go to debug; the others stay
// warnings.
func TestRaftWarnings(t *testing.T) {
	for _, tc := range []struct {
		format string
		args   []any
		want   string
	}{
		{"%x appending new entries to log would exceed uncommitted entry size limit; dropping proposal", []any{1}, "DEBUG"},
		{"%x cannot campaign at term %d since there are still pending configuration changes to apply", []any{1, 5}, "DEBUG"},
		{"%x stepped down to follower since quorum is not active", []any{1}, "DEBUG"},
		{"%x [logterm: %d, index: %d] rejected MsgApp", []any{1, 2, 3}, "WARN"},
		{"core: promote learner %d: %v", []any{4, "boom"}, "WARN"},
	} {
		var rec logRecorder
		raftLogger{log: rec.logger()}.Warningf(tc.format, tc.args...)
		lines := rec.take()
		if len(lines) != 1 || !strings.HasPrefix(lines[0], tc.want+" ") {
			t.Errorf("Warningf(%q) logged %q, want one %s line", tc.format, lines, tc.want)
		}
	}
}
