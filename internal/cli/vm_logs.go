package cli

import (
	"fmt"

	"github.com/spf13/cobra"

	apiv1 "github.com/blixard/blixard/api/v1"
)

func newVMLogsCommand(g *globalFlags) *cobra.Command {
	var (
		follow bool
		tail   int64
	)
	cmd := &cobra.Command{
		Use:   "logs NAME",
		Short: "Print a VM's console",
		Long: `Print the console of the VM NAME to stdout: the guest kernel's messages
and whatever the guest writes to its serial console, with the guest agent's
messages shown as short bracketed lines. Only the node that runs the VM (or
last ran it) keeps its console; the command asks the cluster which node that
is and reads from it directly, so that node must be reachable from here. A
VM that has not been placed on a node yet has no console.

With --tail only the last BYTES of the console are printed (from wherever
that cuts a line). With --follow the command keeps printing as the console
grows, across the VM's end, until Ctrl-C, which ends it with exit status 0.`,
		Example: `  # The whole console so far
  blixard vm logs web

  # The last 4 KiB, then everything new until Ctrl-C
  blixard vm logs web --tail 4096 -f`,
		Args: exactArgs("NAME"),
		RunE: func(cmd *cobra.Command, args []string) error {
			if tail < 0 {
				return usageErrorf("--tail must be 0 (the whole console) or more bytes, got %d", tail)
			}
			s, err := g.open(cmd)
			if err != nil {
				return err
			}
			defer s.close()
			if s.json {
				return usageErrorf("-o json: vm logs prints the console as text only")
			}
			req := &apiv1.StreamVmLogsRequest{Name: args[0], Follow: follow, TailBytes: uint64(tail)}
			err = s.client.StreamVmLogs(s.ctx, req, func(chunk []byte) error {
				if _, err := s.out.Write(chunk); err != nil {
					return fmt.Errorf("write the console: %w", err)
				}
				return nil
			})
			if s.ctx.Err() != nil {
				if follow {
					// Ctrl-C is how a follow ends.
					return nil
				}
				return s.ctx.Err()
			}
			return err
		},
	}
	f := cmd.Flags()
	f.BoolVarP(&follow, "follow", "f", false, "keep printing as the console grows, until Ctrl-C")
	f.Int64Var(&tail, "tail", 0, "print only the last `BYTES` of the console (0 for all of it)")
	return cmd
}
