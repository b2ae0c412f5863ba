package cli

import (
	"github.com/spf13/cobra"
)

func newTaskCommand(g *globalFlags) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "task",
		Short: "Submit, inspect and cancel one-off tasks",
		Long: `Manage the cluster's tasks: commands run once, each in a small microVM of
its own, with the resources they ask for and an optional timeout.

The leader places a task on a node that fits it: ready and not drained,
offering its image, with room for its vCPUs and memory; among those, the
fullest. A task that fits nowhere stays pending, its status saying why. If
its node goes down, the task is placed again for another attempt, up to
its --max-attempts; then it is lost. The node boots a QEMU microVM for it
(KVM when a probe VM boots with KVM there, else TCG software emulation),
the guest agent runs the command, and the VM powers off when the command
ends. The task then holds its exit code, timings and the tail of its
output: succeeded if it exited 0, else failed (with the reason, such as
"timeout").

A task moves through pending, assigned and running to succeeded, failed,
cancelled or lost; "task cancel" stops one that has not ended. "task
submit --wait" runs a task like a local command: its output on stdout, its
exit code as the command's.`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return cmd.Help() },
	}
	cmd.AddCommand(
		newTaskSubmitCommand(g),
		newTaskStatusCommand(g),
		newTaskListCommand(g),
		newTaskCancelCommand(g),
	)
	return cmd
}
