package core

import (
	"fmt"

	"go.etcd.io/raft/v3/raftpb"
	"google.golang.org/protobuf/proto"

	apiv1 "github.com/blixard/blixard/api/v1"
	"github.com/blixard/blixard/internal/state"
)

// applyEntry applies one committed entry to the state machine and answers
// the writes that were waiting for it.
func (n *Node) applyEntry(e *raftpb.Entry) {
	index := e.GetIndex()
	if index <= n.st.AppliedIndex() {
		// Already in the state (the snapshot it was restored from covers it).
		return
	}
	switch e.GetType() {
	case raftpb.EntryType_EntryNormal:
		if len(e.GetData()) == 0 {
			n.st.ApplyEmpty(index) // a new leader's empty entry
			return
		}
		cmd := &apiv1.Command{}
		if err := proto.Unmarshal(e.GetData(), cmd); err != nil {
			// Every node sees the same bytes and skips them alike.
			n.cfg.Logger.Errorf("core: entry %d does not decode, skipped: %v", index, err)
			n.st.ApplyEmpty(index)
			return
		}
		mine, placed := n.beforeApply(index, cmd)
		resp, err := n.st.Apply(index, cmd)
		if mine {
			n.afterApply(placed, err)
		}
		n.answerWaiters(cmd.GetClientRequestId(), resp)
	case raftpb.EntryType_EntryConfChange, raftpb.EntryType_EntryConfChangeV2:
		n.applyConfChange(e)
	default:
		n.st.ApplyEmpty(index)
	}
}

// installSnapshot replaces the state machine with the leader's snapshot.
func (n *Node) installSnapshot(snap *raftpb.Snapshot) error {
	st, err := state.Restore(snap.GetData())
	if err != nil {
		return fmt.Errorf("core: snapshot at index %d from the leader: %w", snap.GetMetadata().GetIndex(), err)
	}
	if st.AppliedIndex() != snap.GetMetadata().GetIndex() {
		return fmt.Errorf("core: snapshot at index %d holds state applied to %d", snap.GetMetadata().GetIndex(), st.AppliedIndex())
	}
	if err := n.log.ApplySnapshot(snap); err != nil {
		return fmt.Errorf("core: install snapshot at index %d: %w", snap.GetMetadata().GetIndex(), err)
	}
	n.st = st
	n.confState = proto.CloneOf(snap.GetMetadata().GetConfState())
	if n.confState == nil {
		n.confState = &raftpb.ConfState{}
	}
	n.confToSave = true
	n.lastSnapshot = st.AppliedIndex()
	return nil
}

// maybeSnapshot snapshots the state every Config.SnapshotEntries applied
// entries and compacts the in-memory log behind it.
func (n *Node) maybeSnapshot() error {
	applied := n.st.AppliedIndex()
	if applied-n.lastSnapshot < n.cfg.SnapshotEntries && !(n.snapshotWanted && applied > n.lastSnapshot) {
		return nil
	}
	n.snapshotWanted = false
	data, err := n.st.Snapshot()
	if err != nil {
		return fmt.Errorf("core: snapshot at index %d: %w", applied, err)
	}
	snap, err := n.log.CreateSnapshot(applied, n.confState, data)
	if err != nil {
		return fmt.Errorf("core: snapshot at index %d: %w", applied, err)
	}
	n.lastSnapshot = applied
	n.snapToSave = snap
	if applied > n.cfg.TrailingEntries {
		first, _ := n.log.FirstIndex()
		if compact := applied - n.cfg.TrailingEntries; compact > first {
			if err := n.log.Compact(compact); err != nil {
				return fmt.Errorf("core: compact log to %d: %w", compact, err)
			}
		}
	}
	return nil
}
