package pki

import (
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"net/url"
	"testing"
	"time"
)

// t0 is the fixed "now" of the tests: nothing here reads the wall clock
// except deadlines on network waits.
var t0 = time.Date(2026, time.March, 1, 12, 0, 0, 0, time.UTC)

func newTestCA(t *testing.T, clusterID string) *CA {
	t.Helper()
	ca, err := NewCA(clusterID, t0, 0)
	if err != nil {
		t.Fatalf("NewCA(%q): %v", clusterID, err)
	}
	return ca
}

func newTestNode(t *testing.T, ca *CA, id uint64) *NodeCert {
	t.Helper()
	n, err := ca.NewNode(id, []string{"127.0.0.1:7000"}, t0, 0)
	if err != nil {
		t.Fatalf("NewNode(%d): %v", id, err)
	}
	return n
}

// forgeLeaf signs, with ca's key, a leaf certificate that carries exactly
// the given URI SANs (parsed from text), to feed NodeIDFromCert what the
// issuing code never writes. It goes through DER and back, as a
// certificate from the wire would.
func forgeLeaf(t *testing.T, ca *CA, uris ...string) *x509.Certificate {
	t.Helper()
	key, err := NewNodeKey()
	if err != nil {
		t.Fatal(err)
	}
	var parsed []*url.URL
	for _, s := range uris {
		u, err := url.Parse(s)
		if err != nil {
			t.Fatalf("url.Parse(%q): %v", s, err)
		}
		parsed = append(parsed, u)
	}
	serial, err := newSerial()
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: "forged"},
		NotBefore:             t0.Add(-time.Minute),
		NotAfter:              t0.Add(time.Hour),
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		URIs:                  parsed,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		t.Fatalf("forge certificate: %v", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatalf("parse forged certificate: %v", err)
	}
	return cert
}

// x509MarshalEC encodes n's key as SEC 1 PEM, the form openssl writes.
func x509MarshalEC(n *NodeCert) ([]byte, error) {
	der, err := x509.MarshalECPrivateKey(n.key)
	if err != nil {
		return nil, err
	}
	return pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: der}), nil
}
