package state_test

import (
	"bytes"
	"fmt"
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"

	apiv1 "github.com/blixard/blixard/api/v1"
	"github.com/blixard/blixard/internal/state"
)

// ---- token builders ----------------------------------------------------------

const (
	tokJoin = apiv1.TokenKind_TOKEN_KIND_JOIN
	tokACL  = apiv1.TokenKind_TOKEN_KIND_ACL

	roleVoter  = apiv1.NodeRole_NODE_ROLE_VOTER
	roleWorker = apiv1.NodeRole_NODE_ROLE_WORKER

	accessViewer   = apiv1.AccessRole_ACCESS_ROLE_VIEWER
	accessOperator = apiv1.AccessRole_ACCESS_ROLE_OPERATOR
	accessAdmin    = apiv1.AccessRole_ACCESS_ROLE_ADMIN

	// Times of the test tokens, in Unix nanoseconds.
	tokCreated = int64(1_000)
	tokExpires = int64(5_000)
)

// tokenHash is a distinct 32-byte hash per seed.
func tokenHash(seed byte) []byte { return bytes.Repeat([]byte{seed}, 32) }

func tokenID(n int) string { return fmt.Sprintf("%016x", n) }

func aclToken(id string, role apiv1.AccessRole) *apiv1.Token {
	return &apiv1.Token{Id: id, Kind: tokACL, SecretSha256: tokenHash(id[15]), AccessRole: role,
		CreatedUnixNano: tokCreated, Description: "acl " + id}
}

func joinToken(id string, role apiv1.NodeRole, expires int64) *apiv1.Token {
	return &apiv1.Token{Id: id, Kind: tokJoin, SecretSha256: tokenHash(id[15]), NodeRole: role,
		CreatedUnixNano: tokCreated, ExpiresUnixNano: expires, Description: "join " + id}
}

func createToken(t *apiv1.Token) *apiv1.Command {
	return &apiv1.Command{Op: &apiv1.Command_CreateToken{CreateToken: &apiv1.CreateTokenCommand{Token: t}}}
}

func revokeToken(kind apiv1.TokenKind, id string) *apiv1.Command {
	return &apiv1.Command{Op: &apiv1.Command_RevokeToken{RevokeToken: &apiv1.RevokeTokenCommand{Kind: kind, Id: id}}}
}

func secureInit(id string, secure bool, admin *apiv1.Token) *apiv1.Command {
	return &apiv1.Command{Op: &apiv1.Command_InitCluster{InitCluster: &apiv1.InitClusterCommand{
		ClusterId: id, Secure: secure, AdminToken: admin}}}
}

// edited is a copy of t changed by edit.
func edited(t *apiv1.Token, edit func(*apiv1.Token)) *apiv1.Token {
	c := proto.CloneOf(t)
	edit(c)
	return c
}

// The tokens of a secure test cluster.
var (
	adminID  = tokenID(0xad)
	viewerID = tokenID(0x01)
	voterID  = tokenID(0x02)
	workerID = tokenID(0x03)
)

// newSecureHarness is a secure cluster with an admin token, a viewer
// token, and join tokens for a voter and a worker that expire at
// tokExpires.
func newSecureHarness(t *testing.T) *harness {
	t.Helper()
	h := newHarness(t)
	h.ok(secureInit("c1", true, aclToken(adminID, accessAdmin)))
	h.ok(createToken(aclToken(viewerID, accessViewer)))
	h.ok(createToken(joinToken(voterID, roleVoter, tokExpires)))
	h.ok(createToken(joinToken(workerID, roleWorker, tokExpires)))
	return h
}

// tokenIDs is "kind/id" of each token, in order.
func tokenIDs(ts []*apiv1.Token) string {
	var out []string
	for _, t := range ts {
		out = append(out, strings.TrimPrefix(t.GetKind().String(), "TOKEN_KIND_")+"/"+t.GetId())
	}
	return strings.Join(out, ",")
}

// ---- tests -------------------------------------------------------------------

func TestCreateListRevokeTokens(t *testing.T) {
	h := newHarness(t)
	h.ok(secureInit("c1", true, nil))

	// Created out of order, and the same id in both kinds: they are two tokens.
	for _, tok := range []*apiv1.Token{
		aclToken(tokenID(2), accessOperator),
		joinToken(tokenID(9), roleWorker, tokExpires),
		aclToken(tokenID(1), accessViewer),
		joinToken(tokenID(2), roleVoter, tokExpires),
	} {
		before := h.s.SecurityVersion()
		resp := h.ok(createToken(tok))
		got := resp.GetCreateToken().GetToken()
		if got.GetSecretSha256() != nil {
			t.Fatalf("CreateToken response carries the hash: %v", got)
		}
		if !proto.Equal(got, state.PublicToken(tok)) {
			t.Fatalf("CreateToken response token = %v, want %v", got, state.PublicToken(tok))
		}
		if h.s.SecurityVersion() == before {
			t.Fatalf("SecurityVersion stayed %d across a CreateToken", before)
		}
		stored, ok := h.s.Token(tok.GetKind(), tok.GetId())
		if !ok || !proto.Equal(stored, tok) {
			t.Fatalf("Token(%v, %s) = %v, %v; want the whole record, hash included", tok.GetKind(), tok.GetId(), stored, ok)
		}
	}

	if got, want := tokenIDs(h.s.Tokens(apiv1.TokenKind_TOKEN_KIND_UNSPECIFIED)),
		"JOIN/0000000000000002,JOIN/0000000000000009,ACL/0000000000000001,ACL/0000000000000002"; got != want {
		t.Fatalf("Tokens(all) = %s, want %s", got, want)
	}
	if got, want := tokenIDs(h.s.Tokens(tokACL)), "ACL/0000000000000001,ACL/0000000000000002"; got != want {
		t.Fatalf("Tokens(acl) = %s, want %s", got, want)
	}
	if got, want := tokenIDs(h.s.Tokens(tokJoin)), "JOIN/0000000000000002,JOIN/0000000000000009"; got != want {
		t.Fatalf("Tokens(join) = %s, want %s", got, want)
	}
	for _, tok := range h.s.Tokens(apiv1.TokenKind_TOKEN_KIND_UNSPECIFIED) {
		if len(tok.GetSecretSha256()) != 32 {
			t.Fatalf("Tokens() record %s has no hash: the state keeps it", tok.GetId())
		}
	}

	// What the queries return are copies.
	h.s.Tokens(tokACL)[0].AccessRole = accessAdmin
	if c, _ := h.s.Token(tokACL, tokenID(1)); c.GetAccessRole() != accessViewer {
		t.Fatalf("changing a Tokens() result changed the state: %v", c)
	}
	c, _ := h.s.Token(tokACL, tokenID(1))
	c.SecretSha256[0] ^= 1
	if again, _ := h.s.Token(tokACL, tokenID(1)); !bytes.Equal(again.GetSecretSha256(), tokenHash('1')) {
		t.Fatalf("changing a Token() result changed the state's hash")
	}

	// Revoking the ACL token 2 leaves the join token 2.
	before := h.s.SecurityVersion()
	resp := h.ok(revokeToken(tokACL, tokenID(2)))
	if got := resp.GetRevokeToken().GetToken(); got.GetSecretSha256() != nil || got.GetId() != tokenID(2) ||
		got.GetKind() != tokACL || got.GetAccessRole() != accessOperator {
		t.Fatalf("RevokeToken response token = %v, want the public record of ACL token 2", got)
	}
	if h.s.SecurityVersion() == before {
		t.Fatalf("SecurityVersion stayed %d across a RevokeToken", before)
	}
	if _, ok := h.s.Token(tokACL, tokenID(2)); ok {
		t.Fatal("a revoked token is still there")
	}
	if _, ok := h.s.Token(tokJoin, tokenID(2)); !ok {
		t.Fatal("revoking ACL token 2 removed join token 2")
	}
	// Revoked is gone for good: a second revoke finds nothing.
	h.reject(revokeToken(tokACL, tokenID(2)), codeNotFound, "id")
	// The id may be used again.
	h.ok(createToken(aclToken(tokenID(2), accessViewer)))
}

func TestPublicTokenStripsTheHashOnly(t *testing.T) {
	tok := joinToken(tokenID(7), roleWorker, tokExpires)
	pub := state.PublicToken(tok)
	if pub.GetSecretSha256() != nil {
		t.Fatalf("PublicToken kept the hash: %v", pub)
	}
	if len(tok.GetSecretSha256()) != 32 {
		t.Fatal("PublicToken changed its argument")
	}
	pub.SecretSha256 = tok.GetSecretSha256()
	if !proto.Equal(pub, tok) {
		t.Fatalf("PublicToken changed more than the hash: %v vs %v", pub, tok)
	}
}

func TestTokenRefusals(t *testing.T) {
	acl := aclToken(tokenID(0x10), accessViewer)
	join := joinToken(tokenID(0x11), roleVoter, tokExpires)
	tests := []struct {
		name  string
		cmd   *apiv1.Command
		code  apiv1.ErrorCode
		field string
		// stateless: Validate refuses it too, without the state.
		stateless bool
	}{
		{"no token", createToken(nil), codeInvalid, "token", true},
		{"empty id", createToken(edited(acl, func(t *apiv1.Token) { t.Id = "" })), codeInvalid, "token.id", true},
		{"short id", createToken(edited(acl, func(t *apiv1.Token) { t.Id = "123" })), codeInvalid, "token.id", true},
		{"uppercase id", createToken(edited(acl, func(t *apiv1.Token) { t.Id = "00000000000000AB" })), codeInvalid, "token.id", true},
		{"non-hex id", createToken(edited(acl, func(t *apiv1.Token) { t.Id = "000000000000000g" })), codeInvalid, "token.id", true},
		{"no hash", createToken(edited(acl, func(t *apiv1.Token) { t.SecretSha256 = nil })), codeInvalid, "token.secret_sha256", true},
		{"short hash", createToken(edited(acl, func(t *apiv1.Token) { t.SecretSha256 = t.SecretSha256[:31] })), codeInvalid, "token.secret_sha256", true},
		{"long hash", createToken(edited(acl, func(t *apiv1.Token) { t.SecretSha256 = append(t.SecretSha256, 1) })), codeInvalid, "token.secret_sha256", true},
		{"description too long", createToken(edited(acl, func(t *apiv1.Token) {
			t.Description = strings.Repeat("d", state.MaxTokenDescription+1)
		})), codeInvalid, "token.description", true},
		{"description not UTF-8", createToken(edited(acl, func(t *apiv1.Token) { t.Description = "\xff" })), codeInvalid, "token.description", true},
		{"negative created", createToken(edited(acl, func(t *apiv1.Token) { t.CreatedUnixNano = -1 })), codeInvalid, "token", true},
		{"negative expiry", createToken(edited(join, func(t *apiv1.Token) { t.ExpiresUnixNano = -1 })), codeInvalid, "token", true},
		{"expires when created", createToken(edited(join, func(t *apiv1.Token) { t.ExpiresUnixNano = t.CreatedUnixNano })), codeInvalid, "token.expires_unix_nano", true},
		{"expires before created", createToken(edited(acl, func(t *apiv1.Token) { t.ExpiresUnixNano = t.CreatedUnixNano - 1 })), codeInvalid, "token.expires_unix_nano", true},
		{"unknown kind", createToken(edited(acl, func(t *apiv1.Token) { t.Kind = apiv1.TokenKind_TOKEN_KIND_UNSPECIFIED })), codeInvalid, "token.kind", true},
		{"kind out of range", createToken(edited(acl, func(t *apiv1.Token) { t.Kind = 7 })), codeInvalid, "token.kind", true},
		{"join without expiry", createToken(edited(join, func(t *apiv1.Token) { t.ExpiresUnixNano = 0 })), codeInvalid, "token.expires_unix_nano", true},
		{"join with an access role", createToken(edited(join, func(t *apiv1.Token) { t.AccessRole = accessAdmin })), codeInvalid, "token.access_role", true},
		{"join without a node role", createToken(edited(join, func(t *apiv1.Token) { t.NodeRole = apiv1.NodeRole_NODE_ROLE_UNSPECIFIED })), codeInvalid, "token.node_role", true},
		{"join with an unknown node role", createToken(edited(join, func(t *apiv1.Token) { t.NodeRole = 9 })), codeInvalid, "token.node_role", true},
		{"acl with a node role", createToken(edited(acl, func(t *apiv1.Token) { t.NodeRole = roleVoter })), codeInvalid, "token.node_role", true},
		{"acl without an access role", createToken(edited(acl, func(t *apiv1.Token) { t.AccessRole = apiv1.AccessRole_ACCESS_ROLE_UNSPECIFIED })), codeInvalid, "token.access_role", true},
		{"acl with an unknown access role", createToken(edited(acl, func(t *apiv1.Token) { t.AccessRole = 9 })), codeInvalid, "token.access_role", true},

		{"duplicate acl id", createToken(aclToken(viewerID, accessOperator)), codeExists, "token.id", false},
		{"duplicate admin id", createToken(aclToken(adminID, accessAdmin)), codeExists, "token.id", false},
		{"duplicate join id", createToken(joinToken(voterID, roleWorker, tokExpires+1)), codeExists, "token.id", false},

		{"revoke a bad id", revokeToken(tokACL, "nope"), codeInvalid, "id", true},
		{"revoke an uppercase id", revokeToken(tokACL, strings.ToUpper(tokenID(0xab))), codeInvalid, "id", true},
		{"revoke an unknown id", revokeToken(tokACL, tokenID(0x99)), codeNotFound, "id", false},
		{"revoke with the wrong kind", revokeToken(tokJoin, viewerID), codeNotFound, "id", false},
		{"revoke without a kind", revokeToken(apiv1.TokenKind_TOKEN_KIND_UNSPECIFIED, viewerID), codeNotFound, "id", false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h := newSecureHarness(t)
			before := h.s.Tokens(apiv1.TokenKind_TOKEN_KIND_UNSPECIFIED)
			version := h.s.SecurityVersion()

			h.reject(tc.cmd, tc.code, tc.field) // also checks the snapshot is unchanged

			if after := h.s.Tokens(apiv1.TokenKind_TOKEN_KIND_UNSPECIFIED); !protoSliceEqual(before, after) {
				t.Fatalf("refused command changed the tokens:\n%v\n%v", before, after)
			}
			if h.s.SecurityVersion() != version {
				t.Fatalf("SecurityVersion %d -> %d on a refused command", version, h.s.SecurityVersion())
			}
			verr := state.Validate(tc.cmd)
			if tc.stateless {
				wantErr(t, verr, tc.code, tc.field)
			} else if verr != nil {
				t.Fatalf("Validate = %v; the refusal depends on the state, Validate must pass it", verr)
			}
		})
	}
}

// TestTokenBounds: the limits are inclusive.
func TestTokenBounds(t *testing.T) {
	h := newSecureHarness(t)
	h.ok(createToken(edited(aclToken(tokenID(0x20), accessViewer), func(t *apiv1.Token) {
		t.Description = strings.Repeat("d", state.MaxTokenDescription)
	})))
	h.ok(createToken(edited(joinToken(tokenID(0x21), roleVoter, 0), func(t *apiv1.Token) {
		t.ExpiresUnixNano = t.CreatedUnixNano + 1
	})))
	// An ACL token may expire, or never (0).
	h.ok(createToken(edited(aclToken(tokenID(0x22), accessViewer), func(t *apiv1.Token) { t.ExpiresUnixNano = tokExpires })))
	h.ok(createToken(edited(aclToken(tokenID(0x23), accessViewer), func(t *apiv1.Token) { t.CreatedUnixNano = 0 })))
}

func TestMaxTokensPerKind(t *testing.T) {
	h := newHarness(t)
	h.ok(secureInit("c1", true, aclToken(adminID, accessAdmin))) // the first ACL token
	for i := 1; i < state.MaxTokens; i++ {
		h.ok(createToken(aclToken(tokenID(0x10000+i), accessViewer)))
	}
	if n := len(h.s.Tokens(tokACL)); n != state.MaxTokens {
		t.Fatalf("%d ACL tokens, want %d", n, state.MaxTokens)
	}
	h.reject(createToken(aclToken(tokenID(0x20000), accessViewer)), codeExhausted, "token")
	// The limit is per kind: join tokens still fit.
	h.ok(createToken(joinToken(tokenID(0x30000), roleVoter, tokExpires)))
	// A revoke makes room again.
	h.ok(revokeToken(tokACL, tokenID(0x10001)))
	h.ok(createToken(aclToken(tokenID(0x20000), accessViewer)))
	h.reject(createToken(aclToken(tokenID(0x20001), accessViewer)), codeExhausted, "token")
}

func TestInitClusterSecure(t *testing.T) {
	admin := aclToken(adminID, accessAdmin)
	h := newHarness(t)
	if h.s.Secure() || h.s.Cluster().GetSecure() {
		t.Fatal("a new state is secure")
	}
	before := h.s.SecurityVersion()
	if resp := h.ok(secureInit("c1", true, admin)); resp.GetKind() != nil {
		t.Fatalf("InitCluster response = %v", resp)
	}
	if !h.s.Secure() || !h.s.Cluster().GetSecure() || h.s.Cluster().GetId() != "c1" {
		t.Fatalf("after a secure InitCluster: Secure %v, Cluster %v", h.s.Secure(), h.s.Cluster())
	}
	if got, ok := h.s.Token(tokACL, adminID); !ok || !proto.Equal(got, admin) {
		t.Fatalf("admin token = %v, %v; want %v", got, ok, admin)
	}
	version := h.s.SecurityVersion()
	if version == before {
		t.Fatal("SecurityVersion did not change with the first admin token")
	}
	snap := records(t, h.s)

	// The leader proposes InitCluster until it applies: a repeat, even
	// one that says otherwise, changes nothing.
	h.ok(secureInit("c1", false, aclToken(tokenID(0xbe), accessAdmin)))
	h.ok(secureInit("c1", true, nil))
	if after := records(t, h.s); !proto.Equal(snap, after) {
		t.Fatalf("a second InitCluster changed the state:\n%v\n%v", snap, after)
	}
	if !h.s.Secure() || h.s.SecurityVersion() != version || len(h.s.Tokens(apiv1.TokenKind_TOKEN_KIND_UNSPECIFIED)) != 1 {
		t.Fatalf("after a repeat: Secure %v, SecurityVersion %d (was %d), tokens %v",
			h.s.Secure(), h.s.SecurityVersion(), version, h.s.Tokens(apiv1.TokenKind_TOKEN_KIND_UNSPECIFIED))
	}
}

func TestInitClusterInsecure(t *testing.T) {
	h := newHarness(t)
	h.ok(secureInit("c1", false, nil))
	if h.s.Secure() || h.s.Cluster().GetSecure() || len(h.s.Tokens(apiv1.TokenKind_TOKEN_KIND_UNSPECIFIED)) != 0 {
		t.Fatalf("insecure InitCluster: Secure %v, tokens %v", h.s.Secure(), h.s.Tokens(apiv1.TokenKind_TOKEN_KIND_UNSPECIFIED))
	}
	// A later secure InitCluster does not make it secure.
	h.ok(secureInit("c1", true, aclToken(adminID, accessAdmin)))
	if h.s.Secure() {
		t.Fatal("a repeated InitCluster made an insecure cluster secure")
	}
	if _, ok := h.s.Token(tokACL, adminID); ok {
		t.Fatal("a repeated InitCluster recorded an admin token")
	}
}

func TestInitClusterRefusesABadAdminToken(t *testing.T) {
	admin := aclToken(adminID, accessAdmin)
	for _, tc := range []struct {
		name  string
		tok   *apiv1.Token
		field string
	}{
		{"viewer", aclToken(adminID, accessViewer), "admin_token"},
		{"operator", aclToken(adminID, accessOperator), "admin_token"},
		{"join token", joinToken(adminID, roleVoter, tokExpires), "admin_token"},
		{"bad hash", edited(admin, func(t *apiv1.Token) { t.SecretSha256 = []byte{1} }), "admin_token.secret_sha256"},
		{"bad id", edited(admin, func(t *apiv1.Token) { t.Id = "admin" }), "admin_token.id"},
		{"no role", edited(admin, func(t *apiv1.Token) { t.AccessRole = 0 }), "admin_token.access_role"},
		{"empty record", &apiv1.Token{}, "admin_token.id"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t)
			h.reject(secureInit("c1", true, tc.tok), codeInvalid, tc.field)
			if h.s.Secure() || h.s.Cluster().GetId() != "" || len(h.s.Tokens(apiv1.TokenKind_TOKEN_KIND_UNSPECIFIED)) != 0 {
				t.Fatalf("refused InitCluster left Secure %v, cluster %q, tokens %v",
					h.s.Secure(), h.s.Cluster().GetId(), h.s.Tokens(apiv1.TokenKind_TOKEN_KIND_UNSPECIFIED))
			}
			// The good one is then accepted.
			h.ok(secureInit("c1", true, admin))
		})
	}
}

func TestCheckJoinToken(t *testing.T) {
	join := func(id uint64, role apiv1.NodeRole, token string) *apiv1.RegisterNodeCommand {
		r := registerNode(id, 8, 8192, nil).GetRegisterNode()
		r.Role, r.JoinTokenId = role, token
		return r
	}
	revokedID := tokenID(0x04)
	tests := []struct {
		name  string
		reg   *apiv1.RegisterNodeCommand
		nanos int64
		code  apiv1.ErrorCode // 0: accepted
		field string
	}{
		{"voter token, voter", join(5, roleVoter, voterID), tokCreated, 0, ""},
		{"voter token, worker", join(5, roleWorker, voterID), tokCreated, 0, ""},
		{"worker token, worker", join(5, roleWorker, workerID), tokCreated, 0, ""},
		{"just before expiry", join(5, roleVoter, voterID), tokExpires - 1, 0, ""},
		{"no token", join(5, roleVoter, ""), tokCreated, codePrecond, "join_token_id"},
		{"unknown token", join(5, roleVoter, tokenID(0x77)), tokCreated, codePrecond, "join_token_id"},
		{"revoked token", join(5, roleVoter, revokedID), tokCreated, codePrecond, "join_token_id"},
		{"an ACL token's id", join(5, roleVoter, viewerID), tokCreated, codePrecond, "join_token_id"},
		{"at expiry", join(5, roleVoter, voterID), tokExpires, codePrecond, "join_token_id"},
		{"after expiry", join(5, roleWorker, workerID), tokExpires + 1, codePrecond, "join_token_id"},
		{"worker token, voter", join(5, roleVoter, workerID), tokCreated, codePrecond, "role"},
		// The older checks come first.
		{"a member", join(1, roleVoter, voterID), tokCreated, codeExists, "node_id"},
		{"a member without a token", join(1, roleVoter, ""), tokCreated, codeExists, "node_id"},
		{"bad record and no token", join(0, roleVoter, ""), tokCreated, codeInvalid, "node_id"},
	}
	h := newSecureHarness(t)
	h.ok(createToken(joinToken(revokedID, roleVoter, tokExpires)))
	h.ok(revokeToken(tokJoin, revokedID))
	h.membership([]uint64{1}, nil)
	for _, tc := range tests {
		err := h.s.CheckJoin(tc.reg, tc.nanos)
		if tc.code == 0 {
			if err != nil {
				t.Errorf("%s: CheckJoin = %v, want nil", tc.name, err)
			}
			continue
		}
		t.Run(tc.name, func(t *testing.T) { wantErr(t, err, tc.code, tc.field) })
	}

	// An insecure cluster asks for no token and ignores one.
	open := newHarness(t)
	open.ok(secureInit("c1", false, nil))
	for _, reg := range []*apiv1.RegisterNodeCommand{join(5, roleVoter, ""), join(5, roleVoter, tokenID(0x77))} {
		if err := open.s.CheckJoin(reg, tokExpires*10); err != nil {
			t.Errorf("insecure cluster: CheckJoin(token %q) = %v, want nil", reg.GetJoinTokenId(), err)
		}
	}
}

func TestSecurityVersion(t *testing.T) {
	h := newHarness(t)
	v := h.s.SecurityVersion()
	step := func(name string, changes bool, do func()) {
		t.Helper()
		do()
		got := h.s.SecurityVersion()
		if (got != v) != changes {
			t.Fatalf("%s: SecurityVersion %d -> %d; want a change: %v", name, v, got, changes)
		}
		v = got
	}
	step("init", true, func() { h.ok(secureInit("c1", true, aclToken(adminID, accessAdmin))) })
	step("register a node", false, func() { h.ok(registerNode(1, 8, 8192, nil)) })
	step("create", true, func() { h.ok(createToken(aclToken(viewerID, accessViewer))) })
	step("refused create", false, func() { h.reject(createToken(aclToken(viewerID, accessViewer)), codeExists, "token.id") })
	step("membership", true, func() { h.membership([]uint64{1, 2}, nil) })
	step("removal", true, func() { h.membership([]uint64{1}, nil) })
	step("refused revoke", false, func() { h.reject(revokeToken(tokACL, tokenID(0x55)), codeNotFound, "id") })
	step("revoke", true, func() { h.ok(revokeToken(tokACL, viewerID)) })
	step("repeated init", false, func() { h.ok(secureInit("c1", true, nil)) })
}

func TestTokensSurviveSnapshotRestore(t *testing.T) {
	h := newSecureHarness(t)
	h.ok(createToken(aclToken(workerID, accessOperator))) // same id as a join token
	h.membership([]uint64{1}, nil)
	data := mustSnapshot(t, h.s)

	r, err := state.Restore(data)
	if err != nil {
		t.Fatalf("Restore: %v", err)
	}
	if !r.Secure() || !r.Cluster().GetSecure() {
		t.Fatal("Restore lost the cluster's secure flag")
	}
	want := h.s.Tokens(apiv1.TokenKind_TOKEN_KIND_UNSPECIFIED)
	if got := r.Tokens(apiv1.TokenKind_TOKEN_KIND_UNSPECIFIED); len(want) != 5 || !protoSliceEqual(got, want) {
		t.Fatalf("restored tokens:\n%v\nwant\n%v", got, want)
	}
	if again := mustSnapshot(t, r); !bytes.Equal(again, data) {
		t.Fatal("the restored state snapshots to other bytes")
	}
	if r.SecurityVersion() == 0 {
		t.Fatal("a restored state has SecurityVersion 0, the version of an empty state")
	}
	// The restored state checks joins with its tokens.
	reg := registerNode(5, 8, 8192, nil).GetRegisterNode()
	reg.Role, reg.JoinTokenId = roleVoter, workerID
	wantErr(t, r.CheckJoin(reg, tokCreated), codePrecond, "role")
	reg.JoinTokenId = voterID
	if err := r.CheckJoin(reg, tokCreated); err != nil {
		t.Fatalf("restored CheckJoin = %v", err)
	}
	// An insecure cluster restores insecure.
	open := newHarness(t)
	open.ok(secureInit("c1", false, nil))
	ro, err := state.Restore(mustSnapshot(t, open.s))
	if err != nil || ro.Secure() {
		t.Fatalf("insecure Restore: secure %v, err %v", ro != nil && ro.Secure(), err)
	}
}

func TestRestoreRefusesBadTokens(t *testing.T) {
	h := newSecureHarness(t)
	var base apiv1.StateSnapshot
	if err := proto.Unmarshal(mustSnapshot(t, h.s), &base); err != nil {
		t.Fatal(err)
	}
	if len(base.GetTokens()) != 4 {
		t.Fatalf("snapshot holds %d tokens, want 4", len(base.GetTokens()))
	}
	for _, tc := range []struct {
		name string
		edit func(s *apiv1.StateSnapshot)
	}{
		{"unsorted by kind", func(s *apiv1.StateSnapshot) {
			s.Tokens[0], s.Tokens[3] = s.Tokens[3], s.Tokens[0]
		}},
		{"unsorted by id", func(s *apiv1.StateSnapshot) {
			s.Tokens[0], s.Tokens[1] = s.Tokens[1], s.Tokens[0]
		}},
		{"duplicate", func(s *apiv1.StateSnapshot) {
			s.Tokens = append(s.Tokens[:1], append([]*apiv1.Token{s.Tokens[0]}, s.Tokens[1:]...)...)
		}},
		{"bad hash", func(s *apiv1.StateSnapshot) { s.Tokens[1].SecretSha256 = nil }},
		{"bad id", func(s *apiv1.StateSnapshot) { s.Tokens[1].Id = "x" }},
		{"join without expiry", func(s *apiv1.StateSnapshot) { s.Tokens[0].ExpiresUnixNano = 0 }},
		{"acl with a node role", func(s *apiv1.StateSnapshot) { s.Tokens[3].NodeRole = roleVoter }},
		{"no kind", func(s *apiv1.StateSnapshot) { s.Tokens[0].Kind = 0 }},
		{"nil token", func(s *apiv1.StateSnapshot) { s.Tokens[2] = nil }},
		{"too many", func(s *apiv1.StateSnapshot) {
			for i := 0; len(s.Tokens) <= 2*state.MaxTokens; i++ {
				s.Tokens = append(s.Tokens, aclToken(tokenID(0x100000+i), accessViewer))
			}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			snap := proto.CloneOf(&base)
			tc.edit(snap)
			if s, err := state.Restore(marshal(t, snap)); err == nil {
				t.Fatalf("Restore accepted it: tokens %v", s.Tokens(apiv1.TokenKind_TOKEN_KIND_UNSPECIFIED))
			}
		})
	}
	// Unchanged, it restores.
	if _, err := state.Restore(marshal(t, &base)); err != nil {
		t.Fatalf("Restore of the unchanged snapshot: %v", err)
	}
}
