package cli

import "github.com/spf13/cobra"

func newACLTokenCommand(g *globalFlags) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "token",
		Short: "Manage ACL tokens",
		Long: `Manage ACL tokens, the credentials of API clients. Each has a role (viewer,
operator or admin) and works until it expires, if it was given a --ttl, or
is revoked. Managing them needs an admin token.`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return cmd.Help() },
	}
	cmd.AddCommand(
		newACLTokenCreateCommand(g),
		newACLTokenListCommand(g),
		newACLTokenRevokeCommand(g),
	)
	return cmd
}
