package cli

import (
	"strings"
	"testing"

	apiv1 "github.com/blixard/blixard/api/v1"
	"github.com/blixard/blixard/client/clienttest"
)

func TestEvents(t *testing.T) {
	n := clienttest.Start(t, 1)
	n.AddEvents(
		&apiv1.Event{Index: 3, TimeUnixNano: 1e18, Kind: "leader", NodeId: 1, Message: "node 1 leads term 2"},
		&apiv1.Event{Index: 7, TimeUnixNano: 1e18, Kind: "vm", NodeId: 2, VmName: "web", Message: "running"},
		&apiv1.Event{Index: 9, TimeUnixNano: 1e18, Kind: "task", NodeId: 2, TaskId: 8, Message: "succeeded: succeeded on node 2"},
	)
	out := mustRunAt(t, n, "events")
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 4 || !strings.HasPrefix(lines[0], "TIME") {
		t.Fatalf("events printed:\n%s\nwant a header and three events", out)
	}
	for i, want := range []string{"node 1 leads term 2", "vm web (node 2)", "task 8 (node 2)"} {
		if !strings.Contains(lines[i+1], want) {
			t.Errorf("line %d %q does not say %q", i+1, lines[i+1], want)
		}
	}
	if out := mustRunAt(t, n, "events", "--vm", "web"); strings.Count(out, "\n") != 2 || !strings.Contains(out, "running") {
		t.Errorf("events --vm web printed:\n%s", out)
	}
	if out := mustRunAt(t, n, "events", "--limit", "1"); !strings.Contains(out, "task 8") || strings.Contains(out, "leads") {
		t.Errorf("events --limit 1 printed:\n%s", out)
	}
	if out := mustRunAt(t, n, "events", "-o", "json"); strings.Count(out, `"index"`) != 3 {
		t.Errorf("events -o json printed:\n%s", out)
	}
	stdout, stderr, err := runAt(t, n, "events", "--node", "5")
	if err != nil || stdout != "" || !strings.Contains(stderr, "no events") {
		t.Errorf("events --node 5: err %v, stdout %q, stderr %q; want only \"no events\"", err, stdout, stderr)
	}
}
