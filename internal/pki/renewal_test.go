package pki

import (
	"crypto/x509"
	"testing"
	"time"
)

func TestNeedsRenewal(t *testing.T) {
	start := t0
	cert := &x509.Certificate{NotBefore: start, NotAfter: start.Add(30 * 24 * time.Hour)}
	renewAt := start.Add(20 * 24 * time.Hour)
	tests := []struct {
		name string
		cert *x509.Certificate
		now  time.Time
		want bool
	}{
		{"before it starts", cert, start.Add(-time.Hour), false},
		{"just issued", cert, start, false},
		{"half way", cert, start.Add(15 * 24 * time.Hour), false},
		{"just before the last third", cert, renewAt.Add(-time.Second), false},
		{"at the last third", cert, renewAt, true},
		{"inside the last third", cert, renewAt.Add(5 * 24 * time.Hour), true},
		{"expired", cert, cert.NotAfter.Add(time.Hour), true},
		{"no lifetime", &x509.Certificate{NotBefore: start, NotAfter: start}, start.Add(-time.Hour), true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := NeedsRenewal(tc.cert, tc.now); got != tc.want {
				t.Fatalf("NeedsRenewal = %v, want %v", got, tc.want)
			}
		})
	}

	// A real node certificate, issued for the default 30 days.
	n := newTestNode(t, newTestCA(t, "c1"), 1)
	if NeedsRenewal(n.Leaf(), t0.Add(19*24*time.Hour)) || !NeedsRenewal(n.Leaf(), t0.Add(21*24*time.Hour)) {
		t.Error("a 30-day node certificate should need renewal between day 19 and day 21")
	}
}
