package cli

import (
	"io"

	"github.com/spf13/cobra"

	apiv1 "github.com/blixard/blixard/api/v1"
)

func newVMStartCommand(g *globalFlags) *cobra.Command {
	return &cobra.Command{
		Use:   "start NAME",
		Short: "Want a VM running",
		Long: `Set the desired state of the VM NAME to running. A VM that runs nowhere
goes back to pending, to be placed afresh on a node with room, which boots
it ('blixard vm status NAME' shows its progress).

With -o json it prints the VM.`,
		Example: `  blixard vm start web`,
		Args:    exactArgs("NAME"),
		RunE: func(cmd *cobra.Command, args []string) error {
			s, err := g.open(cmd)
			if err != nil {
				return err
			}
			defer s.close()
			resp, err := s.client.StartVm(s.ctx, &apiv1.StartVmRequest{Name: args[0]})
			if err != nil {
				return err
			}
			return s.emit(resp.GetVm(), func(w io.Writer) { io.WriteString(w, vmSummary("started", resp.GetVm())) })
		},
	}
}
