package pki

import (
	"testing"
	"time"
)

// FuzzParseCerts feeds the PEM decoders what a joining node reads from the
// join's answer (certificates, CA key) and a client from its --ca file.
// Nothing panics; what is accepted re-encodes to what decodes the same.
func FuzzParseCerts(f *testing.F) {
	ca, err := NewCA("fuzz", time.Now(), 0)
	if err != nil {
		f.Fatal(err)
	}
	node, err := ca.NewNode(1, []string{"127.0.0.1"}, time.Now(), 0)
	if err != nil {
		f.Fatal(err)
	}
	key, _ := ca.KeyPEM()
	f.Add(EncodeCerts(node.Leaf(), ca.Certificate()))
	f.Add(key)
	f.Add([]byte("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, data []byte) {
		if certs, err := ParseCerts(data, MaxBundleCerts); err == nil {
			if len(certs) == 0 || len(certs) > MaxBundleCerts {
				t.Fatalf("accepted %d certificates", len(certs))
			}
			again, err := ParseCerts(EncodeCerts(certs...), MaxBundleCerts)
			if err != nil || len(again) != len(certs) {
				t.Fatalf("re-encoded certificates do not parse the same: %v", err)
			}
			_ = Bundle(certs).check()
		}
		if k, err := ParseKey(data); err == nil {
			pemKey, err := EncodeKey(k)
			if err != nil {
				t.Fatalf("accepted key does not encode: %v", err)
			}
			if k2, err := ParseKey(pemKey); err != nil || !k2.Equal(k) {
				t.Fatalf("re-encoded key does not parse the same: %v", err)
			}
		}
		_, _ = CAFromPEM(data, data)
		_, _, _ = CSRKeyID(data)
	})
}
