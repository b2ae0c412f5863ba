package runtime

import (
	"slices"

	apiv1 "github.com/blixard/blixard/api/v1"
	"github.com/blixard/blixard/internal/core"
)

// The drive loop's log of the node's own changes of state: one info line
// per change, none per tick. Node health verdicts, joins, removals and
// drains are the replicated event log's "node" events; the rest is read
// off the Readys and the core.

// changeNotes is what the drive loop last logged. Owned by the Run
// goroutine.
type changeNotes struct {
	// events is the log index up to which the replicated events were
	// considered: those of earlier runs, and those a snapshot brought,
	// are history and not logged.
	events uint64
	// learner: this node was a learner in the last configuration seen.
	learner bool
	// fenced: the fencing lease was last seen lapsed.
	fenced bool
	// bootstrap: the node starts a new cluster, whose first snapshot, in
	// its first Ready, is no news.
	bootstrap bool
}

// logReady logs what a Ready, carried out and advanced, changed of this
// node: a snapshot taken or installed, a promotion to voter, and the node
// events its entries applied.
func (n *Node) logReady(rd core.Ready) {
	if snap := rd.Snapshot; snap != nil {
		index := snap.GetMetadata().GetIndex()
		switch {
		case !rd.SnapshotReplacesLog:
			n.log.Info("took a snapshot", "index", index, "bytes", snapshotBytes(snap))
		case n.notes.bootstrap:
			n.notes.bootstrap = false
			n.log.Debug("wrote the new cluster's first snapshot", "index", index)
		default:
			n.log.Info("installed the leader's snapshot", "index", index, "bytes", snapshotBytes(snap))
		}
		if rd.SnapshotReplacesLog {
			n.notes.events = max(n.notes.events, index)
		}
	}
	if cs := rd.ConfState; cs != nil {
		voter := slices.Contains(cs.GetVoters(), n.cfg.ID)
		if n.notes.learner && voter {
			n.log.Info("promoted to voter")
		}
		n.notes.learner = slices.Contains(cs.GetLearners(), n.cfg.ID)
	}
	if applied := n.core.State().AppliedIndex(); applied > n.notes.events {
		n.logNodeEvents(n.notes.events)
		n.notes.events = applied
	}
}

// logNodeEvents logs the "node" events applied after index: on the
// leader, which decided them, all of them; elsewhere those about this
// node. ("leader" events are the drive loop's "leader changed".)
func (n *Node) logNodeEvents(after uint64) {
	lead, _ := n.core.Leader()
	for _, e := range nodeEventsFor(n.core.State().Events(after, "", 0, 0), n.cfg.ID, lead) {
		n.log.Info("node event", "event", e.GetMessage(), "index", e.GetIndex())
	}
}

// nodeEventsFor are the events node self logs, lead leading: the "node"
// events, all of them on the leader, else those about self.
func nodeEventsFor(events []*apiv1.Event, self, lead uint64) []*apiv1.Event {
	var out []*apiv1.Event
	for _, e := range events {
		if e.GetKind() == "node" && (lead == self || e.GetNodeId() == self) {
			out = append(out, e)
		}
	}
	return out
}

// logFence logs when the node's fencing lease lapses and when it holds
// one again.
func (n *Node) logFence() {
	fenced := n.core.Fenced()
	if fenced == n.notes.fenced {
		return
	}
	n.notes.fenced = fenced
	if fenced {
		n.log.Warn("fencing lease lapsed: no quorum heard; stopping VMs")
	} else {
		n.log.Info("fencing lease regained")
	}
}
