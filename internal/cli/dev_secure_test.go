package cli

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	apiv1 "github.com/blixard/blixard/api/v1"
	"github.com/blixard/blixard/client/clienttest"
	"github.com/blixard/blixard/internal/pki"
)

// fastDevPolls makes dev's bootstrap waits poll every millisecond for the
// rest of the test.
func fastDevPolls(t *testing.T) {
	old := devPoll
	devPoll = time.Millisecond
	t.Cleanup(func() { devPoll = old })
}

// fakeDevNode is a devNode with no process behind it: the test says when
// it exits.
func fakeDevNode(t *testing.T, id uint64) *devNode {
	t.Helper()
	logf, err := os.Create(filepath.Join(t.TempDir(), "node.log"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { logf.Close() })
	return &devNode{id: id, log: logf, done: make(chan error, 1)}
}

func TestDevAccess(t *testing.T) {
	addrs := []string{"127.0.0.1:7001", "127.0.0.1:7002"}
	plain := devAccess{addrs: addrs, insecure: true}
	if got, want := plain.flags(), []string{"--addr", "127.0.0.1:7001,127.0.0.1:7002", "--insecure"}; !slices.Equal(got, want) {
		t.Errorf("insecure flags %q, want %q", got, want)
	}
	if got, want := plain.exports(), []string{"export BLIXARD_ADDR=127.0.0.1:7001,127.0.0.1:7002", "export BLIXARD_INSECURE=1"}; !slices.Equal(got, want) {
		t.Errorf("insecure exports %q, want %q", got, want)
	}
	secure := devAccess{addrs: addrs, caFile: "/home/me/my dev/ca.crt", token: testToken}
	if got, want := secure.flags(), []string{"--addr", "127.0.0.1:7001,127.0.0.1:7002", "--ca", "/home/me/my dev/ca.crt", "--token", testToken}; !slices.Equal(got, want) {
		t.Errorf("secure flags %q, want %q", got, want)
	}
	want := []string{
		"export BLIXARD_ADDR=127.0.0.1:7001,127.0.0.1:7002",
		"export BLIXARD_CA='/home/me/my dev/ca.crt'",
		"export BLIXARD_TOKEN=" + testToken,
	}
	if got := secure.exports(); !slices.Equal(got, want) {
		t.Errorf("secure exports %q, want %q", got, want)
	}
	if got := shellQuote("/tmp/it's"); got != `'/tmp/it'\''s'` {
		t.Errorf("shellQuote = %q", got)
	}
}

func TestWaitForBootstrap(t *testing.T) {
	fastDevPolls(t)
	dataDir := t.TempDir()
	dir1 := filepath.Join(dataDir, "n1")
	if err := os.MkdirAll(dir1, 0o755); err != nil {
		t.Fatal(err)
	}
	node1 := fakeDevNode(t, 1)
	ca, err := pki.NewCA("dev", time.Now(), 0)
	if err != nil {
		t.Fatal(err)
	}
	// Node 1 writes its CA and a token half-way, then all of it; each
	// stage is written once the waiter has said it saw the one before.
	errOut := &lockedBuffer{}
	type result struct {
		access devAccess
		err    error
	}
	done := make(chan result, 1)
	go func() {
		a, err := waitForBootstrap(context.Background(), progressTo(errOut), node1, dataDir, []string{"127.0.0.1:7001"})
		done <- result{a, err}
	}()
	seen := func(lines int) {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for strings.Count(errOut.String(), "\n") < lines {
			if time.Now().After(deadline) {
				t.Fatalf("the waiter did not report stage %d; stderr %q", lines, errOut.String())
			}
			<-time.After(5 * time.Millisecond) // the poll's interval
		}
	}
	seen(1)
	_ = pki.SaveBundle(dir1, pki.Bundle{ca.Certificate()})
	_ = os.WriteFile(filepath.Join(dir1, "admin.token"), []byte("bxa.0123 "), 0o600)
	seen(2)
	_ = os.WriteFile(filepath.Join(dir1, "admin.token"), []byte(testToken+"\n"), 0o600)
	r := <-done
	access, err := r.access, r.err
	if err != nil {
		t.Fatalf("waitForBootstrap: %v (stderr %q)", err, errOut.String())
	}
	if access.token != testToken || access.insecure || access.tls == nil {
		t.Errorf("access %+v, want the admin token and TLS", access)
	}
	if want := filepath.Join(dataDir, "ca.crt"); access.caFile != want {
		t.Errorf("CA file %q, want %q", access.caFile, want)
	}
	for _, f := range []struct {
		name string
		mode os.FileMode
		want string
	}{{"ca.crt", 0o644, ""}, {"admin.token", 0o600, testToken + "\n"}} {
		st, err := os.Stat(filepath.Join(dataDir, f.name))
		if err != nil {
			t.Fatalf("%s not copied into the data directory: %v", f.name, err)
		}
		if st.Mode().Perm() != f.mode {
			t.Errorf("%s has mode %v, want %v", f.name, st.Mode().Perm(), f.mode)
		}
		if f.want != "" {
			if got, _ := os.ReadFile(filepath.Join(dataDir, f.name)); string(got) != f.want {
				t.Errorf("%s holds %q, want %q", f.name, got, f.want)
			}
		}
	}
	if _, err := pki.LoadBundleFile(access.caFile); err != nil {
		t.Errorf("the copied CA does not load: %v", err)
	}
	if !strings.HasPrefix(errOut.String(), "waiting for node 1 to write its CA and admin token: no ") {
		t.Errorf("stderr %q, want progress", errOut.String())
	}
}

func TestWaitForBootstrapNodeExits(t *testing.T) {
	fastDevPolls(t)
	dataDir := t.TempDir()
	node1 := fakeDevNode(t, 1)
	node1.done <- errors.New("exit status 1")
	_, err := waitForBootstrap(context.Background(), progressTo(&bytes.Buffer{}), node1, dataDir, []string{"127.0.0.1:7001"})
	if err == nil || !strings.Contains(err.Error(), "node 1 exited before it wrote its CA and admin token (exit status 1)") {
		t.Errorf("waitForBootstrap with node 1 gone: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := waitForBootstrap(ctx, progressTo(&bytes.Buffer{}), fakeDevNode(t, 1), dataDir, nil); !errors.Is(err, context.Canceled) {
		t.Errorf("waitForBootstrap interrupted: %v, want context.Canceled", err)
	}
}

func TestCreateDevJoinToken(t *testing.T) {
	fastDevPolls(t)
	n := clienttest.Start(t, 1)
	var attempts atomic.Int32
	n.SetHook(func(_ context.Context, method string, _ proto.Message, next func() (proto.Message, error)) (proto.Message, error) {
		switch attempts.Add(1) {
		case 1, 2:
			return nil, clienttest.Unauthenticated("unknown token")
		case 3:
			return nil, clienttest.Status(&apiv1.Error{Code: apiv1.ErrorCode_ERROR_CODE_FAILED_PRECONDITION, Message: "the cluster has not started"})
		}
		return next()
	})
	var errOut bytes.Buffer
	secret, err := createDevJoinToken(context.Background(), progressTo(&errOut), newTestClient(t, n), fakeDevNode(t, 1))
	if err != nil {
		t.Fatalf("createDevJoinToken: %v", err)
	}
	if secret != fakeSecret(apiv1.TokenKind_TOKEN_KIND_JOIN, 1) {
		t.Errorf("secret %q, want the fake's first", secret)
	}
	wantErr := `waiting for the cluster to take the admin token: unknown token
waiting for the cluster to take the admin token: the cluster has not started
created join token 0000000000000001 for the other nodes (expires 2026-01-02T04:04:06Z)
`
	if errOut.String() != wantErr {
		t.Errorf("stderr\n%s\nwant\n%s", errOut.String(), wantErr)
	}
	calls := n.Calls()
	if len(calls) != 4 {
		t.Fatalf("node got %d calls, want 4", len(calls))
	}
	ids := map[string]bool{}
	for _, c := range calls {
		req := c.Request.(*apiv1.CreateTokenRequest)
		ids[req.GetClientRequestId()] = true
		want := &apiv1.CreateTokenRequest{ClientRequestId: req.GetClientRequestId(), Kind: apiv1.TokenKind_TOKEN_KIND_JOIN,
			NodeRole: apiv1.NodeRole_NODE_ROLE_VOTER, Description: "blixard dev"}
		if !proto.Equal(req, want) {
			t.Errorf("CreateToken request %v, want %v", req, want)
		}
	}
	if len(ids) != 4 {
		t.Errorf("4 attempts carried %d request ids, want one each: each makes its own secret", len(ids))
	}
}

func TestCreateDevJoinTokenGivesUp(t *testing.T) {
	fastDevPolls(t)
	n := clienttest.Start(t, 1)
	n.SetHook(func(context.Context, string, proto.Message, func() (proto.Message, error)) (proto.Message, error) {
		return nil, clienttest.PermissionDenied("a viewer may not make tokens")
	})
	_, err := createDevJoinToken(context.Background(), progressTo(&bytes.Buffer{}), newTestClient(t, n), fakeDevNode(t, 1))
	if err == nil || !strings.Contains(errorLine(NewRootCommand(), err), "a viewer may not make tokens") {
		t.Errorf("createDevJoinToken refused: %v, want the refusal at once", err)
	}
	if len(n.Calls()) != 1 {
		t.Errorf("node got %d calls, want 1", len(n.Calls()))
	}

	n.SetHook(func(context.Context, string, proto.Message, func() (proto.Message, error)) (proto.Message, error) {
		return nil, clienttest.Unauthenticated("unknown token")
	})
	node1 := fakeDevNode(t, 1)
	node1.done <- errors.New("signal: killed")
	_, err = createDevJoinToken(context.Background(), progressTo(&bytes.Buffer{}), newTestClient(t, n), node1)
	if err == nil || !strings.Contains(err.Error(), "node 1 exited while dev made a join token (signal: killed)") {
		t.Errorf("createDevJoinToken with node 1 gone: %v", err)
	}
}

func TestDevShowSecure(t *testing.T) {
	n, caFile := startSecure(t)
	var out, errOut bytes.Buffer
	access := devAccess{addrs: []string{n.Addr}, caFile: caFile, token: testToken}
	if !devShow(context.Background(), &out, &errOut, access, "cluster", "status") {
		t.Fatalf("devShow cluster status over TLS failed: %s", errOut.String())
	}
	if got := lastToken(t, n); got != testToken {
		t.Errorf("devShow sent token %q, want %q", got, testToken)
	}
}

func TestDevNeedJoin(t *testing.T) {
	joined, fresh := t.TempDir(), t.TempDir()
	if err := os.WriteFile(filepath.Join(joined, "node.crt"), []byte("cert"), 0o644); err != nil {
		t.Fatal(err)
	}
	if !devHasCert(joined) || devHasCert(fresh) || devHasCert(filepath.Join(fresh, "missing")) {
		t.Error("devHasCert does not tell a node with node.crt from one without")
	}
	if devNeedJoin([]string{joined, joined}) || !devNeedJoin([]string{joined, fresh}) || devNeedJoin(nil) {
		t.Error("devNeedJoin wrong")
	}
}

func TestDevNodeEnv(t *testing.T) {
	t.Setenv(joinTokenEnv, "bxj.from-the-shell")
	if slices.Contains(devNodeEnv(""), joinTokenEnv+"=bxj.from-the-shell") {
		t.Error("a node that needs no token got dev's own $BLIXARD_JOIN_TOKEN")
	}
	env := devNodeEnv("bxj.new")
	if !slices.Contains(env, joinTokenEnv+"=bxj.new") || slices.Contains(env, joinTokenEnv+"=bxj.from-the-shell") {
		t.Errorf("a joining node's environment lacks its token, or has dev's own")
	}
}

// lockedBuffer is a bytes.Buffer safe to write and read from two
// goroutines.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}
