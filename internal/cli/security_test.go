package cli

import (
	"context"
	"crypto/tls"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/blixard/blixard/client/clienttest"
	"github.com/blixard/blixard/internal/pki"
)

// testToken is an ACL token in the cluster's format.
const testToken = "bxa.0123456789abcdef.00112233445566778899aabbccddeeff"

// startSecure runs a fake node that serves TLS with a certificate of a
// fresh cluster CA, and returns it with the path of a file holding that
// CA's certificate.
func startSecure(t *testing.T) (*clienttest.Node, string) {
	t.Helper()
	ca, err := pki.NewCA("test-cluster", time.Now(), 0)
	if err != nil {
		t.Fatalf("NewCA: %v", err)
	}
	node, err := ca.NewNode(1, []string{"127.0.0.1"}, time.Now(), 0)
	if err != nil {
		t.Fatalf("NewNode: %v", err)
	}
	dir := t.TempDir()
	if err := pki.SaveBundle(dir, pki.Bundle{ca.Certificate()}); err != nil {
		t.Fatalf("SaveBundle: %v", err)
	}
	n := clienttest.StartTLS(t, 1, &tls.Config{MinVersion: tls.VersionTLS13, Certificates: []tls.Certificate{node.TLSCertificate()}})
	return n, filepath.Join(dir, pki.CACertFile)
}

// runSecureAt runs the command line against the TLS node n, trusting the
// CA in caFile and sending token.
func runSecureAt(t *testing.T, n *clienttest.Node, caFile, token string, args ...string) (stdout, stderr string, err error) {
	t.Helper()
	return run(t, append([]string{"--addr", n.Addr, "--ca", caFile, "--token", token}, args...)...)
}

// mustRunSecureAt is runSecureAt that fails the test if the command fails
// or writes to stderr.
func mustRunSecureAt(t *testing.T, n *clienttest.Node, caFile, token string, args ...string) string {
	t.Helper()
	stdout, stderr, err := runSecureAt(t, n, caFile, token, args...)
	if err != nil || stderr != "" {
		t.Fatalf("blixard %s: err %v, stderr %q", strings.Join(args, " "), err, stderr)
	}
	return stdout
}

// lastToken returns the token n's last call carried.
func lastToken(t *testing.T, n *clienttest.Node) string {
	t.Helper()
	calls := n.Calls()
	if len(calls) == 0 {
		t.Fatal("node got no calls")
	}
	return calls[len(calls)-1].Token
}

func TestTokenReachesTheNodeOverTLS(t *testing.T) {
	n, caFile := startSecure(t)
	mustRunSecureAt(t, n, caFile, testToken, "vm", "list", "-o", "json")
	if got := lastToken(t, n); got != testToken {
		t.Errorf("node got token %q, want %q", got, testToken)
	}
}

func TestCAAndTokenFromEnvironment(t *testing.T) {
	n, caFile := startSecure(t)
	t.Setenv(caEnv, caFile)
	t.Setenv(tokenEnv, testToken+"\n") // as $(cat admin.token) would not, but a file read might
	if _, stderr, err := runAddrOnly(t, n, "cluster", "status"); err != nil {
		t.Fatalf("cluster status with %s and %s: %v (stderr %q)", caEnv, tokenEnv, err, stderr)
	}
	if got := lastToken(t, n); got != testToken {
		t.Errorf("node got token %q, want %q from %s", got, testToken, tokenEnv)
	}
	// Flags override the environment.
	t.Setenv(caEnv, filepath.Join(t.TempDir(), "missing.crt"))
	mustRunSecureAt(t, n, caFile, "bxa.other", "cluster", "status")
	if got := lastToken(t, n); got != "bxa.other" {
		t.Errorf("node got token %q, want --token's", got)
	}
}

// runAddrOnly runs the command line against n naming only its address: what
// else the command needs comes from the environment.
func runAddrOnly(t *testing.T, n *clienttest.Node, args ...string) (string, string, error) {
	t.Helper()
	return run(t, append([]string{"--addr", n.Addr}, args...)...)
}

func TestDevCAIsFoundInTheWorkingDirectory(t *testing.T) {
	n, caFile := startSecure(t)
	dir := t.TempDir()
	t.Chdir(dir)
	if _, stderr, _ := runAddrOnly(t, n, "vm", "list"); !strings.Contains(stderr, "no cluster CA") {
		t.Fatalf("vm list without ./.blixard-dev/ca.crt: stderr %q, want no cluster CA", stderr)
	}
	pem, err := os.ReadFile(caFile)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(dir, ".blixard-dev"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, devCAFile), pem, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, stderr, err := run(t, "--addr", n.Addr, "--token", testToken, "vm", "list"); err != nil {
		t.Fatalf("vm list with ./.blixard-dev/ca.crt: %v (stderr %q)", err, stderr)
	}
	if got := lastToken(t, n); got != testToken {
		t.Errorf("node got token %q, want %q", got, testToken)
	}
}

func TestNoCAIsAUsageError(t *testing.T) {
	n := clienttest.Start(t, 1)
	_, stderr, err := runAddrOnly(t, n, "vm", "list")
	want := "error: no cluster CA: pass --ca FILE, set BLIXARD_CA, or --insecure for a node started with --insecure (see 'blixard vm list --help')\n"
	if err == nil || stderr != want {
		t.Errorf("vm list without a CA: err %v, stderr %q; want %q", err, stderr, want)
	}
	if code := ExitCode(err); code != ExitFailure {
		t.Errorf("exit status %d, want %d", code, ExitFailure)
	}
	if len(n.Calls()) != 0 {
		t.Errorf("node got %d calls, want none", len(n.Calls()))
	}
}

func TestBadCAOrToken(t *testing.T) {
	n, caFile := startSecure(t)
	notPEM := filepath.Join(t.TempDir(), "ca.crt")
	if err := os.WriteFile(notPEM, []byte("hello\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--ca", filepath.Join(t.TempDir(), "missing.crt")}, "--ca: "},
		{[]string{"--ca", notPEM}, "--ca: "},
		{[]string{"--ca", caFile, "--token", "bxa.a b"}, "--token: token has a character a token never holds"},
	} {
		args := append(append([]string{"--addr", n.Addr}, tc.args...), "vm", "list")
		_, stderr, err := run(t, args...)
		if err == nil || !strings.HasPrefix(stderr, "error: "+tc.want) || !strings.HasSuffix(stderr, "(see 'blixard vm list --help')\n") {
			t.Errorf("blixard %s: err %v, stderr %q; want a usage error starting %q", strings.Join(args, " "), err, stderr, tc.want)
		}
	}
	t.Setenv(caEnv, filepath.Join(t.TempDir(), "missing.crt"))
	if _, stderr, _ := runAddrOnly(t, n, "vm", "list"); !strings.HasPrefix(stderr, "error: BLIXARD_CA: ") {
		t.Errorf("a missing $%s: stderr %q, want it named", caEnv, stderr)
	}
	if len(n.Calls()) != 0 {
		t.Errorf("node got %d calls, want none", len(n.Calls()))
	}
}

func TestInsecureDialsPlaintext(t *testing.T) {
	n := clienttest.Start(t, 1)
	for _, v := range []string{"1", "true"} {
		t.Setenv(insecureEnv, v)
		t.Setenv(tokenEnv, testToken)
		if _, stderr, err := runAddrOnly(t, n, "vm", "list"); err != nil {
			t.Fatalf("vm list with %s=%s against a plaintext node: %v (stderr %q)", insecureEnv, v, err, stderr)
		}
		if got := lastToken(t, n); got != "" {
			t.Errorf("plaintext call carried token %q; a token is never sent in plaintext", got)
		}
	}
	// --insecure=false overrides the environment.
	if _, stderr, _ := runAddrOnly(t, n, "--insecure=false", "vm", "list"); !strings.Contains(stderr, "no cluster CA") {
		t.Errorf("--insecure=false: stderr %q, want the CA asked for", stderr)
	}
	t.Setenv(insecureEnv, "0")
	if _, stderr, _ := runAddrOnly(t, n, "vm", "list"); !strings.Contains(stderr, "no cluster CA") {
		t.Errorf("%s=0: stderr %q, want the CA asked for", insecureEnv, stderr)
	}
	t.Setenv(insecureEnv, "maybe")
	if _, stderr, _ := runAddrOnly(t, n, "vm", "list"); !strings.Contains(stderr, `BLIXARD_INSECURE: "maybe" is not 1, true, 0 or false`) {
		t.Errorf("%s=maybe: stderr %q", insecureEnv, stderr)
	}
	// A token given with --insecure is not sent, and not complained of.
	t.Setenv(insecureEnv, "")
	stdout, stderr, err := runAddrOnly(t, n, "--insecure", "--token", testToken, "vm", "list")
	if err != nil || stdout != "" || stderr != "no VMs\n" {
		t.Errorf("--insecure --token: err %v, stdout %q, stderr %q", err, stdout, stderr)
	}
	if got := lastToken(t, n); got != "" {
		t.Errorf("plaintext call carried token %q", got)
	}
}

func TestTLSClientOfAPlaintextNodeFails(t *testing.T) {
	plain := clienttest.Start(t, 1)
	_, caFile := startSecure(t)
	ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
	defer cancel()
	_, stderr, err := runContext(t, ctx, "--addr", plain.Addr, "--ca", caFile, "--token", testToken, "vm", "list")
	if err == nil || !strings.HasPrefix(stderr, "error: ") || !strings.HasSuffix(stderr, "(is --ca this cluster's CA? a node started with --insecure needs --insecure)\n") {
		t.Errorf("a TLS client of a plaintext node: err %v, stderr %q, want a failure with a hint", err, stderr)
	}
	if len(plain.Calls()) != 0 {
		t.Errorf("plaintext node got %d calls, want none", len(plain.Calls()))
	}
}

func TestStrangeCAGetsAHint(t *testing.T) {
	n, _ := startSecure(t)
	_, otherCA := startSecure(t)
	ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
	defer cancel()
	_, stderr, err := runContext(t, ctx, "--addr", n.Addr, "--ca", otherCA, "--token", testToken, "vm", "list")
	if err == nil || !strings.Contains(stderr, "server certificate") || !strings.Contains(stderr, "is --ca this cluster's CA?") {
		t.Errorf("a node of another CA: err %v, stderr %q, want the certificate refused and a hint", err, stderr)
	}
	if len(n.Calls()) != 0 {
		t.Errorf("node got %d calls, want none", len(n.Calls()))
	}
}

func TestRefusedCredentials(t *testing.T) {
	for _, tc := range []struct {
		name string
		err  error
		want string
		code int
	}{
		{"no token", clienttest.Unauthenticated("no token given"),
			"error: not authenticated: no token given (pass --token or set BLIXARD_TOKEN)\n", ExitUnauthenticated},
		{"unknown token", clienttest.Unauthenticated("unauthenticated: unknown or revoked token"),
			"error: unauthenticated: unknown or revoked token (pass --token or set BLIXARD_TOKEN)\n", ExitUnauthenticated},
		{"role too low", clienttest.PermissionDenied("a viewer token may not create VMs"),
			"error: permission denied: a viewer token may not create VMs (the token's role does not allow this; an admin token can make another with 'blixard acl token create')\n",
			ExitPermissionDenied},
	} {
		t.Run(tc.name, func(t *testing.T) {
			n, caFile := startSecure(t)
			n.SetHook(func(context.Context, string, proto.Message, func() (proto.Message, error)) (proto.Message, error) {
				return nil, tc.err
			})
			_, stderr, err := runSecureAt(t, n, caFile, testToken, "vm", "create", "web", "--vcpus", "1", "--memory", "64")
			if stderr != tc.want {
				t.Errorf("stderr %q\nwant   %q", stderr, tc.want)
			}
			if got := ExitCode(err); got != tc.code {
				t.Errorf("exit status %d, want %d", got, tc.code)
			}
			if len(n.Calls()) != 1 {
				t.Errorf("node got %d calls, want 1: refused credentials are not retried", len(n.Calls()))
			}
		})
	}
}
