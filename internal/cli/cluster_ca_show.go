package cli

import (
	"bytes"
	"encoding/pem"
	"errors"
	"fmt"

	"github.com/spf13/cobra"

	apiv1 "github.com/blixard/blixard/api/v1"
)

// errNoCAs is the answer of a cluster whose record holds no CA.
var errNoCAs = errors.New("this cluster records no CA certificates (it runs --insecure, or was created before CA trust was replicated); use the node's <data-dir>/ca.crt")

func newClusterCAShowCommand(g *globalFlags) *cobra.Command {
	return &cobra.Command{
		Use:   "show",
		Short: "Print the CA certificates the cluster trusts, as a PEM bundle",
		Long: `Print every CA certificate the cluster trusts as PEM on stdout, newest
first, so that 'blixard cluster ca show > ca.crt' gives clients the bundle
to use as their CA file (--ca, or BLIXARD_CA). On stderr it notes each
CA's fingerprint, subject and expiry, and the CA rotation under way if
there is one. During a rotation the bundle holds the old and the new CA:
take it in phase trust, before nodes present certificates of the new CA.

A cluster run with --insecure, or created before CA trust was
replicated, records no CA: use the CA file in a node's data directory.

With -o json it prints the cluster record (ca_certificates in base64,
ca_rotation_phase, ca_rotation_next_unix_nano).`,
		Example: `  # Refresh the CA file clients use (during a rotation, in phase trust)
  blixard cluster ca show > ca.crt
  export BLIXARD_CA=$PWD/ca.crt`,
		Args: exactArgs(),
		RunE: func(cmd *cobra.Command, _ []string) error {
			s, err := g.open(cmd)
			if err != nil {
				return err
			}
			defer s.close()
			resp, err := s.client.GetClusterStatus(s.ctx, &apiv1.GetClusterStatusRequest{})
			if err != nil {
				return err
			}
			c := resp.GetCluster()
			if len(c.GetCaCertificates()) == 0 {
				return errNoCAs
			}
			certs, err := parseCAs(c.GetCaCertificates())
			if err != nil {
				return err
			}
			if s.json {
				err = printJSON(s.out, c)
			} else {
				var buf bytes.Buffer
				for _, cert := range certs {
					_ = pem.Encode(&buf, &pem.Block{Type: "CERTIFICATE", Bytes: cert.Raw})
				}
				_, err = buf.WriteTo(s.out)
			}
			if err != nil {
				return err
			}
			for i, cert := range certs {
				note := ""
				if i == 0 {
					note = " (signs node certificates)"
				}
				fmt.Fprintf(s.errOut, "CA %s %q, not after %s%s\n", caFingerprint(cert.Raw), cert.Subject.CommonName,
					timeText(cert.NotAfter.UnixNano()), note)
			}
			if r := caRotationText(c); r != "" {
				fmt.Fprintln(s.errOut, "CA rotation: "+r)
			}
			return nil
		},
	}
}
