package pki

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
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

// KeyID names a public key: the first 16 bytes of the SHA-256 of its
// PKIX encoding, in hex. A joining node derives its join request's id from
// it, so that a retry of the join (same key) is recognised as the same
// request and nobody else's key can claim its answer.
func KeyID(pub crypto.PublicKey) (string, error) {
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return "", fmt.Errorf("key id: %w", err)
	}
	sum := sha256.Sum256(der)
	return hex.EncodeToString(sum[:16]), nil
}

// CSRKeyID is KeyID of the key a certificate request is for, once its
// signature proves the requester holds that key, and the node id the
// request names.
func CSRKeyID(csrDER []byte) (keyID string, nodeID uint64, err error) {
	if len(csrDER) > MaxCSRBytes {
		return "", 0, fmt.Errorf("certificate request: %d bytes, more than %d", len(csrDER), MaxCSRBytes)
	}
	csr, err := x509.ParseCertificateRequest(csrDER)
	if err != nil {
		return "", 0, fmt.Errorf("certificate request: %w", err)
	}
	if err := csr.CheckSignature(); err != nil {
		return "", 0, fmt.Errorf("certificate request: bad signature: %w", err)
	}
	if nodeID, err = nodeIDFromURIs(csr.URIs); err != nil {
		return "", 0, fmt.Errorf("certificate request: %w", err)
	}
	keyID, err = KeyID(csr.PublicKey)
	return keyID, nodeID, err
}
