package cli

import (
	"fmt"
	"io"

	"github.com/spf13/cobra"

	apiv1 "github.com/blixard/blixard/api/v1"
)

func newTaskListCommand(g *globalFlags) *cobra.Command {
	var (
		limit int
		stale bool
	)
	cmd := &cobra.Command{
		Use:   "list",
		Short: "List tasks by id",
		Long: `List the tasks in id (submission) order: status, command, node and attempt.

With -o json it prints the ListTasksResponse: {"tasks": [...]}.`,
		Example: `  blixard task list
  blixard task list --limit 20 --stale -o json`,
		Args: exactArgs(),
		RunE: func(cmd *cobra.Command, _ []string) error {
			n, err := limitFlag(limit)
			if err != nil {
				return err
			}
			s, err := g.open(cmd)
			if err != nil {
				return err
			}
			defer s.close()
			resp, err := s.client.ListTasks(s.ctx, &apiv1.ListTasksRequest{Limit: n, Stale: stale})
			if err != nil {
				return err
			}
			if !s.json && len(resp.GetTasks()) == 0 {
				_, err := fmt.Fprintln(s.errOut, "no tasks")
				return err
			}
			return s.emit(resp, func(w io.Writer) {
				row(w, "ID", "STATUS", "COMMAND", "NODE", "ATTEMPT", "SUBMITTED")
				for _, t := range resp.GetTasks() {
					row(w, t.GetId(), enumText(t.GetStatus()), truncate(commandText(t.GetSpec().GetCommand(), t.GetSpec().GetArgs()), 40),
						nodeText(t.GetNodeId()), t.GetAttempt(), timeText(t.GetSubmittedUnixNano()))
				}
			})
		},
	}
	cmd.Flags().IntVar(&limit, "limit", 0, "list at most `N` tasks (0 for all)")
	cmd.Flags().BoolVar(&stale, "stale", false, "answer from the contacted node's state without a linearizable read")
	return cmd
}
