package cli

import (
	"github.com/spf13/cobra"
)

func newTaskCommand(g *globalFlags) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "task",
		Short: "Submit, inspect and cancel one-off tasks",
		Long: `Manage the cluster's tasks: commands run once on some node, with the
resources they ask for and an optional timeout.

In this build tasks are stored and replicated but not yet run: a task stays
pending until it is cancelled.`,
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
