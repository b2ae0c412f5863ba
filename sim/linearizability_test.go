package sim

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	apiv1 "github.com/blixard/blixard/api/v1"
)

// Hand-made histories. Times are in milliseconds of virtual time.

var (
	linVmSpec    = &apiv1.VmSpec{Vcpus: 1, MemoryMib: 256, Image: "alpine"}
	linOtherSpec = &apiv1.VmSpec{Vcpus: 2, MemoryMib: 512, Image: "debian"}
	linTaskA     = &apiv1.TaskSpec{Command: "a", Resources: &apiv1.Resources{Vcpus: 1, MemoryMib: 64}}
	linTaskB     = &apiv1.TaskSpec{Command: "b", Resources: &apiv1.Resources{Vcpus: 1, MemoryMib: 64}}
)

// linHB builds a history; each write gets its own client request id unless
// one is given.
type linHB struct {
	ops  []*Op
	keys int
}

func linMs(n int) time.Duration { return time.Duration(n) * time.Millisecond }

func (b *linHB) add(client uint64, req *apiv1.Request, resp *apiv1.Response, call, ret int) *Op {
	if IsWrite(req) && ClientRequestID(req) == "" {
		b.keys++
		setClientRequestID(req, fmt.Sprintf("k%d", b.keys))
	}
	op := &Op{Client: client, Key: ClientRequestID(req), Req: req, Write: IsWrite(req), Resp: resp, Call: linMs(call), Return: linMs(ret), Attempts: 1}
	if resp == nil && op.Write {
		op.Indeterminate = true
	}
	b.ops = append(b.ops, op)
	return op
}

func (b *linHB) history() *History {
	h := newHistory()
	for _, op := range b.ops {
		h.add(op)
	}
	return h
}

func lreqCreate(name string, start bool, spec *apiv1.VmSpec) *apiv1.Request {
	return &apiv1.Request{Kind: &apiv1.Request_CreateVm{CreateVm: &apiv1.CreateVmRequest{Name: name, Start: start, Spec: spec}}}
}
func lreqStart(name string) *apiv1.Request {
	return &apiv1.Request{Kind: &apiv1.Request_StartVm{StartVm: &apiv1.StartVmRequest{Name: name}}}
}
func lreqStop(name string) *apiv1.Request {
	return &apiv1.Request{Kind: &apiv1.Request_StopVm{StopVm: &apiv1.StopVmRequest{Name: name}}}
}
func lreqDelete(name string) *apiv1.Request {
	return &apiv1.Request{Kind: &apiv1.Request_DeleteVm{DeleteVm: &apiv1.DeleteVmRequest{Name: name}}}
}
func lreqGetVm(name string, stale bool) *apiv1.Request {
	return &apiv1.Request{Kind: &apiv1.Request_GetVm{GetVm: &apiv1.GetVmRequest{Name: name, Stale: stale}}}
}
func lreqListVms(limit uint32) *apiv1.Request {
	return &apiv1.Request{Kind: &apiv1.Request_ListVms{ListVms: &apiv1.ListVmsRequest{Limit: limit}}}
}
func lreqSubmit(spec *apiv1.TaskSpec) *apiv1.Request {
	return &apiv1.Request{Kind: &apiv1.Request_SubmitTask{SubmitTask: &apiv1.SubmitTaskRequest{Spec: spec}}}
}
func lreqCancel(id uint64) *apiv1.Request {
	return &apiv1.Request{Kind: &apiv1.Request_CancelTask{CancelTask: &apiv1.CancelTaskRequest{Id: id}}}
}
func lreqGetTask(id uint64) *apiv1.Request {
	return &apiv1.Request{Kind: &apiv1.Request_GetTask{GetTask: &apiv1.GetTaskRequest{Id: id}}}
}
func lreqListTasks(limit uint32) *apiv1.Request {
	return &apiv1.Request{Kind: &apiv1.Request_ListTasks{ListTasks: &apiv1.ListTasksRequest{Limit: limit}}}
}

func lvm(name string, desired apiv1.VmDesiredState, spec *apiv1.VmSpec) *apiv1.Vm {
	return &apiv1.Vm{Name: name, DesiredState: desired, Spec: spec}
}

const (
	dsRunning = apiv1.VmDesiredState_VM_DESIRED_STATE_RUNNING
	dsStopped = apiv1.VmDesiredState_VM_DESIRED_STATE_STOPPED
	dsDeleted = apiv1.VmDesiredState_VM_DESIRED_STATE_DELETED
)

func lrespCreate(name string, desired apiv1.VmDesiredState, spec *apiv1.VmSpec) *apiv1.Response {
	return &apiv1.Response{Kind: &apiv1.Response_CreateVm{CreateVm: &apiv1.CreateVmResponse{Vm: lvm(name, desired, spec)}}}
}
func lrespStart(name string, spec *apiv1.VmSpec) *apiv1.Response {
	return &apiv1.Response{Kind: &apiv1.Response_StartVm{StartVm: &apiv1.StartVmResponse{Vm: lvm(name, dsRunning, spec)}}}
}
func lrespStop(name string, spec *apiv1.VmSpec) *apiv1.Response {
	return &apiv1.Response{Kind: &apiv1.Response_StopVm{StopVm: &apiv1.StopVmResponse{Vm: lvm(name, dsStopped, spec)}}}
}
func lrespDelete(name string, spec *apiv1.VmSpec, removed bool) *apiv1.Response {
	return &apiv1.Response{Kind: &apiv1.Response_DeleteVm{DeleteVm: &apiv1.DeleteVmResponse{Vm: lvm(name, dsDeleted, spec), Removed: removed}}}
}
func lrespGetVm(name string, desired apiv1.VmDesiredState, spec *apiv1.VmSpec) *apiv1.Response {
	return &apiv1.Response{Kind: &apiv1.Response_GetVm{GetVm: &apiv1.GetVmResponse{Vm: lvm(name, desired, spec)}}}
}
func lrespListVms(vms ...*apiv1.Vm) *apiv1.Response {
	return &apiv1.Response{Kind: &apiv1.Response_ListVms{ListVms: &apiv1.ListVmsResponse{Vms: vms}}}
}

func ltask(id uint64, spec *apiv1.TaskSpec, cancelled bool) *apiv1.Task {
	t := &apiv1.Task{Id: id, Spec: spec, Status: apiv1.TaskStatus_TASK_STATUS_PENDING}
	if cancelled {
		t.Status = apiv1.TaskStatus_TASK_STATUS_CANCELLED
	}
	return t
}
func lrespSubmit(id uint64, spec *apiv1.TaskSpec) *apiv1.Response {
	return &apiv1.Response{Kind: &apiv1.Response_SubmitTask{SubmitTask: &apiv1.SubmitTaskResponse{Task: ltask(id, spec, false)}}}
}
func lrespCancel(id uint64, spec *apiv1.TaskSpec) *apiv1.Response {
	return &apiv1.Response{Kind: &apiv1.Response_CancelTask{CancelTask: &apiv1.CancelTaskResponse{Task: ltask(id, spec, true)}}}
}
func lrespGetTask(t *apiv1.Task) *apiv1.Response {
	return &apiv1.Response{Kind: &apiv1.Response_GetTask{GetTask: &apiv1.GetTaskResponse{Task: t}}}
}
func lrespListTasks(ts ...*apiv1.Task) *apiv1.Response {
	return &apiv1.Response{Kind: &apiv1.Response_ListTasks{ListTasks: &apiv1.ListTasksResponse{Tasks: ts}}}
}
func lrespErr(code apiv1.ErrorCode) *apiv1.Response {
	return &apiv1.Response{Error: &apiv1.Error{Code: code, Message: code.String()}}
}

var (
	eNotFound       = lrespErr(apiv1.ErrorCode_ERROR_CODE_NOT_FOUND)
	eAlreadyExists  = lrespErr(apiv1.ErrorCode_ERROR_CODE_ALREADY_EXISTS)
	ePrecondition   = lrespErr(apiv1.ErrorCode_ERROR_CODE_FAILED_PRECONDITION)
	eInvalid        = lrespErr(apiv1.ErrorCode_ERROR_CODE_INVALID_ARGUMENT)
	eUnavailable    = lrespErr(apiv1.ErrorCode_ERROR_CODE_UNAVAILABLE)
	eOutcomeUnknown = lrespErr(apiv1.ErrorCode_ERROR_CODE_OUTCOME_UNKNOWN)
	eNotLeader      = lrespErr(apiv1.ErrorCode_ERROR_CODE_NOT_LEADER)
)

func TestCheckLinearizable(t *testing.T) {
	tests := []struct {
		name string
		// build fills the history.
		build func(b *linHB)
		// fail, when set, is a substring the error must hold; else the
		// history must pass.
		fail string
	}{
		{name: "empty", build: func(b *linHB) {}},
		{name: "vm lifecycle, one client", build: func(b *linHB) {
			b.add(1, lreqGetVm("web", false), eNotFound, 0, 5)
			b.add(1, lreqCreate("web", false, linVmSpec), lrespCreate("web", dsStopped, linVmSpec), 5, 10)
			b.add(1, lreqGetVm("web", false), lrespGetVm("web", dsStopped, linVmSpec), 10, 15)
			b.add(1, lreqCreate("web", true, linOtherSpec), eAlreadyExists, 15, 20)
			b.add(1, lreqStart("web"), lrespStart("web", linVmSpec), 20, 25)
			b.add(1, lreqGetVm("web", false), lrespGetVm("web", dsRunning, linVmSpec), 25, 30)
			b.add(1, lreqStop("web"), lrespStop("web", linVmSpec), 30, 35)
			b.add(1, lreqListVms(0), lrespListVms(lvm("web", dsStopped, linVmSpec)), 35, 40)
			b.add(1, lreqDelete("web"), lrespDelete("web", linVmSpec, true), 40, 45)
			b.add(1, lreqStart("web"), eNotFound, 45, 50)
			b.add(1, lreqDelete("web"), eNotFound, 50, 55)
			b.add(1, lreqCreate("Bad_Name", false, linVmSpec), eInvalid, 55, 60)
			b.add(1, lreqCreate("web", true, linOtherSpec), lrespCreate("web", dsRunning, linOtherSpec), 60, 65)
			b.add(1, lreqGetVm("web", false), lrespGetVm("web", dsRunning, linOtherSpec), 65, 70)
		}},
		{name: "create concurrent with reads", build: func(b *linHB) {
			b.add(1, lreqCreate("web", true, linVmSpec), lrespCreate("web", dsRunning, linVmSpec), 0, 100)
			b.add(2, lreqGetVm("web", false), eNotFound, 10, 20)
			b.add(2, lreqGetVm("web", false), lrespGetVm("web", dsRunning, linVmSpec), 30, 40)
			b.add(3, lreqListVms(0), lrespListVms(lvm("web", dsRunning, linVmSpec)), 50, 60)
		}},
		{name: "two clients race to create", build: func(b *linHB) {
			b.add(1, lreqCreate("web", false, linVmSpec), eAlreadyExists, 0, 30)
			b.add(2, lreqCreate("web", true, linOtherSpec), lrespCreate("web", dsRunning, linOtherSpec), 10, 20)
			b.add(3, lreqGetVm("web", false), lrespGetVm("web", dsRunning, linOtherSpec), 40, 50)
		}},
		{name: "list vms with a limit", build: func(b *linHB) {
			b.add(1, lreqCreate("b", false, linVmSpec), lrespCreate("b", dsStopped, linVmSpec), 0, 10)
			b.add(2, lreqCreate("a", true, linVmSpec), lrespCreate("a", dsRunning, linVmSpec), 0, 10)
			b.add(1, lreqCreate("c", false, linVmSpec), lrespCreate("c", dsStopped, linVmSpec), 10, 20)
			b.add(3, lreqListVms(2), lrespListVms(lvm("a", dsRunning, linVmSpec), lvm("b", dsStopped, linVmSpec)), 30, 40)
		}},
		{name: "tasks, one client", build: func(b *linHB) {
			b.add(1, lreqListTasks(0), lrespListTasks(), 0, 5)
			b.add(1, lreqSubmit(linTaskA), lrespSubmit(5, linTaskA), 5, 10)
			b.add(1, lreqSubmit(linTaskB), lrespSubmit(7, linTaskB), 10, 15)
			b.add(1, lreqSubmit(&apiv1.TaskSpec{}), eInvalid, 15, 20)
			b.add(1, lreqListTasks(0), lrespListTasks(ltask(5, linTaskA, false), ltask(7, linTaskB, false)), 20, 25)
			b.add(1, lreqCancel(5), lrespCancel(5, linTaskA), 25, 30)
			b.add(1, lreqCancel(5), ePrecondition, 30, 35)
			b.add(1, lreqCancel(6), eNotFound, 35, 40)
			b.add(1, lreqGetTask(5), lrespGetTask(ltask(5, linTaskA, true)), 40, 45)
			b.add(1, lreqGetTask(6), eNotFound, 45, 50)
			b.add(1, lreqListTasks(1), lrespListTasks(ltask(5, linTaskA, true)), 50, 55)
		}},
		{name: "tasks, concurrent submits and lists", build: func(b *linHB) {
			b.add(1, lreqSubmit(linTaskA), lrespSubmit(3, linTaskA), 0, 50)
			b.add(2, lreqSubmit(linTaskB), lrespSubmit(4, linTaskB), 10, 60)
			b.add(3, lreqListTasks(0), lrespListTasks(), 5, 15)
			b.add(3, lreqListTasks(0), lrespListTasks(ltask(3, linTaskA, false)), 20, 30)
			b.add(4, lreqListTasks(0), lrespListTasks(ltask(3, linTaskA, false), ltask(4, linTaskB, false)), 55, 58)
			b.add(3, lreqGetTask(4), lrespGetTask(ltask(4, linTaskB, false)), 70, 80)
		}},
		{name: "indeterminate create that applied", build: func(b *linHB) {
			b.add(1, lreqCreate("web", false, linVmSpec), nil, 0, 50)
			b.add(2, lreqGetVm("web", false), eNotFound, 10, 20)
			b.add(2, lreqGetVm("web", false), lrespGetVm("web", dsStopped, linVmSpec), 100, 110)
			b.add(2, lreqStart("web"), lrespStart("web", linVmSpec), 120, 130)
		}},
		{name: "indeterminate create that did not apply", build: func(b *linHB) {
			b.add(1, lreqCreate("web", false, linVmSpec), nil, 0, 50)
			b.add(2, lreqGetVm("web", false), eNotFound, 100, 110)
			b.add(2, lreqListVms(0), lrespListVms(), 120, 130)
		}},
		{name: "indeterminate create racing an acked one", build: func(b *linHB) {
			b.add(1, lreqCreate("web", false, linVmSpec), nil, 0, 50)
			b.add(2, lreqCreate("web", true, linOtherSpec), lrespCreate("web", dsRunning, linOtherSpec), 10, 20)
			b.add(2, lreqGetVm("web", false), lrespGetVm("web", dsRunning, linOtherSpec), 100, 110)
		}},
		{name: "indeterminate submit that applied", build: func(b *linHB) {
			b.add(1, lreqSubmit(linTaskA), lrespSubmit(3, linTaskA), 0, 10)
			b.add(1, lreqSubmit(linTaskB), nil, 10, 60)
			b.add(2, lreqListTasks(0), lrespListTasks(ltask(3, linTaskA, false)), 15, 20)
			b.add(2, lreqListTasks(0), lrespListTasks(ltask(3, linTaskA, false), ltask(9, linTaskB, false)), 100, 110)
			b.add(2, lreqCancel(9), lrespCancel(9, linTaskB), 120, 130)
			b.add(2, lreqGetTask(9), lrespGetTask(ltask(9, linTaskB, true)), 140, 150)
		}},
		{name: "indeterminate submit that did not apply", build: func(b *linHB) {
			b.add(1, lreqSubmit(linTaskB), nil, 0, 50)
			b.add(2, lreqListTasks(0), lrespListTasks(), 100, 110)
			b.add(2, lreqGetTask(2), eNotFound, 120, 130)
		}},
		{name: "two indeterminate submits, one applied", build: func(b *linHB) {
			b.add(1, lreqSubmit(linTaskA), nil, 0, 50)
			b.add(2, lreqSubmit(linTaskB), nil, 0, 50)
			b.add(3, lreqListTasks(0), lrespListTasks(ltask(4, linTaskB, false)), 100, 110)
		}},
		{name: "indeterminate cancel", build: func(b *linHB) {
			b.add(1, lreqSubmit(linTaskA), lrespSubmit(3, linTaskA), 0, 10)
			b.add(1, lreqCancel(3), nil, 10, 60)
			b.add(2, lreqGetTask(3), lrespGetTask(ltask(3, linTaskA, false)), 20, 30)
			b.add(2, lreqGetTask(3), lrespGetTask(ltask(3, linTaskA, true)), 100, 110)
		}},
		{name: "no-answer reads and retryable final answers are not checked", build: func(b *linHB) {
			b.add(1, lreqCreate("web", false, linVmSpec), lrespCreate("web", dsStopped, linVmSpec), 0, 10)
			b.add(2, lreqGetVm("web", false), nil, 20, 30)
			b.add(2, lreqGetVm("web", false), eUnavailable, 30, 40)
			b.add(2, lreqListTasks(0), eNotLeader, 40, 50)
			b.add(3, lreqDelete("web"), eOutcomeUnknown, 20, 30) // a write: indeterminate
			b.add(2, lreqGetVm("web", false), eNotFound, 60, 70)
		}},
		{name: "stale reads are not checked", build: func(b *linHB) {
			b.add(1, lreqCreate("web", false, linVmSpec), lrespCreate("web", dsStopped, linVmSpec), 0, 10)
			b.add(2, lreqGetVm("web", true), eNotFound, 20, 30)
		}},
		{name: "another client's call at the instant of a return is concurrent", build: func(b *linHB) {
			b.add(1, lreqSubmit(linTaskA), lrespSubmit(3, linTaskA), 0, 10)
			b.add(2, lreqListTasks(0), lrespListTasks(), 10, 20)
		}},
		{name: "a reused client request id is one application", build: func(b *linHB) {
			first := b.add(1, lreqCreate("web", false, linVmSpec), lrespCreate("web", dsStopped, linVmSpec), 0, 10)
			b.add(2, lreqDelete("web"), lrespDelete("web", linVmSpec, true), 12, 15)
			again := lreqCreate("web", false, linVmSpec)
			setClientRequestID(again, first.Key)
			b.add(1, again, lrespCreate("web", dsStopped, linVmSpec), 20, 30) // the stored response
			b.add(2, lreqGetVm("web", false), eNotFound, 40, 50)
		}},
		{name: "a reused id refused before it applied", build: func(b *linHB) {
			first := b.add(1, lreqStart("web"), eNotFound, 0, 10)
			b.add(2, lreqCreate("web", false, linVmSpec), lrespCreate("web", dsStopped, linVmSpec), 12, 15)
			again := lreqStart("web")
			setClientRequestID(again, first.Key)
			b.add(1, again, lrespStart("web", linVmSpec), 20, 30)
			b.add(2, lreqGetVm("web", false), lrespGetVm("web", dsRunning, linVmSpec), 40, 50)
		}},

		// Violations.
		{name: "stale read of a vm", fail: "not linearizable", build: func(b *linHB) {
			b.add(1, lreqCreate("web", false, linVmSpec), lrespCreate("web", dsStopped, linVmSpec), 0, 10)
			b.add(2, lreqGetVm("web", false), eNotFound, 20, 30)
		}},
		{name: "lost task", fail: "not linearizable", build: func(b *linHB) {
			b.add(1, lreqSubmit(linTaskA), lrespSubmit(3, linTaskA), 0, 10)
			b.add(2, lreqListTasks(0), lrespListTasks(), 20, 30)
		}},
		{name: "vm state never written", fail: "not linearizable", build: func(b *linHB) {
			b.add(1, lreqCreate("web", false, linVmSpec), lrespCreate("web", dsStopped, linVmSpec), 0, 10)
			b.add(2, lreqGetVm("web", false), lrespGetVm("web", dsRunning, linVmSpec), 20, 30)
		}},
		{name: "vm spec never written", fail: "not linearizable", build: func(b *linHB) {
			b.add(1, lreqCreate("web", false, linVmSpec), lrespCreate("web", dsStopped, linVmSpec), 0, 10)
			b.add(2, lreqGetVm("web", false), lrespGetVm("web", dsStopped, linOtherSpec), 20, 30)
		}},
		{name: "vm never created", fail: "not linearizable", build: func(b *linHB) {
			b.add(2, lreqListVms(0), lrespListVms(lvm("ghost", dsStopped, linVmSpec)), 20, 30)
		}},
		{name: "task never submitted", fail: "not linearizable", build: func(b *linHB) {
			b.add(1, lreqSubmit(linTaskA), lrespSubmit(3, linTaskA), 0, 10)
			b.add(2, lreqGetTask(4), lrespGetTask(ltask(4, linTaskA, false)), 20, 30)
		}},
		{name: "lists disagree with no write in between", fail: "not linearizable", build: func(b *linHB) {
			b.add(1, lreqSubmit(linTaskA), lrespSubmit(3, linTaskA), 0, 100)
			b.add(2, lreqListTasks(0), lrespListTasks(ltask(3, linTaskA, false)), 10, 20)
			b.add(2, lreqListTasks(0), lrespListTasks(), 30, 40)
		}},
		{name: "cancel not seen", fail: "not linearizable", build: func(b *linHB) {
			b.add(1, lreqSubmit(linTaskA), lrespSubmit(3, linTaskA), 0, 10)
			b.add(1, lreqCancel(3), lrespCancel(3, linTaskA), 10, 20)
			b.add(2, lreqGetTask(3), lrespGetTask(ltask(3, linTaskA, false)), 30, 40)
		}},
		{name: "cancelled twice", fail: "not linearizable", build: func(b *linHB) {
			b.add(1, lreqSubmit(linTaskA), lrespSubmit(3, linTaskA), 0, 10)
			b.add(1, lreqCancel(3), lrespCancel(3, linTaskA), 10, 20)
			b.add(2, lreqCancel(3), lrespCancel(3, linTaskA), 30, 40)
		}},
		{name: "task ids go backwards", fail: "out of real-time order", build: func(b *linHB) {
			b.add(1, lreqSubmit(linTaskA), lrespSubmit(7, linTaskA), 0, 10)
			b.add(2, lreqSubmit(linTaskB), lrespSubmit(5, linTaskB), 20, 30)
		}},
		{name: "task ids go backwards, as a list shows", fail: "shows task 7 but not task 5", build: func(b *linHB) {
			b.add(1, lreqSubmit(linTaskA), lrespSubmit(7, linTaskA), 0, 100)
			b.add(2, lreqSubmit(linTaskB), lrespSubmit(5, linTaskB), 0, 100)
			b.add(3, lreqListTasks(0), lrespListTasks(ltask(7, linTaskA, false)), 50, 60)
		}},
		{name: "a client misses its own write", fail: "not linearizable", build: func(b *linHB) {
			b.add(1, lreqSubmit(linTaskA), lrespSubmit(3, linTaskA), 0, 10)
			b.add(1, lreqListTasks(0), lrespListTasks(), 10, 20) // called as the submit returned
		}},
		{name: "delete that kept the record", fail: "not linearizable", build: func(b *linHB) {
			b.add(1, lreqCreate("web", false, linVmSpec), lrespCreate("web", dsStopped, linVmSpec), 0, 10)
			b.add(1, lreqDelete("web"), lrespDelete("web", linVmSpec, false), 10, 20)
		}},
		{name: "orphan task with a spec nobody submitted", fail: "not linearizable", build: func(b *linHB) {
			b.add(1, lreqSubmit(linTaskA), nil, 0, 50)
			b.add(2, lreqListTasks(0), lrespListTasks(ltask(9, linTaskB, false)), 100, 110)
		}},
		{name: "two orphans, one indeterminate submit", fail: "not linearizable", build: func(b *linHB) {
			b.add(1, lreqSubmit(linTaskA), nil, 0, 50)
			b.add(2, lreqListTasks(0), lrespListTasks(ltask(8, linTaskA, false), ltask(9, linTaskA, false)), 100, 110)
		}},
		{name: "orphan seen before its submit was called", fail: "not linearizable", build: func(b *linHB) {
			b.add(2, lreqGetTask(9), lrespGetTask(ltask(9, linTaskA, false)), 0, 10)
			b.add(1, lreqSubmit(linTaskA), nil, 20, 50)
		}},
		{name: "a reused id answered two ways", fail: "stored response", build: func(b *linHB) {
			first := b.add(1, lreqCreate("web", false, linVmSpec), lrespCreate("web", dsStopped, linVmSpec), 0, 10)
			again := lreqCreate("web", false, linVmSpec)
			setClientRequestID(again, first.Key)
			b.add(1, again, eAlreadyExists, 20, 30)
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var b linHB
			tc.build(&b)
			err := CheckLinearizable(b.history())
			switch {
			case tc.fail == "" && err != nil:
				t.Fatalf("want linearizable, got: %v", err)
			case tc.fail != "" && err == nil:
				t.Fatalf("want a violation (%q), got none", tc.fail)
			case tc.fail != "" && !strings.Contains(err.Error(), tc.fail):
				t.Fatalf("want an error with %q, got: %v", tc.fail, err)
			}
			if err != nil {
				t.Logf("as expected:\n%v", err)
			}
		})
	}
}

// TestCheckLinearizableNamesTheCulprit checks that a violation's report
// shows the operations that cannot be ordered.
func TestCheckLinearizableNamesTheCulprit(t *testing.T) {
	var b linHB
	for i := 0; i < 5; i++ {
		b.add(1, lreqCreate(fmt.Sprintf("vm-%d", i), false, linVmSpec), lrespCreate(fmt.Sprintf("vm-%d", i), dsStopped, linVmSpec), 10*i, 10*i+5)
	}
	b.add(2, lreqGetVm("vm-3", false), eNotFound, 100, 110)
	err := CheckLinearizable(b.history())
	if err == nil {
		t.Fatal("want a violation")
	}
	for _, want := range []string{`partition "vm-3"`, `GetVm("vm-3") -> NOT_FOUND`, `CreateVm("vm-3"`, "state after it"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("report lacks %q:\n%v", want, err)
		}
	}
}

// TestCheckLinearizableTimeout checks that a check that cannot finish is
// an error, not a pass.
func TestCheckLinearizableTimeout(t *testing.T) {
	var b linHB
	// Many concurrent starts and stops of one VM, then a read of a spec
	// nobody wrote: porcupine must try every order of the starts and stops
	// before it can say Illegal, so it runs out of time first.
	b.add(0, lreqCreate("web", false, linVmSpec), lrespCreate("web", dsStopped, linVmSpec), 0, 10)
	for i := 1; i <= 30; i++ {
		if i%2 == 0 {
			b.add(uint64(i), lreqStart("web"), lrespStart("web", linVmSpec), 20, 100)
		} else {
			b.add(uint64(i), lreqStop("web"), lrespStop("web", linVmSpec), 20, 100)
		}
	}
	b.add(99, lreqGetVm("web", false), lrespGetVm("web", dsStopped, linOtherSpec), 200, 210)
	err := CheckLinearizableTimeout(b.history(), 300*time.Millisecond)
	if err == nil || !strings.Contains(err.Error(), "timed out") {
		t.Fatalf("want a time-out error, got %v", err)
	}
	t.Log(err)
	if err := CheckLinearizableTimeout((&linHB{}).history(), 0); err != nil {
		t.Fatalf("an empty history needs no time: %v", err)
	}
}

// TestCheckLinearizableSimHistory checks a history the simulator made: ten
// clients with a mixed load (ListVms included, so the VM check runs
// unpartitioned) against a three-node cluster under crashes, partitions,
// pauses and message loss, until about 2000 operations have ended.
func TestCheckLinearizableSimHistory(t *testing.T) {
	seed := BaseSeed(t)
	w := NewT(t, seed, Options{Nodes: 3, LossRate: 0.02, ReorderRate: 0.05, ClockDrift: true})
	rng := w.Rand()
	wl := NewWorkload(rng, 6)
	const target = 2000
	loading := true
	seen := 0
	for i := 0; i < 10; i++ {
		c := w.NewClient(ClientOptions{AttemptTimeout: 500 * time.Millisecond, MaxAttempts: 6})
		var feed func()
		feed = func() {
			if !loading {
				return
			}
			ops := w.history.ops
			for ; seen < len(ops); seen++ {
				if op := ops[seen]; op.Acked() && op.Resp.GetSubmitTask() != nil {
					wl.SawTask(op.Resp.GetSubmitTask().GetTask().GetId())
				}
			}
			if c.Idle() {
				if rng.IntN(20) == 0 {
					c.Do(lreqListVms(0))
				} else {
					c.Do(wl.Next())
				}
			}
			w.at(w.now+time.Duration(rng.IntN(30))*time.Millisecond, feed)
		}
		w.at(w.now, feed)
	}
	faults := 0
	for len(w.history.ops) < target {
		w.Must(t, w.RunFor(time.Duration(300+rng.IntN(1500))*time.Millisecond))
		id := w.IDs()[rng.IntN(3)]
		switch rng.IntN(6) {
		case 0:
			if l := w.Leader(); l != 0 {
				w.Crash(l)
				faults++
			}
		case 1:
			w.Net().Partition([]uint64{id})
			faults++
		case 2:
			if w.Node(id).Up() && !w.Node(id).Paused() {
				w.Pause(id)
				faults++
			}
		default:
			w.Net().Heal()
			for _, id := range w.IDs() {
				if w.Node(id).Paused() {
					w.Resume(id)
				}
				if !w.Node(id).Up() {
					w.Must(t, w.Restart(id))
				}
			}
		}
	}
	loading = false
	w.Net().Heal()
	for _, id := range w.IDs() {
		if w.Node(id).Paused() {
			w.Resume(id)
		}
		if !w.Node(id).Up() {
			w.Must(t, w.Restart(id))
		}
	}
	w.Must(t, w.RunUntil(w.ClientsIdle, 2*time.Minute))
	acked, refused, indet, reads, unanswered := w.History().Summary()
	t.Logf("%d faults; ops: acked=%d refused=%d indeterminate=%d reads=%d unanswered-reads=%d", faults, acked, refused, indet, reads, unanswered)
	start := time.Now()
	err := CheckLinearizable(w.History())
	t.Logf("checked %d operations in %s", len(w.History().Ops()), time.Since(start).Round(time.Millisecond))
	w.Must(t, err)

	// The same history with one answer forged must fail.
	ops := w.History().Ops()
	forge := func(what string, pick func(i int, op *Op) *apiv1.Response) {
		t.Helper()
		h := newHistory()
		forged := false
		for i, op := range ops {
			if !forged {
				if resp := pick(i, op); resp != nil {
					cp := *op
					cp.Resp = resp
					op, forged = &cp, true
				}
			}
			h.add(op)
		}
		if !forged {
			t.Logf("%s: nothing in this history to forge it from", what)
			return
		}
		err := CheckLinearizable(h)
		if err == nil {
			t.Fatalf("%s: not detected", what)
		}
		t.Logf("%s: detected: %.300s", what, err)
	}
	forge("a VM read of a spec never written", func(_ int, op *Op) *apiv1.Response {
		if v := op.Resp.GetGetVm().GetVm(); v != nil {
			resp := proto.CloneOf(op.Resp)
			resp.GetGetVm().GetVm().GetSpec().Vcpus = 7
			return resp
		}
		return nil
	})
	forge("a list that lost an acknowledged task", func(i int, op *Op) *apiv1.Response {
		// Its last task, so that only the porcupine search can tell.
		tasks := op.Resp.GetListTasks().GetTasks()
		if len(tasks) == 0 {
			return nil
		}
		last := tasks[len(tasks)-1].GetId()
		for _, prev := range ops[:i] {
			if prev.Acked() && prev.Resp.GetSubmitTask().GetTask().GetId() == last && prev.Return < op.Call {
				resp := proto.CloneOf(op.Resp)
				l := resp.GetListTasks()
				l.Tasks = l.Tasks[:len(l.Tasks)-1]
				return resp
			}
		}
		return nil
	})
	forge("a stale NOT_FOUND", func(i int, op *Op) *apiv1.Response {
		name := op.Req.GetGetVm().GetName()
		if op.Resp.GetGetVm() == nil || op.Req.GetGetVm().GetStale() {
			return nil
		}
		// Found, created (acknowledged) before the read was called, and no
		// delete of it called before the read returned.
		created := false
		for _, prev := range ops {
			if prev.Req.GetDeleteVm().GetName() == name && prev.Call < op.Return {
				return nil
			}
			if prev.Acked() && prev.Req.GetCreateVm().GetName() == name && prev.Return < op.Call {
				created = true
			}
		}
		if !created {
			return nil
		}
		return lrespErr(apiv1.ErrorCode_ERROR_CODE_NOT_FOUND)
	})
}
