package state_test

import (
	"errors"
	"testing"

	"google.golang.org/protobuf/proto"

	apiv1 "github.com/blixard/blixard/api/v1"
	"github.com/blixard/blixard/internal/state"
)

// Fuzz targets for the bytes the state machine decodes: snapshots (from a
// node's disk, and from the leader over the network) and the commands of
// the Raft log (written by the leader from clients' requests and by nodes,
// decoded by every node as it applies them). See docs/SECURITY.md.

// FuzzRestore feeds Restore a snapshot. Restore must not panic; a state it
// accepts must snapshot and restore to itself, answer every query, and
// take commands aimed at each of its records — each checked and applied,
// Check and Apply agreeing — without panicking.
func FuzzRestore(f *testing.F) {
	good := mustSnapshot(f, smallState(f))
	f.Add(good)
	f.Add(good[:len(good)/2])
	f.Add([]byte{})
	f.Add([]byte{0x08, 0x01})
	f.Add(mustSnapshot(f, state.New()))
	f.Fuzz(func(t *testing.T, data []byte) {
		s, err := restoreNoPanic(t, data)
		if err != nil {
			return
		}
		checkRestored(t, s)
		queryAll(s)
		for _, cmd := range commandsOn(s) {
			checkThenApply(t, s, cmd)
		}
		checkRestored(t, s)
	})
}

// FuzzApply decodes three commands as a node decodes log entries and
// applies them in turn to the fixture of the state's tests (two nodes, VMs
// and tasks in every stage). For each: Validate, Check and Apply must not
// panic; a command Validate refuses is refused by Check and Apply; Check
// and Apply agree; a refusal changes no record; the workload rules hold
// (expect); and afterwards the state snapshots and restores to itself and
// no node holds more than its limits (CheckCommitted).
func FuzzApply(f *testing.F) {
	base := mustSnapshot(f, smallState(f))
	// Seeds: commands of every kind, aimed at the fixture's records.
	fx, err := state.Restore(base)
	if err != nil {
		f.Fatal(err)
	}
	seeds := [][]byte{{}}
	for _, cmd := range append(commandsOn(fx),
		withID("fresh", createVm("fresh", vmSpec(2, 1024), true)),
		initCluster("c2"),
		registerNode(4, 16, 16384, map[string]string{"zone": "c"}),
		submitTask(taskSpec("make", 2, 512)),
	) {
		b, err := proto.Marshal(cmd)
		if err != nil {
			f.Fatal(err)
		}
		seeds = append(seeds, b)
	}
	for i, b := range seeds {
		f.Add(b, seeds[(i+7)%len(seeds)], seeds[(i+13)%len(seeds)])
	}
	f.Fuzz(func(t *testing.T, e1, e2, e3 []byte) {
		s, err := state.Restore(base)
		if err != nil {
			t.Fatal(err)
		}
		for _, data := range [][]byte{e1, e2, e3} {
			cmd := &apiv1.Command{}
			if proto.Unmarshal(data, cmd) != nil {
				// The core skips an entry that does not decode.
				s.ApplyEmpty(s.AppliedIndex() + 1)
				continue
			}
			_, remembered := s.Response(cmd.GetClientRequestId())
			verr := state.Validate(cmd)
			_, err := applyChecked(t, s, step{index: s.AppliedIndex() + 1, kind: stepCommand, cmd: cmd}, true)
			if verr != nil && !remembered && err == nil {
				t.Fatalf("Validate refused %v (%v), Apply accepted it", cmd, verr)
			}
			if verr != nil && !remembered {
				var se *state.Error
				if !errors.As(verr, &se) || se.Code != apiv1.ErrorCode_ERROR_CODE_INVALID_ARGUMENT {
					t.Fatalf("Validate refused %v with %v, not an invalid argument", cmd, verr)
				}
			}
		}
		checkRestored(t, s)
		if err := s.CheckCommitted(); err != nil {
			t.Fatalf("after %x / %x / %x: %v", e1, e2, e3, err)
		}
	})
}

// queryAll runs every query of the state; none may panic.
func queryAll(s *state.State) {
	s.Cluster()
	s.RequestRecords()
	_ = s.CheckCommitted()
	s.VmsToPlace()
	s.PendingTasks(0)
	s.Vms(1)
	s.Tasks(1)
	for _, n := range s.Nodes() {
		s.VmsOn(n.GetId())
		s.TasksOn(n.GetId())
		s.Allocated(n.GetId())
		s.Removed(n.GetId())
	}
}

// commandsOn returns commands aimed at s's records: each VM, task and node
// (a few of each) is stopped, started, placed, reported on, drained,
// taken down, and so on.
func commandsOn(s *state.State) []*apiv1.Command {
	var node uint64 = 1
	if ns := s.Nodes(); len(ns) > 0 {
		node = ns[0].GetId()
	}
	var cmds []*apiv1.Command
	for i, v := range s.Vms(0) {
		if i == 4 {
			break
		}
		name, gen, on := v.GetName(), v.GetGeneration(), v.GetNodeId()
		cmds = append(cmds,
			stopVm(name), startVm(name),
			assignVm(name, node, gen),
			reportVm(name, on, gen, apiv1.VmState_VM_STATE_RUNNING),
			reportVm(name, on, gen, apiv1.VmState_VM_STATE_FAILED),
			vmPlacementFailed(name, gen, "no room"),
			deleteVm(name),
		)
	}
	for i, tk := range s.Tasks(0) {
		if i == 4 {
			break
		}
		id, attempt, on := tk.GetId(), tk.GetAttempt(), tk.GetNodeId()
		cmds = append(cmds,
			assignTask(id, node),
			reportTask(id, on, attempt, apiv1.TaskStatus_TASK_STATUS_RUNNING, nil),
			reportTask(id, on, attempt, apiv1.TaskStatus_TASK_STATUS_SUCCEEDED, &apiv1.TaskResult{ExitCode: 0, OutputTail: []byte("ok")}),
			taskPlacementFailed(id, attempt, "no room"),
			cancelTask(id),
		)
	}
	for i, n := range s.Nodes() {
		if i == 3 {
			break
		}
		id := n.GetId()
		cmds = append(cmds,
			drainCmd(id, true), drainCmd(id, false),
			nodeStatus(id, nsDisconnected, "quiet"),
			downCmd(id),
			nodeStatus(id, nsReady, "back"),
			registerNode(id, 8, 8192, nil),
			nodeStatus(id, nsLeft, "gone"),
		)
	}
	return append(cmds,
		createVm("new", vmSpec(1, 256), true),
		submitTask(taskSpec("true", 1, 64)),
	)
}

// checkThenApply checks and applies cmd at the next index: neither may
// panic, and they must agree.
func checkThenApply(t *testing.T, s *state.State, cmd *apiv1.Command) {
	t.Helper()
	checkErr := s.Check(cmd)
	resp, err := s.Apply(s.AppliedIndex()+1, cmd)
	if d := sameErr(checkErr, err); d != "" {
		t.Fatalf("Check and Apply disagree on %v: %s", cmd, d)
	}
	if (err != nil) != (resp.GetError() != nil) {
		t.Fatalf("Apply(%v) = %v, %v", cmd, resp, err)
	}
}
