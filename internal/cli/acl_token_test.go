package cli

import (
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	apiv1 "github.com/blixard/blixard/api/v1"
)

func TestACLTokenCreate(t *testing.T) {
	n, caFile := startSecure(t)
	for i, tc := range []struct {
		args []string
		want *apiv1.CreateTokenRequest
		note string
	}{
		{[]string{"--role", "admin"}, &apiv1.CreateTokenRequest{AccessRole: apiv1.AccessRole_ACCESS_ROLE_ADMIN},
			"created ACL token 0000000000000001: role admin, never expires; it is shown only this once\n"},
		{[]string{"--role", "viewer", "--ttl", "720h", "--description", "dashboard"},
			&apiv1.CreateTokenRequest{AccessRole: apiv1.AccessRole_ACCESS_ROLE_VIEWER, TtlSeconds: 720 * 3600, Description: "dashboard"},
			"created ACL token 0000000000000002: role viewer, expires 2026-02-01T03:04:07Z; it is shown only this once\n"},
		{[]string{"--role", "operator", "--ttl", "0"}, &apiv1.CreateTokenRequest{AccessRole: apiv1.AccessRole_ACCESS_ROLE_OPERATOR},
			"created ACL token 0000000000000003: role operator, never expires; it is shown only this once\n"},
	} {
		args := append([]string{"acl", "token", "create"}, tc.args...)
		stdout, stderr, err := runSecureAt(t, n, caFile, testToken, args...)
		if err != nil {
			t.Fatalf("blixard %s: %v (stderr %q)", strings.Join(args, " "), err, stderr)
		}
		if want := fakeSecret(apiv1.TokenKind_TOKEN_KIND_ACL, uint64(i+1)) + "\n"; stdout != want {
			t.Errorf("blixard %s: stdout %q, want the token alone: %q", strings.Join(args, " "), stdout, want)
		}
		if want := tc.note + "a client uses it with --token TOKEN or: export BLIXARD_TOKEN=TOKEN\n"; stderr != want {
			t.Errorf("blixard %s: stderr\n%s\nwant\n%s", strings.Join(args, " "), stderr, want)
		}
		req := lastRequest(t, n, "CreateToken").(*apiv1.CreateTokenRequest)
		tc.want.Kind = apiv1.TokenKind_TOKEN_KIND_ACL
		tc.want.ClientRequestId = req.GetClientRequestId()
		if req.GetClientRequestId() == "" || !proto.Equal(req, tc.want) {
			t.Errorf("blixard %s: CreateToken request %v, want %v with a client request id", strings.Join(args, " "), req, tc.want)
		}
	}
}

func TestACLTokenCreateBadFlags(t *testing.T) {
	n, caFile := startSecure(t)
	for _, tc := range []struct {
		args []string
		want string
	}{
		{nil, `required flag(s) "role" not set (see 'blixard acl token create --help')`},
		{[]string{"--role", "root"}, `--role: "root" is not admin, operator or viewer`},
		{[]string{"--role", "admin", "--ttl", "-1s"}, "--ttl must be 0 (never expires) or more and at most 8760h (a year), got -1s"},
		{[]string{"--role", "admin", "--ttl", "9000h"}, "--ttl must be 0 (never expires) or more and at most 8760h (a year), got 9000h0m0s"},
	} {
		args := append([]string{"acl", "token", "create"}, tc.args...)
		_, stderr, err := runSecureAt(t, n, caFile, testToken, args...)
		if err == nil || !strings.HasPrefix(stderr, "error: ") || !strings.Contains(stderr, tc.want) {
			t.Errorf("blixard %s: err %v, stderr %q; want %q", strings.Join(args, " "), err, stderr, tc.want)
		}
	}
	if len(n.Calls()) != 0 {
		t.Errorf("node got %d calls, want none", len(n.Calls()))
	}
}

func TestACLTokenListAndRevoke(t *testing.T) {
	n, caFile := startSecure(t)
	if _, stderr, err := runSecureAt(t, n, caFile, testToken, "acl", "token", "list"); err != nil || stderr != "no ACL tokens\n" {
		t.Errorf("acl token list of none: err %v, stderr %q", err, stderr)
	}
	createToken(t, n, caFile, "acl", "token", "create", "--role", "admin", "--description", "ops team")
	createToken(t, n, caFile, "acl", "token", "create", "--role", "viewer", "--ttl", "1s")
	createToken(t, n, caFile, "cluster", "token", "create")
	setNow(t, time.Date(2026, 1, 2, 3, 5, 0, 0, time.UTC))
	got := mustRunSecureAt(t, n, caFile, testToken, "acl", "token", "list")
	want := `ID                ROLE    CREATED               EXPIRES  DESCRIPTION
0000000000000001  admin   2026-01-02T03:04:06Z  never    ops team
0000000000000002  viewer  2026-01-02T03:04:07Z  expired  -
`
	if got != want {
		t.Errorf("acl token list printed\n%s\nwant\n%s", got, want)
	}
	if req := lastRequest(t, n, "ListTokens").(*apiv1.ListTokensRequest); req.GetKind() != apiv1.TokenKind_TOKEN_KIND_ACL {
		t.Errorf("ListTokens request %v, want ACL tokens", req)
	}

	if got := mustRunSecureAt(t, n, caFile, testToken, "acl", "token", "revoke", "0000000000000002"); got != "ACL token 0000000000000002 revoked\n" {
		t.Errorf("acl token revoke printed %q", got)
	}
	req := lastRequest(t, n, "RevokeToken").(*apiv1.RevokeTokenRequest)
	if req.GetKind() != apiv1.TokenKind_TOKEN_KIND_ACL || req.GetId() != "0000000000000002" || req.GetClientRequestId() == "" {
		t.Errorf("RevokeToken request %v, want ACL token 0000000000000002 and a client request id", req)
	}
	// A join token's id is no ACL token's.
	_, stderr, err := runSecureAt(t, n, caFile, testToken, "acl", "token", "revoke", "0000000000000003")
	if err == nil || stderr != "error: id: no such token 0000000000000003\n" {
		t.Errorf("acl token revoke of a join token's id: err %v, stderr %q", err, stderr)
	}
}
