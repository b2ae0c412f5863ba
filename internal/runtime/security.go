package runtime

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/peer"

	apiv1 "github.com/blixard/blixard/api/v1"
	"github.com/blixard/blixard/internal/authz"
	"github.com/blixard/blixard/internal/pki"
	"github.com/blixard/blixard/internal/state"
)

// AdminTokenFile is where a bootstrapping node writes the first admin
// token (mode 0600).
const AdminTokenFile = "admin.token"

// security is a secure node's credentials and access checks: its
// certificate, the CA certificates it trusts, the CA itself on a voter,
// and a view of the replicated state's tokens and removed nodes. It serves
// the API (server.Security), the TLS configs and the transport's peer
// checks; it is safe for concurrent use.
type security struct {
	dir string
	now func() time.Time

	mu     sync.RWMutex
	node   *pki.NodeCert // nil until a joining node has its certificate
	bundle pki.Bundle
	ca     *pki.CA // nil on a worker

	view atomic.Pointer[securityView]
	// next is a certificate from a new CA held ready during a rotation's
	// TRUST phase (under mu); trustChanged pokes the certificate loop.
	next         *pki.NodeCert
	trustChanged chan struct{}
}

// securityView is what the access checks read of the replicated state,
// rebuilt when its SecurityVersion changes.
type securityView struct {
	// st and version: the state and its SecurityVersion the view was
	// built from (a snapshot installed replaces the state).
	st      *state.State
	version uint64
	tokens  map[string]*apiv1.Token // by kind and id: see tokenIndex
	removed map[uint64]bool
	trust   state.CATrust
}

func tokenIndex(kind apiv1.TokenKind, id string) string { return kind.String() + "/" + id }

func newSecurity(dir string) *security {
	s := &security{dir: dir, now: time.Now, trustChanged: make(chan struct{}, 1)}
	s.view.Store(&securityView{tokens: map[string]*apiv1.Token{}, removed: map[uint64]bool{}})
	return s
}

// refresh rebuilds the view from the state if it changed. Called by the
// goroutine that owns the core, after each Advance.
func (s *security) refresh(st *state.State) {
	if v := s.view.Load(); v.st == st && v.version == st.SecurityVersion() {
		return
	}
	v := &securityView{st: st, version: st.SecurityVersion(), tokens: map[string]*apiv1.Token{}, removed: map[uint64]bool{}}
	for _, t := range st.Tokens(apiv1.TokenKind_TOKEN_KIND_UNSPECIFIED) {
		v.tokens[tokenIndex(t.GetKind(), t.GetId())] = t
	}
	for _, id := range st.Cluster().GetMembership().GetRemoved() {
		v.removed[id] = true
	}
	v.trust = st.CATrust()
	s.view.Store(v)
	select {
	case s.trustChanged <- struct{}{}:
	default:
	}
}

// lookup finds the record of a token and checks its secret and expiry.
func (s *security) lookup(tok string, kind apiv1.TokenKind) (*apiv1.Token, error) {
	sec, err := authz.ParseToken(tok)
	if err != nil {
		return nil, err
	}
	if sec.Kind != kind {
		if kind == apiv1.TokenKind_TOKEN_KIND_JOIN {
			return nil, errors.New("that is an ACL token, not a join token")
		}
		return nil, errors.New("that is a join token, not an ACL token")
	}
	rec, ok := s.view.Load().tokens[tokenIndex(kind, sec.ID)]
	if !ok || !sec.Matches(rec) {
		return nil, fmt.Errorf("token %s is not known to this node (revoked, or never made)", sec.ID)
	}
	if exp := rec.GetExpiresUnixNano(); exp != 0 && s.now().UnixNano() >= exp {
		return nil, fmt.Errorf("token %s expired at %s", sec.ID, time.Unix(0, exp).UTC().Format(time.RFC3339))
	}
	return rec, nil
}

// ACLRole implements server.Security.
func (s *security) ACLRole(tok string) (authz.Role, error) {
	rec, err := s.lookup(tok, apiv1.TokenKind_TOKEN_KIND_ACL)
	if err != nil {
		return authz.RoleNone, err
	}
	return authz.RoleOf(rec.GetAccessRole()), nil
}

// JoinToken implements server.Security.
func (s *security) JoinToken(tok string) (*apiv1.Token, error) {
	return s.lookup(tok, apiv1.TokenKind_TOKEN_KIND_JOIN)
}

// PeerAllowed implements server.Security and is the TLS configs' check of
// the other end: a removed node's certificate connects no more.
func (s *security) PeerAllowed(id uint64) error {
	if s.view.Load().removed[id] {
		return fmt.Errorf("node %d was removed from the cluster", id)
	}
	return nil
}

// CAFingerprint implements server.Security: the CA that issued the
// certificate this node presents, which a joining node will see (during a
// CA rotation's trust phase, the old one).
func (s *security) CAFingerprint() pki.Fingerprint {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.node != nil {
		return pki.FingerprintOf(s.node.Issuer())
	}
	if s.ca != nil {
		return pki.FingerprintOf(s.ca.Certificate())
	}
	return pki.Fingerprint{}
}

// Issue implements server.Security.
func (s *security) Issue(csr []byte, id uint64, addr string, withCAKey bool) (cert, cas, caKey []byte, err error) {
	s.mu.RLock()
	ca, bundle := s.ca, s.bundle
	s.mu.RUnlock()
	if err := s.signing(ca); err != nil {
		return nil, nil, nil, err
	}
	leaf, err := ca.SignCSR(csr, id, certAddrs(addr), s.now(), pki.DefaultNodeValidity)
	if err != nil {
		return nil, nil, nil, err
	}
	if withCAKey {
		if caKey, err = ca.KeyPEM(); err != nil {
			return nil, nil, nil, err
		}
	}
	return pki.EncodeCerts(leaf, ca.Certificate()), pki.EncodeCerts(bundle...), caKey, nil
}

// RotateCA implements server.Security: the CA to succeed this voter's.
func (s *security) RotateCA() (cert, sealed []byte, err error) {
	s.mu.RLock()
	ca := s.ca
	s.mu.RUnlock()
	if err := s.signing(ca); err != nil {
		return nil, nil, err
	}
	next, sealed, err := ca.Rotate(s.now(), pki.DefaultCAValidity)
	if err != nil {
		return nil, nil, err
	}
	return next.Certificate().Raw, sealed, nil
}

// signing reports why ca may not sign for the cluster: none held (a
// worker), or not the CA the cluster's trust names first (a voter that has
// not yet adopted a rotation's new CA).
func (s *security) signing(ca *pki.CA) error {
	if ca == nil {
		return errors.New("this node holds no CA key (only voters do)")
	}
	if t := s.view.Load().trust.Certificates; len(t) > 0 && !bytes.Equal(t[0], ca.Certificate().Raw) {
		return errors.New("this voter has not yet adopted the cluster's current CA; retry")
	}
	return nil
}

// certAddrs are the subject alternative names of a node at addr: its
// host (clients that check host names, such as grpc tools, then accept
// it), and loopback.
func certAddrs(addr string) []string {
	out := []string{"localhost", "127.0.0.1"}
	if host, _, err := net.SplitHostPort(addr); err == nil && host != "" && host != "localhost" && host != "127.0.0.1" {
		out = append(out, host)
	}
	return out
}

// current is the node's certificate and the trusted CAs; an error before
// a joining node has its certificate.
func (s *security) current() (*pki.NodeCert, pki.Bundle, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.node == nil {
		return nil, nil, errors.New("this node has no certificate yet (it is joining)")
	}
	return s.node, s.bundle, nil
}

// serverTLS is the node's one port's TLS: peers with certificates, API
// clients without. Each handshake reads the current credentials.
func (s *security) serverTLS() *tls.Config {
	return &tls.Config{
		MinVersion: tls.VersionTLS13,
		GetConfigForClient: func(*tls.ClientHelloInfo) (*tls.Config, error) {
			node, bundle, err := s.current()
			if err != nil {
				return nil, err
			}
			return pki.SharedServerTLS(node.TLSCertificate(), bundle.Pool(), s.PeerAllowed), nil
		},
	}
}

// peerCredentials dial node peer: mutual TLS in which the server must be
// that node, and not a removed one.
func (s *security) peerCredentials(peer uint64) credentials.TransportCredentials {
	return s.clientCredentials(func(id uint64) error {
		if id != peer {
			return fmt.Errorf("the server is node %d, not node %d", id, peer)
		}
		return s.PeerAllowed(id)
	})
}

// clientCredentials are this node's mutual TLS as a client, the server
// checked by allowed.
func (s *security) clientCredentials(allowed func(uint64) error) credentials.TransportCredentials {
	node, bundle, err := s.current()
	if err != nil {
		// Not reached once the node runs: its transport and watches start
		// after it has a certificate. A handshake with no certificate fails.
		return credentials.NewTLS(&tls.Config{MinVersion: tls.VersionTLS13, InsecureSkipVerify: true,
			VerifyConnection: func(tls.ConnectionState) error { return err }})
	}
	cfg := pki.ClientTLS(node.TLSCertificate(), bundle.Pool(), allowed)
	cfg.Certificates = nil
	cfg.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
		node, _, err := s.current()
		if err != nil {
			return nil, err
		}
		c := node.TLSCertificate()
		return &c, nil
	}
	return credentials.NewTLS(cfg)
}

// authenticatePeer names the node at the other end of a received stream.
func authenticatePeer(ctx context.Context) (uint64, error) {
	p, ok := peer.FromContext(ctx)
	if !ok {
		return 0, errors.New("no peer information")
	}
	info, ok := p.AuthInfo.(credentials.TLSInfo)
	if !ok {
		return 0, errors.New("not a TLS connection")
	}
	return pki.PeerNodeID(info.State)
}

// install sets the node's credentials.
func (s *security) install(node *pki.NodeCert, bundle pki.Bundle, ca *pki.CA) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.node, s.bundle, s.ca = node, bundle, ca
}

// ---- the data directory ----

// bootstrapSecurity makes, or finds from an interrupted first start, the
// credentials of a cluster's first node: the CA, its certificate, and the
// first admin token, whose record (hash only) it returns for the
// cluster's first entry, with the token itself the first time.
func bootstrapSecurity(dir, clusterID string, id uint64, addr string, now time.Time) (sec *security, admin *apiv1.Token, token string, err error) {
	sec = newSecurity(dir)
	ca, err := pki.LoadCA(dir)
	if errors.Is(err, os.ErrNotExist) {
		if ca, err = pki.NewCA(clusterID, now, pki.DefaultCAValidity); err != nil {
			return nil, nil, "", err
		}
		if err := ca.Save(dir); err != nil {
			return nil, nil, "", err
		}
	} else if err != nil {
		return nil, nil, "", err
	}
	node, err := pki.LoadNode(dir)
	if errors.Is(err, os.ErrNotExist) {
		if node, err = ca.NewNode(id, certAddrs(addr), now, pki.DefaultNodeValidity); err != nil {
			return nil, nil, "", err
		}
		if err := node.Save(dir); err != nil {
			return nil, nil, "", err
		}
	} else if err != nil {
		return nil, nil, "", err
	}
	sec.install(node, pki.Bundle{ca.Certificate()}, ca)

	path := filepath.Join(dir, AdminTokenFile)
	var secret authz.Secret
	if b, err := os.ReadFile(path); err == nil {
		if secret, err = authz.ParseToken(string(b)); err != nil {
			return nil, nil, "", fmt.Errorf("%s: %w", path, err)
		}
		if secret.Kind != apiv1.TokenKind_TOKEN_KIND_ACL {
			return nil, nil, "", fmt.Errorf("%s holds a join token, not the admin's ACL token", path)
		}
	} else if errors.Is(err, os.ErrNotExist) {
		if secret, err = authz.NewSecret(apiv1.TokenKind_TOKEN_KIND_ACL, pki.Fingerprint{}); err != nil {
			return nil, nil, "", err
		}
		if err := writeDurablyMode(path, []byte(secret.String()+"\n"), 0o600); err != nil {
			return nil, nil, "", err
		}
		token = secret.String()
	} else {
		return nil, nil, "", fmt.Errorf("read %s: %w", path, err)
	}
	admin = secret.Record()
	admin.AccessRole = apiv1.AccessRole_ACCESS_ROLE_ADMIN
	admin.CreatedUnixNano = now.UnixNano()
	admin.Description = "bootstrap admin (" + AdminTokenFile + ")"
	return sec, admin, token, nil
}

// loadSecurity reads a secure node's credentials from its data directory:
// its certificate, the CAs, and the CA key if it is a voter.
func loadSecurity(dir string) (*security, error) {
	node, err := pki.LoadNode(dir)
	if err != nil {
		return nil, err
	}
	bundle, err := pki.LoadBundle(dir)
	if err != nil {
		return nil, err
	}
	var ca *pki.CA
	if _, err := os.Stat(filepath.Join(dir, pki.CAKeyFile)); err == nil {
		if ca, err = pki.LoadCA(dir); err != nil {
			return nil, err
		}
	}
	sec := newSecurity(dir)
	sec.install(node, bundle, ca)
	return sec, nil
}

// joiner is what a secure node that is joining holds before it has its
// certificate: the token's pin and secret, and its key (kept on disk
// first, so that a restart asks again for the same key).
type joiner struct {
	token  string
	secret authz.Secret
	key    *ecdsa.PrivateKey
	csr    []byte
	keyID  string
}

func newJoiner(dir string, id uint64, token string) (*joiner, error) {
	if token == "" {
		return nil, errors.New("joining a cluster needs --join-token (from 'blixard cluster token create' on a member), or --insecure if the cluster runs with --insecure")
	}
	secret, err := authz.ParseToken(token)
	if err != nil {
		return nil, fmt.Errorf("--join-token: %w", err)
	}
	if secret.Kind != apiv1.TokenKind_TOKEN_KIND_JOIN {
		return nil, errors.New("--join-token: that is an ACL token; a node joins with a join token ('blixard cluster token create')")
	}
	key, err := pki.LoadNodeKey(dir)
	if errors.Is(err, os.ErrNotExist) {
		if key, err = pki.NewNodeKey(); err != nil {
			return nil, err
		}
		if err := pki.SaveNodeKey(dir, key); err != nil {
			return nil, err
		}
	} else if err != nil {
		return nil, err
	}
	csr, err := pki.NewCSR(id, key)
	if err != nil {
		return nil, err
	}
	keyID, err := pki.KeyID(key.Public())
	if err != nil {
		return nil, err
	}
	return &joiner{token: token, secret: secret, key: key, csr: csr, keyID: keyID}, nil
}

// accept checks and keeps what the cluster sent a joining node: its
// certificate (for its key and id, from the pinned CA), the CAs, and a
// voter's CA key; then installs them in sec.
func (j *joiner) accept(sec *security, id uint64, resp *apiv1.JoinClusterResponse) error {
	certs, err := pki.ParseCerts(resp.GetCertificate(), 2)
	if err != nil {
		return fmt.Errorf("the node certificate sent: %w", err)
	}
	bundle, err := pki.ParseCerts(resp.GetCaCertificates(), pki.MaxBundleCerts)
	if err != nil {
		return fmt.Errorf("the CA certificates sent: %w", err)
	}
	if pki.Bundle(bundle).Find(j.secret.CA) == nil {
		return errors.New("the CA certificates sent do not include the one the join token pins")
	}
	var issuer *x509.Certificate
	for _, c := range bundle {
		if certs[0].CheckSignatureFrom(c) == nil {
			issuer = c
		}
	}
	if issuer == nil {
		return errors.New("the node certificate sent was signed by none of the CAs sent")
	}
	node, err := pki.NewNodeCert(certs[0], issuer, j.key)
	if err != nil {
		return err
	}
	if node.NodeID() != id {
		return fmt.Errorf("the certificate sent is for node %d", node.NodeID())
	}
	var ca *pki.CA
	if len(resp.GetCaKey()) > 0 {
		if ca, err = pki.CAFromPEM(resp.GetCaCertificates(), resp.GetCaKey()); err != nil {
			return fmt.Errorf("the CA key sent: %w", err)
		}
		if err := ca.Save(sec.dir, bundle...); err != nil {
			return err
		}
	} else if err := pki.SaveBundle(sec.dir, bundle); err != nil {
		return err
	}
	// The certificate last: its presence says the join is done.
	if err := node.Save(sec.dir); err != nil {
		return err
	}
	sec.install(node, bundle, ca)
	return nil
}

// settleSecurity gives a secure node its credentials as its data
// directory and its start say: a first node makes the cluster's CA and
// first admin token (and returns the cluster id the CA names, and the
// token's record); a node with a certificate loads it; a new node that
// joins prepares its key and waits for its certificate (joinLoop).
func (n *Node) settleSecurity(clusterID string) (string, *apiv1.Token, error) {
	dir := n.cfg.DataDir
	_, err := os.Stat(filepath.Join(dir, pki.NodeCertFile))
	hasCert := err == nil
	switch {
	case n.fresh && len(n.cfg.Join) == 0:
		sec, admin, token, err := bootstrapSecurity(dir, clusterID, n.cfg.ID, n.addr, time.Now())
		if err != nil {
			return "", nil, fmt.Errorf("bootstrap the cluster's CA in %s: %w", dir, err)
		}
		n.sec = sec
		if token != "" {
			out := n.cfg.Out
			if out == nil {
				out = os.Stdout
			}
			fmt.Fprintf(out, "The cluster's first admin token (shown once; also in %s):\n%s\n",
				filepath.Join(dir, AdminTokenFile), token)
		}
		id := clusterID
		if ca := sec.ca; ca != nil && ca.ClusterID() != "" {
			id = ca.ClusterID() // an interrupted first start made the CA
		}
		return id, admin, nil
	case hasCert:
		sec, err := loadSecurity(dir)
		if err != nil {
			return "", nil, fmt.Errorf("load the node's credentials from %s: %w", dir, err)
		}
		if id := sec.node.NodeID(); id != n.cfg.ID {
			return "", nil, fmt.Errorf("the certificate in %s is node %d's, not node %d's", dir, id, n.cfg.ID)
		}
		n.sec = sec
		return clusterID, nil, nil
	case n.fresh:
		j, err := newJoiner(dir, n.cfg.ID, n.cfg.JoinToken)
		if err != nil {
			return "", nil, err
		}
		n.sec, n.joining = newSecurity(dir), j
		return clusterID, nil, nil
	}
	return "", nil, fmt.Errorf("%s holds a Raft log but no node certificate (%s): this node cannot prove who it is; remove it from the cluster and join a new node", dir, pki.NodeCertFile)
}
