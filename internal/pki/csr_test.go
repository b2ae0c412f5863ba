package pki

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"errors"
	"strings"
	"testing"
)

func TestSignCSR(t *testing.T) {
	ca := newTestCA(t, "c1")
	key, err := NewNodeKey()
	if err != nil {
		t.Fatal(err)
	}
	csr, err := NewCSR(9, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := ca.SignCSR(csr, 9, []string{"10.1.1.9:7000"}, t0, 0)
	if err != nil {
		t.Fatal(err)
	}
	n, err := NewNodeCert(cert, ca.Certificate(), key)
	if err != nil {
		t.Fatalf("the signed certificate does not pair with the requesting key: %v", err)
	}
	if n.NodeID() != 9 {
		t.Fatalf("node id %d, want 9", n.NodeID())
	}
	if len(cert.IPAddresses) != 1 || cert.IPAddresses[0].String() != "10.1.1.9" {
		t.Fatalf("IP SANs %v, want the caller's address", cert.IPAddresses)
	}
}

func TestSignCSRRefuses(t *testing.T) {
	ca := newTestCA(t, "c1")
	key, _ := NewNodeKey()
	csr5, err := NewCSR(5, key)
	if err != nil {
		t.Fatal(err)
	}
	// The same request with its node URI changed from 5 to 6: it still
	// parses, and names node 6, but its signature no longer holds.
	tampered := bytes.Replace(csr5, []byte("blixard://node/5"), []byte("blixard://node/6"), 1)
	if bytes.Equal(tampered, csr5) {
		t.Fatal("the request does not contain its URI in clear")
	}
	p384, _ := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)

	tests := []struct {
		name    string
		csr     []byte
		id      uint64
		wantIs  error
		wantErr string
	}{
		{name: "mismatched node id", csr: csr5, id: 6, wantIs: ErrNodeIDMismatch},
		{name: "tampered request", csr: tampered, id: 6, wantErr: "bad signature"},
		{name: "trailing data", csr: append(bytes.Clone(csr5), 0), id: 5, wantErr: "trailing"},
		{name: "truncated", csr: csr5[:len(csr5)-10], id: 5, wantErr: "certificate request"},
		{name: "garbage", csr: []byte("not a csr"), id: 5, wantErr: "certificate request"},
		{name: "empty", csr: nil, id: 5, wantErr: "certificate request"},
		{name: "too large", csr: make([]byte, MaxCSRBytes+1), id: 5, wantErr: "more than"},
		{name: "node id 0", csr: csr5, id: 0, wantIs: ErrNodeIDMismatch},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cert, err := ca.SignCSR(tc.csr, tc.id, nil, t0, 0)
			if err == nil {
				t.Fatalf("SignCSR issued a certificate for %v", cert.URIs)
			}
			if tc.wantIs != nil && !errors.Is(err, tc.wantIs) {
				t.Fatalf("error %v, want %v", err, tc.wantIs)
			}
			if tc.wantErr != "" && !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("error %v, want one mentioning %q", err, tc.wantErr)
			}
		})
	}

	if _, err := NewCSR(0, key); err == nil {
		t.Error("NewCSR made a request for node 0")
	}
	if _, err := NewCSR(5, p384); err == nil || !strings.Contains(err.Error(), "P-256") {
		t.Errorf("NewCSR with a P-384 key: %v", err)
	}
}
