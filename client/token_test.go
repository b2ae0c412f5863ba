package client_test

import (
	"context"
	"crypto/tls"
	"errors"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	apiv1 "github.com/blixard/blixard/api/v1"
	"github.com/blixard/blixard/client"
	"github.com/blixard/blixard/client/clienttest"
	"github.com/blixard/blixard/internal/pki"
)

// testToken is an ACL token in the cluster's format.
const testToken = "bxa.0123456789abcdef.00112233445566778899aabbccddeeff"

// tlsPair returns the TLS config of a node of a fresh cluster CA and the
// config of a client that trusts that CA.
func tlsPair(t *testing.T) (server, clientTLS *tls.Config) {
	t.Helper()
	ca, err := pki.NewCA("test-cluster", time.Now(), 0)
	if err != nil {
		t.Fatalf("NewCA: %v", err)
	}
	node, err := ca.NewNode(1, []string{"127.0.0.1"}, time.Now(), 0)
	if err != nil {
		t.Fatalf("NewNode: %v", err)
	}
	server = &tls.Config{MinVersion: tls.VersionTLS13, Certificates: []tls.Certificate{node.TLSCertificate()}}
	return server, pki.ClientOnlyTLS(pki.PoolOf(ca.Certificate()))
}

// newTLSClient returns a client of n over clientTLS with token.
func newTLSClient(t *testing.T, n *clienttest.Node, clientTLS *tls.Config, token string) *client.Client {
	t.Helper()
	c, err := client.New(t.Context(), client.Options{
		Addrs: []string{n.Addr}, TLS: clientTLS, Token: token,
		BackoffInitial: time.Millisecond, BackoffMax: 5 * time.Millisecond,
	})
	if err != nil {
		t.Fatalf("client.New: %v", err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

func TestTokenTravelsOverTLS(t *testing.T) {
	serverTLS, clientTLS := tlsPair(t)
	n := clienttest.StartTLS(t, 1, serverTLS)
	c := newTLSClient(t, n, clientTLS, testToken)

	if _, err := c.CreateVm(t.Context(), createReq("web")); err != nil {
		t.Fatalf("CreateVm over TLS: %v", err)
	}
	if _, err := c.GetClusterStatus(t.Context(), &apiv1.GetClusterStatusRequest{}); err != nil {
		t.Fatalf("GetClusterStatus over TLS: %v", err)
	}
	// A stream carries it too (the fake serves no watches: Unimplemented,
	// but only once the call has arrived).
	stream, err := c.WatchVms(t.Context(), &apiv1.WatchVmsRequest{})
	if err == nil {
		_, err = stream.Recv()
	}
	if status.Code(err) != codes.Unimplemented {
		t.Fatalf("WatchVms: %v, want Unimplemented from the fake", err)
	}
	calls := n.Calls()
	if len(calls) != 3 {
		t.Fatalf("node got %d calls, want 3", len(calls))
	}
	for _, call := range calls {
		if call.Token != testToken {
			t.Errorf("%s carried token %q, want %q", call.Method, call.Token, testToken)
		}
	}
}

func TestNoTokenSendsNoCredentials(t *testing.T) {
	serverTLS, clientTLS := tlsPair(t)
	n := clienttest.StartTLS(t, 1, serverTLS)
	c := newTLSClient(t, n, clientTLS, "")
	if _, err := c.HealthCheck(t.Context(), &apiv1.HealthCheckRequest{}); err != nil {
		t.Fatalf("HealthCheck over TLS without a token: %v", err)
	}
	if got := n.Calls()[0].Token; got != "" {
		t.Errorf("call carried token %q, want none", got)
	}
}

func TestTLSRefusesAStrangeCA(t *testing.T) {
	serverTLS, _ := tlsPair(t)
	_, otherTLS := tlsPair(t)
	n := clienttest.StartTLS(t, 1, serverTLS)
	c, err := client.New(t.Context(), client.Options{
		Addrs: []string{n.Addr}, TLS: otherTLS, Token: testToken, MaxAttempts: 2, BackoffInitial: time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_, err = c.GetClusterStatus(t.Context(), &apiv1.GetClusterStatusRequest{})
	if err == nil || !strings.Contains(err.Error(), "server certificate") {
		t.Fatalf("GetClusterStatus against a node of another CA: %v, want the certificate refused", err)
	}
	if got := len(n.Calls()); got != 0 {
		t.Errorf("node got %d calls, want none: nothing is sent to a node that fails the handshake", got)
	}
}

func TestPlaintextClientOfATLSNodeFails(t *testing.T) {
	serverTLS, _ := tlsPair(t)
	n := clienttest.StartTLS(t, 1, serverTLS)
	c, err := client.New(t.Context(), client.Options{Addrs: []string{n.Addr}, MaxAttempts: 2, BackoffInitial: time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.HealthCheck(t.Context(), &apiv1.HealthCheckRequest{}); err == nil {
		t.Fatal("plaintext HealthCheck of a TLS node: no error")
	}
}

func TestTokenNeedsTLS(t *testing.T) {
	_, err := client.New(t.Context(), client.Options{Addrs: []string{"127.0.0.1:7001"}, Token: testToken})
	if err == nil || !strings.Contains(err.Error(), "a token needs TLS") {
		t.Fatalf("New with a token and no TLS: %v, want a refusal", err)
	}
	if strings.Contains(err.Error(), testToken) {
		t.Errorf("New's error %q shows the token", err)
	}
}

func TestCheckToken(t *testing.T) {
	for _, ok := range []string{testToken, "x"} {
		if err := client.CheckToken(ok); err != nil {
			t.Errorf("CheckToken(%q) = %v, want nil", ok, err)
		}
	}
	for _, bad := range []string{"", testToken + "\n", "bxa.a b", "bxa.é", strings.Repeat("a", 257)} {
		if err := client.CheckToken(bad); err == nil {
			t.Errorf("CheckToken(%q) = nil, want an error", bad)
		}
	}
	_, clientTLS := tlsPair(t)
	if _, err := client.New(t.Context(), client.Options{Addrs: []string{"127.0.0.1:7001"}, TLS: clientTLS, Token: testToken + "\n"}); err == nil {
		t.Error("New with a token ending in a newline: no error")
	}
}

func TestRefusedCredentialsAreNotRetried(t *testing.T) {
	for _, tc := range []struct {
		name string
		err  error
		code apiv1.ErrorCode
	}{
		{"unauthenticated", clienttest.Unauthenticated("no token: pass an ACL token"), apiv1.ErrorCode_ERROR_CODE_UNAUTHENTICATED},
		{"permission denied", clienttest.PermissionDenied("a viewer token may not create VMs"), apiv1.ErrorCode_ERROR_CODE_PERMISSION_DENIED},
		{"unauthenticated without detail", status.Error(codes.Unauthenticated, "bad token"), apiv1.ErrorCode_ERROR_CODE_UNAUTHENTICATED},
		// A detail that says "retry" does not make a refusal retryable.
		{"permission denied with an unavailable detail", func() error {
			st, _ := status.New(codes.PermissionDenied, "no").WithDetails(&apiv1.Error{Code: apiv1.ErrorCode_ERROR_CODE_UNAVAILABLE})
			return st.Err()
		}(), apiv1.ErrorCode_ERROR_CODE_UNAVAILABLE},
	} {
		t.Run(tc.name, func(t *testing.T) {
			first, second := clienttest.Start(t, 1), clienttest.Start(t, 2)
			for _, n := range []*clienttest.Node{first, second} {
				n.SetHook(func(context.Context, string, proto.Message, func() (proto.Message, error)) (proto.Message, error) {
					return nil, tc.err
				})
			}
			c := newClient(t, first.Addr, second.Addr)
			_, err := c.CreateVm(t.Context(), createReq("web"))
			var re *client.RetryError
			if err == nil || errors.As(err, &re) {
				t.Fatalf("CreateVm: %v, want the refusal itself", err)
			}
			if got := client.ErrorOf(err).GetCode(); got != tc.code {
				t.Errorf("ErrorOf(err).Code = %v, want %v", got, tc.code)
			}
			if got := len(first.Calls()) + len(second.Calls()); got != 1 {
				t.Errorf("%d attempts, want 1: refused credentials are not retried", got)
			}
		})
	}
}

func TestTokenMethods(t *testing.T) {
	serverTLS, clientTLS := tlsPair(t)
	n := clienttest.StartTLS(t, 1, serverTLS)
	c := newTLSClient(t, n, clientTLS, testToken)
	ctx := t.Context()

	join, err := c.CreateToken(ctx, &apiv1.CreateTokenRequest{Kind: apiv1.TokenKind_TOKEN_KIND_JOIN, TtlSeconds: 60, Description: "rack 2"})
	if err != nil {
		t.Fatalf("CreateToken join: %v", err)
	}
	if !strings.HasPrefix(join.GetSecret(), "bxj."+join.GetToken().GetId()+".") {
		t.Errorf("join token secret %q, want bxj.<id>.…", join.GetSecret())
	}
	acl, err := c.CreateToken(ctx, &apiv1.CreateTokenRequest{Kind: apiv1.TokenKind_TOKEN_KIND_ACL, AccessRole: apiv1.AccessRole_ACCESS_ROLE_VIEWER})
	if err != nil {
		t.Fatalf("CreateToken acl: %v", err)
	}
	list, err := c.ListTokens(ctx, &apiv1.ListTokensRequest{Kind: apiv1.TokenKind_TOKEN_KIND_JOIN})
	if err != nil {
		t.Fatalf("ListTokens: %v", err)
	}
	if len(list.GetTokens()) != 1 || !proto.Equal(list.GetTokens()[0], join.GetToken()) {
		t.Errorf("ListTokens join = %v, want the join token only", list.GetTokens())
	}
	revoked, err := c.RevokeToken(ctx, &apiv1.RevokeTokenRequest{Kind: apiv1.TokenKind_TOKEN_KIND_ACL, Id: acl.GetToken().GetId()})
	if err != nil {
		t.Fatalf("RevokeToken: %v", err)
	}
	if revoked.GetToken().GetId() != acl.GetToken().GetId() {
		t.Errorf("RevokeToken answered %v, want the ACL token's record", revoked)
	}
	_, err = c.RevokeToken(ctx, &apiv1.RevokeTokenRequest{Kind: apiv1.TokenKind_TOKEN_KIND_ACL, Id: acl.GetToken().GetId()})
	if client.ErrorOf(err).GetCode() != apiv1.ErrorCode_ERROR_CODE_NOT_FOUND {
		t.Errorf("second RevokeToken: %v, want NOT_FOUND", err)
	}

	want := []string{"CreateToken", "CreateToken", "ListTokens", "RevokeToken", "RevokeToken"}
	calls := n.Calls()
	if len(calls) != len(want) {
		t.Fatalf("node got %d calls, want %d", len(calls), len(want))
	}
	for i, call := range calls {
		if call.Method != want[i] {
			t.Errorf("call %d went to %s, want %s", i, call.Method, want[i])
		}
		if w, ok := call.Request.(interface{ GetClientRequestId() string }); ok && w.GetClientRequestId() == "" {
			t.Errorf("write %s carried no client request id", call.Method)
		}
	}
}
