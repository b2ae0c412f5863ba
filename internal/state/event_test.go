package state_test

import (
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
