package cli

import (
	"context"
	"encoding/json"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	apiv1 "github.com/blixard/blixard/api/v1"
	"github.com/blixard/blixard/client/clienttest"
)

// fastPolls makes --wait poll every millisecond for the rest of the test.
func fastPolls(t *testing.T) {
	old := taskPollInterval
	taskPollInterval = time.Millisecond
	t.Cleanup(func() { taskPollInterval = old })
}

func TestTaskSubmit(t *testing.T) {
	n := clienttest.Start(t, 1)
	got := mustRunAt(t, n, "task", "submit", "--vcpus", "2", "--memory", "256", "--timeout", "90s",
		"--env", "A=1", "--env", "B=x=y", "--", "ls", "-l", "/tmp")
	if want := "task 1 submitted: pending (submitted; waiting for placement)\n"; got != want {
		t.Errorf("task submit printed %q, want %q", got, want)
	}
	req := n.Calls()[0].Request.(*apiv1.SubmitTaskRequest)
	want := &apiv1.SubmitTaskRequest{ClientRequestId: req.GetClientRequestId(), Spec: &apiv1.TaskSpec{
		Command: "ls", Args: []string{"-l", "/tmp"}, Env: map[string]string{"A": "1", "B": "x=y"},
		Resources: &apiv1.Resources{Vcpus: 2, MemoryMib: 256}, TimeoutMs: 90000,
	}}
	if req.GetClientRequestId() == "" || !proto.Equal(req, want) {
		t.Errorf("SubmitTask request\n%v\nwant\n%v", req, want)
	}
}

func TestTaskSubmitDefaultsAndTaskFlags(t *testing.T) {
	n := clienttest.Start(t, 1)
	// Without "--", flags after the command belong to the task.
	out := mustRunAt(t, n, "task", "submit", "-o", "json", "grep", "-r", "--vcpus", ".")
	spec := n.Calls()[0].Request.(*apiv1.SubmitTaskRequest).GetSpec()
	want := &apiv1.TaskSpec{Command: "grep", Args: []string{"-r", "--vcpus", "."},
		Resources: &apiv1.Resources{Vcpus: 1, MemoryMib: 128}, TimeoutMs: 60000}
	if !proto.Equal(spec, want) {
		t.Errorf("task spec\n%v\nwant\n%v", spec, want)
	}
	var task map[string]any
	if err := json.Unmarshal([]byte(out), &task); err != nil || task["id"] != "1" || task["status"] != "TASK_STATUS_PENDING" {
		t.Errorf("task submit -o json (%v), want the task:\n%s", err, out)
	}
}

func TestTaskSubmitFlagErrors(t *testing.T) {
	n := clienttest.Start(t, 1)
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{}, "no command given: blixard task submit [flags] -- CMD [ARGS...] (see 'blixard task submit --help')"},
		{[]string{"--"}, "no command given"},
		{[]string{"--memory", "0", "true"}, "--memory must be at least 1 (MiB), got 0"},
		{[]string{"--vcpus", "0", "true"}, "--vcpus must be at least 1, got 0"},
		{[]string{"--timeout", "-1s", "true"}, "--timeout must be 0 (none) or at least 1ms, got -1s"},
		{[]string{"--timeout", "soon", "true"}, `invalid argument "soon" for "--timeout" flag`},
		{[]string{"--env", "NOVALUE", "true"}, `--env "NOVALUE" is not KEY=VALUE`},
		{[]string{"--wait", "--wait-timeout", "-1m", "true"}, "--wait-timeout must be 0 (no limit) or more, got -1m0s"},
	} {
		failAt(t, n, tc.want, append([]string{"task", "submit"}, tc.args...)...)
	}
	if len(n.Calls()) != 0 {
		t.Errorf("node got %d calls, want none", len(n.Calls()))
	}
}

// finishTask makes n move each task one step on every GetTask: running,
// then the given end.
func finishTask(n *clienttest.Node, end apiv1.TaskStatus, result *apiv1.TaskResult) {
	var polls atomic.Int32
	n.SetHook(func(_ context.Context, method string, req proto.Message, next func() (proto.Message, error)) (proto.Message, error) {
		if method == "GetTask" {
			id := req.(*apiv1.GetTaskRequest).GetId()
			switch polls.Add(1) {
			case 1:
				n.UpdateTask(id, func(t *apiv1.Task) {
					t.Status, t.NodeId, t.Attempt, t.Reason = apiv1.TaskStatus_TASK_STATUS_RUNNING, 2, 1, "started on node 2"
				})
			case 2:
				n.UpdateTask(id, func(t *apiv1.Task) { t.Status, t.Result, t.Reason = end, result, "" })
			}
		}
		return next()
	})
}

func TestTaskSubmitWaitSucceeds(t *testing.T) {
	fastPolls(t)
	n := clienttest.Start(t, 1)
	finishTask(n, apiv1.TaskStatus_TASK_STATUS_SUCCEEDED, &apiv1.TaskResult{
		ExitCode: 0, OutputTail: []byte("hello\tworld"),
		StartedUnixNano:  time.Date(2026, 1, 2, 3, 5, 0, 0, time.UTC).UnixNano(),
		FinishedUnixNano: time.Date(2026, 1, 2, 3, 5, 1, 0, time.UTC).UnixNano(),
	})
	stdout, stderr, err := runAt(t, n, "task", "submit", "--wait", "--", "echo", "hello")
	if err != nil {
		t.Fatalf("task submit --wait: %v (stderr %q)", err, stderr)
	}
	wantErr := `task 1 submitted
task 1: pending (submitted; waiting for placement)
task 1: running (started on node 2)
task 1: succeeded
`
	if stderr != wantErr {
		t.Errorf("progress on stderr\n%s\nwant\n%s", stderr, wantErr)
	}
	want := `ID:         1
Status:     succeeded
Command:    echo hello
Env:        -
vCPUs:      1
Memory:     128 MiB
Timeout:    1m0s
Node:       2
Attempt:    1
Submitted:  2026-01-02T03:04:06Z (index 1)
Updated:    index 1
Exit code:  0
Started:    2026-01-02T03:05:00Z
Finished:   2026-01-02T03:05:01Z
Error:      -
Output (last 11 bytes):
hello	world
`
	if stdout != want {
		t.Errorf("task submit --wait printed\n%s\nwant\n%s", stdout, want)
	}
}

func TestTaskSubmitWaitFails(t *testing.T) {
	fastPolls(t)
	n := clienttest.Start(t, 1)
	finishTask(n, apiv1.TaskStatus_TASK_STATUS_FAILED, &apiv1.TaskResult{ExitCode: 3})
	stdout, stderr, err := runAt(t, n, "task", "submit", "--wait", "-o", "json", "false")
	if err == nil {
		t.Fatal("task submit --wait of a failing task: no error")
	}
	if !strings.HasSuffix(stderr, "task 1: failed\nerror: task 1 failed: exit code 3\n") {
		t.Errorf("stderr %q, want progress then the failure", stderr)
	}
	var task map[string]any
	if err := json.Unmarshal([]byte(stdout), &task); err != nil || task["status"] != "TASK_STATUS_FAILED" {
		t.Errorf("stdout (%v), want the failed task as JSON:\n%s", err, stdout)
	}
}

func TestTaskSubmitWaitTimesOut(t *testing.T) {
	fastPolls(t)
	n := clienttest.Start(t, 1)
	stdout, stderr, err := runAt(t, n, "task", "submit", "--wait", "--wait-timeout", "20ms", "--", "sleep", "1")
	if err == nil {
		t.Fatal("task submit --wait of a task that never runs: no error")
	}
	want := "error: task 1 is still pending after 20ms; it stays in the cluster (this build does not run tasks yet): see 'blixard task status 1'\n"
	if !strings.HasSuffix(stderr, want) || stdout != "" {
		t.Errorf("stdout %q, stderr %q; want nothing, then progress ending in %q", stdout, stderr, want)
	}
}

func TestTaskSubmitWaitInterrupted(t *testing.T) {
	fastPolls(t)
	n := clienttest.Start(t, 1)
	ctx, cancel := context.WithCancel(context.Background())
	var polls atomic.Int32
	n.SetHook(func(_ context.Context, method string, _ proto.Message, next func() (proto.Message, error)) (proto.Message, error) {
		if method == "GetTask" && polls.Add(1) == 3 {
			cancel()
		}
		return next()
	})
	_, stderr, err := runContext(t, ctx, "--addr", n.Addr, "task", "submit", "--wait", "--wait-timeout", "0", "true")
	if err == nil || !strings.HasSuffix(stderr, "error: interrupted\n") {
		t.Errorf("interrupted --wait: err %v, stderr %q", err, stderr)
	}
}
