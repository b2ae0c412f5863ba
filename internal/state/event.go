package state

import (
	"strconv"

	"google.golang.org/protobuf/proto"

	apiv1 "github.com/blixard/blixard/api/v1"
)

// MaxEvents bounds the cluster's event log: the oldest go first.
const MaxEvents = 1000

// event appends one event to the log.
func (s *State) event(a at, kind string, node uint64, vm string, task uint64, msg string) {
	s.events = append(s.events, &apiv1.Event{
		Index: a.index, TimeUnixNano: a.nanos, Kind: kind,
		NodeId: node, VmName: vm, TaskId: task, Message: msg,
	})
	if n := len(s.events); n > MaxEvents {
		s.events = append([]*apiv1.Event(nil), s.events[n-MaxEvents:]...)
	}
}

// Events returns copies of the events after index about vm (if not
// empty) and node (if not 0), oldest first, at most limit of the newest
// (0: all).
func (s *State) Events(after uint64, vm string, node uint64, limit int) []*apiv1.Event {
	var out []*apiv1.Event
	for _, e := range s.events {
		if e.GetIndex() <= after || (vm != "" && e.GetVmName() != vm) || (node != 0 && e.GetNodeId() != node) {
			continue
		}
		out = append(out, e)
	}
	if limit > 0 && len(out) > limit {
		out = out[len(out)-limit:]
	}
	for i, e := range out {
		out[i] = proto.CloneOf(e)
	}
	return out
}

func (s *State) checkNoteLeader(op *apiv1.NoteLeaderCommand) *Error {
	if op.GetNodeId() == 0 || op.GetTerm() == 0 {
		return invalid("", "node_id and term must be set")
	}
	if op.GetTerm() <= s.notedTerm {
		return precondition("term", "term %d is noted already", op.GetTerm())
	}
	return nil
}

func (s *State) noteLeader(a at, op *apiv1.NoteLeaderCommand) *apiv1.Response {
	s.notedTerm = op.GetTerm()
	s.event(a, "leader", op.GetNodeId(), "", 0,
		"node "+strconv.FormatUint(op.GetNodeId(), 10)+" leads term "+strconv.FormatUint(op.GetTerm(), 10))
	return &apiv1.Response{}
}

// NotedTerm is the last term whose leader the log noted.
func (s *State) NotedTerm() uint64 { return s.notedTerm }
