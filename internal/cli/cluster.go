package cli

import "github.com/spf13/cobra"

func newClusterCommand(g *globalFlags) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "cluster",
		Short: "Show the cluster and manage its members, join tokens and CA",
		Args:  noArgs,
		RunE:  func(cmd *cobra.Command, _ []string) error { return cmd.Help() },
	}
	cmd.AddCommand(
		newClusterStatusCommand(g),
		newClusterLeaveCommand(g),
		newClusterDrainCommand(g),
		newClusterUndrainCommand(g),
		newClusterTokenCommand(g),
		newClusterCACommand(g),
	)
	return cmd
}
