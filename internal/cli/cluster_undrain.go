package cli

import "github.com/spf13/cobra"

func newClusterUndrainCommand(g *globalFlags) *cobra.Command {
	return &cobra.Command{
		Use:   "undrain ID",
		Short: "Let the leader place VMs and tasks on a drained node again",
		Long: `Make the node with id ID eligible for new VMs and tasks again after 'blixard
cluster drain ID'. Nothing moves back by itself: VMs that left the node
stay where they run now. Undraining a node that is not drained is
harmless.

With -o json it prints the DrainNodeResponse: the node's record, with
drain false.`,
		Example: `  blixard cluster undrain 3`,
		Args:    exactArgs("ID"),
		RunE: func(cmd *cobra.Command, args []string) error {
			return runDrain(g, cmd, args[0], false)
		},
	}
}
