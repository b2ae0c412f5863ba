package sim

import (
	"crypto/sha256"
	"fmt"
	"slices"

	"go.etcd.io/raft/v3"
	"go.etcd.io/raft/v3/raftpb"
	"google.golang.org/protobuf/proto"

	apiv1 "github.com/blixard/blixard/api/v1"
	"github.com/blixard/blixard/internal/core"
	"github.com/blixard/blixard/internal/state"
)

// Checker is a property that must hold at every step of every run. Each one
// lives outside the nodes and observes them; each has a test that feeds it a
// forged violation.
type Checker interface {
	Name() string
}

// checkers are the always-on checkers of a world.
type checkers struct {
	election   *ElectionSafety
	logMatch   *LogMatching
	smSafety   *StateMachineSafety
	durability *Durability
	// The workload checkers (check_workloads.go); committed is nil
	// without Options.Workloads.
	vmOnce    VMOnce
	capacity  PhysicalCapacity
	committed *CommittedCapacity
	liveness  *VMLiveness
}

func defaultCheckers(w *World) []Checker {
	w.chk = checkers{
		election:   NewElectionSafety(),
		logMatch:   NewLogMatching(),
		smSafety:   NewStateMachineSafety(),
		durability: NewDurability(),
		liveness:   &VMLiveness{},
	}
	return []Checker{w.chk.election, w.chk.logMatch, w.chk.smSafety, w.chk.durability}
}

// startWorkloadCheckers turns the workload checkers on, from the state the
// nodes booted with.
func (w *World) startWorkloadCheckers() error {
	b, err := w.nodes[w.ids[0]].core.State().Snapshot()
	if err != nil {
		return err
	}
	initial, err := state.Restore(b)
	if err != nil {
		return err
	}
	w.chk.committed = NewCommittedCapacity(initial)
	w.checkers = append(w.checkers, w.chk.vmOnce, w.chk.capacity, w.chk.committed, w.chk.liveness)
	return nil
}

// violation wraps a checker's words.
func violation(c Checker, format string, args ...any) error {
	return fmt.Errorf("checker %s: %s", c.Name(), fmt.Sprintf(format, args...))
}

// checkNode runs the checkers that look at a node's role after every
// event it handles (only a node that handled an event can have changed).
func (w *World) checkNode(n *Node) {
	if n.core == nil {
		return
	}
	bs := n.core.BasicStatus()
	if bs.RaftState == raft.StateLeader {
		if err := w.chk.election.Observe(bs.GetTerm(), n.id); err != nil {
			w.fail(err)
		}
	}
}

// observePersist feeds the log-matching checker what a node persisted, and
// the trace hash the batch.
func (w *World) observePersist(n *Node, rd core.Ready) {
	for _, e := range rd.Entries {
		b, err := deterministic.Marshal(e)
		if err != nil {
			w.fail(fmt.Errorf("node %d: marshal entry: %w", n.id, err))
			return
		}
		w.hashBytes(4, b)
		if err := w.chk.logMatch.Observe(n.id, e); err != nil {
			w.fail(err)
			return
		}
	}
	if rd.HardState != nil {
		b, err := deterministic.Marshal(rd.HardState)
		if err != nil {
			w.fail(fmt.Errorf("node %d: marshal hard state: %w", n.id, err))
			return
		}
		w.hashBytes(7, b)
		w.tracef("node %d persisted term %d vote %d commit %d, %d entries", n.id, rd.HardState.GetTerm(), rd.HardState.GetVote(), rd.HardState.GetCommit(), len(rd.Entries))
	}
	if rd.Snapshot != nil {
		w.tracef("node %d persisted snapshot at %d (replaces log: %v)", n.id, rd.Snapshot.GetMetadata().GetIndex(), rd.SnapshotReplacesLog)
		w.hashBytes(5, rd.Snapshot.GetData())
	}
}

// observeApply feeds the state-machine and durability checkers what a node
// has just applied.
func (w *World) observeApply(n *Node, entries []*raftpb.Entry) {
	if n.core == nil {
		return
	}
	for _, e := range entries {
		fresh, err := w.chk.smSafety.Observe(n.id, e)
		if err != nil {
			w.fail(err)
			return
		}
		if fresh {
			if key := entryKey(e); key != "" {
				w.chk.durability.Applied(key, e.GetIndex())
			}
			if w.chk.committed != nil {
				if err := w.chk.committed.Apply(e); err != nil {
					w.fail(err)
					return
				}
			}
		}
	}
	st := n.core.State()
	applied := st.AppliedIndex()
	if len(entries) > 0 {
		var buf [16]byte
		for i := 0; i < 8; i++ {
			buf[i] = byte(n.id >> (56 - 8*i))
			buf[8+i] = byte(applied >> (56 - 8*i))
		}
		w.hashBytes(6, buf[:])
	}
	if err := w.chk.durability.Observe(n.id, st); err != nil {
		w.fail(err)
		return
	}
	if w.chk.committed != nil {
		if err := w.chk.committed.Observe(n.id, st); err != nil {
			w.fail(err)
		}
	}
}

// entryKey is the client request id an entry carries: a command's, or that
// of a membership change's context.
func entryKey(e *raftpb.Entry) string {
	data := e.GetData()
	switch e.GetType() {
	case raftpb.EntryType_EntryConfChange:
		var cc raftpb.ConfChange
		if proto.Unmarshal(data, &cc) != nil {
			return ""
		}
		data = cc.GetContext()
	case raftpb.EntryType_EntryConfChangeV2:
		var cc raftpb.ConfChangeV2
		if proto.Unmarshal(data, &cc) != nil {
			return ""
		}
		data = cc.GetContext()
	}
	if len(data) == 0 {
		return ""
	}
	var cmd apiv1.Command
	if proto.Unmarshal(data, &cmd) != nil {
		return ""
	}
	return cmd.GetClientRequestId()
}

// onAck records an acknowledged write for the durability checker and checks
// every node that has already applied it.
func (w *World) onAck(op *Op) {
	if err := w.chk.durability.Ack(op.Key, op.Resp); err != nil {
		w.fail(err)
		return
	}
	for _, id := range w.ids {
		if n := w.nodes[id]; n.core != nil {
			if err := w.chk.durability.Observe(id, n.core.State()); err != nil {
				w.fail(err)
				return
			}
		}
	}
}

// ElectionSafety: at most one leader per term.
type ElectionSafety struct {
	leaders map[uint64]uint64 // term -> leader
}

// NewElectionSafety returns the checker.
func NewElectionSafety() *ElectionSafety { return &ElectionSafety{leaders: map[uint64]uint64{}} }

// Name names the checker.
func (*ElectionSafety) Name() string { return "election-safety" }

// Observe records that node id leads in term.
func (c *ElectionSafety) Observe(term, id uint64) error {
	if prev, ok := c.leaders[term]; ok && prev != id {
		return violation(c, "nodes %d and %d both lead term %d", prev, id, term)
	}
	c.leaders[term] = id
	return nil
}

// LogMatching: two logs that hold an entry with the same index and term
// hold the same entry. (With raft's append rule, that makes the logs equal
// up to that index; state-machine safety checks the committed prefix.)
type LogMatching struct {
	seen map[[2]uint64][32]byte // {index, term} -> hash of the entry
	by   map[[2]uint64]uint64   // {index, term} -> first node seen with it
}

// NewLogMatching returns the checker.
func NewLogMatching() *LogMatching {
	return &LogMatching{seen: map[[2]uint64][32]byte{}, by: map[[2]uint64]uint64{}}
}

// Name names the checker.
func (*LogMatching) Name() string { return "log-matching" }

// Observe records that node holds entry e in its log.
func (c *LogMatching) Observe(node uint64, e *raftpb.Entry) error {
	key := [2]uint64{e.GetIndex(), e.GetTerm()}
	h := entryHash(e)
	if prev, ok := c.seen[key]; ok {
		if prev != h {
			return violation(c, "nodes %d and %d hold different entries at index %d term %d", c.by[key], node, e.GetIndex(), e.GetTerm())
		}
		return nil
	}
	c.seen[key] = h
	c.by[key] = node
	return nil
}

// StateMachineSafety: every node applies the same entry at each index, so
// every node's applied sequence is a prefix of the longest.
type StateMachineSafety struct {
	applied map[uint64][32]byte // index -> hash of the entry applied there
	by      map[uint64]uint64   // index -> first node that applied it
	last    map[uint64]uint64   // node -> last index it applied through entries
}

// NewStateMachineSafety returns the checker.
func NewStateMachineSafety() *StateMachineSafety {
	return &StateMachineSafety{applied: map[uint64][32]byte{}, by: map[uint64]uint64{}, last: map[uint64]uint64{}}
}

// Name names the checker.
func (*StateMachineSafety) Name() string { return "state-machine-safety" }

// Observe records that node applied e; fresh reports whether no node had
// applied that index before.
func (c *StateMachineSafety) Observe(node uint64, e *raftpb.Entry) (fresh bool, err error) {
	h := entryHash(e)
	idx := e.GetIndex()
	if prev, ok := c.applied[idx]; ok {
		if prev != h {
			return false, violation(c, "node %d applied a different entry at index %d than node %d did", node, idx, c.by[idx])
		}
		return false, nil
	}
	c.applied[idx] = h
	c.by[idx] = node
	return true, nil
}

func entryHash(e *raftpb.Entry) [32]byte {
	hs := sha256.New()
	var buf [9]byte
	t := e.GetTerm()
	for i := 0; i < 8; i++ {
		buf[i] = byte(t >> (56 - 8*i))
	}
	buf[8] = byte(e.GetType())
	hs.Write(buf[:])
	hs.Write(e.GetData())
	var out [32]byte
	copy(out[:], hs.Sum(nil))
	return out
}

// Durability: every acknowledged write is in the state of every node that
// has applied its index, with the response its client was given.
type Durability struct {
	index   map[string]uint64 // client request id -> index it first applied at
	acked   map[string]*apiv1.Response
	byIndex []ackAt // acknowledged writes, sorted by index
	checked map[uint64]uint64
}

type ackAt struct {
	index uint64
	key   string
}

// NewDurability returns the checker.
func NewDurability() *Durability {
	return &Durability{index: map[string]uint64{}, acked: map[string]*apiv1.Response{}, checked: map[uint64]uint64{}}
}

// Name names the checker.
func (*Durability) Name() string { return "durability" }

// Applied records the index at which the write with key was first applied.
func (c *Durability) Applied(key string, index uint64) {
	if _, ok := c.index[key]; !ok {
		c.index[key] = index
	}
}

// Ack records that the write with key was acknowledged with resp.
func (c *Durability) Ack(key string, resp *apiv1.Response) error {
	idx, ok := c.index[key]
	if !ok {
		return violation(c, "write %q was acknowledged but no node has applied it", key)
	}
	if _, dup := c.acked[key]; dup {
		return nil
	}
	c.acked[key] = resp
	at := ackAt{index: idx, key: key}
	i, _ := slices.BinarySearchFunc(c.byIndex, at, func(a, b ackAt) int {
		if a.index != b.index {
			if a.index < b.index {
				return -1
			}
			return 1
		}
		if a.key < b.key {
			return -1
		} else if a.key > b.key {
			return 1
		}
		return 0
	})
	c.byIndex = slices.Insert(c.byIndex, i, at)
	// Nodes that already applied it are checked again below.
	for node, upTo := range c.checked {
		if upTo >= idx {
			c.checked[node] = idx - 1
		}
	}
	return nil
}

// Observe checks node's state for every acknowledged write it has applied
// since the last call.
func (c *Durability) Observe(node uint64, st *state.State) error {
	applied := st.AppliedIndex()
	from := c.checked[node]
	if applied < from {
		from = 0 // restarted from an older snapshot: check again
	}
	i, _ := slices.BinarySearchFunc(c.byIndex, from+1, func(a ackAt, idx uint64) int {
		if a.index < idx {
			return -1
		}
		if a.index > idx {
			return 1
		}
		return 0
	})
	for ; i < len(c.byIndex) && c.byIndex[i].index <= applied; i++ {
		a := c.byIndex[i]
		got, ok := st.Response(a.key)
		if !ok {
			if st.RequestRecords() >= state.MaxRequestRecords {
				continue // evicted: no longer checkable
			}
			return violation(c, "node %d applied index %d but has no record of acknowledged write %q (index %d)", node, applied, a.key, a.index)
		}
		if !proto.Equal(got, c.acked[a.key]) {
			return violation(c, "node %d records write %q as %v, its client was told %v", node, a.key, got, c.acked[a.key])
		}
	}
	c.checked[node] = applied
	return nil
}
