package cli

import (
	"encoding/json"
	"testing"

	apiv1 "github.com/blixard/blixard/api/v1"
	"github.com/blixard/blixard/client/clienttest"
)

func TestVMList(t *testing.T) {
	n := clienttest.Start(t, 1)
	mustRunAt(t, n, "vm", "create", "web", "--vcpus", "2", "--memory", "512")
	mustRunAt(t, n, "vm", "create", "database-primary", "--vcpus", "16", "--memory", "65536", "--no-start")
	got := mustRunAt(t, n, "vm", "list")
	want := `NAME              STATE    DESIRED  NODE  VCPUS  MEMORY     REASON
database-primary  stopped  stopped  -     16     65536 MiB  created
web               pending  running  -     2      512 MiB    created; waiting for placement
`
	if got != want {
		t.Errorf("vm list printed\n%s\nwant\n%s", got, want)
	}

	mustRunAt(t, n, "vm", "list", "--limit", "1", "--stale")
	calls := n.Calls()
	if req := calls[len(calls)-1].Request.(*apiv1.ListVmsRequest); req.GetLimit() != 1 || !req.GetStale() {
		t.Errorf("ListVms request %v, want limit 1 and stale", req)
	}
	failAt(t, n, "--limit must be 0 (all) or more, got -1", "vm", "list", "--limit", "-1")
}

func TestVMListJSON(t *testing.T) {
	n := clienttest.Start(t, 1)
	// An empty list is still the response object.
	if got := mustRunAt(t, n, "vm", "list", "-o", "json"); got != "{\n  \"vms\": []\n}\n" {
		t.Errorf("empty vm list -o json printed %q", got)
	}
	mustRunAt(t, n, "vm", "create", "web", "--vcpus", "2", "--memory", "512")
	out := mustRunAt(t, n, "vm", "list", "-o", "json")
	var resp struct {
		VMs []map[string]any `json:"vms"`
	}
	if err := json.Unmarshal([]byte(out), &resp); err != nil || len(resp.VMs) != 1 {
		t.Fatalf("vm list -o json (%v), want {\"vms\": [one VM]}:\n%s", err, out)
	}
	vm := resp.VMs[0]
	spec, _ := vm["spec"].(map[string]any)
	if vm["name"] != "web" || vm["state"] != "VM_STATE_PENDING" || vm["desired_state"] != "VM_DESIRED_STATE_RUNNING" ||
		vm["node_id"] != "0" || spec["memory_mib"] != "512" || spec["restart_policy"] != "RESTART_POLICY_ON_FAILURE" ||
		spec["anti_affinity_group"] != "" {
		t.Errorf("VM in JSON wrong (want snake_case names, enum names, 64-bit ints as strings, empty fields present):\n%s", out)
	}
}

func TestVMListEmpty(t *testing.T) {
	n := clienttest.Start(t, 1)
	stdout, stderr, err := runAt(t, n, "vm", "list")
	if err != nil || stdout != "" || stderr != "no VMs\n" {
		t.Errorf("vm list of none: err %v, stdout %q, stderr %q", err, stdout, stderr)
	}
}
