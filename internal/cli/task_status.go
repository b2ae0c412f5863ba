package cli

import (
	"fmt"
	"io"
	"strconv"
	"time"

	"github.com/spf13/cobra"

	apiv1 "github.com/blixard/blixard/api/v1"
)

func newTaskStatusCommand(g *globalFlags) *cobra.Command {
	var stale bool
	cmd := &cobra.Command{
		Use:   "status ID",
		Short: "Show a task and its result",
		Long: `Show the task ID: its status (and why), command, image, resources, node,
attempt out of the most it may have ("2 of 3": a node died under its first)
and, once it has run, its exit code (none if it was killed or never ran),
the error that ended it (such as "timeout"), when it started and finished,
and the last 4 KiB of its output (stdout and stderr interleaved), printed
as it came.

With -o json it prints the task.`,
		Example: `  blixard task status 42
  blixard task status 42 -o json`,
		Args: exactArgs("ID"),
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
			resp, err := s.client.GetTask(s.ctx, &apiv1.GetTaskRequest{Id: id, Stale: stale})
			if err != nil {
				return err
			}
			return printTask(s, resp.GetTask())
		},
	}
	cmd.Flags().BoolVar(&stale, "stale", false, "answer from the contacted node's state without a linearizable read")
	return cmd
}

func taskTable(w io.Writer, t *apiv1.Task) {
	spec := t.GetSpec()
	timeout := "none"
	if ms := spec.GetTimeoutMs(); ms > 0 {
		timeout = (time.Duration(ms) * time.Millisecond).String()
	}
	row(w, "ID:", t.GetId())
	row(w, "Status:", withReason(enumText(t.GetStatus()), t.GetReason()))
	row(w, "Command:", commandText(spec.GetCommand(), spec.GetArgs()))
	row(w, "Env:", mapText(spec.GetEnv()))
	row(w, "Image:", imageText(spec.GetImage()))
	row(w, "vCPUs:", spec.GetResources().GetVcpus())
	row(w, "Memory:", mibText(spec.GetResources().GetMemoryMib()))
	row(w, "Timeout:", timeout)
	row(w, "Node:", nodeText(t.GetNodeId()))
	row(w, "Attempt:", attemptText(t))
	row(w, "Submitted:", fmt.Sprintf("%s (index %d)", timeText(t.GetSubmittedUnixNano()), t.GetSubmittedIndex()))
	row(w, "Updated:", fmt.Sprintf("index %d", t.GetUpdatedIndex()))
	r := t.GetResult()
	if r == nil {
		return
	}
	exit := "none"
	if r.GetExitCode() >= 0 {
		exit = strconv.Itoa(int(r.GetExitCode()))
	}
	row(w, "Exit code:", exit)
	row(w, "Started:", timeText(r.GetStartedUnixNano()))
	row(w, "Finished:", timeText(r.GetFinishedUnixNano()))
	row(w, "Duration:", durationText(r.GetStartedUnixNano(), r.GetFinishedUnixNano()))
	row(w, "Error:", orDash(r.GetError()))
}

// attemptText shows which attempt a task is at out of how many it may
// have: "2 of 3".
func attemptText(t *apiv1.Task) string {
	limit := t.GetSpec().GetMaxAttempts()
	if limit == 0 {
		limit = defaultTaskAttempts
	}
	return fmt.Sprintf("%d of %d", t.GetAttempt(), limit)
}

// imageText shows a workload's image: an empty name means the default one.
func imageText(name string) string {
	if name == "" {
		return "default"
	}
	return name
}

// durationText shows the time from start to finish (Unix nanoseconds), to
// the millisecond; "-" unless both are known.
func durationText(start, finish int64) string {
	if start == 0 || finish == 0 || finish < start {
		return "-"
	}
	return time.Duration(finish - start).Round(time.Millisecond).String()
}

// printTask prints a task as the table of taskTable and then the tail of its
// output, if any, as it came (not through the table, whose columns its
// tabs would upset).
func printTask(s *session, t *apiv1.Task) error {
	if err := s.emit(t, func(w io.Writer) { taskTable(w, t) }); err != nil || s.json {
		return err
	}
	out := t.GetResult().GetOutputTail()
	if len(out) == 0 {
		return nil
	}
	if out[len(out)-1] != '\n' {
		out = append(out[:len(out):len(out)], '\n')
	}
	_, err := fmt.Fprintf(s.out, "Output (last %d bytes):\n%s", len(t.GetResult().GetOutputTail()), out)
	return err
}
