package cli

import (
	"encoding/json"
	"testing"

	apiv1 "github.com/blixard/blixard/api/v1"
	"github.com/blixard/blixard/client/clienttest"
)

// threeMembers makes n report a three-member cluster led by node 2, as
// node 1 sees it: node 2 drained, worker 14 disconnected, and node 9, which
// left, still on record.
func threeMembers(n *clienttest.Node) {
	n.UpdateCluster(func(r *apiv1.GetClusterStatusResponse) {
		r.Cluster.Id = "c-7f3a"
		r.NodeId, r.LeaderId, r.Term = 1, 2, 5
		res := &apiv1.Resources{Vcpus: 8, MemoryMib: 16384}
		small := &apiv1.Resources{Vcpus: 2, MemoryMib: 1024}
		voter, worker := apiv1.NodeRole_NODE_ROLE_VOTER, apiv1.NodeRole_NODE_ROLE_WORKER
		ready, disconnected := apiv1.NodeStatus_NODE_STATUS_READY, apiv1.NodeStatus_NODE_STATUS_DISCONNECTED
		r.Members = []*apiv1.ClusterMember{
			{Id: 1, Address: "10.0.0.1:7001", Role: voter, Voter: true, Status: ready, Capacity: res,
				Allocated: &apiv1.Resources{Vcpus: 3, MemoryMib: 2048}},
			{Id: 2, Address: "10.0.0.2:7001", Role: voter, Voter: true, Status: ready, Capacity: res},
			{Id: 14, Address: "10.0.0.14:7001", Role: worker, Voter: false, Status: disconnected, Capacity: small},
		}
		r.Nodes = []*apiv1.Node{
			{Id: 1, Address: "10.0.0.1:7001", Role: voter, Status: ready, Capacity: res},
			{Id: 2, Address: "10.0.0.2:7001", Role: voter, Status: ready, Capacity: res, Drain: true,
				StatusReason: "heartbeats resumed"},
			{Id: 9, Address: "10.0.0.9:7001", Role: worker, Status: apiv1.NodeStatus_NODE_STATUS_LEFT, Capacity: small},
			{Id: 14, Address: "10.0.0.14:7001", Role: worker, Status: disconnected, Capacity: small,
				StatusReason: "no heartbeat for 2s"},
		}
	})
}

func TestClusterStatusTable(t *testing.T) {
	n := clienttest.Start(t, 1)
	threeMembers(n)
	got := mustRunAt(t, n, "cluster", "status")
	want := `Cluster ID:     c-7f3a
Leader:         2 (10.0.0.2:7001)
Term:           5
Commit index:   0
Applied index:  0
Answered by:    node 1

ID  ADDRESS         ROLE    VOTER  MATCH  VCPUS  MEMORY          DRAIN  STATUS
1   10.0.0.1:7001   voter   yes    -      3/8    2048/16384 MiB  no     ready
2   10.0.0.2:7001   voter   yes    -      0/8    0/16384 MiB     yes    ready (heartbeats resumed)
14  10.0.0.14:7001  worker  no     -      0/2    0/1024 MiB      no     disconnected (no heartbeat for 2s)
9   10.0.0.9:7001   worker  -      -      -/2    -/1024 MiB      no     left
`
	if got != want {
		t.Errorf("cluster status printed\n%s\nwant\n%s", got, want)
	}
}

func TestClusterStatusTableFromLeaderShowsMatch(t *testing.T) {
	n := clienttest.Start(t, 1)
	n.UpdateCluster(func(r *apiv1.GetClusterStatusResponse) {
		r.Members[0].Address = "10.0.0.1:7001"
		r.Members[0].MatchIndex = 42
	})
	got := mustRunAt(t, n, "cluster", "status", "--stale")
	want := `Cluster ID:     fake-cluster
Leader:         1 (10.0.0.1:7001)
Term:           1
Commit index:   0
Applied index:  0
Answered by:    node 1

ID  ADDRESS        ROLE   VOTER  MATCH  VCPUS  MEMORY      DRAIN  STATUS
1   10.0.0.1:7001  voter  yes    42     0/4    0/8192 MiB  no     ready
`
	if got != want {
		t.Errorf("cluster status printed\n%s\nwant\n%s", got, want)
	}
	if req := n.Calls()[0].Request.(*apiv1.GetClusterStatusRequest); !req.GetStale() {
		t.Error("--stale did not ask for a stale read")
	}
}

func TestClusterStatusJSON(t *testing.T) {
	n := clienttest.Start(t, 1)
	threeMembers(n)
	out := mustRunAt(t, n, "cluster", "status", "-o", "json")
	var got struct {
		LeaderID    *string `json:"leader_id"`
		Term        *string `json:"term"`
		CommitIndex *string `json:"commit_index"`
		NodeID      *string `json:"node_id"`
		Cluster     *struct {
			ID *string `json:"id"`
		} `json:"cluster"`
		Members []struct {
			ID         *string `json:"id"`
			Address    *string `json:"address"`
			Role       *string `json:"role"`
			Voter      *bool   `json:"voter"`
			MatchIndex *string `json:"match_index"`
			Status     *string `json:"status"`
		} `json:"members"`
		Nodes []struct {
			ID           *string `json:"id"`
			Status       *string `json:"status"`
			StatusReason *string `json:"status_reason"`
			Drain        *bool   `json:"drain"`
		} `json:"nodes"`
	}
	if err := json.Unmarshal([]byte(out), &got); err != nil {
		t.Fatalf("cluster status -o json is not the expected JSON: %v\n%s", err, out)
	}
	if got.LeaderID == nil || *got.LeaderID != "2" || got.Term == nil || *got.Term != "5" ||
		got.CommitIndex == nil || got.NodeID == nil || *got.NodeID != "1" || got.Cluster == nil || *got.Cluster.ID != "c-7f3a" {
		t.Errorf("cluster status -o json top level wrong:\n%s", out)
	}
	if len(got.Members) != 3 {
		t.Fatalf("%d members, want 3:\n%s", len(got.Members), out)
	}
	w := got.Members[2]
	if w.ID == nil || *w.ID != "14" || w.Voter == nil || *w.Voter || w.Role == nil || *w.Role != "NODE_ROLE_WORKER" ||
		w.MatchIndex == nil || *w.MatchIndex != "0" || w.Status == nil || *w.Status != "NODE_STATUS_DISCONNECTED" {
		t.Errorf("member 14 in JSON wrong (want id \"14\", voter false, role NODE_ROLE_WORKER, match_index \"0\"):\n%s", out)
	}
	if len(got.Nodes) != 4 {
		t.Fatalf("%d node records, want 4:\n%s", len(got.Nodes), out)
	}
	if d := got.Nodes[1]; d.ID == nil || *d.ID != "2" || d.Drain == nil || !*d.Drain {
		t.Errorf("node record 2 in JSON wrong (want id \"2\", drain true):\n%s", out)
	}
	if w := got.Nodes[3]; w.Status == nil || *w.Status != "NODE_STATUS_DISCONNECTED" || w.StatusReason == nil || *w.StatusReason != "no heartbeat for 2s" ||
		w.Drain == nil || *w.Drain {
		t.Errorf("node record 14 in JSON wrong (want disconnected, its reason, drain false):\n%s", out)
	}
}
