package cli

import (
	"fmt"
	"io"

	"github.com/spf13/cobra"

	apiv1 "github.com/blixard/blixard/api/v1"
)

func newVMListCommand(g *globalFlags) *cobra.Command {
	var (
		limit int
		stale bool
	)
	cmd := &cobra.Command{
		Use:   "list",
		Short: "List VMs by name",
		Long: `List the VMs in name order: observed and desired state, node, size and the
reason for the last transition.

With -o json it prints the ListVmsResponse: {"vms": [...]}.`,
		Example: `  blixard vm list
  blixard vm list --limit 20 --stale -o json`,
		Args: exactArgs(),
		RunE: func(cmd *cobra.Command, _ []string) error {
			n, err := limitFlag(limit)
			if err != nil {
				return err
			}
			s, err := g.open(cmd)
			if err != nil {
				return err
			}
			defer s.close()
			resp, err := s.client.ListVms(s.ctx, &apiv1.ListVmsRequest{Limit: n, Stale: stale})
			if err != nil {
				return err
			}
			if !s.json && len(resp.GetVms()) == 0 {
				_, err := fmt.Fprintln(s.errOut, "no VMs")
				return err
			}
			return s.emit(resp, func(w io.Writer) {
				row(w, "NAME", "STATE", "DESIRED", "NODE", "VCPUS", "MEMORY", "REASON")
				for _, v := range resp.GetVms() {
					row(w, v.GetName(), enumText(v.GetState()), enumText(v.GetDesiredState()), nodeText(v.GetNodeId()),
						v.GetSpec().GetVcpus(), mibText(v.GetSpec().GetMemoryMib()), truncate(orDash(v.GetReason()), 60))
				}
			})
		},
	}
	cmd.Flags().IntVar(&limit, "limit", 0, "list at most `N` VMs (0 for all)")
	cmd.Flags().BoolVar(&stale, "stale", false, "answer from the contacted node's state without a linearizable read")
	return cmd
}
