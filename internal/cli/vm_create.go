package cli

import (
	"github.com/spf13/cobra"

	apiv1 "github.com/blixard/blixard/api/v1"
)

// placements are the values of --placement.
var placements = map[string]apiv1.PlacementStrategy{
	"binpack": apiv1.PlacementStrategy_PLACEMENT_STRATEGY_BINPACK,
	"spread":  apiv1.PlacementStrategy_PLACEMENT_STRATEGY_SPREAD,
}

// restartPolicies are the values of --restart.
var restartPolicies = map[string]apiv1.RestartPolicy{
	"always":     apiv1.RestartPolicy_RESTART_POLICY_ALWAYS,
	"on-failure": apiv1.RestartPolicy_RESTART_POLICY_ON_FAILURE,
	"never":      apiv1.RestartPolicy_RESTART_POLICY_NEVER,
}

func newVMCreateCommand(g *globalFlags) *cobra.Command {
	var (
		vcpus        int
		memory       int64
		image        string
		cmdline      string
		restart      string
		noStart      bool
		constraints  []string
		antiAffinity string
		affinityMode string
		features     []string
		placement    string
		wait         vmWaitFlags
	)
	cmd := &cobra.Command{
		Use:   "create NAME --vcpus N --memory MiB",
		Short: "Create a VM, and start it unless --no-start",
		Long: `Create the VM NAME (1-63 of a-z, 0-9 and '-'), wanted running unless
--no-start. Its spec cannot change later. The command returns once the
cluster has recorded the VM, unless --wait.

The leader places a VM that should run on a node that fits it: ready and
not drained, offering --image, carrying every --constraint label and every
--feature, with room for --vcpus and --memory (counting the node's
overcommit), and running no other VM of its --anti-affinity group. With
--anti-affinity-mode soft the group only spreads: the VM goes to a node
running the fewest VMs of its group, two on one node only if it must.
Among the nodes that fit, --placement binpack (the default) picks the one
that will be fullest, keeping whole nodes free for big VMs; spread picks
the emptiest. A VM that fits nowhere stays pending, its state saying why
("no node has 8 GiB of memory free"), and is placed once a node fits.

The node boots it as a QEMU microVM, with KVM if a probe VM boots with it
there, else with TCG software emulation. Follow it with 'blixard vm status
NAME' (pending, scheduled, starting, running) and read its console with
'blixard vm logs NAME'.

--restart decides what happens when the VM fails or stops on its own:
always restarts it either way, on-failure only after a failure, never
leaves it be.

With --wait the command polls the VM until it runs (with --no-start, it is
stopped at once), showing its state on stderr as it changes: one line
rewritten in place on a terminal, else a line per change, none with -q.
Then it prints the VM as it is then, and fails (exit status 1) if the VM
failed, stopped or was lost instead. If --wait-timeout passes or Ctrl-C
comes first, it prints nothing and fails; the VM goes on in the cluster.

With -o json it prints the VM.`,
		Example: `  # A VM with 2 vCPUs and 512 MiB, started at once
  blixard vm create web --vcpus 2 --memory 512

  # Created stopped, only on nodes labelled zone=a, one per node of group db
  blixard vm create db-1 --vcpus 4 --memory 4096 --no-start \
      --constraint zone=a --anti-affinity db --restart always

  # On nodes with KVM, spread out, its group's VMs apart where possible
  blixard vm create api-1 --vcpus 2 --memory 1024 --feature kvm \
      --placement spread --anti-affinity api --anti-affinity-mode soft

  # Return once it runs, showing its progress (or fail if it does not boot)
  blixard vm create web --vcpus 1 --memory 256 --wait`,
		Args: exactArgs("NAME"),
		RunE: func(cmd *cobra.Command, args []string) error {
			req := &apiv1.CreateVmRequest{Name: args[0], Start: !noStart, Spec: &apiv1.VmSpec{
				Image: image, KernelCmdline: cmdline, AntiAffinityGroup: antiAffinity,
			}}
			var err error
			if req.Spec.Vcpus, err = checkVcpus(vcpus); err != nil {
				return err
			}
			if req.Spec.MemoryMib, err = checkMemory(memory); err != nil {
				return err
			}
			policy, ok := restartPolicies[restart]
			if !ok {
				return usageErrorf("--restart %q is not always, on-failure or never", restart)
			}
			req.Spec.RestartPolicy = policy
			if req.Spec.Constraints, err = parseKeyValues("constraint", constraints); err != nil {
				return err
			}
			switch affinityMode {
			case "hard":
			case "soft":
				req.Spec.AntiAffinitySoft = true
			default:
				return usageErrorf("--anti-affinity-mode %q is not hard or soft", affinityMode)
			}
			if antiAffinity == "" && cmd.Flags().Changed("anti-affinity-mode") {
				return usageErrorf("--anti-affinity-mode needs --anti-affinity GROUP")
			}
			if req.Spec.Placement, ok = placements[placement]; !ok {
				return usageErrorf("--placement %q is not binpack or spread", placement)
			}
			req.Spec.Features = sortedUnique(features)
			if err := wait.check(); err != nil {
				return err
			}
			s, err := g.open(cmd)
			if err != nil {
				return err
			}
			defer s.close()
			resp, err := s.client.CreateVm(s.ctx, req)
			if err != nil {
				return err
			}
			goal := vmGoalRunning
			if noStart {
				goal = vmGoalStopped
			}
			return emitVM(s, "created", resp.GetVm(), wait, goal)
		},
	}
	f := cmd.Flags()
	f.IntVar(&vcpus, "vcpus", 0, "`N` virtual CPUs (required)")
	f.Int64Var(&memory, "memory", 0, "memory in `MiB` (required)")
	f.StringVar(&image, "image", "", "image `NAME` to boot; only nodes that offer it host the VM (default \"default\", built by each node the first time it needs it)")
	f.StringVar(&cmdline, "cmdline", "", "kernel command `LINE` (default: the image's)")
	f.StringVar(&restart, "restart", "on-failure", "restart `POLICY` when the VM fails or stops on its own: always, on-failure or never")
	f.BoolVar(&noStart, "no-start", false, "create the VM stopped")
	f.StringArrayVar(&constraints, "constraint", nil, "node label `KEY=VALUE` the hosting node must carry (repeatable)")
	f.StringVar(&antiAffinity, "anti-affinity", "", "anti-affinity `GROUP`: at most one VM of the group per node (see --anti-affinity-mode)")
	f.StringVar(&affinityMode, "anti-affinity-mode", "hard",
		"`MODE` of the --anti-affinity group: hard (never two on a node) or soft (as few as can be)")
	f.StringArrayVar(&features, "feature", nil, "`NAME` of a feature the hosting node must have, such as kvm (repeatable)")
	f.StringVar(&placement, "placement", "binpack",
		"`STRATEGY` among the nodes that fit: binpack (the fullest first) or spread (the emptiest first)")
	wait.register(cmd, "runs (with --no-start: is stopped)")
	_ = cmd.MarkFlagRequired("vcpus")
	_ = cmd.MarkFlagRequired("memory")
	return cmd
}
