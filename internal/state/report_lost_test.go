package state_test

import (
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"

	apiv1 "github.com/blixard/blixard/api/v1"
)

// A node that fences itself (its lease lapsed) kills the VMs of the tasks
// it runs and reports each attempt TASK_STATUS_LOST: not the task's doing,
// so the task is tried again like one whose node went down, or lost once
// it has had its attempts.

// fenceWhy is what a fenced node says in the lost attempt's result.
const fenceWhy = "fenced: node 1 heard from no quorum for its lease period"

// lostReport is node's report that attempt of task id was lost, with why
// as the result's error, proposed at nanos.
func lostReport(id, node uint64, attempt uint32, why string, nanos int64) *apiv1.Command {
	return proposedAt(nanos, reportTask(id, node, attempt, tsLost, &apiv1.TaskResult{ExitCode: -1, FinishedUnixNano: 7, Error: why}))
}

func TestReportTaskLostRetriesWhileAttemptsRemain(t *testing.T) {
	withAttempts := func(n uint32) *apiv1.TaskSpec {
		spec := taskSpec("make", 1, 256)
		spec.MaxAttempts = n
		return spec
	}
	tests := []struct {
		name      string
		setup     func(h *harness) uint64 // the task, on node 1
		why       string                  // the report's error
		attempt   uint32
		reasonHas []string
	}{
		{name: "running at attempt 1 of 3", setup: func(h *harness) uint64 {
			return runTask(h, taskSpec("make", 1, 256), 1, true)
		}, why: fenceWhy, attempt: 1, reasonHas: []string{fenceWhy, "attempt 1 of 3", "placed again"}},
		{name: "assigned, not yet running", setup: func(h *harness) uint64 {
			return runTask(h, taskSpec("make", 1, 256), 1, false)
		}, why: fenceWhy, attempt: 1, reasonHas: []string{fenceWhy, "attempt 1 of 3"}},
		{name: "attempt 1 of 2", setup: func(h *harness) uint64 {
			return runTask(h, withAttempts(2), 1, true)
		}, why: fenceWhy, attempt: 1, reasonHas: []string{fenceWhy, "attempt 1 of 2"}},
		{name: "attempt 2 of 3, after a first lost attempt", setup: func(h *harness) uint64 {
			id := runTask(h, taskSpec("make", 1, 256), 1, true)
			h.ok(lostReport(id, 1, 1, fenceWhy, 5))
			placeTask(h, id, 1, true)
			return id
		}, why: fenceWhy, attempt: 2, reasonHas: []string{fenceWhy, "attempt 2 of 3"}},
		{name: "no error given", setup: func(h *harness) uint64 {
			return runTask(h, taskSpec("make", 1, 256), 1, true)
		}, why: "", attempt: 1, reasonHas: []string{"node 1 lost it", "attempt 1 of 3"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t)
			h.ok(registerNode(1, 8, 8192, nil))
			h.ok(registerNode(2, 8, 8192, nil))
			id := tc.setup(h)
			before := h.task(id)
			if before.GetAttempt() != tc.attempt || before.GetNodeId() != 1 {
				t.Fatalf("setup: task at attempt %d on node %d, want attempt %d on node 1", before.GetAttempt(), before.GetNodeId(), tc.attempt)
			}

			h.ok(lostReport(id, 1, tc.attempt, tc.why, 777))
			at := h.idx

			got := h.task(id)
			if got.GetStatus() != tsPending || got.GetAttempt() != tc.attempt || got.GetNodeId() != 0 || got.GetUpdatedIndex() != at {
				t.Fatalf("task after a lost report: %v at attempt %d on node %d (updated %d), want pending at attempt %d on no node (updated %d)",
					got.GetStatus(), got.GetAttempt(), got.GetNodeId(), got.GetUpdatedIndex(), tc.attempt, at)
			}
			for _, want := range tc.reasonHas {
				if !strings.Contains(got.GetReason(), want) {
					t.Fatalf("task reason = %q, want it to contain %q", got.GetReason(), want)
				}
			}
			// It waits for a node again, and holds nothing on node 1.
			if !containsTask(h.s.PendingTasks(0), id) || containsTask(h.s.TasksOn(1), id) || !isZero(h.s.Allocated(1)) {
				t.Fatalf("lost attempt: pending %v, on node 1 %v, node 1 holds %v; want pending and nothing held",
					taskIDs(h.s.PendingTasks(0)), taskIDs(h.s.TasksOn(1)), h.s.Allocated(1))
			}
			checkRestoreAgrees(t, h.s, 1, 2)

			// The lost attempt's reports are stale now, whatever they say.
			for _, st := range []apiv1.TaskStatus{tsLost, tsRunning, tsSucceeded, tsFailed} {
				h.reject(reportTask(id, 1, tc.attempt, st, nil), codePrecond, "attempt")
			}

			// Placed again, it is a new attempt; only that attempt's node may
			// report it.
			h.ok(assignTask(id, 2))
			if a := h.task(id); a.GetStatus() != tsAssigned || a.GetAttempt() != tc.attempt+1 || a.GetNodeId() != 2 {
				t.Fatalf("task placed again: %v at attempt %d on node %d, want assigned at attempt %d on node 2",
					a.GetStatus(), a.GetAttempt(), a.GetNodeId(), tc.attempt+1)
			}
			h.reject(lostReport(id, 1, tc.attempt, fenceWhy, 1), codePrecond, "attempt")
			h.reject(lostReport(id, 1, tc.attempt+1, fenceWhy, 1), codePrecond, "attempt")
			h.reject(lostReport(id, 2, tc.attempt, fenceWhy, 1), codePrecond, "attempt")
			h.ok(reportTask(id, 2, tc.attempt+1, tsRunning, nil))
			checkRestoreAgrees(t, h.s, 1, 2)
		})
	}
}

func TestReportTaskLostAtLastAttemptLosesTheTask(t *testing.T) {
	tests := []struct {
		name    string
		setup   func(h *harness) uint64
		clock   int64 // proposer's clock on the report
		attempt uint32
		of      string
	}{
		{name: "max_attempts 1", setup: func(h *harness) uint64 {
			spec := taskSpec("make", 1, 256)
			spec.MaxAttempts = 1
			return runTask(h, spec, 1, true)
		}, clock: 777, attempt: 1, of: "attempt 1 of 1"},
		{name: "the last of the default 3, lost twice before", setup: func(h *harness) uint64 {
			id := runTask(h, taskSpec("make", 1, 256), 1, true)
			for i := uint32(1); i <= 2; i++ {
				h.ok(lostReport(id, 1, i, fenceWhy, 5))
				placeTask(h, id, 1, true)
			}
			return id
		}, clock: 777, attempt: 3, of: "attempt 3 of 3"},
		{name: "max_attempts 1, assigned, no proposer clock", setup: func(h *harness) uint64 {
			spec := taskSpec("make", 1, 256)
			spec.MaxAttempts = 1
			return runTask(h, spec, 1, false)
		}, clock: 0, attempt: 1, of: "attempt 1 of 1"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t)
			h.ok(registerNode(1, 8, 8192, nil))
			h.ok(registerNode(2, 8, 8192, nil))
			id := tc.setup(h)

			h.ok(lostReport(id, 1, tc.attempt, fenceWhy, tc.clock))
			at := h.idx

			got := h.task(id)
			if got.GetStatus() != tsLost || got.GetAttempt() != tc.attempt || got.GetUpdatedIndex() != at {
				t.Fatalf("task after its last attempt was lost: %v at attempt %d (updated %d), want lost at attempt %d (updated %d)",
					got.GetStatus(), got.GetAttempt(), got.GetUpdatedIndex(), tc.attempt, at)
			}
			for _, want := range []string{fenceWhy, tc.of, "lost"} {
				if !strings.Contains(got.GetReason(), want) {
					t.Fatalf("task reason = %q, want it to contain %q", got.GetReason(), want)
				}
			}
			wantFinished := max(tc.clock, 1)
			if r := got.GetResult(); r.GetExitCode() != -1 || r.GetFinishedUnixNano() != wantFinished || r.GetError() != got.GetReason() {
				t.Fatalf("lost task's result = %v, want exit -1, finished at %d, error = the reason %q", r, wantFinished, got.GetReason())
			}
			if containsTask(h.s.PendingTasks(0), id) || containsTask(h.s.TasksOn(1), id) || !isZero(h.s.Allocated(1)) {
				t.Fatalf("lost task: pending %v, on node 1 %v, node 1 holds %v; want neither, and nothing held",
					taskIDs(h.s.PendingTasks(0)), taskIDs(h.s.TasksOn(1)), h.s.Allocated(1))
			}
			checkRestoreAgrees(t, h.s, 1, 2)

			// It has ended: nothing more moves it.
			h.reject(assignTask(id, 2), codePrecond, "id")
			h.reject(lostReport(id, 1, tc.attempt, fenceWhy, 1), codePrecond, "status")
			h.reject(reportTask(id, 1, tc.attempt, tsSucceeded, nil), codePrecond, "status")
			h.reject(cancelTask(id), codePrecond, "id")
		})
	}
}

func TestReportTaskLostOnCancelledTaskOnlyStampsItsEnd(t *testing.T) {
	tests := []struct {
		name     string
		running  bool
		finished int64 // in the report
		clock    int64 // proposer's clock
		want     int64 // the end recorded
	}{
		{name: "running, the report has no end", running: true, finished: 0, clock: 888, want: 888},
		{name: "running, the report's end kept", running: true, finished: 9, clock: 888, want: 9},
		{name: "assigned, no end, no clock", running: false, finished: 0, clock: 0, want: 1},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t)
			h.ok(registerNode(1, 8, 8192, nil))
			id := runTask(h, taskSpec("make", 1, 256), 1, tc.running)
			h.ok(cancelTask(id))
			before := h.task(id)
			if !containsTask(h.s.TasksOn(1), id) {
				t.Fatalf("setup: a cancelled task whose VM has not ended should still hold node 1")
			}

			h.ok(proposedAt(tc.clock, reportTask(id, 1, 1, tsLost, &apiv1.TaskResult{ExitCode: -1, FinishedUnixNano: tc.finished, Error: fenceWhy})))
			at := h.idx

			got := h.task(id)
			if got.GetStatus() != tsCancelled || got.GetAttempt() != before.GetAttempt() || got.GetNodeId() != 1 ||
				got.GetReason() != before.GetReason() || got.GetUpdatedIndex() != at {
				t.Fatalf("cancelled task after a lost report: %v, want still cancelled at attempt %d on node 1 with reason %q (updated %d)",
					got, before.GetAttempt(), before.GetReason(), at)
			}
			if r := got.GetResult(); r.GetFinishedUnixNano() != tc.want || r.GetError() != fenceWhy {
				t.Fatalf("cancelled task's result = %v, want finished at %d with error %q", r, tc.want, fenceWhy)
			}
			// Its end frees node 1; it is not placed again.
			if containsTask(h.s.TasksOn(1), id) || !isZero(h.s.Allocated(1)) || containsTask(h.s.PendingTasks(0), id) {
				t.Fatalf("cancelled task after its end: on node 1 %v, node 1 holds %v, pending %v",
					taskIDs(h.s.TasksOn(1)), h.s.Allocated(1), taskIDs(h.s.PendingTasks(0)))
			}
			checkRestoreAgrees(t, h.s, 1)
			h.reject(assignTask(id, 1), codePrecond, "id")
		})
	}
}

func TestReportTaskLostRefusals(t *testing.T) {
	h := newHarness(t)
	h.ok(registerNode(1, 8, 8192, nil))
	h.ok(registerNode(2, 8, 8192, nil))

	// From a node the task is not on, or for another attempt.
	id := runTask(h, taskSpec("make", 1, 256), 1, true)
	before := h.task(id)
	h.reject(lostReport(id, 2, 1, fenceWhy, 1), codePrecond, "attempt")
	h.reject(lostReport(id, 1, 2, fenceWhy, 1), codePrecond, "attempt")
	h.reject(lostReport(id, 1, 0, fenceWhy, 1), codePrecond, "attempt")
	// From a node that does not exist; of a task that does not.
	h.reject(lostReport(id, 9, 1, fenceWhy, 1), codeNotFound, "node_id")
	h.reject(lostReport(id+100, 1, 1, fenceWhy, 1), codeNotFound, "id")
	// An error longer than a reason may be.
	h.reject(lostReport(id, 1, 1, strings.Repeat("x", 10000), 1), codeInvalid, "result.error")
	if got := h.task(id); !proto.Equal(got, before) {
		t.Fatalf("refused reports changed the task:\nbefore %v\nafter  %v", before, got)
	}

	// Of a task still pending (never placed).
	pending := h.submit(taskSpec("make", 1, 256))
	h.reject(lostReport(pending, 1, 0, fenceWhy, 1), codePrecond, "attempt")
	h.reject(lostReport(pending, 1, 1, fenceWhy, 1), codePrecond, "attempt")
	if got := h.task(pending); got.GetStatus() != tsPending || got.GetAttempt() != 0 {
		t.Fatalf("refused reports changed the pending task: %v", got)
	}

	// Of a task that has ended on its own.
	h.ok(reportTask(id, 1, 1, tsSucceeded, &apiv1.TaskResult{FinishedUnixNano: 9}))
	done := h.task(id)
	h.reject(lostReport(id, 1, 1, fenceWhy, 1), codePrecond, "status")
	if got := h.task(id); !proto.Equal(got, done) || got.GetStatus() != tsSucceeded {
		t.Fatalf("a lost report after success changed the task: %v", got)
	}
	checkRestoreAgrees(t, h.s, 1, 2)
}

// A task lost at its last attempt keeps when that attempt started and the
// tail of its output: from the node's report when it gives them, else from
// what the attempt had reported. A task that waits again for another
// attempt shows no result until that attempt has one.
func TestLostTaskKeepsItsAttemptsStartAndOutput(t *testing.T) {
	h := newHarness(t)
	h.ok(registerNode(1, 8, 8192, nil))
	spec := taskSpec("make", 1, 256)
	spec.MaxAttempts = 2
	id := runTask(h, spec, 1, false)
	h.ok(reportTask(id, 1, 1, apiv1.TaskStatus_TASK_STATUS_RUNNING, &apiv1.TaskResult{StartedUnixNano: 40}))
	h.ok(lostReport(id, 1, 1, fenceWhy, 50))
	if r := h.task(id).GetResult(); r != nil {
		t.Fatalf("a task waiting for its second attempt shows result %v, want none", r)
	}

	placeTask(h, id, 1, false)
	h.ok(reportTask(id, 1, 2, apiv1.TaskStatus_TASK_STATUS_RUNNING, &apiv1.TaskResult{StartedUnixNano: 60}))
	lost := &apiv1.TaskResult{ExitCode: -1, FinishedUnixNano: 7, Error: fenceWhy, OutputTail: []byte("half done\n")}
	h.ok(proposedAt(70, reportTask(id, 1, 2, tsLost, lost)))
	r := h.task(id).GetResult()
	if h.task(id).GetStatus() != tsLost || r.GetStartedUnixNano() != 60 || string(r.GetOutputTail()) != "half done\n" || r.GetFinishedUnixNano() != 70 {
		t.Fatalf("lost at its last attempt: %v, result %v; want lost, started 60, the reported output, finished 70",
			h.task(id).GetStatus(), r)
	}

	// Lost with its node (an eviction): the attempt's own start stays.
	h.ok(registerNode(2, 8, 8192, nil))
	spec.MaxAttempts = 1
	id = runTask(h, spec, 2, false)
	h.ok(reportTask(id, 2, 1, apiv1.TaskStatus_TASK_STATUS_RUNNING, &apiv1.TaskResult{StartedUnixNano: 80}))
	h.ok(&apiv1.Command{Op: &apiv1.Command_SetNodeStatus{SetNodeStatus: &apiv1.SetNodeStatusCommand{
		Id: 2, Status: apiv1.NodeStatus_NODE_STATUS_DOWN, Reason: "no heartbeat for 6s"}}})
	if r := h.task(id).GetResult(); h.task(id).GetStatus() != tsLost || r.GetStartedUnixNano() != 80 {
		t.Fatalf("lost with its node: %v, result %v; want lost, started 80", h.task(id).GetStatus(), r)
	}
}
