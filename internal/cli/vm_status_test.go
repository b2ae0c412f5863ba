package cli

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	apiv1 "github.com/blixard/blixard/api/v1"
	"github.com/blixard/blixard/client/clienttest"
)

func TestVMStatus(t *testing.T) {
	n := clienttest.Start(t, 1)
	mustRunAt(t, n, "vm", "create", "web", "--vcpus", "2", "--memory", "512", "--constraint", "zone=a",
		"--constraint", "disk=ssd", "--no-start")
	mustRunAt(t, n, "vm", "start", "web")
	got := mustRunAt(t, n, "vm", "status", "web")
	want := `Name:            web
State:           pending (started; waiting for placement)
Desired:         running
Node:            -
Generation:      0
Restarts:        0
vCPUs:           2
Memory:          512 MiB
Image:           default
Kernel cmdline:  -
Restart:         on-failure
Constraints:     disk=ssd, zone=a
Features:        -
Anti-affinity:   -
Placement:       binpack
Created:         2026-01-02T03:04:06Z (index 1)
Updated:         index 2

TIME                  INDEX  STATE    NODE  GEN  REASON
2026-01-02T03:04:06Z  1      stopped  -     0    created
2026-01-02T03:04:07Z  2      pending  -     0    started; waiting for placement
`
	if got != want {
		t.Errorf("vm status printed\n%s\nwant\n%s", got, want)
	}
	failAt(t, n, `error: name: no VM named "db"`, "vm", "status", "db")
}

func TestVMStatusJSONIsTheVM(t *testing.T) {
	n := clienttest.Start(t, 1)
	mustRunAt(t, n, "vm", "create", "web", "--vcpus", "2", "--memory", "512")
	out := mustRunAt(t, n, "vm", "status", "web", "--stale", "-o", "json")
	var vm map[string]any
	if err := json.Unmarshal([]byte(out), &vm); err != nil {
		t.Fatalf("vm status -o json: %v\n%s", err, out)
	}
	events, _ := vm["events"].([]any)
	if vm["name"] != "web" || vm["state"] != "VM_STATE_PENDING" || vm["created_index"] != "1" || len(events) != 1 {
		t.Errorf("vm status -o json is not the VM object:\n%s", out)
	}
	if _, wrapped := vm["vm"]; wrapped {
		t.Errorf("vm status -o json wraps the VM in a response:\n%s", out)
	}
	calls := n.Calls()
	if req := calls[len(calls)-1].Request.(*apiv1.GetVmRequest); !req.GetStale() {
		t.Error("--stale did not ask for a stale read")
	}
}

// failVM makes every GetVm of n answer with the VM failed on node 2 after
// restarts restarts, leaving console as its tail.
func failVM(n *clienttest.Node, restarts uint32, console string) {
	n.SetHook(func(_ context.Context, method string, _ proto.Message, next func() (proto.Message, error)) (proto.Message, error) {
		resp, err := next()
		if v := asVM(resp); method == "GetVm" && err == nil && v != nil {
			v.State, v.Reason, v.NodeId, v.Generation = apiv1.VmState_VM_STATE_FAILED, "qemu exited: exit status 1", 2, uint64(restarts)+1
			v.Restarts, v.ConsoleTail = restarts, console
		}
		return resp, err
	})
}

func asVM(m proto.Message) *apiv1.Vm {
	resp, _ := m.(*apiv1.GetVmResponse)
	return resp.GetVm()
}

func TestVMStatusFailedShowsConsoleTail(t *testing.T) {
	n := clienttest.Start(t, 1)
	mustRunAt(t, n, "vm", "create", "web", "--vcpus", "1", "--memory", "128", "--image", "tools")
	failVM(n, 2, "[    0.1] Kernel panic\n\tnot syncing")
	got := mustRunAt(t, n, "vm", "status", "web")
	want := `Name:            web
State:           failed (qemu exited: exit status 1)
Desired:         running
Node:            2
Generation:      3
Restarts:        2
vCPUs:           1
Memory:          128 MiB
Image:           tools
Kernel cmdline:  -
Restart:         on-failure
Constraints:     -
Features:        -
Anti-affinity:   -
Placement:       binpack
Created:         2026-01-02T03:04:06Z (index 1)
Updated:         index 1

TIME                  INDEX  STATE    NODE  GEN  REASON
2026-01-02T03:04:06Z  1      pending  -     0    created; waiting for placement

Console at the last failure (last 35 bytes):
[    0.1] Kernel panic
	not syncing
`
	if got != want {
		t.Errorf("vm status printed\n%s\nwant\n%s", got, want)
	}
	out := mustRunAt(t, n, "vm", "status", "web", "-o", "json")
	var vm map[string]any
	if err := json.Unmarshal([]byte(out), &vm); err != nil || vm["restarts"] != float64(2) || vm["console_tail"] != "[    0.1] Kernel panic\n\tnot syncing" {
		t.Errorf("vm status -o json (%v), want restarts and console_tail:\n%s", err, out)
	}
}

// TestVMStatusPendingShowsWhy: a VM that waits for a node says why none
// takes it, and its events show where it came from.
func TestVMStatusPendingShowsWhy(t *testing.T) {
	n := clienttest.Start(t, 1)
	mustRunAt(t, n, "vm", "create", "db-1", "--vcpus", "2", "--memory", "8192", "--feature", "kvm", "--feature", "sev",
		"--anti-affinity", "db", "--anti-affinity-mode", "soft", "--placement", "spread")
	at := func(s int) int64 { return time.Date(2026, 1, 2, 3, 5, s, 0, time.UTC).UnixNano() }
	n.SetHook(func(_ context.Context, method string, _ proto.Message, next func() (proto.Message, error)) (proto.Message, error) {
		resp, err := next()
		if v := asVM(resp); method == "GetVm" && err == nil && v != nil {
			v.State, v.Reason, v.NodeId, v.Generation = apiv1.VmState_VM_STATE_PENDING, "no node has 8 GiB of memory free", 0, 7
			v.Events = []*apiv1.VmEvent{
				{Index: 5, TimeUnixNano: at(0), State: apiv1.VmState_VM_STATE_RUNNING, NodeId: 3, Generation: 7, Reason: "ready"},
				{Index: 9, TimeUnixNano: at(1), State: apiv1.VmState_VM_STATE_STOPPING, NodeId: 3, Generation: 7, Reason: "moving off node 3 (drained)"},
				{Index: 11, TimeUnixNano: at(2), State: apiv1.VmState_VM_STATE_PENDING, Generation: 7, Reason: "no node has 8 GiB of memory free"},
			}
		}
		return resp, err
	})
	got := mustRunAt(t, n, "vm", "status", "db-1")
	want := `Name:            db-1
State:           pending (no node has 8 GiB of memory free)
Desired:         running
Node:            -
Generation:      7
Restarts:        0
vCPUs:           2
Memory:          8192 MiB
Image:           default
Kernel cmdline:  -
Restart:         on-failure
Constraints:     -
Features:        kvm, sev
Anti-affinity:   db (soft)
Placement:       spread
Created:         2026-01-02T03:04:06Z (index 1)
Updated:         index 1

TIME                  INDEX  STATE     NODE  GEN  REASON
2026-01-02T03:05:00Z  5      running   3     7    ready
2026-01-02T03:05:01Z  9      stopping  3     7    moving off node 3 (drained)
2026-01-02T03:05:02Z  11     pending   -     7    no node has 8 GiB of memory free
`
	if got != want {
		t.Errorf("vm status printed\n%s\nwant\n%s", got, want)
	}
}

func TestVMStatusHardAntiAffinity(t *testing.T) {
	n := clienttest.Start(t, 1)
	mustRunAt(t, n, "vm", "create", "db-2", "--vcpus", "1", "--memory", "128", "--anti-affinity", "db")
	if got := mustRunAt(t, n, "vm", "status", "db-2"); !strings.Contains(got, "\nAnti-affinity:   db (hard)\n") {
		t.Errorf("vm status does not show the hard group:\n%s", got)
	}
}
