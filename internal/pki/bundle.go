package pki

import (
	"crypto/x509"
	"errors"
	"fmt"
)

// MaxBundleCerts bounds how many CA certificates one bundle holds: during
// a rotation two are trusted at once; a few more leave room for mistakes
// to be cleaned up, not for an unbounded file.
const MaxBundleCerts = 8

// Bundle is the set of CA certificates a node or client trusts, in order.
// Outside a rotation it holds the cluster's one CA; during a rotation the
// new CA and the old one, so that certificates of both verify and no node
// is cut off while certificates are reissued. It is what ca.crt holds.
type Bundle []*x509.Certificate

// PoolOf returns a pool trusting exactly the given CA certificates.
func PoolOf(cas ...*x509.Certificate) *x509.CertPool {
	pool := x509.NewCertPool()
	for _, c := range cas {
		pool.AddCert(c)
	}
	return pool
}

// Pool returns a pool trusting every certificate of b.
func (b Bundle) Pool() *x509.CertPool { return PoolOf(b...) }

// Find returns the certificate of b with fingerprint f, or nil.
func (b Bundle) Find(f Fingerprint) *x509.Certificate {
	var found *x509.Certificate
	for _, c := range b {
		if FingerprintOf(c).Equal(f) {
			found = c
		}
	}
	return found
}

// check holds a bundle to what a trust file may contain: one to
// MaxBundleCerts CA certificates, none twice.
func (b Bundle) check() error {
	if len(b) == 0 {
		return errors.New("no CA certificate")
	}
	if len(b) > MaxBundleCerts {
		return fmt.Errorf("%d CA certificates, more than %d", len(b), MaxBundleCerts)
	}
	seen := map[Fingerprint]bool{}
	for _, c := range b {
		if c == nil {
			return errors.New("nil certificate")
		}
		if !c.IsCA || !c.BasicConstraintsValid {
			return fmt.Errorf("certificate %q is not a CA certificate", c.Subject.CommonName)
		}
		f := FingerprintOf(c)
		if seen[f] {
			return fmt.Errorf("CA certificate %s appears twice", f)
		}
		seen[f] = true
	}
	return nil
}
