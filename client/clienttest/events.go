package clienttest

import (
	"context"

	"google.golang.org/protobuf/proto"

	apiv1 "github.com/blixard/blixard/api/v1"
)

// AddEvents appends events to the node's event log, as the cluster would.
func (n *Node) AddEvents(events ...*apiv1.Event) {
	n.mu.Lock()
	defer n.mu.Unlock()
	for _, e := range events {
		n.events = append(n.events, proto.CloneOf(e))
	}
}

// ListEvents answers from the events AddEvents gave, filtered as a node
// filters them.
func (s clusterService) ListEvents(_ context.Context, r *apiv1.ListEventsRequest) (*apiv1.ListEventsResponse, error) {
	return read(s.n, func() (*apiv1.ListEventsResponse, error) {
		var out []*apiv1.Event
		for _, e := range s.n.events {
			if e.GetIndex() <= r.GetAfterIndex() || (r.GetVmName() != "" && e.GetVmName() != r.GetVmName()) ||
				(r.GetNodeId() != 0 && e.GetNodeId() != r.GetNodeId()) {
				continue
			}
			out = append(out, proto.CloneOf(e))
		}
		if l := int(r.GetLimit()); l > 0 && len(out) > l {
			out = out[len(out)-l:]
		}
		return &apiv1.ListEventsResponse{Events: out, AppliedIndex: s.n.index}, nil
	})
}
