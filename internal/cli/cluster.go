package cli

import "github.com/spf13/cobra"

func newClusterCommand(g *globalFlags) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "cluster",
		Short: "Show the cluster and manage its members and join tokens",
		Args:  noArgs,
		RunE:  func(cmd *cobra.Command, _ []string) error { return cmd.Help() },
	}
	cmd.AddCommand(
		newClusterStatusCommand(g),
		newClusterLeaveCommand(g),
		newClusterDrainCommand(g),
		newClusterUndrainCommand(g),
		newClusterTokenCommand(g),
	)
	return cmd
}
