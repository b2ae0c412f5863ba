package runtime

import (
	"bytes"
	"crypto/x509"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	apiv1 "github.com/blixard/blixard/api/v1"
	"github.com/blixard/blixard/internal/authz"
	"github.com/blixard/blixard/internal/pki"
	"github.com/blixard/blixard/internal/state"
)

// secNow is the clock of these tests; the token times are around it.
var secNow = time.Unix(1_700_000_000, 0)

// stateLog applies commands to a state at consecutive indexes.
type stateLog struct {
	t   *testing.T
	st  *state.State
	idx uint64
}

func newStateLog(t *testing.T) *stateLog { return &stateLog{t: t, st: state.New()} }

func (l *stateLog) apply(cmds ...*apiv1.Command) *stateLog {
	l.t.Helper()
	for _, c := range cmds {
		l.idx++
		if _, err := l.st.Apply(l.idx, c); err != nil {
			l.t.Fatalf("Apply(%d, %v) = %v", l.idx, c, err)
		}
	}
	return l
}

func (l *stateLog) members(voters ...uint64) *stateLog {
	l.idx++
	l.st.ApplyMembership(l.idx, voters, nil)
	return l
}

// mint draws a token of kind whose record edit completes.
func mint(t *testing.T, kind apiv1.TokenKind, edit func(*apiv1.Token)) (string, *apiv1.Token) {
	t.Helper()
	s, err := authz.NewSecret(kind, pki.Fingerprint{1})
	if err != nil {
		t.Fatal(err)
	}
	rec := s.Record()
	rec.CreatedUnixNano = secNow.Add(-time.Hour).UnixNano()
	edit(rec)
	return s.String(), rec
}

func createTokenCmd(rec *apiv1.Token) *apiv1.Command {
	return &apiv1.Command{Op: &apiv1.Command_CreateToken{CreateToken: &apiv1.CreateTokenCommand{Token: rec}}}
}

func revokeTokenCmd(rec *apiv1.Token) *apiv1.Command {
	return &apiv1.Command{Op: &apiv1.Command_RevokeToken{RevokeToken: &apiv1.RevokeTokenCommand{Kind: rec.GetKind(), Id: rec.GetId()}}}
}

func initCmd(admin *apiv1.Token) *apiv1.Command {
	return &apiv1.Command{Op: &apiv1.Command_InitCluster{InitCluster: &apiv1.InitClusterCommand{ClusterId: "c1", Secure: true, AdminToken: admin}}}
}

func acl(role apiv1.AccessRole, expires time.Time) func(*apiv1.Token) {
	return func(r *apiv1.Token) {
		r.AccessRole = role
		if !expires.IsZero() {
			r.ExpiresUnixNano = expires.UnixNano()
		}
	}
}

func joinRole(role apiv1.NodeRole, expires time.Time) func(*apiv1.Token) {
	return func(r *apiv1.Token) { r.NodeRole, r.ExpiresUnixNano = role, expires.UnixNano() }
}

// otherSecret is tok with its secret part replaced.
func otherSecret(tok string) string {
	parts := strings.Split(tok, ".")
	parts[2] = strings.Repeat("0", len(parts[2]))
	return strings.Join(parts, ".")
}

func TestSecurityChecksTokens(t *testing.T) {
	kACL, kJoin := apiv1.TokenKind_TOKEN_KIND_ACL, apiv1.TokenKind_TOKEN_KIND_JOIN
	admin, adminRec := mint(t, kACL, acl(apiv1.AccessRole_ACCESS_ROLE_ADMIN, time.Time{}))
	viewer, viewerRec := mint(t, kACL, acl(apiv1.AccessRole_ACCESS_ROLE_VIEWER, time.Time{}))
	operator, operatorRec := mint(t, kACL, acl(apiv1.AccessRole_ACCESS_ROLE_OPERATOR, secNow.Add(time.Second)))
	expired, expiredRec := mint(t, kACL, acl(apiv1.AccessRole_ACCESS_ROLE_ADMIN, secNow))
	revoked, revokedRec := mint(t, kACL, acl(apiv1.AccessRole_ACCESS_ROLE_ADMIN, time.Time{}))
	never, _ := mint(t, kACL, acl(apiv1.AccessRole_ACCESS_ROLE_ADMIN, time.Time{}))
	voter, voterRec := mint(t, kJoin, joinRole(apiv1.NodeRole_NODE_ROLE_VOTER, secNow.Add(time.Hour)))
	worker, workerRec := mint(t, kJoin, joinRole(apiv1.NodeRole_NODE_ROLE_WORKER, secNow.Add(time.Hour)))
	oldJoin, oldJoinRec := mint(t, kJoin, joinRole(apiv1.NodeRole_NODE_ROLE_VOTER, secNow.Add(-time.Nanosecond)))

	log := newStateLog(t).apply(initCmd(adminRec))
	for _, r := range []*apiv1.Token{viewerRec, operatorRec, expiredRec, revokedRec, voterRec, workerRec, oldJoinRec} {
		log.apply(createTokenCmd(r))
	}
	log.apply(revokeTokenCmd(revokedRec))
	s := newSecurity(t.TempDir())
	s.now = func() time.Time { return secNow }
	s.refresh(log.st)

	aclTests := []struct {
		name string
		tok  string
		role authz.Role // RoleNone: refused
	}{
		{"admin", admin, authz.RoleAdmin},
		{"viewer", viewer, authz.RoleViewer},
		{"operator, a second before expiry", operator, authz.RoleOperator},
		{"with a newline", viewer + "\n", authz.RoleViewer},
		{"at its expiry", expired, authz.RoleNone},
		{"revoked", revoked, authz.RoleNone},
		{"never recorded", never, authz.RoleNone},
		{"right id, wrong secret", otherSecret(admin), authz.RoleNone},
		{"a join token", voter, authz.RoleNone},
		{"malformed", "bxa.1234", authz.RoleNone},
		{"empty", "", authz.RoleNone},
	}
	for _, tc := range aclTests {
		role, err := s.ACLRole(tc.tok)
		if role != tc.role || (err == nil) != (tc.role != authz.RoleNone) {
			t.Errorf("ACLRole(%s) = %v, %v; want %v", tc.name, role, err, tc.role)
		}
		if err != nil && len(tc.tok) > 20 && strings.Contains(err.Error(), strings.Split(tc.tok, ".")[2]) {
			t.Errorf("ACLRole(%s): error %q repeats the secret", tc.name, err)
		}
	}

	joinTests := []struct {
		name string
		tok  string
		want *apiv1.Token // nil: refused
	}{
		{"voter", voter, voterRec},
		{"worker", worker, workerRec},
		{"expired a nanosecond ago", oldJoin, nil},
		{"right id, wrong secret", otherSecret(worker), nil},
		{"an ACL token", admin, nil},
		{"malformed", "bxj.x", nil},
	}
	for _, tc := range joinTests {
		rec, err := s.JoinToken(tc.tok)
		if tc.want == nil {
			if err == nil || rec != nil {
				t.Errorf("JoinToken(%s) = %v, %v; want a refusal", tc.name, rec, err)
			}
			continue
		}
		if err != nil || !proto.Equal(rec, tc.want) {
			t.Errorf("JoinToken(%s) = %v, %v; want %v", tc.name, rec, err, tc.want)
		}
	}

	// Time moves: the operator token expires too.
	s.now = func() time.Time { return secNow.Add(time.Second) }
	if role, err := s.ACLRole(operator); err == nil {
		t.Fatalf("ACLRole(operator) after its expiry = %v", role)
	}
}

func TestSecurityFollowsTheState(t *testing.T) {
	kACL := apiv1.TokenKind_TOKEN_KIND_ACL
	_, adminRec := mint(t, kACL, acl(apiv1.AccessRole_ACCESS_ROLE_ADMIN, time.Time{}))
	viewer, viewerRec := mint(t, kACL, acl(apiv1.AccessRole_ACCESS_ROLE_VIEWER, time.Time{}))

	s := newSecurity(t.TempDir())
	s.now = func() time.Time { return secNow }
	// Before any refresh nothing is known, and every node is allowed.
	if _, err := s.ACLRole(viewer); err == nil {
		t.Fatal("a token was accepted before the security view was built")
	}
	if err := s.PeerAllowed(3); err != nil {
		t.Fatalf("PeerAllowed(3) = %v before any state", err)
	}

	log := newStateLog(t).apply(initCmd(adminRec)).members(1, 2, 3)
	s.refresh(log.st)
	if _, err := s.ACLRole(viewer); err == nil {
		t.Fatal("a token not yet created was accepted")
	}

	log.apply(createTokenCmd(viewerRec))
	s.refresh(log.st)
	if role, err := s.ACLRole(viewer); err != nil || role != authz.RoleViewer {
		t.Fatalf("after CreateToken and refresh: %v, %v", role, err)
	}

	// An unchanged state keeps the view.
	v := s.view.Load()
	s.refresh(log.st)
	if s.view.Load() != v {
		t.Fatal("refresh rebuilt the view of an unchanged state")
	}

	log.apply(revokeTokenCmd(viewerRec))
	s.refresh(log.st)
	if _, err := s.ACLRole(viewer); err == nil {
		t.Fatal("a revoked token was accepted after refresh")
	}

	log.members(1, 2)
	if err := s.PeerAllowed(3); err != nil {
		t.Fatalf("PeerAllowed(3) before refresh = %v; the view changes only on refresh", err)
	}
	s.refresh(log.st)
	if err := s.PeerAllowed(3); err == nil || !strings.Contains(err.Error(), "3") {
		t.Fatalf("PeerAllowed(3) after its removal = %v, want a refusal naming it", err)
	}
	for _, id := range []uint64{1, 2, 4} {
		if err := s.PeerAllowed(id); err != nil {
			t.Fatalf("PeerAllowed(%d) = %v", id, err)
		}
	}
}

// TestSecurityFollowsARestoredState: a node that installs a snapshot gets
// a new *state.State whose SecurityVersion restarts at 1; the view must
// still follow it.
func TestSecurityFollowsARestoredState(t *testing.T) {
	kACL := apiv1.TokenKind_TOKEN_KIND_ACL
	_, adminRec := mint(t, kACL, acl(apiv1.AccessRole_ACCESS_ROLE_ADMIN, time.Time{}))
	viewer, viewerRec := mint(t, kACL, acl(apiv1.AccessRole_ACCESS_ROLE_VIEWER, time.Time{}))

	// This node has applied only InitCluster: its view is at version 1.
	mine := newStateLog(t).apply(initCmd(adminRec))
	s := newSecurity(t.TempDir())
	s.now = func() time.Time { return secNow }
	s.refresh(mine.st)

	// The leader has since made a token and removed node 3; it sends a
	// snapshot, which this node installs.
	leader := newStateLog(t).apply(initCmd(adminRec)).members(1, 2, 3).apply(createTokenCmd(viewerRec)).members(1, 2)
	data, err := leader.st.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	restored, err := state.Restore(data)
	if err != nil {
		t.Fatal(err)
	}
	s.refresh(restored)

	if _, err := s.ACLRole(viewer); err != nil {
		t.Errorf("a token in the installed snapshot is refused: %v", err)
	}
	if err := s.PeerAllowed(3); err == nil {
		t.Error("a node removed in the installed snapshot is still allowed")
	}
}

func TestIssue(t *testing.T) {
	// No CA key: a worker, or a node still joining.
	none := newSecurity(t.TempDir())
	key, err := pki.NewNodeKey()
	if err != nil {
		t.Fatal(err)
	}
	csr, err := pki.NewCSR(7, key)
	if err != nil {
		t.Fatal(err)
	}
	if _, _, _, err := none.Issue(csr, 7, "10.1.2.3:7000", true); err == nil {
		t.Fatal("Issue without a CA = nil error")
	}

	dir := t.TempDir()
	s, _, _, err := bootstrapSecurity(dir, "c1", 1, "127.0.0.1:7001", time.Now())
	if err != nil {
		t.Fatal(err)
	}
	caCert := s.ca.Certificate()

	for _, withKey := range []bool{false, true} {
		cert, cas, caKey, err := s.Issue(csr, 7, "10.1.2.3:7000", withKey)
		if err != nil {
			t.Fatalf("Issue(withCAKey %v) = %v", withKey, err)
		}
		certs, err := pki.ParseCerts(cert, 2)
		if err != nil || len(certs) != 2 {
			t.Fatalf("certificate PEM: %d certs, %v; want the leaf and its CA", len(certs), err)
		}
		leaf := certs[0]
		if _, err := pki.NewNodeCert(leaf, caCert, key); err != nil {
			t.Fatalf("issued certificate does not fit the key and CA: %v", err)
		}
		if id, err := pki.NodeIDFromCert(leaf); err != nil || id != 7 {
			t.Fatalf("issued certificate names node %d (%v), want 7", id, err)
		}
		if !hasIP(leaf, "10.1.2.3") || !hasIP(leaf, "127.0.0.1") {
			t.Fatalf("issued certificate IPs %v, want the node's host and loopback", leaf.IPAddresses)
		}
		bundle, err := pki.ParseCerts(cas, pki.MaxBundleCerts)
		if err != nil || pki.Bundle(bundle).Find(pki.FingerprintOf(caCert)) == nil {
			t.Fatalf("CA certificates sent (%v) lack the CA", err)
		}
		if withKey != (len(caKey) > 0) {
			t.Fatalf("withCAKey %v but %d bytes of CA key", withKey, len(caKey))
		}
		if withKey {
			ca, err := pki.CAFromPEM(cas, caKey)
			if err != nil || !bytes.Equal(ca.Certificate().Raw, caCert.Raw) {
				t.Fatalf("the CA key sent is not the CA's: %v", err)
			}
		}
	}
	// A CSR for another node is refused.
	if _, _, _, err := s.Issue(csr, 8, "10.1.2.3:7000", false); !errors.Is(err, pki.ErrNodeIDMismatch) {
		t.Fatalf("Issue of node 7's CSR as node 8 = %v, want ErrNodeIDMismatch", err)
	}
	if _, _, _, err := s.Issue([]byte("junk"), 7, "", false); err == nil {
		t.Fatal("Issue of a junk CSR = nil error")
	}
}

func hasIP(c *x509.Certificate, ip string) bool {
	for _, a := range c.IPAddresses {
		if a.String() == ip {
			return true
		}
	}
	return false
}

func fileMode(t *testing.T, path string) os.FileMode {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return fi.Mode().Perm()
}

func TestBootstrapSecurityIsIdempotent(t *testing.T) {
	dir := t.TempDir()
	first := time.Now()
	s1, admin1, tok1, err := bootstrapSecurity(dir, "c1", 1, "127.0.0.1:7001", first)
	if err != nil {
		t.Fatal(err)
	}
	if tok1 == "" {
		t.Fatal("the first bootstrap returned no admin token")
	}
	secret, err := authz.ParseToken(tok1)
	if err != nil || secret.Kind != apiv1.TokenKind_TOKEN_KIND_ACL || !secret.Matches(admin1) {
		t.Fatalf("the admin token %v does not match its record %v", err, admin1)
	}
	if admin1.GetAccessRole() != apiv1.AccessRole_ACCESS_ROLE_ADMIN || admin1.GetExpiresUnixNano() != 0 ||
		admin1.GetCreatedUnixNano() != first.UnixNano() || strings.Contains(admin1.String(), strings.Split(tok1, ".")[2]) {
		t.Fatalf("admin record = %v", admin1)
	}
	// The record is one the state accepts.
	newStateLog(t).apply(initCmd(admin1))

	if b, err := os.ReadFile(filepath.Join(dir, AdminTokenFile)); err != nil || string(b) != tok1+"\n" {
		t.Fatalf("%s = %q, %v; want the token", AdminTokenFile, b, err)
	}
	for _, f := range []string{AdminTokenFile, pki.CAKeyFile, pki.NodeKeyFile} {
		if m := fileMode(t, filepath.Join(dir, f)); m != 0o600 {
			t.Fatalf("%s has mode %o, want 0600", f, m)
		}
	}
	node, bundle, err := s1.current()
	if err != nil || node.NodeID() != 1 || len(bundle) != 1 || s1.ca == nil {
		t.Fatalf("bootstrapped credentials: node %v, bundle %d, CA %v, err %v", node, len(bundle), s1.ca, err)
	}
	if s1.CAFingerprint() != pki.FingerprintOf(s1.ca.Certificate()) || s1.ca.ClusterID() != "c1" {
		t.Fatalf("CA fingerprint %v, cluster %q", s1.CAFingerprint(), s1.ca.ClusterID())
	}

	// A restart after an interrupted first start finds the same things.
	s2, admin2, tok2, err := bootstrapSecurity(dir, "c1", 1, "127.0.0.1:7001", first.Add(time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	if tok2 != "" {
		t.Fatal("the second bootstrap showed the admin token again")
	}
	if admin2.GetId() != admin1.GetId() || !bytes.Equal(admin2.GetSecretSha256(), admin1.GetSecretSha256()) ||
		admin2.GetAccessRole() != apiv1.AccessRole_ACCESS_ROLE_ADMIN {
		t.Fatalf("second admin record %v, want the first's id and hash %v", admin2, admin1)
	}
	if s2.CAFingerprint() != s1.CAFingerprint() {
		t.Fatal("the second bootstrap made another CA")
	}
	n2, _, _ := s2.current()
	if !bytes.Equal(n2.Leaf().Raw, node.Leaf().Raw) {
		t.Fatal("the second bootstrap made another node certificate")
	}
}

func TestBootstrapSecurityRefusesABadAdminTokenFile(t *testing.T) {
	joinTok, err := authz.NewSecret(apiv1.TokenKind_TOKEN_KIND_JOIN, pki.Fingerprint{})
	if err != nil {
		t.Fatal(err)
	}
	for name, body := range map[string]string{"a join token": joinTok.String(), "junk": "not a token", "empty": ""} {
		dir := t.TempDir()
		if err := os.WriteFile(filepath.Join(dir, AdminTokenFile), []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
		if _, admin, _, err := bootstrapSecurity(dir, "c1", 1, "127.0.0.1:7001", time.Now()); err == nil {
			t.Errorf("%s in %s: bootstrap = %v, want an error", name, AdminTokenFile, admin)
		}
	}
}

func TestLoadSecurity(t *testing.T) {
	dir := t.TempDir()
	boot, _, _, err := bootstrapSecurity(dir, "c1", 1, "127.0.0.1:7001", time.Now())
	if err != nil {
		t.Fatal(err)
	}
	s, err := loadSecurity(dir)
	if err != nil {
		t.Fatal(err)
	}
	node, _, err := s.current()
	if err != nil || node.NodeID() != 1 || s.ca == nil || s.CAFingerprint() != boot.CAFingerprint() {
		t.Fatalf("loaded: node %v, CA %v, err %v", node, s.ca, err)
	}
	// Without ca.key, a worker: no CA, but the same trust.
	if err := os.Remove(filepath.Join(dir, pki.CAKeyFile)); err != nil {
		t.Fatal(err)
	}
	w, err := loadSecurity(dir)
	if err != nil {
		t.Fatal(err)
	}
	if w.ca != nil || w.CAFingerprint() != boot.CAFingerprint() {
		t.Fatalf("worker: CA %v, fingerprint %v", w.ca, w.CAFingerprint())
	}
	if _, _, _, err := w.Issue(nil, 1, "", false); err == nil {
		t.Fatal("a worker issued a certificate")
	}
	// No credentials at all.
	if _, err := loadSecurity(t.TempDir()); err == nil {
		t.Fatal("loadSecurity of an empty directory = nil error")
	}
}

// ---- joining -----------------------------------------------------------------

func TestNewJoinerNeedsAJoinToken(t *testing.T) {
	aclTok, err := authz.NewSecret(apiv1.TokenKind_TOKEN_KIND_ACL, pki.Fingerprint{})
	if err != nil {
		t.Fatal(err)
	}
	secretPart := strings.Split(aclTok.String(), ".")[2]
	for name, tok := range map[string]string{
		"none":         "",
		"an ACL token": aclTok.String(),
		"malformed":    "bxj." + secretPart,
	} {
		dir := t.TempDir()
		j, err := newJoiner(dir, 5, tok)
		if err == nil {
			t.Errorf("%s: newJoiner = %+v, want an error", name, j)
			continue
		}
		if strings.Contains(err.Error(), secretPart) {
			t.Errorf("%s: error %q repeats the secret", name, err)
		}
		if _, err := os.Stat(filepath.Join(dir, pki.NodeKeyFile)); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s: a refused joiner wrote a key (%v)", name, err)
		}
	}
}

func TestNewJoinerKeepsItsKey(t *testing.T) {
	ca, _ := newJoinCA(t)
	tok := joinTokenFor(t, ca)
	dir := t.TempDir()
	j1, err := newJoiner(dir, 5, tok)
	if err != nil {
		t.Fatal(err)
	}
	if m := fileMode(t, filepath.Join(dir, pki.NodeKeyFile)); m != 0o600 {
		t.Fatalf("node.key has mode %o, want 0600", m)
	}
	if j1.secret.CA != pki.FingerprintOf(ca.Certificate()) || j1.token != tok {
		t.Fatalf("joiner pins %x, want the CA's fingerprint", j1.secret.CA)
	}
	if id, _, err := pki.CSRKeyID(j1.csr); err != nil || id != j1.keyID {
		t.Fatalf("CSR key id %q (%v), want the joiner's %q", id, err, j1.keyID)
	}
	// A restart asks again for the same key.
	j2, err := newJoiner(dir, 5, tok)
	if err != nil {
		t.Fatal(err)
	}
	if j2.keyID != j1.keyID || !j2.key.Equal(j1.key) {
		t.Fatal("a second newJoiner made another key")
	}
	// The CSR names the node.
	if _, err := ca.SignCSR(j2.csr, 5, nil, time.Now(), 0); err != nil {
		t.Fatalf("the joiner's CSR: %v", err)
	}
	if _, err := ca.SignCSR(j2.csr, 6, nil, time.Now(), 0); !errors.Is(err, pki.ErrNodeIDMismatch) {
		t.Fatalf("the joiner's CSR as node 6: %v, want ErrNodeIDMismatch", err)
	}
}

func newJoinCA(t *testing.T) (*pki.CA, []byte) {
	t.Helper()
	ca, err := pki.NewCA("c1", time.Now(), 0)
	if err != nil {
		t.Fatal(err)
	}
	return ca, pki.EncodeCerts(ca.Certificate())
}

func joinTokenFor(t *testing.T, ca *pki.CA) string {
	t.Helper()
	s, err := authz.NewSecret(apiv1.TokenKind_TOKEN_KIND_JOIN, pki.FingerprintOf(ca.Certificate()))
	if err != nil {
		t.Fatal(err)
	}
	return s.String()
}

// signed is the certificate PEM a voter sends: leaf then issuer.
func signed(t *testing.T, ca *pki.CA, csr []byte, id uint64) []byte {
	t.Helper()
	leaf, err := ca.SignCSR(csr, id, []string{"127.0.0.1"}, time.Now(), 0)
	if err != nil {
		t.Fatal(err)
	}
	return pki.EncodeCerts(leaf, ca.Certificate())
}

func TestJoinerAccept(t *testing.T) {
	ca, caPEM := newJoinCA(t)
	other, otherPEM := newJoinCA(t)
	caKey, err := ca.KeyPEM()
	if err != nil {
		t.Fatal(err)
	}
	otherKey, err := other.KeyPEM()
	if err != nil {
		t.Fatal(err)
	}
	tok := joinTokenFor(t, ca)
	strangerKey, err := pki.NewNodeKey()
	if err != nil {
		t.Fatal(err)
	}
	strangerCSR, err := pki.NewCSR(5, strangerKey)
	if err != nil {
		t.Fatal(err)
	}

	tests := []struct {
		name string
		resp func(j *joiner) *apiv1.JoinClusterResponse
		ok   bool
	}{
		{"worker", func(j *joiner) *apiv1.JoinClusterResponse {
			return &apiv1.JoinClusterResponse{Certificate: signed(t, ca, j.csr, 5), CaCertificates: caPEM}
		}, true},
		{"voter, with the CA key", func(j *joiner) *apiv1.JoinClusterResponse {
			return &apiv1.JoinClusterResponse{Certificate: signed(t, ca, j.csr, 5), CaCertificates: caPEM, CaKey: caKey}
		}, true},
		{"another CA altogether", func(j *joiner) *apiv1.JoinClusterResponse {
			return &apiv1.JoinClusterResponse{Certificate: signed(t, other, j.csr, 5), CaCertificates: otherPEM}
		}, false},
		{"certificate from a CA not sent", func(j *joiner) *apiv1.JoinClusterResponse {
			return &apiv1.JoinClusterResponse{Certificate: signed(t, other, j.csr, 5), CaCertificates: caPEM}
		}, false},
		{"certificate for another node", func(j *joiner) *apiv1.JoinClusterResponse {
			csr6, err := pki.NewCSR(6, j.key)
			if err != nil {
				t.Fatal(err)
			}
			return &apiv1.JoinClusterResponse{Certificate: signed(t, ca, csr6, 6), CaCertificates: caPEM}
		}, false},
		{"certificate for another key", func(j *joiner) *apiv1.JoinClusterResponse {
			return &apiv1.JoinClusterResponse{Certificate: signed(t, ca, strangerCSR, 5), CaCertificates: caPEM}
		}, false},
		{"the CA key of another CA", func(j *joiner) *apiv1.JoinClusterResponse {
			return &apiv1.JoinClusterResponse{Certificate: signed(t, ca, j.csr, 5), CaCertificates: caPEM, CaKey: otherKey}
		}, false},
		{"a CA key that is junk", func(j *joiner) *apiv1.JoinClusterResponse {
			return &apiv1.JoinClusterResponse{Certificate: signed(t, ca, j.csr, 5), CaCertificates: caPEM, CaKey: []byte("junk")}
		}, false},
		{"no certificate", func(j *joiner) *apiv1.JoinClusterResponse {
			return &apiv1.JoinClusterResponse{CaCertificates: caPEM}
		}, false},
		{"no CA certificates", func(j *joiner) *apiv1.JoinClusterResponse {
			return &apiv1.JoinClusterResponse{Certificate: signed(t, ca, j.csr, 5)}
		}, false},
		{"junk certificate", func(j *joiner) *apiv1.JoinClusterResponse {
			return &apiv1.JoinClusterResponse{Certificate: []byte("junk"), CaCertificates: caPEM}
		}, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			j, err := newJoiner(dir, 5, tok)
			if err != nil {
				t.Fatal(err)
			}
			sec := newSecurity(dir)
			resp := tc.resp(j)
			err = j.accept(sec, 5, resp)
			exists := func(f string) bool { _, err := os.Stat(filepath.Join(dir, f)); return err == nil }
			if !tc.ok {
				if err == nil {
					t.Fatal("accept = nil, want a refusal")
				}
				for _, f := range []string{pki.CACertFile, pki.NodeCertFile, pki.CAKeyFile} {
					if exists(f) {
						t.Fatalf("a refused answer left %s behind", f)
					}
				}
				if _, _, err := sec.current(); err == nil {
					t.Fatal("a refused answer installed credentials")
				}
				return
			}
			if err != nil {
				t.Fatalf("accept = %v", err)
			}
			withKey := len(resp.GetCaKey()) > 0
			if !exists(pki.CACertFile) || !exists(pki.NodeCertFile) || exists(pki.CAKeyFile) != withKey {
				t.Fatalf("files: ca.crt %v, node.crt %v, ca.key %v (want %v)",
					exists(pki.CACertFile), exists(pki.NodeCertFile), exists(pki.CAKeyFile), withKey)
			}
			if withKey {
				if m := fileMode(t, filepath.Join(dir, pki.CAKeyFile)); m != 0o600 {
					t.Fatalf("ca.key has mode %o, want 0600", m)
				}
			}
			node, bundle, err := sec.current()
			if err != nil || node.NodeID() != 5 || pki.Bundle(bundle).Find(pki.FingerprintOf(ca.Certificate())) == nil {
				t.Fatalf("installed: node %v, bundle %v, err %v", node, bundle, err)
			}
			if (sec.ca != nil) != withKey || sec.CAFingerprint() != pki.FingerprintOf(ca.Certificate()) {
				t.Fatalf("installed CA %v (want one: %v), fingerprint %v", sec.ca, withKey, sec.CAFingerprint())
			}
			// What was written is what a restart loads.
			loaded, err := loadSecurity(dir)
			if err != nil {
				t.Fatalf("loadSecurity after accept: %v", err)
			}
			ln, _, _ := loaded.current()
			if ln.NodeID() != 5 || !bytes.Equal(ln.Leaf().Raw, node.Leaf().Raw) || (loaded.ca != nil) != withKey {
				t.Fatalf("loaded: node %d, CA %v", ln.NodeID(), loaded.ca)
			}
		})
	}
}
