package core

import (
	"slices"

	"go.etcd.io/raft/v3"
	"go.etcd.io/raft/v3/raftpb"
)

// logStorage is the in-memory raft.Storage the core hands to raft: etcd's
// MemoryStorage, except that it will not offer a follower a snapshot whose
// membership leaves out a current member. A node that joined after the last
// snapshot could not restore it (raft refuses a snapshot that does not name
// it) and would be sent it again for ever; instead raft is told to wait, and
// the core takes a fresh snapshot at its next Advance.
type logStorage struct {
	*raft.MemoryStorage
	n *Node
}

func (s logStorage) Snapshot() (*raftpb.Snapshot, error) {
	snap, err := s.MemoryStorage.Snapshot()
	if err != nil {
		return snap, err
	}
	have := snap.GetMetadata().GetConfState()
	for _, id := range append(slices.Clone(s.n.confState.GetVoters()), s.n.confState.GetLearners()...) {
		if !slices.Contains(have.GetVoters(), id) && !slices.Contains(have.GetLearners(), id) {
			s.n.snapshotWanted = true
			return nil, raft.ErrSnapshotTemporarilyUnavailable
		}
	}
	return snap, nil
}
