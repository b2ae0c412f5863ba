package cli

import "github.com/spf13/cobra"

func newClusterTokenCommand(g *globalFlags) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "token",
		Short: "Manage join tokens, which admit new nodes",
		Long: `Manage join tokens. A new node of a secure cluster joins with one
(blixard node --join ADDR --join-token TOKEN): the token pins the cluster's
CA, so the node checks it is talking to the right cluster, and is the
node's credential for its first certificate. A voter token admits voters
and workers, a worker token only workers. Join tokens expire (default
after an hour) and can be revoked sooner. Managing them needs an admin
token.`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return cmd.Help() },
	}
	cmd.AddCommand(
		newClusterTokenCreateCommand(g),
		newClusterTokenListCommand(g),
		newClusterTokenRevokeCommand(g),
	)
	return cmd
}
