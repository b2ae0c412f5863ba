package cli

import "github.com/spf13/cobra"

func newACLTokenListCommand(g *globalFlags) *cobra.Command {
	return &cobra.Command{
		Use:   "list",
		Short: "List ACL tokens",
		Long: `List the cluster's ACL tokens by id: their role, when they were made, when
they expire ("never", or "expired" once past; the cluster refuses them)
and their description. Secrets are never shown: the cluster keeps only
hashes.

With -o json it prints the ListTokensResponse: {"tokens": [...]}.`,
		Example: `  blixard acl token list
  blixard acl token list -o json`,
		Args: exactArgs(),
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runTokenList(g, cmd, aclTokens)
		},
	}
}
