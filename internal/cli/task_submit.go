package cli

import (
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/spf13/cobra"

	apiv1 "github.com/blixard/blixard/api/v1"
)

// taskPollInterval is how often --wait asks for the task's status.
var taskPollInterval = time.Second

func newTaskSubmitCommand(g *globalFlags) *cobra.Command {
	var (
		vcpus       int
		memory      int64
		timeout     time.Duration
		env         []string
		wait        bool
		waitTimeout time.Duration
	)
	cmd := &cobra.Command{
		Use:   "submit [flags] [--] CMD [ARGS...]",
		Short: "Submit a one-off task",
		Long: `Submit CMD with ARGS as a task, to run once on a node with the resources
asked for. Flags go before CMD; everything from CMD on is the task's command
line ('--' before CMD is allowed).

With --wait the command polls the task until it ends, printing each change of
status on stderr, then prints the task and fails unless it succeeded. In this
build tasks are stored and replicated but not yet run, so a task stays pending
and --wait gives up after --wait-timeout (default 5m) with an error; the task
stays in the cluster ('blixard task status ID', 'blixard task cancel ID').

With -o json it prints the task.`,
		Example: `  # Record a task that lists /tmp, with 2 vCPUs and 256 MiB
  blixard task submit --vcpus 2 --memory 256 -- ls -l /tmp

  # With an environment variable and a 10 minute limit on the run
  blixard task submit --env GOFLAGS=-count=1 --timeout 10m -- go test ./...

  # Wait up to one minute for it to end
  blixard task submit --wait --wait-timeout 1m -- date`,
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) == 0 {
				return usageErrorf("no command given: blixard task submit [flags] -- CMD [ARGS...]")
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			spec := &apiv1.TaskSpec{Command: args[0], Args: args[1:], Resources: &apiv1.Resources{}}
			var err error
			if spec.Resources.Vcpus, err = checkVcpus(vcpus); err != nil {
				return err
			}
			if spec.Resources.MemoryMib, err = checkMemory(memory); err != nil {
				return err
			}
			if timeout < 0 || (timeout > 0 && timeout < time.Millisecond) {
				return usageErrorf("--timeout must be 0 (none) or at least 1ms, got %v", timeout)
			}
			spec.TimeoutMs = uint64(timeout.Milliseconds())
			if spec.Env, err = parseKeyValues("env", env); err != nil {
				return err
			}
			if waitTimeout < 0 {
				return usageErrorf("--wait-timeout must be 0 (no limit) or more, got %v", waitTimeout)
			}
			s, err := g.open(cmd)
			if err != nil {
				return err
			}
			defer s.close()
			resp, err := s.client.SubmitTask(s.ctx, &apiv1.SubmitTaskRequest{Spec: spec})
			if err != nil {
				return err
			}
			t := resp.GetTask()
			if !wait {
				return s.emit(t, func(w io.Writer) {
					fmt.Fprintf(w, "task %d submitted: %s\n", t.GetId(), withReason(enumText(t.GetStatus()), t.GetReason()))
				})
			}
			fmt.Fprintf(s.errOut, "task %d submitted\n", t.GetId())
			t, err = waitForTask(s, t, waitTimeout)
			if err != nil {
				return err
			}
			if err := printTask(s, t); err != nil {
				return err
			}
			if t.GetStatus() != apiv1.TaskStatus_TASK_STATUS_SUCCEEDED {
				return taskFailure(t)
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.SetInterspersed(false) // flags after CMD belong to the task
	f.IntVar(&vcpus, "vcpus", 1, "`N` virtual CPUs")
	f.Int64Var(&memory, "memory", 128, "memory in `MiB`")
	f.DurationVar(&timeout, "timeout", time.Minute, "limit on the task's run (0 for none)")
	f.StringArrayVar(&env, "env", nil, "environment variable `KEY=VALUE` (repeatable)")
	f.BoolVar(&wait, "wait", false, "wait for the task to end; fail unless it succeeds")
	f.DurationVar(&waitTimeout, "wait-timeout", 5*time.Minute,
		"with --wait, give up after this long (0 for no limit); tasks do not run yet in this build")
	return cmd
}

// waitForTask polls the task until it ends, limit passes (0: no limit) or the
// command is interrupted, printing each change of status on stderr.
func waitForTask(s *session, t *apiv1.Task, limit time.Duration) (*apiv1.Task, error) {
	ctx := s.ctx
	var deadline <-chan time.Time
	if limit > 0 {
		timer := time.NewTimer(limit)
		defer timer.Stop()
		deadline = timer.C
	}
	tick := time.NewTicker(taskPollInterval)
	defer tick.Stop()
	last := apiv1.TaskStatus_TASK_STATUS_UNSPECIFIED
	for {
		if st := t.GetStatus(); st != last {
			fmt.Fprintf(s.errOut, "task %d: %s\n", t.GetId(), withReason(enumText(st), t.GetReason()))
			last = st
		}
		if t.GetStatus().Ended() {
			return t, nil
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-deadline:
			return nil, fmt.Errorf("task %d is still %s after %v; it stays in the cluster (this build does not run tasks yet): see 'blixard task status %d'",
				t.GetId(), enumText(t.GetStatus()), limit, t.GetId())
		case <-tick.C:
		}
		resp, err := s.client.GetTask(ctx, &apiv1.GetTaskRequest{Id: t.GetId()})
		if err != nil {
			return nil, err
		}
		t = resp.GetTask()
	}
}

// taskFailure says how a task that ended without success ended.
func taskFailure(t *apiv1.Task) error {
	msg := fmt.Sprintf("task %d %s", t.GetId(), enumText(t.GetStatus()))
	if r := t.GetResult(); r != nil && t.GetStatus() == apiv1.TaskStatus_TASK_STATUS_FAILED {
		msg += fmt.Sprintf(": exit code %d", r.GetExitCode())
		if r.GetError() != "" {
			msg += ", " + r.GetError()
		}
	} else if t.GetReason() != "" {
		msg += ": " + t.GetReason()
	}
	return errors.New(msg)
}
