package cli

import (
	"encoding/json"
	"testing"

	"github.com/blixard/blixard/client/clienttest"
)

func TestVMStop(t *testing.T) {
	n := clienttest.Start(t, 1)
	mustRunAt(t, n, "vm", "create", "web", "--vcpus", "1", "--memory", "64")
	got := mustRunAt(t, n, "vm", "stop", "web")
	if want := "vm web stopped: desired stopped, state stopped (stopped)\n"; got != want {
		t.Errorf("vm stop printed %q, want %q", got, want)
	}
	out := mustRunAt(t, n, "vm", "stop", "web", "-o", "json")
	var vm map[string]any
	if err := json.Unmarshal([]byte(out), &vm); err != nil || vm["desired_state"] != "VM_DESIRED_STATE_STOPPED" {
		t.Errorf("vm stop -o json (%v):\n%s", err, out)
	}
	failAt(t, n, `error: name: no VM named "db"`, "vm", "stop", "db")
}
