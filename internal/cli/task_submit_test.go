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

func TestTaskSubmitMaxAttempts(t *testing.T) {
	for _, tc := range []struct {
		flags []string
		want  uint32
	}{
		{nil, 0}, // the cluster's default
		{[]string{"--max-attempts", "0"}, 0},
		{[]string{"--max-attempts", "1"}, 1},
		{[]string{"--max-attempts", "5"}, 5},
		{[]string{"--max-attempts", "100"}, 100},
	} {
		n := clienttest.Start(t, 1)
		mustRunAt(t, n, append(append([]string{"task", "submit"}, tc.flags...), "--", "true")...)
		if got := n.Calls()[0].Request.(*apiv1.SubmitTaskRequest).GetSpec().GetMaxAttempts(); got != tc.want {
			t.Errorf("task submit %v: max_attempts %d, want %d", tc.flags, got, tc.want)
		}
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
		{[]string{"--max-attempts", "-1", "true"}, "--max-attempts must be 0 (the default, 3) to 100, got -1"},
		{[]string{"--max-attempts", "101", "true"}, "--max-attempts must be 0 (the default, 3) to 100, got 101"},
		{[]string{"--max-attempts", "many", "true"}, `invalid argument "many" for "--max-attempts" flag`},
	} {
		failAt(t, n, tc.want, append([]string{"task", "submit"}, tc.args...)...)
	}
	if len(n.Calls()) != 0 {
		t.Errorf("node got %d calls, want none", len(n.Calls()))
	}
}

// finishTask makes n move each task one step on every GetTask: running,
// then the given end with its result and reason.
func finishTask(n *clienttest.Node, end apiv1.TaskStatus, result *apiv1.TaskResult, reason string) {
	var polls atomic.Int32
	n.SetHook(func(_ context.Context, method string, req proto.Message, next func() (proto.Message, error)) (proto.Message, error) {
		if method == "GetTask" {
			id := req.(*apiv1.GetTaskRequest).GetId()
			switch polls.Add(1) {
			case 1:
				n.UpdateTask(id, func(t *apiv1.Task) {
					t.Status, t.NodeId, t.Attempt, t.Reason = apiv1.TaskStatus_TASK_STATUS_RUNNING, 2, 1, "running on node 2"
				})
			case 2:
				n.UpdateTask(id, func(t *apiv1.Task) { t.Status, t.Result, t.Reason = end, result, reason })
			}
		}
		return next()
	})
}

func TestTaskSubmitImage(t *testing.T) {
	n := clienttest.Start(t, 1)
	mustRunAt(t, n, "task", "submit", "--image", "tools", "--", "true")
	if spec := n.Calls()[0].Request.(*apiv1.SubmitTaskRequest).GetSpec(); spec.GetImage() != "tools" {
		t.Errorf("task spec %v, want image tools", spec)
	}
}

// TestTaskSubmitWait checks what --wait prints and how it exits for each
// way a task can end: stdout is exactly the task's output (or, with -o
// json, the task), stderr the progress and at most one error line.
func TestTaskSubmitWait(t *testing.T) {
	started := time.Date(2026, 1, 2, 3, 5, 0, 0, time.UTC).UnixNano()
	finished := time.Date(2026, 1, 2, 3, 5, 1, 0, time.UTC).UnixNano()
	result := func(code int32, out, errText string) *apiv1.TaskResult {
		return &apiv1.TaskResult{ExitCode: code, OutputTail: []byte(out), StartedUnixNano: started, FinishedUnixNano: finished, Error: errText}
	}
	const progress = "task 1 submitted\ntask 1: pending (submitted; waiting for placement)\ntask 1: running (running on node 2)\n"
	tests := []struct {
		name     string
		json     bool
		end      apiv1.TaskStatus
		result   *apiv1.TaskResult
		reason   string
		wantOut  string
		wantErr  string // stderr after the progress lines
		wantCode int    // ExitCode of the error; 0 for none
	}{
		{
			name: "succeeded", end: apiv1.TaskStatus_TASK_STATUS_SUCCEEDED,
			result: result(0, "hello\tworld", ""), reason: "succeeded on node 2",
			wantOut: "hello\tworld", wantErr: "task 1: succeeded (succeeded on node 2)\n",
		},
		{
			name: "exit code", end: apiv1.TaskStatus_TASK_STATUS_FAILED,
			result: result(3, "hello\n", "exit code 3"), reason: "exit code 3",
			wantOut: "hello\n", wantErr: "task 1: failed (exit code 3)\nerror: task 1 exited with code 3\n", wantCode: 3,
		},
		{
			name: "exit code without an error text", end: apiv1.TaskStatus_TASK_STATUS_FAILED,
			result: result(255, "", ""), reason: "exited with code 255 on node 2",
			wantErr: "task 1: failed (exited with code 255 on node 2)\nerror: task 1 exited with code 255\n", wantCode: 255,
		},
		{
			name: "killed by a signal", end: apiv1.TaskStatus_TASK_STATUS_FAILED,
			result: result(137, "partial", "killed by signal 9 (killed)"), reason: "killed by signal 9 (killed)",
			wantOut:  "partial",
			wantErr:  "task 1: failed (killed by signal 9 (killed))\nerror: task 1 exited with code 137 (killed by signal 9 (killed))\n",
			wantCode: 137,
		},
		{
			name: "timeout", end: apiv1.TaskStatus_TASK_STATUS_FAILED,
			result: result(137, "tick\ntick\n", "timeout"), reason: "timeout",
			wantOut: "tick\ntick\n", wantErr: "task 1: failed (timeout)\nerror: task 1 failed: timeout: killed after its timeout of 1m0s\n", wantCode: 1,
		},
		{
			name: "host backstop timeout", end: apiv1.TaskStatus_TASK_STATUS_FAILED,
			result: result(-1, "", "timeout; the process did not exit after SIGKILL"), reason: "timeout; the process did not exit after SIGKILL",
			wantErr:  "task 1: failed (timeout; the process did not exit after SIGKILL)\nerror: task 1 failed: timeout: killed after its timeout of 1m0s\n",
			wantCode: 1,
		},
		{
			name: "VM failed", end: apiv1.TaskStatus_TASK_STATUS_FAILED,
			result: result(-1, "", "boot timeout: no ready frame in 1m0s"), reason: "boot timeout: no ready frame in 1m0s",
			wantErr:  "task 1: failed (boot timeout: no ready frame in 1m0s)\nerror: task 1 failed: boot timeout: no ready frame in 1m0s\n",
			wantCode: 1,
		},
		{
			name: "cancelled", end: apiv1.TaskStatus_TASK_STATUS_CANCELLED, reason: "cancelled by user",
			wantErr: "task 1: cancelled (cancelled by user)\nerror: task 1 cancelled: cancelled by user\n", wantCode: 1,
		},
		{
			name: "lost", end: apiv1.TaskStatus_TASK_STATUS_LOST, reason: "node 2 is down",
			wantErr: "task 1: lost (node 2 is down)\nerror: task 1 lost: node 2 is down\n", wantCode: 1,
		},
		{
			name: "json, exit code", json: true, end: apiv1.TaskStatus_TASK_STATUS_FAILED,
			result: result(3, "hello\n", "exit code 3"), reason: "exit code 3",
			wantErr: "task 1: failed (exit code 3)\nerror: task 1 exited with code 3\n", wantCode: 3,
		},
		{
			name: "json, succeeded", json: true, end: apiv1.TaskStatus_TASK_STATUS_SUCCEEDED,
			result: result(0, "hello\n", ""), reason: "succeeded on node 2",
			wantErr: "task 1: succeeded (succeeded on node 2)\n",
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			fastPolls(t)
			n := clienttest.Start(t, 1)
			finishTask(n, tc.end, tc.result, tc.reason)
			args := []string{"task", "submit", "--wait"}
			if tc.json {
				args = append(args, "-o", "json")
			}
			stdout, stderr, err := runAt(t, n, append(args, "--", "sh", "-c", "echo hello; exit 3")...)
			if got := exitCodeOf(err); got != tc.wantCode {
				t.Errorf("exit code %d (err %v), want %d", got, err, tc.wantCode)
			}
			if stderr != progress+tc.wantErr {
				t.Errorf("stderr\n%s\nwant\n%s", stderr, progress+tc.wantErr)
			}
			if !tc.json {
				if stdout != tc.wantOut {
					t.Errorf("stdout %q, want the task's output %q", stdout, tc.wantOut)
				}
				return
			}
			var task map[string]any
			if err := json.Unmarshal([]byte(stdout), &task); err != nil || task["status"] != tc.end.String() {
				t.Errorf("stdout (%v), want the ended task as JSON:\n%s", err, stdout)
			}
		})
	}
}

// exitCodeOf is the process's exit status for err (0 for none).
func exitCodeOf(err error) int {
	if err == nil {
		return 0
	}
	return ExitCode(err)
}

func TestTaskSubmitWaitTimesOut(t *testing.T) {
	fastPolls(t)
	n := clienttest.Start(t, 1)
	stdout, stderr, err := runAt(t, n, "task", "submit", "--wait", "--wait-timeout", "20ms", "--", "sleep", "1")
	if err == nil || ExitCode(err) != 1 {
		t.Fatalf("task submit --wait of a task that does not end in time: err %v, want one with exit status 1", err)
	}
	want := "error: task 1 is still pending after 20ms; it goes on in the cluster: see 'blixard task status 1', or stop it with 'blixard task cancel 1'\n"
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
	_, stderr, err := runContext(t, ctx, "--addr", n.Addr, "--insecure", "task", "submit", "--wait", "--wait-timeout", "0", "true")
	if err == nil || !strings.HasSuffix(stderr, "error: interrupted\n") {
		t.Errorf("interrupted --wait: err %v, stderr %q", err, stderr)
	}
}

// TestTaskSubmitWaitQuiet checks that -q leaves only the result on stdout
// and the error on stderr.
func TestTaskSubmitWaitQuiet(t *testing.T) {
	fastPolls(t)
	n := clienttest.Start(t, 1)
	finishTask(n, apiv1.TaskStatus_TASK_STATUS_FAILED, &apiv1.TaskResult{ExitCode: 3, OutputTail: []byte("hello\n"), Error: "exit code 3"}, "exit code 3")
	stdout, stderr, err := runAt(t, n, "-q", "task", "submit", "--wait", "--", "sh", "-c", "echo hello; exit 3")
	if exitCodeOf(err) != 3 || stdout != "hello\n" || stderr != "error: task 1 exited with code 3\n" {
		t.Errorf("exit status %d, stdout %q, stderr %q; want 3, the output, and the error alone", exitCodeOf(err), stdout, stderr)
	}
}

// TestTaskSubmitWaitOnTerminal checks --wait with stderr a terminal: the
// note, then one line drawn in place and finished with a newline, then the
// error; stdout is the task's output as anywhere else.
func TestTaskSubmitWaitOnTerminal(t *testing.T) {
	fastPolls(t)
	fakeTerminal(t)
	n := clienttest.Start(t, 1)
	finishTask(n, apiv1.TaskStatus_TASK_STATUS_FAILED, &apiv1.TaskResult{ExitCode: 3, OutputTail: []byte("hello\n"), Error: "exit code 3"}, "exit code 3")
	stdout, stderr, err := runAt(t, n, "task", "submit", "--wait", "--", "sh", "-c", "echo hello; exit 3")
	const erase = "\r\x1b[K"
	want := "task 1 submitted\n" +
		erase + "| task 1: pending (submitted; waiting for placement) [1s]" +
		erase + "/ task 1: pending → running (running on node 2) [2s]" +
		erase + "- task 1: running → failed (exit code 3) [3s]" +
		erase + "task 1: failed (exit code 3) [4s]\n" +
		"error: task 1 exited with code 3\n"
	if exitCodeOf(err) != 3 || stdout != "hello\n" || stderr != want {
		t.Errorf("exit status %d, stdout %q, stderr\n%q\nwant\n%q", exitCodeOf(err), stdout, stderr, want)
	}
}
