package cli

import (
	"time"

	"github.com/spf13/cobra"

	apiv1 "github.com/blixard/blixard/api/v1"
)

func newClusterTokenCreateCommand(g *globalFlags) *cobra.Command {
	var (
		ttl         time.Duration
		role        string
		description string
	)
	cmd := &cobra.Command{
		Use:   "create",
		Short: "Make a join token for new nodes",
		Long: `Make a join token and print it: alone on stdout, so that
TOKEN=$(blixard cluster token create) keeps it, with a note on stderr of its
id, role and expiry. The cluster keeps only a hash: the token is shown this
once. It works for --ttl (default 1h, at most 8760h), for any number of
nodes, until it expires or is revoked ('blixard cluster token revoke ID').
A --role voter token (the default) admits voters and workers, a --role
worker token only workers.

With -o json it prints the CreateTokenResponse: {"secret": ..., "token": {...}}.`,
		Example: `  # Admit one more node, within the hour
  TOKEN=$(blixard cluster token create)
  blixard node --id 4 --listen 10.0.0.4:7001 --data-dir /var/lib/blixard --join 10.0.0.1:7001 --join-token "$TOKEN"

  # A token for workers only, good for a day
  blixard cluster token create --role worker --ttl 24h --description "rack 2 workers"`,
		Args: exactArgs(),
		RunE: func(cmd *cobra.Command, _ []string) error {
			secs, err := ttlSeconds(ttl, false)
			if err != nil {
				return err
			}
			req := &apiv1.CreateTokenRequest{TtlSeconds: secs, Description: description}
			switch role {
			case "voter":
				req.NodeRole = apiv1.NodeRole_NODE_ROLE_VOTER
			case "worker":
				req.NodeRole = apiv1.NodeRole_NODE_ROLE_WORKER
			default:
				return usageErrorf("--role: %q is not voter or worker", role)
			}
			return runTokenCreate(g, cmd, joinTokens, req)
		},
	}
	f := cmd.Flags()
	f.DurationVar(&ttl, "ttl", time.Hour, "how long the token works: more than 0, at most 8760h")
	f.StringVar(&role, "role", "voter", "`voter` (admits voters and workers) or worker (admits workers only)")
	f.StringVar(&description, "description", "", "`text` saying what the token is for, shown by list")
	return cmd
}
