// Package sched decides where workloads run: given a read-only view of the
// replicated state, it picks the node for each VM or task that waits for one,
// or explains why no node can take it. It owns placement and the resource
// accounting of one placement pass; it never changes the state. The caller
// (the leader's placement controller in internal/core) turns its answers into
// AssignVm and AssignTask commands, and the state machine checks each of them
// again when it applies them.
//
// Contract:
//
//  1. New(st, opts) copies what placement needs out of st once per pass: each
//     node's status, drain flag, labels, images, features, capacity ×
//     overcommit (state.NodeLimits), what its workloads already hold
//     (st.Allocated) and how many VMs of each anti-affinity group it runs
//     (st.VmsOn). Nothing later reads st, so the state may move on while a
//     Cluster is in use; the Cluster then describes the state as it was.
//  2. Place(r) returns the best feasible node for r, or an *Unplaceable whose
//     Reason says why none fits. It changes nothing: call Commit(node, r)
//     with the node chosen so that the later Place calls of the same pass
//     see r's usage and group. A Cluster is not safe for concurrent use.
//  3. Feasibility is the state's own rule for accepting an assignment
//     (checkVmOnNode for VMs, canPlace for tasks), checked in the same order:
//     the node is ready and not draining; it offers the image
//     (state.ImageOf), whose minimum memory the workload meets; it carries
//     every constraint label; it runs no VM of the request's anti-affinity
//     group if the request is hard, and no hard one if the request is soft
//     (counting those committed in this pass); the request's vCPUs and
//     memory fit under the node's limits, and its disk (when it asks for
//     any) under the node's disk; the node has every feature the request
//     needs. A node Place returns is one the state accepts, given the same
//     pass's commits as reserved resources; an Unplaceable means the state
//     would refuse every node.
//  4. Ranking: binpack (the default) prefers the node that will be fullest
//     after the placement, spread the emptiest, measured as the sum of the
//     vCPU and memory fractions of the node's limits. A soft anti-affinity
//     group ranks first by how few VMs of the group the node already runs,
//     then by the strategy. Ties go to the lowest node id.
//  5. Options.MaxCandidates bounds how many feasible nodes one Place ranks
//     (as Nomad limits its candidates): the scan starts at a node chosen by
//     an FNV-1a hash of Request.Key, goes round the nodes in id order and
//     stops once it has seen that many feasible nodes. When fewer are
//     feasible it goes all the way round, so a request is refused only when
//     no node at all can take it.
//
// Determinism: Place is a pure function of the Cluster and the request. The
// package starts no goroutine, reads no clock, draws no random number and
// does no I/O. Nodes are held in a slice sorted by id; maps are only looked
// up, or iterated where the result cannot depend on the order (a yes/no, a
// sum), and any listing that reaches an answer is sorted first. Scores are
// integers, so no floating-point rounding differs between machines. Two
// Clusters built from equal states give the same answers to the same
// sequence of Place and Commit calls, on any machine.
package sched
