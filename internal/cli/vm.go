package cli

import (
	"fmt"

	"github.com/spf13/cobra"

	apiv1 "github.com/blixard/blixard/api/v1"
)

func newVMCommand(g *globalFlags) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "vm",
		Short: "Create, start, stop, delete and inspect VMs, and read their consoles",
		Long: `Manage the cluster's VMs. A VM has a spec (vCPUs, memory, image, kernel
command line, restart policy, placement rules), a desired state (running,
stopped) and an observed state (pending, scheduled, starting, running,
stopping, stopped, failed, lost).

The leader places a VM that should run on a node that fits it: ready and
not drained, offering its image, with room for it, and meeting its
constraints, features and anti-affinity group ('vm create --help' has the
rules). Among those it prefers the fullest node (binpack, the default) or
the emptiest (spread). A VM that fits nowhere stays pending, its state
saying why, until a node fits. When a node goes down or is drained, its VMs
are placed on other nodes.

The node boots it as a QEMU microVM: with KVM when a probe VM boots with
KVM on that node, else with TCG software emulation (slower). The guest's
agent reports it ready, and the VM is running. "vm logs" prints its console.

When a VM fails, or stops on its own, its restart policy decides: always
restarts it either way, on-failure only after a failure, never leaves it
stopped or failed. Restarts back off, doubling each time. "vm stop" and
"vm delete" power a VM off and free its room on the node.`,
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
		newVMLogsCommand(g),
	)
	return cmd
}

// vmSummary is the line that create, start and stop print.
func vmSummary(verb string, v *apiv1.Vm) string {
	return fmt.Sprintf("vm %s %s: desired %s, state %s\n", v.GetName(), verb,
		enumText(v.GetDesiredState()), withReason(enumText(v.GetState()), v.GetReason()))
}
