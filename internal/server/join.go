package server

import (
	"context"
	"fmt"

	apiv1 "github.com/blixard/blixard/api/v1"
)

// JoinRequestID is a secure join's client request id: it names the node,
// the pki.KeyID of the key its CSR is for, and the join token's id. A
// retry with the same key and token for the same node is the same request
// (it gets the first answer and a certificate again); another key, or
// another node id, cannot pass for it; and a join refused under one token
// may be tried again under another.
func JoinRequestID(nodeID uint64, keyID, tokenID string) string {
	return fmt.Sprintf("join-%d-%s-%s", nodeID, keyID, tokenID)
}

func invalidField(field, format string, args ...any) error {
	return StatusOf(&apiv1.Error{Code: apiv1.ErrorCode_ERROR_CODE_INVALID_ARGUMENT, Field: field,
		Message: field + ": " + fmt.Sprintf(format, args...)})
}

// JoinCluster adds a node. In a secure cluster the caller must present a
// join token (in its metadata) that allows the role it asks for, and a
// CSR for its node id; once the join is committed it gets a certificate,
// the CA certificates, and, if it joins as a voter, the CA key.
func (s *clusterService) JoinCluster(ctx context.Context, r *apiv1.JoinClusterRequest) (*apiv1.JoinClusterResponse, error) {
	if s.sec == nil {
		r.JoinTokenId = ""
		resp, err := do(ctx, s.b, &apiv1.Request{Kind: &apiv1.Request_JoinCluster{JoinCluster: r}})
		return resp.GetJoinCluster(), err
	}
	tok := bearer(ctx)
	if tok == "" {
		return nil, deny(apiv1.ErrorCode_ERROR_CODE_UNAUTHENTICATED, "joining this cluster needs a join token (blixard cluster token create)")
	}
	rec, err := s.sec.JoinToken(tok)
	if err != nil {
		return nil, deny(apiv1.ErrorCode_ERROR_CODE_UNAUTHENTICATED, err.Error())
	}
	role := r.GetRole()
	if role == apiv1.NodeRole_NODE_ROLE_UNSPECIFIED {
		role = apiv1.NodeRole_NODE_ROLE_VOTER
	}
	if rec.GetNodeRole() == apiv1.NodeRole_NODE_ROLE_WORKER && role != apiv1.NodeRole_NODE_ROLE_WORKER {
		return nil, deny(apiv1.ErrorCode_ERROR_CODE_PERMISSION_DENIED,
			fmt.Sprintf("join token %s admits workers only; this node asks to be a voter", rec.GetId()))
	}
	if len(r.GetCsr()) == 0 {
		return nil, invalidField("csr", "a secure cluster needs a certificate request")
	}
	keyID, csrNode, err := s.keyID(r.GetCsr())
	if err != nil {
		return nil, invalidField("csr", "%v", err)
	}
	if csrNode != r.GetNodeId() {
		return nil, invalidField("csr", "names node %d, not node %d", csrNode, r.GetNodeId())
	}
	if r.GetClientRequestId() != JoinRequestID(r.GetNodeId(), keyID, rec.GetId()) {
		return nil, invalidField("client_request_id", "must be join-<node id>-<key id of the CSR's key>-<join token id>")
	}
	r.JoinTokenId = rec.GetId()
	resp, err := do(ctx, s.b, &apiv1.Request{Kind: &apiv1.Request_JoinCluster{JoinCluster: r}})
	if err != nil {
		return nil, err
	}
	out := resp.GetJoinCluster()
	if out == nil {
		// The request id answered another kind of request.
		return nil, StatusOf(&apiv1.Error{Code: apiv1.ErrorCode_ERROR_CODE_FAILED_PRECONDITION,
			Message: "client_request_id was used by another request"})
	}
	cert, cas, key, err := s.sec.Issue(r.GetCsr(), r.GetNodeId(), r.GetAddress(), role == apiv1.NodeRole_NODE_ROLE_VOTER)
	if err != nil {
		// The node is a member but has no certificate: a retry (same key,
		// same request id) gets one.
		return nil, StatusOf(&apiv1.Error{Code: apiv1.ErrorCode_ERROR_CODE_UNAVAILABLE,
			Message: fmt.Sprintf("node %d joined, but no certificate could be issued here (%v): retry", r.GetNodeId(), err)})
	}
	out.Certificate, out.CaCertificates, out.CaKey = cert, cas, key
	return out, nil
}

// RenewCertificate signs a new certificate for the node that calls (its
// current certificate says which).
func (s *clusterService) RenewCertificate(ctx context.Context, r *apiv1.RenewCertificateRequest) (*apiv1.RenewCertificateResponse, error) {
	if s.sec == nil {
		return nil, insecureRefusal()
	}
	id := callerOf(ctx).node
	if id == 0 {
		return nil, deny(apiv1.ErrorCode_ERROR_CODE_PERMISSION_DENIED, "only a node may renew its certificate")
	}
	resp, err := do(ctx, s.b, &apiv1.Request{Kind: &apiv1.Request_GetClusterStatus{GetClusterStatus: &apiv1.GetClusterStatusRequest{Stale: true}}})
	if err != nil {
		return nil, err
	}
	addr := ""
	for _, n := range resp.GetGetClusterStatus().GetNodes() {
		if n.GetId() == id {
			addr = n.GetAddress()
		}
	}
	cert, cas, _, err := s.sec.Issue(r.GetCsr(), id, addr, false)
	if err != nil {
		return nil, StatusOf(&apiv1.Error{Code: apiv1.ErrorCode_ERROR_CODE_FAILED_PRECONDITION, Message: err.Error()})
	}
	return &apiv1.RenewCertificateResponse{Certificate: cert, CaCertificates: cas}, nil
}
