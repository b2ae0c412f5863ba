package pki

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"math/big"
	"strings"
	"testing"
	"time"
)

// sealWith seals plaintext as Rotate does, with ca's sealing key and aad
// as the additional data, so tests can hand OpenRotated what Rotate never
// writes.
func sealWith(t *testing.T, ca *CA, plaintext, aad []byte) []byte {
	t.Helper()
	aead, err := ca.sealer()
	if err != nil {
		t.Fatal(err)
	}
	nonce := make([]byte, aead.NonceSize())
	if _, err := rand.Read(nonce); err != nil {
		t.Fatal(err)
	}
	return aead.Seal(nonce, nonce, plaintext, aad)
}

// foreignCA is a CA whose subject is not of the form NewCA writes, so
// that ClusterID is "".
func foreignCA(t *testing.T) *CA {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serialOrDie(t),
		Subject:               pkix.Name{CommonName: "someone else's CA"},
		NotBefore:             t0.Add(-time.Minute),
		NotAfter:              t0.Add(time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	ca, err := newCA(cert, key)
	if err != nil {
		t.Fatal(err)
	}
	return ca
}

func serialOrDie(t *testing.T) *big.Int {
	t.Helper()
	s, err := newSerial()
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestRotateRoundTrip(t *testing.T) {
	for _, tc := range []struct {
		name      string
		clusterID string
		now       time.Time
		validity  time.Duration
		wantAfter time.Time
	}{
		{"default validity", "c1", t0.Add(time.Hour), 0, t0.Add(time.Hour + DefaultCAValidity)},
		{"chosen validity", "blixard-1-99", t0.Add(24 * time.Hour), 48 * time.Hour, t0.Add(72 * time.Hour)},
		{"unicode cluster id", "clüster", t0, time.Hour, t0.Add(time.Hour)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cur := newTestCA(t, tc.clusterID)
			next, sealed, err := cur.Rotate(tc.now, tc.validity)
			if err != nil {
				t.Fatalf("Rotate: %v", err)
			}
			if got := next.ClusterID(); got != tc.clusterID {
				t.Errorf("next.ClusterID = %q, want %q", got, tc.clusterID)
			}
			nc := next.Certificate()
			if bytes.Equal(nc.Raw, cur.Certificate().Raw) || next.key.Equal(cur.key) {
				t.Fatal("Rotate returned the current CA, not a new one")
			}
			if !nc.NotBefore.Equal(tc.now.Add(-backdate)) || !nc.NotAfter.Equal(tc.wantAfter) {
				t.Errorf("next valid %s to %s, want %s to %s", nc.NotBefore, nc.NotAfter, tc.now.Add(-backdate), tc.wantAfter)
			}

			// The sealed key travels as the certificate's DER would: parse
			// it back, as a voter reading the log does.
			wire, err := x509.ParseCertificate(nc.Raw)
			if err != nil {
				t.Fatal(err)
			}
			opened, err := cur.OpenRotated(wire, sealed)
			if err != nil {
				t.Fatalf("OpenRotated: %v", err)
			}
			if !bytes.Equal(opened.Certificate().Raw, nc.Raw) || !opened.key.Equal(next.key) {
				t.Fatal("OpenRotated returned another CA than Rotate made")
			}
			if opened.ClusterID() != tc.clusterID {
				t.Errorf("opened.ClusterID = %q, want %q", opened.ClusterID(), tc.clusterID)
			}

			// The opened key signs certificates that verify against the new
			// CA's certificate, and against it only.
			node, err := opened.NewNode(7, []string{"127.0.0.1"}, tc.now, time.Hour)
			if err != nil {
				t.Fatalf("NewNode with the opened CA: %v", err)
			}
			if id, err := VerifyNode(node.Leaf(), PoolOf(nc), x509.ExtKeyUsageServerAuth, tc.now); err != nil || id != 7 {
				t.Errorf("VerifyNode against next = %d, %v; want 7", id, err)
			}
			if _, err := VerifyNode(node.Leaf(), PoolOf(cur.Certificate()), x509.ExtKeyUsageServerAuth, tc.now); err == nil {
				t.Error("a certificate of the new CA verifies against the old CA")
			}
		})
	}
}

func TestRotateIsFreshEachTime(t *testing.T) {
	cur := newTestCA(t, "c1")
	a, sa, err := cur.Rotate(t0, 0)
	if err != nil {
		t.Fatal(err)
	}
	b, sb, err := cur.Rotate(t0, 0)
	if err != nil {
		t.Fatal(err)
	}
	if a.key.Equal(b.key) || bytes.Equal(a.Certificate().Raw, b.Certificate().Raw) {
		t.Error("two rotations made the same CA")
	}
	aead, err := cur.sealer()
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Equal(sa[:aead.NonceSize()], sb[:aead.NonceSize()]) {
		t.Error("two rotations sealed with the same nonce")
	}
	// Each sealed key opens with its own certificate only.
	if _, err := cur.OpenRotated(a.Certificate(), sb); err == nil {
		t.Error("b's sealed key opened with a's certificate")
	}
}

func TestRotateRefuses(t *testing.T) {
	for _, tc := range []struct {
		name     string
		ca       func(*testing.T) *CA
		now      time.Time
		validity time.Duration
		wantErr  string
	}{
		{"zero time", func(t *testing.T) *CA { return newTestCA(t, "c1") }, time.Time{}, 0, "zero time"},
		{"negative validity", func(t *testing.T) *CA { return newTestCA(t, "c1") }, t0, -time.Hour, "negative"},
		{"CA of no cluster", foreignCA, t0, 0, "cluster id is empty"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			next, sealed, err := tc.ca(t).Rotate(tc.now, tc.validity)
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) || !strings.HasPrefix(err.Error(), "rotate CA: ") {
				t.Fatalf("Rotate = %v, want an error %q", err, tc.wantErr)
			}
			if next != nil || sealed != nil {
				t.Fatalf("Rotate refused but returned %v, %d sealed bytes", next, len(sealed))
			}
		})
	}
}

// TestRotateSealsTheKey: the log carries no plaintext of the new key.
func TestRotateSealsTheKey(t *testing.T) {
	cur := newTestCA(t, "c1")
	next, sealed, err := cur.Rotate(t0, 0)
	if err != nil {
		t.Fatal(err)
	}
	pkcs8, err := x509.MarshalPKCS8PrivateKey(next.key)
	if err != nil {
		t.Fatal(err)
	}
	sec1, err := x509.MarshalECPrivateKey(next.key)
	if err != nil {
		t.Fatal(err)
	}
	scalar, err := next.key.Bytes()
	if err != nil {
		t.Fatal(err)
	}
	pemKey, err := next.KeyPEM()
	if err != nil {
		t.Fatal(err)
	}
	for name, plain := range map[string][]byte{"PKCS #8 DER": pkcs8, "SEC 1 DER": sec1, "raw scalar": scalar, "PEM": pemKey} {
		if bytes.Contains(sealed, plain) {
			t.Errorf("the sealed bytes contain the new key's %s", name)
		}
	}
	// Nonce, the PKCS #8 key, the tag: nothing else.
	aead, err := cur.sealer()
	if err != nil {
		t.Fatal(err)
	}
	if want := aead.NonceSize() + len(pkcs8) + aead.Overhead(); len(sealed) != want {
		t.Errorf("sealed key is %d bytes, want %d", len(sealed), want)
	}
}

func TestOpenRotatedRefuses(t *testing.T) {
	cur := newTestCA(t, "c1")
	next, sealed, err := cur.Rotate(t0, 0)
	if err != nil {
		t.Fatal(err)
	}
	nextCert := next.Certificate()
	sameCluster := newTestCA(t, "c1")
	otherNext, _, err := cur.Rotate(t0, 0)
	if err != nil {
		t.Fatal(err)
	}
	aead, err := cur.sealer()
	if err != nil {
		t.Fatal(err)
	}
	min := aead.NonceSize() + aead.Overhead()

	flip := func(i int) []byte {
		b := bytes.Clone(sealed)
		b[i] ^= 0x01
		return b
	}
	edKey := func() []byte {
		_, k, err := ed25519.GenerateKey(rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		der, err := x509.MarshalPKCS8PrivateKey(k)
		if err != nil {
			t.Fatal(err)
		}
		return der
	}
	strangerKey := func() []byte {
		k, err := NewNodeKey()
		if err != nil {
			t.Fatal(err)
		}
		der, err := x509.MarshalPKCS8PrivateKey(k)
		if err != nil {
			t.Fatal(err)
		}
		return der
	}
	// A leaf signed by next: not a CA certificate, though its key is.
	leafOfNext := forgeLeaf(t, next, "blixard://node/1")

	for _, tc := range []struct {
		name    string
		opener  *CA
		cert    *x509.Certificate
		sealed  []byte
		wantErr string
	}{
		{"another CA of the same cluster opens", sameCluster, nextCert, sealed, "message authentication failed"},
		{"the new CA opens its own key", next, nextCert, sealed, "message authentication failed"},
		{"another certificate (additional data)", cur, otherNext.Certificate(), sealed, "message authentication failed"},
		{"the current CA's certificate", cur, cur.Certificate(), sealed, "message authentication failed"},
		{"nonce tampered", cur, nextCert, flip(0), "message authentication failed"},
		{"ciphertext tampered", cur, nextCert, flip(aead.NonceSize() + 5), "message authentication failed"},
		{"tag tampered", cur, nextCert, flip(len(sealed) - 1), "message authentication failed"},
		{"truncated by a byte", cur, nextCert, sealed[:len(sealed)-1], "message authentication failed"},
		{"truncated to nonce and tag", cur, nextCert, sealed[:min], "message authentication failed"},
		{"shorter than nonce and tag", cur, nextCert, sealed[:min-1], "wrong size"},
		{"empty", cur, nextCert, nil, "wrong size"},
		{"trailing byte", cur, nextCert, append(bytes.Clone(sealed), 0), "message authentication failed"},
		{"at the size limit", cur, nextCert, make([]byte, 4096), "message authentication failed"},
		{"over the size limit", cur, nextCert, append(bytes.Clone(sealed), make([]byte, 4096)...), "wrong size"},
		{"sealed garbage", cur, nextCert, sealWith(t, cur, []byte("not a key"), nextCert.Raw), "open rotated CA key: asn1"},
		{"sealed Ed25519 key", cur, nextCert, sealWith(t, cur, edKey(), nextCert.Raw), "not an ECDSA key"},
		{"sealed key of another certificate", cur, nextCert, sealWith(t, cur, strangerKey(), nextCert.Raw), "does not match"},
		{"sealed for a leaf", cur, leafOfNext, sealWith(t, cur, mustPKCS8(t, next.key), leafOfNext.Raw), "not a CA certificate"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := tc.opener.OpenRotated(tc.cert, tc.sealed)
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("OpenRotated = %v, %v; want an error %q", got, err, tc.wantErr)
			}
			if got != nil {
				t.Fatalf("OpenRotated refused but returned %v", got)
			}
		})
	}

	// The refusals tampered with copies: the real sealed key still opens.
	if _, err := cur.OpenRotated(nextCert, sealed); err != nil {
		t.Fatalf("OpenRotated after the refusals: %v", err)
	}
}

func mustPKCS8(t *testing.T, k *ecdsa.PrivateKey) []byte {
	t.Helper()
	der, err := x509.MarshalPKCS8PrivateKey(k)
	if err != nil {
		t.Fatal(err)
	}
	return der
}

// TestRotateChain: a rotated CA rotates again, and each generation opens
// only its successor's key.
func TestRotateChain(t *testing.T) {
	gen0 := newTestCA(t, "c1")
	gen1, s1, err := gen0.Rotate(t0, 0)
	if err != nil {
		t.Fatal(err)
	}
	opened1, err := gen0.OpenRotated(gen1.Certificate(), s1)
	if err != nil {
		t.Fatal(err)
	}
	gen2, s2, err := opened1.Rotate(t0.Add(time.Hour), 0)
	if err != nil {
		t.Fatal(err)
	}
	if gen2.ClusterID() != "c1" {
		t.Errorf("second rotation's cluster id = %q", gen2.ClusterID())
	}
	if _, err := gen1.OpenRotated(gen2.Certificate(), s2); err != nil {
		t.Errorf("gen1 cannot open gen2's key: %v", err)
	}
	if _, err := gen0.OpenRotated(gen2.Certificate(), s2); err == nil {
		t.Error("gen0 opened gen2's key, sealed with gen1's")
	}
}
