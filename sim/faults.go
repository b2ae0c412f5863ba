package sim

import (
	"fmt"

	apiv1 "github.com/blixard/blixard/api/v1"
)

// Crash stops node id at once: its volatile state is gone and its disk keeps
// what was synced plus a PRNG-drawn part of what was not.
func (w *World) Crash(id uint64) {
	w.nodes[id].crash(w.rng.IntN(101))
}

// Restart reopens node id's store and starts a new core from it.
func (w *World) Restart(id uint64) error {
	n := w.nodes[id]
	if n.Up() || n.left {
		return fmt.Errorf("sim: restart node %d: it is up or has left", id)
	}
	if err := n.boot(); err != nil {
		w.fail(err)
		return err
	}
	return nil
}

// Pause freezes node id (as SIGSTOP would): no ticks, and what reaches it
// waits until Resume.
func (w *World) Pause(id uint64) {
	n := w.nodes[id]
	if n.Up() && !n.paused {
		n.paused = true
		w.note("node %d paused", id)
	}
}

// Resume lets a paused node run again, first handling what reached it.
func (w *World) Resume(id uint64) {
	n := w.nodes[id]
	if !n.Up() || !n.paused {
		return
	}
	n.paused = false
	w.note("node %d resumed with %d held deliveries", id, len(n.held))
	held := n.held
	n.held = nil
	for _, fn := range held {
		if n.core == nil {
			return
		}
		fn()
		n.drive()
	}
}

// FailSave makes node id's k-th next non-empty save fail (k >= 1), as a
// failed write or sync at the store's batch boundary. The node stops.
func (w *World) FailSave(id uint64, k int) {
	w.nodes[id].failSaves = k
}

// SetDiskFaultRate makes each of node id's saves fail with probability p.
func (w *World) SetDiskFaultRate(id uint64, p float64) {
	w.nodes[id].diskFaultRate = p
}

// AddNode adds a machine with an empty disk that belongs to no cluster yet:
// it waits for a leader to reach it. Its record (address, capacity) is the
// one a JoinCluster request for it should carry: see JoinRequest.
func (w *World) AddNode(id uint64, role apiv1.NodeRole) (*Node, error) {
	if _, ok := w.nodes[id]; ok || id == 0 {
		return nil, fmt.Errorf("sim: node %d exists", id)
	}
	n, err := newNode(w, id, nil)
	if err != nil {
		return nil, err
	}
	n.cfg.Role = role
	w.nodes[id] = n
	w.ids = append(w.ids, id)
	if err := n.boot(); err != nil {
		return nil, err
	}
	return n, nil
}

// JoinRequest is the JoinCluster request that node id would send.
func (w *World) JoinRequest(id uint64) *apiv1.Request {
	cfg := w.nodes[id].cfg
	return &apiv1.Request{Kind: &apiv1.Request_JoinCluster{JoinCluster: &apiv1.JoinClusterRequest{
		NodeId: id, Address: cfg.Address, Role: cfg.Role, Capacity: cfg.Capacity, Labels: cfg.Labels,
	}}}
}
