package cli

import (
	"fmt"

	"github.com/spf13/cobra"

	apiv1 "github.com/blixard/blixard/api/v1"
)

func newClusterLeaveCommand(g *globalFlags) *cobra.Command {
	return &cobra.Command{
		Use:   "leave ID",
		Short: "Remove a member from the cluster for good",
		Long: `Remove the member with node id ID from the cluster's Raft group. The id can
never join again: a node that is to come back joins under a new id.

With -o json it prints the (empty) LeaveClusterResponse.`,
		Example: `  # Remove node 3
  blixard cluster leave 3`,
		Args: exactArgs("ID"),
		RunE: func(cmd *cobra.Command, args []string) error {
			id, err := parseID("node id", args[0])
			if err != nil {
				return err
			}
			s, err := g.open(cmd)
			if err != nil {
				return err
			}
			defer s.close()
			resp, err := s.client.LeaveCluster(s.ctx, &apiv1.LeaveClusterRequest{NodeId: id})
			if err != nil {
				return err
			}
			if s.json {
				return printJSON(s.out, resp)
			}
			_, err = fmt.Fprintf(s.out, "node %d left the cluster; its id cannot join again\n", id)
			return err
		},
	}
}
