package pki

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/ecdsa"
	"crypto/hkdf"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"errors"
	"fmt"
	"time"
)

// A CA rotation makes a new CA and hands its key to every voter through
// the replicated log, sealed so that only holders of the current CA key
// (the voters) can open it: AES-256-GCM under a key derived (HKDF-SHA256)
// from the current CA's private key. Workers, which hold no CA key, see
// only the ciphertext.

const sealInfo = "blixard CA rotation v1"

// Rotate makes the CA that succeeds ca, for the same cluster, valid from
// now for validity (DefaultCAValidity if 0), and its key sealed with ca's.
func (ca *CA) Rotate(now time.Time, validity time.Duration) (next *CA, sealed []byte, err error) {
	next, err = NewCA(ca.ClusterID(), now, validity)
	if err != nil {
		return nil, nil, fmt.Errorf("rotate CA: %w", err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(next.key)
	if err != nil {
		return nil, nil, fmt.Errorf("rotate CA: %w", err)
	}
	aead, err := ca.sealer()
	if err != nil {
		return nil, nil, err
	}
	nonce := make([]byte, aead.NonceSize())
	if _, err := rand.Read(nonce); err != nil {
		return nil, nil, fmt.Errorf("rotate CA: %w", err)
	}
	// The new CA's certificate is the additional data: the sealed key
	// opens only with the certificate it belongs to.
	sealed = aead.Seal(nonce, nonce, keyDER, next.cert.Raw)
	return next, sealed, nil
}

// OpenRotated opens the key that Rotate sealed for the CA certificate
// next, and returns that CA.
func (ca *CA) OpenRotated(next *x509.Certificate, sealed []byte) (*CA, error) {
	if next == nil {
		return nil, errors.New("open rotated CA key: no certificate")
	}
	aead, err := ca.sealer()
	if err != nil {
		return nil, err
	}
	if len(sealed) < aead.NonceSize()+aead.Overhead() || len(sealed) > 4096 {
		return nil, errors.New("open rotated CA key: sealed key has the wrong size")
	}
	keyDER, err := aead.Open(nil, sealed[:aead.NonceSize()], sealed[aead.NonceSize():], next.Raw)
	if err != nil {
		return nil, fmt.Errorf("open rotated CA key: %w", err)
	}
	k, err := x509.ParsePKCS8PrivateKey(keyDER)
	if err != nil {
		return nil, fmt.Errorf("open rotated CA key: %w", err)
	}
	key, ok := k.(*ecdsa.PrivateKey)
	if !ok {
		return nil, errors.New("open rotated CA key: not an ECDSA key")
	}
	return newCA(next, key)
}

func (ca *CA) sealer() (cipher.AEAD, error) {
	secret, err := ca.key.Bytes()
	if err != nil {
		return nil, fmt.Errorf("CA key: %w", err)
	}
	salt := FingerprintOf(ca.cert)
	k, err := hkdf.Key(sha256.New, secret, salt[:], sealInfo, 32)
	if err != nil {
		return nil, fmt.Errorf("derive sealing key: %w", err)
	}
	block, err := aes.NewCipher(k)
	if err != nil {
		return nil, err
	}
	return cipher.NewGCM(block)
}
