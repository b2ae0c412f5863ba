package pki

import (
	"crypto/sha256"
	"crypto/subtle"
	"crypto/x509"
	"encoding/hex"
	"fmt"
	"strings"
)

// fingerprintPrefix names the hash in a fingerprint's text form.
const fingerprintPrefix = "sha256:"

// Fingerprint is the SHA-256 of a certificate's DER encoding: what a join
// token pins the cluster CA by. Its text form is "sha256:<64 hex digits>".
type Fingerprint [sha256.Size]byte

// FingerprintOf returns cert's fingerprint.
func FingerprintOf(cert *x509.Certificate) Fingerprint { return sha256.Sum256(cert.Raw) }

// Fingerprint returns the CA certificate's fingerprint in text form.
func (ca *CA) Fingerprint() string { return FingerprintOf(ca.cert).String() }

// String returns "sha256:" and the lower-case hex of f.
func (f Fingerprint) String() string { return fingerprintPrefix + hex.EncodeToString(f[:]) }

// Equal compares two fingerprints in constant time.
func (f Fingerprint) Equal(g Fingerprint) bool { return subtle.ConstantTimeCompare(f[:], g[:]) == 1 }

// ParseFingerprint parses the text form of a fingerprint: "sha256:"
// followed by exactly 64 hex digits (either case).
func ParseFingerprint(s string) (Fingerprint, error) {
	var f Fingerprint
	digits, ok := strings.CutPrefix(s, fingerprintPrefix)
	if !ok {
		return f, fmt.Errorf("fingerprint %q does not start with %q", s, fingerprintPrefix)
	}
	if len(digits) != hex.EncodedLen(len(f)) {
		return f, fmt.Errorf("fingerprint %q has %d hex digits, want %d", s, len(digits), hex.EncodedLen(len(f)))
	}
	if _, err := hex.Decode(f[:], []byte(digits)); err != nil {
		return Fingerprint{}, fmt.Errorf("fingerprint %q: %w", s, err)
	}
	return f, nil
}
