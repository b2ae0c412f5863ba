package cli

import (
	"github.com/spf13/cobra"

	"github.com/blixard/blixard/internal/vmm"
)

// newVMMCommand is the hidden "vmm" group: commands a node runs itself, not
// meant for users.
func newVMMCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:    "vmm",
		Short:  "Internal: the processes a node runs for its VMs",
		Hidden: true,
		Args:   noArgs,
		RunE:   func(cmd *cobra.Command, _ []string) error { return cmd.Help() },
	}
	cmd.AddCommand(&cobra.Command{
		Use:   "supervise DIR",
		Short: "Run the supervisor of the VM in DIR (a node starts it)",
		Long: `Run the supervisor of one VM: it reads DIR/spec.json, starts the VM's
hypervisor in its cgroups, follows its console, serves DIR/ctl.sock, and
records the VM's status in DIR/status.json until the hypervisor is gone. A
node starts one per VM, detached, so that VMs outlive the node; it is not
meant to be run by hand. SIGINT or SIGTERM stops the VM gracefully.`,
		Example: `  blixard vmm supervise /var/lib/blixard/vms/web-1`,
		Args:    exactArgs("DIR"),
		RunE: func(cmd *cobra.Command, args []string) error {
			return vmm.Supervise(cmd.Context(), args[0])
		},
	})
	return cmd
}
