package state

import (
	"maps"
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
	return nil
}

func (s *State) initCluster(op *apiv1.InitClusterCommand) *apiv1.Response {
	s.clusterID = op.GetClusterId()
	return &apiv1.Response{}
}

func (s *State) checkRegisterNode(op *apiv1.RegisterNodeCommand) *Error {
	if op.GetId() == 0 {
		return invalid("id", "must not be 0")
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
	if _, ok := s.nodes[op.GetId()]; ok {
		// A node may shrink, but not below what is placed on it: no node is
		// ever committed beyond its capacity.
		used, c := s.Allocated(op.GetId()), op.GetCapacity()
		if used.GetVcpus() > c.GetVcpus() || used.GetMemoryMib() > c.GetMemoryMib() || used.GetDiskMib() > c.GetDiskMib() {
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
	if uint64(used.GetVcpus())+uint64(need.GetVcpus()) > uint64(capacity.GetVcpus()) {
		return exhausted(field, "node %d has %d of %d vCPUs free, %d needed",
			id, capacity.GetVcpus()-min(used.GetVcpus(), capacity.GetVcpus()), capacity.GetVcpus(), need.GetVcpus())
	}
	if used.GetMemoryMib()+need.GetMemoryMib() > capacity.GetMemoryMib() {
		return exhausted(field, "node %d has %d of %d MiB free, %d needed",
			id, capacity.GetMemoryMib()-min(used.GetMemoryMib(), capacity.GetMemoryMib()), capacity.GetMemoryMib(), need.GetMemoryMib())
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
