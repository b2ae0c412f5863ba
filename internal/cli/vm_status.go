package cli

import (
	"fmt"
	"io"

	"github.com/spf13/cobra"

	apiv1 "github.com/blixard/blixard/api/v1"
)

func newVMStatusCommand(g *globalFlags) *cobra.Command {
	var stale bool
	cmd := &cobra.Command{
		Use:   "status NAME",
		Short: "Show a VM and its recent events",
		Long: `Show the VM NAME: its observed state (and why), desired state, node,
generation, spec and recent events, oldest first.

With -o json it prints the VM object itself (not wrapped in a response).`,
		Example: `  blixard vm status web
  blixard vm status web --stale -o json`,
		Args: exactArgs("NAME"),
		RunE: func(cmd *cobra.Command, args []string) error {
			s, err := g.open(cmd)
			if err != nil {
				return err
			}
			defer s.close()
			resp, err := s.client.GetVm(s.ctx, &apiv1.GetVmRequest{Name: args[0], Stale: stale})
			if err != nil {
				return err
			}
			return s.emit(resp.GetVm(), func(w io.Writer) { vmTable(w, resp.GetVm()) })
		},
	}
	cmd.Flags().BoolVar(&stale, "stale", false, "answer from the contacted node's state without a linearizable read")
	return cmd
}

func vmTable(w io.Writer, v *apiv1.Vm) {
	spec := v.GetSpec()
	row(w, "Name:", v.GetName())
	row(w, "State:", withReason(enumText(v.GetState()), v.GetReason()))
	row(w, "Desired:", enumText(v.GetDesiredState()))
	row(w, "Node:", nodeText(v.GetNodeId()))
	row(w, "Generation:", v.GetGeneration())
	row(w, "vCPUs:", spec.GetVcpus())
	row(w, "Memory:", mibText(spec.GetMemoryMib()))
	row(w, "Image:", orDash(spec.GetImage()))
	row(w, "Kernel cmdline:", orDash(spec.GetKernelCmdline()))
	row(w, "Restart:", enumText(spec.GetRestartPolicy()))
	row(w, "Constraints:", mapText(spec.GetConstraints()))
	row(w, "Anti-affinity:", orDash(spec.GetAntiAffinityGroup()))
	row(w, "Created:", fmt.Sprintf("%s (index %d)", timeText(v.GetCreatedUnixNano()), v.GetCreatedIndex()))
	row(w, "Updated:", fmt.Sprintf("index %d", v.GetUpdatedIndex()))
	row(w)
	if len(v.GetEvents()) == 0 {
		row(w, "No events.")
		return
	}
	row(w, "TIME", "INDEX", "STATE", "NODE", "GEN", "REASON")
	for _, e := range v.GetEvents() {
		row(w, timeText(e.GetTimeUnixNano()), e.GetIndex(), enumText(e.GetState()), nodeText(e.GetNodeId()),
			e.GetGeneration(), orDash(e.GetReason()))
	}
}
