package cli

import "github.com/spf13/cobra"

func newACLTokenRevokeCommand(g *globalFlags) *cobra.Command {
	return &cobra.Command{
		Use:   "revoke ID",
		Short: "Revoke an ACL token",
		Long: `Revoke the ACL token with id ID (16 hex digits, as list shows; the whole
token will do too): requests that carry it are refused from then on.

With -o json it prints the RevokeTokenResponse: the token's last record.`,
		Example: `  blixard acl token revoke 3f9c0a1b2c3d4e5f`,
		Args:    exactArgs("ID"),
		RunE: func(cmd *cobra.Command, args []string) error {
			return runTokenRevoke(g, cmd, aclTokens, args[0])
		},
	}
}
