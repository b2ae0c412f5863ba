package state_test

import (
	"strconv"
	"strings"
	"testing"

	apiv1 "github.com/blixard/blixard/api/v1"
	"github.com/blixard/blixard/internal/state"
)

// TestEventsTellTheStory: a leader noted once per term, a node joining and
// going down, a VM placed, running and lost with the reason, a task
// assigned, retried and ended — each an event, in log order, that the
// filters select and a snapshot keeps.
func TestEventsTellTheStory(t *testing.T) {
	h := newHarness(t)
	h.ok(initCluster("c"))
	h.ok(&apiv1.Command{Op: &apiv1.Command_NoteLeader{NoteLeader: &apiv1.NoteLeaderCommand{NodeId: 1, Term: 2}}})
	if _, err := h.apply(&apiv1.Command{Op: &apiv1.Command_NoteLeader{NoteLeader: &apiv1.NoteLeaderCommand{NodeId: 1, Term: 2}}}); err == nil {
		t.Fatal("a term was noted twice")
	}
	h.s.ApplyMembershipChange(h.next(), state.MembershipChange{Voters: []uint64{1, 2}, Join: registerNode(2, 4, 4096, nil).GetRegisterNode()})
	h.ok(registerNode(1, 4, 4096, nil))
	h.ok(createVm("web", vmSpec(1, 128), true))
	h.ok(assignVm("web", 2, h.gen("web")))
	h.ok(reportVm("web", 2, h.gen("web"), apiv1.VmState_VM_STATE_RUNNING))
	h.ok(submitTask(taskSpec("true", 1, 128)))
	task := h.idx
	h.ok(assignTask(task, 2))
	h.ok(&apiv1.Command{Op: &apiv1.Command_SetNodeStatus{SetNodeStatus: &apiv1.SetNodeStatusCommand{
		Id: 2, Status: apiv1.NodeStatus_NODE_STATUS_DOWN, Reason: "no heartbeat for 6s"}}})

	var lines []string
	for _, e := range h.s.Events(0, "", 0, 0) {
		lines = append(lines, e.GetKind()+": "+e.GetMessage())
	}
	story := strings.Join(lines, "\n")
	for _, want := range []string{
		"leader: node 1 leads term 2",
		"node: node 2 joined as a voter",
		"vm: scheduled",
		"vm: running",
		"task: assigned: placed on node 2",
		"node: node 2 is down: no heartbeat for 6s",
		"vm: lost: node 2 is down",
		"task: pending",
	} {
		if !strings.Contains(story, want) {
			t.Errorf("the events do not say %q:\n%s", want, story)
		}
	}
	all := h.s.Events(0, "", 0, 0)
	for i := 1; i < len(all); i++ {
		if all[i].GetIndex() < all[i-1].GetIndex() {
			t.Fatalf("events out of log order: %v", all)
		}
	}
	for _, e := range h.s.Events(0, "web", 0, 0) {
		if e.GetVmName() != "web" {
			t.Errorf("--vm web selected %v", e)
		}
	}
	for _, e := range h.s.Events(0, "", 2, 0) {
		if e.GetNodeId() != 2 {
			t.Errorf("--node 2 selected %v", e)
		}
	}
	if got := h.s.Events(0, "", 0, 2); len(got) != 2 || got[1].GetIndex() != all[len(all)-1].GetIndex() {
		t.Errorf("limit 2 gave %v, want the newest two", got)
	}
	if got := h.s.Events(all[len(all)-1].GetIndex(), "", 0, 0); len(got) != 0 {
		t.Errorf("events after the last: %v", got)
	}
	b, err := h.s.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	r, err := state.Restore(b)
	if err != nil {
		t.Fatal(err)
	}
	if got := r.Events(0, "", 0, 0); len(got) != len(all) || r.NotedTerm() != 2 {
		t.Fatalf("restored: %d events, noted term %d; want %d and 2", len(got), r.NotedTerm(), len(all))
	}
}

// TestEventsAreBounded: the log keeps the newest MaxEvents.
func TestEventsAreBounded(t *testing.T) {
	h := newHarness(t)
	h.ok(initCluster("c"))
	for term := uint64(1); term <= state.MaxEvents+10; term++ {
		h.ok(&apiv1.Command{Op: &apiv1.Command_NoteLeader{NoteLeader: &apiv1.NoteLeaderCommand{NodeId: 1, Term: term}}})
	}
	got := h.s.Events(0, "", 0, 0)
	if len(got) != state.MaxEvents || !strings.HasSuffix(got[len(got)-1].GetMessage(), "term 1010") {
		t.Fatalf("%d events, the last %q; want %d ending with term 1010", len(got), got[len(got)-1].GetMessage(), state.MaxEvents)
	}
}

// TestReschedulesAreEvents: a workload placed again because its node went
// down or was drained waits since that moment, is a reschedule from that
// node, and its assignment records a "reschedule" event saying so; first
// placements and a user's stop and start on a healthy node are not
// reschedules, and a failed VM's return is a restart.
func TestReschedulesAreEvents(t *testing.T) {
	h := newHarness(t)
	at := func(nanos int64, cmd *apiv1.Command) *apiv1.Command { cmd.ProposedUnixNano = nanos; return cmd }
	h.ok(initCluster("c"))
	for id := uint64(1); id <= 3; id++ {
		h.ok(registerNode(id, 8, 8192, nil))
	}
	h.ok(at(100, createVm("web", vmSpec(1, 512), true)))
	h.ok(at(110, createVm("db", vmSpec(1, 512), true)))
	task := h.submit(taskSpec("sh", 1, 128))
	wantPlacement := func(what string, got state.Placement, ok bool, want state.Placement) {
		t.Helper()
		if !ok || got != want {
			t.Fatalf("%s: placement %+v (waits %v), want %+v", what, got, ok, want)
		}
	}
	p, ok := h.s.VmPlacement("web")
	wantPlacement("web created", p, ok, state.Placement{WaitingSinceUnixNano: 100})
	p, ok = h.s.TaskPlacement(task)
	wantPlacement("task submitted", p, ok, state.Placement{WaitingSinceUnixNano: h.task(task).GetSubmittedUnixNano()})
	h.ok(h.assign("web", 2))
	h.ok(h.assign("db", 3))
	h.ok(assignTask(task, 2))
	if _, ok := h.s.VmPlacement("web"); ok {
		t.Fatal("web waits for placement once placed")
	}

	// Node 3 drained: db stops there and waits again, a move off node 3.
	h.ok(at(200, &apiv1.Command{Op: &apiv1.Command_DrainNode{DrainNode: &apiv1.DrainNodeCommand{Id: 3, Drain: true}}}))
	h.ok(at(210, h.report("db", 3, apiv1.VmState_VM_STATE_STOPPED)))
	p, ok = h.s.VmPlacement("db")
	wantPlacement("db off its drained node", p, ok, state.Placement{WaitingSinceUnixNano: 210, Reschedule: true, From: 3, Why: "node 3 is drained"})

	// Node 2 down: web lost, the task's attempt lost; both wait since.
	h.ok(at(300, &apiv1.Command{Op: &apiv1.Command_SetNodeStatus{SetNodeStatus: &apiv1.SetNodeStatusCommand{
		Id: 2, Status: apiv1.NodeStatus_NODE_STATUS_DOWN, Reason: "no heartbeat"}}}))
	p, ok = h.s.VmPlacement("web")
	wantPlacement("web lost with node 2", p, ok, state.Placement{WaitingSinceUnixNano: 300, Reschedule: true, From: 2, Why: "node 2 is down"})
	p, ok = h.s.TaskPlacement(task)
	wantPlacement("task lost with node 2", p, ok, state.Placement{WaitingSinceUnixNano: 300, Reschedule: true, From: 2, Why: "node 2 is down during attempt 1 of 3"})

	// A user's stop and start on a healthy node, and a failure: neither
	// is a move.
	h.ok(at(400, createVm("app", vmSpec(1, 512), true)))
	h.ok(h.assign("app", 1))
	h.ok(h.report("app", 1, apiv1.VmState_VM_STATE_RUNNING))
	h.ok(stopVm("app"))
	h.ok(startVm("app"))
	h.ok(at(410, h.report("app", 1, apiv1.VmState_VM_STATE_STOPPED)))
	p, ok = h.s.VmPlacement("app")
	wantPlacement("app stopped and started by its user", p, ok, state.Placement{WaitingSinceUnixNano: 410})
	h.ok(h.assign("app", 1))
	h.ok(at(420, h.report("app", 1, apiv1.VmState_VM_STATE_FAILED)))
	p, ok = h.s.VmPlacement("app")
	wantPlacement("app failed", p, ok, state.Placement{WaitingSinceUnixNano: 420, Restart: true})
	h.ok(h.assign("app", 1))

	h.ok(h.assign("web", 1))
	h.ok(h.assign("db", 1))
	h.ok(assignTask(task, 1))
	var moves []string
	for _, e := range h.s.Events(0, "", 0, 0) {
		if e.GetKind() == "reschedule" {
			moves = append(moves, e.GetMessage())
			if e.GetNodeId() != 1 {
				t.Errorf("reschedule event %v does not name the node it moves to", e)
			}
		}
	}
	want := []string{
		"vm web moves from node 2 to node 1: node 2 is down",
		"vm db moves from node 3 to node 1: node 3 is drained",
		"task " + strconv.FormatUint(task, 10) + " moves from node 2 to node 1: node 2 is down during attempt 1 of 3",
	}
	if strings.Join(moves, "\n") != strings.Join(want, "\n") {
		t.Fatalf("reschedule events:\n%s\nwant:\n%s", strings.Join(moves, "\n"), strings.Join(want, "\n"))
	}
}

// TestDrainsAreNodeEvents: draining a node and undraining it are "node"
// events about it; asking for what already holds records nothing.
func TestDrainsAreNodeEvents(t *testing.T) {
	h := newHarness(t)
	h.ok(initCluster("c"))
	h.ok(registerNode(1, 4, 4096, nil))
	h.ok(registerNode(2, 4, 4096, nil))
	before := h.idx
	h.ok(drainCmd(2, true))
	h.ok(drainCmd(2, true))
	h.ok(drainCmd(2, false))
	h.ok(drainCmd(2, false))
	var got []string
	for _, e := range h.s.Events(before, "", 0, 0) {
		if e.GetKind() != "node" || e.GetNodeId() != 2 {
			t.Errorf("event %v: want a node event about node 2", e)
		}
		got = append(got, e.GetMessage())
	}
	if want := []string{"node 2 is drained", "node 2 is undrained"}; strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("events after the drains:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}
