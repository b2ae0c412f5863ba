package pki

import (
	"crypto/ecdsa"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
)

// NodeCert is a node's credentials: its certificate, the CA certificate
// that signed it, and its private key. The key is reachable only through
// TLSCertificate and Save; String prints no key.
type NodeCert struct {
	leaf   *x509.Certificate
	issuer *x509.Certificate
	key    *ecdsa.PrivateKey
	id     uint64
}

// NewNodeCert pairs a node certificate with its issuing CA certificate and
// its key, checking that they belong together: the certificate names a
// node, is no CA, was signed by issuer, and matches key.
func NewNodeCert(leaf, issuer *x509.Certificate, key *ecdsa.PrivateKey) (*NodeCert, error) {
	if leaf == nil || issuer == nil || key == nil {
		return nil, errors.New("node credentials: certificate, issuer and key are all required")
	}
	id, err := NodeIDFromCert(leaf)
	if err != nil {
		return nil, fmt.Errorf("node credentials: %w", err)
	}
	if leaf.IsCA {
		return nil, fmt.Errorf("node credentials: certificate of node %d is a CA certificate", id)
	}
	if err := checkPublicKey(&key.PublicKey); err != nil {
		return nil, fmt.Errorf("node credentials of node %d: %w", id, err)
	}
	if !key.PublicKey.Equal(leaf.PublicKey) {
		return nil, fmt.Errorf("node credentials: key does not match the certificate of node %d", id)
	}
	if err := leaf.CheckSignatureFrom(issuer); err != nil {
		return nil, fmt.Errorf("node credentials: certificate of node %d was not signed by %q: %w",
			id, issuer.Subject.CommonName, err)
	}
	return &NodeCert{leaf: leaf, issuer: issuer, key: key, id: id}, nil
}

// NodeID returns the node id the certificate names.
func (n *NodeCert) NodeID() uint64 { return n.id }

// Leaf returns the node's certificate.
func (n *NodeCert) Leaf() *x509.Certificate { return n.leaf }

// Issuer returns the CA certificate that signed the node's certificate.
func (n *NodeCert) Issuer() *x509.Certificate { return n.issuer }

// TLSCertificate returns the credentials for a tls.Config. The chain sent
// in handshakes is the node certificate followed by its CA certificate, so
// that a joining node, which knows only the CA's fingerprint, can check
// the CA (JoinTLS). Peers that already trust the CA ignore the extra
// certificate.
func (n *NodeCert) TLSCertificate() tls.Certificate {
	return tls.Certificate{
		Certificate: [][]byte{n.leaf.Raw, n.issuer.Raw},
		PrivateKey:  n.key,
		Leaf:        n.leaf,
	}
}

// String names the node and its certificate's expiry; it never prints the
// key.
func (n *NodeCert) String() string {
	return fmt.Sprintf("node %d certificate (expires %s, issuer %s)",
		n.id, n.leaf.NotAfter.UTC().Format("2006-01-02T15:04:05Z"), FingerprintOf(n.issuer))
}

// GoString is String, so that %#v does not print the key either.
func (n *NodeCert) GoString() string { return n.String() }
