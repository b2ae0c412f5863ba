package cli

import (
	"fmt"
	"io"
	"strings"

	"github.com/spf13/cobra"

	apiv1 "github.com/blixard/blixard/api/v1"
)

func newVMStatusCommand(g *globalFlags) *cobra.Command {
	var stale bool
	cmd := &cobra.Command{
		Use:   "status NAME",
		Short: "Show a VM and its recent events",
		Long: `Show the VM NAME: its observed state and why (for a pending VM, why no
node can take it yet), desired state, node, generation, how often its
restart policy restarted it, spec (with its placement rules) and recent
events, oldest first. If it has failed, the end of its console at the last
failure follows ('blixard vm logs NAME' shows the whole console).

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
			return printVM(s, resp.GetVm())
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
	row(w, "Restarts:", v.GetRestarts())
	row(w, "vCPUs:", spec.GetVcpus())
	row(w, "Memory:", mibText(spec.GetMemoryMib()))
	row(w, "Image:", imageText(spec.GetImage()))
	row(w, "Kernel cmdline:", orDash(spec.GetKernelCmdline()))
	row(w, "Restart:", enumText(spec.GetRestartPolicy()))
	row(w, "Constraints:", mapText(spec.GetConstraints()))
	row(w, "Features:", listText(spec.GetFeatures()))
	row(w, "Anti-affinity:", antiAffinityText(spec))
	row(w, "Placement:", placementText(spec.GetPlacement()))
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

// antiAffinityText shows a VM's anti-affinity group and its mode.
func antiAffinityText(spec *apiv1.VmSpec) string {
	switch {
	case spec.GetAntiAffinityGroup() == "":
		return "-"
	case spec.GetAntiAffinitySoft():
		return spec.GetAntiAffinityGroup() + " (soft)"
	}
	return spec.GetAntiAffinityGroup() + " (hard)"
}

// placementText shows a placement strategy; unspecified means binpack.
func placementText(p apiv1.PlacementStrategy) string {
	if p == apiv1.PlacementStrategy_PLACEMENT_STRATEGY_UNSPECIFIED {
		return "binpack"
	}
	return enumText(p)
}

// printVM prints a VM as the table of vmTable and then, if it has one, the
// console tail of its last failure as it came (not through the table, whose
// columns its tabs would upset).
func printVM(s *session, v *apiv1.Vm) error {
	if err := s.emit(v, func(w io.Writer) { vmTable(w, v) }); err != nil || s.json {
		return err
	}
	return writeConsoleTail(s.out, v)
}

// writeConsoleTail writes the console tail a failed VM left, under a
// heading, ending in a newline; nothing if there is none.
func writeConsoleTail(w io.Writer, v *apiv1.Vm) error {
	tail := v.GetConsoleTail()
	if tail == "" {
		return nil
	}
	if !strings.HasSuffix(tail, "\n") {
		tail += "\n"
	}
	_, err := fmt.Fprintf(w, "\nConsole at the last failure (last %d bytes):\n%s", len(v.GetConsoleTail()), tail)
	return err
}
