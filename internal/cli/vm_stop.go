package cli

import (
	"github.com/spf13/cobra"

	apiv1 "github.com/blixard/blixard/api/v1"
)

func newVMStopCommand(g *globalFlags) *cobra.Command {
	var wait vmWaitFlags
	cmd := &cobra.Command{
		Use:   "stop NAME",
		Short: "Want a VM stopped",
		Long: `Set the desired state of the VM NAME to stopped; its node stops it if it
runs. The VM and its spec stay: 'vm start' runs it again.

With --wait the command polls the VM until it runs nowhere (stopped, or
failed as it stopped), showing its state on stderr as it changes: one line
rewritten in place on a terminal, else a line per change, none with -q.
Then it prints the VM as it is then. It fails (exit status 1) if the VM is
wanted running again first, or if --wait-timeout passes or Ctrl-C comes
first; the VM goes on in the cluster.

With -o json it prints the VM.`,
		Example: `  blixard vm stop web
  blixard vm stop web --wait   # return once its node has stopped it`,
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
			resp, err := s.client.StopVm(s.ctx, &apiv1.StopVmRequest{Name: args[0]})
			if err != nil {
				return err
			}
			return emitVM(s, "stopped", resp.GetVm(), wait, vmGoalStopped)
		},
	}
	wait.register(cmd, "runs nowhere")
	return cmd
}
