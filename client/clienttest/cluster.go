package clienttest

import (
	"context"
	"slices"
	"time"

	"google.golang.org/protobuf/proto"

	apiv1 "github.com/blixard/blixard/api/v1"
	"github.com/blixard/blixard/api/v1/apiv1grpc"
	"github.com/blixard/blixard/internal/pki"
)

// CA rotation limits the fake applies, as the cluster does.
const (
	defaultCAOverlap = time.Hour
	minCAOverlap     = 5 * time.Second
)

type clusterService struct {
	apiv1grpc.UnimplementedClusterServiceServer
	n *Node
}

func (s clusterService) GetClusterStatus(context.Context, *apiv1.GetClusterStatusRequest) (*apiv1.GetClusterStatusResponse, error) {
	return read(s.n, func() (*apiv1.GetClusterStatusResponse, error) {
		resp := proto.CloneOf(s.n.cluster)
		resp.CommitIndex = s.n.index
		resp.AppliedIndex = s.n.index
		if resp.Cluster != nil {
			resp.Cluster.AppliedIndex = s.n.index
		}
		return resp, nil
	})
}

func (s clusterService) JoinCluster(_ context.Context, req *apiv1.JoinClusterRequest) (*apiv1.JoinClusterResponse, error) {
	n := s.n
	return write(n, req.GetClientRequestId(), func() (*apiv1.JoinClusterResponse, error) {
		if req.GetNodeId() == 0 {
			return nil, fieldError(invalid, "node_id", "must be set")
		}
		if slices.ContainsFunc(n.cluster.Members, func(m *apiv1.ClusterMember) bool { return m.GetId() == req.GetNodeId() }) {
			return nil, fieldError(apiv1.ErrorCode_ERROR_CODE_ALREADY_EXISTS, "node_id", "node %d is already a member", req.GetNodeId())
		}
		index, _ := n.tick()
		// It joins as a learner, and the fake never promotes it.
		n.cluster.Members = append(n.cluster.Members, &apiv1.ClusterMember{
			Id: req.GetNodeId(), Address: req.GetAddress(), Role: req.GetRole(),
			Status: apiv1.NodeStatus_NODE_STATUS_READY, Capacity: proto.CloneOf(req.GetCapacity()),
		})
		n.cluster.Nodes = append(n.cluster.Nodes, &apiv1.Node{
			Id: req.GetNodeId(), Address: req.GetAddress(), Role: req.GetRole(),
			Capacity: proto.CloneOf(req.GetCapacity()), Labels: req.GetLabels(),
			Status: apiv1.NodeStatus_NODE_STATUS_READY, RegisteredIndex: index, UpdatedIndex: index,
		})
		m := n.cluster.GetCluster().GetMembership()
		if m != nil {
			m.Learners = append(m.Learners, req.GetNodeId())
		}
		return &apiv1.JoinClusterResponse{ClusterId: n.cluster.GetCluster().GetId(), Membership: proto.CloneOf(m)}, nil
	})
}

func (s clusterService) LeaveCluster(_ context.Context, req *apiv1.LeaveClusterRequest) (*apiv1.LeaveClusterResponse, error) {
	n := s.n
	return write(n, req.GetClientRequestId(), func() (*apiv1.LeaveClusterResponse, error) {
		i := slices.IndexFunc(n.cluster.Members, func(m *apiv1.ClusterMember) bool { return m.GetId() == req.GetNodeId() })
		if i < 0 {
			return nil, fieldError(apiv1.ErrorCode_ERROR_CODE_NOT_FOUND, "node_id", "node %d is not a member", req.GetNodeId())
		}
		n.tick()
		n.cluster.Members = slices.Delete(n.cluster.Members, i, i+1)
		if m := n.cluster.GetCluster().GetMembership(); m != nil {
			drop := func(id uint64) bool { return id == req.GetNodeId() }
			m.Voters = slices.DeleteFunc(m.Voters, drop)
			m.Learners = slices.DeleteFunc(m.Learners, drop)
			m.Removed = append(m.Removed, req.GetNodeId())
		}
		for _, node := range n.cluster.Nodes {
			if node.GetId() == req.GetNodeId() {
				node.Status = apiv1.NodeStatus_NODE_STATUS_LEFT
			}
		}
		return &apiv1.LeaveClusterResponse{}, nil
	})
}

// DrainNode sets the node record's drain flag, as the state does; the
// fake's VMs are never placed, so none has to move.
func (s clusterService) DrainNode(_ context.Context, req *apiv1.DrainNodeRequest) (*apiv1.DrainNodeResponse, error) {
	n := s.n
	if req.GetNodeId() == 0 { // refused at the edge, as the server does: not a write
		return nil, fieldError(invalid, "node_id", "must not be 0")
	}
	return write(n, req.GetClientRequestId(), func() (*apiv1.DrainNodeResponse, error) {
		i := slices.IndexFunc(n.cluster.Nodes, func(node *apiv1.Node) bool { return node.GetId() == req.GetNodeId() })
		if i < 0 {
			return nil, fieldError(apiv1.ErrorCode_ERROR_CODE_NOT_FOUND, "node_id", "no node %d", req.GetNodeId())
		}
		node := n.cluster.Nodes[i]
		if node.GetStatus() == apiv1.NodeStatus_NODE_STATUS_LEFT {
			return nil, fieldError(apiv1.ErrorCode_ERROR_CODE_FAILED_PRECONDITION, "node_id", "node %d has left the cluster", req.GetNodeId())
		}
		if node.GetDrain() != req.GetDrain() {
			node.Drain = req.GetDrain()
			node.UpdatedIndex, _ = n.tick()
		}
		return &apiv1.DrainNodeResponse{Node: proto.CloneOf(node)}, nil
	})
}

// RotateCa starts a CA rotation as the cluster does: a new CA (a real
// certificate, made by internal/pki on the fake clock) goes first in the
// cluster record's ca_certificates and the rotation enters phase TRUST,
// ending one overlap later. The fake never moves a rotation on; a test
// does that with UpdateCluster. A cluster record without CA certificates
// (the fake's default, like an --insecure cluster) or one already
// rotating refuses.
func (s clusterService) RotateCa(_ context.Context, req *apiv1.RotateCaRequest) (*apiv1.RotateCaResponse, error) {
	n := s.n
	overlap := time.Duration(req.GetOverlapSeconds()) * time.Second
	switch {
	case req.GetOverlapSeconds() == 0:
		overlap = defaultCAOverlap
	case req.GetOverlapSeconds() < 0 || overlap < minCAOverlap:
		return nil, fieldError(invalid, "overlap_seconds", "must be 0 (one hour) or at least %d", int64(minCAOverlap/time.Second))
	}
	return write(n, req.GetClientRequestId(), func() (*apiv1.RotateCaResponse, error) {
		c := n.cluster.GetCluster()
		if len(c.GetCaCertificates()) == 0 {
			return nil, Status(&apiv1.Error{Code: apiv1.ErrorCode_ERROR_CODE_FAILED_PRECONDITION,
				Message: "this cluster has no CA to rotate (it runs with --insecure, or began before CA trust was replicated)"})
		}
		if p := c.GetCaRotationPhase(); p != apiv1.CARotationPhase_CA_ROTATION_PHASE_NONE {
			return nil, Status(&apiv1.Error{Code: apiv1.ErrorCode_ERROR_CODE_FAILED_PRECONDITION,
				Message: "a CA rotation is under way (phase " + p.String() + ")"})
		}
		_, nanos := n.tick()
		ca, err := pki.NewCA(c.GetId(), time.Unix(0, nanos), 0)
		if err != nil {
			return nil, Unavailable("make a CA: " + err.Error())
		}
		c.CaCertificates = append([][]byte{ca.Certificate().Raw}, c.CaCertificates...)
		c.CaRotationPhase = apiv1.CARotationPhase_CA_ROTATION_PHASE_TRUST
		c.CaRotationNextUnixNano = nanos + int64(overlap)
		return &apiv1.RotateCaResponse{Cluster: proto.CloneOf(c)}, nil
	})
}

func (s clusterService) HealthCheck(context.Context, *apiv1.HealthCheckRequest) (*apiv1.HealthCheckResponse, error) {
	return read(s.n, func() (*apiv1.HealthCheckResponse, error) {
		return &apiv1.HealthCheckResponse{
			NodeId:       s.n.ID,
			LeaderId:     s.n.cluster.GetLeaderId(),
			Term:         s.n.cluster.GetTerm(),
			AppliedIndex: s.n.index,
			Healthy:      s.n.cluster.GetLeaderId() != 0,
		}, nil
	})
}
