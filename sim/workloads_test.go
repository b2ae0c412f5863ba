package sim

import (
	"fmt"
	"testing"
	"time"

	apiv1 "github.com/blixard/blixard/api/v1"
	"github.com/blixard/blixard/internal/core"
)

// Workload scenarios: the node agent and the leader's placement, running
// on simulated hypervisors, under the vm-once and capacity checkers.

func wlWorld(t *testing.T, nodes int) (*World, *Client) {
	t.Helper()
	w := NewT(t, BaseSeed(t), Options{Nodes: nodes, Workloads: true, LossRate: 0.01, ClockDrift: true})
	runToLeader(t, w)
	return w, w.NewClient(ClientOptions{})
}

func wlDo(t *testing.T, w *World, c *Client, req *apiv1.Request) *apiv1.Response {
	t.Helper()
	c.Do(req)
	w.Must(t, w.RunUntil(w.ClientsIdle, 30*time.Second))
	ops := w.History().Ops()
	resp := ops[len(ops)-1].Resp
	if resp.GetError() != nil {
		t.Fatalf("%s", w.Failure(fmt.Errorf("request failed: %v", resp.GetError())))
	}
	return resp
}

// wlVm is the VM's record on the leader (a stale look at its state).
func wlVm(w *World, name string) (*apiv1.Vm, bool) {
	l := w.Leader()
	if l == 0 {
		return nil, false
	}
	return w.Node(l).Core().State().Vm(name)
}

func wlAwaitVm(t *testing.T, w *World, name, what string, ok func(*apiv1.Vm) bool) *apiv1.Vm {
	t.Helper()
	w.Must(t, w.RunUntil(func() bool {
		v, found := wlVm(w, name)
		return found && ok(v)
	}, 60*time.Second))
	v, _ := wlVm(w, name)
	t.Logf("VM %s %s at %s: %s (generation %d, node %d)", name, what, w.Now(), v.GetState(), v.GetGeneration(), v.GetNodeId())
	return v
}

func wlSimVM(w *World, node uint64, name string) (SimVM, bool) {
	for _, v := range w.SimVMs(node) {
		if v.Name == name {
			return v, true
		}
	}
	return SimVM{}, false
}

func createReq(name string, policy apiv1.RestartPolicy) *apiv1.Request {
	return &apiv1.Request{Kind: &apiv1.Request_CreateVm{CreateVm: &apiv1.CreateVmRequest{
		Name: name, Start: true, Spec: &apiv1.VmSpec{Vcpus: 1, MemoryMib: 128, RestartPolicy: policy},
	}}}
}

func running(v *apiv1.Vm) bool { return v.GetState() == apiv1.VmState_VM_STATE_RUNNING }

func TestWorkloadVmLifecycle(t *testing.T) {
	w, c := wlWorld(t, 3)
	wlDo(t, w, c, createReq("web", apiv1.RestartPolicy_RESTART_POLICY_NEVER))
	v := wlAwaitVm(t, w, "web", "running", running)
	if sv, ok := wlSimVM(w, v.GetNodeId(), "web"); !ok || sv.State != apiv1.VmState_VM_STATE_RUNNING || sv.Generation != v.GetGeneration() {
		t.Fatalf("node %d's hypervisor holds %+v, want web running at generation %d", v.GetNodeId(), sv, v.GetGeneration())
	}

	wlDo(t, w, c, &apiv1.Request{Kind: &apiv1.Request_StopVm{StopVm: &apiv1.StopVmRequest{Name: "web"}}})
	v = wlAwaitVm(t, w, "web", "stopped", func(v *apiv1.Vm) bool { return v.GetState() == apiv1.VmState_VM_STATE_STOPPED })
	if sv, _ := wlSimVM(w, v.GetNodeId(), "web"); !sv.Ended() {
		t.Fatalf("the state says stopped but the hypervisor runs %+v", sv)
	}

	gen := v.GetGeneration()
	wlDo(t, w, c, &apiv1.Request{Kind: &apiv1.Request_StartVm{StartVm: &apiv1.StartVmRequest{Name: "web"}}})
	v = wlAwaitVm(t, w, "web", "running again", running)
	if v.GetGeneration() != gen+1 {
		t.Fatalf("restarted at generation %d, want %d", v.GetGeneration(), gen+1)
	}

	node := v.GetNodeId()
	wlDo(t, w, c, &apiv1.Request{Kind: &apiv1.Request_DeleteVm{DeleteVm: &apiv1.DeleteVmRequest{Name: "web"}}})
	w.Must(t, w.RunUntil(func() bool {
		_, found := wlVm(w, "web")
		_, held := wlSimVM(w, node, "web")
		return !found && !held
	}, 60*time.Second))
}

func TestWorkloadRestartPolicies(t *testing.T) {
	tests := []struct {
		policy      apiv1.RestartPolicy
		wantRestart bool
	}{
		{apiv1.RestartPolicy_RESTART_POLICY_ALWAYS, true},
		{apiv1.RestartPolicy_RESTART_POLICY_ON_FAILURE, true},
		{apiv1.RestartPolicy_RESTART_POLICY_NEVER, false},
	}
	for _, tt := range tests {
		t.Run(tt.policy.String(), func(t *testing.T) {
			w, c := wlWorld(t, 3)
			wlDo(t, w, c, createReq("db", tt.policy))
			v := wlAwaitVm(t, w, "db", "running", running)
			if !w.FailVM(v.GetNodeId(), "db", "qemu exited: signal: killed") {
				t.Fatal("no running VM to kill")
			}
			if !tt.wantRestart {
				v = wlAwaitVm(t, w, "db", "failed", func(v *apiv1.Vm) bool { return v.GetState() == apiv1.VmState_VM_STATE_FAILED })
				w.Must(t, w.RunFor(10*time.Second))
				if v, _ := wlVm(w, "db"); v.GetState() != apiv1.VmState_VM_STATE_FAILED || v.GetRestarts() != 0 {
					t.Fatalf("with policy never: %s after %d restarts, want failed for good", v.GetState(), v.GetRestarts())
				}
				if v.GetReason() != "qemu exited: signal: killed" {
					t.Fatalf("reason %q", v.GetReason())
				}
				return
			}
			v = wlAwaitVm(t, w, "db", "running again", func(v *apiv1.Vm) bool { return running(v) && v.GetRestarts() == 1 })
			sawFailed := false
			for _, e := range v.GetEvents() {
				sawFailed = sawFailed || e.GetState() == apiv1.VmState_VM_STATE_FAILED
			}
			if !sawFailed {
				t.Fatalf("events %v show no failure", v.GetEvents())
			}
		})
	}
}

func TestWorkloadTasks(t *testing.T) {
	tests := []struct {
		command    string
		timeoutMs  uint64
		wantStatus apiv1.TaskStatus
		wantCode   int32
		wantError  string
	}{
		{TaskExitOK, 0, apiv1.TaskStatus_TASK_STATUS_SUCCEEDED, 0, ""},
		{TaskExitFail, 0, apiv1.TaskStatus_TASK_STATUS_FAILED, 1, ""},
		{TaskHang, 1000, apiv1.TaskStatus_TASK_STATUS_FAILED, -1, "timeout"},
	}
	for _, tt := range tests {
		t.Run(tt.command, func(t *testing.T) {
			w, c := wlWorld(t, 3)
			resp := wlDo(t, w, c, &apiv1.Request{Kind: &apiv1.Request_SubmitTask{SubmitTask: &apiv1.SubmitTaskRequest{Spec: &apiv1.TaskSpec{
				Command: tt.command, TimeoutMs: tt.timeoutMs, Resources: &apiv1.Resources{Vcpus: 1, MemoryMib: 128},
			}}}})
			id := resp.GetSubmitTask().GetTask().GetId()
			var task *apiv1.Task
			w.Must(t, w.RunUntil(func() bool {
				l := w.Leader()
				if l == 0 {
					return false
				}
				task, _ = w.Node(l).Core().State().Task(id)
				return task.GetStatus().Ended()
			}, 60*time.Second))
			if task.GetStatus() != tt.wantStatus || task.GetResult().GetExitCode() != tt.wantCode || task.GetResult().GetError() != tt.wantError {
				t.Fatalf("task ended %s, code %d, error %q; want %s, %d, %q", task.GetStatus(), task.GetResult().GetExitCode(),
					task.GetResult().GetError(), tt.wantStatus, tt.wantCode, tt.wantError)
			}
			// Its VM's files go once the end is recorded.
			w.Must(t, w.RunUntil(func() bool {
				_, held := wlSimVM(w, task.GetNodeId(), core.TaskVMName(id))
				return !held
			}, 30*time.Second))
		})
	}
}

// A VM keeps running while its node is down, and the restarted node adopts
// it instead of booting another copy.
func TestWorkloadNodeRestartAdoptsItsVMs(t *testing.T) {
	w, c := wlWorld(t, 3)
	wlDo(t, w, c, createReq("keep", apiv1.RestartPolicy_RESTART_POLICY_ALWAYS))
	v := wlAwaitVm(t, w, "keep", "running", running)
	node := v.GetNodeId()
	w.Crash(node)
	// Down for a second. The supervisors' lease (5 s from a renewal asked
	// every second) then outlasts the outage and the restarted node's first
	// renewal even when a renewal is lost on the lossy network; a 3 s
	// outage did not when the last renewal before the crash was lost.
	w.Must(t, w.RunFor(time.Second))
	w.Must(t, w.Restart(node))
	w.Must(t, w.RunUntil(w.Converged, 30*time.Second))
	w.Must(t, w.RunFor(3*time.Second))
	sv, ok := wlSimVM(w, node, "keep")
	if !ok || sv.Starts != 1 || sv.State != apiv1.VmState_VM_STATE_RUNNING {
		t.Fatalf("after the restart node %d holds %+v, want the first boot still running", node, sv)
	}
	wlDo(t, w, c, &apiv1.Request{Kind: &apiv1.Request_StopVm{StopVm: &apiv1.StopVmRequest{Name: "keep"}}})
	wlAwaitVm(t, w, "keep", "stopped", func(v *apiv1.Vm) bool { return v.GetState() == apiv1.VmState_VM_STATE_STOPPED })
}

// smallWorld is three fault-free nodes of 2 vCPUs and 512 MiB each, with
// a leader, and a client.
func smallWorld(t *testing.T) (*World, *Client) {
	t.Helper()
	w := NewT(t, BaseSeed(t), Options{Nodes: 3, Workloads: true, Core: func(c *core.Config) {
		c.Capacity = &apiv1.Resources{Vcpus: 2, MemoryMib: 512}
	}})
	runToLeader(t, w)
	return w, w.NewClient(ClientOptions{})
}

// More than fits: the rest waits, pending, and is placed as room frees up;
// no node ever runs more than its capacity (the checker is on).
func TestWorkloadCapacityIsNeverExceeded(t *testing.T) {
	w, c := smallWorld(t)
	for i := range 8 {
		c.Do(createReq(string(rune('a'+i))+"-vm", apiv1.RestartPolicy_RESTART_POLICY_NEVER))
	}
	w.Must(t, w.RunUntil(w.ClientsIdle, 30*time.Second))
	// 3 nodes × 2 vCPUs: six run, two wait.
	w.Must(t, w.RunUntil(func() bool {
		n := 0
		for _, id := range w.IDs() {
			for _, v := range w.SimVMs(id) {
				if v.State == apiv1.VmState_VM_STATE_RUNNING {
					n++
				}
			}
		}
		return n == 6
	}, 60*time.Second))
	w.Must(t, w.RunFor(5*time.Second))
	pending := 0
	for _, v := range w.Node(w.Leader()).Core().State().Vms(0) {
		if v.GetState() == apiv1.VmState_VM_STATE_PENDING {
			pending++
		}
	}
	if pending != 2 {
		t.Fatalf("%d VMs pending, want 2", pending)
	}
}

// A backlog that fits nowhere costs the leader no scheduler calls while
// nothing changes (its reasons are recorded, then it is blocked), and it
// is placed as soon as room appears.
func TestWorkloadBlockedBacklogWaitsForRoom(t *testing.T) {
	w, c := smallWorld(t)
	for i := range 6 {
		c.Do(createReq(fmt.Sprintf("vm-%d", i), apiv1.RestartPolicy_RESTART_POLICY_NEVER))
	}
	const backlog = 40
	for range backlog {
		c.Do(&apiv1.Request{Kind: &apiv1.Request_SubmitTask{SubmitTask: &apiv1.SubmitTaskRequest{Spec: &apiv1.TaskSpec{
			Command: TaskHang, TimeoutMs: 600_000, Resources: &apiv1.Resources{Vcpus: 1, MemoryMib: 128},
		}}}})
	}
	w.Must(t, w.RunUntil(w.ClientsIdle, 30*time.Second))
	// Six VMs fill the three nodes; every task waits, with its reason, and
	// then the leader tries none of them while nothing changes. (A change
	// of leader, which the fault-free network should not bring, starts the
	// look afresh.)
	for attempt := 1; ; attempt++ {
		var lead uint64
		w.Must(t, w.RunUntil(func() bool {
			lead = w.Leader()
			if lead == 0 {
				return false
			}
			l := w.Node(lead).Core()
			for _, tk := range l.State().PendingTasks(0) {
				if tk.GetReason() == "" {
					return false
				}
			}
			return len(l.State().PendingTasks(0)) == backlog && l.PlacementBlocked() == backlog
		}, 60*time.Second))
		l := w.Node(lead).Core()
		t.Logf("%d tasks blocked at %s: %q", backlog, w.Now(), l.State().PendingTasks(1)[0].GetReason())
		l.TakeObservations()
		w.Must(t, w.RunFor(10*time.Second))
		if w.Leader() != lead {
			if attempt == 3 {
				t.Fatalf("%s", w.Failure(fmt.Errorf("the leader changed in each of 3 looks, on a fault-free network")))
			}
			continue
		}
		if o := l.TakeObservations(); o.PlacementTries != 0 {
			t.Fatalf("the leader made %d scheduler calls in 10 s for a blocked backlog with nothing changed, want 0", o.PlacementTries)
		}
		break
	}
	// One VM stops: its vCPU goes to one task, and the rest stay blocked.
	wlDo(t, w, c, &apiv1.Request{Kind: &apiv1.Request_StopVm{StopVm: &apiv1.StopVmRequest{Name: "vm-0"}}})
	w.Must(t, w.RunUntil(func() bool {
		l := w.Node(w.Leader()).Core()
		return w.Leader() != 0 && len(l.State().PendingTasks(0)) == backlog-1
	}, 60*time.Second))
	w.Must(t, w.RunFor(5*time.Second))
	if l := w.Node(w.Leader()).Core(); len(l.State().PendingTasks(0)) != backlog-1 {
		t.Fatalf("%d tasks pending after one VM made room for one, want %d", len(l.State().PendingTasks(0)), backlog-1)
	}
}

// A stop that fails on the way is asked for again: the VM does not keep
// running, nor its record stay stopping.
func TestWorkloadFailedStopIsRetried(t *testing.T) {
	w, c := wlWorld(t, 3)
	wlDo(t, w, c, createReq("web", apiv1.RestartPolicy_RESTART_POLICY_NEVER))
	v := wlAwaitVm(t, w, "web", "running", running)
	w.DropStops(v.GetNodeId(), 1)
	wlDo(t, w, c, &apiv1.Request{Kind: &apiv1.Request_StopVm{StopVm: &apiv1.StopVmRequest{Name: "web"}}})
	wlAwaitVm(t, w, "web", "stopped", func(v *apiv1.Vm) bool { return v.GetState() == apiv1.VmState_VM_STATE_STOPPED })
	if sv, _ := wlSimVM(w, v.GetNodeId(), "web"); !sv.Ended() {
		t.Fatalf("the state says stopped but the hypervisor runs %+v", sv)
	}
}

// Placement honours label constraints and anti-affinity: a constrained VM
// goes to the one node that carries the label, wherever the leader is, and
// two VMs of one group never share a node.
func TestWorkloadConstraintsAndAntiAffinity(t *testing.T) {
	w := NewT(t, BaseSeed(t), Options{Nodes: 3, Workloads: true, Core: func(c *core.Config) {
		if c.ID == 3 {
			c.Labels = map[string]string{"zone": "b"}
		}
	}})
	runToLeader(t, w)
	c := w.NewClient(ClientOptions{})
	req := createReq("pinned", apiv1.RestartPolicy_RESTART_POLICY_NEVER)
	req.GetCreateVm().Spec.Constraints = map[string]string{"zone": "b"}
	wlDo(t, w, c, req)
	if v := wlAwaitVm(t, w, "pinned", "running", running); v.GetNodeId() != 3 {
		t.Fatalf("a VM constrained to zone=b runs on node %d", v.GetNodeId())
	}
	nodes := map[uint64]string{}
	for _, name := range []string{"db-a", "db-b", "db-c"} {
		req := createReq(name, apiv1.RestartPolicy_RESTART_POLICY_NEVER)
		req.GetCreateVm().Spec.AntiAffinityGroup = "db"
		wlDo(t, w, c, req)
	}
	for _, name := range []string{"db-a", "db-b", "db-c"} {
		v := wlAwaitVm(t, w, name, "running", running)
		if other, ok := nodes[v.GetNodeId()]; ok {
			t.Fatalf("%s and %s of one anti-affinity group share node %d", other, name, v.GetNodeId())
		}
		nodes[v.GetNodeId()] = name
	}
}

// A VM deleted and created again under the same name is a new life: it
// runs, and nothing of the earlier life (its failure) touches it.
func TestWorkloadRecreatedVmIsANewLife(t *testing.T) {
	w, c := wlWorld(t, 3)
	wlDo(t, w, c, createReq("web", apiv1.RestartPolicy_RESTART_POLICY_NEVER))
	v := wlAwaitVm(t, w, "web", "running", running)
	w.FailVM(v.GetNodeId(), "web", "qemu exited: signal: killed")
	old := wlAwaitVm(t, w, "web", "failed", func(v *apiv1.Vm) bool { return v.GetState() == apiv1.VmState_VM_STATE_FAILED })
	wlDo(t, w, c, &apiv1.Request{Kind: &apiv1.Request_DeleteVm{DeleteVm: &apiv1.DeleteVmRequest{Name: "web"}}})
	wlDo(t, w, c, createReq("web", apiv1.RestartPolicy_RESTART_POLICY_NEVER))
	v = wlAwaitVm(t, w, "web", "running again", running)
	if v.GetGeneration() <= old.GetGeneration() {
		t.Fatalf("the new life runs at generation %d, the old one reached %d", v.GetGeneration(), old.GetGeneration())
	}
	w.Must(t, w.RunFor(5*time.Second))
	if v, _ := wlVm(w, "web"); !running(v) {
		t.Fatalf("the new life is %s (%s)", v.GetState(), v.GetReason())
	}
}
