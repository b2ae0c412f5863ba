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
		Long: `Show the cluster as the answering node sees it: the cluster id, the leader,
the Raft term and commit index, and each member with its role, whether it
votes, how far its log matches the leader's (known only when the leader
answers), its liveness and its capacity.

With -o json it prints the GetClusterStatusResponse: leader_id, term,
commit_index, members[] (id, address, role, voter, match_index, status,
capacity), the nodes' records and the cluster record.`,
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
	row(w, "Leader:", leader)
	row(w, "Term:", resp.GetTerm())
	row(w, "Commit index:", resp.GetCommitIndex())
	row(w, "Applied index:", resp.GetAppliedIndex())
	row(w, "Answered by:", fmt.Sprintf("node %d", resp.GetNodeId()))
	row(w)
	row(w, "ID", "ADDRESS", "ROLE", "VOTER", "MATCH", "STATUS", "VCPUS", "MEMORY")
	// Match indexes are tracked by the leader only.
	fromLeader := resp.GetLeaderId() != 0 && resp.GetLeaderId() == resp.GetNodeId()
	for _, m := range resp.GetMembers() {
		voter, match := "no", "-"
		if m.GetVoter() {
			voter = "yes"
		}
		if fromLeader {
			match = strconv.FormatUint(m.GetMatchIndex(), 10)
		}
		row(w, m.GetId(), orDash(m.GetAddress()), enumText(m.GetRole()), voter, match, enumText(m.GetStatus()),
			m.GetCapacity().GetVcpus(), mibText(m.GetCapacity().GetMemoryMib()))
	}
}
