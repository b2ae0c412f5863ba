package cli

import (
	"encoding/json"
	"testing"

	"github.com/blixard/blixard/client/clienttest"
)

func TestVMDelete(t *testing.T) {
	n := clienttest.Start(t, 1)
	mustRunAt(t, n, "vm", "create", "web", "--vcpus", "1", "--memory", "64")
	mustRunAt(t, n, "vm", "create", "db", "--vcpus", "1", "--memory", "64")
	if got := mustRunAt(t, n, "vm", "delete", "web"); got != "vm web deleted\n" {
		t.Errorf("vm delete printed %q", got)
	}
	failAt(t, n, `error: name: no VM named "web"`, "vm", "delete", "web")

	out := mustRunAt(t, n, "vm", "delete", "db", "-o", "json")
	var resp struct {
		Removed *bool          `json:"removed"`
		VM      map[string]any `json:"vm"`
	}
	if err := json.Unmarshal([]byte(out), &resp); err != nil || resp.Removed == nil || !*resp.Removed || resp.VM["name"] != "db" {
		t.Errorf("vm delete -o json (%v), want {removed: true, vm: db}:\n%s", err, out)
	}
}
