package pki

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"fmt"
	"net"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestNewCA(t *testing.T) {
	ca := newTestCA(t, "blixard-1-99")
	c := ca.Certificate()
	if got, want := c.Subject.CommonName, "blixard cluster blixard-1-99 CA"; got != want {
		t.Errorf("CN = %q, want %q", got, want)
	}
	if got := ca.ClusterID(); got != "blixard-1-99" {
		t.Errorf("ClusterID = %q", got)
	}
	if !c.IsCA || !c.BasicConstraintsValid || c.MaxPathLen != 0 || !c.MaxPathLenZero {
		t.Errorf("basic constraints: IsCA %v valid %v maxPathLen %d zero %v; want a CA with path length 0",
			c.IsCA, c.BasicConstraintsValid, c.MaxPathLen, c.MaxPathLenZero)
	}
	if want := x509.KeyUsageCertSign | x509.KeyUsageCRLSign; c.KeyUsage != want {
		t.Errorf("KeyUsage = %v, want %v", c.KeyUsage, want)
	}
	if !c.NotBefore.Equal(t0.Add(-time.Minute)) {
		t.Errorf("NotBefore = %s, want now-1m", c.NotBefore)
	}
	if !c.NotAfter.Equal(t0.Add(DefaultCAValidity)) {
		t.Errorf("NotAfter = %s, want now+%s", c.NotAfter, DefaultCAValidity)
	}
	if c.SerialNumber.Sign() <= 0 || c.SerialNumber.BitLen() > 128 {
		t.Errorf("serial %s is not a positive 128-bit number", c.SerialNumber)
	}
	pub, ok := c.PublicKey.(*ecdsa.PublicKey)
	if !ok || pub.Curve != elliptic.P256() {
		t.Errorf("public key %T is not ECDSA P-256", c.PublicKey)
	}
	if err := c.CheckSignatureFrom(c); err != nil {
		t.Errorf("not self-signed: %v", err)
	}
	for _, s := range []string{ca.String(), fmt.Sprintf("%v", ca), fmt.Sprintf("%+v", ca), fmt.Sprintf("%#v", ca)} {
		if !strings.Contains(s, ca.Fingerprint()) || strings.Contains(s, ca.key.D.String()) {
			t.Errorf("formatted CA %q should name the fingerprint and not the key", s)
		}
	}
}

func TestNewCARefuses(t *testing.T) {
	tests := []struct {
		name      string
		clusterID string
		now       time.Time
		validity  time.Duration
	}{
		{"empty cluster id", "", t0, 0},
		{"long cluster id", strings.Repeat("x", MaxClusterIDLen+1), t0, 0},
		{"control character", "a\nb", t0, 0},
		{"invalid UTF-8", "a\xffb", t0, 0},
		{"zero now", "c1", time.Time{}, 0},
		{"negative validity", "c1", t0, -time.Hour},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if ca, err := NewCA(tc.clusterID, tc.now, tc.validity); err == nil {
				t.Fatalf("NewCA succeeded: %s", ca)
			}
		})
	}
}

func TestFingerprintsStableAndDistinct(t *testing.T) {
	a := newTestCA(t, "c1")
	b := newTestCA(t, "c1") // same cluster id, new key and serial
	if a.Fingerprint() != a.Fingerprint() {
		t.Fatal("fingerprint changes between calls")
	}
	if a.Fingerprint() == b.Fingerprint() {
		t.Fatal("two CAs share a fingerprint")
	}
	if !strings.HasPrefix(a.Fingerprint(), "sha256:") || len(a.Fingerprint()) != len("sha256:")+64 {
		t.Fatalf("fingerprint %q is not sha256:<64 hex>", a.Fingerprint())
	}
	if a.Fingerprint() != strings.ToLower(a.Fingerprint()) {
		t.Fatalf("fingerprint %q is not lower case", a.Fingerprint())
	}
	// Stable across a save and load: it is a hash of the DER, nothing else.
	dir := t.TempDir()
	if err := a.Save(dir); err != nil {
		t.Fatal(err)
	}
	loaded, err := LoadCA(dir)
	if err != nil {
		t.Fatal(err)
	}
	if loaded.Fingerprint() != a.Fingerprint() {
		t.Fatalf("fingerprint after load %s, before %s", loaded.Fingerprint(), a.Fingerprint())
	}
}

func TestIssueNode(t *testing.T) {
	ca := newTestCA(t, "c1")
	key, err := NewNodeKey()
	if err != nil {
		t.Fatal(err)
	}
	addrs := []string{"10.0.0.5:7000", "[fd00::1]:7000", "Node-5.Example.:7000", "node-5.example:7001", "localhost", "::1", "10.0.0.5:7002", "[fd00::2]"}
	now := t0.Add(time.Hour)
	cert, err := ca.IssueNode(5, addrs, &key.PublicKey, now, 0)
	if err != nil {
		t.Fatal(err)
	}
	id, err := NodeIDFromCert(cert)
	if err != nil || id != 5 {
		t.Fatalf("NodeIDFromCert = %d, %v; want 5", id, err)
	}
	if cert.Subject.CommonName != "blixard node 5" {
		t.Errorf("CN = %q", cert.Subject.CommonName)
	}
	if cert.IsCA {
		t.Error("a node certificate is a CA")
	}
	if cert.KeyUsage != x509.KeyUsageDigitalSignature {
		t.Errorf("KeyUsage = %v, want digitalSignature", cert.KeyUsage)
	}
	wantEKU := []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}
	if !slices.Equal(cert.ExtKeyUsage, wantEKU) {
		t.Errorf("ExtKeyUsage = %v, want %v", cert.ExtKeyUsage, wantEKU)
	}
	if want := []string{"node-5.example", "localhost"}; !slices.Equal(cert.DNSNames, want) {
		t.Errorf("DNSNames = %q, want %q", cert.DNSNames, want)
	}
	var ips []string
	for _, ip := range cert.IPAddresses {
		ips = append(ips, ip.String())
	}
	if want := []string{"10.0.0.5", "fd00::1", "::1", "fd00::2"}; !slices.Equal(ips, want) {
		t.Errorf("IPAddresses = %q, want %q", ips, want)
	}
	if !cert.NotBefore.Equal(now.Add(-time.Minute)) || !cert.NotAfter.Equal(now.Add(DefaultNodeValidity)) {
		t.Errorf("valid %s to %s, want now-1m to now+30d", cert.NotBefore, cert.NotAfter)
	}
	if DefaultNodeValidity != 30*24*time.Hour {
		t.Errorf("DefaultNodeValidity = %s, the issue says 30 days", DefaultNodeValidity)
	}
	if err := cert.CheckSignatureFrom(ca.Certificate()); err != nil {
		t.Errorf("not signed by the CA: %v", err)
	}
	// A host name SAN verifies like any TLS certificate, for tools that
	// check one.
	if err := cert.VerifyHostname("node-5.example"); err != nil {
		t.Errorf("VerifyHostname: %v", err)
	}
	if err := cert.VerifyHostname("10.0.0.5"); err != nil {
		t.Errorf("VerifyHostname(IP): %v", err)
	}
}

func TestIssueNodeValidityBounds(t *testing.T) {
	ca, err := NewCA("c1", t0, 48*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	key, _ := NewNodeKey()
	// Asked for longer than the CA has left: cut at the CA's expiry.
	cert, err := ca.IssueNode(1, nil, &key.PublicKey, t0.Add(24*time.Hour), 0)
	if err != nil {
		t.Fatal(err)
	}
	if !cert.NotAfter.Equal(ca.Certificate().NotAfter) {
		t.Errorf("NotAfter %s, want the CA's %s", cert.NotAfter, ca.Certificate().NotAfter)
	}
	// Issued in the CA's first minute: not valid before the CA.
	cert, err = ca.IssueNode(1, nil, &key.PublicKey, t0, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if cert.NotBefore.Before(ca.Certificate().NotBefore) {
		t.Errorf("NotBefore %s precedes the CA's %s", cert.NotBefore, ca.Certificate().NotBefore)
	}
	if !cert.NotAfter.Equal(t0.Add(time.Hour)) {
		t.Errorf("NotAfter %s, want now+1h", cert.NotAfter)
	}
}

func TestIssueNodeRefuses(t *testing.T) {
	ca := newTestCA(t, "c1")
	key, _ := NewNodeKey()
	p384, err := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name     string
		id       uint64
		addrs    []string
		pub      any
		now      time.Time
		validity time.Duration
		wantErr  string
	}{
		{name: "node id 0", id: 0, pub: &key.PublicKey, now: t0, wantErr: "node id 0"},
		{name: "P-384 key", id: 1, pub: &p384.PublicKey, now: t0, wantErr: "P-256"},
		{name: "not an ECDSA key", id: 1, pub: "key", now: t0, wantErr: "ECDSA"},
		{name: "zero now", id: 1, pub: &key.PublicKey, wantErr: "zero time"},
		{name: "negative validity", id: 1, pub: &key.PublicKey, now: t0, validity: -time.Second, wantErr: "negative"},
		{name: "CA expired", id: 1, pub: &key.PublicKey, now: t0.Add(DefaultCAValidity + time.Second), wantErr: "not valid at"},
		{name: "CA not yet valid", id: 1, pub: &key.PublicKey, now: t0.Add(-time.Hour), wantErr: "not valid at"},
		{name: "address without host", id: 1, addrs: []string{":7000"}, pub: &key.PublicKey, now: t0, wantErr: "no host"},
		{name: "empty address", id: 1, addrs: []string{""}, pub: &key.PublicKey, now: t0, wantErr: "no host"},
		{name: "IPv6 zone", id: 1, addrs: []string{"[fe80::1%eth0]:7000"}, pub: &key.PublicKey, now: t0, wantErr: "zone"},
		{name: "bad host name", id: 1, addrs: []string{"a_b:7000"}, pub: &key.PublicKey, now: t0, wantErr: "neither"},
		{name: "wildcard", id: 1, addrs: []string{"*.example:7000"}, pub: &key.PublicKey, now: t0, wantErr: "neither"},
		{name: "too many addresses", id: 1, addrs: make([]string, MaxAddrs+1), pub: &key.PublicKey, now: t0, wantErr: "more than"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ca.IssueNode(tc.id, tc.addrs, tc.pub, tc.now, tc.validity)
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("IssueNode error %v, want one mentioning %q", err, tc.wantErr)
			}
		})
	}
}

func TestVerifyNode(t *testing.T) {
	ca := newTestCA(t, "c1")
	other := newTestCA(t, "c1") // same name, different key: must not be confused
	node := newTestNode(t, ca, 3)
	foreign := newTestNode(t, other, 3)
	leaf := node.Leaf()
	tests := []struct {
		name    string
		leaf    *x509.Certificate
		roots   *x509.CertPool
		usage   x509.ExtKeyUsage
		now     time.Time
		wantErr string
	}{
		{name: "valid server", leaf: leaf, roots: PoolOf(ca.Certificate()), usage: x509.ExtKeyUsageServerAuth, now: t0},
		{name: "valid client", leaf: leaf, roots: PoolOf(ca.Certificate()), usage: x509.ExtKeyUsageClientAuth, now: t0.Add(29 * 24 * time.Hour)},
		{name: "another CA", leaf: foreign.Leaf(), roots: PoolOf(ca.Certificate()), usage: x509.ExtKeyUsageServerAuth, now: t0, wantErr: "unknown authority"},
		{name: "expired", leaf: leaf, roots: PoolOf(ca.Certificate()), usage: x509.ExtKeyUsageServerAuth, now: leaf.NotAfter.Add(time.Second), wantErr: "expired"},
		{name: "not yet valid", leaf: leaf, roots: PoolOf(ca.Certificate()), usage: x509.ExtKeyUsageServerAuth, now: leaf.NotBefore.Add(-time.Second), wantErr: "not yet valid"},
		{name: "wrong usage", leaf: leaf, roots: PoolOf(ca.Certificate()), usage: x509.ExtKeyUsageCodeSigning, now: t0, wantErr: "usage"},
		{name: "the CA itself", leaf: ca.Certificate(), roots: PoolOf(ca.Certificate()), usage: x509.ExtKeyUsageServerAuth, now: t0, wantErr: "CA certificate"},
		{name: "signed but names no node", leaf: forgeLeaf(t, ca), roots: PoolOf(ca.Certificate()), usage: x509.ExtKeyUsageServerAuth, now: t0, wantErr: "no blixard"},
		{name: "no pool", leaf: leaf, usage: x509.ExtKeyUsageServerAuth, now: t0, wantErr: "no trusted CA pool"},
		{name: "no certificate", roots: PoolOf(ca.Certificate()), usage: x509.ExtKeyUsageServerAuth, now: t0, wantErr: "no certificate"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			id, err := VerifyNode(tc.leaf, tc.roots, tc.usage, tc.now)
			if tc.wantErr == "" {
				if err != nil || id != 3 {
					t.Fatalf("VerifyNode = %d, %v; want 3", id, err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("VerifyNode = %d, %v; want an error mentioning %q", id, err, tc.wantErr)
			}
		})
	}
}

func TestRotationPoolTrustsBoth(t *testing.T) {
	oldCA := newTestCA(t, "c1")
	newCA := newTestCA(t, "c1")
	oldNode := newTestNode(t, oldCA, 1)
	newNode := newTestNode(t, newCA, 2)
	both := Bundle{newCA.Certificate(), oldCA.Certificate()}.Pool()
	for _, n := range []*NodeCert{oldNode, newNode} {
		if id, err := VerifyNode(n.Leaf(), both, x509.ExtKeyUsageClientAuth, t0); err != nil || id != n.NodeID() {
			t.Errorf("old+new pool: VerifyNode(node %d) = %d, %v", n.NodeID(), id, err)
		}
	}
	// After the overlap only the new CA is trusted.
	if _, err := VerifyNode(oldNode.Leaf(), PoolOf(newCA.Certificate()), x509.ExtKeyUsageClientAuth, t0); err == nil {
		t.Error("a certificate of the old CA verifies against the new CA alone")
	}
}

func TestNodeCertChecksItsParts(t *testing.T) {
	ca := newTestCA(t, "c1")
	other := newTestCA(t, "c1")
	n := newTestNode(t, ca, 4)
	strangerKey, _ := NewNodeKey()
	if _, err := NewNodeCert(n.Leaf(), n.Issuer(), strangerKey); err == nil || !strings.Contains(err.Error(), "does not match") {
		t.Errorf("a foreign key was accepted: %v", err)
	}
	if _, err := NewNodeCert(n.Leaf(), other.Certificate(), n.key); err == nil || !strings.Contains(err.Error(), "not signed") {
		t.Errorf("a wrong issuer was accepted: %v", err)
	}
	if _, err := NewNodeCert(ca.Certificate(), ca.Certificate(), ca.key); err == nil {
		t.Error("a CA certificate was accepted as a node certificate")
	}
	tc := n.TLSCertificate()
	if len(tc.Certificate) != 2 || tc.Leaf != n.Leaf() {
		t.Errorf("TLSCertificate chain has %d certificates, want leaf and CA", len(tc.Certificate))
	}
	for _, s := range []string{n.String(), fmt.Sprintf("%+v", n), fmt.Sprintf("%#v", n)} {
		if strings.Contains(s, n.key.D.String()) || !strings.Contains(s, "node 4") {
			t.Errorf("formatted NodeCert %q", s)
		}
	}
}

func TestSubjectAltNamesLoopbackForms(t *testing.T) {
	dns, ips, err := subjectAltNames([]string{"127.0.0.1:0", "[::ffff:127.0.0.1]:1", "127.0.0.1"})
	if err != nil {
		t.Fatal(err)
	}
	if len(dns) != 0 || len(ips) != 1 || !ips[0].Equal(net.IPv4(127, 0, 0, 1)) {
		t.Fatalf("got DNS %q, IPs %v; want only 127.0.0.1, once", dns, ips)
	}
}
