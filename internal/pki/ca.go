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
	"math/big"
	"net/url"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"
)

const (
	// DefaultCAValidity is a CA's lifetime when NewCA is given 0.
	DefaultCAValidity = 10 * 365 * 24 * time.Hour
	// DefaultNodeValidity is a node certificate's lifetime when it is
	// issued with a validity of 0. Node certificates are short-lived and
	// renewed (see NeedsRenewal).
	DefaultNodeValidity = 30 * 24 * time.Hour
	// MaxClusterIDLen bounds a cluster id, in bytes (as the state does).
	MaxClusterIDLen = 64
	// backdate is how long before `now` a certificate becomes valid, so
	// that a peer whose clock is a little behind accepts it at once.
	backdate = time.Minute
	// serialBits is the size of a random serial number.
	serialBits = 128
)

// CA is a cluster's certificate authority: its self-signed certificate and
// its private key. The key never leaves the package except through Save;
// String and GoString print the fingerprint only, so a CA that reaches a
// log line leaks nothing.
type CA struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
}

// NewCA makes the CA of cluster clusterID: a fresh ECDSA P-256 key and a
// self-signed certificate (subject CN "blixard cluster <id> CA", a 128-bit
// random serial, valid from now-1m for validity, DefaultCAValidity if 0),
// allowed to sign certificates and CRLs and nothing below a leaf.
func NewCA(clusterID string, now time.Time, validity time.Duration) (*CA, error) {
	if err := checkClusterID(clusterID); err != nil {
		return nil, fmt.Errorf("new CA: %w", err)
	}
	if now.IsZero() {
		return nil, errors.New("new CA: now is the zero time")
	}
	validity, err := validityOrDefault(validity, DefaultCAValidity)
	if err != nil {
		return nil, fmt.Errorf("new CA: %w", err)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("new CA: generate key: %w", err)
	}
	serial, err := newSerial()
	if err != nil {
		return nil, fmt.Errorf("new CA: %w", err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: caCommonName(clusterID)},
		NotBefore:             now.Add(-backdate),
		NotAfter:              now.Add(validity),
		IsCA:                  true,
		BasicConstraintsValid: true,
		MaxPathLen:            0,
		MaxPathLenZero:        true, // no intermediates: the CA signs leaves only
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, fmt.Errorf("new CA: sign: %w", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("new CA: parse own certificate: %w", err)
	}
	return &CA{cert: cert, key: key}, nil
}

// newCA pairs a certificate with its key, checking that they belong
// together and that the certificate is a CA.
func newCA(cert *x509.Certificate, key *ecdsa.PrivateKey) (*CA, error) {
	if !cert.IsCA || !cert.BasicConstraintsValid {
		return nil, errors.New("certificate is not a CA certificate")
	}
	if cert.KeyUsage&x509.KeyUsageCertSign == 0 {
		return nil, errors.New("CA certificate may not sign certificates (no certSign key usage)")
	}
	if !key.PublicKey.Equal(cert.PublicKey) {
		return nil, errors.New("CA key does not match the CA certificate")
	}
	if err := cert.CheckSignatureFrom(cert); err != nil {
		return nil, fmt.Errorf("CA certificate is not self-signed: %w", err)
	}
	return &CA{cert: cert, key: key}, nil
}

// Certificate returns the CA's certificate (public; safe to hand out).
func (ca *CA) Certificate() *x509.Certificate { return ca.cert }

// ClusterID returns the cluster id named in the CA's subject, or "" if the
// subject is not of the form NewCA writes.
func (ca *CA) ClusterID() string {
	cn := ca.cert.Subject.CommonName
	id, ok := strings.CutPrefix(cn, "blixard cluster ")
	if !ok {
		return ""
	}
	id, ok = strings.CutSuffix(id, " CA")
	if !ok {
		return ""
	}
	return id
}

// String names the CA by subject and fingerprint; it never prints the key.
func (ca *CA) String() string {
	return fmt.Sprintf("CA %q %s", ca.cert.Subject.CommonName, ca.Fingerprint())
}

// GoString is String, so that %#v does not print the key either.
func (ca *CA) GoString() string { return ca.String() }

// IssueNode signs a certificate for node nodeID's public key pub (ECDSA
// P-256): usable for TLS server and client authentication, with the SAN URI
// blixard://node/<nodeID> (the node's identity), and DNS or IP SANs for the
// host part of each of addrs ("host:port" or a bare host; IPs become IP
// SANs). It is valid from now-1m (but not before the CA) for validity
// (DefaultNodeValidity if 0), cut short at the CA's own expiry. It refuses
// node id 0, a CA that is not valid at now, and addresses with no host.
func (ca *CA) IssueNode(nodeID uint64, addrs []string, pub crypto.PublicKey, now time.Time, validity time.Duration) (*x509.Certificate, error) {
	if nodeID == 0 {
		return nil, errors.New("issue node certificate: node id 0 is not a node id")
	}
	if err := checkPublicKey(pub); err != nil {
		return nil, fmt.Errorf("issue certificate for node %d: %w", nodeID, err)
	}
	if now.IsZero() {
		return nil, fmt.Errorf("issue certificate for node %d: now is the zero time", nodeID)
	}
	validity, err := validityOrDefault(validity, DefaultNodeValidity)
	if err != nil {
		return nil, fmt.Errorf("issue certificate for node %d: %w", nodeID, err)
	}
	if now.Before(ca.cert.NotBefore) || now.After(ca.cert.NotAfter) {
		return nil, fmt.Errorf("issue certificate for node %d: %s is not valid at %s (valid %s to %s)",
			nodeID, ca, now.UTC().Format(time.RFC3339), ca.cert.NotBefore.UTC().Format(time.RFC3339),
			ca.cert.NotAfter.UTC().Format(time.RFC3339))
	}
	dnsNames, ips, err := subjectAltNames(addrs)
	if err != nil {
		return nil, fmt.Errorf("issue certificate for node %d: %w", nodeID, err)
	}
	serial, err := newSerial()
	if err != nil {
		return nil, fmt.Errorf("issue certificate for node %d: %w", nodeID, err)
	}
	notBefore := now.Add(-backdate)
	if notBefore.Before(ca.cert.NotBefore) {
		notBefore = ca.cert.NotBefore
	}
	notAfter := now.Add(validity)
	if notAfter.After(ca.cert.NotAfter) {
		notAfter = ca.cert.NotAfter
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: nodeCommonName(nodeID)},
		NotBefore:             notBefore,
		NotAfter:              notAfter,
		BasicConstraintsValid: true, // IsCA false: a leaf
		KeyUsage:              x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		URIs:                  []*url.URL{NodeURI(nodeID)},
		DNSNames:              dnsNames,
		IPAddresses:           ips,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, pub, ca.key)
	if err != nil {
		return nil, fmt.Errorf("issue certificate for node %d: sign: %w", nodeID, err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("issue certificate for node %d: parse: %w", nodeID, err)
	}
	return cert, nil
}

// NewNode makes node nodeID's credentials in one step: a fresh key
// (NewNodeKey) and a certificate for it (IssueNode). The bootstrap node
// uses it for itself; a joining node sends a CSR instead (SignCSR), so its
// key never travels.
func (ca *CA) NewNode(nodeID uint64, addrs []string, now time.Time, validity time.Duration) (*NodeCert, error) {
	key, err := NewNodeKey()
	if err != nil {
		return nil, err
	}
	cert, err := ca.IssueNode(nodeID, addrs, &key.PublicKey, now, validity)
	if err != nil {
		return nil, err
	}
	return NewNodeCert(cert, ca.cert, key)
}

func caCommonName(clusterID string) string { return "blixard cluster " + clusterID + " CA" }

func nodeCommonName(nodeID uint64) string { return "blixard node " + strconv.FormatUint(nodeID, 10) }

func checkClusterID(id string) error {
	if id == "" {
		return errors.New("cluster id is empty")
	}
	if len(id) > MaxClusterIDLen {
		return fmt.Errorf("cluster id is %d bytes, more than %d", len(id), MaxClusterIDLen)
	}
	if !utf8.ValidString(id) {
		return errors.New("cluster id is not valid UTF-8")
	}
	for _, r := range id {
		if !unicode.IsPrint(r) {
			return fmt.Errorf("cluster id %q has a non-printable character", id)
		}
	}
	return nil
}

func validityOrDefault(validity, def time.Duration) (time.Duration, error) {
	switch {
	case validity == 0:
		return def, nil
	case validity < 0:
		return 0, fmt.Errorf("validity %s is negative", validity)
	}
	return validity, nil
}

// checkPublicKey accepts ECDSA P-256 keys, the only kind this package
// issues for.
func checkPublicKey(pub crypto.PublicKey) error {
	k, ok := pub.(*ecdsa.PublicKey)
	if !ok {
		return fmt.Errorf("public key is %T, want an ECDSA P-256 key", pub)
	}
	if k.Curve != elliptic.P256() {
		return fmt.Errorf("public key is on curve %s, want P-256", k.Curve.Params().Name)
	}
	return nil
}

// newSerial returns a random, positive 128-bit serial number.
func newSerial() (*big.Int, error) {
	limit := new(big.Int).Lsh(big.NewInt(1), serialBits)
	for {
		n, err := rand.Int(rand.Reader, limit)
		if err != nil {
			return nil, fmt.Errorf("serial number: %w", err)
		}
		if n.Sign() > 0 {
			return n, nil
		}
	}
}
