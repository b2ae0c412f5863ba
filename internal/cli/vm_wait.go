package cli

import (
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/spf13/cobra"

	apiv1 "github.com/blixard/blixard/api/v1"
	"github.com/blixard/blixard/client"
)

// vmPollInterval is how often --wait of the vm commands reads the VM (a
// variable for tests).
var vmPollInterval = 500 * time.Millisecond

// defaultVMWaitTimeout is --wait-timeout's default: enough for a first
// boot that builds the default image and boots under TCG.
const defaultVMWaitTimeout = 5 * time.Minute

// vmGoal is what a vm command's --wait waits for.
type vmGoal int

const (
	// vmGoalRunning: the VM runs (create, start). A VM that fails, stops
	// on its own or is lost with its node is waited for on through the
	// restarts its restart policy makes (the timeout bounds them); the
	// wait fails if the policy will not restart it, or the VM is no longer
	// wanted running.
	vmGoalRunning vmGoal = iota + 1
	// vmGoalStopped: the VM runs nowhere (stop, create --no-start).
	vmGoalStopped
	// vmGoalGone: the VM's record is removed (delete).
	vmGoalGone
)

// vmWaitFlags are --wait and --wait-timeout of a vm command.
type vmWaitFlags struct {
	wait    bool
	timeout time.Duration
}

// register adds the flags to cmd; until says what --wait waits for ("runs").
func (w *vmWaitFlags) register(cmd *cobra.Command, until string) {
	f := cmd.Flags()
	f.BoolVar(&w.wait, "wait", false, "wait until the VM "+until+", showing its state on stderr as it changes")
	f.DurationVar(&w.timeout, "wait-timeout", defaultVMWaitTimeout,
		"with --wait, give up after this long (0 for no limit); the VM goes on in the cluster")
}

// check checks the flags' values, before any request is sent.
func (w *vmWaitFlags) check() error {
	if w.timeout < 0 {
		return usageErrorf("--wait-timeout must be 0 (no limit) or more, got %v", w.timeout)
	}
	return nil
}

// emitVM prints VM v as the result of a vm command ("vm web created: ..."),
// with --wait once the wait for goal has ended, as the VM is then. A wait
// that gave up prints nothing; one that ended another way than goal prints
// the VM and fails.
func emitVM(s *session, verb string, v *apiv1.Vm, wait vmWaitFlags, goal vmGoal) error {
	var waitErr error
	if wait.wait {
		if v, waitErr = waitForVM(s, v, goal, wait.timeout); v == nil {
			return waitErr
		}
	}
	if err := s.emit(v, func(w io.Writer) { io.WriteString(w, vmSummary(verb, v)) }); err != nil {
		return err
	}
	return waitErr
}

// waitForVM polls VM v until it reaches goal, limit passes (0: no limit)
// or the command is interrupted, showing its state as progress on stderr.
// It returns the VM as last seen, with an error if the wait failed: the VM
// took another turn than goal, or the wait gave up, in which case the VM is
// nil.
func waitForVM(s *session, v *apiv1.Vm, goal vmGoal, limit time.Duration) (*apiv1.Vm, error) {
	ctx, name := s.ctx, v.GetName()
	pace := newPoller(vmPollInterval, limit)
	defer pace.stop()
	p := s.progress.start("vm " + name)
	defer p.Done()
	deleted := fmt.Errorf("vm %s was deleted while the command waited", name)
	created := v.GetCreatedIndex()
	for {
		p.Update(enumText(v.GetState()), v.GetReason())
		if goal != vmGoalGone && v.GetDesiredState() == apiv1.VmDesiredState_VM_DESIRED_STATE_DELETED {
			return nil, deleted
		}
		if done, err := vmWaitOver(v, goal); done || err != nil {
			return v, err
		}
		if err := pace.next(ctx); errors.Is(err, errWaitTimedOut) {
			return nil, fmt.Errorf("vm %s is still %s after %v; it goes on in the cluster: see 'blixard vm status %s'",
				name, enumText(v.GetState()), limit, name)
		} else if err != nil {
			return nil, err
		}
		resp, err := s.client.GetVm(ctx, &apiv1.GetVmRequest{Name: name})
		// A VM of the same name made since is another VM: this one is gone.
		gone := client.ErrorOf(err).GetCode() == apiv1.ErrorCode_ERROR_CODE_NOT_FOUND ||
			(err == nil && created != 0 && resp.GetVm().GetCreatedIndex() != created)
		if gone {
			if goal == vmGoalGone {
				p.Update("deleted", "")
				return v, nil
			}
			return nil, deleted
		}
		if err != nil {
			return nil, fmt.Errorf("wait for vm %s: %w", name, err)
		}
		v = resp.GetVm()
	}
}

// vmWaitOver reports whether a wait for goal is over with VM v: done, or
// an error saying why goal will not be reached.
func vmWaitOver(v *apiv1.Vm, goal vmGoal) (bool, error) {
	name, state, desired := v.GetName(), v.GetState(), v.GetDesiredState()
	switch goal {
	case vmGoalRunning:
		if desired != apiv1.VmDesiredState_VM_DESIRED_STATE_RUNNING {
			return false, fmt.Errorf("vm %s is now wanted %s, not running", name, enumText(desired))
		}
		switch state {
		case apiv1.VmState_VM_STATE_RUNNING:
			return true, nil
		case apiv1.VmState_VM_STATE_FAILED, apiv1.VmState_VM_STATE_STOPPED, apiv1.VmState_VM_STATE_LOST:
			if willRestart(v) {
				return false, nil
			}
			return false, fmt.Errorf("vm %s %s: %s; its restart policy (%s) does not restart it: see 'blixard vm status %s' and 'blixard vm logs %s'",
				name, enumText(state), orDash(v.GetReason()), enumText(v.GetSpec().GetRestartPolicy()), name, name)
		}
	case vmGoalStopped:
		if desired != apiv1.VmDesiredState_VM_DESIRED_STATE_STOPPED {
			return false, fmt.Errorf("vm %s is now wanted %s, not stopped", name, enumText(desired))
		}
		switch state {
		case apiv1.VmState_VM_STATE_STOPPED, apiv1.VmState_VM_STATE_FAILED, apiv1.VmState_VM_STATE_LOST:
			return true, nil
		}
	}
	return false, nil
}

// willRestart reports whether the cluster restarts VM v, ended as it is,
// by its restart policy (as the leader's placement does): always after any
// end, on-failure after a failure or a loss, never not at all.
func willRestart(v *apiv1.Vm) bool {
	policy := v.GetSpec().GetRestartPolicy()
	switch v.GetState() {
	case apiv1.VmState_VM_STATE_FAILED, apiv1.VmState_VM_STATE_LOST:
		return policy == apiv1.RestartPolicy_RESTART_POLICY_ALWAYS || policy == apiv1.RestartPolicy_RESTART_POLICY_ON_FAILURE
	case apiv1.VmState_VM_STATE_STOPPED:
		return policy == apiv1.RestartPolicy_RESTART_POLICY_ALWAYS
	}
	return false
}
