package cli

import (
	"encoding/json"
	"testing"

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
vCPUs:           2
Memory:          512 MiB
Image:           -
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
