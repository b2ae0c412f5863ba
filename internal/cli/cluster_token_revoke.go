package cli

import "github.com/spf13/cobra"

func newClusterTokenRevokeCommand(g *globalFlags) *cobra.Command {
	return &cobra.Command{
		Use:   "revoke ID",
		Short: "Revoke a join token",
		Long: `Revoke the join token with id ID (16 hex digits, as list shows; the whole
token will do too): no node can join with it any more. Nodes that joined
with it stay members.

With -o json it prints the RevokeTokenResponse: the token's last record.`,
		Example: `  blixard cluster token revoke 3f9c0a1b2c3d4e5f
  blixard cluster token revoke "$TOKEN"`,
		Args: exactArgs("ID"),
		RunE: func(cmd *cobra.Command, args []string) error {
			return runTokenRevoke(g, cmd, joinTokens, args[0])
		},
	}
}
