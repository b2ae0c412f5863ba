package authz_test

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"testing"

	apiv1 "github.com/blixard/blixard/api/v1"
	"github.com/blixard/blixard/internal/authz"
	"github.com/blixard/blixard/internal/pki"
)

const (
	kindACL  = apiv1.TokenKind_TOKEN_KIND_ACL
	kindJoin = apiv1.TokenKind_TOKEN_KIND_JOIN

	// The parts of the well-formed tokens the parsing tables start from.
	// The secret is distinctive so that an error message that repeats it
	// is easy to catch.
	goodID     = "0123456789abcdef"
	goodSecret = "5ec2e75ec2e75ec2e75ec2e75ec2e75e"
	goodFP     = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff"
)

var (
	goodACL  = "bxa." + goodID + "." + goodSecret
	goodJoin = "bxj." + goodID + "." + goodSecret + "." + goodFP
)

func testFingerprint(t *testing.T) pki.Fingerprint {
	t.Helper()
	var fp pki.Fingerprint
	b, err := hex.DecodeString(goodFP)
	if err != nil || len(b) != len(fp) {
		t.Fatalf("test fingerprint: %v", err)
	}
	copy(fp[:], b)
	return fp
}

func TestNewSecretRoundTrips(t *testing.T) {
	fp := testFingerprint(t)
	for _, tc := range []struct {
		kind   apiv1.TokenKind
		prefix string
		parts  int
		wantCA pki.Fingerprint
	}{
		{kindACL, "bxa.", 3, pki.Fingerprint{}}, // an ACL token ignores the CA
		{kindJoin, "bxj.", 4, fp},
	} {
		t.Run(tc.kind.String(), func(t *testing.T) {
			s, err := authz.NewSecret(tc.kind, fp)
			if err != nil {
				t.Fatalf("NewSecret: %v", err)
			}
			str := s.String()
			parts := strings.Split(str, ".")
			if !strings.HasPrefix(str, tc.prefix) || len(parts) != tc.parts {
				t.Fatalf("String() = %q, want %d parts starting %q", str, tc.parts, tc.prefix)
			}
			if len(str) > authz.MaxTokenLen {
				t.Fatalf("String() is %d characters, more than MaxTokenLen %d", len(str), authz.MaxTokenLen)
			}
			if s.Kind != tc.kind || !authz.ValidTokenID(s.ID) || parts[1] != s.ID || s.CA != tc.wantCA {
				t.Fatalf("secret = %#v (CA %x), want kind %v, a valid id, CA %x", s, s.CA, tc.kind, tc.wantCA)
			}
			if want := sha256.Sum256([]byte(parts[2])); !bytes.Equal(s.Hash(), want[:]) {
				t.Fatalf("Hash() = %x, want the SHA-256 of the secret part %x", s.Hash(), want)
			}

			got, err := authz.ParseToken(str)
			if err != nil {
				t.Fatalf("ParseToken(String()) = %v", err)
			}
			if got.Kind != s.Kind || got.ID != s.ID || got.CA != s.CA || got.String() != str || !bytes.Equal(got.Hash(), s.Hash()) {
				t.Fatalf("ParseToken(String()) = %#v, want %#v", got, s)
			}

			rec := s.Record()
			if rec.GetId() != s.ID || rec.GetKind() != tc.kind || !bytes.Equal(rec.GetSecretSha256(), s.Hash()) {
				t.Fatalf("Record() = %v", rec)
			}
			if !got.Matches(rec) {
				t.Fatal("the parsed token does not match its own record")
			}

			// Two draws differ in both id and secret.
			other, err := authz.NewSecret(tc.kind, fp)
			if err != nil {
				t.Fatal(err)
			}
			if other.ID == s.ID || bytes.Equal(other.Hash(), s.Hash()) {
				t.Fatalf("two draws share id or secret: %q %q", str, other.String())
			}
		})
	}
}

func TestNewSecretRefusesOtherKinds(t *testing.T) {
	for _, k := range []apiv1.TokenKind{apiv1.TokenKind_TOKEN_KIND_UNSPECIFIED, apiv1.TokenKind(99)} {
		if s, err := authz.NewSecret(k, pki.Fingerprint{}); err == nil {
			t.Errorf("NewSecret(%v) = %#v, want an error", k, s)
		}
	}
}

func TestParseTokenAcceptsSurroundingSpace(t *testing.T) {
	// A token read from a file or pasted from a terminal ends in a newline.
	for _, in := range []string{goodACL + "\n", "  " + goodJoin + " \n"} {
		s, err := authz.ParseToken(in)
		if err != nil {
			t.Fatalf("ParseToken(%q) = %v", in, err)
		}
		if s.ID != goodID || s.String() != strings.TrimSpace(in) {
			t.Fatalf("ParseToken(%q) = %q", in, s.String())
		}
	}
}

func TestParseTokenRefusesMalformed(t *testing.T) {
	upper := strings.ToUpper
	tests := []struct {
		name string
		in   string
	}{
		{"empty", ""},
		{"only spaces", "   "},
		{"no dots", "bxa" + goodID + goodSecret},
		{"unknown prefix", "bxz." + goodID + "." + goodSecret},
		{"uppercase prefix", "BXA." + goodID + "." + goodSecret},
		{"bearer left on", "Bearer " + goodACL},
		{"acl with a fingerprint", "bxa." + goodID + "." + goodSecret + "." + goodFP},
		{"join without a fingerprint", "bxj." + goodID + "." + goodSecret},
		{"join with five parts", goodJoin + ".00"},
		{"acl with two parts", "bxa." + goodID},
		{"trailing dot", goodACL + "."},
		{"empty id", "bxa.." + goodSecret},
		{"empty secret", "bxa." + goodID + "."},
		{"uppercase id", "bxa." + upper(goodID) + "." + goodSecret},
		{"short id", "bxa." + goodID[:15] + "." + goodSecret},
		{"long id", "bxa." + goodID + "0." + goodSecret},
		{"non-hex id", "bxa.0123456789abcdeg." + goodSecret},
		{"uppercase secret", "bxa." + goodID + "." + upper(goodSecret)},
		{"short secret", "bxa." + goodID + "." + goodSecret[:31]},
		{"long secret", "bxa." + goodID + "." + goodSecret + "a"},
		{"non-hex secret", "bxa." + goodID + "." + goodSecret[:31] + "z"},
		{"join with uppercase secret", "bxj." + goodID + "." + upper(goodSecret) + "." + goodFP},
		{"short fingerprint", "bxj." + goodID + "." + goodSecret + "." + goodFP[:63]},
		{"odd fingerprint", "bxj." + goodID + "." + goodSecret + "." + goodFP + "0"},
		{"long fingerprint", "bxj." + goodID + "." + goodSecret + "." + goodFP + "00"},
		{"non-hex fingerprint", "bxj." + goodID + "." + goodSecret + "." + goodFP[:62] + "zz"},
		{"sha256: fingerprint", "bxj." + goodID + "." + goodSecret + ".sha256:" + goodFP},
		{"longer than MaxTokenLen", goodACL + strings.Repeat(" ", authz.MaxTokenLen)},
		{"huge", strings.Repeat(goodSecret, 1000)},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s, err := authz.ParseToken(tc.in)
			if !errors.Is(err, authz.ErrMalformedToken) {
				t.Fatalf("ParseToken(%q) = %#v, %v; want ErrMalformedToken", tc.in, s, err)
			}
			if s.ID != "" || s.Kind != apiv1.TokenKind_TOKEN_KIND_UNSPECIFIED || s.String() != "bxa.." {
				t.Fatalf("ParseToken(%q) returned a partial secret %#v", tc.in, s)
			}
			// The input may be a secret pasted in the wrong place: the
			// message repeats none of its parts.
			msg := err.Error()
			for _, part := range strings.FieldsFunc(tc.in, func(r rune) bool { return r == '.' || r == ' ' }) {
				if len(part) >= 8 && strings.Contains(strings.ToLower(msg), strings.ToLower(part)) {
					t.Fatalf("error %q repeats %q from the input", msg, part)
				}
			}
			if strings.Contains(strings.ToLower(msg), goodSecret[:8]) {
				t.Fatalf("error %q repeats the secret", msg)
			}
		})
	}
}

// TestParseTokenLengthLimit: the limit is on the raw input, inclusive.
func TestParseTokenLengthLimit(t *testing.T) {
	padded := goodACL + strings.Repeat(" ", authz.MaxTokenLen-len(goodACL))
	if len(padded) != authz.MaxTokenLen {
		t.Fatalf("test input is %d long", len(padded))
	}
	if _, err := authz.ParseToken(padded); err != nil {
		t.Fatalf("a token padded to exactly MaxTokenLen: %v", err)
	}
	if _, err := authz.ParseToken(padded + " "); !errors.Is(err, authz.ErrMalformedToken) {
		t.Fatalf("a token padded to MaxTokenLen+1: %v, want ErrMalformedToken", err)
	}
}

func TestMatches(t *testing.T) {
	acl, err := authz.ParseToken(goodACL)
	if err != nil {
		t.Fatal(err)
	}
	join, err := authz.ParseToken(goodJoin)
	if err != nil {
		t.Fatal(err)
	}
	other, err := authz.ParseToken("bxa." + goodID + ".ffffffffffffffffffffffffffffffff")
	if err != nil {
		t.Fatal(err)
	}
	rec := func(edit func(*apiv1.Token)) *apiv1.Token {
		r := acl.Record()
		r.AccessRole = apiv1.AccessRole_ACCESS_ROLE_ADMIN
		if edit != nil {
			edit(r)
		}
		return r
	}
	tests := []struct {
		name string
		s    authz.Secret
		rec  *apiv1.Token
		want bool
	}{
		{"own record", acl, rec(nil), true},
		{"own record, other fields set", acl, rec(func(r *apiv1.Token) { r.Description, r.ExpiresUnixNano = "x", 5 }), true},
		{"nil record", acl, nil, false},
		{"other kind, same id and secret", join, rec(nil), false},
		{"other id", acl, rec(func(r *apiv1.Token) { r.Id = "fedcba9876543210" }), false},
		{"other secret, same id", other, rec(nil), false},
		{"hash changed", acl, rec(func(r *apiv1.Token) { r.SecretSha256[0] ^= 1 }), false},
		{"hash short", acl, rec(func(r *apiv1.Token) { r.SecretSha256 = r.SecretSha256[:31] }), false},
		{"hash long", acl, rec(func(r *apiv1.Token) { r.SecretSha256 = append(r.SecretSha256, 0) }), false},
		{"no hash", acl, rec(func(r *apiv1.Token) { r.SecretSha256 = nil }), false},
		{"zero secret, empty record", authz.Secret{}, &apiv1.Token{}, false},
	}
	for _, tc := range tests {
		if got := tc.s.Matches(tc.rec); got != tc.want {
			t.Errorf("%s: Matches = %v, want %v", tc.name, got, tc.want)
		}
	}
}

func TestGoStringHidesTheSecret(t *testing.T) {
	for _, tok := range []string{goodACL, goodJoin} {
		s, err := authz.ParseToken(tok)
		if err != nil {
			t.Fatal(err)
		}
		for _, out := range []string{fmt.Sprintf("%#v", s), fmt.Sprintf("%#v", []authz.Secret{s}), s.GoString()} {
			if strings.Contains(out, goodSecret) {
				t.Fatalf("%%#v of a secret shows it: %s", out)
			}
			if !strings.Contains(out, goodID) {
				t.Fatalf("%%#v = %s, want the id shown", out)
			}
		}
	}
}

func TestValidTokenID(t *testing.T) {
	for _, tc := range []struct {
		id   string
		want bool
	}{
		{goodID, true},
		{"0000000000000000", true},
		{"ffffffffffffffff", true},
		{"", false},
		{goodID[:15], false},
		{goodID + "0", false},
		{"0123456789ABCDEF", false},
		{"0123456789abcdeg", false},
		{"0123456789abcde ", false},
		{"0123456789abcd\u00e9", false}, // 16 bytes, not 16 hex digits
	} {
		if got := authz.ValidTokenID(tc.id); got != tc.want {
			t.Errorf("ValidTokenID(%q) = %v, want %v", tc.id, got, tc.want)
		}
	}
}

func TestRoleOfAndAccessRole(t *testing.T) {
	for _, tc := range []struct {
		access apiv1.AccessRole
		role   authz.Role
	}{
		{apiv1.AccessRole_ACCESS_ROLE_VIEWER, authz.RoleViewer},
		{apiv1.AccessRole_ACCESS_ROLE_OPERATOR, authz.RoleOperator},
		{apiv1.AccessRole_ACCESS_ROLE_ADMIN, authz.RoleAdmin},
	} {
		if got := authz.RoleOf(tc.access); got != tc.role {
			t.Errorf("RoleOf(%v) = %v, want %v", tc.access, got, tc.role)
		}
		if got := tc.role.AccessRole(); got != tc.access {
			t.Errorf("%v.AccessRole() = %v, want %v", tc.role, got, tc.access)
		}
	}
	// What names no role grants nothing, and maps to no access role.
	for _, a := range []apiv1.AccessRole{apiv1.AccessRole_ACCESS_ROLE_UNSPECIFIED, apiv1.AccessRole(42), apiv1.AccessRole(-1)} {
		if got := authz.RoleOf(a); got != authz.RoleNone {
			t.Errorf("RoleOf(%v) = %v, want none", a, got)
		}
	}
	for _, r := range []authz.Role{authz.RoleNone, authz.Role(42), authz.Role(-1)} {
		if got := r.AccessRole(); got != apiv1.AccessRole_ACCESS_ROLE_UNSPECIFIED {
			t.Errorf("%v.AccessRole() = %v, want unspecified", r, got)
		}
	}
}
