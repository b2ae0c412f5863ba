package cli

import (
	"fmt"
	"time"

	"github.com/spf13/cobra"

	apiv1 "github.com/blixard/blixard/api/v1"
	"github.com/blixard/blixard/internal/pki"
)

// Bounds of --overlap; the cluster enforces the lower one too.
const (
	minCAOverlap = 5 * time.Second
	maxCAOverlap = 7 * 24 * time.Hour
)

func newClusterCARotateCommand(g *globalFlags) *cobra.Command {
	var overlap time.Duration
	cmd := &cobra.Command{
		Use:   "rotate",
		Short: "Replace the cluster's CA with a new one, in two overlapping phases",
		Long: `Start a rotation of the cluster's CA. The cluster makes a new CA and moves
through two phases, each lasting --overlap (default 1h, at least 5s, at
most 168h (7 days); part-seconds count as a whole second):

  trust: every node trusts both CAs and gets a certificate from the new
         one, but still presents its old one. Update clients' CA files
         now: 'blixard cluster ca show > ca.crt' prints both CAs.
  serve: nodes present their new certificates; both CAs are still
         trusted.

Then the old CA is dropped. A client still trusting only the old CA
fails from phase serve on. Only one rotation runs at a time, and rotating
needs an admin token. Follow it with 'blixard cluster status'.

It prints the new CA's fingerprint (sha256:...) alone on stdout and what
happens next, with times, on stderr. With -o json it prints the
RotateCaResponse: {"cluster": {...}}, whose ca_certificates begin with
the new CA.`,
		Example: `  blixard cluster ca rotate
  blixard cluster ca show > ca.crt    # at once: clients need the new CA before phase serve

  # A slower rotation, a day per phase
  blixard cluster ca rotate --overlap 24h`,
		Args: exactArgs(),
		RunE: func(cmd *cobra.Command, _ []string) error {
			if overlap < minCAOverlap || overlap > maxCAOverlap {
				return usageErrorf("--overlap must be at least 5s and at most 168h (7 days), got %s", overlap)
			}
			secs := int64((overlap + time.Second - 1) / time.Second)
			s, err := g.open(cmd)
			if err != nil {
				return err
			}
			defer s.close()
			resp, err := s.client.RotateCa(s.ctx, &apiv1.RotateCaRequest{OverlapSeconds: secs})
			if err != nil {
				return err
			}
			c := resp.GetCluster()
			if len(c.GetCaCertificates()) == 0 {
				return fmt.Errorf("the cluster started a CA rotation but sent no CA certificate")
			}
			cert, err := parseCAs(c.GetCaCertificates()[:1])
			if err != nil {
				return err
			}
			fingerprint := pki.FingerprintOf(cert[0]).String()
			if s.json {
				err = printJSON(s.out, resp)
			} else {
				_, err = fmt.Fprintln(s.out, fingerprint)
			}
			if err != nil {
				return err
			}
			fmt.Fprintf(s.errOut, "phase trust until %s: every node trusts both CAs and gets a certificate from the new one; "+
				"update clients' CA files now (blixard cluster ca show > ca.crt)\n", timeText(c.GetCaRotationNextUnixNano()))
			fmt.Fprintf(s.errOut, "then phase serve for another %s, after which the old CA is dropped\n",
				overlapText(time.Duration(secs)*time.Second))
			return nil
		},
	}
	cmd.Flags().DurationVar(&overlap, "overlap", time.Hour, "how long each phase lasts: at least 5s, at most 8760h")
	return cmd
}
