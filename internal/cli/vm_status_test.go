package cli

import (
	"context"
	"encoding/json"
	"testing"

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
Anti-affinity:   -
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
Anti-affinity:   -
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
