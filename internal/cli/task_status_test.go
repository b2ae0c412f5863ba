package cli

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

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
Image:      default
vCPUs:      1
Memory:     128 MiB
Timeout:    none
Node:       -
Attempt:    0 of 3
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

func TestTaskStatusEnded(t *testing.T) {
	started := time.Date(2026, 1, 2, 3, 5, 0, 0, time.UTC).UnixNano()
	tests := []struct {
		name   string
		status apiv1.TaskStatus
		reason string
		result *apiv1.TaskResult
		want   string // from the Status row on
	}{
		{
			name: "exit code", status: apiv1.TaskStatus_TASK_STATUS_FAILED, reason: "exit code 3",
			result: &apiv1.TaskResult{ExitCode: 3, OutputTail: []byte("hello\tworld"), StartedUnixNano: started,
				FinishedUnixNano: started + int64(1500*time.Millisecond), Error: "exit code 3"},
			want: `Status:     failed (exit code 3)
Command:    sh -c "echo hello; exit 3"
Env:        -
Image:      tools
vCPUs:      1
Memory:     128 MiB
Timeout:    1m0s
Node:       2
Attempt:    1 of 3
Submitted:  2026-01-02T03:04:06Z (index 1)
Updated:    index 1
Exit code:  3
Started:    2026-01-02T03:05:00Z
Finished:   2026-01-02T03:05:01Z
Duration:   1.5s
Error:      exit code 3
Output (last 11 bytes):
hello	world
`,
		},
		{
			name: "killed without an exit code", status: apiv1.TaskStatus_TASK_STATUS_FAILED, reason: "qemu exited: signal: killed",
			result: &apiv1.TaskResult{ExitCode: -1, FinishedUnixNano: started, Error: "qemu exited: signal: killed"},
			want: `Status:     failed (qemu exited: signal: killed)
Command:    sh -c "echo hello; exit 3"
Env:        -
Image:      tools
vCPUs:      1
Memory:     128 MiB
Timeout:    1m0s
Node:       2
Attempt:    1 of 3
Submitted:  2026-01-02T03:04:06Z (index 1)
Updated:    index 1
Exit code:  none
Started:    -
Finished:   2026-01-02T03:05:00Z
Duration:   -
Error:      qemu exited: signal: killed
`,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			n := clienttest.Start(t, 1)
			mustRunAt(t, n, "task", "submit", "--image", "tools", "--", "sh", "-c", "echo hello; exit 3")
			n.UpdateTask(1, func(task *apiv1.Task) {
				task.Status, task.Reason, task.Result, task.NodeId, task.Attempt = tc.status, tc.reason, tc.result, 2, 1
			})
			got := mustRunAt(t, n, "task", "status", "1")
			if want := "ID:         1\n" + tc.want; got != want {
				t.Errorf("task status printed\n%s\nwant\n%s", got, want)
			}
		})
	}
}

func TestTaskStatusAttemptOfMax(t *testing.T) {
	for _, tc := range []struct {
		flags   []string
		attempt uint32
		want    string
	}{
		{nil, 2, "2 of 3"},
		{[]string{"--max-attempts", "5"}, 4, "4 of 5"},
		{[]string{"--max-attempts", "1"}, 1, "1 of 1"},
	} {
		n := clienttest.Start(t, 1)
		mustRunAt(t, n, append(append([]string{"task", "submit"}, tc.flags...), "--", "true")...)
		n.UpdateTask(1, func(task *apiv1.Task) { task.Attempt = tc.attempt })
		if got := mustRunAt(t, n, "task", "status", "1"); !strings.Contains(got, "\nAttempt:    "+tc.want+"\n") {
			t.Errorf("task submit %v, attempt %d: task status shows\n%s\nwant Attempt: %s", tc.flags, tc.attempt, got, tc.want)
		}
	}
}
