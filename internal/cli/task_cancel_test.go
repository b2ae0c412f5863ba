package cli

import (
	"encoding/json"
	"testing"

	apiv1 "github.com/blixard/blixard/api/v1"
	"github.com/blixard/blixard/client/clienttest"
)

func TestTaskCancel(t *testing.T) {
	n := clienttest.Start(t, 1)
	mustRunAt(t, n, "task", "submit", "true")
	mustRunAt(t, n, "task", "submit", "true")
	if got := mustRunAt(t, n, "task", "cancel", "1"); got != "task 1: cancelled (cancelled)\n" {
		t.Errorf("task cancel printed %q", got)
	}
	calls := n.Calls()
	if req := calls[len(calls)-1].Request.(*apiv1.CancelTaskRequest); req.GetId() != 1 || req.GetClientRequestId() == "" {
		t.Errorf("CancelTask request %v", req)
	}
	failAt(t, n, "error: id: task 1 has already ended: TASK_STATUS_CANCELLED", "task", "cancel", "1")
	failAt(t, n, "error: id: no task 7", "task", "cancel", "7")
	failAt(t, n, `task id "-1" is not a positive integer`, "task", "cancel", "--", "-1")

	out := mustRunAt(t, n, "task", "cancel", "2", "-o", "json")
	var task map[string]any
	if err := json.Unmarshal([]byte(out), &task); err != nil || task["id"] != "2" || task["status"] != "TASK_STATUS_CANCELLED" {
		t.Errorf("task cancel -o json (%v):\n%s", err, out)
	}
}
