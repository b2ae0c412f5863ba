package cli

import (
	"encoding/json"
	"testing"

	apiv1 "github.com/blixard/blixard/api/v1"
	"github.com/blixard/blixard/client/clienttest"
)

func TestTaskStatus(t *testing.T) {
	n := clienttest.Start(t, 1)
	mustRunAt(t, n, "task", "submit", "--timeout", "0", "--env", "HOME=/root", "--", "sh", "-c", "echo $HOME")
	got := mustRunAt(t, n, "task", "status", "1")
	want := `ID:         1
Status:     pending (submitted; waiting for placement)
Command:    sh -c "echo $HOME"
Env:        HOME=/root
vCPUs:      1
Memory:     128 MiB
Timeout:    none
Node:       -
Attempt:    0
Submitted:  2026-01-02T03:04:06Z (index 1)
Updated:    index 1
`
	if got != want {
		t.Errorf("task status printed\n%s\nwant\n%s", got, want)
	}

	out := mustRunAt(t, n, "task", "status", "1", "--stale", "-o", "json")
	var task map[string]any
	if err := json.Unmarshal([]byte(out), &task); err != nil {
		t.Fatalf("task status -o json: %v\n%s", err, out)
	}
	spec, _ := task["spec"].(map[string]any)
	if task["id"] != "1" || task["status"] != "TASK_STATUS_PENDING" || spec["timeout_ms"] != "0" || task["result"] != nil {
		t.Errorf("task status -o json is not the task:\n%s", out)
	}
	calls := n.Calls()
	if req := calls[len(calls)-1].Request.(*apiv1.GetTaskRequest); req.GetId() != 1 || !req.GetStale() {
		t.Errorf("GetTask request %v, want id 1, stale", req)
	}

	failAt(t, n, "error: id: no task 9", "task", "status", "9")
	failAt(t, n, `task id "x" is not a positive integer`, "task", "status", "x")
}
