package cli

import (
	"io"

	"github.com/spf13/cobra"

	apiv1 "github.com/blixard/blixard/api/v1"
)

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
	)
	cmd := &cobra.Command{
		Use:   "create NAME --vcpus N --memory MiB",
		Short: "Create a VM, and start it unless --no-start",
		Long: `Create the VM NAME (1-63 of a-z, 0-9 and '-'), wanted running unless
--no-start. Its spec cannot change later. The command returns once the
cluster has recorded the VM; it does not wait for the VM to boot.

The leader places a VM that should run on a node with room for --vcpus and
--memory that offers --image, carries every --constraint label and holds no
other VM of its --anti-affinity group: for now the node that took the
request (the leader) if it qualifies, else the lowest-numbered node that
does (real placement comes later). That node boots the VM as a QEMU
microVM, with KVM if a probe VM boots with it there, else with TCG software
emulation. Follow it with 'blixard vm status NAME' (pending, scheduled,
starting, running) and read its console with 'blixard vm logs NAME'.

--restart decides what happens when the VM fails or stops on its own:
always restarts it either way, on-failure only after a failure, never
leaves it be.

With -o json it prints the VM.`,
		Example: `  # A VM with 2 vCPUs and 512 MiB, started at once
  blixard vm create web --vcpus 2 --memory 512

  # Created stopped, only on nodes labelled zone=a, one per node of group db
  blixard vm create db-1 --vcpus 4 --memory 4096 --no-start \
      --constraint zone=a --anti-affinity db --restart always`,
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
			s, err := g.open(cmd)
			if err != nil {
				return err
			}
			defer s.close()
			resp, err := s.client.CreateVm(s.ctx, req)
			if err != nil {
				return err
			}
			return s.emit(resp.GetVm(), func(w io.Writer) { io.WriteString(w, vmSummary("created", resp.GetVm())) })
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
	f.StringVar(&antiAffinity, "anti-affinity", "", "anti-affinity `GROUP`: at most one VM of the group per node")
	_ = cmd.MarkFlagRequired("vcpus")
	_ = cmd.MarkFlagRequired("memory")
	return cmd
}
