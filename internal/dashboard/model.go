package dashboard

import (
	"context"
	"errors"
	"fmt"
	"strings"

	apiv1 "github.com/blixard/blixard/api/v1"
)

// Limits on what one overview carries: a big cluster's page shows the
// first of its VMs (by name) and the newest of its tasks, and counts all.
const (
	maxListed         = 500
	overviewEvents    = 15
	vmEvents          = 50
	defaultEventLimit = 100
	maxEventLimit     = 1000
)

// Overview is what the cluster page shows, as the serving node knows it.
type Overview struct {
	ClusterID    string `json:"cluster_id"`
	NodeID       uint64 `json:"node_id"`
	LeaderID     uint64 `json:"leader_id"`
	Term         uint64 `json:"term"`
	CommitIndex  uint64 `json:"commit_index"`
	AppliedIndex uint64 `json:"applied_index"`
	// NowMs is the serving node's clock (Unix ms), against which the page
	// computes ages, so a browser's skewed clock does not show.
	NowMs  int64      `json:"now_ms"`
	Nodes  []NodeView `json:"nodes"`
	VMs    []VMView   `json:"vms"`
	Tasks  []TaskView `json:"tasks"`
	Events []Event    `json:"events"`
	// Counts over all VMs and tasks, listed or not.
	VMsTotal    int `json:"vms_total"`
	VMsRunning  int `json:"vms_running"`
	TasksTotal  int `json:"tasks_total"`
	TasksActive int `json:"tasks_active"`
}

// NodeView is one node of the overview.
type NodeView struct {
	ID            uint64            `json:"id"`
	Address       string            `json:"address"`
	Role          string            `json:"role"`
	Voter         bool              `json:"voter"`
	Status        string            `json:"status"`
	StatusReason  string            `json:"status_reason,omitempty"`
	Drained       bool              `json:"drained"`
	Leader        bool              `json:"leader"`
	Labels        map[string]string `json:"labels,omitempty"`
	VCPUs         uint32            `json:"vcpus"`
	VCPUsUsed     uint32            `json:"vcpus_used"`
	MemoryMiB     uint64            `json:"memory_mib"`
	MemoryUsedMiB uint64            `json:"memory_used_mib"`
}

// VMView is one VM of the overview.
type VMView struct {
	Name       string `json:"name"`
	State      string `json:"state"`
	Desired    string `json:"desired"`
	NodeID     uint64 `json:"node_id"`
	Reason     string `json:"reason,omitempty"`
	VCPUs      uint32 `json:"vcpus"`
	MemoryMiB  uint64 `json:"memory_mib"`
	Image      string `json:"image,omitempty"`
	Generation uint64 `json:"generation"`
	Restarts   uint32 `json:"restarts"`
	CreatedMs  int64  `json:"created_ms"`
}

// TaskView is one task of the overview.
type TaskView struct {
	ID          uint64 `json:"id"`
	Command     string `json:"command"`
	Status      string `json:"status"`
	NodeID      uint64 `json:"node_id"`
	Attempt     uint32 `json:"attempt"`
	Reason      string `json:"reason,omitempty"`
	ExitCode    *int32 `json:"exit_code,omitempty"`
	SubmittedMs int64  `json:"submitted_ms"`
}

// Event is one entry of the cluster's event log.
type Event struct {
	Index   uint64 `json:"index"`
	TimeMs  int64  `json:"time_ms"`
	Kind    string `json:"kind"`
	NodeID  uint64 `json:"node_id,omitempty"`
	VM      string `json:"vm,omitempty"`
	TaskID  uint64 `json:"task_id,omitempty"`
	Message string `json:"message"`
}

// VMDetail is what a VM's page shows.
type VMDetail struct {
	NowMs       int64    `json:"now_ms"`
	VM          VMView   `json:"vm"`
	Cmdline     string   `json:"cmdline,omitempty"`
	Restart     string   `json:"restart_policy,omitempty"`
	FailureTail string   `json:"failure_console_tail,omitempty"`
	Events      []Event  `json:"events"`
	Features    []string `json:"features,omitempty"`
}

// Console is a VM's console tail, or why it cannot be shown here.
type Console struct {
	Text  string `json:"text"`
	Error string `json:"error,omitempty"`
}

// errNotFound marks a VM that does not exist.
var errNotFound = errors.New("not found")

func enum(s, prefix string) string { return strings.ToLower(strings.TrimPrefix(s, prefix)) }

// call runs one request and unwraps the core's error answer.
func call(ctx context.Context, b Backend, req *apiv1.Request) (*apiv1.Response, error) {
	resp, err := b.Do(ctx, req)
	if err != nil {
		return nil, err
	}
	if e := resp.GetError(); e != nil {
		if e.GetCode() == apiv1.ErrorCode_ERROR_CODE_NOT_FOUND {
			return nil, fmt.Errorf("%w: %s", errNotFound, e.GetMessage())
		}
		return nil, fmt.Errorf("%s: %s", enum(e.GetCode().String(), "ERROR_CODE_"), e.GetMessage())
	}
	return resp, nil
}

// status reads the serving node's cluster status from its local state.
func status(ctx context.Context, b Backend) (*apiv1.GetClusterStatusResponse, error) {
	resp, err := call(ctx, b, &apiv1.Request{Kind: &apiv1.Request_GetClusterStatus{GetClusterStatus: &apiv1.GetClusterStatusRequest{Stale: true}}})
	if err != nil {
		return nil, fmt.Errorf("read the cluster status: %w", err)
	}
	return resp.GetGetClusterStatus(), nil
}

// statusKey changes whenever anything the overview shows may have: all of
// it is in the applied state, but for the leader and term.
func statusKey(cs *apiv1.GetClusterStatusResponse) string {
	return fmt.Sprintf("%d/%d/%d", cs.GetAppliedIndex(), cs.GetTerm(), cs.GetLeaderId())
}

// view is one read of the serving node's state: the overview, and the
// status and lists it was made from (for the node pages).
type view struct {
	overview *Overview
	status   *apiv1.GetClusterStatusResponse
	vms      []*apiv1.Vm
	tasks    []*apiv1.Task
}

// readView reads the serving node's view of the cluster, from status on:
// its local state (stale reads), so a follower cut off from its leader
// still answers.
func readView(ctx context.Context, b Backend, cs *apiv1.GetClusterStatusResponse) (*view, error) {
	o := &Overview{
		ClusterID: cs.GetCluster().GetId(), NodeID: cs.GetNodeId(), LeaderID: cs.GetLeaderId(), Term: cs.GetTerm(),
		CommitIndex: cs.GetCommitIndex(), AppliedIndex: cs.GetAppliedIndex(),
		Nodes: []NodeView{}, VMs: []VMView{}, Tasks: []TaskView{}, Events: []Event{},
	}
	members := map[uint64]*apiv1.ClusterMember{}
	for _, m := range cs.GetMembers() {
		members[m.GetId()] = m
	}
	for _, n := range cs.GetNodes() {
		v := NodeView{
			ID: n.GetId(), Address: n.GetAddress(), Role: enum(n.GetRole().String(), "NODE_ROLE_"),
			Status: enum(n.GetStatus().String(), "NODE_STATUS_"), StatusReason: n.GetStatusReason(),
			Drained: n.GetDrain(), Leader: n.GetId() == cs.GetLeaderId(), Labels: n.GetLabels(),
			VCPUs: n.GetCapacity().GetVcpus(), MemoryMiB: n.GetCapacity().GetMemoryMib(),
		}
		if m, ok := members[n.GetId()]; ok {
			v.Voter = m.GetVoter()
			v.VCPUsUsed, v.MemoryUsedMiB = m.GetAllocated().GetVcpus(), m.GetAllocated().GetMemoryMib()
		}
		o.Nodes = append(o.Nodes, v)
	}
	resp, err := call(ctx, b, &apiv1.Request{Kind: &apiv1.Request_ListVms{ListVms: &apiv1.ListVmsRequest{Stale: true}}})
	if err != nil {
		return nil, fmt.Errorf("list the VMs: %w", err)
	}
	vms := resp.GetListVms().GetVms()
	v := &view{overview: o, status: cs, vms: vms}
	o.VMsTotal = len(vms)
	for i, vm := range vms {
		if vm.GetState() == apiv1.VmState_VM_STATE_RUNNING {
			o.VMsRunning++
		}
		if i < maxListed {
			o.VMs = append(o.VMs, vmView(vm))
		}
	}
	resp, err = call(ctx, b, &apiv1.Request{Kind: &apiv1.Request_ListTasks{ListTasks: &apiv1.ListTasksRequest{Stale: true}}})
	if err != nil {
		return nil, fmt.Errorf("list the tasks: %w", err)
	}
	tasks := resp.GetListTasks().GetTasks()
	v.tasks = tasks
	o.TasksTotal = len(tasks)
	// Tasks are kept for good: the newest are the ones to show.
	for i := len(tasks) - 1; i >= 0; i-- {
		t := tasks[i]
		switch t.GetStatus() {
		case apiv1.TaskStatus_TASK_STATUS_PENDING, apiv1.TaskStatus_TASK_STATUS_ASSIGNED, apiv1.TaskStatus_TASK_STATUS_RUNNING:
			o.TasksActive++
		}
		if len(o.Tasks) < maxListed {
			o.Tasks = append(o.Tasks, taskView(t))
		}
	}
	if o.Events, err = events(ctx, b, "", 0, overviewEvents); err != nil {
		return nil, err
	}
	return v, nil
}

// NodeDetail is what a node's page shows.
type NodeDetail struct {
	NowMs            int64      `json:"now_ms"`
	Node             NodeView   `json:"node"`
	LeaseMillis      uint32     `json:"lease_millis"`
	VCPUOvercommit   float64    `json:"vcpu_overcommit"`
	MemoryOvercommit float64    `json:"memory_overcommit"`
	Images           []string   `json:"images"`
	VMs              []VMView   `json:"vms"`
	Tasks            []TaskView `json:"tasks"`
	// VMsTotal, TasksTotal: all on the node, listed or not.
	VMsTotal   int     `json:"vms_total"`
	TasksTotal int     `json:"tasks_total"`
	Events     []Event `json:"events"`
}

// ratio is an overcommit ratio as the state applies it: below 1 (unset)
// is 1.
func ratio(r float64) float64 {
	if !(r > 1) {
		return 1
	}
	return r
}

// nodeDetail is node id's page from v, and its events.
func nodeDetail(ctx context.Context, b Backend, v *view, id uint64, nowMs int64) (*NodeDetail, error) {
	var rec *apiv1.Node
	for _, n := range v.status.GetNodes() {
		if n.GetId() == id {
			rec = n
		}
	}
	if rec == nil {
		return nil, fmt.Errorf("%w: no node %d", errNotFound, id)
	}
	d := &NodeDetail{NowMs: nowMs, LeaseMillis: rec.GetLeaseMillis(), VCPUOvercommit: ratio(rec.GetVcpuOvercommit()),
		MemoryOvercommit: ratio(rec.GetMemoryOvercommit()), Images: []string{}, VMs: []VMView{}, Tasks: []TaskView{}}
	for _, n := range v.overview.Nodes {
		if n.ID == id {
			d.Node = n
		}
	}
	for _, img := range rec.GetImages() {
		d.Images = append(d.Images, img.GetName())
	}
	for _, vm := range v.vms {
		if vm.GetNodeId() != id {
			continue
		}
		d.VMsTotal++
		if len(d.VMs) < maxListed {
			d.VMs = append(d.VMs, vmView(vm))
		}
	}
	for i := len(v.tasks) - 1; i >= 0; i-- {
		if t := v.tasks[i]; t.GetNodeId() == id {
			d.TasksTotal++
			if len(d.Tasks) < maxListed {
				d.Tasks = append(d.Tasks, taskView(t))
			}
		}
	}
	var err error
	if d.Events, err = events(ctx, b, "", id, vmEvents); err != nil {
		return nil, err
	}
	return d, nil
}

// events reads the newest limit events, filtered, oldest first.
func events(ctx context.Context, b Backend, vm string, node uint64, limit int) ([]Event, error) {
	resp, err := call(ctx, b, &apiv1.Request{Kind: &apiv1.Request_ListEvents{ListEvents: &apiv1.ListEventsRequest{
		VmName: vm, NodeId: node, Limit: uint32(limit),
	}}})
	if err != nil {
		return nil, fmt.Errorf("read the events: %w", err)
	}
	out := []Event{}
	for _, e := range resp.GetListEvents().GetEvents() {
		out = append(out, Event{
			Index: e.GetIndex(), TimeMs: e.GetTimeUnixNano() / 1e6, Kind: e.GetKind(), NodeID: e.GetNodeId(),
			VM: e.GetVmName(), TaskID: e.GetTaskId(), Message: e.GetMessage(),
		})
	}
	return out, nil
}

// vmDetail reads one VM and its events.
func vmDetail(ctx context.Context, b Backend, name string, nowMs int64) (*VMDetail, error) {
	resp, err := call(ctx, b, &apiv1.Request{Kind: &apiv1.Request_GetVm{GetVm: &apiv1.GetVmRequest{Name: name, Stale: true}}})
	if err != nil {
		return nil, fmt.Errorf("read VM %q: %w", name, err)
	}
	v := resp.GetGetVm().GetVm()
	d := &VMDetail{
		NowMs: nowMs, VM: vmView(v), Cmdline: v.GetSpec().GetKernelCmdline(),
		Restart: enum(v.GetSpec().GetRestartPolicy().String(), "RESTART_POLICY_"), FailureTail: v.GetConsoleTail(),
		Features: v.GetSpec().GetFeatures(),
	}
	if d.Events, err = events(ctx, b, name, 0, vmEvents); err != nil {
		return nil, err
	}
	return d, nil
}

func vmView(v *apiv1.Vm) VMView {
	return VMView{
		Name: v.GetName(), State: enum(v.GetState().String(), "VM_STATE_"),
		Desired: enum(v.GetDesiredState().String(), "VM_DESIRED_STATE_"), NodeID: v.GetNodeId(), Reason: v.GetReason(),
		VCPUs: v.GetSpec().GetVcpus(), MemoryMiB: v.GetSpec().GetMemoryMib(), Image: v.GetSpec().GetImage(),
		Generation: v.GetGeneration(), Restarts: v.GetRestarts(), CreatedMs: v.GetCreatedUnixNano() / 1e6,
	}
}

func taskView(t *apiv1.Task) TaskView {
	cmd := strings.TrimSpace(strings.Join(append([]string{t.GetSpec().GetCommand()}, t.GetSpec().GetArgs()...), " "))
	if len(cmd) > 120 {
		cmd = cmd[:117] + "..."
	}
	v := TaskView{
		ID: t.GetId(), Command: cmd, Status: enum(t.GetStatus().String(), "TASK_STATUS_"), NodeID: t.GetNodeId(),
		Attempt: t.GetAttempt(), Reason: t.GetReason(), SubmittedMs: t.GetSubmittedUnixNano() / 1e6,
	}
	switch t.GetStatus() {
	case apiv1.TaskStatus_TASK_STATUS_SUCCEEDED, apiv1.TaskStatus_TASK_STATUS_FAILED:
		r := t.GetResult()
		code := r.GetExitCode()
		v.ExitCode = &code
	}
	return v
}
