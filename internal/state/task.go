package state

import (
	"fmt"
	"strconv"
	"strings"

	"google.golang.org/protobuf/proto"

	apiv1 "github.com/blixard/blixard/api/v1"
)

func (s *State) lookupTask(id uint64) (*apiv1.Task, *Error) {
	t, ok := s.tasks[id]
	if !ok {
		return nil, notFound("id", "%s", s.NoTask(id))
	}
	return t, nil
}

// NoTask says why there is no task id: one that may have been forgotten
// (MaxEndedTasks) says so.
func (s *State) NoTask(id uint64) string {
	if id != 0 && id <= s.applied {
		return fmt.Sprintf("no task %d: there never was one, or it ended and was forgotten (the newest %d ended tasks are kept)", id, MaxEndedTasks)
	}
	return fmt.Sprintf("no task %d", id)
}

func checkTaskSpec(spec *apiv1.TaskSpec) *Error {
	if spec == nil {
		return invalid("spec", "must be set")
	}
	if spec.GetCommand() == "" {
		return invalid("spec.command", "must not be empty")
	}
	if err := checkText("spec.command", spec.GetCommand(), MaxCommandLen); err != nil {
		return err
	}
	if len(spec.GetArgs()) > MaxArgs {
		return invalid("spec.args", "has %d entries, at most %d allowed", len(spec.GetArgs()), MaxArgs)
	}
	for _, arg := range spec.GetArgs() {
		if err := checkText("spec.args", arg, MaxArgLen); err != nil {
			return err
		}
	}
	if err := checkMap("spec.env", spec.GetEnv(), checkKey); err != nil {
		return err
	}
	if err := checkText("spec.image", spec.GetImage(), MaxImageLen); err != nil {
		return err
	}
	if spec.GetTimeoutMs() > MaxTaskTimeoutMs {
		return invalid("spec.timeout_ms", "must be at most %d (30 days)", uint64(MaxTaskTimeoutMs))
	}
	if err := checkResources("spec.resources", spec.GetResources()); err != nil {
		return err
	}
	if spec.GetMaxAttempts() > MaxTaskAttempts {
		return invalid("spec.max_attempts", "must be at most %d", MaxTaskAttempts)
	}
	if spec.GetResources().GetVcpus() > MaxWorkloadVcpus {
		return invalid("spec.resources.vcpus", "must be between 1 and %d", MaxWorkloadVcpus)
	}
	return nil
}

func (s *State) checkSubmitTask(op *apiv1.SubmitTaskCommand) *Error {
	if err := checkTaskSpec(op.GetSpec()); err != nil {
		return err
	}
	return s.checkPlaceable("spec.image", "spec.resources.memory_mib", "spec.resources", op.GetSpec().GetImage(), op.GetSpec().GetResources())
}

// submitTask records a pending task. Its id is the log index of the
// submission: unique, and the same on every node.
func (s *State) submitTask(a at, op *apiv1.SubmitTaskCommand) *apiv1.Response {
	t := &apiv1.Task{
		Id:                a.index,
		Spec:              proto.CloneOf(op.GetSpec()),
		Status:            apiv1.TaskStatus_TASK_STATUS_PENDING,
		Reason:            "submitted; waiting for placement",
		SubmittedIndex:    a.index,
		UpdatedIndex:      a.index,
		SubmittedUnixNano: a.nanos,
	}
	s.tasks[t.Id] = t
	return &apiv1.Response{Kind: &apiv1.Response_SubmitTask{SubmitTask: &apiv1.SubmitTaskResponse{Task: proto.CloneOf(t)}}}
}

func (s *State) checkCancelTask(op *apiv1.CancelTaskCommand) *Error {
	t, err := s.lookupTask(op.GetId())
	if err != nil {
		return err
	}
	if t.GetStatus().Ended() {
		return precondition("id", "task %d has already ended: %s", op.GetId(), t.GetStatus())
	}
	return nil
}

// cancelTask ends the task; a node running it sees it cancelled and kills it.
func (s *State) cancelTask(a at, op *apiv1.CancelTaskCommand) *apiv1.Response {
	t := s.tasks[op.GetId()]
	t.Status = apiv1.TaskStatus_TASK_STATUS_CANCELLED
	t.Reason = "cancelled by user"
	t.UpdatedIndex = a.index
	return &apiv1.Response{Kind: &apiv1.Response_CancelTask{CancelTask: &apiv1.CancelTaskResponse{Task: proto.CloneOf(t)}}}
}

func (s *State) checkAssignTask(op *apiv1.AssignTaskCommand) *Error {
	t, err := s.lookupTask(op.GetId())
	if err != nil {
		return err
	}
	if t.GetStatus() != apiv1.TaskStatus_TASK_STATUS_PENDING {
		return precondition("id", "task %d is %s, not pending", op.GetId(), t.GetStatus())
	}
	return s.canPlace(op.GetNodeId(), t.GetSpec().GetImage(), t.GetSpec().GetResources(), nil)
}

func (s *State) assignTask(a at, op *apiv1.AssignTaskCommand) *apiv1.Response {
	t := s.tasks[op.GetId()]
	s.noteTaskMove(a, op.GetId(), op.GetNodeId())
	t.Status = apiv1.TaskStatus_TASK_STATUS_ASSIGNED
	t.NodeId = op.GetNodeId()
	t.Attempt++
	t.Reason = "placed on node " + strconv.FormatUint(op.GetNodeId(), 10)
	t.UpdatedIndex = a.index
	s.taskEvent(a, t)
	return &apiv1.Response{}
}

// taskEvent records a task's new status and its reason.
func (s *State) taskEvent(a at, t *apiv1.Task) {
	msg := strings.ToLower(strings.TrimPrefix(t.GetStatus().String(), "TASK_STATUS_"))
	if t.GetReason() != "" {
		msg += ": " + t.GetReason()
	}
	s.event(a, "task", t.GetNodeId(), "", t.GetId(), msg)
}

func (s *State) checkReportTask(op *apiv1.ReportTaskCommand) *Error {
	t, err := s.lookupTask(op.GetId())
	if err != nil {
		return err
	}
	if _, ok := s.nodes[op.GetNodeId()]; !ok {
		return notFound("node_id", "no node %d", op.GetNodeId())
	}
	if err := checkEnum("status", op.GetStatus(), false); err != nil {
		return err
	}
	switch op.GetStatus() {
	case apiv1.TaskStatus_TASK_STATUS_RUNNING, apiv1.TaskStatus_TASK_STATUS_SUCCEEDED, apiv1.TaskStatus_TASK_STATUS_FAILED,
		apiv1.TaskStatus_TASK_STATUS_LOST:
	default:
		return invalid("status", "a node cannot report %s", op.GetStatus())
	}
	if op.GetStatus() == apiv1.TaskStatus_TASK_STATUS_RUNNING && op.GetResult().GetFinishedUnixNano() != 0 {
		// The end time is what frees a cancelled task's node: only an
		// end report may carry one.
		return invalid("result.finished_unix_nano", "a running task has not finished")
	}
	if len(op.GetResult().GetOutputTail()) > MaxOutputTailBytes {
		return invalid("result.output_tail", "is %d bytes, at most %d allowed", len(op.GetResult().GetOutputTail()), MaxOutputTailBytes)
	}
	if err := checkText("result.error", op.GetResult().GetError(), MaxReasonLen); err != nil {
		return err
	}
	if op.GetNodeId() != t.GetNodeId() || op.GetAttempt() != t.GetAttempt() {
		return precondition("attempt", "stale report: task %d is at node %d attempt %d, report is from node %d attempt %d",
			op.GetId(), t.GetNodeId(), t.GetAttempt(), op.GetNodeId(), op.GetAttempt())
	}
	switch t.GetStatus() {
	case apiv1.TaskStatus_TASK_STATUS_ASSIGNED, apiv1.TaskStatus_TASK_STATUS_RUNNING:
	case apiv1.TaskStatus_TASK_STATUS_CANCELLED:
		if op.GetStatus() == apiv1.TaskStatus_TASK_STATUS_RUNNING {
			return precondition("status", "task %d was cancelled", op.GetId())
		}
		if !taskHolds(t) {
			// Its end is recorded: a second end report (a proposal made
			// again) changes nothing.
			return precondition("status", "task %d has already ended: %s", op.GetId(), t.GetStatus())
		}
	default:
		return precondition("status", "task %d has already ended: %s", op.GetId(), t.GetStatus())
	}
	return nil
}

// reportTask records a node's report. A cancelled task keeps its status but
// takes the result of its last attempt.
//
// A node reports an attempt lost when it fenced itself (its lease lapsed)
// and killed the task's VM: not the task's doing, so it is retried like a
// task whose node went down, or lost once it has had its attempts.
func (s *State) reportTask(a at, op *apiv1.ReportTaskCommand) *apiv1.Response {
	t := s.tasks[op.GetId()]
	if op.GetStatus() == apiv1.TaskStatus_TASK_STATUS_LOST && t.GetStatus() != apiv1.TaskStatus_TASK_STATUS_CANCELLED {
		why := op.GetResult().GetError()
		if why == "" {
			why = "node " + strconv.FormatUint(op.GetNodeId(), 10) + " lost it"
		}
		retryOrLose(a, t, why, op.GetResult())
		s.taskEvent(a, t)
		return &apiv1.Response{}
	}
	if t.GetStatus() != apiv1.TaskStatus_TASK_STATUS_CANCELLED {
		t.Status = op.GetStatus()
		node := strconv.FormatUint(op.GetNodeId(), 10)
		switch {
		case op.GetStatus() == apiv1.TaskStatus_TASK_STATUS_RUNNING:
			t.Reason = "running on node " + node
		case op.GetStatus() == apiv1.TaskStatus_TASK_STATUS_SUCCEEDED:
			t.Reason = "succeeded on node " + node
		case op.GetResult().GetError() != "":
			t.Reason = op.GetResult().GetError()
		default:
			t.Reason = "exited with code " + strconv.FormatInt(int64(op.GetResult().GetExitCode()), 10) + " on node " + node
		}
	}
	if op.GetResult() != nil {
		t.Result = proto.CloneOf(op.GetResult())
	}
	if op.GetStatus() != apiv1.TaskStatus_TASK_STATUS_RUNNING && t.GetResult().GetFinishedUnixNano() == 0 {
		// The end is recorded, with the proposer's time if the node gave
		// none: a cancelled task frees its node's resources by it.
		if t.Result == nil {
			t.Result = &apiv1.TaskResult{}
		}
		t.Result.FinishedUnixNano = max(a.nanos, 1)
	}
	t.UpdatedIndex = a.index
	if op.GetStatus() != apiv1.TaskStatus_TASK_STATUS_RUNNING || t.GetStatus() == apiv1.TaskStatus_TASK_STATUS_RUNNING {
		s.taskEvent(a, t)
	}
	return &apiv1.Response{}
}
