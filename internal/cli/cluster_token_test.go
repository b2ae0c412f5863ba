package cli

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	apiv1 "github.com/blixard/blixard/api/v1"
	"github.com/blixard/blixard/client/clienttest"
)

// fakeSecret is the secret the fake node gives the token made at log
// index i.
func fakeSecret(kind apiv1.TokenKind, i uint64) string {
	if kind == apiv1.TokenKind_TOKEN_KIND_JOIN {
		return fmt.Sprintf("bxj.%016x.%032x.%s", i, i, clienttest.FakeCAFingerprint)
	}
	return fmt.Sprintf("bxa.%016x.%032x", i, i)
}

// setNow fixes the clock that says whether a token has expired.
func setNow(t *testing.T, now time.Time) {
	old := timeNow
	timeNow = func() time.Time { return now }
	t.Cleanup(func() { timeNow = old })
}

// createToken runs a token create command line against n and returns
// what it printed on stdout.
func createToken(t *testing.T, n *clienttest.Node, caFile string, args ...string) string {
	t.Helper()
	stdout, stderr, err := runSecureAt(t, n, caFile, testToken, args...)
	if err != nil || !strings.HasPrefix(stderr, "created ") {
		t.Fatalf("blixard %s: err %v, stderr %q", strings.Join(args, " "), err, stderr)
	}
	return stdout
}

// lastRequest returns the request of n's last call, which must be to
// method.
func lastRequest(t *testing.T, n *clienttest.Node, method string) proto.Message {
	t.Helper()
	calls := n.Calls()
	if len(calls) == 0 || calls[len(calls)-1].Method != method {
		t.Fatalf("calls %v, want the last to be %s", calls, method)
	}
	return calls[len(calls)-1].Request
}

func TestClusterTokenCreate(t *testing.T) {
	n, caFile := startSecure(t)
	stdout, stderr, err := runSecureAt(t, n, caFile, testToken, "cluster", "token", "create")
	if err != nil {
		t.Fatalf("cluster token create: %v (stderr %q)", err, stderr)
	}
	if want := fakeSecret(apiv1.TokenKind_TOKEN_KIND_JOIN, 1) + "\n"; stdout != want {
		t.Errorf("stdout %q, want the token alone: %q", stdout, want)
	}
	wantErr := "created join token 0000000000000001: role voter, expires 2026-01-02T04:04:06Z; it is shown only this once\n" +
		"a new node joins with: blixard node --id N --join ADDR --join-token TOKEN\n"
	if stderr != wantErr {
		t.Errorf("stderr\n%s\nwant\n%s", stderr, wantErr)
	}
	req := lastRequest(t, n, "CreateToken").(*apiv1.CreateTokenRequest)
	want := &apiv1.CreateTokenRequest{ClientRequestId: req.GetClientRequestId(), Kind: apiv1.TokenKind_TOKEN_KIND_JOIN,
		NodeRole: apiv1.NodeRole_NODE_ROLE_VOTER, TtlSeconds: 3600}
	if req.GetClientRequestId() == "" || !proto.Equal(req, want) {
		t.Errorf("CreateToken request %v, want %v with a client request id", req, want)
	}
	if got := lastToken(t, n); got != testToken {
		t.Errorf("CreateToken carried token %q, want %q", got, testToken)
	}

	createToken(t, n, caFile, "cluster", "token", "create", "--role", "worker", "--ttl", "24h", "--description", "rack 2")
	req = lastRequest(t, n, "CreateToken").(*apiv1.CreateTokenRequest)
	if req.GetNodeRole() != apiv1.NodeRole_NODE_ROLE_WORKER || req.GetTtlSeconds() != 86400 || req.GetDescription() != "rack 2" {
		t.Errorf("CreateToken request %v, want a worker token for 86400s described rack 2", req)
	}
	// Part of a second counts as a whole one.
	createToken(t, n, caFile, "cluster", "token", "create", "--ttl", "1500ms")
	if got := lastRequest(t, n, "CreateToken").(*apiv1.CreateTokenRequest).GetTtlSeconds(); got != 2 {
		t.Errorf("--ttl 1500ms sent %d seconds, want 2", got)
	}
}

func TestClusterTokenCreateJSON(t *testing.T) {
	n, caFile := startSecure(t)
	stdout, _, err := runSecureAt(t, n, caFile, testToken, "cluster", "token", "create", "-o", "json")
	if err != nil {
		t.Fatal(err)
	}
	var got struct {
		Secret string `json:"secret"`
		Token  struct {
			ID       string `json:"id"`
			NodeRole string `json:"node_role"`
			Expires  string `json:"expires_unix_nano"`
		} `json:"token"`
	}
	if err := json.Unmarshal([]byte(stdout), &got); err != nil {
		t.Fatalf("cluster token create -o json printed %q: %v", stdout, err)
	}
	if got.Secret != fakeSecret(apiv1.TokenKind_TOKEN_KIND_JOIN, 1) || got.Token.ID != "0000000000000001" ||
		got.Token.NodeRole != "NODE_ROLE_VOTER" || got.Token.Expires == "" {
		t.Errorf("cluster token create -o json printed %+v", got)
	}
}

func TestClusterTokenCreateBadFlags(t *testing.T) {
	n, caFile := startSecure(t)
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--ttl", "0"}, "--ttl must be more than 0 and at most 8760h (a year), got 0s (see 'blixard cluster token create --help')"},
		{[]string{"--ttl", "-1h"}, "--ttl must be more than 0 and at most 8760h (a year), got -1h0m0s"},
		{[]string{"--ttl", "8761h"}, "--ttl must be more than 0 and at most 8760h (a year), got 8761h0m0s"},
		{[]string{"--ttl", "soon"}, `invalid argument "soon" for "--ttl" flag`},
		{[]string{"--role", "boss"}, `--role: "boss" is not voter or worker`},
		{[]string{"extra"}, `blixard cluster token create takes no arguments; got "extra"`},
	} {
		args := append([]string{"cluster", "token", "create"}, tc.args...)
		_, stderr, err := runSecureAt(t, n, caFile, testToken, args...)
		if err == nil || !strings.HasPrefix(stderr, "error: ") || !strings.Contains(stderr, tc.want) {
			t.Errorf("blixard %s: err %v, stderr %q; want %q", strings.Join(args, " "), err, stderr, tc.want)
		}
	}
	if len(n.Calls()) != 0 {
		t.Errorf("node got %d calls, want none", len(n.Calls()))
	}
}

func TestClusterTokenList(t *testing.T) {
	n, caFile := startSecure(t)
	if _, stderr, err := runSecureAt(t, n, caFile, testToken, "cluster", "token", "list"); err != nil || stderr != "no join tokens\n" {
		t.Errorf("cluster token list of none: err %v, stderr %q", err, stderr)
	}
	createToken(t, n, caFile, "cluster", "token", "create")
	createToken(t, n, caFile, "cluster", "token", "create", "--ttl", "24h", "--role", "worker", "--description", "rack 2")
	createToken(t, n, caFile, "acl", "token", "create", "--role", "viewer")
	// The first expired at 04:04:06.
	setNow(t, time.Date(2026, 1, 2, 5, 0, 0, 0, time.UTC))
	got := mustRunSecureAt(t, n, caFile, testToken, "cluster", "token", "list")
	want := `ID                ROLE    CREATED               EXPIRES               DESCRIPTION
0000000000000001  voter   2026-01-02T03:04:06Z  expired               -
0000000000000002  worker  2026-01-02T03:04:07Z  2026-01-03T03:04:07Z  rack 2
`
	if got != want {
		t.Errorf("cluster token list printed\n%s\nwant\n%s", got, want)
	}
	if req := lastRequest(t, n, "ListTokens").(*apiv1.ListTokensRequest); req.GetKind() != apiv1.TokenKind_TOKEN_KIND_JOIN {
		t.Errorf("ListTokens request %v, want join tokens", req)
	}
	out := mustRunSecureAt(t, n, caFile, testToken, "cluster", "token", "list", "-o", "json")
	var resp struct {
		Tokens []struct {
			ID string `json:"id"`
		} `json:"tokens"`
	}
	if err := json.Unmarshal([]byte(out), &resp); err != nil || len(resp.Tokens) != 2 {
		t.Errorf("cluster token list -o json printed %q (%v), want 2 tokens", out, err)
	}
}

func TestClusterTokenRevoke(t *testing.T) {
	n, caFile := startSecure(t)
	createToken(t, n, caFile, "cluster", "token", "create")
	if got := mustRunSecureAt(t, n, caFile, testToken, "cluster", "token", "revoke", "0000000000000001"); got != "join token 0000000000000001 revoked\n" {
		t.Errorf("cluster token revoke printed %q", got)
	}
	req := lastRequest(t, n, "RevokeToken").(*apiv1.RevokeTokenRequest)
	if req.GetKind() != apiv1.TokenKind_TOKEN_KIND_JOIN || req.GetId() != "0000000000000001" || req.GetClientRequestId() == "" {
		t.Errorf("RevokeToken request %v, want join token 0000000000000001 and a client request id", req)
	}
	_, stderr, err := runSecureAt(t, n, caFile, testToken, "cluster", "token", "revoke", "0000000000000001")
	if err == nil || stderr != "error: id: no such token 0000000000000001\n" {
		t.Errorf("revoking it again: err %v, stderr %q", err, stderr)
	}

	// The whole token will do.
	secret := strings.TrimSpace(createToken(t, n, caFile, "cluster", "token", "create"))
	out := mustRunSecureAt(t, n, caFile, testToken, "cluster", "token", "revoke", secret, "-o", "json")
	if !strings.Contains(out, `"id": "0000000000000003"`) {
		t.Errorf("cluster token revoke TOKEN -o json printed %q, want the record of token 3", out)
	}
}

func TestTokenRevokeBadID(t *testing.T) {
	n, caFile := startSecure(t)
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"cluster", "token", "revoke", "12345"}, `join token id "12345" is not 16 hex digits (see 'blixard cluster token revoke --help')`},
		{[]string{"cluster", "token", "revoke", "000000000000000g"}, `join token id "000000000000000g" is not 16 hex digits`},
		{[]string{"cluster", "token", "revoke", "bxa.0000000000000001.00"}, "that is a whole ACL token: 'blixard acl token revoke' revokes it (see 'blixard cluster token revoke --help')"},
		{[]string{"acl", "token", "revoke", "bxj.0000000000000001.00.cc"}, "that is a whole join token: 'blixard cluster token revoke' revokes it"},
		{[]string{"acl", "token", "revoke", "xyz.0000000000000001"}, `ACL token id "xyz.0000000000000001" is not 16 hex digits`},
		{[]string{"acl", "token", "revoke"}, "blixard acl token revoke takes 1 argument(s), ID; got 0"},
	} {
		_, stderr, err := runSecureAt(t, n, caFile, testToken, tc.args...)
		if err == nil || !strings.HasPrefix(stderr, "error: ") || !strings.Contains(stderr, tc.want) {
			t.Errorf("blixard %s: err %v, stderr %q; want %q", strings.Join(tc.args, " "), err, stderr, tc.want)
		}
	}
	if len(n.Calls()) != 0 {
		t.Errorf("node got %d calls, want none", len(n.Calls()))
	}
}
