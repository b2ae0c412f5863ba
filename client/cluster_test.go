package client_test

import (
	"bytes"
	"crypto/x509"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	apiv1 "github.com/blixard/blixard/api/v1"
	"github.com/blixard/blixard/client"
	"github.com/blixard/blixard/client/clienttest"
	"github.com/blixard/blixard/internal/pki"
)

// withCA makes n's cluster record hold one CA certificate, as a secure
// cluster's does, and returns it (DER).
func withCA(t *testing.T, n *clienttest.Node) []byte {
	t.Helper()
	ca, err := pki.NewCA("fake-cluster", time.Now(), 0)
	if err != nil {
		t.Fatalf("NewCA: %v", err)
	}
	der := ca.Certificate().Raw
	n.UpdateCluster(func(r *apiv1.GetClusterStatusResponse) { r.Cluster.CaCertificates = [][]byte{der} })
	return der
}

func TestRotateCa(t *testing.T) {
	n := clienttest.Start(t, 1)
	c := newClient(t, n.Addr)
	old := withCA(t, n)

	resp, err := c.RotateCa(t.Context(), &apiv1.RotateCaRequest{OverlapSeconds: 60})
	if err != nil {
		t.Fatalf("RotateCa: %v", err)
	}
	req := methodCalls(n, "RotateCa")[0].(*apiv1.RotateCaRequest)
	if req.GetClientRequestId() == "" || req.GetOverlapSeconds() != 60 {
		t.Errorf("RotateCa sent %v, want overlap 60 and a client request id", req)
	}
	cl := resp.GetCluster()
	certs := cl.GetCaCertificates()
	if len(certs) != 2 || !bytes.Equal(certs[1], old) || bytes.Equal(certs[0], old) {
		t.Fatalf("cluster after RotateCa holds %d CA certificates, want the new one first, then the old", len(certs))
	}
	if _, err := x509.ParseCertificate(certs[0]); err != nil {
		t.Errorf("new CA certificate does not parse: %v", err)
	}
	if cl.GetCaRotationPhase() != apiv1.CARotationPhase_CA_ROTATION_PHASE_TRUST {
		t.Errorf("phase %v, want TRUST", cl.GetCaRotationPhase())
	}
	st, err := c.GetClusterStatus(t.Context(), &apiv1.GetClusterStatusRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if next := st.GetCluster().GetCaRotationNextUnixNano(); next == 0 {
		t.Error("cluster status shows no end to phase TRUST")
	}

	// A retry with the same id gets the first answer; a new rotation
	// waits for this one to end.
	again, err := c.RotateCa(t.Context(), req)
	if err != nil || !proto.Equal(again, resp) {
		t.Errorf("RotateCa retried: %v, %v; want the first response", again, err)
	}
	_, err = c.RotateCa(t.Context(), &apiv1.RotateCaRequest{})
	if status.Code(err) != codes.FailedPrecondition {
		t.Errorf("RotateCa during a rotation: %v, want FailedPrecondition", err)
	}
}

func TestRotateCaRefused(t *testing.T) {
	n := clienttest.Start(t, 1)
	c := newClient(t, n.Addr)
	_, err := c.RotateCa(t.Context(), &apiv1.RotateCaRequest{})
	if status.Code(err) != codes.FailedPrecondition {
		t.Errorf("RotateCa of a cluster without a CA: %v, want FailedPrecondition", err)
	}
	withCA(t, n)
	_, err = c.RotateCa(t.Context(), &apiv1.RotateCaRequest{OverlapSeconds: 4})
	if e := client.ErrorOf(err); e.GetCode() != apiv1.ErrorCode_ERROR_CODE_INVALID_ARGUMENT || e.GetField() != "overlap_seconds" {
		t.Errorf("RotateCa with a 4s overlap: %v, want overlap_seconds refused", err)
	}
}
