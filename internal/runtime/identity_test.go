package runtime

import (
	"strings"
	"testing"

	apiv1 "github.com/blixard/blixard/api/v1"
)

func TestIdentityIsFixedByTheFirstStart(t *testing.T) {
	dir := t.TempDir()
	first := Config{ID: 2, DataDir: dir, Role: apiv1.NodeRole_NODE_ROLE_WORKER}
	if err := settleIdentity(&first, true); err != nil {
		t.Fatal(err)
	}
	// A restart without --role comes back a worker.
	again := Config{ID: 2, DataDir: dir, Role: apiv1.NodeRole_NODE_ROLE_VOTER}
	if err := settleIdentity(&again, false); err != nil || again.Role != apiv1.NodeRole_NODE_ROLE_WORKER {
		t.Fatalf("restart: role %v, err %v; want worker", again.Role, err)
	}
	// An explicit other role is refused.
	voter := Config{ID: 2, DataDir: dir, Role: apiv1.NodeRole_NODE_ROLE_VOTER}
	if err := settleIdentity(&voter, true); err == nil || !strings.Contains(err.Error(), "created as worker") {
		t.Fatalf("restart as voter: err %v, want a refusal", err)
	}
	// Another id on the same data directory is refused.
	other := Config{ID: 3, DataDir: dir}
	if err := settleIdentity(&other, false); err == nil || !strings.Contains(err.Error(), "belongs to node 2") {
		t.Fatalf("restart as node 3: err %v, want a refusal", err)
	}
}
