package cli

import (
	"fmt"
	"io"

	"github.com/spf13/cobra"

	apiv1 "github.com/blixard/blixard/api/v1"
)

func newVMDeleteCommand(g *globalFlags) *cobra.Command {
	var wait vmWaitFlags
	cmd := &cobra.Command{
		Use:   "delete NAME",
		Short: "Delete a VM",
		Long: `Delete the VM NAME. A VM that holds no node is gone at once; one that does
is removed once its node has stopped it.

With --wait the command polls a VM that is not removed at once until it
is, showing its state on stderr as it changes: one line rewritten in place
on a terminal, else a line per change, none with -q. It fails (exit status
1) if --wait-timeout passes or Ctrl-C comes first; the VM is deleted in
the cluster all the same.

With -o json it prints the DeleteVmResponse: the VM as last seen and whether
it is removed already (with --wait, removed).`,
		Example: `  blixard vm delete web
  blixard vm delete web --wait   # return once it is gone`,
		Args: exactArgs("NAME"),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := wait.check(); err != nil {
				return err
			}
			s, err := g.open(cmd)
			if err != nil {
				return err
			}
			defer s.close()
			resp, err := s.client.DeleteVm(s.ctx, &apiv1.DeleteVmRequest{Name: args[0]})
			if err != nil {
				return err
			}
			if wait.wait && !resp.GetRemoved() {
				last, err := waitForVM(s, resp.GetVm(), vmGoalGone, wait.timeout)
				if err != nil {
					return err
				}
				resp = &apiv1.DeleteVmResponse{Vm: last, Removed: true}
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
	wait.register(cmd, "is removed")
	return cmd
}
