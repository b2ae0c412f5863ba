package cli

import (
	"encoding/json"
	"testing"

	apiv1 "github.com/blixard/blixard/api/v1"
	"github.com/blixard/blixard/client/clienttest"
)

func TestTaskList(t *testing.T) {
	n := clienttest.Start(t, 1)
	stdout, stderr, err := runAt(t, n, "task", "list")
	if err != nil || stdout != "" || stderr != "no tasks\n" {
		t.Errorf("task list of none: err %v, stdout %q, stderr %q", err, stdout, stderr)
	}
	mustRunAt(t, n, "task", "submit", "--", "make", "test")
	mustRunAt(t, n, "task", "submit", "--", "sh", "-c", "a very long shell command line that does not fit")
	mustRunAt(t, n, "task", "cancel", "1")
	got := mustRunAt(t, n, "task", "list")
	want := `ID  STATUS     COMMAND                                   NODE  ATTEMPT  SUBMITTED
1   cancelled  make test                                 -     0        2026-01-02T03:04:06Z
2   pending    sh -c "a very long shell command line...  -     0        2026-01-02T03:04:07Z
`
	if got != want {
		t.Errorf("task list printed\n%s\nwant\n%s", got, want)
	}

	out := mustRunAt(t, n, "task", "list", "--limit", "1", "--stale", "-o", "json")
	var resp struct {
		Tasks []map[string]any `json:"tasks"`
	}
	if err := json.Unmarshal([]byte(out), &resp); err != nil || len(resp.Tasks) != 1 || resp.Tasks[0]["status"] != "TASK_STATUS_CANCELLED" {
		t.Errorf("task list --limit 1 -o json (%v), want {\"tasks\": [task 1]}:\n%s", err, out)
	}
	calls := n.Calls()
	if req := calls[len(calls)-1].Request.(*apiv1.ListTasksRequest); req.GetLimit() != 1 || !req.GetStale() {
		t.Errorf("ListTasks request %v, want limit 1, stale", req)
	}
}
