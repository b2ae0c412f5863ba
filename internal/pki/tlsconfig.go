package pki

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"time"
)

// ErrFingerprintMismatch is returned by a JoinTLS handshake when the server
// does not present the CA certificate the join token pins.
var ErrFingerprintMismatch = errors.New("server's CA does not match the pinned fingerprint")

// ServerTLS returns the server side of peer mTLS, for a port only nodes
// use: TLS 1.3 only; it presents cert (NodeCert.TLSCertificate); it
// requires a client certificate that verifies against pool (ECDSA
// signature, validity at Config.Time or the wall clock, client-auth usage)
// and names exactly one node, and then asks allowed(nodeID), whose error
// refuses the handshake: the caller refuses ids that were removed or
// revoked there. allowed must not be nil. Session tickets are off, so
// every connection is a full handshake that runs allowed.
func ServerTLS(cert tls.Certificate, pool *x509.CertPool, allowed func(nodeID uint64) error) *tls.Config {
	return serverTLS(cert, pool, allowed, tls.RequireAndVerifyClientCert)
}

// SharedServerTLS is ServerTLS for a port that serves both peers and API
// clients: a client certificate is optional (API clients authenticate with
// tokens), but one that is given must verify and pass allowed, exactly as
// with ServerTLS. Handlers that only nodes may call demand a node with
// PeerNodeID.
func SharedServerTLS(cert tls.Certificate, pool *x509.CertPool, allowed func(nodeID uint64) error) *tls.Config {
	return serverTLS(cert, pool, allowed, tls.VerifyClientCertIfGiven)
}

func serverTLS(cert tls.Certificate, pool *x509.CertPool, allowed func(uint64) error, auth tls.ClientAuthType) *tls.Config {
	if allowed == nil {
		panic("pki: server TLS config without an allowed function")
	}
	return &tls.Config{
		MinVersion:             tls.VersionTLS13,
		Certificates:           []tls.Certificate{cert},
		ClientAuth:             auth,
		ClientCAs:              pool,
		SessionTicketsDisabled: true,
		// crypto/tls has verified the chain by now (RequireAndVerifyClientCert
		// or VerifyClientCertIfGiven with ClientCAs); what is left is who.
		VerifyConnection: func(cs tls.ConnectionState) error {
			if len(cs.PeerCertificates) == 0 {
				if auth == tls.RequireAndVerifyClientCert {
					return errors.New("client presented no certificate")
				}
				return nil // an API client; its token is checked per request
			}
			if len(cs.VerifiedChains) == 0 || len(cs.VerifiedChains[0]) == 0 {
				return errors.New("client certificate was not verified")
			}
			leaf := cs.VerifiedChains[0][0]
			if leaf.IsCA {
				return fmt.Errorf("client certificate %q is a CA certificate", leaf.Subject.CommonName)
			}
			id, err := NodeIDFromCert(leaf)
			if err != nil {
				return fmt.Errorf("client certificate: %w", err)
			}
			if err := allowed(id); err != nil {
				return fmt.Errorf("node %d refused: %w", id, err)
			}
			return nil
		},
	}
}

// ClientTLS returns the client side of peer mTLS: TLS 1.3 only; it
// presents cert, and requires the server's certificate to verify against
// pool (server-auth usage, validity at Config.Time or the wall clock) and
// to name exactly one node, whose id it passes to allowed; allowed's error
// refuses the handshake. allowed must not be nil.
//
// Peers are identified by node id, not by host name: the host name is not
// checked, so a node keeps working when its address changes or is reached
// by another name. The price is that allowed must check that the id is the
// node the caller meant to reach, as well as that it is still a member.
// Set Config.Time, if at all, on the returned config itself: the
// verification reads it from there.
func ClientTLS(cert tls.Certificate, pool *x509.CertPool, allowed func(nodeID uint64) error) *tls.Config {
	if allowed == nil {
		panic("pki: ClientTLS without an allowed function")
	}
	cfg := verifyingClient(pool, allowed)
	cfg.Certificates = []tls.Certificate{cert}
	return cfg
}

// ClientOnlyTLS returns the TLS config of an API client: TLS 1.3 only, no
// client certificate (the client's token authenticates it), and the
// server's certificate must verify against pool and name a node. As with
// ClientTLS the host name is not checked: the cluster CA issues only node
// certificates and every node serves the API, so "a node of this cluster"
// is the identity that matters, whatever address the client dialed.
func ClientOnlyTLS(pool *x509.CertPool) *tls.Config {
	return verifyingClient(pool, func(uint64) error { return nil })
}

// verifyingClient returns a TLS 1.3 client config that verifies the
// server by chain and node id, then calls allowed.
func verifyingClient(pool *x509.CertPool, allowed func(uint64) error) *tls.Config {
	cfg := &tls.Config{MinVersion: tls.VersionTLS13}
	// crypto/tls cannot verify the chain without also checking a host
	// name, so its verification is switched off and VerifyConnection does
	// the whole of it: chain to pool, validity, usage, node id. It runs on
	// every handshake; nothing is accepted without it.
	cfg.InsecureSkipVerify = true
	cfg.VerifyConnection = func(cs tls.ConnectionState) error {
		if len(cs.PeerCertificates) == 0 {
			return errors.New("server presented no certificate")
		}
		id, err := VerifyNode(cs.PeerCertificates[0], pool, x509.ExtKeyUsageServerAuth, configTime(cfg))
		if err != nil {
			return fmt.Errorf("server certificate: %w", err)
		}
		if err := allowed(id); err != nil {
			return fmt.Errorf("server node %d refused: %w", id, err)
		}
		return nil
	}
	return cfg
}

// JoinTLS returns the TLS config a joining node uses before it has any
// certificate or CA: TLS 1.3 only, no client certificate, and the server
// must present, after its node certificate, a CA certificate whose
// fingerprint is pinned (from the join token; ErrFingerprintMismatch if
// none is) and a node certificate that verifies against that CA. Nothing
// is sent to a server that fails this.
func JoinTLS(pinned Fingerprint) *tls.Config {
	cfg := &tls.Config{MinVersion: tls.VersionTLS13}
	// As in verifyingClient: VerifyConnection does the whole verification.
	cfg.InsecureSkipVerify = true
	cfg.VerifyConnection = func(cs tls.ConnectionState) error {
		if len(cs.PeerCertificates) == 0 {
			return errors.New("server presented no certificate")
		}
		ca := Bundle(cs.PeerCertificates[1:]).Find(pinned)
		if ca == nil {
			return fmt.Errorf("join: %w (%s)", ErrFingerprintMismatch, pinned)
		}
		if !ca.IsCA || !ca.BasicConstraintsValid {
			return fmt.Errorf("join: pinned certificate %q is not a CA certificate", ca.Subject.CommonName)
		}
		if _, err := VerifyNode(cs.PeerCertificates[0], PoolOf(ca), x509.ExtKeyUsageServerAuth, configTime(cfg)); err != nil {
			return fmt.Errorf("join: server certificate: %w", err)
		}
		return nil
	}
	return cfg
}

// configTime is the time crypto/tls itself would verify at.
func configTime(cfg *tls.Config) time.Time {
	if cfg.Time != nil {
		return cfg.Time()
	}
	return time.Now()
}
