package cli

import (
	"fmt"
	"io"

	"github.com/spf13/cobra"

	apiv1 "github.com/blixard/blixard/api/v1"
)

func newVMDeleteCommand(g *globalFlags) *cobra.Command {
	return &cobra.Command{
		Use:   "delete NAME",
		Short: "Delete a VM",
		Long: `Delete the VM NAME. A VM that holds no node is gone at once; one that does
is removed once its node has stopped it.

With -o json it prints the DeleteVmResponse: the VM as last seen and whether
it is removed already.`,
		Example: `  blixard vm delete web`,
		Args:    exactArgs("NAME"),
		RunE: func(cmd *cobra.Command, args []string) error {
			s, err := g.open(cmd)
			if err != nil {
				return err
			}
			defer s.close()
			resp, err := s.client.DeleteVm(s.ctx, &apiv1.DeleteVmRequest{Name: args[0]})
			if err != nil {
				return err
			}
			return s.emit(resp, func(w io.Writer) {
				if resp.GetRemoved() {
					fmt.Fprintf(w, "vm %s deleted\n", args[0])
					return
				}
				fmt.Fprintf(w, "vm %s will be deleted once node %s has stopped it (state %s)\n",
					args[0], nodeText(resp.GetVm().GetNodeId()), enumText(resp.GetVm().GetState()))
			})
		},
	}
}
