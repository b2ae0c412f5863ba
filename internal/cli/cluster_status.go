package cli

import (
	"fmt"
	"io"
	"strconv"

	"github.com/spf13/cobra"

	apiv1 "github.com/blixard/blixard/api/v1"
)

func newClusterStatusCommand(g *globalFlags) *cobra.Command {
	var stale bool
	cmd := &cobra.Command{
		Use:   "status",
		Short: "Show the cluster's Raft state and members",
		Long: `Show the cluster as the answering node sees it: the cluster id, the
fingerprint of its CA (the one that signs node certificates; none for a
cluster run with --insecure) and the CA rotation under way if any
('blixard cluster ca'), the leader, the Raft term and commit index, and
each member with its role, whether it votes, how far its log matches the
leader's (known only when the leader answers), its vCPUs and memory as
used/capacity (what the VMs and tasks placed on it take), whether it is
drained ('blixard cluster drain') and its status with the reason it last
changed. Nodes that left the cluster follow the members.

A node's status is the leader's verdict: ready; disconnected when the
leader has not heard from it for a while (nothing new is placed on it);
down when that lasted past the node's fencing lease (its VMs have stopped
and are placed elsewhere); left once it left the cluster.

With -o json it prints the GetClusterStatusResponse: leader_id, term,
commit_index, members[] (id, address, role, voter, match_index, status,
capacity, allocated), the nodes' records (with status, status_reason, drain, the
overcommit ratios and lease_millis) and the cluster record.`,
		Example: `  blixard cluster status
  blixard cluster status --addr 10.0.0.1:7001,10.0.0.2:7001 -o json`,
		Args: exactArgs(),
		RunE: func(cmd *cobra.Command, _ []string) error {
			s, err := g.open(cmd)
			if err != nil {
				return err
			}
			defer s.close()
			resp, err := s.client.GetClusterStatus(s.ctx, &apiv1.GetClusterStatusRequest{Stale: stale})
			if err != nil {
				return err
			}
			return s.emit(resp, func(w io.Writer) { clusterStatusTable(w, resp) })
		},
	}
	cmd.Flags().BoolVar(&stale, "stale", false, "answer from the contacted node's state without a linearizable read")
	return cmd
}

func clusterStatusTable(w io.Writer, resp *apiv1.GetClusterStatusResponse) {
	leader := "none known"
	if id := resp.GetLeaderId(); id != 0 {
		leader = strconv.FormatUint(id, 10)
		for _, m := range resp.GetMembers() {
			if m.GetId() == id && m.GetAddress() != "" {
				leader += " (" + m.GetAddress() + ")"
			}
		}
	}
	row(w, "Cluster ID:", orDash(resp.GetCluster().GetId()))
	if cas := resp.GetCluster().GetCaCertificates(); len(cas) > 0 {
		row(w, "CA:", caFingerprint(cas[0]))
	}
	if r := caRotationText(resp.GetCluster()); r != "" {
		row(w, "CA rotation:", r)
	}
	row(w, "Leader:", leader)
	row(w, "Term:", resp.GetTerm())
	row(w, "Commit index:", resp.GetCommitIndex())
	row(w, "Applied index:", resp.GetAppliedIndex())
	row(w, "Answered by:", fmt.Sprintf("node %d", resp.GetNodeId()))
	row(w)
	row(w, "ID", "ADDRESS", "ROLE", "VOTER", "MATCH", "VCPUS", "MEMORY", "DRAIN", "STATUS")
	// Match indexes are tracked by the leader only.
	fromLeader := resp.GetLeaderId() != 0 && resp.GetLeaderId() == resp.GetNodeId()
	records := make(map[uint64]*apiv1.Node, len(resp.GetNodes()))
	for _, n := range resp.GetNodes() {
		records[n.GetId()] = n
	}
	for _, m := range resp.GetMembers() {
		voter, match := "no", "-"
		if m.GetVoter() {
			voter = "yes"
		}
		if fromLeader {
			match = strconv.FormatUint(m.GetMatchIndex(), 10)
		}
		rec := records[m.GetId()]
		delete(records, m.GetId())
		status := withReason(enumText(m.GetStatus()), rec.GetStatusReason())
		row(w, m.GetId(), orDash(m.GetAddress()), enumText(m.GetRole()), voter, match,
			fmt.Sprintf("%d/%d", m.GetAllocated().GetVcpus(), m.GetCapacity().GetVcpus()),
			fmt.Sprintf("%d/%s", m.GetAllocated().GetMemoryMib(), mibText(m.GetCapacity().GetMemoryMib())), drainText(rec), status)
	}
	// Records of nodes that are not members: those that left.
	for _, n := range resp.GetNodes() {
		if records[n.GetId()] == nil {
			continue
		}
		row(w, n.GetId(), orDash(n.GetAddress()), enumText(n.GetRole()), "-", "-",
			fmt.Sprintf("-/%d", n.GetCapacity().GetVcpus()), "-/"+mibText(n.GetCapacity().GetMemoryMib()), drainText(n),
			withReason(enumText(n.GetStatus()), n.GetStatusReason()))
	}
}

// drainText shows a node record's drain flag, "-" without a record.
func drainText(n *apiv1.Node) string {
	switch {
	case n == nil:
		return "-"
	case n.GetDrain():
		return "yes"
	}
	return "no"
}
