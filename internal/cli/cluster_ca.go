package cli

import (
	"crypto/sha256"
	"crypto/x509"
	"fmt"
	"strings"
	"time"

	"github.com/spf13/cobra"

	apiv1 "github.com/blixard/blixard/api/v1"
	"github.com/blixard/blixard/internal/pki"
)

func newClusterCACommand(g *globalFlags) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "ca",
		Short: "Show and rotate the cluster's CA",
		Long: `Show and rotate the cluster's CA, which signs every node's certificate and
which clients trust (--ca, or BLIXARD_CA). 'blixard cluster ca show >
ca.crt' writes the CA certificates the cluster trusts, newest first, as a
PEM bundle a client can use as its CA file.

'blixard cluster ca rotate' replaces the CA in two phases, each lasting
the overlap (default 1h): in phase trust every node trusts the old and the
new CA and gets a certificate from the new one, but still presents its old
one, so clients must take the new bundle now; in phase serve nodes present
their new certificates and both CAs are still trusted; then the old CA is
dropped. Rotating needs an admin token.`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return cmd.Help() },
	}
	cmd.AddCommand(
		newClusterCAShowCommand(g),
		newClusterCARotateCommand(g),
	)
	return cmd
}

// caFingerprint is the fingerprint of a CA certificate (DER), as pki
// writes it and join tokens pin it: "sha256:<64 hex digits>".
func caFingerprint(der []byte) string { return pki.Fingerprint(sha256.Sum256(der)).String() }

// parseCAs parses the CA certificates (DER) of a cluster record.
func parseCAs(ders [][]byte) ([]*x509.Certificate, error) {
	certs := make([]*x509.Certificate, 0, len(ders))
	for i, der := range ders {
		cert, err := x509.ParseCertificate(der)
		if err != nil {
			return nil, fmt.Errorf("CA certificate %d of the cluster record does not parse: %w", i+1, err)
		}
		certs = append(certs, cert)
	}
	return certs, nil
}

// caRotationText shows the CA rotation under way, "" if none: "phase
// trust until 2026-01-02T04:04:06Z".
func caRotationText(c *apiv1.Cluster) string {
	if c.GetCaRotationPhase() == apiv1.CARotationPhase_CA_ROTATION_PHASE_NONE {
		return ""
	}
	return fmt.Sprintf("phase %s until %s", caPhaseText(c.GetCaRotationPhase()), timeText(c.GetCaRotationNextUnixNano()))
}

// caPhaseText shows a rotation phase short: "trust", "serve", "none".
func caPhaseText(p apiv1.CARotationPhase) string {
	name := strings.TrimPrefix(p.String(), "CA_ROTATION_PHASE_")
	return strings.ToLower(name)
}

// overlapText shows d without the zero minutes and seconds that
// Duration.String adds: "1h", "1h30m", "10m", "1m30s".
func overlapText(d time.Duration) string {
	s := d.String()
	if strings.HasSuffix(s, "m0s") {
		s = strings.TrimSuffix(s, "0s")
	}
	if strings.HasSuffix(s, "h0m") {
		s = strings.TrimSuffix(s, "0m")
	}
	return s
}
