package sim

import (
	"fmt"
	"math/rand/v2"

	apiv1 "github.com/blixard/blixard/api/v1"
)

// Workload draws client requests: tasks submitted, listed and cancelled,
// and VMs from a small pool of names created, started, stopped, read and
// deleted, so that requests keep meeting records that exist. Reads are
// linearizable (never stale), so every history it makes can be checked.
type Workload struct {
	rng     *rand.Rand
	vmNames []string
	taskIDs []uint64
	// RestartPolicies, when set, gives each VM created a restart policy
	// drawn from always (half of them), on-failure and never; unset, VMs
	// take the default and nothing more is drawn (so runs drawn before it
	// existed replay the same).
	RestartPolicies bool
}

// NewWorkload returns a workload over vms VM names drawing from rng.
func NewWorkload(rng *rand.Rand, vms int) *Workload {
	wl := &Workload{rng: rng}
	for i := 0; i < vms; i++ {
		wl.vmNames = append(wl.vmNames, fmt.Sprintf("vm-%d", i))
	}
	return wl
}

// SawTask lets later cancels name a task id that exists.
func (wl *Workload) SawTask(id uint64) { wl.taskIDs = append(wl.taskIDs, id) }

// Next draws one request.
func (wl *Workload) Next() *apiv1.Request {
	name := wl.vmNames[wl.rng.IntN(len(wl.vmNames))]
	switch p := wl.rng.IntN(100); {
	case p < 25:
		return &apiv1.Request{Kind: &apiv1.Request_SubmitTask{SubmitTask: &apiv1.SubmitTaskRequest{Spec: &apiv1.TaskSpec{
			Command: "/bin/echo", Args: []string{fmt.Sprint(wl.rng.IntN(1000))},
			Resources: &apiv1.Resources{Vcpus: 1, MemoryMib: 64},
		}}}}
	case p < 35:
		return &apiv1.Request{Kind: &apiv1.Request_ListTasks{ListTasks: &apiv1.ListTasksRequest{}}}
	case p < 40 && len(wl.taskIDs) > 0:
		id := wl.taskIDs[wl.rng.IntN(len(wl.taskIDs))]
		return &apiv1.Request{Kind: &apiv1.Request_CancelTask{CancelTask: &apiv1.CancelTaskRequest{Id: id}}}
	case p < 55:
		req := &apiv1.CreateVmRequest{Name: name, Spec: &apiv1.VmSpec{Vcpus: 1, MemoryMib: 128}}
		if !wl.RestartPolicies {
			req.Start = wl.rng.IntN(2) == 0
		} else {
			req.Start = wl.rng.IntN(4) != 0
			req.Spec.RestartPolicy = []apiv1.RestartPolicy{
				apiv1.RestartPolicy_RESTART_POLICY_ALWAYS, apiv1.RestartPolicy_RESTART_POLICY_ALWAYS,
				apiv1.RestartPolicy_RESTART_POLICY_ON_FAILURE, apiv1.RestartPolicy_RESTART_POLICY_NEVER,
			}[wl.rng.IntN(4)]
		}
		return &apiv1.Request{Kind: &apiv1.Request_CreateVm{CreateVm: req}}
	case p < 65:
		return &apiv1.Request{Kind: &apiv1.Request_StartVm{StartVm: &apiv1.StartVmRequest{Name: name}}}
	case p < 75:
		return &apiv1.Request{Kind: &apiv1.Request_StopVm{StopVm: &apiv1.StopVmRequest{Name: name}}}
	case p < 80:
		return &apiv1.Request{Kind: &apiv1.Request_DeleteVm{DeleteVm: &apiv1.DeleteVmRequest{Name: name}}}
	default:
		return &apiv1.Request{Kind: &apiv1.Request_GetVm{GetVm: &apiv1.GetVmRequest{Name: name}}}
	}
}
