package runtime

import (
	"slices"
	"testing"

	"go.etcd.io/raft/v3/raftpb"
	"google.golang.org/protobuf/proto"

	apiv1 "github.com/blixard/blixard/api/v1"
	"github.com/blixard/blixard/internal/core"
)

// TestNodeEventsFor: the leader logs every node event, which it decided;
// a follower only those about itself; other kinds are not logged here.
func TestNodeEventsFor(t *testing.T) {
	events := []*apiv1.Event{
		{Index: 1, Kind: "leader", NodeId: 1, Message: "node 1 leads term 2"},
		{Index: 2, Kind: "node", NodeId: 2, Message: "node 2 joined as a voter"},
		{Index: 3, Kind: "node", NodeId: 3, Message: "node 3 is down"},
		{Index: 4, Kind: "vm", NodeId: 2, VmName: "web", Message: "running"},
		{Index: 5, Kind: "node", NodeId: 2, Message: "node 2 is drained"},
	}
	indexes := func(es []*apiv1.Event) []uint64 {
		var out []uint64
		for _, e := range es {
			out = append(out, e.GetIndex())
		}
		return out
	}
	for _, tc := range []struct {
		name       string
		self, lead uint64
		want       []uint64
	}{
		{"leader", 1, 1, []uint64{2, 3, 5}},
		{"follower 2", 2, 1, []uint64{2, 5}},
		{"follower 3", 3, 1, []uint64{3}},
		{"follower 4, leaderless", 4, 0, nil},
	} {
		if got := indexes(nodeEventsFor(events, tc.self, tc.lead)); !slices.Equal(got, tc.want) {
			t.Errorf("%s: logs events %v, want %v", tc.name, got, tc.want)
		}
	}
}

// TestLogReady: a Ready's snapshot, taken or installed, and this node's
// promotion are one info line each; a snapshot's events are history.
func TestLogReady(t *testing.T) {
	c, err := core.New(core.Config{ID: 2}, core.Persisted{})
	if err != nil {
		t.Fatal(err)
	}
	var rec logRecorder
	n := &Node{cfg: Config{ID: 2}, log: rec.logger(), core: c}
	snap := func(index uint64) *raftpb.Snapshot {
		return &raftpb.Snapshot{Data: []byte("state"), Metadata: &raftpb.SnapshotMetadata{Index: proto.Uint64(index)}}
	}
	steps := []struct {
		name string
		rd   core.Ready
		want []string
	}{
		{"installed", core.Ready{Snapshot: snap(40), SnapshotReplacesLog: true},
			[]string{"INFO installed the leader's snapshot index=40 bytes=5"}},
		{"joined as a learner", core.Ready{ConfState: &raftpb.ConfState{Voters: []uint64{1}, Learners: []uint64{2}}}, nil},
		{"other changes", core.Ready{ConfState: &raftpb.ConfState{Voters: []uint64{1}, Learners: []uint64{2, 3}}}, nil},
		{"promoted", core.Ready{ConfState: &raftpb.ConfState{Voters: []uint64{1, 2}, Learners: []uint64{3}}},
			[]string{"INFO promoted to voter"}},
		{"still a voter", core.Ready{ConfState: &raftpb.ConfState{Voters: []uint64{1, 2, 3}}}, nil},
		{"took", core.Ready{Snapshot: snap(90)}, []string{"INFO took a snapshot index=90 bytes=5"}},
	}
	for _, step := range steps {
		n.logReady(step.rd)
		if got := rec.take(); !slices.Equal(got, step.want) {
			t.Fatalf("%s: logged %q, want %q", step.name, got, step.want)
		}
	}
	if n.notes.events != 40 {
		t.Fatalf("events logged up to %d, want the installed snapshot's 40", n.notes.events)
	}
}
