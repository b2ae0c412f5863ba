package cli

import (
	"fmt"

	"github.com/spf13/cobra"

	apiv1 "github.com/blixard/blixard/api/v1"
)

func newVMCommand(g *globalFlags) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "vm",
		Short: "Create, start, stop, delete and inspect VMs",
		Long: `Manage the cluster's VMs. A VM has a spec (vCPUs, memory, image, kernel
command line, restart policy, placement constraints), a desired state
(running, stopped) and an observed state.

In this build VMs are stored and replicated but not yet run: no node boots
them, so a VM that should run stays pending.`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return cmd.Help() },
	}
	cmd.AddCommand(
		newVMCreateCommand(g),
		newVMStartCommand(g),
		newVMStopCommand(g),
		newVMDeleteCommand(g),
		newVMListCommand(g),
		newVMStatusCommand(g),
	)
	return cmd
}

// vmSummary is the line that create, start and stop print.
func vmSummary(verb string, v *apiv1.Vm) string {
	return fmt.Sprintf("vm %s %s: desired %s, state %s\n", v.GetName(), verb,
		enumText(v.GetDesiredState()), withReason(enumText(v.GetState()), v.GetReason()))
}
