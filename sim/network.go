package sim

import (
	"fmt"
	"time"

	"go.etcd.io/raft/v3/raftpb"
	"google.golang.org/protobuf/proto"

	apiv1 "github.com/blixard/blixard/api/v1"
)

// Network is the simulated network between nodes, and between clients and
// nodes. Every message is marshalled on send and unmarshalled on delivery,
// so nothing is shared between nodes but bytes.
type Network struct {
	w *World
	// MinLatency and MaxLatency bound each message's delay.
	MinLatency, MaxLatency time.Duration
	// LossRate, DuplicateRate, ReorderRate: per-message probabilities.
	LossRate, DuplicateRate, ReorderRate float64
	ReorderDelay                         time.Duration

	clogged map[uint64]bool
	// links[[2]uint64{from, to}] drops traffic from from to to.
	links map[[2]uint64]bool
	// group is each node's partition group; nil when there is no partition.
	group map[uint64]int

	sent, dropped, duplicated uint64
}

func newNetwork(w *World) *Network {
	return &Network{
		w:             w,
		MinLatency:    w.opts.MinLatency,
		MaxLatency:    w.opts.MaxLatency,
		LossRate:      w.opts.LossRate,
		DuplicateRate: w.opts.DuplicateRate,
		ReorderRate:   w.opts.ReorderRate,
		ReorderDelay:  w.opts.ReorderDelay,
		clogged:       map[uint64]bool{},
		links:         map[[2]uint64]bool{},
	}
}

// ClogNode drops all traffic to and from node id (clients' included).
func (n *Network) ClogNode(id uint64) {
	n.clogged[id] = true
	n.w.note("net: clog node %d", id)
}

// UnclogNode undoes ClogNode.
func (n *Network) UnclogNode(id uint64) {
	delete(n.clogged, id)
	n.w.note("net: unclog node %d", id)
}

// ClogLink drops traffic from a to b; both directions when both is set.
func (n *Network) ClogLink(a, b uint64, both bool) {
	n.links[[2]uint64{a, b}] = true
	if both {
		n.links[[2]uint64{b, a}] = true
	}
	n.w.note("net: clog link %d->%d (both ways: %v)", a, b, both)
}

// UnclogLink undoes ClogLink.
func (n *Network) UnclogLink(a, b uint64, both bool) {
	delete(n.links, [2]uint64{a, b})
	if both {
		delete(n.links, [2]uint64{b, a})
	}
	n.w.note("net: unclog link %d->%d (both ways: %v)", a, b, both)
}

// Partition splits the nodes into groups that cannot reach each other.
// Nodes named in no group form one more group. Clients reach every node.
func (n *Network) Partition(groups ...[]uint64) {
	n.group = map[uint64]int{}
	for _, id := range n.w.ids {
		n.group[id] = len(groups)
	}
	for g, ids := range groups {
		for _, id := range ids {
			n.group[id] = g
		}
	}
	n.w.note("net: partition %v", groups)
}

// Heal removes partitions, clogged nodes and clogged links.
func (n *Network) Heal() {
	n.group = nil
	clear(n.clogged)
	clear(n.links)
	n.w.note("net: heal")
}

// Stats are the network's counters: messages sent, dropped and duplicated.
func (n *Network) Stats() (sent, dropped, duplicated uint64) {
	return n.sent, n.dropped, n.duplicated
}

// blocked reports whether traffic from a to b is cut now. Ids of clients
// (which are not nodes) are blocked only by clogs of the node they talk to.
func (n *Network) blocked(a, b uint64) bool {
	if n.clogged[a] || n.clogged[b] || n.links[[2]uint64{a, b}] {
		return true
	}
	if n.group != nil {
		ga, aNode := n.group[a]
		gb, bNode := n.group[b]
		if aNode && bNode && ga != gb {
			return true
		}
	}
	return false
}

// cutOff reports whether node id can reach none of the other nodes.
func (n *Network) cutOff(id uint64) bool {
	for _, other := range n.w.ids {
		if other != id && !n.blocked(id, other) {
			return false
		}
	}
	return len(n.w.ids) > 1
}

// transmit decides the fate of one message from a to b: lost, delayed,
// perhaps duplicated. deliver runs at each arrival unless the path is cut
// by then.
func (n *Network) transmit(a, b uint64, deliver func()) {
	n.sent++
	if n.blocked(a, b) || (n.LossRate > 0 && n.w.rng.Float64() < n.LossRate) {
		n.dropped++
		return
	}
	copies := 1
	if n.DuplicateRate > 0 && n.w.rng.Float64() < n.DuplicateRate {
		copies = 2
		n.duplicated++
	}
	for i := 0; i < copies; i++ {
		delay := n.MinLatency
		if span := n.MaxLatency - n.MinLatency; span > 0 {
			delay += time.Duration(n.w.rng.Int64N(int64(span) + 1))
		}
		if n.ReorderRate > 0 && n.w.rng.Float64() < n.ReorderRate {
			delay += time.Duration(n.w.rng.Int64N(int64(n.ReorderDelay) + 1))
		}
		n.w.at(n.w.now+delay, func() {
			if n.blocked(a, b) {
				n.dropped++
				return
			}
			deliver()
		})
	}
}

// sendRaft carries a Raft message from node from to its recipient.
func (n *Network) sendRaft(from *Node, m *raftpb.Message) {
	to := m.GetTo()
	dst, ok := n.w.nodes[to]
	if !ok {
		n.w.fail(fmt.Errorf("node %d sent %s to unknown node %d", from.id, m.GetType(), to))
		return
	}
	b, err := deterministic.Marshal(m)
	if err != nil {
		n.w.fail(fmt.Errorf("node %d: marshal %s: %w", from.id, m.GetType(), err))
		return
	}
	isSnap := m.GetType() == raftpb.MessageType_MsgSnap
	fromInc, dstInc := from.incarnation, dst.incarnation
	delivered := false
	if isSnap {
		// The sender learns a snapshot's fate once it must have arrived, as
		// a transport learns when its stream ends; without word it would
		// wait on the snapshot for good.
		n.w.at(n.w.now+n.MaxLatency+n.ReorderDelay+time.Millisecond, func() {
			from.deliver(fromInc, func() { from.core.ReportSnapshot(to, delivered) })
		})
	}
	n.transmit(from.id, to, func() {
		dst.deliver(dstInc, func() {
			var got raftpb.Message
			if err := proto.Unmarshal(b, &got); err != nil {
				n.w.fail(fmt.Errorf("node %d: unmarshal message: %w", to, err))
				return
			}
			n.w.hashBytes(1, b)
			if dst.core.State().Removed(from.id) {
				// A peer refuses a removed node's traffic and tells it so.
				from.leave(fmt.Sprintf("node %d refused its message", to))
				return
			}
			n.w.tracef("deliver %s %d->%d term %d index %d entries %d", got.GetType(), from.id, to, got.GetTerm(), got.GetIndex(), len(got.GetEntries()))
			dst.step(&got)
			if isSnap {
				dst.snapshotsReceived++
			}
			delivered = true
		})
	})
}

// sendRequest carries a client's request to node to.
func (n *Network) sendRequest(c *Client, to uint64, attempt uint64, req *apiv1.Request) {
	b, err := deterministic.Marshal(req)
	if err != nil {
		n.w.fail(fmt.Errorf("client %d: marshal request: %w", c.id, err))
		return
	}
	dst := n.w.nodes[to]
	inc := dst.incarnation
	n.transmit(c.id, to, func() {
		dst.deliver(inc, func() {
			var got apiv1.Request
			if err := proto.Unmarshal(b, &got); err != nil {
				n.w.fail(fmt.Errorf("node %d: unmarshal request: %w", to, err))
				return
			}
			n.w.hashBytes(2, b)
			n.w.tracef("client %d -> node %d: request (attempt %d)", c.id, to, attempt)
			dst.request(c.id, attempt, &got)
		})
	})
}

// sendResponse carries a node's answer back to its client.
func (n *Network) sendResponse(from *Node, rt route, resp *apiv1.Response) {
	c := n.w.client(rt.client)
	if c == nil {
		return
	}
	b, err := deterministic.Marshal(resp)
	if err != nil {
		n.w.fail(fmt.Errorf("node %d: marshal response: %w", from.id, err))
		return
	}
	n.transmit(from.id, c.id, func() {
		var got apiv1.Response
		if err := proto.Unmarshal(b, &got); err != nil {
			n.w.fail(fmt.Errorf("client %d: unmarshal response: %w", c.id, err))
			return
		}
		n.w.hashBytes(3, b)
		n.w.tracef("node %d -> client %d: %s (attempt %d)", from.id, c.id, respSummary{&got}, rt.attempt)
		c.onResponse(from.id, rt.attempt, &got)
	})
}

// respSummary names a response in one short phrase when the trace is read.
type respSummary struct{ r *apiv1.Response }

func (s respSummary) String() string { return summarize(s.r) }

// summarize names a response in one short phrase.
func summarize(r *apiv1.Response) string {
	if e := r.GetError(); e != nil {
		return e.GetCode().String()
	}
	if r.GetKind() == nil {
		return "ok"
	}
	return fmt.Sprintf("ok %T", r.GetKind())
}
