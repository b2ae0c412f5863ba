package cli

import (
	"encoding/json"
	"strings"
	"testing"

	apiv1 "github.com/blixard/blixard/api/v1"
	"github.com/blixard/blixard/client/clienttest"
)

// withNode3 gives n a ready worker, node 3, and a node 9 that has left.
func withNode3(n *clienttest.Node) {
	n.UpdateCluster(func(r *apiv1.GetClusterStatusResponse) {
		r.Nodes = append(r.Nodes,
			&apiv1.Node{Id: 3, Address: "10.0.0.3:7001", Role: apiv1.NodeRole_NODE_ROLE_WORKER, Status: apiv1.NodeStatus_NODE_STATUS_READY},
			&apiv1.Node{Id: 9, Address: "10.0.0.9:7001", Role: apiv1.NodeRole_NODE_ROLE_WORKER, Status: apiv1.NodeStatus_NODE_STATUS_LEFT})
	})
}

func TestClusterDrainAndUndrain(t *testing.T) {
	for _, tc := range []struct {
		cmd   string
		drain bool
		want  string
	}{
		{"drain", true, "node 3 draining: its VMs move to other nodes; nothing new lands on it\n"},
		{"undrain", false, "node 3 no longer draining: new VMs and tasks may land on it; nothing moves back\n"},
	} {
		t.Run(tc.cmd, func(t *testing.T) {
			n := clienttest.Start(t, 1)
			withNode3(n)
			if got := mustRunAt(t, n, "cluster", tc.cmd, "3"); got != tc.want {
				t.Errorf("cluster %s 3 printed %q, want %q", tc.cmd, got, tc.want)
			}
			calls := n.Calls()
			if len(calls) != 1 || calls[0].Method != "DrainNode" {
				t.Fatalf("calls %v, want one DrainNode", calls)
			}
			req := calls[0].Request.(*apiv1.DrainNodeRequest)
			if req.GetNodeId() != 3 || req.GetDrain() != tc.drain || req.GetClientRequestId() == "" {
				t.Errorf("DrainNode request %v, want node 3, drain %v and a client request id", req, tc.drain)
			}
		})
	}
}

func TestClusterDrainJSONIsTheNodeRecord(t *testing.T) {
	n := clienttest.Start(t, 1)
	withNode3(n)
	for _, tc := range []struct {
		cmd   string
		drain bool
	}{{"drain", true}, {"undrain", false}} {
		out := mustRunAt(t, n, "cluster", tc.cmd, "3", "-o", "json")
		var got struct {
			Node *struct {
				ID     *string `json:"id"`
				Drain  *bool   `json:"drain"`
				Status *string `json:"status"`
			} `json:"node"`
		}
		if err := json.Unmarshal([]byte(out), &got); err != nil {
			t.Fatalf("cluster %s -o json: %v\n%s", tc.cmd, err, out)
		}
		if got.Node == nil || got.Node.ID == nil || *got.Node.ID != "3" || got.Node.Drain == nil || *got.Node.Drain != tc.drain ||
			got.Node.Status == nil || *got.Node.Status != "NODE_STATUS_READY" {
			t.Errorf("cluster %s -o json is not node 3's record with drain %v:\n%s", tc.cmd, tc.drain, out)
		}
	}
	// Drained again: harmless, the same record.
	mustRunAt(t, n, "cluster", "drain", "3")
	mustRunAt(t, n, "cluster", "drain", "3")
	out := mustRunAt(t, n, "cluster", "status")
	if want := "3 10.0.0.3:7001 worker - - -/0 -/0 MiB yes ready"; !strings.Contains(strings.Join(strings.Fields(out), " "), want) {
		t.Errorf("cluster status after drain lacks the row %q:\n%s", want, out)
	}
}

func TestClusterDrainRefusedByCluster(t *testing.T) {
	n := clienttest.Start(t, 1)
	withNode3(n)
	failAt(t, n, "error: node_id: no node 4", "cluster", "drain", "4")
	failAt(t, n, "error: node_id: node 9 has left the cluster", "cluster", "undrain", "9")
}

func TestClusterDrainBadID(t *testing.T) {
	n := clienttest.Start(t, 1)
	for _, cmd := range []string{"drain", "undrain"} {
		failAt(t, n, `error: node id "0" is not a positive integer (see 'blixard cluster `+cmd+` --help')`, "cluster", cmd, "0")
		failAt(t, n, `node id "three" is not a positive integer`, "cluster", cmd, "three")
		failAt(t, n, `node id "-3" is not a positive integer`, "cluster", cmd, "--", "-3")
		failAt(t, n, "blixard cluster "+cmd+" takes 1 argument(s), ID; got 0", "cluster", cmd)
		failAt(t, n, "blixard cluster "+cmd+" takes 1 argument(s), ID; got 2", "cluster", cmd, "3", "4")
	}
	if len(n.Calls()) != 0 {
		t.Errorf("node got %d calls, want none: the id is checked before any request", len(n.Calls()))
	}
}
