package cli

import (
	"fmt"
	"io"

	"github.com/spf13/cobra"

	apiv1 "github.com/blixard/blixard/api/v1"
)

func newTaskCancelCommand(g *globalFlags) *cobra.Command {
	return &cobra.Command{
		Use:   "cancel ID",
		Short: "Cancel a task that has not ended",
		Long: `Cancel the task ID; a running task is stopped by its node. A task that has
already ended cannot be cancelled.

With -o json it prints the task.`,
		Example: `  blixard task cancel 42`,
		Args:    exactArgs("ID"),
		RunE: func(cmd *cobra.Command, args []string) error {
			id, err := parseID("task id", args[0])
			if err != nil {
				return err
			}
			s, err := g.open(cmd)
			if err != nil {
				return err
			}
			defer s.close()
			resp, err := s.client.CancelTask(s.ctx, &apiv1.CancelTaskRequest{Id: id})
			if err != nil {
				return err
			}
			t := resp.GetTask()
			return s.emit(t, func(w io.Writer) {
				fmt.Fprintf(w, "task %d: %s\n", t.GetId(), withReason(enumText(t.GetStatus()), t.GetReason()))
			})
		},
	}
}
