package pki

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
)

// File names inside a data directory.
const (
	// CACertFile holds the trusted CA certificates (a Bundle), PEM, mode
	// 0644. Where ca.key is present the certificate matching it is first.
	CACertFile = "ca.crt"
	// CAKeyFile holds the CA's private key (PKCS #8 PEM), mode 0600; only
	// on voters.
	CAKeyFile = "ca.key"
	// NodeCertFile holds the node's certificate followed by the CA
	// certificate that signed it, PEM, mode 0644.
	NodeCertFile = "node.crt"
	// NodeKeyFile holds the node's private key (PKCS #8 PEM), mode 0600.
	NodeKeyFile = "node.key"

	// MaxPEMFileBytes bounds a certificate or key file read from disk.
	MaxPEMFileBytes = 1 << 20

	certFileMode os.FileMode = 0o644
	keyFileMode  os.FileMode = 0o600
	dirMode      os.FileMode = 0o700
)

// ErrKeyPermissions is returned when a private key file can be read or
// written by its group or by others.
var ErrKeyPermissions = errors.New("private key file is accessible to group or others")

const (
	pemCertificate  = "CERTIFICATE"
	pemPrivateKey   = "PRIVATE KEY"    // PKCS #8, what this package writes
	pemECPrivateKey = "EC PRIVATE KEY" // SEC 1, as openssl writes; read only
)

// Save writes the CA into dir: ca.key (mode 0600) and ca.crt (mode 0644)
// holding the CA's certificate followed by alsoTrust, the other CA
// certificates to keep trusting (the old CA during a rotation). Each file
// is replaced atomically; ca.crt is written first, so a crash between the
// two leaves a pair that LoadCA reports as mismatched rather than a key
// without its certificate in place. dir is created (0700) if missing.
func (ca *CA) Save(dir string, alsoTrust ...*x509.Certificate) error {
	bundle := Bundle{ca.cert}
	for _, c := range alsoTrust {
		if c != nil && !FingerprintOf(c).Equal(FingerprintOf(ca.cert)) {
			bundle = append(bundle, c)
		}
	}
	if err := SaveBundle(dir, bundle); err != nil {
		return fmt.Errorf("save CA: %w", err)
	}
	keyPEM, err := encodeKey(ca.key)
	if err != nil {
		return fmt.Errorf("save CA: %w", err)
	}
	if err := writeFileAtomic(filepath.Join(dir, CAKeyFile), keyPEM, keyFileMode); err != nil {
		return fmt.Errorf("save CA: %w", err)
	}
	return nil
}

// LoadCA reads the CA from dir: the key from ca.key (refused if its mode
// lets group or others in: ErrKeyPermissions) and, from ca.crt, the CA
// certificate that matches it.
func LoadCA(dir string) (*CA, error) {
	keyPath := filepath.Join(dir, CAKeyFile)
	key, err := readKeyFile(keyPath)
	if err != nil {
		return nil, fmt.Errorf("load CA: %w", err)
	}
	bundle, err := LoadBundle(dir)
	if err != nil {
		return nil, fmt.Errorf("load CA: %w", err)
	}
	for _, c := range bundle {
		if key.PublicKey.Equal(c.PublicKey) {
			ca, err := newCA(c, key)
			if err != nil {
				return nil, fmt.Errorf("load CA from %s: %w", dir, err)
			}
			return ca, nil
		}
	}
	return nil, fmt.Errorf("load CA: %s matches none of the %d certificates in %s",
		keyPath, len(bundle), filepath.Join(dir, CACertFile))
}

// SaveBundle replaces dir/ca.crt (mode 0644) with the certificates of b.
func SaveBundle(dir string, b Bundle) error {
	if err := b.check(); err != nil {
		return fmt.Errorf("save %s: %w", CACertFile, err)
	}
	return writeFileAtomic(filepath.Join(dir, CACertFile), encodeCerts(b...), certFileMode)
}

// LoadBundle reads the trusted CA certificates from dir/ca.crt: one to
// MaxBundleCerts CA certificates, nothing else in the file.
func LoadBundle(dir string) (Bundle, error) {
	return LoadBundleFile(filepath.Join(dir, CACertFile))
}

// LoadBundleFile reads trusted CA certificates from the PEM file at path
// (a client's --ca): one to MaxBundleCerts CA certificates, nothing else.
func LoadBundleFile(path string) (Bundle, error) {
	data, err := readFile(path)
	if err != nil {
		return nil, err
	}
	certs, err := parseCerts(data, MaxBundleCerts)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	b := Bundle(certs)
	if err := b.check(); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return b, nil
}

// Save writes the node's credentials into dir: node.crt (the certificate
// then its CA's, mode 0644) and node.key (mode 0600), each replaced
// atomically, the certificate first; LoadNode reports a crash between the
// two as a mismatched pair. dir is created (0700) if missing.
func (n *NodeCert) Save(dir string) error {
	if err := writeFileAtomic(filepath.Join(dir, NodeCertFile), encodeCerts(n.leaf, n.issuer), certFileMode); err != nil {
		return fmt.Errorf("save node %d credentials: %w", n.id, err)
	}
	keyPEM, err := encodeKey(n.key)
	if err != nil {
		return fmt.Errorf("save node %d credentials: %w", n.id, err)
	}
	if err := writeFileAtomic(filepath.Join(dir, NodeKeyFile), keyPEM, keyFileMode); err != nil {
		return fmt.Errorf("save node %d credentials: %w", n.id, err)
	}
	return nil
}

// LoadNode reads a node's credentials from dir: node.key (refused if its
// mode lets group or others in: ErrKeyPermissions) and node.crt, checked
// with NewNodeCert.
func LoadNode(dir string) (*NodeCert, error) {
	key, err := readKeyFile(filepath.Join(dir, NodeKeyFile))
	if err != nil {
		return nil, fmt.Errorf("load node credentials: %w", err)
	}
	path := filepath.Join(dir, NodeCertFile)
	data, err := readFile(path)
	if err != nil {
		return nil, fmt.Errorf("load node credentials: %w", err)
	}
	certs, err := parseCerts(data, 2)
	if err != nil {
		return nil, fmt.Errorf("load node credentials: %s: %w", path, err)
	}
	if len(certs) != 2 {
		return nil, fmt.Errorf("load node credentials: %s holds %d certificate, want the node's and its CA's", path, len(certs))
	}
	n, err := NewNodeCert(certs[0], certs[1], key)
	if err != nil {
		return nil, fmt.Errorf("load node credentials from %s: %w", dir, err)
	}
	return n, nil
}

func encodeCerts(certs ...*x509.Certificate) []byte {
	var buf bytes.Buffer
	for _, c := range certs {
		_ = pem.Encode(&buf, &pem.Block{Type: pemCertificate, Bytes: c.Raw}) // a bytes.Buffer does not fail
	}
	return buf.Bytes()
}

func encodeKey(key *ecdsa.PrivateKey) ([]byte, error) {
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, fmt.Errorf("encode private key: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: pemPrivateKey, Bytes: der}), nil
}

// parseCerts decodes one to max PEM certificates and refuses anything
// else in data: other block types, headers, trailing bytes.
func parseCerts(data []byte, max int) ([]*x509.Certificate, error) {
	var certs []*x509.Certificate
	rest := data
	for {
		block, r := pem.Decode(rest)
		if block == nil {
			break
		}
		rest = r
		if block.Type != pemCertificate || len(block.Headers) != 0 {
			return nil, fmt.Errorf("PEM block %d is %q, want a plain %q", len(certs)+1, block.Type, pemCertificate)
		}
		if len(certs) == max {
			return nil, fmt.Errorf("more than %d certificates", max)
		}
		c, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			return nil, fmt.Errorf("certificate %d: %w", len(certs)+1, err)
		}
		certs = append(certs, c)
	}
	if len(bytes.TrimSpace(rest)) != 0 {
		return nil, errors.New("data after the last PEM certificate")
	}
	if len(certs) == 0 {
		return nil, errors.New("no PEM certificate")
	}
	return certs, nil
}

// parseKey decodes one PEM ECDSA P-256 private key. Errors never quote the
// file's content.
func parseKey(data []byte) (*ecdsa.PrivateKey, error) {
	block, rest := pem.Decode(data)
	if block == nil {
		return nil, errors.New("no PEM private key")
	}
	if len(bytes.TrimSpace(rest)) != 0 {
		return nil, errors.New("data after the PEM private key")
	}
	if len(block.Headers) != 0 {
		return nil, errors.New("encrypted or annotated PEM private keys are not supported")
	}
	var key *ecdsa.PrivateKey
	switch block.Type {
	case pemPrivateKey:
		k, err := x509.ParsePKCS8PrivateKey(block.Bytes)
		if err != nil {
			return nil, fmt.Errorf("PKCS #8 private key: %w", err)
		}
		ec, ok := k.(*ecdsa.PrivateKey)
		if !ok {
			return nil, fmt.Errorf("private key is %T, want ECDSA P-256", k)
		}
		key = ec
	case pemECPrivateKey:
		k, err := x509.ParseECPrivateKey(block.Bytes)
		if err != nil {
			return nil, fmt.Errorf("EC private key: %w", err)
		}
		key = k
	default:
		return nil, fmt.Errorf("PEM block is %q, want %q", block.Type, pemPrivateKey)
	}
	if key.Curve != elliptic.P256() {
		return nil, fmt.Errorf("private key is on curve %s, want P-256", key.Curve.Params().Name)
	}
	return key, nil
}

// readKeyFile reads a private key, refusing a file that is not regular or
// whose mode lets its group or others read or write it.
func readKeyFile(path string) (*ecdsa.PrivateKey, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("read private key: %w", err)
	}
	defer f.Close()
	info, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("read private key: %w", err)
	}
	if !info.Mode().IsRegular() {
		return nil, fmt.Errorf("read private key %s: not a regular file (%s)", path, info.Mode().Type())
	}
	if perm := info.Mode().Perm(); perm&0o077 != 0 {
		return nil, fmt.Errorf("read private key %s: mode %#o: %w (chmod 600 it)", path, perm, ErrKeyPermissions)
	}
	data, err := readLimited(f, path)
	if err != nil {
		return nil, err
	}
	key, err := parseKey(data)
	if err != nil {
		return nil, fmt.Errorf("read private key %s: %w", path, err)
	}
	return key, nil
}

func readFile(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("read: %w", err)
	}
	defer f.Close()
	return readLimited(f, path)
}

func readLimited(r io.Reader, path string) ([]byte, error) {
	data, err := io.ReadAll(io.LimitReader(r, MaxPEMFileBytes+1))
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	if len(data) > MaxPEMFileBytes {
		return nil, fmt.Errorf("read %s: larger than %d bytes", path, MaxPEMFileBytes)
	}
	return data, nil
}

// writeFileAtomic replaces path with data, mode perm, so that a crash
// leaves the old file or the new one whole: a temporary file in the same
// directory (created 0600 and exclusively by os.CreateTemp, so a key is
// never readable by others, not even briefly), set to perm, synced,
// renamed into place, and the directory synced.
func writeFileAtomic(path string, data []byte, perm fs.FileMode) (err error) {
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, dirMode); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	f, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	tmp := f.Name()
	closed := false
	defer func() {
		if err != nil {
			if !closed {
				f.Close()
			}
			os.Remove(tmp)
		}
	}()
	// Chmod, not the mode of creation, so that the umask cannot change it.
	if err := f.Chmod(perm); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if _, err := f.Write(data); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := f.Sync(); err != nil {
		return fmt.Errorf("sync %s: %w", path, err)
	}
	closed = true
	if err := f.Close(); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("sync %s: %w", dir, err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("sync %s: %w", dir, err)
	}
	return nil
}
