package state

import (
	"fmt"
	"maps"
	"math"
	"slices"

	"google.golang.org/protobuf/proto"

	apiv1 "github.com/blixard/blixard/api/v1"
)

func (s *State) checkInitCluster(op *apiv1.InitClusterCommand) *Error {
	id := op.GetClusterId()
	if id == "" {
		return invalid("cluster_id", "must not be empty")
	}
	if err := checkText("cluster_id", id, MaxClusterIDLen); err != nil {
		return err
	}
	if s.clusterID != "" && s.clusterID != id {
		return precondition("cluster_id", "cluster is already named %q", s.clusterID)
	}
	if t := op.GetAdminToken(); t != nil {
		if err := checkToken("admin_token", t); err != nil {
			return err
		}
		if t.GetKind() != apiv1.TokenKind_TOKEN_KIND_ACL || t.GetAccessRole() != apiv1.AccessRole_ACCESS_ROLE_ADMIN {
			return invalid("admin_token", "must be an ACL token with the admin role")
		}
	}
	if len(op.GetCaCertificate()) > MaxCACertBytes {
		return invalid("ca_certificate", "is %d bytes, at most %d", len(op.GetCaCertificate()), MaxCACertBytes)
	}
	return nil
}

// initCluster names the cluster, and the first time also records whether
// it is secure and its first admin token. A repeat (the leader proposes it
// until it applies) changes nothing.
func (s *State) initCluster(op *apiv1.InitClusterCommand) *apiv1.Response {
	if s.clusterID != "" {
		return &apiv1.Response{}
	}
	s.clusterID = op.GetClusterId()
	s.secure = op.GetSecure()
	if t := op.GetAdminToken(); t != nil {
		s.tokens[tokenKey{t.GetKind(), t.GetId()}] = proto.CloneOf(t)
	}
	if c := op.GetCaCertificate(); len(c) > 0 {
		s.caCerts = [][]byte{slices.Clone(c)}
	}
	s.secVersion++
	return &apiv1.Response{}
}

func (s *State) checkRegisterNode(op *apiv1.RegisterNodeCommand) *Error {
	if op.GetId() == 0 {
		return invalid("id", "must not be 0")
	}
	if n, ok := s.nodes[op.GetId()]; ok && n.GetRole() != op.GetRole() {
		// A worker never makes itself a voter: the role is fixed at join.
		return precondition("role", "node %d joined as %s; its role cannot change", op.GetId(), n.GetRole())
	}
	if s.Removed(op.GetId()) {
		return precondition("id", "node %d was removed from the cluster; ids are never reused", op.GetId())
	}
	if op.GetAddress() == "" {
		return invalid("address", "must not be empty")
	}
	if err := checkText("address", op.GetAddress(), MaxAddressLen); err != nil {
		return err
	}
	if err := checkEnum("role", op.GetRole(), false); err != nil {
		return err
	}
	if err := checkResources("capacity", op.GetCapacity()); err != nil {
		return err
	}
	if err := checkOvercommit("vcpu_overcommit", op.GetVcpuOvercommit()); err != nil {
		return err
	}
	if err := checkOvercommit("memory_overcommit", op.GetMemoryOvercommit()); err != nil {
		return err
	}
	if op.GetLeaseMillis() > MaxLeaseMillis {
		return invalid("lease_millis", "must be at most %d", MaxLeaseMillis)
	}
	if _, ok := s.nodes[op.GetId()]; ok {
		// A node may shrink, but not below what is placed on it: no node is
		// ever committed beyond its capacity × overcommit.
		used := s.Allocated(op.GetId())
		c := limits(op.GetCapacity(), op.GetVcpuOvercommit(), op.GetMemoryOvercommit())
		if uint64(used.GetVcpus()) > c.vcpus || used.GetMemoryMib() > c.memoryMiB || used.GetDiskMib() > op.GetCapacity().GetDiskMib() {
			return precondition("capacity", "node %d holds %d vCPUs, %d MiB and %d MiB of disk of work; the new capacity is smaller",
				op.GetId(), used.GetVcpus(), used.GetMemoryMib(), used.GetDiskMib())
		}
	}
	if err := checkImages("images", op.GetImages()); err != nil {
		return err
	}
	return checkMap("labels", op.GetLabels(), checkKey)
}

// registerNode adds the node, or refreshes its address, role, capacity and
// labels. Status and drain are the leader's to change, not the node's.
func (s *State) registerNode(a at, op *apiv1.RegisterNodeCommand) *apiv1.Response {
	n, ok := s.nodes[op.GetId()]
	if !ok {
		n = &apiv1.Node{
			Id:              op.GetId(),
			Status:          apiv1.NodeStatus_NODE_STATUS_READY,
			RegisteredIndex: a.index,
		}
		s.nodes[n.Id] = n
	}
	n.Address = op.GetAddress()
	n.Role = op.GetRole()
	n.Capacity = proto.CloneOf(op.GetCapacity())
	n.Labels = maps.Clone(op.GetLabels())
	n.Images = cloneImages(op.GetImages())
	n.VcpuOvercommit = op.GetVcpuOvercommit()
	n.MemoryOvercommit = op.GetMemoryOvercommit()
	n.LeaseMillis = op.GetLeaseMillis()
	n.UpdatedIndex = a.index
	return &apiv1.Response{}
}

// NodeSchedulable reports why node id cannot take new work, or nil.
func (s *State) nodeSchedulable(field string, id uint64) *Error {
	n, ok := s.nodes[id]
	if !ok {
		return notFound(field, "no node %d", id)
	}
	if n.GetStatus() != apiv1.NodeStatus_NODE_STATUS_READY {
		return precondition(field, "node %d is %s", id, n.GetStatus())
	}
	if n.GetDrain() {
		return precondition(field, "node %d is draining", id)
	}
	return nil
}

// checkFits reports whether need fits in node id's free capacity, and the
// node has every feature need asks for.
func (s *State) checkFits(field string, id uint64, need *apiv1.Resources) *Error {
	return s.checkFitsWith(field, id, need, nil)
}

// checkFitsWith is checkFits on a node that also holds reserved.
func (s *State) checkFitsWith(field string, id uint64, need, reserved *apiv1.Resources) *Error {
	n := s.nodes[id]
	used := s.Allocated(id)
	used.Vcpus += reserved.GetVcpus()
	used.MemoryMib += reserved.GetMemoryMib()
	used.DiskMib += reserved.GetDiskMib()
	capacity := n.GetCapacity()
	lim := NodeLimits(n)
	if uint64(used.GetVcpus())+uint64(need.GetVcpus()) > lim.Vcpus {
		return exhausted(field, "node %d has %d of %d vCPUs free, %d needed",
			id, lim.Vcpus-min(uint64(used.GetVcpus()), lim.Vcpus), lim.Vcpus, need.GetVcpus())
	}
	if used.GetMemoryMib()+need.GetMemoryMib() > lim.MemoryMiB {
		return exhausted(field, "node %d has %d of %d MiB free, %d needed",
			id, lim.MemoryMiB-min(used.GetMemoryMib(), lim.MemoryMiB), lim.MemoryMiB, need.GetMemoryMib())
	}
	if need.GetDiskMib() > 0 && used.GetDiskMib()+need.GetDiskMib() > capacity.GetDiskMib() {
		return exhausted(field, "node %d has %d of %d MiB of disk free, %d needed",
			id, capacity.GetDiskMib()-min(used.GetDiskMib(), capacity.GetDiskMib()), capacity.GetDiskMib(), need.GetDiskMib())
	}
	for _, f := range need.GetFeatures() {
		if !slices.Contains(capacity.GetFeatures(), f) {
			return precondition(field, "node %d lacks feature %q", id, f)
		}
	}
	return nil
}

func cloneImages(imgs []*apiv1.ImageInfo) []*apiv1.ImageInfo {
	if len(imgs) == 0 {
		return nil
	}
	out := make([]*apiv1.ImageInfo, len(imgs))
	for i, img := range imgs {
		out[i] = proto.CloneOf(img)
	}
	return out
}

// MaxOvercommit bounds a node's overcommit ratios; MaxLeaseMillis its
// fencing lease (ten minutes).
const (
	MaxOvercommit  = 16.0
	MaxLeaseMillis = 10 * 60 * 1000
)

func checkOvercommit(field string, r float64) *Error {
	if r == 0 {
		return nil
	}
	// NaN fails both comparisons.
	if !(r >= 1 && r <= MaxOvercommit) {
		return invalid(field, "must be 0 (meaning 1.0) or between 1.0 and %g", MaxOvercommit)
	}
	return nil
}

// Limits is what the scheduler may commit on a node: its capacity with
// the overcommit ratios applied, rounded down.
type Limits struct {
	Vcpus     uint64
	MemoryMiB uint64
	DiskMiB   uint64
}

// NodeLimits is node n's capacity × overcommit: the most that placement
// may commit on it (disk is never overcommitted).
func NodeLimits(n *apiv1.Node) Limits {
	l := limits(n.GetCapacity(), n.GetVcpuOvercommit(), n.GetMemoryOvercommit())
	return Limits{Vcpus: l.vcpus, MemoryMiB: l.memoryMiB, DiskMiB: n.GetCapacity().GetDiskMib()}
}

type limitPair struct{ vcpus, memoryMiB uint64 }

func limits(c *apiv1.Resources, vcpuRatio, memoryRatio float64) limitPair {
	return limitPair{vcpus: scale(uint64(c.GetVcpus()), vcpuRatio), memoryMiB: scale(c.GetMemoryMib(), memoryRatio)}
}

// scale is floor(v × ratio), with 0 (and anything below 1) meaning 1.0.
// The ratio is taken to a thousandth and the product is an integer one,
// so that every replica computes the same limit whatever its floating
// point does (and 100 × 1.15 is 115).
func scale(v uint64, ratio float64) uint64 {
	if !(ratio > 1) {
		return v
	}
	permille := uint64(math.Round(float64(ratio * 1000)))
	return v * permille / 1000
}

// CheckCommitted reports the first node whose committed workloads exceed
// its capacity × overcommit, or nil: the promise placement keeps, checked by
// the simulator after every applied entry and by the placement benchmark.
func (s *State) CheckCommitted() error {
	for _, id := range s.nodeIDs() {
		n := s.nodes[id]
		used, lim := s.Allocated(id), NodeLimits(n)
		if uint64(used.GetVcpus()) > lim.Vcpus || used.GetMemoryMib() > lim.MemoryMiB || used.GetDiskMib() > lim.DiskMiB {
			return fmt.Errorf("node %d holds %d vCPUs, %d MiB and %d MiB of disk; its limits are %d, %d and %d",
				id, used.GetVcpus(), used.GetMemoryMib(), used.GetDiskMib(), lim.Vcpus, lim.MemoryMiB, lim.DiskMiB)
		}
	}
	return nil
}
