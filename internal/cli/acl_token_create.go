package cli

import (
	"time"

	"github.com/spf13/cobra"

	apiv1 "github.com/blixard/blixard/api/v1"
)

func newACLTokenCreateCommand(g *globalFlags) *cobra.Command {
	var (
		ttl         time.Duration
		role        string
		description string
	)
	cmd := &cobra.Command{
		Use:   "create --role ROLE",
		Short: "Make an ACL token for an API client",
		Long: `Make an ACL token with --role viewer (reads), operator (also creates, starts,
stops and deletes VMs and tasks) or admin (also manages members, drains
and tokens), and print it: alone on stdout, so that
TOKEN=$(blixard acl token create --role viewer) keeps it, with a note on
stderr of its id, role and expiry. The cluster keeps only a hash: the
token is shown this once. It works until revoked ('blixard acl token
revoke ID') or, with --ttl, until that much time has passed.

With -o json it prints the CreateTokenResponse: {"secret": ..., "token": {...}}.`,
		Example: `  # A read-only token for a dashboard
  blixard acl token create --role viewer --description dashboard

  # An operator token for CI, good for 30 days
  export BLIXARD_TOKEN=$(blixard acl token create --role operator --ttl 720h --description ci)`,
		Args: exactArgs(),
		RunE: func(cmd *cobra.Command, _ []string) error {
			secs, err := ttlSeconds(ttl, true)
			if err != nil {
				return err
			}
			req := &apiv1.CreateTokenRequest{TtlSeconds: secs, Description: description}
			switch role {
			case "viewer":
				req.AccessRole = apiv1.AccessRole_ACCESS_ROLE_VIEWER
			case "operator":
				req.AccessRole = apiv1.AccessRole_ACCESS_ROLE_OPERATOR
			case "admin":
				req.AccessRole = apiv1.AccessRole_ACCESS_ROLE_ADMIN
			default:
				return usageErrorf("--role: %q is not admin, operator or viewer", role)
			}
			return runTokenCreate(g, cmd, aclTokens, req)
		},
	}
	f := cmd.Flags()
	f.StringVar(&role, "role", "", "`admin`, operator or viewer (required)")
	f.DurationVar(&ttl, "ttl", 0, "how long the token works, at most 8760h (default 0: until revoked)")
	f.StringVar(&description, "description", "", "`text` saying who or what the token is for, shown by list")
	_ = cmd.MarkFlagRequired("role")
	return cmd
}
