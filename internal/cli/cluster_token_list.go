package cli

import "github.com/spf13/cobra"

func newClusterTokenListCommand(g *globalFlags) *cobra.Command {
	return &cobra.Command{
		Use:   "list",
		Short: "List join tokens",
		Long: `List the cluster's join tokens by id: the role they admit, when they were
made, when they expire ("expired" once past; the cluster refuses them)
and their description. Secrets are never shown: the cluster keeps only
hashes.

With -o json it prints the ListTokensResponse: {"tokens": [...]}.`,
		Example: `  blixard cluster token list
  blixard cluster token list -o json`,
		Args: exactArgs(),
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runTokenList(g, cmd, joinTokens)
		},
	}
}
