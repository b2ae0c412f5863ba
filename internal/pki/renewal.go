package pki

import (
	"crypto/x509"
	"time"
)

// NeedsRenewal reports whether cert is in the last third of its validity
// at now (or past it): the time to ask for a new one. For a 30-day node
// certificate that leaves 10 days to succeed.
func NeedsRenewal(cert *x509.Certificate, now time.Time) bool {
	lifetime := cert.NotAfter.Sub(cert.NotBefore)
	if lifetime <= 0 {
		return true
	}
	return !now.Before(cert.NotAfter.Add(-lifetime / 3))
}
