package runtime

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"google.golang.org/grpc"

	apiv1 "github.com/blixard/blixard/api/v1"
	"github.com/blixard/blixard/api/v1/apiv1grpc"
	"github.com/blixard/blixard/internal/pki"
)

// certCheckEvery is how often a node looks at its certificate and the
// cluster's CA trust without being told they changed.
const certCheckEvery = time.Minute

// certRetryEvery is how soon a failed round is tried again.
const certRetryEvery = 2 * time.Second

// certPlan is what a node must do about its credentials, decided from its
// certificate, the certificate it may hold ready, and the CA trust.
type certPlan struct {
	// renew: get a certificate from the signing CA (the trust's first).
	renew bool
	// serveNext: present the ready certificate from now on.
	serveNext bool
}

// planCerts decides: in a rotation's TRUST phase a node gets a certificate
// from the new CA but keeps presenting its old one (clients may still
// trust only the old CA); from SERVE on it presents one from the signing
// CA; and whatever the phase, a certificate in the last third of its life
// is renewed.
func planCerts(leaf, next *x509.Certificate, signing *x509.Certificate, phase apiv1.CARotationPhase, now time.Time) certPlan {
	fromSigning := func(c *x509.Certificate) bool {
		return c != nil && signing != nil && c.CheckSignatureFrom(signing) == nil
	}
	var p certPlan
	switch {
	case signing == nil || fromSigning(leaf):
		p.renew = pki.NeedsRenewal(leaf, now)
	case phase == apiv1.CARotationPhase_CA_ROTATION_PHASE_TRUST:
		p.renew = !fromSigning(next) || pki.NeedsRenewal(next, now)
		// Better a certificate old-CA clients cannot check than one that
		// runs out: once the old one is due, present the new one early.
		p.serveNext = !p.renew && pki.NeedsRenewal(leaf, now)
	default:
		if fromSigning(next) && !pki.NeedsRenewal(next, now) {
			p.serveNext = true
		} else {
			p.renew = true
		}
	}
	return p
}

// certLoop keeps the node's credentials current: it adopts a rotated CA
// (voters), the cluster's trusted CAs, and renews the node's certificate
// as planCerts says, whenever the CA trust changes and every
// certCheckEvery. The log says when its rounds start failing (or fail
// otherwise), and when they work again.
func (n *Node) certLoop(ctx context.Context) {
	var upkeep streak
	for {
		wait := certCheckEvery
		err := n.checkCerts(ctx)
		switch {
		case ctx.Err() != nil:
		case err != nil:
			// Soon again: a voter may not have adopted a new CA yet, and a
			// rotation's phase may be short.
			_, changed := upkeep.fail(err)
			n.log.Log(ctx, levelIf(changed, slog.LevelWarn), "certificate upkeep failed; trying again",
				"err", err, "in", certRetryEvery, "failures", upkeep.failures)
			wait = certRetryEvery
		case upkeep.ok():
			n.log.Info("certificate upkeep works again")
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		case <-n.sec.trustChanged:
		}
	}
}

// checkCerts does one round of certLoop's work.
func (n *Node) checkCerts(ctx context.Context) error {
	sec := n.sec
	node, bundle, err := sec.current()
	if err != nil {
		return nil // still joining
	}
	trust := sec.view.Load().trust
	if trust.Phase != n.caPhase {
		n.log.Info("CA rotation phase changed", "phase", phaseName(trust.Phase), "was", phaseName(n.caPhase))
		n.caPhase = trust.Phase
	}
	var cas []*x509.Certificate
	for _, der := range trust.Certificates {
		c, err := x509.ParseCertificate(der)
		if err != nil {
			return fmt.Errorf("a CA certificate of the cluster's trust does not parse: %w", err)
		}
		cas = append(cas, c)
	}
	signing := node.Issuer()
	if len(cas) > 0 {
		signing = cas[0]
	}

	// A voter takes the new CA's key from the log, sealed with its own.
	sec.mu.RLock()
	ca := sec.ca
	sec.mu.RUnlock()
	if ca != nil && len(cas) > 0 && !bytes.Equal(ca.Certificate().Raw, cas[0].Raw) {
		if len(trust.SealedKey) == 0 {
			return fmt.Errorf("the cluster's CA is %s but this voter holds the key of %s, and no sealed key is left to open",
				pki.FingerprintOf(cas[0]), pki.FingerprintOf(ca.Certificate()))
		}
		next, err := ca.OpenRotated(cas[0], trust.SealedKey)
		if err != nil {
			return fmt.Errorf("open the rotated CA's key: %w", err)
		}
		if err := next.Save(sec.dir, cas[1:]...); err != nil {
			return err
		}
		sec.mu.Lock()
		sec.ca, sec.bundle = next, cas // together: Issue sends both
		sec.mu.Unlock()
		bundle = cas
		n.log.Info("adopted the cluster's new CA", "ca", pki.FingerprintOf(cas[0]).String())
	}
	// Every node trusts what the cluster trusts.
	if len(cas) > 0 && !sameCerts(bundle, cas) {
		if err := pki.SaveBundle(sec.dir, cas); err != nil {
			return err
		}
		sec.mu.Lock()
		sec.bundle = cas
		sec.mu.Unlock()
		n.log.Info("trusted CAs changed", "cas", len(cas), "phase", trust.Phase)
	}

	sec.mu.RLock()
	var nextLeaf *x509.Certificate
	if sec.next != nil {
		nextLeaf = sec.next.Leaf()
	}
	sec.mu.RUnlock()
	plan := planCerts(node.Leaf(), nextLeaf, signing, trust.Phase, time.Now())
	switch {
	case plan.serveNext:
		sec.mu.RLock()
		next := sec.next
		sec.mu.RUnlock()
		return n.useCert(next)
	case plan.renew:
		nc, err := n.renewCert(ctx, node, signing)
		if err != nil {
			return err
		}
		if trust.Phase == apiv1.CARotationPhase_CA_ROTATION_PHASE_TRUST && node.Leaf().CheckSignatureFrom(signing) != nil {
			// Held ready: clients may still trust only the old CA.
			sec.mu.Lock()
			sec.next = nc
			sec.mu.Unlock()
			n.log.Info("received a certificate from the new CA; presenting it once the rotation's serve phase begins",
				"expires", nc.Leaf().NotAfter)
			return nil
		}
		return n.useCert(nc)
	}
	return nil
}

// useCert makes nc the node's certificate, on disk and in every handshake
// from now on.
func (n *Node) useCert(nc *pki.NodeCert) error {
	if err := nc.Save(n.sec.dir); err != nil {
		return err
	}
	n.sec.mu.Lock()
	n.sec.node = nc
	if n.sec.next == nc {
		n.sec.next = nil
	}
	n.sec.mu.Unlock()
	n.log.Info("presenting a new certificate", "issuer", pki.FingerprintOf(nc.Issuer()).String(), "expires", nc.Leaf().NotAfter)
	return nil
}

// renewCert gets a certificate for the node's key from the CA signing:
// signed here if this voter holds it, else by a peer that does.
func (n *Node) renewCert(ctx context.Context, node *pki.NodeCert, signing *x509.Certificate) (*pki.NodeCert, error) {
	key, ok := node.TLSCertificate().PrivateKey.(*ecdsa.PrivateKey)
	if !ok {
		return nil, errors.New("the node key is not an ECDSA key")
	}
	csr, err := pki.NewCSR(n.cfg.ID, key)
	if err != nil {
		return nil, err
	}
	accept := func(certPEM []byte) (*pki.NodeCert, error) {
		certs, err := pki.ParseCerts(certPEM, 2)
		if err != nil {
			return nil, err
		}
		if err := certs[0].CheckSignatureFrom(signing); err != nil {
			return nil, fmt.Errorf("the certificate is not from the CA %s", pki.FingerprintOf(signing))
		}
		return pki.NewNodeCert(certs[0], signing, key)
	}
	n.sec.mu.RLock()
	local := n.sec.ca != nil && bytes.Equal(n.sec.ca.Certificate().Raw, signing.Raw)
	n.sec.mu.RUnlock()
	if local {
		certPEM, _, _, err := n.sec.Issue(csr, n.cfg.ID, n.addr, false)
		if err != nil {
			return nil, err
		}
		return accept(certPEM)
	}
	var errs []error
	for _, addr := range n.peerAddrs() {
		cc, err := grpc.NewClient(addr, grpc.WithTransportCredentials(n.sec.clientCredentials(n.sec.PeerAllowed)))
		if err != nil {
			errs = append(errs, err)
			continue
		}
		cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		resp, err := apiv1grpc.NewClusterServiceClient(cc).RenewCertificate(cctx, &apiv1.RenewCertificateRequest{Csr: csr})
		cancel()
		_ = cc.Close()
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", addr, err))
			continue
		}
		nc, err := accept(resp.GetCertificate())
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", addr, err))
			continue
		}
		return nc, nil
	}
	return nil, fmt.Errorf("renew the node certificate: no voter signed it: %w", errors.Join(errs...))
}

// phaseName is a rotation phase as the CLI names it: none, trust, serve.
func phaseName(p apiv1.CARotationPhase) string {
	return strings.ToLower(strings.TrimPrefix(p.String(), "CA_ROTATION_PHASE_"))
}

func sameCerts(a, b []*x509.Certificate) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if !bytes.Equal(a[i].Raw, b[i].Raw) {
			return false
		}
	}
	return true
}
