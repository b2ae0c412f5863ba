package pki

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"time"
)

// VerifyNode verifies a node certificate at now: signed by a CA of roots
// (directly: the cluster has no intermediates), valid at now, allowed the
// extended key usage usage, not itself a CA, and naming exactly one node.
// It returns that node's id.
func VerifyNode(leaf *x509.Certificate, roots *x509.CertPool, usage x509.ExtKeyUsage, now time.Time) (uint64, error) {
	if leaf == nil {
		return 0, errors.New("no certificate")
	}
	if roots == nil {
		return 0, errors.New("no trusted CA pool")
	}
	if leaf.IsCA {
		return 0, fmt.Errorf("certificate %q is a CA certificate, not a node certificate", leaf.Subject.CommonName)
	}
	opts := x509.VerifyOptions{
		Roots:       roots,
		CurrentTime: now,
		KeyUsages:   []x509.ExtKeyUsage{usage},
	}
	if _, err := leaf.Verify(opts); err != nil {
		return 0, fmt.Errorf("certificate %q: %w", leaf.Subject.CommonName, err)
	}
	return NodeIDFromCert(leaf)
}

// PeerNodeID returns the node id of the client certificate that a TLS
// server verified: use it on the server side of ServerTLS or
// SharedServerTLS (through gRPC's credentials.TLSInfo) to bind what a
// connection says, such as a Raft message's sender, to who it is. It fails
// when no certificate was verified (an API client of SharedServerTLS, or a
// config that does not verify client certificates): it reads only
// VerifiedChains, never an unverified certificate.
func PeerNodeID(cs tls.ConnectionState) (uint64, error) {
	if len(cs.VerifiedChains) == 0 || len(cs.VerifiedChains[0]) == 0 {
		return 0, errors.New("peer presented no verified certificate")
	}
	return NodeIDFromCert(cs.VerifiedChains[0][0])
}
