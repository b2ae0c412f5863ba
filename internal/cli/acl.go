package cli

import "github.com/spf13/cobra"

func newACLCommand(g *globalFlags) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "acl",
		Short: "Manage who may use the cluster's API",
		Long: `Manage access to a secure cluster's API. Every request carries an ACL token
(--token, or BLIXARD_TOKEN) whose role decides what it may do: a viewer
reads; an operator also creates, starts, stops and deletes VMs and tasks;
an admin also manages members, drains and tokens. The first admin token is
made when the cluster bootstraps, in the first node's
<data-dir>/admin.token.`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return cmd.Help() },
	}
	cmd.AddCommand(newACLTokenCommand(g))
	return cmd
}
