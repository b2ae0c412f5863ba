package cli

import (
	"github.com/spf13/cobra"

	apiv1 "github.com/blixard/blixard/api/v1"
)

func newVMStartCommand(g *globalFlags) *cobra.Command {
	var wait vmWaitFlags
	cmd := &cobra.Command{
		Use:   "start NAME",
		Short: "Want a VM running",
		Long: `Set the desired state of the VM NAME to running. A VM that runs nowhere
goes back to pending, to be placed afresh on a node with room, which boots
it ('blixard vm status NAME' shows its progress).

With --wait the command polls the VM until it runs, showing its state on
stderr as it changes: one line rewritten in place on a terminal, else a
line per change, none with -q. Then it prints the VM as it is then, and
fails (exit status 1) if the VM failed, stopped or was lost instead. If
--wait-timeout passes or Ctrl-C comes first, it prints nothing and fails;
the VM goes on in the cluster.

With -o json it prints the VM.`,
		Example: `  blixard vm start web
  blixard vm start web --wait --wait-timeout 2m   # return once it runs`,
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
			resp, err := s.client.StartVm(s.ctx, &apiv1.StartVmRequest{Name: args[0]})
			if err != nil {
				return err
			}
			return emitVM(s, "started", resp.GetVm(), wait, vmGoalRunning)
		},
	}
	wait.register(cmd, "runs")
	return cmd
}
