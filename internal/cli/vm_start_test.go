package cli

import (
	"testing"

	apiv1 "github.com/blixard/blixard/api/v1"
	"github.com/blixard/blixard/client/clienttest"
)

func TestVMStart(t *testing.T) {
	n := clienttest.Start(t, 1)
	mustRunAt(t, n, "vm", "create", "web", "--vcpus", "1", "--memory", "64", "--no-start")
	got := mustRunAt(t, n, "vm", "start", "web")
	if want := "vm web started: desired running, state pending (started; waiting for placement)\n"; got != want {
		t.Errorf("vm start printed %q, want %q", got, want)
	}
	calls := n.Calls()
	if req := calls[len(calls)-1].Request.(*apiv1.StartVmRequest); req.GetName() != "web" || req.GetClientRequestId() == "" {
		t.Errorf("StartVm request %v", req)
	}
	failAt(t, n, `error: name: no VM named "db"`, "vm", "start", "db")
	failAt(t, n, "takes 1 argument(s), NAME; got 2", "vm", "start", "a", "b")
}
