package pki

import (
	"crypto/ecdsa"
	"crypto/x509"
	"fmt"
	"path/filepath"
)

// The PEM forms that a join or a renewal carries over the network: what
// the signing node sends and the joining node reads back, with the same
// strict parsing as the files.

// EncodeCerts is certs as PEM.
func EncodeCerts(certs ...*x509.Certificate) []byte { return encodeCerts(certs...) }

// ParseCerts reads one to max PEM certificates and nothing else.
func ParseCerts(data []byte, max int) ([]*x509.Certificate, error) {
	if len(data) > MaxPEMFileBytes {
		return nil, fmt.Errorf("%d bytes of certificates, more than %d", len(data), MaxPEMFileBytes)
	}
	return parseCerts(data, max)
}

// EncodeKey is key as PKCS #8 PEM.
func EncodeKey(key *ecdsa.PrivateKey) ([]byte, error) { return encodeKey(key) }

// ParseKey reads a P-256 private key in PEM.
func ParseKey(data []byte) (*ecdsa.PrivateKey, error) {
	if len(data) > MaxPEMFileBytes {
		return nil, fmt.Errorf("%d bytes of key, more than %d", len(data), MaxPEMFileBytes)
	}
	return parseKey(data)
}

// KeyPEM is the CA's private key as PEM, for a voter joining the cluster;
// never log it.
func (ca *CA) KeyPEM() ([]byte, error) { return encodeKey(ca.key) }

// SaveNodeKey writes a node's key alone to dir/node.key (mode 0600): a
// joining node keeps it before it asks for its certificate, so that a
// restart asks again for the same key.
func SaveNodeKey(dir string, key *ecdsa.PrivateKey) error {
	keyPEM, err := encodeKey(key)
	if err != nil {
		return err
	}
	return writeFileAtomic(filepath.Join(dir, NodeKeyFile), keyPEM, keyFileMode)
}

// LoadNodeKey reads dir/node.key (refused if group or others may read it).
func LoadNodeKey(dir string) (*ecdsa.PrivateKey, error) {
	return readKeyFile(filepath.Join(dir, NodeKeyFile))
}

// CAFromPEM makes a CA of a certificate and key that a joining voter was
// sent.
func CAFromPEM(certPEM, keyPEM []byte) (*CA, error) {
	certs, err := ParseCerts(certPEM, MaxBundleCerts)
	if err != nil {
		return nil, err
	}
	key, err := ParseKey(keyPEM)
	if err != nil {
		return nil, err
	}
	for _, c := range certs {
		if key.PublicKey.Equal(c.PublicKey) {
			return newCA(c, key)
		}
	}
	return nil, fmt.Errorf("the CA key matches none of the %d CA certificates", len(certs))
}
