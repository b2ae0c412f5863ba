package cli

import (
	"io"

	"github.com/spf13/cobra"

	apiv1 "github.com/blixard/blixard/api/v1"
)

func newVMStopCommand(g *globalFlags) *cobra.Command {
	return &cobra.Command{
		Use:   "stop NAME",
		Short: "Want a VM stopped",
		Long: `Set the desired state of the VM NAME to stopped; its node stops it if it
runs. The VM and its spec stay: 'vm start' runs it again.

With -o json it prints the VM.`,
		Example: `  blixard vm stop web`,
		Args:    exactArgs("NAME"),
		RunE: func(cmd *cobra.Command, args []string) error {
			s, err := g.open(cmd)
			if err != nil {
				return err
			}
			defer s.close()
			resp, err := s.client.StopVm(s.ctx, &apiv1.StopVmRequest{Name: args[0]})
			if err != nil {
				return err
			}
			return s.emit(resp.GetVm(), func(w io.Writer) { io.WriteString(w, vmSummary("stopped", resp.GetVm())) })
		},
	}
}
