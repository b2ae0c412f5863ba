package pki

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"net/url"
	"time"
)

// MaxCSRBytes bounds a certificate request read from the network. Ours
// are about 300 bytes.
const MaxCSRBytes = 16 << 10

// ErrNodeIDMismatch is returned by SignCSR when the request names another
// node than the one the CA was asked to certify.
var ErrNodeIDMismatch = errors.New("certificate request names another node")

// NewNodeKey generates a node's private key (ECDSA P-256).
func NewNodeKey() (*ecdsa.PrivateKey, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("generate node key: %w", err)
	}
	return key, nil
}

// NewCSR returns a DER certificate request, signed by key, for node
// nodeID: subject CN "blixard node <id>" and the SAN URI
// blixard://node/<id>. A joining node sends it so that its key never
// leaves it.
func NewCSR(nodeID uint64, key crypto.Signer) ([]byte, error) {
	if nodeID == 0 {
		return nil, errors.New("certificate request: node id 0 is not a node id")
	}
	if err := checkPublicKey(key.Public()); err != nil {
		return nil, fmt.Errorf("certificate request for node %d: %w", nodeID, err)
	}
	tmpl := &x509.CertificateRequest{
		Subject: pkix.Name{CommonName: nodeCommonName(nodeID)},
		URIs:    []*url.URL{NodeURI(nodeID)},
	}
	der, err := x509.CreateCertificateRequest(rand.Reader, tmpl, key)
	if err != nil {
		return nil, fmt.Errorf("certificate request for node %d: %w", nodeID, err)
	}
	return der, nil
}

// SignCSR issues a node certificate (as IssueNode) for the key of a
// certificate request, after checking the request: at most MaxCSRBytes,
// one DER request and nothing after it, a valid self-signature, and
// exactly one node URI naming nodeID (ErrNodeIDMismatch otherwise). The
// node id and addresses certified are the caller's, which it knows from
// the join it admitted; the request's other names are ignored.
func (ca *CA) SignCSR(csrDER []byte, nodeID uint64, addrs []string, now time.Time, validity time.Duration) (*x509.Certificate, error) {
	if len(csrDER) > MaxCSRBytes {
		return nil, fmt.Errorf("certificate request for node %d: %d bytes, more than %d", nodeID, len(csrDER), MaxCSRBytes)
	}
	csr, err := x509.ParseCertificateRequest(csrDER)
	if err != nil {
		return nil, fmt.Errorf("certificate request for node %d: %w", nodeID, err)
	}
	if err := csr.CheckSignature(); err != nil {
		return nil, fmt.Errorf("certificate request for node %d: bad signature: %w", nodeID, err)
	}
	got, err := nodeIDFromURIs(csr.URIs)
	if err != nil {
		return nil, fmt.Errorf("certificate request for node %d: %w", nodeID, err)
	}
	if got != nodeID {
		return nil, fmt.Errorf("certificate request for node %d: %w (node %d)", nodeID, ErrNodeIDMismatch, got)
	}
	return ca.IssueNode(nodeID, addrs, csr.PublicKey, now, validity)
}
