package authz_test

import (
	"strings"
	"testing"

	apiv1 "github.com/blixard/blixard/api/v1"
	"github.com/blixard/blixard/internal/authz"
	"github.com/blixard/blixard/internal/pki"
)

// FuzzParseToken feeds ParseToken what a client may put in its
// "authorization" metadata. A token it accepts prints back to itself
// (lowercased input aside) and matches its own record; its errors never
// repeat the input's secret part.
func FuzzParseToken(f *testing.F) {
	acl, _ := authz.NewSecret(apiv1.TokenKind_TOKEN_KIND_ACL, pki.Fingerprint{})
	join, _ := authz.NewSecret(apiv1.TokenKind_TOKEN_KIND_JOIN, pki.Fingerprint{1, 2, 3})
	for _, s := range []string{acl.String(), join.String(), "", "bxa..", "bxj.0.0.0", " " + acl.String() + "\n", strings.Repeat("a", 300)} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in string) {
		sec, err := authz.ParseToken(in)
		if err != nil {
			parts := strings.Split(strings.TrimSpace(in), ".")
			if len(parts) >= 3 && len(parts[2]) >= 8 && strings.Contains(err.Error(), parts[2]) {
				t.Fatalf("error %q repeats the secret part", err)
			}
			return
		}
		if got := sec.String(); got != strings.TrimSpace(in) {
			t.Fatalf("ParseToken(%q).String() = %q", in, got)
		}
		if !sec.Matches(sec.Record()) {
			t.Fatal("a token does not match its own record")
		}
		if !authz.ValidTokenID(sec.ID) {
			t.Fatalf("accepted id %q is not a token id", sec.ID)
		}
	})
}
