package cli

import (
	"testing"

	apiv1 "github.com/blixard/blixard/api/v1"
	"github.com/blixard/blixard/client/clienttest"
)

func TestClusterLeave(t *testing.T) {
	n := clienttest.Start(t, 1)
	n.UpdateCluster(func(r *apiv1.GetClusterStatusResponse) {
		r.Members = append(r.Members, &apiv1.ClusterMember{Id: 3, Address: "10.0.0.3:7001"})
	})
	if got := mustRunAt(t, n, "cluster", "leave", "3"); got != "node 3 left the cluster; its id cannot join again\n" {
		t.Errorf("cluster leave 3 printed %q", got)
	}
	req := n.Calls()[0].Request.(*apiv1.LeaveClusterRequest)
	if req.GetNodeId() != 3 || req.GetClientRequestId() == "" {
		t.Errorf("LeaveCluster request %v, want node 3 and a client request id", req)
	}
	failAt(t, n, "error: node_id: node 3 is not a member", "cluster", "leave", "3")
	if got := mustRunAt(t, n, "cluster", "leave", "1", "-o", "json"); got != "{}\n" {
		t.Errorf("cluster leave -o json printed %q, want {}", got)
	}
}

func TestClusterLeaveBadID(t *testing.T) {
	n := clienttest.Start(t, 1)
	failAt(t, n, `node id "0" is not a positive integer (see 'blixard cluster leave --help')`, "cluster", "leave", "0")
	failAt(t, n, `node id "three" is not a positive integer`, "cluster", "leave", "three")
	failAt(t, n, "blixard cluster leave takes 1 argument(s), ID; got 0", "cluster", "leave")
	failAt(t, n, `blixard cluster status takes no arguments; got "now"`, "cluster", "status", "now")
	if len(n.Calls()) != 0 {
		t.Errorf("node got %d calls, want none", len(n.Calls()))
	}
}
