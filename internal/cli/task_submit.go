package cli

import (
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/spf13/cobra"

	apiv1 "github.com/blixard/blixard/api/v1"
)

// Attempts a task gets: the API's default for a spec that names none
// (TaskSpec.max_attempts 0) and its upper bound.
const (
	defaultTaskAttempts = 3
	maxTaskAttempts     = 100
)

// taskPollInterval is how often --wait asks for the task's status.
var taskPollInterval = time.Second

func newTaskSubmitCommand(g *globalFlags) *cobra.Command {
	var (
		vcpus       int
		memory      int64
		image       string
		timeout     time.Duration
		env         []string
		wait        bool
		waitTimeout time.Duration
		maxAttempts int
	)
	cmd := &cobra.Command{
		Use:   "submit [flags] [--] CMD [ARGS...]",
		Short: "Submit a one-off task, and with --wait run it like a local command",
		Long: `Submit CMD with ARGS as a task. Flags go before CMD; everything from CMD on
is the task's command line ('--' before CMD is allowed). CMD runs as is, not
through a shell: write "sh -c '...'" for one.

The leader places the task on a node with room for --vcpus and --memory that
offers --image. The node boots a small QEMU microVM of its own for the task;
the guest agent runs the command in it with --env, and the VM powers off
when the command ends or --timeout kills it. Status changes, the exit code,
timings and the last 4 KiB of its output (stdout and stderr interleaved) are
recorded in the cluster: see 'blixard task status ID'.

If the task's node goes down or leaves while it runs, the task is placed
again for another attempt, up to --max-attempts in all; then it is lost. A
task that fails on its own (a non-zero exit, a timeout) is not retried.

Without --wait the command prints the task's id and returns at once.

With --wait it polls the task until it ends, showing its status on stderr
(one line rewritten in place on a terminal, else a line per change; none
with -q), then writes the task's output to stdout as it came and exits as
the task did: 0 if it succeeded, the task's own exit code if it exited with
one, else 1 with a one-line error naming why (timeout, cancelled, the VM
failed). If the task does not end within --wait-timeout, or on Ctrl-C, the
command gives up with exit status 1 and the task goes on in the cluster
('blixard task cancel ID' stops it).

With -o json it prints the task (with --wait, once it has ended, with the
same exit status).`,
		Example: `  # Run a command in a microVM and wait for it, like a local command
  blixard task submit --wait -- sh -c 'echo hello; exit 3'   # prints hello, exits 3

  # Submit with 2 vCPUs and 256 MiB and return at once
  blixard task submit --vcpus 2 --memory 256 -- ls -l /tmp

  # With an environment variable and a 10 minute limit on the run
  blixard task submit --env GOFLAGS=-count=1 --timeout 10m -- go test ./...

  # Wait at most one minute for the end; the task goes on if it takes longer
  blixard task submit --wait --wait-timeout 1m -- date`,
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) == 0 {
				return usageErrorf("no command given: blixard task submit [flags] -- CMD [ARGS...]")
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			spec := &apiv1.TaskSpec{Command: args[0], Args: args[1:], Image: image, Resources: &apiv1.Resources{}}
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
			if maxAttempts < 0 || maxAttempts > maxTaskAttempts {
				return usageErrorf("--max-attempts must be 0 (the default, %d) to %d, got %d", defaultTaskAttempts, maxTaskAttempts, maxAttempts)
			}
			spec.MaxAttempts = uint32(maxAttempts)
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
			t, err = waitForTask(s, t, waitTimeout)
			if err != nil {
				return err
			}
			if s.json {
				err = printJSON(s.out, t)
			} else {
				_, err = s.out.Write(t.GetResult().GetOutputTail())
			}
			if err != nil {
				return fmt.Errorf("write the output of task %d: %w", t.GetId(), err)
			}
			return taskOutcome(t)
		},
	}
	f := cmd.Flags()
	f.SetInterspersed(false) // flags after CMD belong to the task
	f.IntVar(&vcpus, "vcpus", 1, "`N` virtual CPUs")
	f.Int64Var(&memory, "memory", 128, "memory in `MiB`")
	f.StringVar(&image, "image", "", "image `NAME` the task's VM boots; only nodes that offer it run the task (default \"default\", built by each node the first time it needs it)")
	f.DurationVar(&timeout, "timeout", time.Minute, "limit on the task's run, after which it is killed (0 for none)")
	f.StringArrayVar(&env, "env", nil, "environment variable `KEY=VALUE` (repeatable)")
	f.IntVar(&maxAttempts, "max-attempts", 0, fmt.Sprintf(
		"times the task may be started when nodes die under it, before it is lost: 1 to %d (0 for the cluster's default, %d)",
		maxTaskAttempts, defaultTaskAttempts))
	f.BoolVar(&wait, "wait", false, "wait for the task to end, print its output and exit with its exit code")
	f.DurationVar(&waitTimeout, "wait-timeout", 5*time.Minute,
		"with --wait, give up after this long (0 for no limit); the task goes on")
	return cmd
}

// waitForTask polls the task until it ends, limit passes (0: no limit) or the
// command is interrupted, showing its status as progress on stderr.
func waitForTask(s *session, t *apiv1.Task, limit time.Duration) (*apiv1.Task, error) {
	ctx := s.ctx
	pace := newPoller(taskPollInterval, limit)
	defer pace.stop()
	p := s.progress.start(fmt.Sprintf("task %d", t.GetId()))
	defer p.Done()
	p.Note("task %d submitted", t.GetId())
	for {
		p.Update(enumText(t.GetStatus()), t.GetReason())
		if t.GetStatus().Ended() {
			return t, nil
		}
		if err := pace.next(ctx); errors.Is(err, errWaitTimedOut) {
			return nil, fmt.Errorf("task %d is still %s after %v; it goes on in the cluster: see 'blixard task status %d', or stop it with 'blixard task cancel %d'",
				t.GetId(), enumText(t.GetStatus()), limit, t.GetId(), t.GetId())
		} else if err != nil {
			return nil, err
		}
		resp, err := s.client.GetTask(ctx, &apiv1.GetTaskRequest{Id: t.GetId()})
		if err != nil {
			return nil, fmt.Errorf("wait for task %d: %w", t.GetId(), err)
		}
		t = resp.GetTask()
	}
}

// taskOutcome turns how an ended task ended into the command's result: nil
// if it succeeded; an ExitCodeError with the task's own exit code if its
// command exited with one (1 to 255); otherwise an error (exit status 1)
// naming why: a timeout, a cancellation, a VM that failed, a lost node.
func taskOutcome(t *apiv1.Task) error {
	id, r := t.GetId(), t.GetResult()
	switch t.GetStatus() {
	case apiv1.TaskStatus_TASK_STATUS_SUCCEEDED:
		return nil
	case apiv1.TaskStatus_TASK_STATUS_FAILED:
		code, why := r.GetExitCode(), r.GetError()
		if timedOut(r) {
			limit := "its timeout"
			if ms := t.GetSpec().GetTimeoutMs(); ms > 0 {
				limit += " of " + (time.Duration(ms) * time.Millisecond).String()
			}
			return fmt.Errorf("task %d failed: timeout: killed after %s", id, limit)
		}
		if code >= 1 && code <= 255 {
			msg := fmt.Sprintf("task %d exited with code %d", id, code)
			if why != "" && why != fmt.Sprintf("exit code %d", code) {
				msg += " (" + why + ")"
			}
			return &ExitCodeError{Code: int(code), Err: errors.New(msg)}
		}
		if why == "" {
			why = t.GetReason()
		}
		if why == "" {
			why = fmt.Sprintf("exit code %d", code)
		}
		return fmt.Errorf("task %d failed: %s", id, why)
	}
	// Cancelled, lost, or a status this build does not know.
	msg := fmt.Sprintf("task %d %s", id, enumText(t.GetStatus()))
	if t.GetReason() != "" {
		msg += ": " + t.GetReason()
	}
	return errors.New(msg)
}

// timedOut reports whether the task was killed at its timeout (by the guest
// agent, or by the host when the guest did not end in time).
func timedOut(r *apiv1.TaskResult) bool {
	return r.GetError() == "timeout" || strings.HasPrefix(r.GetError(), "timeout;")
}
