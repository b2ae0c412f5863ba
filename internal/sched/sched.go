package sched

import (
	"fmt"

	apiv1 "github.com/blixard/blixard/api/v1"
	"github.com/blixard/blixard/internal/state"
)

// DefaultMaxCandidates is the Options.MaxCandidates the placement controller
// uses: how many feasible nodes one placement ranks. Measured with
// bench/placement on 5,000 nodes (docs/BENCHMARKS.md): binpacking 10,000
// VMs over 128 candidates leaves the nodes it uses 97.9 % full in vCPUs
// against 99.0 % for ranking every node (96.7 % with 64 candidates, 98.4 %
// with 256), while one Place costs about 0.5 µs against 10–25 µs for a
// full scan (0.3 µs with 64, 1 µs with 256; BenchmarkPlace). Each
// placement ranks a different 128 (the scan starts where the key's hash
// says). Clusters of up to 128 nodes are always scanned in full.
const DefaultMaxCandidates = 128

// Options tune a placement pass.
type Options struct {
	// MaxCandidates bounds how many feasible nodes one Place ranks; 0 (or
	// less) means every node. When it bounds the scan, Place starts at a
	// node chosen by the hash of Request.Key and stops at the
	// MaxCandidates-th feasible node, going all the way round only when
	// fewer are feasible.
	MaxCandidates int
}

// Cluster is the placement view of the state for one pass: every node, what
// it offers and what is placed on it, plus what this pass has committed.
// Build one with New, then Place and Commit each workload in turn.
type Cluster struct {
	// maxCandidates is Options.MaxCandidates; 0 means every node.
	// Invariant: maxCandidates >= 0.
	maxCandidates int
	// nodes are sorted by id, unique: what Place reads of every node it
	// scans, kept to one cache line each so that a scan of thousands stays
	// cheap. extras[i] is the rest of nodes[i] (its id among it), read only
	// by the requests that need it.
	// Invariant: len(extras) == len(nodes).
	nodes  []node
	extras []nodeExtra
	// index maps a node id to its place in nodes.
	index map[uint64]int
	// images and features number the image names and features that any
	// node offers, so that nodes are compared by bit masks (for the first
	// 32 of each) rather than by names. maxMinMemoryMiB[i] is the largest
	// minimum memory any node asks for image i.
	images          map[string]int32
	maxMinMemoryMiB []uint64
	features        map[string]int32
}

// node is what Place reads of a node for every request: 64 bytes.
type node struct {
	// limit* are capacity × overcommit (state.NodeLimits); used* is what
	// the state's workloads hold plus what this pass has committed.
	usedVcpus, limitVcpus         uint64
	usedMemoryMiB, limitMemoryMiB uint64
	// recip* are 2^fillShift / limit*, rounded down (0 for a limit of 0),
	// so that ranking multiplies rather than divides.
	recipVcpus, recipMemoryMiB uint64
	// offers has bit i set when the node offers image number i < 32, and
	// bit 32+i when it has feature number i < 32 (its extra lists them
	// all). It is 0 when the node is blocked, so that one test of the
	// bits a request needs also turns a blocked node away.
	offers uint64
	// blocked is why the node takes no new work whatever is asked (its
	// status or its drain flag), or fits.
	blocked reason
}

// nodeExtra is what Place reads of a node only for the requests that ask
// for it.
type nodeExtra struct {
	id uint64
	// usedDiskMiB is what the state's tasks hold plus what this pass has
	// committed; diskMiB the disk capacity, never overcommitted.
	usedDiskMiB, diskMiB uint64
	// offers are every image the node offers.
	offers []offer
	// labels and features are the node record's own (a copy of the
	// state's): read only.
	labels   map[string]string
	features []string
	// groups counts the VMs of each anti-affinity group on the node; nil
	// when it runs none.
	groups map[string]groupCount
}

// offer is one image a node offers.
type offer struct {
	image        int32
	minMemoryMiB uint64
}

// groupCount is how many VMs of one anti-affinity group a node runs, and
// how many of those are hard. Two VMs of a group share a node only when
// both are soft (the state's rule): a hard one's promise holds whichever
// of them comes second.
type groupCount struct{ all, hard uint32 }

// add counts one more VM of group on the node, hard unless soft.
func (x *nodeExtra) add(group string, soft bool) {
	if x.groups == nil {
		x.groups = map[string]groupCount{}
	}
	g := x.groups[group]
	g.all++
	if !soft {
		g.hard++
	}
	x.groups[group] = g
}

// New builds the placement view of st. It reads st only here: see the
// package contract.
func New(st *state.State, opts Options) *Cluster {
	records := st.NodeRecords() // sorted by id, the state's own: read only
	c := &Cluster{
		maxCandidates: max(opts.MaxCandidates, 0),
		nodes:         make([]node, len(records)),
		extras:        make([]nodeExtra, len(records)),
		index:         make(map[uint64]int, len(records)),
		images:        map[string]int32{},
		features:      map[string]int32{},
	}
	nOffers := 0
	for _, n := range records {
		nOffers += len(n.GetImages())
	}
	offers := make([]offer, 0, nOffers) // one backing array for every node's offers
	for i, n := range records {
		id := n.GetId()
		lim := state.NodeLimits(n)
		used := st.Allocated(id)
		nd := node{
			usedMemoryMiB:  used.GetMemoryMib(),
			limitMemoryMiB: lim.MemoryMiB,
			recipVcpus:     recip(lim.Vcpus),
			recipMemoryMiB: recip(lim.MemoryMiB),
			usedVcpus:      uint64(used.GetVcpus()),
			limitVcpus:     lim.Vcpus,
			blocked:        blockedBy(n),
		}
		start := len(offers)
		for _, img := range n.GetImages() {
			imageID, ok := c.images[img.GetName()]
			if !ok {
				imageID = int32(len(c.images))
				c.images[img.GetName()] = imageID
				c.maxMinMemoryMiB = append(c.maxMinMemoryMiB, 0)
			}
			c.maxMinMemoryMiB[imageID] = max(c.maxMinMemoryMiB[imageID], img.GetMinMemoryMib())
			nd.offers |= imageBit(imageID)
			offers = append(offers, offer{image: imageID, minMemoryMiB: img.GetMinMemoryMib()})
		}
		for _, f := range n.GetCapacity().GetFeatures() {
			featureID, ok := c.features[f]
			if !ok {
				featureID = int32(len(c.features))
				c.features[f] = featureID
			}
			nd.offers |= featureBit(featureID)
		}
		if nd.blocked != fits {
			nd.offers = 0
		}
		x := nodeExtra{
			id:          id,
			usedDiskMiB: used.GetDiskMib(),
			diskMiB:     lim.DiskMiB,
			offers:      offers[start:len(offers):len(offers)],
			labels:      n.GetLabels(),
			features:    n.GetCapacity().GetFeatures(),
		}
		for _, v := range st.VmsOn(id) {
			if g := v.GetSpec().GetAntiAffinityGroup(); g != "" {
				x.add(g, v.GetSpec().GetAntiAffinitySoft())
			}
		}
		c.nodes[i], c.extras[i] = nd, x
		c.index[id] = i
	}
	return c
}

// imageBit and featureBit are the bits of node.offers for image and
// feature number i, or 0 when i is outside 0..31.
func imageBit(i int32) uint64 {
	if i < 0 || i >= 32 {
		return 0
	}
	return 1 << i
}

func featureBit(i int32) uint64 { return imageBit(i) << 32 }

// blockedBy is why node n takes no new work at all, or fits: the state's
// nodeSchedulable, status first, then drain.
func blockedBy(n *apiv1.Node) reason {
	switch n.GetStatus() {
	case apiv1.NodeStatus_NODE_STATUS_READY:
	case apiv1.NodeStatus_NODE_STATUS_LEFT:
		return reasonLeft
	case apiv1.NodeStatus_NODE_STATUS_DOWN:
		return reasonDown
	case apiv1.NodeStatus_NODE_STATUS_DISCONNECTED:
		return reasonDisconnected
	default:
		return reasonNotReady
	}
	if n.GetDrain() {
		return reasonDraining
	}
	return fits
}

// Nodes is how many nodes the view holds.
func (c *Cluster) Nodes() int { return len(c.nodes) }

// Commit records r as placed on node, so that the later Place calls of this
// pass see its resources and its anti-affinity group there. It does not
// check that r fits: commit what Place returned. Committing on a node the
// view does not hold is a broken invariant of the caller, and panics.
func (c *Cluster) Commit(node uint64, r Request) {
	i, ok := c.index[node]
	if !ok {
		panic(fmt.Sprintf("sched: Commit of %q on node %d, which is not in the view", r.Key, node))
	}
	nd, x := &c.nodes[i], &c.extras[i]
	nd.usedVcpus += uint64(r.Need.GetVcpus())
	nd.usedMemoryMiB += r.Need.GetMemoryMib()
	x.usedDiskMiB += r.Need.GetDiskMib()
	if r.Group != "" {
		x.add(r.Group, r.GroupSoft)
	}
}
