package sched

import (
	"slices"

	"github.com/blixard/blixard/internal/state"
)

// query is a Request resolved against the view for one Place.
type query struct {
	// image numbers the request's image in Cluster.images; -1 when no node
	// offers it. imageBit is its bit in node.offers (0 when there is none).
	image    int32
	imageBit uint64
	// vcpus, memoryMiB, diskMiB and features are the request's Need;
	// featureBits are the bits of its features in node.offers (those that
	// have one).
	vcpus, memoryMiB, diskMiB uint64
	features                  []string
	featureBits               uint64
	constraints               map[string]string
	group                     string
	hardGroup, softGroup      bool
	spread                    bool
	// minMemory: some node's build of the image needs more memory than
	// the request has, so the node's offers must be read.
	minMemory bool
	// featuresByName: a feature has no bit (it is numbered 32 or more, or
	// no node has it), so the features are compared by name.
	featuresByName bool
	// slow: the request needs more than status, image bit, room and
	// feature bits: check rather than scanFast.
	slow bool
}

func (c *Cluster) query(r *Request) query {
	q := query{
		image:       -1,
		vcpus:       uint64(r.Need.GetVcpus()),
		memoryMiB:   r.Need.GetMemoryMib(),
		diskMiB:     r.Need.GetDiskMib(),
		features:    r.Need.GetFeatures(),
		constraints: r.Constraints,
		group:       r.Group,
		hardGroup:   r.Group != "" && !r.GroupSoft,
		softGroup:   r.Group != "" && r.GroupSoft,
		spread:      r.spread(),
	}
	if id, ok := c.images[state.ImageOf(r.Image)]; ok {
		q.image, q.imageBit = id, imageBit(id)
		q.minMemory = q.memoryMiB < c.maxMinMemoryMiB[id]
	}
	for _, f := range q.features {
		id, ok := c.features[f]
		if b := featureBit(id); ok && b != 0 {
			q.featureBits |= b
		} else {
			q.featuresByName = true
		}
	}
	q.slow = q.imageBit == 0 || q.minMemory || len(q.constraints) > 0 || q.group != "" ||
		q.diskMiB > 0 || q.featuresByName
	return q
}

// Place returns the best feasible node for r, or an *Unplaceable saying why
// no node can take it. It changes nothing; Commit the node it returns.
func (c *Cluster) Place(r Request) (uint64, error) {
	n := len(c.nodes)
	if n == 0 {
		return 0, &Unplaceable{Reason: "no nodes"}
	}
	q := c.query(&r)
	limit, start := n, 0
	if c.maxCandidates > 0 && c.maxCandidates < n {
		limit = c.maxCandidates
		start = int(fnv1a(r.Key) % uint64(n))
	}
	var tally [numReasons]int
	var best int
	if q.slow {
		best = c.scan(&q, &tally, start, limit)
	} else {
		best = c.scanFast(&q, &tally, start, limit)
	}
	if best < 0 {
		// Every node was checked: a scan stops early only on a feasible one.
		return 0, &Unplaceable{Reason: explain(&r, &tally, n)}
	}
	return c.extras[best].id, nil
}

// scan checks the nodes from index start round the ring until it has seen
// limit feasible ones, and returns the index of the best, or -1 when none
// is feasible. It counts the first failed check of each infeasible node in
// tally.
func (c *Cluster) scan(q *query, tally *[numReasons]int, start, limit int) int {
	n := len(c.nodes)
	best := -1
	var bestFill uint64
	var bestGroup uint32
	feasible := 0
	for i := 0; i < n && feasible < limit; i++ {
		j := start + i
		if j >= n {
			j -= n
		}
		nd := &c.nodes[j]
		if nd.blocked != fits {
			tally[nd.blocked]++
			continue
		}
		why, g := q.check(nd, &c.extras[j])
		if why != fits {
			tally[why]++
			continue
		}
		feasible++
		f := q.fill(nd)
		if !q.softGroup {
			g.all = 0 // only a soft group ranks by its count
		}
		if best < 0 || q.beats(g.all, f, j, bestGroup, bestFill, best) {
			best, bestFill, bestGroup = j, f, g.all
		}
	}
	return best
}

// check is why node nd (not blocked) cannot take q, or fits, and how many
// VMs of q's group it runs. The order is the state's (checkVmOnNode,
// canPlace), so that the reason is the one the state would give first.
func (q *query) check(nd *node, x *nodeExtra) (reason, groupCount) {
	if q.imageBit != 0 && !q.minMemory {
		if nd.offers&q.imageBit == 0 {
			return reasonNoImage, groupCount{}
		}
	} else if why := q.checkOffers(x); why != fits {
		return why, groupCount{}
	}
	// A yes/no over the constraints: iteration order cannot leak. (The
	// length test spares starting an iterator over no constraints.)
	if len(q.constraints) > 0 {
		for k, want := range q.constraints {
			if got, ok := x.labels[k]; !ok || got != want {
				return reasonLabels, groupCount{}
			}
		}
	}
	var g groupCount
	if q.group != "" && x.groups != nil {
		// A hard request shares a node with no VM of its group; a soft one
		// with no hard one.
		if g = x.groups[q.group]; g.hard > 0 || (q.hardGroup && g.all > 0) {
			return reasonGroup, g
		}
	}
	if nd.usedVcpus+q.vcpus > nd.limitVcpus {
		return reasonVcpus, g
	}
	if nd.usedMemoryMiB+q.memoryMiB > nd.limitMemoryMiB {
		return reasonMemory, g
	}
	if q.diskMiB > 0 && x.usedDiskMiB+q.diskMiB > x.diskMiB {
		return reasonDisk, g
	}
	if !q.hasFeatures(nd, x) {
		return reasonFeatures, g
	}
	return fits, g
}

// checkOffers is the image check by the node's list of offers: the node
// must offer q's image, and q must have the memory the node's build needs.
func (q *query) checkOffers(x *nodeExtra) reason {
	for _, o := range x.offers {
		if o.image == q.image {
			if q.memoryMiB < o.minMemoryMiB {
				return reasonImageMemory
			}
			return fits
		}
	}
	return reasonNoImage
}

// hasFeatures reports whether the node has every feature q needs.
func (q *query) hasFeatures(nd *node, x *nodeExtra) bool {
	if !q.featuresByName {
		return nd.offers&q.featureBits == q.featureBits
	}
	for _, f := range q.features {
		if !slices.Contains(x.features, f) {
			return false
		}
	}
	return true
}

// scanFast is scan for a request that is not slow: the common case, and
// the one a full scan of thousands of nodes must make cheap. It reads only
// nodes, never extras.
func (c *Cluster) scanFast(q *query, tally *[numReasons]int, start, limit int) int {
	s := fastScan{q: q, tally: tally, limit: limit, best: -1}
	if q.spread {
		s.flip = ^uint64(0)
	}
	// Round the ring: from start to the end, then from the beginning.
	s.run(c.nodes[start:], start)
	if s.feasible < limit {
		s.run(c.nodes[:start], 0)
	}
	return s.best
}

// fastScan is the state of a scanFast across the two halves of the ring.
type fastScan struct {
	q     *query
	tally *[numReasons]int
	// flip turns a fill into a key ranked higher first: 0 for binpack,
	// all ones (the complement) for spread.
	flip            uint64
	limit, feasible int
	best            int
	bestKey         uint64
}

// run scans nodes, which start at index base of the view: check and beats
// folded for a request that is not slow. One test of node.offers covers
// status, image and features, one sign test both limits; only a node that
// fails them is looked at again, to tally why.
func (s *fastScan) run(nodes []node, base int) {
	q, tally, flip := s.q, s.tally, s.flip
	needBits, needVcpus, needMemory := q.imageBit|q.featureBits, q.vcpus, q.memoryMiB
	best, bestKey, feasible, limit := s.best, s.bestKey, s.feasible, s.limit
	for k := range nodes {
		if feasible >= limit {
			break
		}
		nd := &nodes[k]
		vcpus, memory := nd.usedVcpus+needVcpus, nd.usedMemoryMiB+needMemory
		// Sums and limits are far below 2^63: a limit short of its sum
		// leaves a negative difference.
		if nd.offers&needBits != needBits || int64(nd.limitVcpus-vcpus)|int64(nd.limitMemoryMiB-memory) < 0 {
			tally[q.whyNot(nd, vcpus, memory)]++
			continue
		}
		feasible++
		// The fill, as fill computes it. The first half of the ring has
		// the higher indexes, so a tie goes to the lower index.
		key := (vcpus*nd.recipVcpus + memory*nd.recipMemoryMiB) ^ flip
		if j := base + k; best < 0 || key > bestKey || (key == bestKey && j < best) {
			best, bestKey = j, key
		}
	}
	s.best, s.bestKey, s.feasible = best, bestKey, feasible
}

// whyNot is why run turned nd away, vcpus and memory being what nd would
// hold with q: the first check it fails, in check's order.
func (q *query) whyNot(nd *node, vcpus, memory uint64) reason {
	switch {
	case nd.blocked != fits:
		return nd.blocked
	case nd.offers&q.imageBit == 0:
		return reasonNoImage
	case vcpus > nd.limitVcpus:
		return reasonVcpus
	case memory > nd.limitMemoryMiB:
		return reasonMemory
	}
	return reasonFeatures
}

// fillShift is the fixed point of fill: a full dimension counts about
// 1<<fillShift. Limits are below 2^29 (state.MaxMemoryMiB ×
// state.MaxOvercommit), so a reciprocal keeps at least 19 significant bits.
const fillShift = 48

// recip is 2^fillShift / limit, rounded down; 0 for a limit of 0 (nothing
// fits there, so nothing is ranked).
func recip(limit uint64) uint64 {
	if limit == 0 {
		return 0
	}
	return (1 << fillShift) / limit
}

// fill is how full nd would be with q on it: its vCPU fraction plus its
// memory fraction, each in units of about 2^-fillShift of its limit. Only
// for a feasible node: there used+need <= limit, so neither product
// exceeds 2^fillShift and the sum cannot overflow. Integers, so that every
// machine ranks alike.
func (q *query) fill(nd *node) uint64 {
	return (nd.usedVcpus+q.vcpus)*nd.recipVcpus + (nd.usedMemoryMiB+q.memoryMiB)*nd.recipMemoryMiB
}

// beats reports whether the node at index j, with g VMs of a soft group and
// fill f, ranks above the best so far (bg, bf, at index bj): fewer VMs of
// the group first, then fuller (binpack) or emptier (spread), then the lower
// id (nodes are sorted by id).
func (q *query) beats(g uint32, f uint64, j int, bg uint32, bf uint64, bj int) bool {
	if g != bg {
		return g < bg
	}
	if f != bf {
		if q.spread {
			return f < bf
		}
		return f > bf
	}
	return j < bj
}

// fnv1a is the 64-bit FNV-1a hash of s: stable across runs, machines and
// Go releases (unlike hash/maphash), and free of allocations.
func fnv1a(s string) uint64 {
	const (
		offset = 14695981039346656037
		prime  = 1099511628211
	)
	h := uint64(offset)
	for i := 0; i < len(s); i++ {
		h ^= uint64(s[i])
		h *= prime
	}
	return h
}
