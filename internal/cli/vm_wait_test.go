package cli

import (
	"context"
	"encoding/json"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	apiv1 "github.com/blixard/blixard/api/v1"
	"github.com/blixard/blixard/client/clienttest"
)

// fastVMPolls makes the vm commands' --wait poll every millisecond for the
// rest of the test.
func fastVMPolls(t *testing.T) {
	old := vmPollInterval
	vmPollInterval = time.Millisecond
	t.Cleanup(func() { vmPollInterval = old })
}

// vmStep is what the fake says of a VM on one GetVm.
type vmStep struct {
	state  apiv1.VmState
	reason string
	node   uint64
}

// stepVM makes each GetVm of n answer the next of steps (the last one
// repeats), as the cluster would report a VM's progress, and lets rewrite
// (if set) change the answer of the write that starts the wait.
func stepVM(n *clienttest.Node, rewrite func(method string, resp proto.Message), steps ...vmStep) {
	var polls atomic.Int32
	n.SetHook(func(_ context.Context, method string, _ proto.Message, next func() (proto.Message, error)) (proto.Message, error) {
		resp, err := next()
		if err != nil {
			return resp, err
		}
		if v := asVM(resp); method == "GetVm" && v != nil && len(steps) > 0 {
			s := steps[min(int(polls.Add(1))-1, len(steps)-1)]
			v.State, v.Reason, v.NodeId = s.state, s.reason, s.node
		} else if rewrite != nil {
			rewrite(method, resp)
		}
		return resp, err
	})
}

// bootSteps are a VM's way from placement to running on node 2.
var bootSteps = []vmStep{
	{apiv1.VmState_VM_STATE_SCHEDULED, "placed on node 2", 2},
	{apiv1.VmState_VM_STATE_SCHEDULED, "placed on node 2", 2},
	{apiv1.VmState_VM_STATE_STARTING, "booting (tcg)", 2},
	{apiv1.VmState_VM_STATE_RUNNING, "ready", 2},
}

// bootProgress is what --wait prints on stderr, where no terminal is, as
// a VM goes bootSteps' way.
const bootProgress = `vm web: pending (created; waiting for placement)
vm web: scheduled (placed on node 2)
vm web: starting (booting (tcg))
vm web: running (ready)
`

// TestVMCreateWait checks what vm create --wait prints: stdout is the
// result alone, as without --wait but of the VM as the wait left it;
// stderr is one line per change of the VM's state, then at most one error
// line.
func TestVMCreateWait(t *testing.T) {
	create := []string{"vm", "create", "web", "--vcpus", "1", "--memory", "128", "--wait"}
	tests := []struct {
		name       string
		flags      []string
		steps      []vmStep
		wantOut    string // "" with json: checked as JSON
		json       string // the VM's state in the JSON on stdout
		wantErr    string
		wantStatus int
	}{
		{
			name: "runs", steps: bootSteps,
			wantOut: "vm web created: desired running, state running (ready)\n",
			wantErr: bootProgress,
		},
		{
			name: "json", flags: []string{"-o", "json"}, steps: bootSteps,
			json: "VM_STATE_RUNNING", wantErr: bootProgress,
		},
		{
			name: "quiet", flags: []string{"-q"}, steps: bootSteps,
			wantOut: "vm web created: desired running, state running (ready)\n",
		},
		{
			name: "quiet, long form, json", flags: []string{"--quiet", "-o", "json"}, steps: bootSteps,
			json: "VM_STATE_RUNNING",
		},
		{
			name: "fails", flags: []string{"--restart", "never"},
			steps: []vmStep{
				{apiv1.VmState_VM_STATE_STARTING, "booting (tcg)", 2},
				{apiv1.VmState_VM_STATE_FAILED, "boot timeout: no ready frame in 1m0s", 2},
			},
			wantOut: "vm web created: desired running, state failed (boot timeout: no ready frame in 1m0s)\n",
			wantErr: `vm web: pending (created; waiting for placement)
vm web: starting (booting (tcg))
vm web: failed (boot timeout: no ready frame in 1m0s)
error: vm web failed: boot timeout: no ready frame in 1m0s; its restart policy (never) does not restart it: see 'blixard vm status web' and 'blixard vm logs web'
`,
			wantStatus: 1,
		},
		{
			name: "lost with its node, restart never", flags: []string{"--restart", "never"},
			steps:      []vmStep{{apiv1.VmState_VM_STATE_LOST, "node 2 is down", 0}},
			wantOut:    "vm web created: desired running, state lost (node 2 is down)\n",
			wantErr:    "vm web: pending (created; waiting for placement)\nvm web: lost (node 2 is down)\nerror: vm web lost: node 2 is down; its restart policy (never) does not restart it: see 'blixard vm status web' and 'blixard vm logs web'\n",
			wantStatus: 1,
		},
		{
			// The default policy (on-failure) restarts it elsewhere: the
			// wait goes on through the loss, whenever a poll sees it.
			name: "lost with its node, then runs elsewhere",
			steps: []vmStep{
				{apiv1.VmState_VM_STATE_STARTING, "booting (tcg)", 2},
				{apiv1.VmState_VM_STATE_LOST, "node 2 is down", 0},
				{apiv1.VmState_VM_STATE_SCHEDULED, "placed on node 3", 3},
				{apiv1.VmState_VM_STATE_RUNNING, "ready", 3},
			},
			wantOut: "vm web created: desired running, state running (ready)\n",
			wantErr: `vm web: pending (created; waiting for placement)
vm web: starting (booting (tcg))
vm web: lost (node 2 is down)
vm web: scheduled (placed on node 3)
vm web: running (ready)
`,
		},
		{
			name: "created stopped", flags: []string{"--no-start"},
			wantOut: "vm web created: desired stopped, state stopped (created)\n",
			wantErr: "vm web: stopped (created)\n",
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			fastVMPolls(t)
			n := clienttest.Start(t, 1)
			stepVM(n, nil, tc.steps...)
			stdout, stderr, err := runAt(t, n, append(create, tc.flags...)...)
			if got := exitCodeOf(err); got != tc.wantStatus {
				t.Errorf("exit status %d (err %v), want %d", got, err, tc.wantStatus)
			}
			if stderr != tc.wantErr {
				t.Errorf("stderr\n%s\nwant\n%s", stderr, tc.wantErr)
			}
			if tc.json == "" {
				if stdout != tc.wantOut {
					t.Errorf("stdout %q, want %q", stdout, tc.wantOut)
				}
				return
			}
			var vm map[string]any
			if err := json.Unmarshal([]byte(stdout), &vm); err != nil || vm["name"] != "web" || vm["state"] != tc.json {
				t.Errorf("stdout (%v), want the VM as JSON in state %s alone:\n%s", err, tc.json, stdout)
			}
		})
	}
}

// TestVMCreateWaitOnTerminal runs vm create --wait with stderr a terminal:
// stderr is one line drawn in place and finished with a newline, stdout
// the same as anywhere else.
func TestVMCreateWaitOnTerminal(t *testing.T) {
	fastVMPolls(t)
	fakeTerminal(t)
	n := clienttest.Start(t, 1)
	stepVM(n, nil, bootSteps...)
	stdout, stderr, err := runAt(t, n, "vm", "create", "web", "--vcpus", "1", "--memory", "128", "--wait")
	if err != nil {
		t.Fatalf("vm create --wait: %v (stderr %q)", err, stderr)
	}
	if want := "vm web created: desired running, state running (ready)\n"; stdout != want {
		t.Errorf("stdout %q, want %q", stdout, want)
	}
	// The clock moves a second at each read: at the start, and at each
	// change.
	const erase = "\r\x1b[K"
	want := erase + "| vm web: pending (created; waiting for placement) [1s]" +
		erase + "/ vm web: pending → scheduled (placed on node 2) [2s]" +
		erase + "- vm web: scheduled → starting (booting (tcg)) [3s]" +
		erase + "\\ vm web: starting → running (ready) [4s]" +
		erase + "vm web: running (ready) [5s]\n"
	if stderr != want {
		t.Errorf("stderr\n%q\nwant\n%q", stderr, want)
	}
}

// TestVMWaitCommands checks --wait of vm start, stop and delete.
func TestVMWaitCommands(t *testing.T) {
	stopping := func(reason string) func(string, proto.Message) {
		return func(method string, resp proto.Message) {
			switch r := resp.(type) {
			case *apiv1.StopVmResponse:
				r.Vm.State, r.Vm.Reason = apiv1.VmState_VM_STATE_STOPPING, reason
			case *apiv1.DeleteVmResponse:
				r.Vm.State, r.Vm.Reason, r.Removed = apiv1.VmState_VM_STATE_STOPPING, reason, false
			}
		}
	}
	tests := []struct {
		name       string
		noStart    bool // create the VM stopped
		args       []string
		rewrite    func(string, proto.Message)
		steps      []vmStep
		wantOut    string
		wantErr    string
		wantStatus int
	}{
		{
			name: "start", noStart: true, args: []string{"vm", "start", "web", "--wait"}, steps: bootSteps,
			wantOut: "vm web started: desired running, state running (ready)\n",
			wantErr: strings.Replace(bootProgress, "created;", "started;", 1),
		},
		{
			name: "stop", args: []string{"vm", "stop", "web", "--wait"}, rewrite: stopping("stopped by user"),
			steps: []vmStep{
				{apiv1.VmState_VM_STATE_STOPPING, "stopped by user", 2},
				{apiv1.VmState_VM_STATE_STOPPED, "guest powered off", 2},
			},
			wantOut: "vm web stopped: desired stopped, state stopped (guest powered off)\n",
			wantErr: "vm web: stopping (stopped by user)\nvm web: stopped (guest powered off)\n",
		},
		{
			name: "delete, removed once stopped", args: []string{"vm", "delete", "web", "--wait"}, rewrite: stopping("deleted by user"),
			wantOut: "vm web deleted\n",
			wantErr: "vm web: stopping (deleted by user)\nvm web: deleted\n",
		},
		{
			name: "delete, removed at once", args: []string{"vm", "delete", "web", "--wait"},
			wantOut: "vm web deleted\n",
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			fastVMPolls(t)
			n := clienttest.Start(t, 1)
			create := []string{"vm", "create", "web", "--vcpus", "1", "--memory", "128"}
			if tc.noStart {
				create = append(create, "--no-start")
			}
			mustRunAt(t, n, create...)
			stepVM(n, tc.rewrite, tc.steps...)
			stdout, stderr, err := runAt(t, n, tc.args...)
			if got := exitCodeOf(err); got != tc.wantStatus {
				t.Errorf("exit status %d (err %v), want %d", got, err, tc.wantStatus)
			}
			if stdout != tc.wantOut || stderr != tc.wantErr {
				t.Errorf("stdout %q, stderr\n%s\nwant stdout %q, stderr\n%s", stdout, stderr, tc.wantOut, tc.wantErr)
			}
		})
	}
}

// TestVMWaitOver checks when a wait is over, for each goal, and why it
// fails.
func TestVMWaitOver(t *testing.T) {
	const (
		running = apiv1.VmDesiredState_VM_DESIRED_STATE_RUNNING
		stopped = apiv1.VmDesiredState_VM_DESIRED_STATE_STOPPED
		deleted = apiv1.VmDesiredState_VM_DESIRED_STATE_DELETED
	)
	tests := []struct {
		goal    vmGoal
		desired apiv1.VmDesiredState
		state   apiv1.VmState
		done    bool
		err     string // a part of the error; "" for none
	}{
		{vmGoalRunning, running, apiv1.VmState_VM_STATE_PENDING, false, ""},
		{vmGoalRunning, running, apiv1.VmState_VM_STATE_SCHEDULED, false, ""},
		{vmGoalRunning, running, apiv1.VmState_VM_STATE_STARTING, false, ""},
		{vmGoalRunning, running, apiv1.VmState_VM_STATE_STOPPING, false, ""},
		{vmGoalRunning, running, apiv1.VmState_VM_STATE_RUNNING, true, ""},
		{vmGoalRunning, running, apiv1.VmState_VM_STATE_FAILED, false, "vm web failed: why; its restart policy (never) does not restart it"},
		{vmGoalRunning, running, apiv1.VmState_VM_STATE_STOPPED, false, "vm web stopped: why"},
		{vmGoalRunning, running, apiv1.VmState_VM_STATE_LOST, false, "vm web lost: why"},
		{vmGoalRunning, stopped, apiv1.VmState_VM_STATE_STOPPING, false, "vm web is now wanted stopped, not running"},

		{vmGoalStopped, stopped, apiv1.VmState_VM_STATE_STOPPING, false, ""},
		{vmGoalStopped, stopped, apiv1.VmState_VM_STATE_RUNNING, false, ""},
		{vmGoalStopped, stopped, apiv1.VmState_VM_STATE_STOPPED, true, ""},
		{vmGoalStopped, stopped, apiv1.VmState_VM_STATE_FAILED, true, ""},
		{vmGoalStopped, stopped, apiv1.VmState_VM_STATE_LOST, true, ""},
		{vmGoalStopped, running, apiv1.VmState_VM_STATE_PENDING, false, "vm web is now wanted running, not stopped"},

		{vmGoalGone, deleted, apiv1.VmState_VM_STATE_STOPPING, false, ""},
		{vmGoalGone, deleted, apiv1.VmState_VM_STATE_STOPPED, false, ""},
	}
	for _, tc := range tests {
		v := &apiv1.Vm{Name: "web", DesiredState: tc.desired, State: tc.state, Reason: "why",
			Spec: &apiv1.VmSpec{RestartPolicy: apiv1.RestartPolicy_RESTART_POLICY_NEVER}}
		done, err := vmWaitOver(v, tc.goal)
		if done != tc.done || (err == nil) != (tc.err == "") || (err != nil && !strings.Contains(err.Error(), tc.err)) {
			t.Errorf("goal %d, desired %s, state %s: done %v, err %v; want done %v, err containing %q",
				tc.goal, enumText(tc.desired), enumText(tc.state), done, err, tc.done, tc.err)
		}
	}
}

// TestWillRestart mirrors the leader's restart rules: always after any
// end, on-failure after a failure or a loss, never not at all.
func TestWillRestart(t *testing.T) {
	const (
		always, onFailure, never = apiv1.RestartPolicy_RESTART_POLICY_ALWAYS, apiv1.RestartPolicy_RESTART_POLICY_ON_FAILURE, apiv1.RestartPolicy_RESTART_POLICY_NEVER
		failed, lost, stopped    = apiv1.VmState_VM_STATE_FAILED, apiv1.VmState_VM_STATE_LOST, apiv1.VmState_VM_STATE_STOPPED
	)
	for _, tc := range []struct {
		policy apiv1.RestartPolicy
		state  apiv1.VmState
		want   bool
	}{
		{always, failed, true}, {always, lost, true}, {always, stopped, true},
		{onFailure, failed, true}, {onFailure, lost, true}, {onFailure, stopped, false},
		{never, failed, false}, {never, lost, false}, {never, stopped, false},
		{always, apiv1.VmState_VM_STATE_RUNNING, false},
	} {
		v := &apiv1.Vm{State: tc.state, Spec: &apiv1.VmSpec{RestartPolicy: tc.policy}}
		if got := willRestart(v); got != tc.want {
			t.Errorf("%s, %s: willRestart %v, want %v", enumText(tc.policy), enumText(tc.state), got, tc.want)
		}
	}
}

// A VM deleted during a wait, or replaced by another of its name, ends
// the wait alike: an error, nothing on stdout.
func TestVMWaitDeleted(t *testing.T) {
	for _, tc := range []struct {
		name    string
		rewrite func(v *apiv1.Vm)
	}{
		{"wanted deleted", func(v *apiv1.Vm) {
			v.DesiredState, v.State = apiv1.VmDesiredState_VM_DESIRED_STATE_DELETED, apiv1.VmState_VM_STATE_STOPPING
		}},
		{"another VM of its name", func(v *apiv1.Vm) { v.CreatedIndex += 100 }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fastVMPolls(t)
			n := clienttest.Start(t, 1)
			n.SetHook(func(_ context.Context, method string, _ proto.Message, next func() (proto.Message, error)) (proto.Message, error) {
				resp, err := next()
				if v := asVM(resp); method == "GetVm" && v != nil {
					tc.rewrite(v)
				}
				return resp, err
			})
			stdout, stderr, err := runAt(t, n, "vm", "create", "web", "--vcpus", "1", "--memory", "128", "--wait")
			if exitCodeOf(err) != 1 || stdout != "" || !strings.Contains(stderr, "error: vm web was deleted while the command waited") {
				t.Errorf("exit %d, stdout %q, stderr %q", exitCodeOf(err), stdout, stderr)
			}
		})
	}
}

func TestVMWaitTimesOut(t *testing.T) {
	fastVMPolls(t)
	n := clienttest.Start(t, 1)
	stdout, stderr, err := runAt(t, n, "vm", "create", "web", "--vcpus", "1", "--memory", "128", "--wait", "--wait-timeout", "20ms")
	want := "vm web: pending (created; waiting for placement)\n" +
		"error: vm web is still pending after 20ms; it goes on in the cluster: see 'blixard vm status web'\n"
	if exitCodeOf(err) != 1 || stdout != "" || stderr != want {
		t.Errorf("err %v, stdout %q, stderr %q; want exit status 1, nothing on stdout, stderr %q", err, stdout, stderr, want)
	}
}

func TestVMWaitDeletedMeanwhile(t *testing.T) {
	fastVMPolls(t)
	n := clienttest.Start(t, 1)
	n.SetHook(func(_ context.Context, method string, _ proto.Message, next func() (proto.Message, error)) (proto.Message, error) {
		if method == "GetVm" {
			return nil, clienttest.Status(&apiv1.Error{Code: apiv1.ErrorCode_ERROR_CODE_NOT_FOUND, Message: `no VM named "web"`})
		}
		return next()
	})
	_, stderr, err := runAt(t, n, "vm", "create", "web", "--vcpus", "1", "--memory", "128", "--wait")
	if exitCodeOf(err) != 1 || !strings.HasSuffix(stderr, "error: vm web was deleted while the command waited\n") {
		t.Errorf("err %v, stderr %q; want the deletion as the error", err, stderr)
	}
}

func TestVMWaitFlagErrors(t *testing.T) {
	n := clienttest.Start(t, 1)
	for _, args := range [][]string{
		{"vm", "create", "web", "--vcpus", "1", "--memory", "128", "--wait", "--wait-timeout", "-1s"},
		{"vm", "start", "web", "--wait", "--wait-timeout", "-1s"},
		{"vm", "stop", "web", "--wait-timeout", "-1s"},
		{"vm", "delete", "web", "--wait", "--wait-timeout", "-1s"},
	} {
		failAt(t, n, "--wait-timeout must be 0 (no limit) or more, got -1s", args...)
	}
	if len(n.Calls()) != 0 {
		t.Errorf("node got %d calls, want none: flags are checked before any request", len(n.Calls()))
	}
}
